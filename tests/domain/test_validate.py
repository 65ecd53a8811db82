"""Validation: every invariant is caught, and DocPilot's normal sessions pass."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import msgspec
import pytest

from docpilotd.domain import timestamps, validate
from docpilotd.domain.model import Annotation, ErrorState, Session, SessionEvent
from tests.conftest import build_session

Edit = Callable[[Session], None]


def edited(example_bytes: bytes, edit: Edit) -> Session:
    session = msgspec.json.decode(example_bytes, type=Session)
    edit(session)
    return session


def test_docpilot_example_is_valid(example_session: Session) -> None:
    assert validate.problems(example_session) == []


def test_started_after_created_is_the_normal_case(example_bytes: bytes) -> None:
    """DocPilot's own check was inverted and rejected exactly this."""

    def later_start(s: Session) -> None:
        s.started_at = "2025-08-01T09:00:01.5Z"

    assert validate.problems(edited(example_bytes, later_start)) == []


def test_a_stopped_and_an_error_session_are_valid(example_bytes: bytes) -> None:
    def stopped(s: Session) -> None:
        s.state = "Stopped"
        s.stopped_at = "2025-08-01T10:00:00Z"
        s.stats.duration_seconds = 3600

    def failed(s: Session) -> None:
        s.state = ErrorState("boom")

    assert validate.problems(edited(example_bytes, stopped)) == []
    assert validate.problems(edited(example_bytes, failed)) == []


def test_sessions_built_by_the_state_machine_are_valid() -> None:
    for n in (0, 1, 10, 200):
        assert validate.problems(build_session(commands=n, annotations=n // 3)) == []


def _set(attr: str, value: object) -> Edit:
    def edit(s: Session) -> None:
        target: object = s
        *parents, last = attr.split(".")
        for name in parents:
            target = target[int(name)] if name.isdigit() else getattr(target, name)  # type: ignore[index]
        setattr(target, last, value)

    return edit


def _stopped_before_start(s: Session) -> None:
    s.state = "Stopped"
    s.stopped_at = "2025-08-01T08:00:00Z"


def _dup_annotation_id(s: Session) -> None:
    s.annotations[1].id = s.annotations[0].id


def _dup_event_id(s: Session) -> None:
    s.events[3].id = s.events[1].id


def _event_reuses_annotation_id(s: Session) -> None:
    s.events[0].id = s.annotations[0].id


def _extra_annotation(s: Session) -> None:
    s.annotations.append(
        Annotation(id="1b4e28ba-2fa1-41d2-883f-0016d3cca427", text="x", timestamp=s.created_at, annotation_type="Note")
    )


def _extra_event(s: Session) -> None:
    s.events.append(
        SessionEvent(id="not-a-uuid", event_type="ConfigurationChanged", timestamp=s.created_at, details=None)
    )


CASES: list[tuple[str, Edit, str]] = [
    ("empty description", _set("description", ""), "description: empty"),
    ("blank description", _set("description", "   \t"), "description: empty"),
    ("NUL in description", _set("description", "a\x00b"), "description: contains a NUL character"),
    ("id not a UUID", _set("id", "../../etc/passwd"), "id: not a UUID"),
    ("empty id", _set("id", ""), "id: not a UUID"),
    ("started before created", _set("started_at", "2025-08-01T08:59:59.999999999Z"), "started_at: before created_at"),
    ("updated before created", _set("updated_at", "2025-07-31T09:00:00Z"), "updated_at: before created_at"),
    ("stopped before started", _stopped_before_start, "stopped_at: before started_at"),
    ("live session with stopped_at", _set("stopped_at", "2025-08-01T10:00:00Z"), "stopped_at: set on a Active session"),
    ("stopped without stopped_at", _set("state", "Stopped"), "stopped_at: missing on a Stopped session"),
    ("total_commands too high", _set("stats.total_commands", 4), "stats.total_commands: 4 but 3 commands"),
    ("total_commands too low", _set("stats.total_commands", 0), "stats.total_commands: 0 but 3 commands"),
    ("successful mismatch", _set("stats.successful_commands", 3), "stats.successful_commands: 3 but 2 succeeded"),
    ("failed mismatch", _set("stats.failed_commands", 0), "stats.failed_commands: 0 but 1 failed"),
    ("exit code changed", _set("commands.2.exit_code", 0), "stats.successful_commands: 2 but 3 succeeded"),
    ("annotations mismatch", _set("stats.total_annotations", 1), "stats.total_annotations: 1 but 2 annotations"),
    ("annotation list grew", _extra_annotation, "stats.total_annotations: 2 but 3 annotations"),
    ("negative duration", _set("stats.duration_seconds", -1), "stats.duration_seconds: negative"),
    ("annotation id not a UUID", _set("annotations.0.id", "note-1"), "annotations[0].id: not a UUID"),
    (
        "annotation id almost a UUID",
        _set("annotations.1.id", "a170b338-3926-4059-b28c-105d1fb17c2g"),
        "annotations[1].id: not a UUID",
    ),
    ("event id not a UUID", _set("events.2.id", ""), "events[2].id: not a UUID"),
    ("appended event id not a UUID", _extra_event, "events[6].id: not a UUID"),
    ("duplicate annotation id", _dup_annotation_id, "annotations[1].id: duplicate id"),
    ("duplicate event id", _dup_event_id, "events[3].id: duplicate id"),
    ("event reuses an annotation id", _event_reuses_annotation_id, "events[0].id: duplicate id"),
    ("created_at garbage", _set("created_at", "yesterday"), "created_at: not an RFC 3339 timestamp"),
    ("updated_at month 13", _set("updated_at", "2025-13-01T09:00:00Z"), "updated_at: no such date"),
    ("started_at Feb 30", _set("started_at", "2025-02-30T09:00:00Z"), "started_at: no such date"),
    ("stopped_at hour 24", _set("stopped_at", "2025-08-01T24:00:00Z"), "stopped_at: no such time"),
    ("created_at year 0", _set("created_at", "0000-01-01T00:00:00Z"), "created_at: no such date"),
    ("created_at without zone", _set("created_at", "2025-08-01T09:00:00"), "created_at: not an RFC 3339"),
    ("created_at ten fraction digits", _set("created_at", "2025-08-01T09:00:00.1234567890Z"), "created_at: not an RFC 3339"),
    (
        "created_at non-ASCII digits",
        _set("created_at", "\u0662\u0660\u0662\u0665-08-01T09:00:00Z"),
        "created_at: not an RFC 3339",
    ),
    ("command timestamp", _set("commands.1.timestamp", ""), "commands[1].timestamp: not an RFC 3339 timestamp"),
    ("annotation timestamp", _set("annotations.0.timestamp", "2025-08-01"), "annotations[0].timestamp: not an RFC 3339"),
    ("event offset", _set("events.5.timestamp", "2025-08-01T09:00:29.1+25:00"), "events[5].timestamp: not an RFC 3339"),
]


@pytest.mark.parametrize(("name", "edit", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_invariant_is_caught(example_bytes: bytes, name: str, edit: Edit, expected: str) -> None:
    found = validate.problems(edited(example_bytes, edit))
    assert any(line.startswith(expected) for line in found), found


def test_problems_are_capped_for_a_badly_damaged_session(example_bytes: bytes) -> None:
    def ruin(s: Session) -> None:
        for event in s.events:
            event.id = "x"
            event.timestamp = "never"
        s.events *= 10

    found = validate.problems(edited(example_bytes, ruin))
    assert len(found) == validate.MAX_REPORTED + 1
    assert found[-1] == "(further problems not listed)"


@pytest.mark.parametrize(
    "text",
    ["6513270e-269e-4d37-b2a7-4de452e6b438", "6513270E269E4D37B2A74DE452E6B438"],
)
def test_uuid_forms_docpilot_accepts(text: str) -> None:
    assert validate.is_uuid(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "6513270e-269e-4d37-b2a7-4de452e6b43",
        "6513270e-269e4d37-b2a7-4de452e6b438",
        "6513270e-269e-4d37-b2a7-4de452e6b438\n",
        "{6513270e-269e-4d37-b2a7-4de452e6b438}",
    ],
)
def test_strings_that_are_not_uuids(text: str) -> None:
    assert not validate.is_uuid(text)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2025-08-01T09:00:00.123456789Z", 1_754_038_800_123_456_789),
        ("2025-08-01T09:00:00.5Z", 1_754_038_800_500_000_000),
        ("2025-08-01T11:00:00+02:00", 1_754_038_800_000_000_000),
        ("2025-08-01T08:30:00-00:30", 1_754_038_800_000_000_000),
    ],
)
def test_timestamps_parse_to_nanoseconds(text: str, ns: int) -> None:
    assert timestamps.parse_ns(text) == ns


@pytest.mark.parametrize(
    ("ns", "text"),
    [(-1, "1969-12-31T23:59:59.999999999Z"), (0, "1970-01-01T00:00:00.000000000Z")],
)
def test_format_ns_in_a_fresh_process(ns: int, text: str) -> None:
    """The first call of a process, whatever second it asks for (the per-second cache starts empty)."""
    code = f"from docpilotd.domain.timestamps import format_ns; print(format_ns({ns}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == text


def test_timestamps_format_round_trips() -> None:
    for ns in (0, 1, -1, -(10**9), 1_754_038_800_123_456_789, 4_102_444_800_000_000_000 - 1, 5, -1):
        assert timestamps.parse_ns(timestamps.format_ns(ns)) == ns
    assert timestamps.format_ns(1_754_038_800_000_000_001) == "2025-08-01T09:00:00.000000001Z"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0000-01-01T00:00:00Z",
        "2025-00-10T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "2025-08-01T09:60:00Z",
        "\u0662\u0660\u0662\u0665-08-01T09:00:00Z",
        "2025-08-01T09:00:00Z\n",
        "2025-08-01T09:00:00+24:00",
        "2025-08-01T09:00:00-01:60",
    ],
)
def test_invalid_timestamps_raise_timestamp_error_only(text: str) -> None:
    with pytest.raises(timestamps.TimestampError):
        timestamps.parse_ns(text)
    assert timestamps.is_valid(text) is False


def test_canonical_uuid_is_lower_case_and_hyphenated() -> None:
    from docpilotd.domain.validate import canonical_prefix, canonical_uuid

    spelled = "3d65a113-5fa1-4530-b289-7b401e21f0c2"
    for variant in (spelled, spelled.upper(), spelled.replace("-", ""), spelled.replace("-", "").upper()):
        assert canonical_uuid(variant) == spelled
    assert canonical_uuid("not-a-uuid") == "not-a-uuid"
    assert canonical_prefix(" 3D65-A1 ") == "3d65a1"
