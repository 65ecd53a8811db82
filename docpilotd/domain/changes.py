"""Changes to a session and the state machine that applies them.

Every mutation of a session is a `Change` value carrying everything it needs (timestamps, ids), so
that applying a recorded change again during recovery gives exactly the same session. This is the
unit the journal stores.

State machine (DocPilot's):

    (new) --Create--> Active
    Active --Pause--> Paused          (counts pause_resume_count)
    Paused --Resume--> Active
    Active|Paused --Stop--> Stopped    (sets stopped_at and duration_seconds)
    any --Fail--> Error(message)
    Active --RecordCommand-->  Active  (a paused session records no commands)
    Active|Paused --Annotate--> same
    Active|Paused --EditAnnotation--> same    (new text, maybe a new type; same id and timestamp)
    Active|Paused --DeleteAnnotation--> same  (counts total_annotations down)
    any --Configure--> same                 (one metadata setting set or removed: the backup policy)
    any --Replace--> the given session (restore from a backup, import)

Invariants: `apply` checks every precondition before it mutates anything, so a refused change
leaves the session untouched (an edit or a delete of an annotation the session does not hold is
refused too: the runtime looks the annotation up before it journals the change); each transition
appends exactly one event; `stats` stays consistent with the lists; `updated_at` is the timestamp
of the last change; an item of a list is never mutated (an edit puts a new Annotation in the old
one's place, a delete takes it out of the list: storage.snapshot relies on this).
"""

from __future__ import annotations

from typing import NamedTuple, Union

import msgspec

from ..errors import InvalidTransition
from . import timestamps
from .model import (
    Annotation,
    AnnotationType,
    CommandEntry,
    ErrorState,
    EventType,
    Session,
    SessionEvent,
    SessionMetadata,
    SessionStats,
    state_name,
)


class Create(msgspec.Struct, tag="create", forbid_unknown_fields=True):
    session_id: str
    description: str
    at: str
    event_id: str
    metadata: SessionMetadata
    output_file: str | None = None


class RecordCommand(msgspec.Struct, tag="command", forbid_unknown_fields=True):
    entry: CommandEntry
    event_id: str


class Annotate(msgspec.Struct, tag="annotate", forbid_unknown_fields=True):
    annotation: Annotation
    event_id: str


class EditAnnotation(msgspec.Struct, tag="edit_annotation", forbid_unknown_fields=True):
    """The annotation `annotation_id` gets `text` and `annotation_type` (the handler passes the
    current type when it is not changed); its id and timestamp (its place in the timeline) stay."""

    annotation_id: str
    text: str
    annotation_type: AnnotationType
    at: str
    event_id: str


class DeleteAnnotation(msgspec.Struct, tag="delete_annotation", forbid_unknown_fields=True):
    """The annotation `annotation_id` leaves the session (earlier snapshots and backups keep it)."""

    annotation_id: str
    at: str
    event_id: str


class Pause(msgspec.Struct, tag="pause", forbid_unknown_fields=True):
    at: str
    event_id: str


class Resume(msgspec.Struct, tag="resume", forbid_unknown_fields=True):
    at: str
    event_id: str


class Stop(msgspec.Struct, tag="stop", forbid_unknown_fields=True):
    at: str
    event_id: str


class Fail(msgspec.Struct, tag="fail", forbid_unknown_fields=True):
    at: str
    event_id: str
    message: str


class Configure(msgspec.Struct, tag="configure", forbid_unknown_fields=True):
    """One of the session's metadata settings set to `value`, or removed (None): how the session's
    backup policy is chosen or changed later (`docpilot policy NAME`)."""

    at: str
    event_id: str
    key: str
    value: str | None


class Replace(msgspec.Struct, tag="replace", forbid_unknown_fields=True):
    """The whole session replaced: a restore from a backup or an import. `at`: when (records
    written before it was kept have none)."""

    session: Session
    reason: str
    at: str | None = None


Change = Union[
    Create, RecordCommand, Annotate, EditAnnotation, DeleteAnnotation, Pause, Resume, Stop, Fail, Configure, Replace
]


def moment(change: Change) -> str | None:
    """When a change happened, as the session's clock reads it (the timestamp its event carries;
    a Replace its `at`, or None for one without). A session's `updated_at` is the latest moment of
    the changes it holds (see `_event`): what a restore to a point in time compares."""
    if isinstance(change, RecordCommand):
        return change.entry.timestamp
    if isinstance(change, Annotate):
        return change.annotation.timestamp
    if isinstance(change, Replace):
        return change.at
    return change.at


def create(change: Create) -> Session:
    """The new Active session a `Create` change describes."""
    session = Session(
        id=change.session_id,
        description=change.description,
        state="Active",
        created_at=change.at,
        updated_at=change.at,
        started_at=change.at,
        stopped_at=None,
        output_file=change.output_file,
        commands=[],
        annotations=[],
        events=[],
        metadata=change.metadata,
        stats=SessionStats(0, 0, 0, 0, None, 0),
    )
    _event(session, change.event_id, "SessionStarted", change.at, f"Session created: {change.description}")
    return session


class Rule(NamedTuple):
    """One row of the state machine: the states a change is allowed in, the state it leads to
    (None: the same), and what it does, for the refusal message."""

    allowed: tuple[str, ...]
    after: str | None
    action: str


# The state machine, written once (h11's style): `apply` and `state_after` both read it.
# Create, Replace, Fail and Configure are not here: Create needs no session, the others work from any.
TRANSITIONS: dict[type, Rule] = {
    RecordCommand: Rule(("Active",), None, "record a command"),
    Annotate: Rule(("Active", "Paused"), None, "add an annotation"),
    EditAnnotation: Rule(("Active", "Paused"), None, "edit an annotation"),
    DeleteAnnotation: Rule(("Active", "Paused"), None, "delete an annotation"),
    Pause: Rule(("Active",), "Paused", "pause"),
    Resume: Rule(("Paused",), "Active", "resume"),
    Stop: Rule(("Active", "Paused"), "Stopped", "stop"),
}


def apply(session: Session, change: Change) -> Session:
    """Apply `change` to `session` in place (or return the replacement) after checking it is allowed.

    Raises InvalidTransition, with the session unchanged, when the state does not allow the change.
    """
    if isinstance(change, Replace):
        return change.session
    if isinstance(change, Create):
        raise InvalidTransition(f"session {session.id} already exists")
    state = state_name(session.state)
    rule = TRANSITIONS.get(type(change))
    if rule is not None and state not in rule.allowed:
        raise InvalidTransition(f"cannot {rule.action}: session {session.id} is {state}")
    if isinstance(change, RecordCommand):
        entry = change.entry
        session.commands.append(entry)
        session.stats.total_commands += 1
        if entry.exit_code == 0:
            session.stats.successful_commands += 1
        elif entry.exit_code is not None:
            session.stats.failed_commands += 1
        _event(session, change.event_id, "CommandCaptured", entry.timestamp, entry.command)
    elif isinstance(change, Annotate):
        note = change.annotation
        session.annotations.append(note)
        session.stats.total_annotations += 1
        _event(session, change.event_id, "AnnotationAdded", note.timestamp, f"Annotation added: {note.id}")
    elif isinstance(change, EditAnnotation):
        index = _annotation_index(session, change.annotation_id, "edit")
        old = session.annotations[index]
        session.annotations[index] = Annotation(
            id=old.id, text=change.text, timestamp=old.timestamp, annotation_type=change.annotation_type
        )
        retyped = f" ({old.annotation_type} -> {change.annotation_type})" if old.annotation_type != change.annotation_type else ""
        _event(session, change.event_id, ANNOTATION_EVENT, change.at, f"Annotation edited: {old.id}{retyped}")
    elif isinstance(change, DeleteAnnotation):
        index = _annotation_index(session, change.annotation_id, "delete")
        old = session.annotations.pop(index)
        session.stats.total_annotations -= 1
        _event(session, change.event_id, ANNOTATION_EVENT, change.at, f"Annotation deleted: {old.id} ({old.annotation_type})")
    elif isinstance(change, Pause):
        session.state = "Paused"
        session.stats.pause_resume_count += 1
        _event(session, change.event_id, "SessionPaused", change.at, None)
    elif isinstance(change, Resume):
        session.state = "Active"
        _event(session, change.event_id, "SessionResumed", change.at, None)
    elif isinstance(change, Stop):
        session.state = "Stopped"
        session.stopped_at = change.at
        if session.started_at is not None:
            elapsed_ns = timestamps.parse_ns(change.at) - timestamps.parse_ns(session.started_at)
            session.stats.duration_seconds = max(0, elapsed_ns // 1_000_000_000)
        _event(session, change.event_id, "SessionStopped", change.at, None)
    elif isinstance(change, Fail):
        session.state = ErrorState(change.message)
        _event(session, change.event_id, "ErrorOccurred", change.at, change.message)
    elif isinstance(change, Configure):
        settings = dict(session.metadata.settings)  # a new dict: the old metadata is never mutated
        if change.value is None:
            settings.pop(change.key, None)
        else:
            settings[change.key] = change.value
        session.metadata = msgspec.structs.replace(session.metadata, settings=settings)
        shown = "removed" if change.value is None else change.value
        _event(session, change.event_id, "ConfigurationChanged", change.at, f"{change.key}: {shown}")
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"unknown change {type(change).__name__}")
    return session


# The event an annotation's edit or deletion appends. DocPilot's event types are a closed set (a
# file with another one does not load there) and none of them names an edit or a deletion, so the
# nearest is used: AnnotationAdded keeps the event among the annotation events, where a reader of
# the audit trail looks for what happened to annotations, and never passes it off as a change of
# configuration (ConfigurationChanged) or as an error. `details` says exactly what happened
# ("Annotation edited: <id>", "Annotation deleted: <id> (Warning)") and never holds the text: the
# old text stays in earlier snapshots and backups, and a note being deleted may be one its author
# regrets writing, which the audit trail must not keep a copy of.
ANNOTATION_EVENT: EventType = "AnnotationAdded"


def _annotation_index(session: Session, annotation_id: str, verb: str) -> int:
    """Where the annotation is in the session's list; InvalidTransition (nothing changed) when it
    is not there."""
    for index, note in enumerate(session.annotations):
        if note.id == annotation_id:
            return index
    raise InvalidTransition(f"cannot {verb} an annotation: session {session.id} has no annotation {annotation_id}")


def _event(session: Session, event_id: str, kind: EventType, at: str, details: str | None) -> None:
    session.events.append(SessionEvent(id=event_id, event_type=kind, timestamp=at, details=details))
    # updated_at never moves backwards, even if a hook reports an older command timestamp.
    if timestamps.not_before(at, session.updated_at):
        session.updated_at = at


def state_after(state: str | None, change: Change) -> str:
    """The state name a session in `state` (None: not yet created) has after `change`.

    Raises InvalidTransition exactly when `apply` would: the runtime checks a change against the
    state that all queued changes lead to, before the change is journaled.
    """
    if isinstance(change, Replace):
        return state_name(change.session.state)
    if state is None:
        if isinstance(change, Create):
            return "Active"
        raise InvalidTransition("no such session")
    if isinstance(change, Create):
        raise InvalidTransition("session already exists")
    if isinstance(change, Fail):
        return "Error"
    if isinstance(change, Configure):
        return state
    return require(state, type(change))


def require(state: str | None, kind: type) -> str:
    """The state after a change of `kind` (a type in TRANSITIONS) in `state`; InvalidTransition
    when the state does not allow it. Asks the table without building a change."""
    if state is None:
        raise InvalidTransition("no such session")
    rule = TRANSITIONS[kind]
    if state not in rule.allowed:
        raise InvalidTransition(f"cannot {rule.action}: the session is {state}")
    return rule.after or state
