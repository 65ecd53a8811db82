"""Snapshot encoding in two steps (capture, then encode in chunks) and the sequence read from a
file's last bytes: byte for byte what encoding the whole session at once gives."""

from __future__ import annotations

import zlib

import msgspec
import pytest

from docpilotd.domain.model import Annotation, CommandEntry, ErrorState, Session, SessionEvent, SessionMetadata, SessionStats
from docpilotd.storage import snapshot

ID = "6f1c2b8e-3d4a-4b5c-9d6e-7f8091a2b3c4"
AT = "2025-08-01T09:15:02.123456789Z"
TRICKY = [
    'plain', ',"commands":[],"annotations":[],"events":[],', '\n  "commands": [],\n', 'quote " and \\ backslash',
    "unicode ✓ — ünïcødé 𝄞", "tab\tand\r\nnewlines", "\\", '"', "{}[]", "",
]


def _whole(session: Session, seq: int, pretty: bool = True) -> bytes:
    """The reference: encode the whole session at once, as snapshots were always written."""
    body = snapshot.encode_body(session)
    placeholder = "crc32:" + "0" * 8
    meta = msgspec.json.encode(snapshot.FileMeta(schema=snapshot.SCHEMA, seq=seq, checksum=placeholder))
    data = body[:-1] + b',"docpilotd":' + meta + b"}"
    data = msgspec.json.format(data, indent=2) + b"\n" if pretty else data + b"\n"
    # The checksum: CRC-32 of the bytes before our key, then of the schema and seq.
    at = data.rindex(b'"docpilotd"')
    crc = zlib.crc32(b"\0schema=2\0seq=%d" % seq, zlib.crc32(data[:at]))
    return data[:at] + data[at:].replace(placeholder.encode(), b"crc32:%08x" % crc)


def _session(commands: int, annotations: int, events: int, state: object = "Active", text: str = "x") -> Session:
    return Session(
        id=ID, description=f"described {text}", state=state, created_at=AT, updated_at=AT, started_at=AT,  # type: ignore[arg-type]
        stopped_at=None, output_file=text or None,
        commands=[
            CommandEntry(command=f"{text} {i}", timestamp=AT, exit_code=i % 3 or None, working_directory=f"/w/{text}",
                         shell="zsh", output=text if i % 2 else None, error=None, duration_ms=i, pipestatus=[0, i] if i % 5 == 0 else None)
            for i in range(commands)
        ],
        annotations=[Annotation(id=ID, text=f"{text} note {i}", timestamp=AT, annotation_type="Warning") for i in range(annotations)],
        events=[SessionEvent(id=ID, event_type="CommandCaptured", timestamp=AT, details=text if i % 2 else None) for i in range(events)],
        metadata=SessionMetadata(working_directory="/w", shell_type="zsh", platform="linux", hostname="h", user=None,
                                 tags=[text, "t"], llm_provider=None, settings={text: text}),
        stats=SessionStats(commands, 0, 0, annotations, None, 0),
    )


SIZES = [(0, 0, 0), (1, 0, 1), (0, 3, 0), (snapshot.CHUNK_ITEMS, 1, snapshot.CHUNK_ITEMS + 1),
         (snapshot.CHUNK_ITEMS * 2 + 7, 5, 3), (3, snapshot.CHUNK_ITEMS + 2, 0)]


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("pretty", [True, False])
def test_encoding_in_pieces_equals_encoding_at_once(sizes: tuple[int, int, int], text: str, pretty: bool) -> None:
    session = _session(*sizes, text=text)
    blocks = snapshot.encode_captured(snapshot.capture(session), 42, pretty)
    assert b"".join(blocks) == _whole(session, 42, pretty)
    decoded = snapshot.decode(b"".join(blocks), ID)
    assert decoded.integrity == "verified" and decoded.seq == 42


def test_error_state_and_a_session_file_with_our_field() -> None:
    session = _session(3, 1, 3, state=ErrorState("disk on fire, \"really\""))
    data = snapshot.encode(session, 7)
    assert data == _whole(session, 7)
    as_file = snapshot.decode(data).session
    assert isinstance(as_file, snapshot.SessionFile) and as_file.docpilotd is not None
    assert snapshot.encode(as_file, 8) == _whole(session, 8)  # our own field is never encoded twice


def test_large_output_comes_in_blocks() -> None:
    session = _session(5000, 10, 5000, text="y" * 200)
    blocks = snapshot.encode_captured(snapshot.capture(session), 1)
    assert len(blocks) > 1 and all(len(b) < 2 * snapshot.BLOCK_BYTES for b in blocks)
    assert b"".join(blocks) == _whole(session, 1)


def test_capture_is_not_affected_by_later_changes() -> None:
    session = _session(10, 1, 10)
    captured = snapshot.capture(session)
    expected = _whole(session, 3)
    session.commands.append(session.commands[0])
    session.events.clear()
    session.stats.total_commands = 99
    session.description = "changed"
    assert b"".join(snapshot.encode_captured(captured, 3)) == expected


@pytest.mark.parametrize("pretty", [True, False])
def test_seq_from_the_last_bytes(pretty: bool) -> None:
    data = snapshot.encode(_session(50, 2, 50), 123456, pretty)
    assert snapshot.seq_from_tail(data[-snapshot.TAIL_BYTES :]) == 123456
    assert snapshot.seq_from_tail(snapshot.encode_plain(_session(2, 0, 2))) == 0  # DocPilot's file: none
    assert snapshot.seq_from_tail(data[:-3]) is None  # torn: the caller decodes the whole file
    assert snapshot.seq_from_tail(b'..."docpilotd": {"schema": 1, "seq": "x"}}') is None
