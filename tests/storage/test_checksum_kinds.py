"""The two kinds of snapshot checksum: schema 2 (CRC-32 of the raw bytes, written now) catches a
change of any byte, and schema 1 files of older daemons (BLAKE2b of the re-encoded body) still
verify and recover the old way."""

from __future__ import annotations

import msgspec
import pytest

from docpilotd.domain import changes
from docpilotd.domain.model import Session
from docpilotd.storage import snapshot
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, build_session


def schema1_file(session: Session, seq: int, pretty: bool = True) -> bytes:
    """A snapshot as older daemons wrote it (schema 1, `blake2b:` over the compact body and seq)."""
    body = snapshot.encode_body(session)
    meta = msgspec.json.encode(snapshot.FileMeta(schema=1, seq=seq, checksum=snapshot.checksum_v1(body, seq)))
    data = body[:-1] + b',"docpilotd":' + meta + b"}"
    return msgspec.json.format(data, indent=2) + b"\n" if pretty else data + b"\n"


def _finished(commands: int = 2) -> Session:
    clock = Clock()
    session = build_session(commands=commands, annotations=1, clock=clock)
    return changes.apply(session, changes.Stop(at=clock(), event_id="00000000-0000-4000-8000-00000000abcd"))


@pytest.mark.parametrize("pretty", [True, False])
def test_new_files_carry_schema_2_and_a_crc_of_their_bytes(pretty: bool) -> None:
    session = _finished()
    data = snapshot.encode(session, 9, pretty)
    meta = msgspec.json.decode(data)["docpilotd"]
    assert meta["schema"] == 2 and meta["checksum"].startswith("crc32:") and len(meta["checksum"]) == len("crc32:") + 8
    decoded = snapshot.decode(data, session.id)
    assert decoded.usable and decoded.integrity == "verified" and decoded.seq == 9
    # Still a DocPilot session: every DocPilot field, our field last.
    assert list(msgspec.json.decode(data))[-1] == "docpilotd"
    assert msgspec.json.decode(data, type=Session) == session


@pytest.mark.parametrize("pretty", [True, False])
def test_old_files_still_verify_the_old_way(pretty: bool) -> None:
    session = _finished()
    old = schema1_file(session, 7, pretty)
    decoded = snapshot.decode(old, session.id)
    assert decoded.usable and decoded.integrity == "verified" and decoded.seq == 7
    at = old.index(b"echo step 1") + len(b"echo step ")
    rotted = old[:at] + b"7" + old[at + 1 :]  # still parses and validates
    assert snapshot.decode(rotted, session.id).integrity == "mismatch"


def test_old_files_recover_as_they_are(store: SessionStore) -> None:
    session = _finished()
    path = store.layout.session_file(session.id)
    path.write_bytes(schema1_file(session, 7))
    before = path.read_bytes()
    report, found = recover_all(store, repair=True)
    [one] = report.sessions
    assert one.status == "ok" and one.source == f"sessions/{session.id}.json" and one.seq == 7 and not one.problems
    assert path.read_bytes() == before  # a healthy old file is not rewritten
    assert snapshot.encode_body(found[session.id].session) == snapshot.encode_body(session)


@pytest.mark.parametrize("pretty", [True, False])
def test_a_change_of_any_byte_never_verifies(pretty: bool) -> None:
    session = _finished(commands=1)
    data = snapshot.encode(session, 5, pretty)
    for at in range(len(data) - 1):  # the final newline: see the next test
        for value in {data[at] ^ 0x01, data[at] ^ 0x20, ord(" "), ord("0")} - {data[at]}:
            damaged = data[:at] + bytes([value]) + data[at + 1 :]
            decoded = snapshot.decode(damaged, session.id)
            assert decoded.integrity != "verified", (at, bytes([value]), damaged[max(0, at - 20) : at + 20])
            assert not decoded.usable


def test_only_the_final_newline_may_go() -> None:
    session = _finished(commands=1)
    data = snapshot.encode(session, 5)
    assert snapshot.decode(data[:-1]).integrity == "verified"
    assert snapshot.decode(data + b"\n").integrity == "mismatch"
    assert snapshot.decode(data[:-1] + b" ").integrity == "mismatch"


def test_a_damaged_name_of_our_field_is_a_mismatch_not_a_docpilot_file() -> None:
    session = _finished(commands=1)
    for pretty in (True, False):
        data = snapshot.encode(session, 5, pretty)
        renamed = data.replace(b'"docpilotd"', b'"docpilotD"')
        decoded = snapshot.decode(renamed, session.id)
        assert decoded.integrity == "mismatch" and not decoded.usable
    # A DocPilot file (no field of ours) is still unverified but usable.
    plain = snapshot.encode_plain(session)
    assert snapshot.decode(plain, session.id).integrity == "unverified"


def test_schema_and_kind_must_agree() -> None:
    session = _finished(commands=1)
    data = snapshot.encode(session, 5, pretty=False)
    assert snapshot.decode(data.replace(b'"schema":2', b'"schema":1')).integrity == "mismatch"
    assert snapshot.decode(data.replace(b'"schema":2', b'"schema":3')).integrity == "mismatch"
    old = schema1_file(session, 5, pretty=False)
    assert snapshot.decode(old.replace(b'"schema":1', b'"schema":2')).integrity == "mismatch"


@pytest.mark.parametrize(("description", "keys"), [("docpilotd", 2), ('docpilotd "docpilotd" crc32:00000000', 1)])
def test_a_string_value_like_our_key_before_it_changes_nothing(description: str, keys: int) -> None:
    session = msgspec.structs.replace(_finished(commands=1), description=description)
    for pretty in (True, False):
        data = snapshot.encode(session, 5, pretty)
        assert data.count(b'"docpilotd"') == keys  # the value too, when it is exactly our key
        assert snapshot.decode(data, session.id).integrity == "verified"
