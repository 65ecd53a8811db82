"""The client talks only to a daemon of its own user: a socket in another user's directory, a
socket that belongs to another user, or a listener that runs as another user is refused (exit 9)
before anything is sent: no note, no command line, no secret piped into `redact`.

The other user is uid 65534 (nobody); making its files and its listener needs root.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import CLIENT_CMD, Daemon, DaemonFactory

DENIED, OK = 9, 0
OTHER = 65534
SECRET = "hunter2-correct-horse"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="files and processes of another user need root")


class Listener:
    """A stranger's listener (in this process): counts connections and keeps every byte sent."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.received = b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.settimeout(1.0)
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def stranger_home(daemons: DaemonFactory) -> Iterator[tuple[Daemon, Path]]:
    d = daemons(start=False)
    run = d.home / "run"
    run.mkdir(parents=True)
    yield d, run
    for path in (d.home, run):  # let pytest clean up
        os.chown(path, 0, 0)


def _client(d: Daemon, *args: str, stdin: str = "") -> tuple[int, str, str]:
    done = subprocess.run([*CLIENT_CMD, *args], env=d.env(), input=stdin.encode(), capture_output=True, timeout=30)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _refused(d: Daemon, what: str) -> None:
    cases: list[tuple[tuple[str, ...], str]] = [
        (("note", SECRET), ""), (("redact", "--session", "abcd"), SECRET + "\n"), (("status",), ""),
    ]
    for args, stdin in cases:
        rc, _, err = _client(d, *args, stdin=stdin)
        assert rc == DENIED, f"{args}: exit {rc}: {err}"
        assert err.startswith("docpilot: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert what in err, err


def test_a_data_root_in_another_users_directory_is_refused(stranger_home: tuple[Daemon, Path]) -> None:
    d, run = stranger_home
    listener = Listener(run / "docpilotd.sock")
    try:
        for path in (d.home, run, run / "docpilotd.sock"):
            os.chown(path, OTHER, OTHER)
        _refused(d, "belongs to uid 65534")
    finally:
        listener.close()
    assert listener.connections == 0 and listener.received == b""


def test_a_socket_of_another_user_in_our_directory_is_refused(stranger_home: tuple[Daemon, Path]) -> None:
    d, run = stranger_home
    os.chmod(run, 0o700)
    listener = Listener(run / "docpilotd.sock")
    try:
        os.chown(run / "docpilotd.sock", OTHER, OTHER)
        _refused(d, "the socket belongs to uid 65534")
    finally:
        listener.close()
    assert listener.connections == 0 and listener.received == b""


def test_a_socket_directory_others_can_write_is_refused(daemon: Daemon) -> None:
    run = daemon.home / "run"
    os.chmod(run, 0o777)
    try:
        _refused(daemon, "writable by other users")
    finally:
        os.chmod(run, 0o700)
    assert _client(daemon, "status")[0] == OK


def test_a_listener_running_as_another_user_is_refused_once_connected(stranger_home: tuple[Daemon, Path]) -> None:
    """Socket and directory look like ours; the process behind them is not (SO_PEERCRED)."""
    if not hasattr(socket, "SO_PEERCRED"):
        pytest.skip("peer credentials of this kind are Linux's")
    d, run = stranger_home
    os.chown(run, OTHER, OTHER)
    dir_fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: becomes nobody, listens, reports what it receives
        code = 1
        try:
            os.close(report_r)
            os.setgroups([])
            os.setgid(OTHER)
            os.setuid(OTHER)
            os.fchdir(dir_fd)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind("docpilotd.sock")
            server.listen(8)
            os.write(report_w, b"ready\n")
            server.settimeout(20)
            while True:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    break
                conn.settimeout(1.0)
                data = b""
                try:
                    while chunk := conn.recv(65536):
                        data += chunk
                except OSError:
                    pass
                os.write(report_w, b"got " + data.hex().encode() + b"\n")
                conn.close()
            code = 0
        finally:
            os._exit(code)
    os.close(report_w)
    os.close(dir_fd)
    try:
        ready, _, _ = select.select([report_r], [], [], 10)
        assert ready and os.read(report_r, 6) == b"ready\n", "the other user's listener did not start"
        # Now the directory and the socket are ours again: only the peer's uid tells.
        os.chown(run, 0, 0)
        os.chmod(run, 0o700)
        os.chown(run / "docpilotd.sock", 0, 0)
        _refused(d, "runs as uid 65534")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        reports = b""
        while chunk := os.read(report_r, 65536):
            reports += chunk
        os.close(report_r)
    received = [line for line in reports.decode().splitlines() if line.startswith("got ") and line != "got "]
    assert received == [], f"the other user's listener received: {received}"
    assert SECRET.encode().hex() not in reports.decode()


def test_our_own_daemon_is_still_reached(daemon: Daemon) -> None:
    rc, out, err = _client(daemon, "start", "Ours")
    assert rc == OK, err
    rc, _, err = _client(daemon, "redact", "--session", out.strip(), stdin=SECRET + "\n")
    assert rc == OK, err
