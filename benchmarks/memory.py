"""Memory: the idle daemon's resident set, the bytes each command of a live session holds, and
whether the memory a `show` of a very large session takes is given back.

    python benchmarks/memory.py [--quick]

Idle: `docpilotd run` on an empty data root, read from /proc once it has answered and settled.
Per command: the same daemon started on a data root holding one live session of 100,000 commands
(a note every 25), minus the idle figure, divided by the number of commands (the session's events
and notes included: that is what a command costs to keep). Both are resident set sizes, what the
system pays, measured in the same run.

After show: a daemon holding one live session of 1,000,000 commands (--quick: 100,000) answers
`show` several times to a reader that takes the reply off the socket as fast as it can and keeps
none of it (the client's memory is not the daemon's). The daemon's RSS is read before the first
show, sampled every few milliseconds during each (peak) and read again a moment after each: the
figures are after / before and peak / before, per show. A daemon that encodes the whole session at
once holds about twice the session's JSON at the peak (2.5x its RSS at 1,000,000 commands), and
whatever of it the allocator keeps afterwards.
Meanwhile another client asks `status` and `hello` a few milliseconds apart: the longest wait of
those overlapping a show (goal <= 50 ms, as for checkpoints). Then one `generate` of the same session, for context (no goal): its RSS after / before (before:
what the shows left) and its peak.
"""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common import Figure, build_session, ms, percentile, rss_bytes, start_daemon, stop_daemon, workdir, write_file

from docpilotd.storage import snapshot

GOAL_IDLE = 40 * 1024 * 1024
GOAL_PER_COMMAND = 1024
GOAL_AFTER_SHOW = 1.10
GOAL_PEAK_SHOW = 1.10  # streamed: a slice or two of the reply at a time, never the whole of it
GOAL_WAIT_S = 0.050  # what any other request may wait meanwhile
SETTLE_S = 1.0
MB = 2**20


def settled_rss(home: Path) -> int:
    """RSS of a daemon started on `home`, after it answered and had a moment to settle."""
    daemon, _ = start_daemon(home, env={"DOCPILOT_DURABILITY": "always"})
    try:
        assert daemon.proc is not None
        time.sleep(SETTLE_S)
        return rss_bytes(daemon.proc.pid)
    finally:
        stop_daemon(daemon)


def data_root_with(home: Path, commands: int) -> str:
    """A data root holding one live session of `commands` commands; returns its id."""
    for name in ("sessions", "backups", "journal", "quarantine", "spool", "run"):
        (home / name).mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    session = build_session(commands)
    write_file(home / "sessions" / f"{session.id}.json", snapshot.encode(session, 1))
    return session.id


def ask_once(path: Path, op: str, session_id: str) -> int:
    """Ask for `op` (show, generate) and read the reply to its end, keeping nothing; returns its
    size in bytes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(600)
        sock.connect(str(path))
        sock.sendall(b'{"op":"%s","id":1,"session":"%s"}\n' % (op.encode(), session_id.encode()))
        size, last = 0, b""
        while not last.endswith(b"\n"):
            last = sock.recv(1 << 20)
            if not last:
                raise RuntimeError("the daemon closed the connection before the reply ended")
            size += len(last)
        if size < 100:
            raise RuntimeError(f"{op} did not answer with a session or a document")
        return size


def sampled_peak(pid: int, action: threading.Event, peak: list[int]) -> None:
    while not action.is_set():
        try:
            peak[0] = max(peak[0], rss_bytes(pid))
        except (OSError, RuntimeError):
            return
        time.sleep(0.005)


@dataclass
class Replies:
    before: int  # RSS before the first request
    peaks: list[int]  # peak RSS during each
    afters: list[int]  # RSS a moment after each
    size: int  # bytes of a reply
    waits: list[float]  # how long each probe of another client waited, of those overlapping one


PROBER = """
import json, signal, socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
clock = time.monotonic
out, buffer, stop, n = [], b"", [], 0
signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))
print("ready", flush=True)
while not stop:
    t0 = clock()
    n += 1
    sock.sendall(b'{"op":"status"}\\n' if n % 2 else b'{"op":"hello"}\\n')
    while b"\\n" not in buffer:
        buffer += sock.recv(65536)
    _, _, buffer = buffer.partition(b"\\n")
    out.append((t0, clock() - t0))
    time.sleep(0.002)
print(json.dumps(out), flush=True)
"""


def reply_rss(home: Path, session_id: str, asked: list[str]) -> dict[str, Replies]:
    """The daemon's RSS around each request of `asked` (ops, in order), by op."""
    daemon, _ = start_daemon(home, env={"DOCPILOT_DURABILITY": "always", "DOCPILOT_AUTOSAVE_INTERVAL": "3600"})
    try:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        time.sleep(SETTLE_S)
        found: dict[str, Replies] = {}
        before = rss_bytes(pid)
        # Another client, asking all along (status and hello, a few ms apart): how long it waits.
        prober = subprocess.Popen([sys.executable, "-I", "-S", "-c", PROBER, str(daemon.socket_path)],
                                  stdout=subprocess.PIPE, text=True)
        assert prober.stdout is not None and prober.stdout.readline().strip() == "ready"
        windows: list[tuple[str, float, float]] = []
        for op in asked:
            done, peak = threading.Event(), [0]
            sampler = threading.Thread(target=sampled_peak, args=(pid, done, peak))
            sampler.start()
            started = time.monotonic()
            try:
                size = ask_once(daemon.socket_path, op, session_id)
            finally:
                done.set()
                sampler.join()
            windows.append((op, started, time.monotonic()))
            time.sleep(SETTLE_S)
            after = rss_bytes(pid)
            replies = found.setdefault(op, Replies(before, [], [], size, []))
            replies.peaks.append(max(peak[0], after))
            replies.afters.append(after)
        prober.send_signal(signal.SIGUSR1)
        probes = json.loads(prober.communicate(timeout=60)[0])
        for op, start, end in windows:
            found[op].waits += [wait for sent, wait in probes if sent < end and sent + wait > start]
        return found
    finally:
        stop_daemon(daemon)


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def run(quick: bool) -> list[Figure]:
    commands = 20_000 if quick else 100_000
    large = 100_000 if quick else 1_000_000
    shows = 2 if quick else 3
    with workdir("memory") as tmp:
        idle = min(settled_rss(tmp / "empty") for _ in range(2))
        data_root_with(tmp / "large", commands)
        loaded = settled_rss(tmp / "large")
        session_id = data_root_with(tmp / "huge", large)
        measured = reply_rss(tmp / "huge", session_id, ["show"] * shows + ["generate"])
    per_command = (loaded - idle) / commands
    shown, generated = measured["show"], measured["generate"]
    before, peaks, afters, size = shown.before, shown.peaks, shown.afters, shown.size
    ratios = [after / before for after in afters]
    peak_ratios = [peak / before for peak in peaks]
    # After the shows, so that its before is what they left.
    generated_before = afters[-1]
    return [
        Figure("idle daemon RSS (empty data root)", f"{idle / MB:.1f} MB", "<= 40 MB", idle <= GOAL_IDLE),
        Figure(
            f"bytes held per command (live session of {commands:,})", f"{per_command:,.0f} B",
            "<= 1 KB", per_command <= GOAL_PER_COMMAND, note=f"RSS {loaded / MB:.1f} MB",
        ),
        Figure(
            f"RSS after show of {large:,} commands vs before (min/median/max of {shows} shows)",
            f"{spread(ratios)}x", f"<= {GOAL_AFTER_SHOW:.2f}x", max(ratios) <= GOAL_AFTER_SHOW,
            note=f"before {before / MB:,.0f} MB, after {spread([a / MB for a in afters], '{:,.0f}')} MB",
        ),
        Figure(
            f"peak RSS during show of {large:,} commands vs before (min/median/max of {shows} shows)",
            f"{spread(peak_ratios)}x", f"<= {GOAL_PEAK_SHOW:.2f}x", max(peak_ratios) <= GOAL_PEAK_SHOW,
            note=f"peak {spread([p / MB for p in peaks], '{:,.0f}')} MB; the reply is {size / MB:,.0f} MB of JSON",
        ),
        Figure(
            f"longest request wait during a show of {large:,} commands", ms(max(shown.waits)),
            f"<= {GOAL_WAIT_S * 1e3:.0f} ms", max(shown.waits) <= GOAL_WAIT_S,
            note=f"p99 {ms(percentile(shown.waits, 0.99))} over {len(shown.waits):,} requests of another client "
                 f"during {shows} shows",
        ),
        # Context, no goal: generate renders the whole session in memory (render/view.py) before
        # any of the document is sent; its reply is written in slices and its memory trimmed after.
        Figure(
            f"RSS after generate of {large:,} commands vs before",
            f"{generated.afters[0] / generated_before:.2f}x",
            note=f"before {generated_before / MB:,.0f} MB, peak {generated.peaks[0] / MB:,.0f} MB "
                 f"({generated.peaks[0] / generated_before:.2f}x), after {generated.afters[0] / MB:,.0f} MB; "
                 f"the document is {generated.size / MB:,.0f} MB",
        ),
    ]


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
