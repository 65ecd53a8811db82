"""One load-generating client process for the throughput benchmark (stdlib only, starts fast).

    python benchmarks/load_client.py SOCKET SESSION COUNT [OP]

Connects, prints "ready", waits for a line on stdin, then sends COUNT requests (OP "annotate" by
default: a note to SESSION) one at a time, each after the previous reply, and prints one JSON line:
start and end on the system-wide monotonic clock, per-request latencies, and how many failed.
"""

from __future__ import annotations

import json
import socket
import sys
import time


def main(socket_path: str, session: str, count: int, op: str = "annotate") -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    if op == "annotate":
        lines = [json.dumps({"op": op, "session": session, "text": f"note {i}"}).encode() + b"\n" for i in range(count)]
    else:
        lines = [json.dumps({"op": op}).encode() + b"\n"] * count
    print("ready", flush=True)
    sys.stdin.readline()
    clock = time.monotonic
    latencies = []
    buffer = b""
    failures = 0
    started = clock()
    for line in lines:
        t0 = clock()
        sock.sendall(line)
        while b"\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("daemon closed the connection")
            buffer += chunk
        reply, _, buffer = buffer.partition(b"\n")
        if not reply.startswith(b'{"ok":true'):
            failures += 1
        latencies.append(clock() - t0)
    ended = clock()
    print(json.dumps({"started": started, "ended": ended, "latencies": latencies, "failures": failures}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
