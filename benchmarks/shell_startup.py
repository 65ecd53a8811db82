"""What the hook line costs a new shell at start-up: `source .../docpilot.SHELL` (what `docpilot
init SHELL` prints) against an rc file that is only a prompt, and the older
`eval "$(docpilot init bash)"` line for comparison.

    python benchmarks/shell_startup.py [--quick]

Each shell runs interactive on a pseudo-terminal (prompt.py's run_shell), typed `exit` only: the
time from spawning it to its exit. The three kinds of runs alternate (the machine is shared and
noisy); min/median/max of each kind are shown, and the figure is the difference of the medians.
Goal: <= 5 ms added; the sourced line must start no process (no Python), so it can miss only by
the shell's own reading of the file.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys

from common import Figure, ms, python_path, workdir
from prompt import _rc_files, run_shell

GOAL_S = 0.005
SHELLS = ("bash", "zsh", "fish")


def _spread(values: list[float]) -> str:
    return f"{ms(min(values))} / {ms(statistics.median(values))} / {ms(max(values))}"


def measure(shell: str, quick: bool) -> Figure | None:
    if shutil.which(shell) is None:
        return None
    repeats = 5 if quick else 25
    with workdir(f"startup-{shell}") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCPILOT_", "BASH_ENV", "ENV"))}
        env.update(DOCPILOT_HOME=str(tmp / "data"), PYTHONPATH=python_path(), TERM="xterm", HOME=str(tmp),
                   XDG_DATA_HOME=str(tmp / "xdg-data"), XDG_CONFIG_HOME=str(tmp / "xdg-config"), ZDOTDIR="")
        client = f"{sys.executable} -m docpilotd.client.entry"
        line = subprocess.run([*client.split(), "init", shell], env=env, capture_output=True, text=True, check=True).stdout
        assert line.startswith("source "), line
        plain_rc, sourced_rc = _rc_files(shell, tmp, line)
        old = f"{client} init {shell} | source\n" if shell == "fish" else f'eval "$({client} init {shell})"\n'
        old_dir = tmp / f"{shell}-eval"
        old_dir.mkdir()
        old_rc = old_dir / plain_rc.name
        old_rc.write_text(plain_rc.read_text() + old)
        plain: list[float] = []
        sourced: list[float] = []
        evaled: list[float] = []
        for n in range(repeats):
            plain.append(run_shell(shell, plain_rc, [], dict(env, ZDOTDIR=str(plain_rc.parent))))
            sourced.append(run_shell(shell, sourced_rc, [], dict(env, ZDOTDIR=str(sourced_rc.parent))))
            if n % 3 == 0:  # the old line costs a Python start each time: fewer runs suffice
                evaled.append(run_shell(shell, old_rc, [], dict(env, ZDOTDIR=str(old_rc.parent))))
    added = statistics.median(sourced) - statistics.median(plain)
    old_added = statistics.median(evaled) - statistics.median(plain)
    return Figure(
        f"shell start-up added by the {shell} hook line (source, {repeats} starts)",
        f"+{ms(max(0.0, added))} (median); old eval line: +{ms(max(0.0, old_added))}",
        "<= 5 ms", added <= GOAL_S,
        note=f"min/median/max without {_spread(plain)}, with {_spread(sourced)}, eval {_spread(evaled)}",
    )


def run(quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    for shell in SHELLS:
        found = measure(shell, quick)
        figures.append(found or Figure(f"shell start-up added by the {shell} hook line", "not installed"))
    return figures


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
