"""The reliability suite's quick mode, as CI runs it: every figure must meet its target.

kill -9 and power loss have their own tests in this folder (with more rounds), so this run covers
the other parts: crashes at system calls, injected I/O errors and a full disk, damaged files,
fuzzing with the regression corpus, hostile clients, and a hostile file system."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).with_name("run.py")


def test_reliability_quick_mode_meets_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--quick", "--only", "syscalls,faults,damage,fuzz,hostile,hostile_fs,hostile_runtime"],
        capture_output=True, text=True, timeout=1800,
    )
    print(done.stdout)
    assert "reliability (quick):" in done.stdout, done.stderr[-3000:]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " 0 failed" in done.stdout
