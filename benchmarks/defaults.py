"""Defaults that must not grow with the number of sessions: a note without `--session` and `status`.

    python benchmarks/defaults.py [--quick]

A data root of 100,000 finished sessions (5,000 with --quick) and one live session. Over one
persistent connection, rounds of notes are sent alternately with the live session named and
without (the default: what every `docpilot note` and hook line without a join does, which the
daemon must resolve to the latest live session), each waiting for its reply, and the same for
`status`. Each row gives min/median/max of the per-round medians and the ratio of the medians
without and with the session named, measured side by side in the same run: when the daemon
finds the default by looking at every session, the ratio grows with the number of sessions.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from common import Conn, Figure, build_session, new_id, start_daemon, stop_daemon, with_id, workdir, write_file

from docpilotd.storage import snapshot

GOAL_RATIO = 1.2


def write_finished(home: Path, count: int) -> None:
    """`count` small stopped sessions, each a snapshot only (a valid finished session)."""
    for name in ("sessions", "backups", "journal", "quarantine", "spool", "run"):
        (home / name).mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    template = build_session(3, stop=True)
    for _ in range(count):
        session_id = new_id()
        write_file(home / "sessions" / f"{session_id}.json", snapshot.encode(with_id(template, session_id), 9))


def _timed(conn: Conn, message: dict[str, object], count: int) -> float:
    """The median reply time of `count` requests."""
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn.call(message)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _row(name: str, named: list[float], default: list[float]) -> Figure:
    ratio = statistics.median(default) / statistics.median(named)
    spread = lambda xs: "/".join(f"{x * 1e3:.3f}" for x in (min(xs), statistics.median(xs), max(xs)))  # noqa: E731
    return Figure(
        name,
        f"{ratio:.2f}x: without {spread(default)} ms, with --session {spread(named)} ms (min/median/max of round medians)",
        f"<= {GOAL_RATIO}x", ratio <= GOAL_RATIO,
    )


def run(quick: bool) -> list[Figure]:
    count = 5_000 if quick else 100_000
    rounds, per_round = (5, 100) if quick else (9, 300)
    with workdir("defaults") as tmp:
        home = tmp / "home"
        built = time.perf_counter()
        write_finished(home, count)
        built = time.perf_counter() - built
        daemon, ready = start_daemon(home, env={"DOCPILOT_DURABILITY": "always"}, timeout=600)
        try:
            conn = Conn(daemon.socket_path)
            live = conn.call({"op": "start", "description": "the one live session"})["id"]
            sessions = conn.call({"op": "status"})["daemon"]["sessions"]
            assert sessions == count + 1, sessions
            note_named, note_default, status_named, status_default = [], [], [], []
            _timed(conn, {"op": "annotate", "text": "warm-up"}, 50)
            for n in range(rounds):
                note_named.append(_timed(conn, {"op": "annotate", "session": live, "text": f"named {n}"}, per_round))
                note_default.append(_timed(conn, {"op": "annotate", "text": f"default {n}"}, per_round))
                status_named.append(_timed(conn, {"op": "status", "session": live}, per_round // 3))
                status_default.append(_timed(conn, {"op": "status"}, per_round // 3))
            stored = conn.call({"op": "status", "session": live})["session"]["annotations"]
            conn.close()
        finally:
            stop_daemon(daemon)
    expected = 50 + 2 * rounds * per_round
    assert stored == expected, f"{stored} notes stored of {expected}: the default went to another session"
    return [
        _row(f"note without --session vs with, {count:,} sessions", note_named, note_default),
        _row(f"status without --session vs with, {count:,} sessions", status_named, status_default),
        Figure(f"start to ready, {count:,} finished sessions of one snapshot each (context)",
               f"{ready:.2f} s; fixture written in {built:.0f} s"),
    ]


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
