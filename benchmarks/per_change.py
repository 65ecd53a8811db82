"""Per-change cost versus session size, on a real daemon, with DocPilot's approach beside it.

    python benchmarks/per_change.py [--quick]

Starts `docpilotd run` (durability "always": every reply waits for its fsync) in a temporary
DOCPILOT_HOME, imports live sessions of 10, 10,000 and 100,000 commands, then adds notes to them in
turn over one persistent connection, so every size sees the same machine at the same moments.
Prints changes per second and p50/p99 latency per size, and the ratio largest/smallest (goal: at
most 1.3x: the journal makes a change O(1)). The disk's write+fsync cost is measured in the same run.

DocPilot's approach, measured on the same sessions: every change serializes the whole session
(pretty JSON, here with msgspec, faster than most serializers), copies the current file to a backup
and writes the new file through a temp file and a rename, without fsync (as DocPilot does; with
fsync it would cost more still).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from common import Conn, Figure, build_session, fsync_cost, ms, percentile, start_daemon, stop_daemon, workdir

from docpilotd.domain.model import Session
from docpilotd.storage import snapshot

GOAL_RATIO = 1.3


def docpilot_style(session: Session, count: int, directory: Path) -> list[float]:
    """DocPilot's save, once per change: encode all, backup copy, write a temp file, rename."""
    target = directory / "session.json"
    target.write_bytes(snapshot.encode_plain(session))
    timings = []
    for i in range(count):
        started = time.perf_counter()
        data = snapshot.encode_plain(session)
        shutil.copyfile(target, directory / f"backup_{i % 5}.json")
        tmp = directory / "session.tmp"
        tmp.write_bytes(data)
        tmp.replace(target)
        timings.append(time.perf_counter() - started)
    return timings


def run(quick: bool) -> list[Figure]:
    sizes = (10, 2_000, 20_000) if quick else (10, 10_000, 100_000)
    rounds = 300 if quick else 3000
    figures: list[Figure] = []
    with workdir("change") as tmp:
        fsync = fsync_cost(tmp)
        figures.append(Figure("disk: one small write + fsync", ms(fsync), note=f"{1 / fsync:,.0f} fsyncs/s"))
        sessions = {n: build_session(n) for n in sizes}
        daemon, _ = start_daemon(tmp / "home", env={"DOCPILOT_DURABILITY": "always"})
        try:
            conn = Conn(daemon.socket_path)
            ids: dict[int, str] = {}
            for n in sizes:
                path = tmp / f"import-{n}.json"
                path.write_bytes(snapshot.encode_plain(sessions[n]))
                ids[n] = conn.call({"op": "import", "path": str(path)})["id"]
                path.unlink()
            timings: dict[int, list[float]] = {n: [] for n in sizes}
            for i in range(rounds + 100):
                order = sizes[i % len(sizes):] + sizes[: i % len(sizes)]  # each size goes first in turn
                for n in order:
                    started = time.perf_counter()
                    conn.call({"op": "annotate", "session": ids[n], "text": f"note {i}"})
                    if i >= 100:  # the first rounds warm up caches and the allocator
                        timings[n].append(time.perf_counter() - started)
            conn.close()
        finally:
            stop_daemon(daemon)
        small, large = sizes[0], sizes[-1]
        for n in sizes:
            values = timings[n]
            figures.append(Figure(
                f"per change, {n:,}-command session (1 connection)",
                f"{len(values) / sum(values):,.0f}/s, p50 {ms(percentile(values, 0.5))}, p99 {ms(percentile(values, 0.99))}",
            ))
        ratio = percentile(timings[large], 0.5) / percentile(timings[small], 0.5)
        rate_ratio = (len(timings[small]) / sum(timings[small])) / (len(timings[large]) / sum(timings[large]))
        figures.append(Figure(
            f"per change: {large:,} vs {small:,} commands (p50)", f"{ratio:.2f}x (rate {rate_ratio:.2f}x)",
            f"<= {GOAL_RATIO}x", ratio <= GOAL_RATIO and rate_ratio <= GOAL_RATIO,
        ))
        for n in sizes:
            count = 100 if n <= 10_000 else 10
            theirs = docpilot_style(sessions[n], count if not quick else max(5, count // 4), tmp)
            ratio_theirs = percentile(theirs, 0.5) / percentile(timings[n], 0.5)
            figures.append(Figure(
                f"DocPilot's approach, {n:,} commands (no fsync)",
                f"p50 {ms(percentile(theirs, 0.5))} ({ratio_theirs:.1f}x ours)",
            ))
    return figures


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
