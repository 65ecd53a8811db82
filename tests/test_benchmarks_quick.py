"""The benchmark suite runs from this checkout and prints its table (quick mode; no timing checked).

Benchmarks measure figures and ratios on a real daemon; they are not timed tests. This only makes
sure that every one of them runs to the end and reports, as CI does with `--quick`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = (
    "prompt cost of the bash hooks", "interpreter floor", "docpilot note", "hooks' sending path",
    "disk: one small write + fsync", "per change, 10-command session", "DocPilot's approach",
    "8 clients, one session", "longest request wait during a checkpoint", "start to ready",
    "recovery of", "idle daemon RSS", "bytes held per command", "hook-to-stored latency, bash",
    "spool ingest of 20,000 lines: longest wait", "spool read of 20,000 lines kept nowhere",
)


def test_quick_benchmarks_run_and_print_the_table() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCPILOT_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    header = next((n for n, line in enumerate(lines) if line.startswith("| figure")), None)
    assert header is not None, done.stdout
    assert "| goal" in lines[header] and "| met?" in lines[header]
    table = "\n".join(lines[header:])
    for row in ROWS:
        assert f"| {row}" in table, f"no row for {row!r}:\n{table}"
    assert "FAILED" not in table, table
