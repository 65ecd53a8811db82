"""The client reads a session (`show`, `export`) as it arrives (client/streamed.py): whatever way the
reply is cut into pieces, what it prints or writes is what json.dumps of the whole reply gives; a
reply that does not fit, is an error or ends early is reported as every other reply is, and a file
being exported to is left as it was."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from docpilotd import protocol
from docpilotd.client import streamed
from docpilotd.domain import changes
from docpilotd.errors import DaemonNotRunning, ProtocolError, SessionNotFound
from tests.conftest import Clock, annotate_change, build_session, command_change
from tests.daemon_harness import DaemonFactory


def _session_json() -> dict[str, Any]:
    session = build_session(commands=40, annotations=5, description="naïve «proxy» \u2028 \"quoted\" ✓")
    clock = Clock(start_ns=4_000_000_000_000_000_000)
    session = changes.apply(session, command_change("printf 'é ✓ \\n' \x1b[1m | tee \"x\" 😀", clock(), 300))
    session = changes.apply(session, annotate_change("emoji 😀 and \\ backslash", clock(), "Milestone"))
    found: dict[str, Any] = json.loads(msgspec.json.encode(session))
    return found


class _Stub:
    """What streamed.events uses of a Connection, over one end of a socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.path = "stub"
        self._buffer = b""
        self.sent: list[dict[str, Any]] = []

    def write_request(self, op: str, /, **args: Any) -> None:
        self.sent.append({"op": op, **args})


@pytest.fixture
def replying() -> Iterator[Callable[[bytes, int], _Stub]]:
    """`replying(data, piece)`: a stub connection whose peer sends `data` in pieces of 1 to
    `piece` bytes (cut anywhere, inside a character too), then closes."""
    made: list[tuple[socket.socket, threading.Thread]] = []

    def make(data: bytes, piece: int) -> _Stub:
        ours, theirs = socket.socketpair()
        ours.settimeout(10)

        def send() -> None:
            with theirs:
                at, n = 0, 0
                try:
                    while at < len(data):
                        size = 1 + n % piece
                        theirs.sendall(data[at : at + size])
                        at, n = at + size, n + 1
                except OSError:  # the reader stopped at an error and closed its end
                    pass

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        made.append((ours, thread))
        return _Stub(ours)

    yield make
    for sock, thread in made:
        sock.close()
        thread.join(timeout=10)


def _written(stub: _Stub, indent: int | None) -> str:
    out: list[str] = []
    writer = streamed.JsonWriter(out.append, indent)
    streamed.read(stub, "export", writer)  # type: ignore[arg-type]
    writer.finish()
    return "".join(out)


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_what_is_written_as_it_arrives_is_json_dumps_of_the_whole(replying: Callable[[bytes, int], _Stub],
                                                                   piece: int, indent: int | None) -> None:
    session = _session_json()
    data = json.dumps({"ok": True, "id": 1, "result": session}, ensure_ascii=False).encode() + b"\n"
    assert _written(replying(data, piece), indent) == json.dumps(session, ensure_ascii=False, indent=indent) + "\n"


def test_white_space_and_escapes_anywhere_are_read(replying: Callable[[bytes, int], _Stub]) -> None:
    session = _session_json()
    session["commands"] = []  # an empty list among full ones
    data = json.dumps({"id": 1, "ok": True, "result": session}, separators=(" ,\t", " : ")).encode() + b"\n"
    assert _written(replying(data, 5), 2) == json.dumps(session, ensure_ascii=False, indent=2) + "\n"


def test_the_daemons_own_reply_reads_back_as_the_session(replying: Callable[[bytes, int], _Stub]) -> None:
    session = build_session(commands=900, annotations=30)
    data = protocol.encode(protocol.Response(ok=True, id=3, result=session))
    expected = json.loads(msgspec.json.encode(session))
    assert json.loads(_written(replying(data, 9000), None)) == expected


def _error(replying: Callable[[bytes, int], _Stub], data: bytes) -> Exception:
    with pytest.raises(Exception) as caught:
        _written(replying(data, 3), 2)
    return caught.value


def test_a_reply_that_does_not_fit_is_a_protocol_error(replying: Callable[[bytes, int], _Stub]) -> None:
    session = _session_json()
    del session["commands"][3]["command"]
    found = _error(replying, json.dumps({"ok": True, "id": 1, "result": session}).encode() + b"\n")
    assert isinstance(found, ProtocolError) and "commands[3]" in found.message and "'command'" in found.message
    found = _error(replying, b'{"ok":true,"id":1}\n')
    assert isinstance(found, ProtocolError) and "got null" in found.message
    found = _error(replying, b'{"ok":true,"id":1,"result":{"id":"x","commands":[{"a":1},\n')
    assert isinstance(found, ProtocolError), found
    found = _error(replying, b'[1, 2]\n')
    assert isinstance(found, ProtocolError) and "not an object" in found.message


def test_an_error_reply_is_the_daemons_error(replying: Callable[[bytes, int], _Stub]) -> None:
    error = {"code": SessionNotFound.code, "message": "no session x"}
    found = _error(replying, json.dumps({"id": 1, "ok": False, "error": error}).encode() + b"\n")
    assert isinstance(found, SessionNotFound) and found.message == "no session x"


def test_a_reply_that_ends_early_is_the_daemon_gone(replying: Callable[[bytes, int], _Stub]) -> None:
    session = _session_json()
    data = json.dumps({"ok": True, "id": 1, "result": session}).encode()
    found = _error(replying, data[: len(data) // 2])
    assert isinstance(found, DaemonNotRunning) and "closed the connection" in found.message


# -- the real client against a listener that cuts the reply short ----------------------------------


def _cut_short(path: Path, data: bytes) -> threading.Thread:
    """Listen at `path`; the first connection gets `data` once a request arrives, then is closed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(30)

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                while b"\n" not in conn.recv(65536):
                    pass
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_export_to_a_file_cut_short_leaves_the_file_as_it_was(daemons: DaemonFactory, tmp_path: Path) -> None:
    d = daemons(start=False)
    session = _session_json()
    data = json.dumps({"ok": True, "id": 1, "result": session}).encode()
    target = tmp_path / "doc" / "export.json"
    target.parent.mkdir()
    target.write_text("the previous export\n")
    served = _cut_short(d.socket_path, data[: len(data) * 2 // 3])
    rc, out, err = d.client("export", "--session", session["id"], "-o", str(target))
    served.join(timeout=10)
    assert rc == DaemonNotRunning.exit_code and "closed the connection" in err, (rc, out, err)
    assert target.read_text() == "the previous export\n"
    assert [p.name for p in target.parent.iterdir()] == ["export.json"]  # no temporary file left
