"""Spool ingestion: request waits and memory while the daemon reads a 200,000-line spool file.

    python benchmarks/spool_ingest.py [--quick]

A daemon runs with a live session. A spool file of N lines (200,000, or 20,000 in quick mode) is
written outside the data root, each line a `record` exactly as the hooks write it (one shell
instance `bench-{pid}`, capture ids counting up from 1, start times increasing), then renamed into
spool/ so that all of it appears at once, as after a long daemon outage. While the daemon ingests
it, a pinger process sends `hello` over its own persistent connection every 5 ms and records each
round trip; this process asks for the session's command count every 100 ms on another connection
until it is N (or a timeout: 300 s, 60 s quick). Figures: the longest round trip of any ping that
overlapped the ingestion (the loop's largest stall), and VmHWM after minus VmRSS before (the
daemon's peak growth). The count must end at exactly N: each line recorded once, none lost.

Why it can miss: a ping measures the stall it happens to meet; a stall shorter than 5 ms between
two pings is not seen, but a long one always is. The pinger is a separate process, but it shares
the machine (2 cores here) with the daemon and this process, so a descheduled pinger looks like a
stall. The peak RSS growth includes what the session holds once the commands are in (the memory
benchmark's bytes per command, times N: a live session is held in memory), not only the reading;
so a second daemon reads N lines that name a stopped session (each refused, nothing kept), and
its peak growth is what reading itself holds. The ingestion time has the 100 ms resolution of
the count polling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import Conn, Figure, ms, percentile, rss_bytes, start_daemon, stop_daemon, workdir

GOAL_STALL_S = 0.050
GOAL_GROWTH = 50 * 1024 * 1024
PING_INTERVAL_S = 0.005
PINGER = """
import json, select, socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
interval = float(sys.argv[2])
clock = time.monotonic
out = []
buffer = b""
print("ready", flush=True)
next_at = clock()
while True:
    t0 = clock()
    sock.sendall(b'{"op":"hello"}\\n')
    while b"\\n" not in buffer:
        buffer += sock.recv(65536)
    _, _, buffer = buffer.partition(b"\\n")
    out.append((t0, clock() - t0))
    next_at = max(next_at + interval, clock())
    # Sleep until the next tick; a line on stdin (or its end) means stop.
    if select.select([sys.stdin], [], [], max(0.0, next_at - clock()))[0]:
        break
print(json.dumps(out), flush=True)
"""


def vm_field(pid: int, name: str) -> int:
    """A Vm* field of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {name} for pid {pid}")


def write_spool(path: Path, session: str, lines: int, instance: str) -> int:
    """`lines` record lines as a hook writes them; returns the file's size."""
    start_us = time.time_ns() // 1000
    size = 0
    with open(path, "wb") as handle:
        chunk = []
        for i in range(lines):
            chunk.append(json.dumps({
                "op": "record", "shell": "bash", "session": session,
                "command": f"echo line-{i} with some typical text && make -C build/{i % 97} target-{i} | tee log/{i % 13}.txt",
                "cwd": "/tmp", "exit_code": 0, "started_us": start_us + i, "duration_ms": 1,
                "capture_id": f"{instance}:{i + 1}",
            }, separators=(",", ":")))
            if len(chunk) == 10_000 or i == lines - 1:
                data = ("\n".join(chunk) + "\n").encode()
                handle.write(data)
                size += len(data)
                chunk = []
    os.chmod(path, 0o600)
    return size


def reading_only(lines: int, timeout: float) -> tuple[float, int]:
    """Peak RSS growth (bytes) and time while the daemon reads `lines` lines that it must refuse
    (they name a session that has stopped), so that nothing read is kept: what reading itself holds.
    A last line for a live session tells when everything before it was read (files are read in order)."""
    instance = f"bench-read-{os.getpid()}"
    with workdir("spool-read") as tmp:
        home = tmp / "home"
        daemon, _ = start_daemon(home)
        try:
            assert daemon.proc is not None
            pid = daemon.proc.pid
            conn = Conn(daemon.socket_path)
            stopped = conn.call({"op": "start", "description": "stopped before its lines arrive"})["id"]
            conn.call({"op": "stop", "session": stopped})
            live = conn.call({"op": "start", "description": "the end marker"})["id"]
            staging = tmp / f"{instance}.jsonl"
            write_spool(staging, stopped, lines, instance)
            with open(staging, "ab") as handle:
                handle.write(json.dumps({
                    "op": "record", "shell": "bash", "session": live, "command": "echo end", "cwd": "/tmp",
                    "exit_code": 0, "capture_id": f"{instance}:{lines + 1}",
                }).encode() + b"\n")
            time.sleep(0.5)
            rss_before = rss_bytes(pid)
            started = time.monotonic()
            os.rename(staging, home / "spool" / staging.name)
            while time.monotonic() - started < timeout:
                time.sleep(0.1)
                if conn.call({"op": "status", "session": live})["session"]["commands"] >= 1:
                    break
            elapsed = time.monotonic() - started
            growth = vm_field(pid, "VmHWM") - rss_before
            conn.close()
        finally:
            stop_daemon(daemon)
    return growth, elapsed


def run(quick: bool) -> list[Figure]:
    lines = 20_000 if quick else 200_000
    timeout = 60.0 if quick else 300.0
    instance = f"bench-{os.getpid()}"
    with workdir("spool-ingest") as tmp:
        home = tmp / "home"
        daemon, _ = start_daemon(home)
        try:
            assert daemon.proc is not None
            pid = daemon.proc.pid
            conn = Conn(daemon.socket_path)
            session = conn.call({"op": "start", "description": f"spool ingest of {lines:,} lines"})["id"]
            durability = conn.call({"op": "status"})["daemon"]["durability"]
            staging = tmp / f"{instance}.jsonl"
            size = write_spool(staging, session, lines, instance)
            time.sleep(0.5)  # the daemon settles after the start
            rss_before = rss_bytes(pid)
            hwm_before = vm_field(pid, "VmHWM")
            pinger = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", PINGER, str(daemon.socket_path), str(PING_INTERVAL_S)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            assert pinger.stdout is not None and pinger.stdout.readline().strip() == "ready"
            time.sleep(0.3)
            started = time.monotonic()
            os.rename(staging, home / "spool" / staging.name)
            count = 0
            while time.monotonic() - started < timeout:
                time.sleep(0.1)
                count = conn.call({"op": "status", "session": session})["session"]["commands"]
                if count >= lines:
                    break
            finished = time.monotonic()
            pings = json.loads(pinger.communicate("stop\n", timeout=60)[0])
            hwm_after = vm_field(pid, "VmHWM")
            time.sleep(1.0)  # anything read twice would show up now
            final = conn.call({"op": "status", "session": session})["session"]["commands"]
            rss_settled = rss_bytes(pid)
            conn.close()
        finally:
            stop_daemon(daemon)
    read_growth, read_elapsed = reading_only(lines, timeout)
    during = [wait for sent, wait in pings if sent < finished and sent + wait > started]
    if not during:
        raise RuntimeError("no ping overlapped the ingestion")
    elapsed = finished - started
    done = final >= lines
    correct = final == lines
    longest = max(during)
    problems = []
    if not done:
        problems.append(f"NOT ingested within {timeout:.0f} s: {final:,} of {lines:,} lines")
    elif not correct:
        problems.append(f"session holds {final:,} commands for {lines:,} lines: NOT each exactly once")
    growth = hwm_after - rss_before
    mb = 2**20
    return [
        Figure(
            f"spool ingest of {lines:,} lines: longest wait of any request",
            f"max {ms(longest)}, p99 {ms(percentile(during, 0.99))} ({len(during):,} pings)",
            f"<= {GOAL_STALL_S * 1e3:.0f} ms", longest <= GOAL_STALL_S and correct,
            note="; ".join([*problems, f"p50 {ms(percentile(during, 0.5))}, one ping every {PING_INTERVAL_S * 1e3:.0f} ms"]),
        ),
        Figure(
            f"spool read of {lines:,} lines kept nowhere: peak RSS growth",
            f"{read_growth / mb:.1f} MB in {read_elapsed:.1f} s",
            f"<= {GOAL_GROWTH // mb} MB", read_growth <= GOAL_GROWTH,
            note="the lines name a stopped session: what reading and parsing alone hold",
        ),
        # Context, not a goal: a live session is held in memory, so N recorded commands cost N
        # times the memory benchmark's bytes per command (goal <= 1 KB) whatever the reading does.
        Figure(
            f"spool ingest of {lines:,} lines: peak RSS growth, the recorded commands included",
            f"{growth / mb:.1f} MB (VmHWM {hwm_after / mb:.1f} MB after, VmRSS {rss_before / mb:.1f} MB before)",
            note=f"settled RSS after {rss_settled / mb:.1f} MB (+{(rss_settled - rss_before) / mb:.1f} MB, "
                 f"{(rss_settled - rss_before) / max(final, 1):,.0f} B per command held), peak "
                 f"{max(0, hwm_after - rss_settled) / mb:.1f} MB above it; VmHWM before {hwm_before / mb:.1f} MB",
        ),
        Figure(
            f"spool ingest of {lines:,} lines: total time",
            f"{elapsed:.1f} s, {final / elapsed:,.0f} lines/s" + ("" if done else " (incomplete)"),
            note=f"file {size / mb:.1f} MB, durability {durability}",
        ),
    ]


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
