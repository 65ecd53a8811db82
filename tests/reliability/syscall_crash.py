"""A crash at a chosen file-system call of the real daemon, with strace's fault injection.

`strace -f -e inject=SYSCALL:signal=SIGKILL:when=N` kills the daemon at the N-th call of SYSCALL
(counted per thread, as strace does) while clients send changes and autosave checkpoints every few
hundred milliseconds (so saves, backup rotations and journal appends and trims all happen). The
daemon is then started normally and every change it acknowledged must be there exactly once.
The calls chosen are the ones only the storage layer makes: fsync, rename, link, unlink,
ftruncate, plus write (journal appends and snapshot bytes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .kill9 import DaemonProcess, request

SYSCALLS = ("fsync", "rename", "link", "unlink", "ftruncate", "write")


def available() -> bool:
    return shutil.which("strace") is not None


@dataclass
class CrashFigures:
    points_tried: int = 0
    crashes: int = 0  # points where the injected kill happened
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return self.lost + self.duplicated + self.unexpected


def _client(path: Path, session: str, prefix: str, sent: list[str], acked: list[str], stop: threading.Event) -> None:
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        n = 0
        while not stop.is_set():
            text = f"{prefix}-{n}"
            n += 1
            sent.append(text)
            sock.sendall(json.dumps({"op": "annotate", "session": session, "text": text}).encode() + b"\n")
            line = reader.readline()
            if not line:
                return
            if json.loads(line).get("ok"):
                acked.append(text)
            time.sleep(0.002)
    except (OSError, ValueError):
        return


def crash_once(syscall: str, when: int, run_for: float = 2.5) -> tuple[bool, int, list[str]]:
    """One crash point; returns (whether the kill happened, acknowledged count, violations)."""
    with tempfile.TemporaryDirectory(prefix="dpc-", dir="/tmp") as tmp:
        home = Path(tmp) / "h"
        env = {"DOCPILOT_AUTOSAVE_INTERVAL": "0.25", "DOCPILOT_BACKUPS_KEPT": "1"}
        plain = DaemonProcess(home, env=env)
        plain.start()
        session = request(plain.socket_path, {"op": "start", "description": "crash"})["result"]["id"]
        request(plain.socket_path, {"op": "annotate", "session": session, "text": "seed"})
        plain.terminate()
        traced = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}",
             "-e", f"inject={syscall}:signal=SIGKILL:when={when}",
             sys.executable, "-m", "docpilotd.admin", "run"],
            env=plain.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        sent: list[str] = []
        acked: list[str] = ["seed"]
        stop = threading.Event()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and traced.poll() is None:
                try:
                    request(plain.socket_path, {"op": "hello"}, timeout=1)
                    break
                except (OSError, ValueError):
                    time.sleep(0.02)
            threads = [
                threading.Thread(target=_client, args=(plain.socket_path, session, f"c{i}", sent, acked, stop), daemon=True)
                for i in range(3)
            ]
            for thread in threads:
                thread.start()
            end = time.monotonic() + run_for
            while time.monotonic() < end and traced.poll() is None:
                time.sleep(0.02)
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        finally:
            crashed = traced.poll() is not None
            if traced.poll() is None:
                os.killpg(traced.pid, signal.SIGKILL)
            traced.wait()
        plain.start()
        try:
            notes = request(plain.socket_path, {"op": "show", "session": session}, timeout=60)["result"]["annotations"]
        finally:
            plain.terminate()
    present: dict[str, int] = {}
    for note in notes:
        present[note["text"]] = present.get(note["text"], 0) + 1
    problems = [f"{syscall}#{when}: lost {t}" for t in set(acked) if t not in present]
    problems += [f"{syscall}#{when}: duplicated {t}" for t, n in present.items() if n > 1]
    problems += [f"{syscall}#{when}: unexpected {t}" for t in present if t != "seed" and t not in set(sent)]
    return crashed, len(set(acked)), problems


def run(points: list[tuple[str, int]]) -> CrashFigures:
    figures = CrashFigures()
    for syscall, when in points:
        crashed, acknowledged, problems = crash_once(syscall, when)
        figures.points_tried += 1
        figures.crashes += int(crashed)
        figures.acknowledged += acknowledged
        for problem in problems:
            kind = problem.split(": ")[1].split()[0]
            setattr(figures, kind, getattr(figures, kind) + 1)
            if len(figures.examples) < 5:
                figures.examples.append(problem)
    return figures


def default_points(quick: bool) -> list[tuple[str, int]]:
    depths = (1, 2, 4, 7) if quick else tuple(range(1, 16))
    return [(syscall, n) for syscall in SYSCALLS for n in depths]
