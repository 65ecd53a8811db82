"""Capture ids: "{shell instance}:{counter}", and the per-session marks that make ingestion
exactly once (see `recorder`). The marks live on the engine's Entry and are rebuilt from the
session's stored commands when missing (after a restart, a restore or a replacement)."""

from __future__ import annotations

from ...domain.model import Session
from ..engine import Entry


def split_capture_id(capture_id: str) -> tuple[str, int] | None:
    instance, sep, counter = capture_id.rpartition(":")
    if not sep or not instance or not counter.isdigit():
        return None
    return instance, int(counter)


def capture_marks(entry: Entry, session: Session) -> dict[str, int]:
    """Highest counter recorded per shell instance in this session (built once, then kept)."""
    marks = entry.capture_marks
    if marks is None:
        marks = {}
        for command in session.commands:
            if command.capture_id:
                parsed = split_capture_id(command.capture_id)
                if parsed and parsed[1] > marks.get(parsed[0], -1):
                    marks[parsed[0]] = parsed[1]
        entry.capture_marks = marks
    return marks
