"""Socket activation: the daemon adopts a listening socket passed as LISTEN_FDS, serves it only
after recovery, and leaves its path to the service manager.

With `systemd-socket-activate` (systemd's own tool, which binds the socket, waits for the first
connection and then execs the daemon with LISTEN_FDS=1) when it is installed; the refusals with a
small exec wrapper that passes a socket of the test's choosing as descriptor 3.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_harness import DAEMON_CMD, Daemon, DaemonFactory, read_line, wait_for
from tests.service.conftest import NotifySocket

ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is not installed")

# Pass descriptor argv[1] as 3 with LISTEN_PID=<our pid> (argv[2], "self" or a pid), then exec argv[3:].
_WRAPPER = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid()) if sys.argv[2] == "self" else sys.argv[2]
os.execv(sys.argv[3], sys.argv[3:])
"""


def _listening(path: Path) -> socket.socket:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def _spawn_with_fd(d: Daemon, sock: socket.socket, listen_pid: str = "self") -> subprocess.Popen[bytes]:
    log = open(d.log_path, "ab")
    try:
        d.proc = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, str(sock.fileno()), listen_pid, *DAEMON_CMD],
            env=d.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(sock.fileno(),),
            cwd=str(d.home.parent),
        )
    finally:
        log.close()
    return d.proc


def _spawn_activated(d: Daemon, notify: NotifySocket | None = None) -> subprocess.Popen[bytes]:
    """`systemd-socket-activate -l SOCKET docpilotd run`: execs the daemon on the first connection."""
    assert ACTIVATE is not None
    extra = {"NOTIFY_SOCKET": notify.address} if notify else {}
    env = d.env(extra)
    passed = [f"--setenv={k}={env[k]}" for k in ("DOCPILOT_HOME", "XDG_CONFIG_HOME", "PYTHONDONTWRITEBYTECODE", *extra)]
    d.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = open(d.log_path, "ab")
    try:
        d.proc = subprocess.Popen(
            [ACTIVATE, "--listen", str(d.socket_path), *passed, *DAEMON_CMD],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(d.home.parent),
        )
    finally:
        log.close()
    wait_for(d.socket_path.exists, what="systemd-socket-activate to bind the socket")
    return d.proc


def _request(sock: socket.socket, op: str, **args: object) -> dict[str, object]:
    sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
    line = read_line(sock)
    assert line, "the daemon closed the connection"
    reply: dict[str, object] = json.loads(line)
    return reply


@needs_activate
def test_systemd_socket_activate_first_request_sees_recovered_state(
    daemons: DaemonFactory, notify_socket: NotifySocket
) -> None:
    # A session whose changes exist only in the journal: kill -9 before any autosave.
    d = daemons()
    sid = d.call("start", description="recovered before served")["id"]
    for n in range(5):
        d.call("annotate", text=f"note {n}")
    d.kill9()
    d.socket_path.unlink(missing_ok=True)  # what a crashed daemon leaves; the socket unit binds anew

    proc = _spawn_activated(d, notify_socket)
    inode = d.socket_path.stat().st_ino
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(20)
        client.connect(str(d.socket_path))  # accepted by the kernel backlog; this starts the daemon
        reply = _request(client, "status", session=sid)
    assert reply["ok"], reply
    assert reply["result"]["session"]["annotations"] == 5, reply  # type: ignore[index]
    hello = d.call("hello")
    assert hello["pid"] == proc.pid, "systemd-socket-activate execs the daemon in its own process"
    assert d.socket_path.stat().st_ino == inode, "the daemon must adopt the socket, not bind a new one"
    assert stat.S_IMODE(d.socket_path.stat().st_mode) == 0o600
    messages = [line for m in notify_socket.until("READY=1") for line in m]
    assert messages.index("STATUS=recovering") < messages.index("READY=1")
    assert "journal record(s) replayed" in d.log(since_start=True)

    d.send_signal(signal.SIGTERM)
    notify_socket.until("STOPPING=1", timeout=10)
    assert proc.wait(timeout=20) == 0, d.log()
    assert d.socket_path.exists() and d.socket_path.stat().st_ino == inode, (
        "the socket path belongs to the service manager: the daemon must not unlink it"
    )


@needs_activate
def test_activated_daemon_serves_many_clients_and_stays_single(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    _spawn_activated(d)
    wait_for(lambda: d._try_hello(), timeout=20, what="the activated daemon to answer")
    sid = d.call("start", description="activated")["id"]
    for n in range(20):
        assert d.request("annotate", session=sid, text=f"n{n}")["ok"]
    rc, out, err = d.client("status")
    assert rc == 0 and "activated" in out, err
    second = daemons(start=False, home=d.home)
    second.spawn()
    assert second.proc is not None and second.proc.wait(timeout=20) == 3, "the lock still makes it one owner"
    assert d.terminate() == 0


def test_adopts_a_passed_socket_at_the_data_roots_path(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    listener = _listening(d.socket_path)
    inode = d.socket_path.stat().st_ino
    try:
        _spawn_with_fd(d, listener)
    finally:
        listener.close()  # the daemon holds its own copy
    wait_for(lambda: d._try_hello(), timeout=20, what="the daemon to serve the passed socket")
    assert d.socket_path.stat().st_ino == inode
    assert d.terminate() == 0
    assert d.socket_path.exists(), "an adopted socket's path is left to whoever passed it"


def test_a_socket_elsewhere_is_refused_in_one_line(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    elsewhere = d.home.parent / "elsewhere.sock"
    listener = _listening(elsewhere)
    try:
        proc = _spawn_with_fd(d, listener)
        assert proc.wait(timeout=20) == 2
    finally:
        listener.close()
    log = d.log()
    assert "Traceback" not in log
    assert str(elsewhere) in log and str(d.socket_path) in log, log
    assert not d.socket_path.exists(), "a refused start serves nothing"


def test_listen_fds_meant_for_another_process_are_ignored(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    elsewhere = d.home.parent / "other.sock"
    listener = _listening(elsewhere)
    try:
        _spawn_with_fd(d, listener, listen_pid=str(os.getpid()))
        wait_for(lambda: d._try_hello(), timeout=20, what="the daemon to bind its own socket")
    finally:
        listener.close()
    assert d.terminate() == 0
