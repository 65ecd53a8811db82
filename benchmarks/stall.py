"""Loop stalls: how long a request waits while a 100,000-command session is checkpointed.

    python benchmarks/stall.py [--quick]

A prober process sends requests one after another over its own connection, alternately a
`status` and a note to the large session itself, and records when each was sent and how long its
reply took. Meanwhile this process repeatedly changes the large live session and asks for a
checkpoint (`save`, which is what autosave does every 30 s), 30 times (--quick: 3). The figures
are over every probe whose wait overlapped a checkpoint: its 99th percentile and its maximum, and,
per checkpoint, the worst wait of the probes that overlapped it (min/median/max over the
checkpoints: one slow checkpoint among thirty shows as the max, not as the typical case). Two
cases: the daemon that imported the session (everything it wrote is known to it) and freshly
restarted daemons, whose first checkpoint also meets backups written by the previous run.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import Conn, Figure, build_session, ms, percentile, start_daemon, stop_daemon, workdir

from docpilotd.storage import snapshot

GOAL_P99_S = 0.020
GOAL_MAX_S = 0.050
PROBER = """
import json, signal, socket, sys, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
clock = time.monotonic
out = []
buffer = b""
stop = []
signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))
print("ready", flush=True)
note = json.dumps({"op": "annotate", "session": sys.argv[2], "text": "probe"}).encode() + b"\\n"
n = 0
while not stop:
    t0 = clock()
    n += 1
    sock.sendall(note if n % 2 else b'{"op":"status"}\\n')
    while b"\\n" not in buffer:
        buffer += sock.recv(65536)
    _, _, buffer = buffer.partition(b"\\n")
    out.append((t0, clock() - t0))
print(json.dumps(out), flush=True)
"""


@dataclass
class Probed:
    during: list[float]  # every probe wait that overlapped a checkpoint
    worst: list[float]  # per checkpoint: the longest wait of a probe overlapping it
    outside: list[float]  # every other probe wait
    checkpoints: list[float]  # how long each checkpoint (`save`) took


def probe_during(socket_path: Path, conn: Conn, session: str, checkpoints: int) -> Probed:
    prober = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", PROBER, str(socket_path), session], stdout=subprocess.PIPE, text=True,
    )
    assert prober.stdout is not None and prober.stdout.readline().strip() == "ready"
    windows: list[tuple[float, float]] = []
    time.sleep(0.3)
    for i in range(checkpoints):
        conn.call({"op": "annotate", "session": session, "text": f"before checkpoint {i}"})
        t0 = time.monotonic()
        saved = conn.call({"op": "save"})["saved"]
        windows.append((t0, time.monotonic()))
        assert saved >= 1, "the large session was not checkpointed"
        time.sleep(0.4)
    prober.send_signal(signal.SIGUSR1)
    probes = json.loads(prober.communicate(timeout=120)[0])

    def overlaps(sent: float, wait: float, start: float, end: float) -> bool:
        return sent < end and sent + wait > start

    worst = []
    for start, end in windows:
        waits = [wait for sent, wait in probes if overlaps(sent, wait, start, end)]
        if not waits:
            raise RuntimeError("a checkpoint that no probe overlapped: the prober stopped too early")
        worst.append(max(waits))
    during = [wait for sent, wait in probes if any(overlaps(sent, wait, s, e) for s, e in windows)]
    outside = [wait for sent, wait in probes if not any(overlaps(sent, wait, s, e) for s, e in windows)]
    return Probed(during, worst, outside, [end - start for start, end in windows])


def spread(values: list[float]) -> str:
    return "/".join(ms(v) for v in (min(values), statistics.median(values), max(values)))


def run(quick: bool) -> list[Figure]:
    commands = 20_000 if quick else 100_000
    checkpoints = 3 if quick else 30
    restarts = 1 if quick else 3
    with workdir("stall") as tmp:
        data = snapshot.encode_plain(build_session(commands))
        source = tmp / "large.json"
        source.write_bytes(data)
        env = {"DOCPILOT_DURABILITY": "always", "DOCPILOT_AUTOSAVE_INTERVAL": "3600"}
        daemon, _ = start_daemon(tmp / "home", env=env)
        try:
            conn = Conn(daemon.socket_path)
            session = conn.call({"op": "import", "path": str(source)})["id"]
            running = probe_during(daemon.socket_path, conn, session, checkpoints)
            conn.close()
        finally:
            stop_daemon(daemon)
        restarted: list[Probed] = []
        for _ in range(restarts):
            daemon, _ = start_daemon(tmp / "home", env=env)
            try:
                conn = Conn(daemon.socket_path)
                restarted.append(probe_during(daemon.socket_path, conn, session, 1))
                conn.close()
            finally:
                stop_daemon(daemon)
    during = running.during + [wait for r in restarted for wait in r.during]
    worst = running.worst + [wait for r in restarted for wait in r.worst]
    outside = running.outside + [wait for r in restarted for wait in r.outside]
    first = [wait for r in restarted for wait in r.worst]
    p99, longest = percentile(during, 0.99), max(during)
    what = f"{len(worst)} checkpoints of {commands:,} commands ({checkpoints} running, {restarts} first after a restart)"
    return [
        Figure(
            f"request wait during a checkpoint, p99 ({what})", ms(p99), f"<= {GOAL_P99_S * 1e3:.0f} ms",
            p99 <= GOAL_P99_S, note=f"{len(during):,} probes overlapped a checkpoint",
        ),
        Figure(
            f"longest request wait during a checkpoint ({what})", ms(longest), f"<= {GOAL_MAX_S * 1e3:.0f} ms",
            longest <= GOAL_MAX_S,
            note=f"worst wait per checkpoint min/median/max {spread(worst)} (first after a restart: {spread(first)}); "
                 f"checkpoint takes {spread(running.checkpoints)}; outside checkpoints p99 "
                 f"{ms(percentile(outside, 0.99))}, max {ms(max(outside))}",
        ),
    ]


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
