"""The snapshot format: checksum, and `decode` turning any bytes into a clear verdict, never raising."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest

from docpilotd.domain.model import Session
from docpilotd.storage import snapshot
from tests.conftest import build_session


@pytest.fixture(scope="module")
def real_snapshot() -> bytes:
    """A real snapshot as the store writes it: pretty, with our checksum."""
    return snapshot.encode(build_session(commands=12, annotations=4), seq=42)


def assert_unusable(decoded: snapshot.Decoded, *fragments: str) -> None:
    assert not decoded.usable
    assert decoded.problem, decoded
    for fragment in fragments:
        assert fragment in decoded.problem, decoded.problem


def test_our_snapshot_is_verified(real_snapshot: bytes) -> None:
    decoded = snapshot.decode(real_snapshot)
    assert decoded.usable and decoded.integrity == "verified" and decoded.problem is None
    assert decoded.seq == 42
    assert isinstance(decoded.session, Session)
    assert decoded.session.stats.total_commands == 12


def test_compact_snapshot_is_verified_too() -> None:
    session = build_session(commands=3)
    data = snapshot.encode(session, seq=5, pretty=False)
    assert data.count(b"\n") == 1
    decoded = snapshot.decode(data, session.id)
    assert decoded.usable and decoded.integrity == "verified"
    assert snapshot.encode_body(decoded.session) == snapshot.encode_body(session)  # type: ignore[arg-type]


def test_docpilot_file_without_checksum_is_unverified_but_usable(example_bytes: bytes) -> None:
    decoded = snapshot.decode(example_bytes, "6513270e-269e-4d37-b2a7-4de452e6b438")
    assert decoded.integrity == "unverified"
    assert decoded.usable and decoded.seq == 0


def test_reencoding_a_decoded_snapshot_gives_the_same_bytes(real_snapshot: bytes) -> None:
    decoded = snapshot.decode(real_snapshot)
    assert decoded.session is not None
    assert snapshot.encode(snapshot.plain_session(decoded.session), decoded.seq) == real_snapshot


def test_a_byte_flip_inside_a_command_that_still_parses_is_a_mismatch(real_snapshot: bytes) -> None:
    at = real_snapshot.index(b"echo step 7") + len(b"echo ")
    damaged = real_snapshot[:at] + bytes([real_snapshot[at] ^ 0x01]) + real_snapshot[at + 1 :]
    assert b"echo rtep 7" in damaged
    decoded = snapshot.decode(damaged)
    assert decoded.session is not None and decoded.problem is None  # parses and validates...
    assert decoded.integrity == "mismatch"  # ...but the checksum catches it
    assert not decoded.usable


def test_an_edited_checksum_is_a_mismatch(real_snapshot: bytes) -> None:
    value = json.loads(real_snapshot)
    value["docpilotd"]["checksum"] = snapshot.raw_checksum(0, 0)
    decoded = snapshot.decode(json.dumps(value).encode())
    assert decoded.integrity == "mismatch" and not decoded.usable


def test_file_id_different_from_file_name(real_snapshot: bytes) -> None:
    other = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
    decoded = snapshot.decode(real_snapshot, expected_id=other)
    assert_unusable(decoded, f"file is named for {other}", "holds session")
    assert decoded.session is not None  # still readable for a person to inspect
    assert snapshot.decode(real_snapshot, expected_id=decoded.session.id).usable


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty file (zero bytes)"),
        (b"\x00" * 4096, "all NUL bytes (4096 bytes)"),
        (b"\x00", "all NUL bytes (1 bytes)"),
        (b'{"id": "x"\x00\x00\x00\x00', "NUL bytes at offset 10"),
        (b"   \n", "not valid JSON"),
        (b"null", "invalid session data"),
        (b"[]", "invalid session data"),
        (b'"a string"', "invalid session data"),
        (b"\xff\xfe\xfd", "not valid JSON"),
        (b"[" * 100_000, "invalid session data"),
        (b"{" * 100_000, "not valid JSON"),
    ],
)
def test_unreadable_content_gives_a_clear_problem(data: bytes, fragment: str) -> None:
    assert_unusable(snapshot.decode(data), fragment)


def test_truncated_at_every_offset_never_raises_and_is_never_usable(real_snapshot: bytes) -> None:
    # The closing brace and final newline are the last two bytes: any shorter prefix is torn.
    end = len(real_snapshot.rstrip())
    for offset in range(end):
        decoded = snapshot.decode(real_snapshot[:offset])
        assert not decoded.usable, offset
        assert decoded.problem, offset
    assert snapshot.decode(real_snapshot[:end]).usable


def test_nul_tail_of_a_torn_write_is_caught_at_every_offset(real_snapshot: bytes) -> None:
    # What a crash without fsync leaves on many file systems: the right size, zeros at the end.
    for offset in range(0, len(real_snapshot), 7):
        torn = real_snapshot[:offset] + b"\x00" * (len(real_snapshot) - offset)
        assert_unusable(snapshot.decode(torn), "NUL")


def test_random_byte_flips_never_raise_and_never_pass_silently(real_snapshot: bytes) -> None:
    original = snapshot.decode(real_snapshot).session
    assert original is not None
    original_body = snapshot.encode_body(original)
    rng = random.Random(20250801)
    for _ in range(3000):
        data = bytearray(real_snapshot)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
        decoded = snapshot.decode(bytes(data))
        if decoded.usable and b'"docpilotd"' in data:
            # A verified file: only insignificant whitespace (or the meta's seq) was hit.
            assert decoded.integrity == "verified"
            assert decoded.session is not None
            assert snapshot.encode_body(decoded.session) == original_body
        elif not decoded.usable:
            assert decoded.problem or decoded.integrity == "mismatch"
        # else: a flip renamed the "docpilotd" key, so the file reads as an unverified DocPilot
        # file; that is all the format can say about it.


def edit(example_bytes: bytes, change: Any) -> bytes:
    value = json.loads(example_bytes)
    change(value)
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda v: v.update(state="Sleeping"), "$.state"),
        (lambda v: v["annotations"][0].update(annotation_type="Joke"), "annotation_type"),
        (lambda v: v["events"][0].update(event_type="Nap"), "event_type"),
        (lambda v: v.update(state={"Error": 3}), "$.state"),
        (lambda v: v.update(state={"Broken": "x"}), "$.state"),
        (lambda v: v["commands"][0].update(exit_code=2**40), "exit_code"),
        (lambda v: v["commands"][0].update(exit_code=-(2**31) - 1), "exit_code"),
        (lambda v: v["stats"].update(total_commands=2**70), "total_commands"),
        (lambda v: v["stats"].update(duration_seconds=2**64), "duration_seconds"),
        (lambda v: v["stats"].update(total_annotations=1.5), "total_annotations"),
        (lambda v: v.update(commands={"0": 1}), "$.commands"),
        (lambda v: v.update(description=None), "$.description"),
        (lambda v: v["metadata"].update(settings={"a": 1}), "settings"),
        (lambda v: v.pop("events"), "events"),
        (lambda v: v.update(docpilotd={"schema": "one", "seq": 1, "checksum": "x"}), "docpilotd"),
        (lambda v: v.update(docpilotd=[]), "docpilotd"),
    ],
)
def test_wrong_types_and_values_are_reported(example_bytes: bytes, change: Any, fragment: str) -> None:
    assert_unusable(snapshot.decode(edit(example_bytes, change)), "invalid session data", fragment)


@pytest.mark.parametrize(
    "escape",
    [rb"\ud800", rb"\udfff", rb"\udc00\ud800", rb"x\ud83d"],
)
def test_lone_surrogates_are_rejected_not_carried_into_encode(example_bytes: bytes, escape: bytes) -> None:
    data = example_bytes.replace(b'"npm run dev"', b'"npm ' + escape + b' run dev"', 1)
    assert data != example_bytes
    decoded = snapshot.decode(data)
    assert_unusable(decoded, "not valid JSON")


@pytest.mark.parametrize("bad", [b"\xff", b"\xc3", b"\xe0\x80\x80", b"\xf0\x9f\x9a", b"\xed\xa0\x80"])
def test_invalid_utf8_inside_a_string_is_reported(example_bytes: bytes, bad: bytes) -> None:
    data = example_bytes.replace(b'"npm run dev"', b'"npm ' + bad + b' run dev"', 1)
    assert_unusable(snapshot.decode(data), "not valid JSON")


def test_a_valid_surrogate_pair_is_fine(example_bytes: bytes) -> None:
    data = example_bytes.replace(b'"npm run dev"', rb'"npm run dev \ud83d\ude80"', 1)
    decoded = snapshot.decode(data)
    assert decoded.usable
    assert decoded.session is not None and decoded.session.commands[2].command == "npm run dev \U0001f680"


def test_deep_nesting_in_an_unknown_field(example_bytes: bytes) -> None:
    data = example_bytes.rstrip()[:-1] + b', "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    decoded = snapshot.decode(data)
    # Either refused as too deep or skipped as an unknown field; never a RecursionError or a crash.
    assert decoded.usable or "nested too deeply" in (decoded.problem or "")
    torn = example_bytes.rstrip()[:-1] + b', "extra": ' + b"[" * 100_000
    assert_unusable(snapshot.decode(torn), "not valid JSON")


def test_inconsistent_stats_are_reported_with_the_numbers(example_bytes: bytes) -> None:
    data = edit(example_bytes, lambda v: v["stats"].update(total_commands=7, failed_commands=0))
    assert_unusable(snapshot.decode(data), "stats.total_commands: 7 but 3 commands", "stats.failed_commands: 0 but 1 failed")


def test_validation_problems_keep_the_decoded_session(example_bytes: bytes) -> None:
    decoded = snapshot.decode(edit(example_bytes, lambda v: v.update(description="")))
    assert_unusable(decoded, "description: empty")
    assert decoded.session is not None and decoded.session.id == "6513270e-269e-4d37-b2a7-4de452e6b438"


def test_negative_seq_is_clamped(real_snapshot: bytes) -> None:
    value = json.loads(real_snapshot)
    value["docpilotd"]["seq"] = -5
    assert snapshot.decode(json.dumps(value).encode()).seq == 0


def test_encode_plain_drops_our_field(real_snapshot: bytes) -> None:
    decoded = snapshot.decode(real_snapshot)
    assert decoded.session is not None
    plain = snapshot.encode_plain(decoded.session)
    assert b"docpilotd" not in plain and b"checksum" not in plain
    assert msgspec.json.decode(plain, type=Session) == snapshot.plain_session(decoded.session)
    # encode_body restores the meta field it set aside
    assert isinstance(decoded.session, snapshot.SessionFile) and decoded.session.docpilotd is not None


def test_a_rotted_sequence_number_is_caught_by_the_checksum(example_session: Session) -> None:
    data = snapshot.encode(example_session, 41)
    assert snapshot.decode(data).integrity == "verified"
    rotted = data.replace(b'"seq": 41', b'"seq": 47')
    assert rotted != data
    assert snapshot.decode(rotted).integrity == "mismatch"
