"""Hostile bytes on the socket: a clear error (or a closed connection), never a crash, no change.

One daemon serves the whole module (a line limit of 256 KiB). Every test records every file
under the data root before it sends anything and checks that they are byte-identical afterwards,
that the daemon is still the same process, and that it still answers a well-formed request.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import Daemon, DaemonFactory, read_line, read_lines, short_dir, wait_for

MAX_LINE = 256 * 1024  # room for 100000 nested brackets


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    base = short_dir(tmp_path_factory.mktemp("proto"))
    d = Daemon(base / "home", base / "xdg", {"DOCPILOT_MAX_LINE_BYTES": str(MAX_LINE), "DOCPILOT_AUTOSAVE_INTERVAL": "3600"})
    try:
        d.start()
        sid = d.call("start", description="Must survive hostile input")["id"]
        d.call("record", session=sid, command="echo hello", exit_code=0)
        d.call("annotate", session=sid, text="stored before the attack")
        stopped = d.call("start", description="A stopped one")["id"]
        d.call("stop", session=stopped)
        d.call("save")
        d.call("record", session=sid, command="only in the journal", exit_code=1)
        yield d, sid
    finally:
        d.close()


@pytest.fixture
def unchanged(served: tuple[Daemon, str]) -> Iterator[Daemon]:
    """The module's daemon; after the test, the same process serves and no file has changed."""
    d, sid = served
    assert d.alive, f"the daemon died in an earlier test:\n{d.log()}"
    before = d.tree()
    shown = d.call("show", session=sid)
    yield d
    assert d.alive, f"the daemon died:\n{d.log()}"
    assert d.call("hello")["pid"] == d.pid
    assert d.call("show", session=sid) == shown
    assert d.tree() == before, "hostile input changed stored data"
    assert "Traceback" not in d.log(), d.log()


def _reply(d: Daemon, data: bytes, timeout: float = 5.0) -> dict[str, Any] | None:
    """The daemon's reply to `data` sent on a new connection, or None if it closed the connection."""
    try:
        line = d.raw(data, timeout=timeout)
    except TimeoutError:
        raise AssertionError(f"no reply and no close within {timeout} s for {data[:80]!r}") from None
    if not line:
        return None
    assert line.endswith(b"\n"), f"a reply is one whole line: {line!r}"
    reply = json.loads(line)
    assert isinstance(reply, dict) and reply.get("ok") is False, reply
    error = reply["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"], reply
    return reply


DEEP = 100_000
HOSTILE: dict[str, tuple[bytes, set[str]]] = {
    # name: (bytes sent, codes accepted in the reply)
    "garbage": (b"\x00\xff\xfe\x01 garbage \x7f\n", {"bad_request"}),
    "binary noise": (bytes(range(256)).replace(b"\n", b"") + b"\n", {"bad_request"}),
    "invalid json": (b'{"op": "hello"\n', {"bad_request"}),
    "trailing garbage": (b'{"op": "hello"} x\n', {"bad_request"}),
    "two objects": (b'{"op": "hello"}{"op": "hello"}\n', {"bad_request"}),
    "deep arrays": (b"[" * DEEP + b"\n", {"bad_request"}),
    "deep objects": (b'{"a":' * (DEEP // 5) + b"\n", {"bad_request"}),
    "deep in a field": (b'{"op":"start","description":"x","tags":' + b"[" * DEEP + b"\n", {"bad_request"}),
    "deep closed": (b'{"op":"hello","id":' + b"[" * 5000 + b"]" * 5000 + b"}\n", {"bad_request"}),
    "unknown op": (b'{"op":"fly","id":7}\n', {"unknown_op"}),
    "op not a string": (b'{"op":5}\n', {"unknown_op", "bad_request"}),
    "no op": (b'{"id":1}\n', {"bad_request"}),
    "empty object": (b"{}\n", {"bad_request"}),
    "array": (b'[{"op":"hello"}]\n', {"bad_request"}),
    "number": (b"42\n", {"bad_request"}),
    "string": (b'"hello"\n', {"bad_request"}),
    "null": (b"null\n", {"bad_request"}),
    "true": (b"true\n", {"bad_request"}),
    "text not a string": (b'{"op":"annotate","text":5}\n', {"bad_request"}),
    "exit code a string": (b'{"op":"record","command":"ls","exit_code":"zero"}\n', {"bad_request"}),
    "exit code beyond i32": (b'{"op":"record","command":"ls","exit_code":4294967296}\n', {"bad_request"}),
    "exit code float": (b'{"op":"record","command":"ls","exit_code":1.5}\n', {"bad_request"}),
    "negative duration": (b'{"op":"record","command":"ls","duration_ms":-1}\n', {"bad_request"}),
    "description a list": (b'{"op":"start","description":["a"]}\n', {"bad_request"}),
    "tags a string": (b'{"op":"start","description":"x","tags":"a,b"}\n', {"bad_request"}),
    "annotation type unknown": (b'{"op":"annotate","text":"x","type":"shout"}\n', {"bad_request"}),
    "max age a string": (b'{"op":"cleanup","max_age_days":"x"}\n', {"bad_request"}),
    "max age negative": (b'{"op":"cleanup","max_age_days":-1}\n', {"bad_request"}),
    "missing argument": (b'{"op":"annotate"}\n', {"bad_request"}),
    "unknown field": (b'{"op":"hello","extra":1}\n', {"bad_request"}),
    "id a bool": (b'{"op":"hello","id":true}\n', {"bad_request"}),
    "id an object": (b'{"op":"hello","id":{}}\n', {"bad_request"}),
    "version a string": (b'{"op":"hello","v":"1"}\n', {"bad_request"}),
    "future version": (b'{"op":"hello","v":2}\n', {"unsupported_version"}),
    "session a number": (b'{"op":"stop","session":12}\n', {"bad_request"}),
    "huge number": (b'{"op":"record","command":"ls","exit_code":' + b"9" * 3000 + b"}\n", {"bad_request"}),
    # Lone surrogates, as JSON escapes and as raw (CESU-8 style) bytes; and invalid UTF-8 in a string.
    "lone high surrogate": (rb'{"op":"start","description":"\ud800"}' + b"\n", {"bad_request"}),
    "lone low surrogate": (rb'{"op":"annotate","text":"a\udc80b"}' + b"\n", {"bad_request"}),
    "reversed pair": (rb'{"op":"record","command":"\udc00\ud800"}' + b"\n", {"bad_request"}),
    "surrogate in a key": (rb'{"\ud800":1,"op":"hello"}' + b"\n", {"bad_request"}),
    "surrogate in the id": (rb'{"op":"hello","id":"\udfff"}' + b"\n", {"bad_request"}),
    "raw surrogate bytes": (b'{"op":"annotate","text":"a\xed\xa0\x80b"}\n', {"bad_request"}),
    "invalid utf-8 in a string": (b'{"op":"annotate","text":"\xff\xfe"}\n', {"bad_request"}),
    "truncated utf-8": (b'{"op":"record","command":"\xe2\x82"}\n', {"bad_request"}),
    "overlong utf-8": (b'{"op":"annotate","text":"\xc0\xaf"}\n', {"bad_request"}),
    # Well-formed requests with bad arguments.
    "empty description": (b'{"op":"start","description":"   "}\n', {"bad_usage"}),
    "empty annotation": (b'{"op":"annotate","text":""}\n', {"bad_usage"}),
    "bad started_at": (b'{"op":"record","command":"ls","started_at":"yesterday"}\n', {"bad_usage"}),
    "no such session": (b'{"op":"stop","session":"00000000-0000-4000-8000-000000000000"}\n', {"no_such_session"}),
    "relative import": (b'{"op":"import","path":"session.json"}\n', {"bad_usage"}),
    "missing import": (b'{"op":"import","path":"/nonexistent/docpilot.json"}\n', {"bad_usage"}),
    "import of a directory": (b'{"op":"import","path":"/"}\n', {"storage_error", "invalid_session", "bad_usage"}),
    "import of a device": (b'{"op":"import","path":"/dev/zero"}\n', {"bad_usage"}),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_line_gets_an_error_and_changes_nothing(unchanged: Daemon, name: str) -> None:
    data, codes = HOSTILE[name]
    reply = _reply(unchanged, data)
    assert reply is not None, f"{name}: a complete line deserves an error reply"
    assert reply["error"]["code"] in codes, f"{name}: {reply}"


def test_the_request_id_comes_back_with_the_error(unchanged: Daemon) -> None:
    reply = _reply(unchanged, b'{"op":"fly","id":"abc-1"}\n')
    assert reply is not None and reply.get("id") == "abc-1"
    reply = _reply(unchanged, b'{"op":"annotate","id":9,"text":5}\n')
    assert reply is not None and reply.get("id") == 9


def test_path_traversal_in_restore_is_refused(unchanged: Daemon, served: tuple[Daemon, str]) -> None:
    _, sid = served
    for name in ("../../run/docpilotd.lock", "/etc/passwd", f"../sessions/{sid}.json", f"{sid}_1.json"):
        reply = _reply(unchanged, json.dumps({"op": "restore", "session": sid, "backup": name}).encode() + b"\n")
        assert reply is not None and reply["error"]["code"] == "no_such_backup", (name, reply)


def test_import_of_a_garbage_file_is_refused(unchanged: Daemon, tmp_path: Path) -> None:
    for content in (b"", b"\x00" * 64, b"not json", b'{"id": "x"}', b"[" * DEEP):
        path = tmp_path / "bad.json"
        path.write_bytes(content)
        reply = _reply(unchanged, json.dumps({"op": "import", "path": str(path)}).encode() + b"\n")
        assert reply is not None and reply["error"]["code"] == "invalid_session", (content[:20], reply)


def test_an_error_does_not_end_the_connection(unchanged: Daemon) -> None:
    with unchanged.connect(timeout=5) as sock:
        sock.sendall(b'garbage\n{"op":"fly"}\n\n{"op":"hello","id":1}\n' + rb'{"op":"start","description":"\ud800"}' + b"\n")
        replies = [json.loads(line) for line in read_lines(sock, 4)]
    assert len(replies) == 4
    assert [r["ok"] for r in replies] == [False, False, True, False]
    assert replies[0]["error"]["code"] == "bad_request" and replies[1]["error"]["code"] == "unknown_op"
    assert replies[2]["id"] == 1 and replies[2]["result"]["pid"] == unchanged.pid


def test_a_line_at_the_limit_is_served_and_one_over_it_is_refused(unchanged: Daemon) -> None:
    head = b'{"op":"hello","id":"'
    fits = head + b"x" * (MAX_LINE - 1 - len(head) - 2) + b'"}'
    assert len(fits) == MAX_LINE - 1
    with unchanged.connect(timeout=5) as sock:
        sock.sendall(fits + b"\n")
        assert json.loads(read_line(sock))["ok"] is True
    too_long = head + b"x" * (MAX_LINE + 10) + b'"}\n'
    reply = _reply(unchanged, too_long)
    assert reply is not None and reply["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("size", [MAX_LINE * 4, 5 * 1024 * 1024])
def test_an_oversized_line_is_refused_and_the_connection_closed(unchanged: Daemon, size: int) -> None:
    with unchanged.connect(timeout=10) as sock:
        try:
            sock.sendall(b'{"op":"hello","id":"' + b"y" * size)  # no newline ever comes
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon hung up mid-line: fine too
        line = read_line(sock)
        if line:
            assert json.loads(line)["error"]["code"] == "request_too_large"
        try:
            sock.sendall(b'\n{"op":"hello"}\n')
            rest = read_line(sock)
        except (BrokenPipeError, ConnectionResetError):
            rest = b""
        assert rest == b"", "after an oversized line the connection is closed"


def test_a_last_line_without_newline_is_served(unchanged: Daemon) -> None:
    with unchanged.connect(timeout=5) as sock:
        sock.sendall(b'{"op":"hello","id":3}')
        sock.shutdown(socket.SHUT_WR)  # what `printf '...' | nc -U` does
        reply = json.loads(read_line(sock))
    assert reply["ok"] is True and reply["id"] == 3


def test_idle_and_half_sent_connections_do_not_stop_service(unchanged: Daemon) -> None:
    idle: list[socket.socket] = []
    try:
        for i in range(200):
            sock = unchanged.connect(timeout=5)
            idle.append(sock)
            if i % 2:
                sock.sendall(b'{"op":"annotate","text":"never fini')
        started = time.monotonic()
        for _ in range(3):
            assert unchanged.call("hello")["pid"] == unchanged.pid
        rc, out, err = unchanged.client("status", "--json")
        assert rc == 0 and json.loads(out)["daemon"]["pid"] == unchanged.pid, err
        assert time.monotonic() - started < 5, "well-formed requests must not wait behind idle connections"
        # The half-sent lines were never completed: none of them may have been applied.
    finally:
        for sock in idle:
            sock.close()
    assert unchanged.call("hello")["pid"] == unchanged.pid


def test_peer_of_another_uid_is_refused(daemons: DaemonFactory) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another uid")
    d = daemons()
    before = d.tree()
    # Open the way through the file permissions, so that only the peer check stands in the way: a
    # second name for the socket in a world-searchable directory, and the socket itself 0666.
    way_in = Path(tempfile.mkdtemp(prefix="dpd-peer-", dir="/tmp"))
    try:
        os.chmod(way_in, 0o755)
        os.link(d.socket_path, way_in / "sock")
        os.chmod(d.socket_path, 0o666)
        code = (
            "import os, socket, sys\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])\n"
            "data = b''\n"
            "while not data.endswith(b'\\n') and (chunk := s.recv(4096)):\n"
            "    data += chunk\n"
            "sys.stdout.write(data.decode())\n"
            "try:\n"
            "    s.sendall(b'{\"op\":\"start\",\"description\":\"intruder\"}\\n')\n"
            "    sys.stdout.write(s.recv(4096).decode())\n"
            "except OSError:\n"
            "    pass\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(way_in / "sock")], capture_output=True, timeout=20, cwd="/"
        )
    finally:
        os.chmod(d.socket_path, 0o600)
        shutil.rmtree(way_in, ignore_errors=True)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, "one refusal, then the daemon hangs up"
    reply = json.loads(lines[0])
    assert reply["ok"] is False and reply["error"]["code"] == "permission_denied"
    assert d.call("sessions") == []
    assert d.tree() == before


def test_connection_limit_answers_busy_and_recovers(daemons: DaemonFactory) -> None:
    d = daemons(env={"DOCPILOT_MAX_CONNECTIONS": "3"})
    held = [d.connect(timeout=5) for _ in range(3)]
    try:
        time.sleep(0.2)  # let the daemon accept them
        # The daemon answers `busy` on accepting, before reading anything, and closes: so read
        # without sending (a request sent after that close would fail with EPIPE, not the answer).
        with d.connect(timeout=5) as extra:
            line = read_line(extra)
        reply = json.loads(line)
        assert reply["ok"] is False and "busy" in reply["error"]["message"], reply
    finally:
        held.pop().close()
    wait_for(lambda: d.request("hello").get("ok"), 5, what="a free connection slot")
    for sock in held:
        sock.close()


def test_timeouts_close_idle_and_half_sent_connections(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    d.home.mkdir(parents=True)
    (d.home / "docpilotd.toml").write_text("[limits]\nidle_timeout = 1.0\nread_timeout = 0.5\n")
    d.start()
    with d.connect(timeout=5) as idle, d.connect(timeout=5) as half:
        half.sendall(b'{"op":"hel')
        started = time.monotonic()
        assert read_line(half) == b"", "a half-sent line is dropped after read_timeout"
        half_closed = time.monotonic() - started
        assert read_line(idle) == b"", "an idle connection is closed after idle_timeout"
        idle_closed = time.monotonic() - started
    assert 0.3 < half_closed < 3.5 and 0.8 < idle_closed < 4.0, (half_closed, idle_closed)
    assert d.call("hello")["pid"] == d.pid


def test_import_of_a_fifo_neither_hangs_nor_blocks_shutdown(daemons: DaemonFactory, tmp_path: Path) -> None:
    d = daemons()
    fifo = tmp_path / "session.json"
    os.mkfifo(fifo)  # nobody will ever write to it
    reply = _reply(d, json.dumps({"op": "import", "path": str(fifo)}).encode() + b"\n")
    assert reply is not None and reply["error"]["code"] == "bad_usage", reply
    assert d.call("sessions") == []
    assert d.terminate(timeout=15) == 0
