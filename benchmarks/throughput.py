"""Durable changes per second from 8 concurrent clients (group commit), each a separate process.

    python benchmarks/throughput.py [--quick]

Each client is its own Python process (threads of one process would share one GIL and measure the
client, not the daemon) with its own persistent connection, sending notes one at a time and waiting
for each reply (a closed loop, as a shell or an editor would). Clients first connect and report
ready; all then start together. Durability is "always": a reply means the change is fsynced, and
changes that arrive together share one fsync. Two workloads, alternated five times so that both
meet the same moments of a shared machine: all 8 clients on one session (eight terminals
documenting one task) and each client on its own session (its changes go to 8 files: 8 fsyncs per
round of the journal writer, side by side). The disk's write+fsync cost is measured in the same
run and shown beside.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from common import Conn, Figure, fsync_cost, ms, percentile, start_daemon, stop_daemon, workdir

CLIENTS = 8
CLIENT = Path(__file__).resolve().parent / "load_client.py"
GOAL = 10_000
GOAL_SESSIONS_RATIO = 0.8  # 8 clients on 8 sessions, against the same on one session


def drive(socket_path: Path, sessions: list[str], count: int, op: str = "annotate") -> tuple[float, list[float], int]:
    """Run CLIENTS client processes (client i on sessions[i % len]); (requests/s, latencies, failures)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-I", "-S", str(CLIENT), str(socket_path), sessions[i % len(sessions)], str(count), op],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for i in range(CLIENTS)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate(timeout=600)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    started = min(r["started"] for r in results)
    ended = max(r["ended"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    return len(latencies) / (ended - started), latencies, sum(r["failures"] for r in results)


def _spread(values: list[float]) -> str:
    return "/".join(f"{v:,.0f}" for v in (min(values), statistics.median(values), max(values)))


def run(quick: bool) -> list[Figure]:
    count = 300 if quick else 2500
    repeats = 2 if quick else 5
    figures: list[Figure] = []
    with workdir("tput") as tmp:
        fsync = fsync_cost(tmp)
        daemon, _ = start_daemon(tmp / "home", env={"DOCPILOT_DURABILITY": "always"})
        try:
            conn = Conn(daemon.socket_path)
            sessions = [conn.call({"op": "start", "description": f"throughput {i}"})["id"] for i in range(CLIENTS)]
            drive(daemon.socket_path, sessions[:1], 50)  # warm-up
            one: list[float] = []
            many: list[float] = []
            lat_one: list[float] = []
            lat_many: list[float] = []
            failed = 0
            # Alternated, so that both workloads meet the same moments of a shared machine.
            for _ in range(repeats):
                rate, lat, fails = drive(daemon.socket_path, sessions[:1], count)
                one.append(rate)
                lat_one += lat
                failed += fails
                rate, lat, fails = drive(daemon.socket_path, sessions, count)
                many.append(rate)
                lat_many += lat
                failed += fails
            total = sum(conn.call({"op": "status", "session": s})["session"]["annotations"] for s in sessions)
            rate_hello = drive(daemon.socket_path, sessions[:1], count, op="hello")[0]
            conn.close()
        finally:
            stop_daemon(daemon)
        # The same clients against a daemon that fsyncs nothing: what this machine allows at all.
        daemon, _ = start_daemon(tmp / "home-off", env={"DOCPILOT_DURABILITY": "off"})
        try:
            conn = Conn(daemon.socket_path)
            session_off = conn.call({"op": "start", "description": "throughput, durability off"})["id"]
            conn.close()
            drive(daemon.socket_path, [session_off], 50)
            rate_off = drive(daemon.socket_path, [session_off], count)[0]
        finally:
            stop_daemon(daemon)
    expected = CLIENTS * count * 2 * repeats + 50 * CLIENTS
    ok = failed == 0 and total == expected
    ratio = statistics.median(many) / statistics.median(one)
    figures.append(Figure(
        f"{CLIENTS} clients, one session, durability always",
        f"{_spread(one)} changes/s (min/median/max of {repeats}), p50 {ms(percentile(lat_one, 0.5))}, "
        f"p99 {ms(percentile(lat_one, 0.99))}",
        f">= {GOAL:,}/s", statistics.median(one) >= GOAL and ok,
        note=f"disk {ms(fsync)} per write+fsync ({1 / fsync:,.0f}/s if every change had its own)"
        + ("" if ok else f"; failures {failed}, stored {total} of {expected}"),
    ))
    figures.append(Figure(
        f"{CLIENTS} clients, {CLIENTS} sessions, durability always, vs one session",
        f"{ratio:.2f}x: {_spread(many)} changes/s, p50 {ms(percentile(lat_many, 0.5))}, "
        f"p99 {ms(percentile(lat_many, 0.99))}",
        f">= {GOAL_SESSIONS_RATIO}x", ratio >= GOAL_SESSIONS_RATIO and ok,
    ))
    figures.append(Figure(
        f"the same {CLIENTS} clients: durability off / hello only (this machine's ceiling)",
        f"{rate_off:,.0f} changes/s / {rate_hello:,.0f} requests/s",
    ))
    return figures


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
