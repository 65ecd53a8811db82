"""Hostile clients against a real daemon, with leak checks.

Garbage, oversized lines, deep nesting, invalid UTF-8, slow senders that never finish a line, a
flood of connections, and a client of another uid (a child that drops to uid 65534 when the
suite runs as root). Meanwhile a well-behaved client must keep being served. Figures: daemon up,
requests of the well-behaved client that failed, its slowest answer, stored files changed (every
file under the data root hashed before and after), RSS growth, and open descriptors after the
attack against the baseline.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .kill9 import DaemonProcess, request


@dataclass
class HostileFigures:
    attacks: int = 0
    daemon_up: bool = False
    good_requests: int = 0
    good_failures: int = 0
    slowest_good_ms: float = 0.0
    files_changed: int = 0
    rss_growth_kb: int = 0
    fds_before: int = 0
    fds_after: int = 0
    other_uid: str = "not tried"
    examples: list[str] = field(default_factory=list)


def _tree(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        # Not run/ (the socket, the lock) nor index/ (the search index: derived, written in the background).
        if path.is_file() and path.parts[len(root.parts):][:1] not in (("run",), ("index",)):
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _send(path: Path, data: bytes, read: bool = True) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if not read:
            return b""
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks)


def _other_uid(path: Path) -> str:
    if os.getuid() != 0:
        return "skipped: needs root to drop to another uid"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, try to talk to the daemon
        os.close(read_end)
        outcome = b"?"
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                sock.sendall(b'{"op":"sessions"}\n')
                reply = sock.recv(65536)
                outcome = b"served" if b'"ok":true' in reply else b"refused by the daemon"
        except PermissionError:
            outcome = b"refused by the file system (EACCES)"
        except OSError as exc:
            outcome = f"refused ({exc.strerror})".encode()
        os.write(write_end, outcome)
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as handle:
        return handle.read().decode()


def run(flood: int = 300, slow: int = 50) -> HostileFigures:
    figures = HostileFigures()
    with tempfile.TemporaryDirectory(prefix="dpx-", dir="/tmp") as tmp:
        home = Path(tmp) / "h"
        daemon = DaemonProcess(home, env={"DOCPILOT_MAX_LINE_BYTES": "65536"})
        daemon.start()
        assert daemon.proc is not None
        pid = daemon.proc.pid
        sock = daemon.socket_path
        session = request(sock, {"op": "start", "description": "hostile"})["result"]["id"]
        request(sock, {"op": "annotate", "session": session, "text": "precious"})
        request(sock, {"op": "save"})
        time.sleep(0.3)
        before = _tree(home)
        figures.fds_before = _fds(pid)
        rss_before = _rss_kb(pid)
        stop = threading.Event()

        def good_client() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    ok = request(sock, {"op": "status"}, timeout=5).get("ok")
                except (OSError, ValueError):
                    ok = False
                figures.good_requests += 1
                figures.good_failures += 0 if ok else 1
                figures.slowest_good_ms = max(figures.slowest_good_ms, (time.monotonic() - started) * 1000)
                time.sleep(0.01)

        watcher = threading.Thread(target=good_client, daemon=True)
        watcher.start()
        payloads = [
            os.urandom(4096),
            b"\xff\xfe garbage \x00\x01\n" * 50,
            b"{not json}\n",
            b"[" * 100_000 + b"\n",
            b'{"op":"annotate","text":"\\ud800"}\n',
            b'{"op":"annotate","text":"caf\xe9"}\n',
            b'{"op":"format-disk"}\n',
            b'{"op":"annotate","session":"' + session.encode() + b'","text":' + b'"' + b"x" * 200_000 + b'"}\n',
            b"\n" * 10_000,
            b'{"op":"stop","session":7}\n',
            b'{"op":"import","path":"/dev/zero"}\n',
            b'{"op":"restore","session":"' + session.encode() + b'","backup":"../../etc/passwd"}\n',
        ]
        for payload in payloads:
            figures.attacks += 1
            try:
                _send(sock, payload)
            except OSError as exc:
                figures.examples.append(f"attack send failed: {exc}")
        # Slow senders: half a line each, never finished.
        slow_socks = []
        for _ in range(slow):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(sock))
            s.sendall(b'{"op":"hel')
            slow_socks.append(s)
        figures.attacks += 1
        # A flood of connections opened and dropped.
        for _ in range(flood):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(sock))
                s.close()
            except OSError:
                pass
        figures.attacks += 1
        figures.other_uid = _other_uid(sock)
        figures.attacks += 1
        time.sleep(0.5)
        for s in slow_socks:
            s.close()
        stop.set()
        watcher.join(timeout=10)
        time.sleep(0.5)
        figures.daemon_up = daemon.proc.poll() is None and request(sock, {"op": "hello"}).get("ok", False)
        deadline = time.monotonic() + 3
        figures.fds_after = _fds(pid)
        while figures.fds_after > figures.fds_before and time.monotonic() < deadline:
            time.sleep(0.1)
            figures.fds_after = _fds(pid)
        figures.rss_growth_kb = _rss_kb(pid) - rss_before
        after = _tree(home)
        figures.files_changed = sum(1 for k in set(before) | set(after) if before.get(k) != after.get(k))
        daemon.terminate()
    return figures


_ = json
