"""Documents: `docpilot generate -t comprehensive` of a 60,000-command session, time and memory.

    python benchmarks/generate.py [--quick]

The session: 60,000 commands (6,000 with --quick) in a few directories, one in five failed, one
in forty with output, a slow one in fifty, a pipeline in thirty, a note every 25 commands and a
milestone every 1,000, stopped; written as the daemon's own snapshot. Measured:

- wall time of `docpilot generate -t comprehensive -s ID -o FILE` as a person runs it (client
  start-up, the daemon reading the session and rendering it, the transfer, the file written),
  min/median/max of 5 runs against one daemon; goal <= 2 s;
- memory: the peak Python allocation while the view is built and the template rendered
  (tracemalloc, in this process) divided by what the decoded session itself holds (traced while
  it is decoded); goal <= 2x. The daemon's resident set before and after is shown beside it.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
import tracemalloc

from common import Figure, python_path, rss_bytes, start_daemon, stop_daemon, workdir, write_file

from docpilotd.domain import changes, timestamps
from docpilotd.domain.model import Annotation, CommandEntry, Session, SessionMetadata
from docpilotd.render.markdown import render
from docpilotd.storage import journal, snapshot

GOAL_SECONDS = 2.0
GOAL_MEMORY_RATIO = 2.0
SESSION_ID = "6f1d9a34-3c1e-4b8a-9f57-0d2a6c1b7e42"


def _id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def build(commands: int) -> Session:
    start = time.time_ns() - (commands + 100) * 1_000_000_000
    meta = SessionMetadata("/home/ada/site", "bash", "linux", "bench", "ada", ["bench"], None, {})
    session = changes.create(changes.Create(session_id=SESSION_ID, description=f"Release of {commands} commands",
                                            at=timestamps.format_ns(start), event_id=_id(0), metadata=meta))
    ids = 1
    at = start
    for i in range(commands):
        at += 1_000_000_000
        entry = CommandEntry(
            command=f"make -C build/{i % 97} target-{i} && ./run --flag {i} | tee log/{i % 13}.txt",
            timestamp=timestamps.format_ns(at), exit_code=0 if i % 5 else 2,
            working_directory=f"/home/ada/site/{('src', 'build', 'docs', 'deploy')[i % 4]}",
            shell=("bash", "zsh", "fish")[i % 3],
            output=f"step {i}: compiled 12 files\nwarning: `x` unused in <lib.rs>\n" if i % 40 == 0 else None,
            error=None, duration_ms=65_000 if i % 50 == 0 else (i * 37) % 4000,
            pipestatus=[0, 1 if i % 60 == 0 else 0] if i % 30 == 0 else None,
        )
        session = changes.apply(session, changes.RecordCommand(entry=entry, event_id=_id(ids)))
        ids += 1
        if i % 25 == 24 or i % 1000 == 999:
            kind = "Milestone" if i % 1000 == 999 else "Note"
            note = Annotation(id=_id(ids), text=f"{kind.lower()} after command {i}: *the build* works now",
                              timestamp=timestamps.format_ns(at + 1000), annotation_type=kind)
            session = changes.apply(session, changes.Annotate(annotation=note, event_id=_id(ids + 1)))
            ids += 2
    return changes.apply(session, changes.Stop(at=timestamps.format_ns(at + 2_000_000_000), event_id=_id(ids)))


def memory_ratio(data: bytes) -> tuple[float, int, int]:
    """(peak while rendering / the session's own size, that peak, that size), traced in-process."""
    gc.collect()
    tracemalloc.start()
    session = snapshot.decode(data).session
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    text = render(session, "comprehensive")
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    del text, session
    return peak / held, peak, held


def run(quick: bool) -> list[Figure]:
    commands = 6_000 if quick else 60_000
    rounds = 3 if quick else 5
    session = build(commands)
    data = snapshot.encode(session, len(session.events) + 1)
    with workdir("generate") as tmp:
        home = tmp / "home"
        for name in ("sessions", "backups", "journal", "quarantine", "spool", "run"):
            (home / name).mkdir(parents=True, exist_ok=True, mode=0o700)
        home.chmod(0o700)
        seq = snapshot.decode(data).seq
        write_file(home / "sessions" / f"{SESSION_ID}.json", data)
        write_file(home / "journal" / journal.segment_name(SESSION_ID, seq + 1), b"")
        daemon, _ = start_daemon(home)
        try:
            assert daemon.proc is not None
            rss_before = rss_bytes(daemon.proc.pid)
            env = {**os.environ, "DOCPILOT_HOME": str(home), "PYTHONPATH": python_path()}
            out = tmp / "doc.md"
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "docpilotd.client.cli", "generate", "-t", "comprehensive",
                     "-s", SESSION_ID, "-o", str(out)], env=env, capture_output=True, text=True, timeout=300,
                )
                times.append(time.perf_counter() - started)
                if done.returncode != 0:
                    raise RuntimeError(f"generate failed: {done.stderr[-2000:]}")
            rss_after = rss_bytes(daemon.proc.pid)
            size = out.stat().st_size
        finally:
            stop_daemon(daemon)
    ratio, peak, held = memory_ratio(data)
    median = statistics.median(times)
    return [
        Figure(
            f"generate -t comprehensive, {commands:,} commands",
            f"min {min(times):.2f} / median {median:.2f} / max {max(times):.2f} s",
            f"<= {GOAL_SECONDS:.0f} s (median)", median <= GOAL_SECONDS,
            note=f"{size / 1e6:.1f} MB document",
        ),
        Figure(
            "generate: peak memory while rendering / the session",
            f"{ratio:.2f}x ({peak / 1e6:.0f} MB / {held / 1e6:.0f} MB)",
            f"<= {GOAL_MEMORY_RATIO:.0f}x", ratio <= GOAL_MEMORY_RATIO,
            note=f"daemon RSS {rss_before / 1e6:.0f} -> {rss_after / 1e6:.0f} MB",
        ),
    ]


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
