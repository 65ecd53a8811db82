"""The scrub: its throughput against a plain read of the same files, and the event loop's longest
stall while the daemon runs its scheduled scrub.

    python benchmarks/scrub.py [--quick]

A data root of 10,000 sessions (--quick: 400) of 200 commands as the daemon leaves them
(`common.write_data_root`: a snapshot, a plain generation, the segment it needs and the live
one), with two older generations each, compressed (`{name}.json.zst`, what the daemon makes of
them), so every kind of file the scrub checks is there.

Throughput: `scrubbing.scrub` as `docpilotd fsck --scrub` runs it (the listing, then each file
read and checked: CRC of a plain generation, decompression then CRC of a compressed one, a CRC
pass over each segment; the checking in forked children) against reading the very same files with plain
`read()`s in one process, alternately, three times each (--quick: two), the files in the page cache
for neither: the files' pages are dropped from the page cache before each pass
(`posix_fadvise(DONTNEED)`, after one `sync` so that they are clean), so both read the disk. The
ratio is of the medians, scrub MB/s / read MB/s. Goal: >= 0.5x. (From the page cache the read is a
memory copy, several GB/s, and the scrub runs at what CRC and zstd cost: about 0.25x here.)

Stall: a daemon on that root with `scrub_interval_days` so small that it scrubs every ~9 s; a
prober thread sends `hello` every 5 ms on its own connection and records each wait. The figure is
the longest wait of a probe that overlapped a scrub, min/median/max over the scrubs (three;
--quick: one), beside the longest wait outside scrubs. Goal: <= 50 ms. The files are dropped from
the page cache before each scrub; the note gives the daemon's own rate (one thread, as `status`
reports it) beside the plain read's median.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

from common import Conn, Figure, ms, start_daemon, stop_daemon, workdir, write_data_root

from docpilotd.domain import timestamps
from docpilotd.paths import layout_for
from docpilotd.storage import backups, compression, scrubbing
from docpilotd.storage.store import SessionStore

GOAL_RATIO = 0.5
GOAL_STALL_S = 0.050
INTERVAL_DAYS = 0.0001  # 8.64 s between scrubs
PROBE_EVERY_S = 0.005


def add_compressed_generations(home: Path, count: int = 2) -> None:
    """Per session, `count` older generations, compressed, from the session's plain generation
    (its content with an older name: what rotation leaves after earlier checkpoints)."""
    directory = home / "backups"
    for name in os.listdir(directory):
        parsed = backups.parse_name(directory, name)
        if parsed is None:
            continue
        packed = compression.compress((directory / name).read_bytes())
        for n in range(1, count + 1):
            older = backups.backup_name(parsed.session_id, parsed.ns - n * 60_000_000_000)
            (directory / backups.compressed_name(older)).write_bytes(packed)


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (theirs only: POSIX_FADV_DONTNEED), so that
    the next pass reads them from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_all(paths: list[Path]) -> tuple[int, float]:
    started = time.perf_counter()
    total = 0
    for path in paths:
        with open(path, "rb") as f:
            total += len(f.read())
    return total, time.perf_counter() - started


def files_of(home: Path) -> list[Path]:
    layout = layout_for(home)
    items = scrubbing.listing(SessionStore(layout).ops, layout)
    return [(layout.backups if i.kind == "generation" else layout.journal) / i.name for i in items]


def throughput(home: Path, rounds: int, paths: list[Path]) -> tuple[list[float], list[float], int, int]:
    layout = layout_for(home)
    reads: list[float] = []
    scrubs: list[float] = []
    os.sync()  # the fixture's pages written back: clean pages can be dropped
    files = size = 0
    for _ in range(rounds):
        evict(paths)
        size, seconds = read_all(paths)
        reads.append(size / 1e6 / seconds)
        evict(paths)
        started = time.perf_counter()
        report = scrubbing.scrub(SessionStore(layout))
        elapsed = time.perf_counter() - started
        if report.problems or report.bytes != size:
            raise RuntimeError(f"scrub of an intact root: {len(report.problems)} problem(s), {report.bytes} of {size} bytes")
        files = report.files
        scrubs.append(report.bytes / 1e6 / elapsed)
    return scrubs, reads, files, size


class Prober(threading.Thread):
    """`hello` every PROBE_EVERY_S on one connection: (wall time sent, wait) of each."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.stop = threading.Event()
        self.probes: list[tuple[float, float]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.time()
            t0 = time.perf_counter()
            self.sock.sendall(b'{"op":"hello"}\n')
            self.file.readline()
            self.probes.append((sent, time.perf_counter() - t0))
            time.sleep(PROBE_EVERY_S)
        self.sock.close()


def stalls(home: Path, scrubs: int, paths: list[Path]) -> tuple[list[float], float, list[float], list[float]]:
    """Per scrub, the longest wait of a probe overlapping it; the longest outside; each scrub's
    seconds and MB/s."""
    daemon, _ = start_daemon(home, env={"DOCPILOT_SCRUB_INTERVAL_DAYS": str(INTERVAL_DAYS),
                                        "DOCPILOT_AUTOSAVE_INTERVAL": "3600"})
    windows: list[tuple[float, float]] = []
    rates: list[float] = []
    evict(paths)
    try:
        conn = Conn(daemon.socket_path)
        prober = Prober(daemon.socket_path)
        prober.start()
        seen = conn.call({"op": "status"})["daemon"].get("scrub")
        deadline = time.monotonic() + scrubs * INTERVAL_DAYS * 86_400 * 3 + 120
        while len(windows) < scrubs and time.monotonic() < deadline:
            time.sleep(0.25)
            last = conn.call({"op": "status"})["daemon"].get("scrub")
            if last is not None and last != seen:
                seen = last
                if last["problems"]:
                    raise RuntimeError(f"scrub of an intact root found problems: {json.dumps(last)}")
                start = timestamps.parse_ns(last["at"]) / 1e9
                windows.append((start, start + last["seconds"]))
                rates.append(last["bytes"] / 1e6 / last["seconds"])
                evict(paths)
        prober.stop.set()
        prober.join()
        conn.close()
    finally:
        stop_daemon(daemon)
    if len(windows) < scrubs:
        raise RuntimeError(f"{len(windows)} of {scrubs} scheduled scrubs ran")
    worst = []
    for start, end in windows:
        during = [wait for sent, wait in prober.probes if sent <= end and sent + wait >= start]
        worst.append(max(during) if during else 0.0)
    outside = [wait for sent, wait in prober.probes
               if not any(sent <= end and sent + wait >= start for start, end in windows)]
    return worst, max(outside, default=0.0), [end - start for start, end in windows], rates


def spread(values: list[float], unit: str = "") -> str:
    if unit:
        return f"{min(values):.0f}/{statistics.median(values):.0f}/{max(values):.0f} {unit}"
    return f"{ms(min(values))}/{ms(statistics.median(values))}/{ms(max(values))}"


def run(quick: bool) -> list[Figure]:
    sessions = 400 if quick else 10_000
    rounds = 2 if quick else 3
    scrubs = 1 if quick else 3
    with workdir("scrub") as tmp:
        home = tmp / "home"
        write_data_root(home, sessions, commands=200)
        add_compressed_generations(home)
        paths = files_of(home)
        scrub_mbs, read_mbs, files, size = throughput(home, rounds, paths)
        worst, outside, durations, rates = stalls(home, scrubs, paths)
    ratio = statistics.median(scrub_mbs) / statistics.median(read_mbs)
    what = f"{sessions:,} sessions, {files:,} files, {size / 1e6:.0f} MB"
    longest = max(worst)
    return [
        Figure(f"scrub throughput vs a plain read of the same files ({what})", f"{ratio:.2f}x",
               f">= {GOAL_RATIO}x", ratio >= GOAL_RATIO,
               note=f"scrub {spread(scrub_mbs, 'MB/s')}, read {spread(read_mbs, 'MB/s')} (min/median/max, "
                    f"{rounds} each, alternately, from the disk: the files dropped from the page cache before each)"),
        Figure(f"longest request wait during the daemon's scheduled scrub ({what})", ms(longest),
               f"<= {GOAL_STALL_S * 1e3:.0f} ms", longest <= GOAL_STALL_S,
               note=f"worst per scrub min/median/max {spread(worst)} over {len(worst)} scrub(s) of "
                    f"{statistics.median(durations):.1f} s at {spread(rates, 'MB/s')} "
                    f"({statistics.median(rates) / statistics.median(read_mbs):.2f}x the plain read); "
                    f"outside scrubs max {ms(outside)}"),
    ]


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
