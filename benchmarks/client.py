"""Client cost: `docpilot note` started the two ways it is started, against the interpreter's floor.

    python benchmarks/client.py [--quick]

The floor is `python -I -S -c pass`: starting the interpreter and nothing else, which any Python
client pays. Measured against it, in alternation and in the same run (the machine is shared and
noisy), each `docpilot note "..."` talking to a running daemon with durability "always" (so each
note also waits for the daemon's fsync):

- the console script pip installed beside this interpreter (site, and pip's launcher, which
  imports re), else `python -m docpilotd.client.entry` when there is none;
- the fast start a hooked shell's `docpilot` function runs (`docpilot init` writes it):
  `python -I -S .../docpilotd/client/entry.py`, of the docpilotd this interpreter imports when
  nothing else is on its path (the installed one; this checkout when none is installed).

Each row gives min/median/max over the rounds and the ratio of the medians to the floor's; the
goal, on the fast start (what a hooked shell runs), is <= 2x the floor. Run it with the
interpreter of an installed (not editable) docpilotd for the figure the issue speaks of:
`python3 -m venv /tmp/v && /tmp/v/bin/pip install . && /tmp/v/bin/python benchmarks/client.py`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, Conn, Figure, python_path, start_daemon, stop_daemon, workdir

GOAL_RATIO = 2.0


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def _entry_file(env: dict[str, str]) -> str:
    """The entry.py of the docpilotd this interpreter imports on its own (-I: no PYTHONPATH, no
    current directory), else this checkout's."""
    found = subprocess.run([sys.executable, "-I", "-c", "import docpilotd.client.entry as e; print(e.__file__)"],
                           env=env, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else str(REPO / "docpilotd" / "client" / "entry.py")


def _spread(values: list[float]) -> str:
    return " / ".join(f"{v * 1e3:.1f}" for v in (min(values), statistics.median(values), max(values))) + " ms"


def run(quick: bool) -> list[Figure]:
    rounds = 10 if quick else 40
    with workdir("client") as tmp:
        home = tmp / "home"
        daemon, _ = start_daemon(home, env={"DOCPILOT_DURABILITY": "always"})
        try:
            conn = Conn(daemon.socket_path)
            conn.call({"op": "start", "description": "client benchmark"})
            conn.close()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCPILOT_", "PYTHON"))}
            env["DOCPILOT_HOME"] = str(home)
            # The console script next to this interpreter (a version manager's shim on PATH, such
            # as pyenv's, would add its own process start-ups to the figure), with the package it
            # was installed with; else this checkout through -m.
            beside = Path(sys.executable).parent / "docpilot"
            installed = str(beside) if beside.exists() else shutil.which("docpilot")
            script = [installed] if installed else [sys.executable, "-m", "docpilotd.client.entry"]
            script_env = env if installed else dict(env, PYTHONPATH=python_path())
            fast = [sys.executable, "-I", "-S", _entry_file(env)]
            floor_argv = [sys.executable, "-I", "-S", "-c", "pass"]
            floor: list[float] = []
            by_script: list[float] = []
            by_fast: list[float] = []
            for i in range(rounds + 2):
                timed = (_timed(floor_argv, env), _timed([*script, "note", f"script {i}"], script_env),
                         _timed([*fast, "note", f"fast {i}"], env))
                if i >= 2:  # warm-up: page cache, bytecode
                    floor.append(timed[0])
                    by_script.append(timed[1])
                    by_fast.append(timed[2])
            noted = Conn(daemon.socket_path).call({"op": "status"})["session"]["annotations"]
        finally:
            stop_daemon(daemon)
    if noted != 2 * (rounds + 2):
        raise RuntimeError(f"{noted} notes stored of {2 * (rounds + 2)} sent")
    base = statistics.median(floor)
    script_ratio = statistics.median(by_script) / base
    fast_ratio = statistics.median(by_fast) / base
    how = "console script" if installed else "python -m"
    return [
        Figure("interpreter floor: python -I -S -c pass (min/median/max)", _spread(floor)),
        Figure(f"docpilot note, {how} (site, launcher), durability always", f"{_spread(by_script)} ({script_ratio:.2f}x the floor)"),
        Figure("docpilot note, a hooked shell's fast start (python -I -S entry.py), durability always",
               f"{_spread(by_fast)} ({fast_ratio:.2f}x the floor)", f"<= {GOAL_RATIO:.0f}x the floor (medians)",
               fast_ratio <= GOAL_RATIO),
    ]


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
