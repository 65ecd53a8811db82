"""Session validation: DocPilot's checks (its inverted start-time check fixed) and more.

`problems(session)` returns every finding as a line naming the field, and an empty list for a
trustworthy session. It never raises on any decoded session, whatever its content.

Checks: the id is a UUID (it names files) and the description is not blank; every timestamp is
RFC 3339; created_at <= started_at <= stopped_at and created_at <= updated_at; a live session has no
stopped_at and a stopped one has one; stats agree with the lists; annotation and event ids are
UUIDs and unique; strings hold no NUL characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from . import timestamps
from .model import Annotation, Session, SessionEvent, state_name

MAX_REPORTED = 20  # a badly damaged session lists its first problems, not thousands


_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\Z")


def is_uuid(text: str) -> bool:
    """Hyphenated or simple hex form, as DocPilot's Uuid::parse_str accepts."""
    return _UUID.match(text) is not None and len(text) in (32, 36)


def problems(session: Session) -> list[str]:
    found: list[str] = []
    for problem in _problems(session):
        found.append(problem)
        if len(found) >= MAX_REPORTED:
            found.append("(further problems not listed)")
            break
    return found


def _problems(s: Session) -> Iterator[str]:
    if not is_uuid(s.id):
        yield f"id: not a UUID: {s.id[:60]!r}"
    if not s.description.strip():
        yield "description: empty"
    if "\x00" in s.description or "\x00" in s.id:
        yield "description: contains a NUL character"

    times: dict[str, int] = {}
    for name in ("created_at", "updated_at", "started_at", "stopped_at"):
        value = getattr(s, name)
        if value is None:
            continue
        try:
            times[name] = timestamps.parse_ns(value)
        except timestamps.TimestampError as exc:
            yield f"{name}: {exc}"
    if "created_at" in times:
        if "started_at" in times and times["started_at"] < times["created_at"]:
            yield "started_at: before created_at"
        if "updated_at" in times and times["updated_at"] < times["created_at"]:
            yield "updated_at: before created_at"
    if "stopped_at" in times and "started_at" in times and times["stopped_at"] < times["started_at"]:
        yield "stopped_at: before started_at"

    state = state_name(s.state)
    if state in ("Active", "Paused") and s.stopped_at is not None:
        yield f"stopped_at: set on a {state} session"
    if state == "Stopped" and s.stopped_at is None:
        yield "stopped_at: missing on a Stopped session"

    stats = s.stats
    successful = failed = 0
    for index, entry in enumerate(s.commands):
        if entry.exit_code == 0:
            successful += 1
        elif entry.exit_code is not None:
            failed += 1
        if not timestamps.is_valid(entry.timestamp):
            yield f"commands[{index}].timestamp: not an RFC 3339 timestamp"
    if stats.total_commands != len(s.commands):
        yield f"stats.total_commands: {stats.total_commands} but {len(s.commands)} commands"
    if stats.successful_commands != successful:
        yield f"stats.successful_commands: {stats.successful_commands} but {successful} succeeded"
    if stats.failed_commands != failed:
        yield f"stats.failed_commands: {stats.failed_commands} but {failed} failed"
    if stats.total_annotations != len(s.annotations):
        yield f"stats.total_annotations: {stats.total_annotations} but {len(s.annotations)} annotations"
    if stats.duration_seconds is not None and stats.duration_seconds < 0:
        yield "stats.duration_seconds: negative"

    seen: set[str] = set()
    identified: tuple[tuple[str, Sequence[Annotation | SessionEvent]], ...] = (
        ("annotations", s.annotations),
        ("events", s.events),
    )
    for kind, items in identified:
        for index, item in enumerate(items):
            if not is_uuid(item.id):
                yield f"{kind}[{index}].id: not a UUID"
            elif item.id in seen:
                yield f"{kind}[{index}].id: duplicate id {item.id}"
            seen.add(item.id)
            if not timestamps.is_valid(item.timestamp):
                yield f"{kind}[{index}].timestamp: not an RFC 3339 timestamp"
