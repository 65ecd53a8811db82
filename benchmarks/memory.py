"""Memory: the idle daemon's resident set, and the bytes each command of a live session holds.

    python benchmarks/memory.py [--quick]

Idle: `docpilotd run` on an empty data root, read from /proc once it has answered and settled.
Per command: the same daemon started on a data root holding one live session of 100,000 commands
(a note every 25), minus the idle figure, divided by the number of commands (the session's events
and notes included: that is what a command costs to keep). Both are resident set sizes, what the
system pays, measured in the same run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from common import Figure, build_session, rss_bytes, start_daemon, stop_daemon, workdir, write_file

from docpilotd.storage import snapshot

GOAL_IDLE = 40 * 1024 * 1024
GOAL_PER_COMMAND = 1024


def settled_rss(home: Path) -> int:
    """RSS of a daemon started on `home`, after it answered and had a moment to settle."""
    daemon, _ = start_daemon(home, env={"DOCPILOT_DURABILITY": "always"})
    try:
        assert daemon.proc is not None
        time.sleep(1.0)
        return rss_bytes(daemon.proc.pid)
    finally:
        stop_daemon(daemon)


def run(quick: bool) -> list[Figure]:
    commands = 20_000 if quick else 100_000
    with workdir("memory") as tmp:
        idle = min(settled_rss(tmp / "empty") for _ in range(2))
        home = tmp / "large"
        for name in ("sessions", "backups", "journal", "quarantine", "spool", "run"):
            (home / name).mkdir(parents=True, exist_ok=True, mode=0o700)
        session = build_session(commands)
        write_file(home / "sessions" / f"{session.id}.json", snapshot.encode(session, 1))
        del session
        loaded = settled_rss(home)
    per_command = (loaded - idle) / commands
    return [
        Figure("idle daemon RSS (empty data root)", f"{idle / 2**20:.1f} MB", "<= 40 MB", idle <= GOAL_IDLE),
        Figure(
            f"bytes held per command (live session of {commands:,})", f"{per_command:,.0f} B",
            "<= 1 KB", per_command <= GOAL_PER_COMMAND, note=f"RSS {loaded / 2**20:.1f} MB",
        ),
    ]


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
