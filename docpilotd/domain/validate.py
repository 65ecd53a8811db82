"""Session validation: DocPilot's checks (its inverted start-time check fixed) and more.

`problems(session)` returns every finding as a line naming the field, and an empty list for a
trustworthy session. It never raises on any decoded session, whatever its content.

Checks: the id is a UUID (it names files) and the description is not blank; every timestamp is
RFC 3339; created_at <= started_at <= stopped_at and created_at <= updated_at; a live session has no
stopped_at and a stopped one has one; stats agree with the lists; annotation and event ids are
UUIDs and unique; strings hold no NUL characters.

`problems(session, items=False)` leaves out the checks that look at each command, annotation and
event (their timestamps and ids, and the success and failure counts). Start-up recovery uses it
for a finished session whose checksum verified (see storage.snapshot.decode): its bytes are
exactly what docpilotd encoded from a session it held, and docpilotd only holds sessions that
passed every check and only changes them through `changes.apply`, with items it builds itself (ids
from its generator, timestamps from its clock formatter). Such a session is not loaded at start-up,
only summarized; when it is loaded to be served, it is checked in full, so even a file from a
buggy writer is refused then (and by fsck, which always checks everything). Everything about the
session as a whole is always checked.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from . import timestamps
from .model import Annotation, Session, SessionEvent, state_name

MAX_REPORTED = 20  # a badly damaged session lists its first problems, not thousands


_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\Z")


def is_uuid(text: str) -> bool:
    """Hyphenated or simple hex form, as DocPilot's Uuid::parse_str accepts."""
    return _UUID.match(text) is not None and len(text) in (32, 36)


def canonical_uuid(text: str) -> str:
    """The one spelling of a UUID docpilotd uses everywhere (file names, the registry, replies):
    lower case, hyphenated. Anything that is not a UUID comes back unchanged."""
    if not is_uuid(text):
        return text
    plain = text.replace("-", "").lower()
    return f"{plain[:8]}-{plain[8:12]}-{plain[12:16]}-{plain[16:20]}-{plain[20:]}"


# The fewest characters of an id (hyphens apart) that may name a session or an annotation: fewer
# would too easily name the wrong one.
MIN_ID_PREFIX = 4


def canonical_prefix(text: str) -> str:
    """A session id or prefix as typed, in the canonical spelling's terms: lower case; hyphens
    are compared apart (`3D65A1135F` finds 3d65a113-5fa1-...)."""
    return text.strip().lower().replace("-", "")


# The form docpilotd and DocPilot write (UTC, "T" and "Z"), with every field in range except the
# day of the month beyond 28; anything else goes through timestamps.is_valid, which accepts exactly
# the same strings, only slower (a regex, then the calendar, for each of 200,000 timestamps in a
# 100k-command session).
_CANONICAL = re.compile(
    r"(?!0000)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d{1,9})?Z\Z",
    re.ASCII,
)


@lru_cache(maxsize=4096)
def _day_exists(date: str) -> bool:
    """"YYYY-MM-DD" (already in range but for the day of the month) names a real day."""
    return int(date[8:10]) <= calendar.monthrange(int(date[:4]), int(date[5:7]))[1]


def is_timestamp(text: str) -> bool:
    """Exactly timestamps.is_valid, fast for the canonical form."""
    if _CANONICAL.match(text) is not None:
        return text[8:10] <= "28" or _day_exists(text[:10])
    return timestamps.is_valid(text)


def _ordered_text(text: str) -> bool:
    """A valid timestamp in the form whose text orders like time: UTC, nine fraction digits, no
    leap second (parse_ns reads second 60 as 59)."""
    return len(text) == 30 and text[17] != "6" and is_timestamp(text)


def problems(session: Session, items: bool = True) -> list[str]:
    """Every finding, at most MAX_REPORTED; `items=False` skips the per-item checks (see above)."""
    found: list[str] = []
    for problem in _problems(session, items):
        found.append(problem)
        if len(found) >= MAX_REPORTED:
            found.append("(further problems not listed)")
            break
    return found


def _problems(s: Session, items: bool) -> Iterator[str]:
    if not is_uuid(s.id):
        yield f"id: not a UUID: {s.id[:60]!r}"
    if not s.description.strip():
        yield "description: empty"
    if "\x00" in s.description or "\x00" in s.id:
        yield "description: contains a NUL character"

    values = {name: getattr(s, name) for name in ("created_at", "updated_at", "started_at", "stopped_at")}
    # Comparable keys: nanoseconds, or the text itself when every value is in the nanosecond
    # canonical form (valid, and its text orders like the time it names).
    times: dict[str, Any] = {}
    if all(value is None or _ordered_text(value) for value in values.values()):
        times = {name: value for name, value in values.items() if value is not None}
    else:
        for name, value in values.items():
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
    if items:
        for index, entry in enumerate(s.commands):
            if entry.exit_code == 0:
                successful += 1
            elif entry.exit_code is not None:
                failed += 1
            if not is_timestamp(entry.timestamp):
                yield f"commands[{index}].timestamp: not an RFC 3339 timestamp"
    if stats.total_commands != len(s.commands):
        yield f"stats.total_commands: {stats.total_commands} but {len(s.commands)} commands"
    if items and stats.successful_commands != successful:
        yield f"stats.successful_commands: {stats.successful_commands} but {successful} succeeded"
    if items and stats.failed_commands != failed:
        yield f"stats.failed_commands: {stats.failed_commands} but {failed} failed"
    if stats.total_annotations != len(s.annotations):
        yield f"stats.total_annotations: {stats.total_annotations} but {len(s.annotations)} annotations"
    if stats.duration_seconds is not None and stats.duration_seconds < 0:
        yield "stats.duration_seconds: negative"

    if not items:
        return
    seen: set[str] = set()
    identified: tuple[tuple[str, Sequence[Annotation | SessionEvent]], ...] = (
        ("annotations", s.annotations),
        ("events", s.events),
    )
    for kind, listed in identified:
        for index, item in enumerate(listed):
            if not is_uuid(item.id):
                yield f"{kind}[{index}].id: not a UUID"
            elif item.id in seen:
                yield f"{kind}[{index}].id: duplicate id {item.id}"
            seen.add(item.id)
            if not is_timestamp(item.timestamp):
                yield f"{kind}[{index}].timestamp: not an RFC 3339 timestamp"
