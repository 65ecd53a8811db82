"""Start-up recovery: time from `docpilotd run` to its first answer, with 1,000 and 10,000 sessions.

    python benchmarks/startup.py [--quick]

Each data root holds sessions of about 50 KB as the daemon leaves them (snapshot, one backup, the
journal segment that backup needs, the empty segment after the snapshot; see
`common.write_data_root`); a few are live, the rest stopped. Measured in the same run:

- start to ready: spawn to the first `hello` answered (recovery of every session included: the
  daemon serves nothing before recovery has finished);
- the same for an empty data root: interpreter, imports and socket, the part no data changes;
- the floor: a separate process that merely reads every session file and decodes it (msgspec,
  typed), timed inside that process.

The ratio set against the goal is the daemon's recovery work (start to ready minus the empty
start) over the floor; the raw start-to-ready over the floor is printed beside it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import REPO, Figure, python_path, start_daemon, stop_daemon, workdir, write_data_root

GOALS_S = {1_000: 1.0, 10_000: 5.0}
GOAL_RATIO = 1.5
FLOOR = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
from docpilotd.storage.snapshot import SessionFile
import msgspec
decoder = msgspec.json.Decoder(SessionFile)
directory = sys.argv[1]
started = time.perf_counter()
count = 0
for name in os.listdir(directory):
    with open(os.path.join(directory, name), "rb") as handle:
        decoder.decode(handle.read())
    count += 1
print(time.perf_counter() - started, count)
"""


def floor_seconds(sessions_dir: str) -> float:
    out = subprocess.run([sys.executable, "-c", FLOOR, sessions_dir, str(REPO)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=python_path()))
    return float(out.stdout.split()[0])


def ready_seconds(home: object, repeats: int) -> float:
    """Best of `repeats` starts (the least disturbed by other load on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        daemon, seconds = start_daemon(home, env={"DOCPILOT_DURABILITY": "always"})  # type: ignore[arg-type]
        stop_daemon(daemon)
        best = min(best, seconds)
    return best


def run(quick: bool) -> list[Figure]:
    counts = (100, 1_000) if quick else (1_000, 10_000)
    repeats = 2 if quick else 3
    figures: list[Figure] = []
    with workdir("startup") as tmp:
        empty = ready_seconds(tmp / "empty", repeats)
        figures.append(Figure("start to ready, empty data root", f"{empty * 1e3:.0f} ms"))
        for count in counts:
            t0 = time.perf_counter()
            root = write_data_root(tmp / f"root-{count}", count, commands=80)
            made = time.perf_counter() - t0
            ready_seconds(root.home, 1)  # the first start may repair or re-save; not timed
            ready = ready_seconds(root.home, repeats)
            floor = min(floor_seconds(str(root.home / "sessions")) for _ in range(repeats))
            goal = GOALS_S.get(count)
            figures.append(Figure(
                f"start to ready, {count:,} sessions of {root.bytes_per_session / 1e3:.0f} KB",
                f"{ready:.2f} s", f"<= {goal:.0f} s" if goal else "", (ready <= goal) if goal else None,
                note=f"fixture written in {made:.0f} s",
            ))
            ratio = (ready - empty) / floor
            figures.append(Figure(
                f"recovery of {count:,} sessions vs read+decode",
                f"{ratio:.2f}x (floor {floor:.2f} s; raw start-to-ready {ready / floor:.2f}x)",
                f"<= {GOAL_RATIO}x", ratio <= GOAL_RATIO,
            ))
    return figures


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
