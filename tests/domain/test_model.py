"""The session model keeps DocPilot's exact JSON shape: names, order, enums, nullability."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from docpilotd.domain.model import ErrorState, Session, is_live, state_name
from docpilotd.storage import snapshot


def key_order(value: Any) -> Any:
    """The keys of every object, in order, recursively (json.loads keeps file order)."""
    if isinstance(value, dict):
        return [(key, key_order(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [key_order(item) for item in value]
    return None


def test_example_round_trips_to_the_same_json_value_and_field_order(example_bytes: bytes) -> None:
    session = msgspec.json.decode(example_bytes, type=Session)
    out = snapshot.encode_plain(session)
    assert json.loads(out) == json.loads(example_bytes)
    assert key_order(json.loads(out)) == key_order(json.loads(example_bytes))
    # Pretty-printed with a 2-space indent like DocPilot: identical up to the final newline.
    assert out.rstrip(b"\n") == example_bytes.rstrip(b"\n")


def test_example_round_trips_through_the_snapshot_format(example_bytes: bytes) -> None:
    session = msgspec.json.decode(example_bytes, type=Session)
    data = snapshot.encode(session, seq=7)
    value = json.loads(data)
    extra = value.pop("docpilotd")
    assert extra["schema"] == snapshot.SCHEMA and extra["seq"] == 7
    assert extra["checksum"].startswith("crc32:")
    # Every DocPilot field is still there, in DocPilot's order, so DocPilot still loads our files.
    assert key_order(value) == key_order(json.loads(example_bytes))
    assert value == json.loads(example_bytes)


def test_example_decodes_with_the_documented_values(example_session: Session) -> None:
    s = example_session
    assert s.state == "Active" and state_name(s.state) == "Active" and is_live(s)
    assert [c.exit_code for c in s.commands] == [0, 0, 130]
    assert [a.annotation_type for a in s.annotations] == ["Explanation", "Milestone"]
    assert s.events[0].event_type == "SessionStarted"
    assert s.stats.total_commands == 3 and s.stats.failed_commands == 1
    # Nanosecond timestamps stay strings, byte for byte (datetime would drop the nanoseconds).
    assert s.created_at == "2025-08-01T09:00:00.123456789Z"


@pytest.mark.parametrize(
    ("state_json", "name", "live"),
    [
        ('"Active"', "Active", True),
        ('"Paused"', "Paused", True),
        ('"Stopped"', "Stopped", False),
        ('{"Error": "disk on fire"}', "Error", False),
    ],
)
def test_every_state_spelling_round_trips(
    example_bytes: bytes, state_json: str, name: str, live: bool
) -> None:
    data = example_bytes.replace(b'"state": "Active"', b'"state": ' + state_json.encode(), 1)
    session = msgspec.json.decode(data, type=Session)
    assert state_name(session.state) == name
    assert is_live(session) is live
    assert json.loads(snapshot.encode_plain(session))["state"] == json.loads(state_json)


def test_error_state_is_a_one_key_object() -> None:
    assert msgspec.json.encode(ErrorState("boom")) == b'{"Error":"boom"}'
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"Error": "boom", "extra": 1}', type=ErrorState)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        (b'"state": "Active"', b'"state": "Sleeping"', "$.state"),
        (b'"annotation_type": "Explanation"', b'"annotation_type": "Joke"', "annotation_type"),
        (b'"event_type": "CommandCaptured"', b'"event_type": "Coffee"', "event_type"),
        (b'"exit_code": 130', b'"exit_code": 2147483648', "exit_code"),
        (b'"exit_code": 130', b'"exit_code": "130"', "exit_code"),
        (b'"total_commands": 3', b'"total_commands": -3', "total_commands"),
        (b'"tags": []', b'"tags": [1]', "tags"),
    ],
)
def test_strict_typed_decode_rejects_what_docpilot_cannot_read(
    example_bytes: bytes, old: bytes, new: bytes, where: str
) -> None:
    data = example_bytes.replace(old, new, 1)
    assert data != example_bytes
    with pytest.raises(msgspec.ValidationError, match=where.replace("$", r"\$")):
        msgspec.json.decode(data, type=Session)


def test_missing_field_is_rejected(example_bytes: bytes) -> None:
    value = json.loads(example_bytes)
    del value["stats"]
    with pytest.raises(msgspec.ValidationError, match="stats"):
        msgspec.json.decode(json.dumps(value), type=Session)


def test_unknown_fields_are_ignored_like_docpilot_does(example_bytes: bytes) -> None:
    value = json.loads(example_bytes)
    value["future_field"] = {"anything": [1, 2]}
    session = msgspec.json.decode(json.dumps(value), type=Session)
    assert "future_field" not in json.loads(snapshot.encode_plain(session))
