"""Point-in-time restore: rebuilding a 100,000-command session as it was at a moment of the last day.

    python benchmarks/run.py --only point_in_time
    python benchmarks/point_in_time.py [--quick]

The data root is what a day of work leaves: a generation of the session as it was a day ago
(100,000 commands; 20,000 with --quick), then a day of changes (a command every 20 s, a note now
and then: 4,320 records) in the journal, with a generation at every hour (the hourly checkpoints a
policy keeps) and the snapshot at the end. A real daemon answers `restore --at T --dry-run` for
moments spread over the day: its time is the rebuild (the oldest copy's check, the journal read,
the nearest copy decoded, the records after it applied), min/median/max over the moments, against
the goal of 2 s. `restore --list-points` is timed too, for context. Each answer is checked: the
number of commands restored is the number recorded up to that moment.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Conn,
    Figure,
    apply_all,
    build_changes,
    command_change,
    start_daemon,
    stop_daemon,
    with_id,
    workdir,
    write_file,
)

from docpilotd.domain import changes, timestamps
from docpilotd.domain.model import Annotation
from docpilotd.storage import journal, snapshot

GOAL_S = 2.0
DAY_S = 86_400
EVERY_S = 20  # a change every 20 s over the day


def _write(home: Path, commands: int) -> tuple[str, int, list[tuple[int, int]]]:
    """The data root; returns the session's id, the day's start (ns) and (moment ns, commands by
    then) for each change of the day."""
    for name in ("sessions", "backups", "journal", "quarantine", "spool", "run"):
        (home / name).mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    now = time.time_ns()
    day_start = now - DAY_S * 1_000_000_000
    items = build_changes(commands, start_ns=day_start - (commands + 10) * 1_000_000_000)
    first = items[0]
    assert isinstance(first, changes.Create)
    session_id = first.session_id
    session = apply_all(items)
    seq = len(items)
    timeline: list[tuple[int, int]] = []

    def generation(at_ns: int) -> None:
        name = f"{session_id}_{at_ns // 10**9}.{at_ns % 10**9:09d}.json"
        write_file(home / "backups" / name, snapshot.encode(with_id(session, session_id), seq))

    generation(day_start)
    segment_first = seq + 1
    frames: list[bytes] = []
    count = commands
    next_hour = day_start + 3600 * 1_000_000_000
    at = day_start
    for i in range(DAY_S // EVERY_S - 1):
        at += EVERY_S * 1_000_000_000
        change: changes.Change
        if i % 10 == 9:
            note = Annotation(id=f"{i:08d}-0000-4000-8000-000000000000", text=f"the day's note {i}",
                              timestamp=timestamps.format_ns(at), annotation_type="Note")
            change = changes.Annotate(annotation=note, event_id=f"{i:08d}-0000-4000-8000-000000000001")
        else:
            change = command_change(commands + i, at)
            count += 1
        seq += 1
        session = changes.apply(session, change)
        frames.append(journal.frame(seq, change))
        timeline.append((at, count))
        if at >= next_hour:  # an hourly checkpoint: a generation, and a new segment
            write_file(home / "journal" / journal.segment_name(session_id, segment_first), b"".join(frames))
            frames, segment_first = [], seq + 1
            generation(at + 1)
            next_hour += 3600 * 1_000_000_000
    write_file(home / "journal" / journal.segment_name(session_id, segment_first), b"".join(frames))
    write_file(home / "sessions" / f"{session_id}.json", snapshot.encode(with_id(session, session_id), seq))
    return session_id, day_start, timeline


def run(quick: bool) -> list[Figure]:
    commands = 20_000 if quick else 100_000
    figures: list[Figure] = []
    with workdir("pit") as tmp:
        session_id, _, timeline = _write(tmp / "home", commands)
        daemon, _ = start_daemon(tmp / "home")
        try:
            conn = Conn(daemon.socket_path, timeout=120)
            started = time.perf_counter()
            listed = conn.call({"op": "points", "session": session_id})
            list_s = time.perf_counter() - started
            assert listed["changes"] == len(timeline), listed
            seconds: list[float] = []
            picks = [timeline[len(timeline) * k // 9] for k in range(1, 9)]  # spread over the day
            for at_ns, expected in picks:
                started = time.perf_counter()
                result = conn.call({"op": "restore", "session": session_id, "at": timestamps.format_ns(at_ns),
                                    "dry_run": True})
                seconds.append(time.perf_counter() - started)
                assert result["commands"] == expected, (result["commands"], expected)
            conn.close()
        finally:
            stop_daemon(daemon)
    size = f"{commands:,}-command session"
    figures.append(Figure(
        f"restore --at, {size}, a day of journal (8 moments)",
        f"{min(seconds):.2f} / {statistics.median(seconds):.2f} / {max(seconds):.2f} s (min/median/max); "
        f"{len(timeline):,} changes in the day, a generation every hour",
        f"<= {GOAL_S:.0f} s", statistics.median(seconds) <= GOAL_S and max(seconds) <= GOAL_S,
    ))
    figures.append(Figure(f"restore --list-points, {size}", f"{list_s:.2f} s"))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from run import print_table

    print_table(run(args.quick), args.quick)
