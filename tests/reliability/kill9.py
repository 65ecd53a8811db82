"""kill -9 of the real daemon at random moments while several clients send changes.

Each round starts `docpilotd run` on the same data root, lets `clients` threads send annotations
(each with a text never used before) over their own socket connections, and kills the daemon with
SIGKILL at a random moment. A Jepsen-style checker then compares what every client was told with
what the restarted daemon serves: every acknowledged change present exactly once (lost 0,
duplicated 0), and nothing present that was never sent (unexpected 0). Changes in flight at the
kill (sent, no reply) may land or not; both are correct.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figures:
    kills: int = 0
    sent: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return self.lost + self.duplicated + self.unexpected


class DaemonProcess:
    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = dict(os.environ, DOCPILOT_HOME=str(home), XDG_CONFIG_HOME=str(home / "xdg"), **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.home / "run" / "docpilotd.sock"

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "docpilotd.admin", "run"], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                request(self.socket_path, {"op": "hello"}, timeout=1.0)
                return
            except (OSError, ValueError):
                time.sleep(0.02)
        raise RuntimeError("daemon did not come up")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close()

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._close()
        return code

    def _close(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


def request(path: Path, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
    return json.loads(data)


def _client(path: Path, session: str, prefix: str, sent: list[str], acked: list[str], stop: threading.Event) -> None:
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(str(path))
    except OSError:
        return
    buffer = b""
    n = 0
    try:
        while not stop.is_set():
            text = f"{prefix}-{n}"
            n += 1
            sent.append(text)
            sock.sendall(json.dumps({"op": "annotate", "session": session, "text": text}).encode() + b"\n")
            while b"\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            line, _, buffer = buffer.partition(b"\n")
            if json.loads(line).get("ok"):
                acked.append(text)
    except (OSError, ValueError):
        return
    finally:
        sock.close()


def run(home: Path, kills: int, clients: int = 6, seed: int = 7, max_delay: float = 0.4) -> Figures:
    rng = random.Random(seed)
    figures = Figures()
    daemon = DaemonProcess(home)
    daemon.start()
    sessions = [request(daemon.socket_path, {"op": "start", "description": f"kill9 {i}"})["result"]["id"] for i in range(2)]
    sent: list[str] = []
    acked: list[str] = []
    try:
        for round_no in range(kills):
            if round_no:
                daemon.start()
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=_client,
                    args=(daemon.socket_path, sessions[i % 2], f"r{round_no}c{i}", sent, acked, stop),
                    daemon=True,
                )
                for i in range(clients)
            ]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.01, max_delay))
            daemon.kill9()
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            figures.kills += 1
        daemon.start()
        present: dict[str, int] = {}
        for session in sessions:
            reply = request(daemon.socket_path, {"op": "show", "session": session}, timeout=60)
            for note in reply["result"]["annotations"]:
                present[note["text"]] = present.get(note["text"], 0) + 1
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.terminate()
    sent_set = set(sent)
    figures.sent = len(sent_set)
    figures.acknowledged = len(set(acked))
    for text in set(acked):
        if text not in present:
            figures.lost += 1
            if len(figures.examples) < 5:
                figures.examples.append(f"lost {text}")
    for text, count in present.items():
        if count > 1:
            figures.duplicated += count - 1
        if text not in sent_set:
            figures.unexpected += 1
    return figures
