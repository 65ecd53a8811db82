"""Fixtures of the service tests: real `docpilotd run` processes (see tests/daemon_harness.py) and a
datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import daemon, daemons, short_dir  # noqa: F401  (fixtures)


class NotifySocket:
    """An AF_UNIX datagram socket bound where NOTIFY_SOCKET points; `next()` returns one message."""

    def __init__(self, path: Path, address: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.address = address or str(path)
        self.sock.bind(self.address.replace("@", "\0", 1) if self.address.startswith("@") else self.address)
        self.messages: list[list[str]] = []

    def next(self, timeout: float = 20.0) -> list[str] | None:
        """The lines of the next datagram, or None after `timeout` seconds of silence."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        lines = data.decode().split("\n")
        self.messages.append(lines)
        return lines

    def until(self, line: str, timeout: float = 20.0) -> list[list[str]]:
        """Every message up to and including the first that carries `line`; fails on timeout."""
        deadline = time.monotonic() + timeout
        seen: list[list[str]] = []
        while True:
            message = self.next(max(0.01, deadline - time.monotonic()))
            if message is None:
                raise AssertionError(f"no {line} within {timeout} s; received {seen}")
            seen.append(message)
            if line in message:
                return seen

    def drain(self, seconds: float) -> list[list[str]]:
        """Every message that arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        seen: list[list[str]] = []
        while (left := deadline - time.monotonic()) > 0:
            message = self.next(left)
            if message is not None:
                seen.append(message)
        return seen

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    base = short_dir(tmp_path)
    sock = NotifySocket(base / "notify.sock")
    try:
        yield sock
    finally:
        sock.close()
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)
