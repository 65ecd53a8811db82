"""A session (`show`, `export`) is written to the socket a slice at a time (handlers.SessionReply,
server._Connection.send): the same bytes as the whole reply encoded at once, memory the daemon does
not hold, other clients answered meanwhile, and a client that leaves mid-reply harming nothing."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from docpilotd import protocol
from docpilotd.domain import changes
from docpilotd.domain.model import Session
from docpilotd.runtime.handlers import REPLY_SLICE_ITEMS, SessionReply
from docpilotd.storage import snapshot
from tests.conftest import Clock, annotate_change, build_session, command_change
from tests.daemon_harness import Daemon, DaemonFactory, read_line

LARGE = 50_000


def _with(commands: int, annotations: int = 0) -> Session:
    session = build_session(commands=commands, annotations=annotations, description="proxy «staging» \u2028 \"q\"")
    clock = Clock(start_ns=4_000_000_000_000_000_000)
    session = changes.apply(session, command_change("printf 'é ✓ \\n' | tee \"x\"", clock(), 3))
    return changes.apply(session, annotate_change("naïve \x1b[1m bold", clock(), "Warning"))


@pytest.mark.parametrize("commands", [0, 1, REPLY_SLICE_ITEMS - 2, REPLY_SLICE_ITEMS - 1, REPLY_SLICE_ITEMS,
                                      2 * REPLY_SLICE_ITEMS + 5])
@pytest.mark.parametrize("request_id", [7, "req-1", None])
def test_the_streamed_reply_is_the_reply_encoded_at_once(commands: int, request_id: Any) -> None:
    session = _with(commands, annotations=commands // 3)
    whole = protocol.encode(protocol.Response(ok=True, id=request_id, result=session))
    pieces = list(SessionReply(session).pieces(request_id))
    assert b"".join(pieces) == whole
    if commands > REPLY_SLICE_ITEMS:  # sent in slices, none of them the whole
        assert len(pieces) > 3 and max(map(len, pieces)) < len(whole) // 2


def test_a_stored_session_streams_without_our_own_field() -> None:
    session = _with(5, annotations=2)
    stored = snapshot.decode(snapshot.encode(session, 9)).session
    assert isinstance(stored, snapshot.SessionFile) and stored.docpilotd is not None
    whole = protocol.encode(protocol.Response(ok=True, id=1, result=snapshot.plain_session(stored)))
    assert b"".join(SessionReply(stored).pieces(1)) == whole
    assert b"docpilotd" not in whole


def test_the_reply_describes_the_session_when_it_was_asked_for() -> None:
    session = _with(REPLY_SLICE_ITEMS + 3)
    reply = SessionReply(session)
    expected = protocol.encode(protocol.Response(ok=True, id=2, result=session))
    # The session goes on while the reply is written (items are appended, never changed).
    session.commands.append(session.commands[0])
    session.events.append(session.events[0])
    assert b"".join(reply.pieces(2)) == expected


# -- a real daemon ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Session]:
    """A live session of LARGE commands (a note every 25) in a file `import` reads."""
    session = build_session(commands=LARGE, annotations=LARGE // 25, description="large")
    path = tmp_path_factory.mktemp("large") / "large.json"
    path.write_bytes(snapshot.encode_plain(session))
    return path, session


def _expected(session: Session, session_id: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(msgspec.json.encode(session))
    found["id"] = session_id
    return found


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _imported(daemons: DaemonFactory, large: tuple[Path, Session]) -> tuple[Daemon, str]:
    d = daemons(env={"DOCPILOT_AUTOSAVE_INTERVAL": "3600"})
    return d, d.call("import", path=str(large[0]))["id"]


def test_show_and_export_of_a_large_session_through_the_client_equal_it(
    daemons: DaemonFactory, large: tuple[Path, Session], tmp_path: Path
) -> None:
    d, session_id = _imported(daemons, large)
    expected = _expected(large[1], session_id)
    rc, out, err = d.client("show", "--json", "--session", session_id, timeout=120)
    assert rc == 0, err
    assert out == json.dumps(expected, ensure_ascii=False) + "\n"
    rc, out, err = d.client("export", "--session", session_id, timeout=120)
    assert rc == 0, err
    assert out == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    target = tmp_path / "out.json"
    target.write_text("the previous export\n")
    rc, out, err = d.client("export", "--session", session_id, "-o", str(target), timeout=120)
    assert rc == 0 and out.strip() == f"exported {session_id} to {target}", (rc, out, err)
    assert json.loads(target.read_bytes()) == expected
    assert target.read_text() == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"
    # Into a directory: the file is named after the session; and it imports back as the same session.
    rc, out, err = d.client("export", "--session", session_id, "-o", str(tmp_path), "--json", timeout=120)
    assert rc == 0, err
    assert json.loads(out) == {"exported": str(tmp_path / f"{session_id}.json"), "session": session_id}
    assert json.loads((tmp_path / f"{session_id}.json").read_bytes()) == expected
    # Shown to a person: the header, then one line per command and annotation.
    rc, out, err = d.client("show", "--session", session_id, timeout=120)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(session_id) and len(lines) == 2 + LARGE + LARGE // 25
    assert lines[2] == "  /home/ada/projects$ echo step 0" and lines[-1] == f"  # Note: note {LARGE // 25 - 1}"


def test_export_to_a_file_of_an_unknown_session_leaves_the_file(daemon: Daemon, tmp_path: Path) -> None:
    target = tmp_path / "out" / "keep.json"
    target.parent.mkdir()
    target.write_text("kept\n")
    rc, _, err = daemon.client("export", "--session", "0" * 8, "-o", str(target))
    assert rc != 0 and "no session" in err, err
    assert target.read_text() == "kept\n" and [p.name for p in target.parent.iterdir()] == ["keep.json"]


def test_a_slow_reader_costs_the_daemon_little_memory_and_others_are_answered(
    daemons: DaemonFactory, large: tuple[Path, Session]
) -> None:
    d, session_id = _imported(daemons, large)
    reply_size = len(protocol.encode(protocol.Response(ok=True, id=1, result=large[1])))
    time.sleep(0.5)
    before = _rss(d.pid)
    with d.connect(timeout=30) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b'{"op":"show","id":1,"session":"%s"}\n' % session_id.encode())
        first = slow.recv(65536)
        assert first.startswith(b'{"ok":true,"id":1,"result":{')
        # The reader stops reading: the daemon holds a slice or two of the reply, not all of it,
        # and answers everyone else meanwhile.
        waits = []
        with d.connect() as other:
            for n in range(20):
                started = time.monotonic()
                other.sendall(b'{"op":"hello","id":%d}\n' % n)
                assert json.loads(read_line(other))["ok"] is True
                waits.append(time.monotonic() - started)
        grown = _rss(d.pid) - before
        assert grown < reply_size // 4, (grown, reply_size)
        assert max(waits) < 1.0, waits
        received = [first]
        while not received[-1].endswith(b"\n"):
            chunk = slow.recv(1 << 20)
            assert chunk, "the daemon closed the connection before the reply ended"
            received.append(chunk)
    reply = json.loads(b"".join(received))
    assert reply["result"] == _expected(large[1], session_id)


def test_a_client_that_leaves_mid_reply_harms_nothing(daemons: DaemonFactory, large: tuple[Path, Session]) -> None:
    d, session_id = _imported(daemons, large)
    for _ in range(5):
        with d.connect() as leaving:
            leaving.sendall(b'{"op":"export","session":"%s"}\n' % session_id.encode())
            assert leaving.recv(65536)
        # closed with most of the reply unread
    d.call("annotate", session=session_id, text="still here")
    assert d.call("status")["daemon"]["pid"] == d.pid
    shown = d.call("show", session=session_id)
    assert len(shown["commands"]) == LARGE and shown["annotations"][-1]["text"] == "still here"
    assert "Traceback" not in d.log() and d.alive


def test_a_client_that_stops_reading_is_hung_up_on_after_the_idle_timeout(
    daemons: DaemonFactory, large: tuple[Path, Session]
) -> None:
    d = daemons(start=False)
    d.home.mkdir(parents=True, exist_ok=True)
    (d.home / "docpilotd.toml").write_text("[limits]\nidle_timeout = 1.0\n")
    d.start()
    session_id = d.call("import", path=str(large[0]))["id"]
    with d.connect(timeout=30) as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b'{"op":"show","session":"%s"}\n' % session_id.encode())
        time.sleep(3.0)  # takes nothing of the reply for longer than idle_timeout
        received = []
        while chunk := stalled.recv(1 << 20):
            received.append(chunk)
    data = b"".join(received)
    assert data.startswith(b'{"ok":true,"result":{') and not data.endswith(b"\n"), "hung up on mid-reply"
    assert d.call("status")["daemon"]["pid"] == d.pid and d.alive
