"""Client cost: `docpilot note` and the hooks' sending path against the interpreter's floor.

    python benchmarks/client.py [--quick]

The floor is `python -I -S -c pass`: starting the interpreter and nothing else, which any Python
client pays. `docpilot note "..."` is the installed client (`docpilot` on PATH, else
`python -m docpilotd.client.cli`) talking to a running daemon, durability "always". Each is run
many times in alternation and the median counts.

The hooks' sending path starts no process at all: shell builtins append one line to a spool file.
Its cost is what the prompt benchmark measures (wall time the hooks add per command, bash), shown
here against the same floor; the goal is to stay within 1.5x of it when not backgrounded.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import prompt
from common import Conn, Figure, ms, python_path, start_daemon, stop_daemon, workdir

GOAL_HOOK_RATIO = 1.5


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def run(quick: bool) -> list[Figure]:
    rounds = 10 if quick else 40
    figures: list[Figure] = []
    with workdir("client") as tmp:
        home = tmp / "home"
        daemon, _ = start_daemon(home, env={"DOCPILOT_DURABILITY": "always"})
        try:
            conn = Conn(daemon.socket_path)
            conn.call({"op": "start", "description": "client benchmark"})
            conn.close()
            env = {k: v for k, v in os.environ.items() if not k.startswith("DOCPILOT_")}
            env.update(DOCPILOT_HOME=str(home), PYTHONPATH=python_path())
            # The console script next to this interpreter (a version manager's shim on PATH, such
            # as pyenv's, would add its own process start-ups to the figure).
            beside = Path(sys.executable).parent / "docpilot"
            installed = str(beside) if beside.exists() else shutil.which("docpilot")
            client = [installed] if installed else [sys.executable, "-m", "docpilotd.client.entry"]
            floor_argv = [sys.executable, "-I", "-S", "-c", "pass"]
            floor: list[float] = []
            note: list[float] = []
            for i in range(rounds + 2):
                f, n = _timed(floor_argv, env), _timed([*client, "note", f"client benchmark {i}"], env)
                if i >= 2:  # warm-up: page cache, bytecode
                    floor.append(f)
                    note.append(n)
        finally:
            stop_daemon(daemon)
    floor_s, note_s = statistics.median(floor), statistics.median(note)
    figures.append(Figure("interpreter floor: python -I -S -c pass", ms(floor_s)))
    figures.append(Figure(
        f"docpilot note ({'console script' if installed else 'python -m'}), durability always",
        f"{ms(note_s)} ({note_s / floor_s:.1f}x the floor)",
    ))
    hooks = prompt.measure("bash", quick)
    if hooks is not None:
        ratio = hooks.added_s / floor_s
        figures.append(Figure(
            "hooks' sending path (bash; builtins append to the spool, no process)",
            f"{ms(hooks.added_s)} per command ({ratio:.2f}x the floor)",
            f"<= {GOAL_HOOK_RATIO}x the floor", ratio <= GOAL_HOOK_RATIO,
        ))
    return figures


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
