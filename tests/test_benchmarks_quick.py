"""Every benchmark runs from this checkout and prints its rows (quick mode; no timing checked).

Benchmarks measure figures and ratios on a real daemon; they are not timed tests. This only makes
sure that each of them runs to the end and reports, as `benchmarks/run.py --quick` does; one test
per benchmark, so that a failure names the benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import BENCHMARKS  # noqa: E402

# Rows each benchmark must print (the start of the figure's name).
ROWS: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt cost of the bash hooks", "bash: hook-to-stored of"),
    "shell_startup": ("shell start-up added by the bash hook line",),
    "client": ("interpreter floor", "docpilot note, ", "docpilot note, a hooked shell's fast start"),
    "per_change": ("disk: one small write + fsync", "per change, 10-command session", "DocPilot's approach"),
    "throughput": ("8 clients, one session",),
    "defaults": ("note without --session vs with", "status without --session vs with"),
    "stall": ("request wait during a checkpoint, p99", "longest request wait during a checkpoint"),
    "startup": ("start to ready", "recovery of"),
    "memory": ("idle daemon RSS", "bytes held per command", "RSS after show of", "peak RSS during show of",
               "longest request wait during a show of"),
    "capture_latency": ("hook-to-stored latency, bash",),
    "spool_ingest": ("spool ingest of 20,000 lines: longest wait", "spool read of 20,000 lines kept nowhere"),
    "run_passthrough": ("docpilot run -- true vs true", "docpilot run passthrough of 10 MB, output to a pipe",
                        "docpilot run passthrough of 10 MB, output to a pty"),
    "generate": ("generate -t comprehensive", "generate: peak memory while rendering"),
    "search": ("search answer time, 1,000 sessions", "search index build, 1,000 sessions"),
    "redaction": ("redaction recall, token", "redaction recall, shell lines per", "redaction lookalikes", "redaction cost per"),
    "backups": ("backup bytes per session, 1,000 commands", "compressing one generation, 1,000 commands"),
    "point_in_time": ("restore --at, 20,000-command session", "restore --list-points, 20,000-command session"),
    "scrub": ("scrub throughput vs a plain read of the same files", "longest request wait during the daemon's scheduled scrub"),
}


def test_every_benchmark_has_a_test() -> None:
    assert set(ROWS) == set(BENCHMARKS)


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_quick_benchmark_runs_and_prints_its_rows(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCPILOT_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", name], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    header = next((n for n, line in enumerate(lines) if line.startswith("| figure")), None)
    assert header is not None, done.stdout
    assert "| goal" in lines[header] and "| met?" in lines[header]
    table = "\n".join(lines[header:])
    for row in ROWS[name]:
        assert f"| {row}" in table, f"no row for {row!r}:\n{table}"
    assert "FAILED" not in table, table
