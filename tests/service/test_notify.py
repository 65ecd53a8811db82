"""The notify protocol as a real `docpilotd run` speaks it to a datagram socket the test binds.

READY=1 must mean "served": the moment it arrives, a fresh connection and the real `docpilot
status` must succeed. Heartbeats come only while WATCHDOG_USEC is set (for this pid); SIGTERM
brings STOPPING=1, then the final save and exit status 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import pytest

from docpilotd.runtime import notify
from tests.daemon_harness import DaemonFactory
from tests.service.conftest import NotifySocket


def _flat(messages: list[list[str]]) -> list[str]:
    return [line for message in messages for line in message]


def test_ready_only_once_the_socket_serves(daemons: DaemonFactory, notify_socket: NotifySocket) -> None:
    d = daemons(start=False, env={"NOTIFY_SOCKET": notify_socket.address})
    d.spawn()
    before = notify_socket.until("READY=1")
    # Nothing in between: the daemon must serve right now.
    hello = d._try_hello()
    assert hello is not None and hello["ok"] and hello["result"]["pid"] == d.pid, hello
    rc, _out, err = d.client("status")
    assert rc == 0, f"docpilot status failed right after READY=1: {err}"
    lines = _flat(before)
    assert lines.index("STATUS=recovering") < lines.index("READY=1")
    assert any(line.startswith("STATUS=serving") for line in before[-1]), before[-1]
    assert not any(line.startswith("WATCHDOG=") for line in lines), "no heartbeats without WATCHDOG_USEC"
    assert "STOPPING=1" not in lines


def test_heartbeats_while_watchdog_usec_is_set(daemons: DaemonFactory, notify_socket: NotifySocket) -> None:
    d = daemons(start=False, env={"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "200000"})
    d.spawn()
    notify_socket.until("READY=1")
    beats = [m for m in notify_socket.drain(1.0) if m == ["WATCHDOG=1"]]
    # Every WATCHDOG_USEC/2 = 0.1 s: about 10 in a second; a loaded CI machine still manages 4.
    assert len(beats) >= 4, f"{len(beats)} heartbeats in 1 s with WATCHDOG_USEC=200000"
    assert d.terminate() == 0


def test_no_heartbeats_when_the_watchdog_is_meant_for_another_pid(
    daemons: DaemonFactory, notify_socket: NotifySocket
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    d = daemons(start=False, env=env)
    d.spawn()
    notify_socket.until("READY=1")
    assert not [m for m in notify_socket.drain(0.6) if "WATCHDOG=1" in m]
    assert d.terminate() == 0


def test_stopping_on_sigterm_then_final_save_and_exit_0(
    daemons: DaemonFactory, notify_socket: NotifySocket
) -> None:
    d = daemons(start=False, env={"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "200000"})
    d.spawn()
    notify_socket.until("READY=1")
    sid = d.call("start", description="saved on the way out")["id"]
    d.call("annotate", text="kept")
    assert not d.session_file(sid).exists() or b"kept" not in d.session_file(sid).read_bytes()
    d.send_signal(signal.SIGTERM)
    notify_socket.until("STOPPING=1", timeout=10)
    assert d.proc is not None and d.proc.wait(timeout=20) == 0, d.log()
    after = _flat(notify_socket.drain(0.2))
    assert after == [], f"nothing after STOPPING=1, got {after}"
    assert b"kept" in d.session_file(sid).read_bytes(), "the final save runs after STOPPING=1"


def test_abstract_notify_socket(daemons: DaemonFactory, tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path, address=f"@docpilotd-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        d = daemons(start=False, env={"NOTIFY_SOCKET": sock.address})
        d.spawn()
        sock.until("READY=1")
        d.send_signal(signal.SIGTERM)
        sock.until("STOPPING=1", timeout=10)
        assert d.proc is not None and d.proc.wait(timeout=20) == 0
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    assert notify.send("READY=1") is False
    loop = asyncio.new_event_loop()
    try:
        assert notify.start_watchdog(loop) is None
    finally:
        loop.close()
