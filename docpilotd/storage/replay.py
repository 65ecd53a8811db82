"""Replay of journal records on top of a snapshot: how recovery reaches the last acknowledged change.

Rules:
  - Records apply in sequence order, each at most once: a record at or below the snapshot's
    sequence (or the last one replayed) is skipped.
  - Replay is idempotent by identity as well: a record whose change the session already holds is
    not applied again, whatever wrote the snapshot. A snapshot DocPilot rewrote (it drops our
    `docpilotd` field, so its sequence is unknown: 0) still holds changes the journal holds too.
    What a session holds, by identity:
      RecordCommand  its event id is among the events, or its capture id (when it has one) among
                     the commands' capture ids;
      Annotate       its annotation id is among the annotations, or its event id among the events;
      Pause, Resume, Stop, Fail, Configure, EditAnnotation, DeleteAnnotation   its event id is among the
                     events (each appends one, like every change; the Annotate of an annotation
                     deleted since is still held: its event stays among the events);
      Create         the session exists, with that id;
      Replace        the session equals the replacement (a session that merely contains the
                     replacement's ids may be the state the Replace was made from: a restore of
                     an earlier backup, a redaction, an edit -- those must apply).
    A snapshot is the state after some prefix of the journal, whoever saved it last: when it
    holds record k, it holds (or a later Replace within the prefix superseded) every record
    before k. So every record up to the last one the starting snapshot holds is already applied
    -- including a record a restore erased and the restore itself -- and after it each record is
    still checked against the session as replay builds it (a change is never applied twice).
    Records skipped this way count in `already_present`: neither applied, nor refused, nor a gap.
  - A jump in sequence numbers after what the snapshot holds is a lost window and is reported;
    the records after it still apply when the state machine allows them (each record is
    self-contained). Below the last record the snapshot holds, a jump costs nothing (the snapshot
    has those changes).
  - A record the state machine refuses is reported, never forced.

Invariant: replay never applies a change whose annotation, event or capture id the session holds,
so a session that validated before replay has no duplicate id after it. Cost is linear: the id
sets are built once per call (only when a record needs them) and kept up to date as records
apply; a Replace, which brings a whole new session, makes them be built again from it.

The result is what the daemon serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..domain import changes
from ..domain.model import Session
from ..errors import InvalidTransition
from .journal import Record


@dataclass
class Replayed:
    session: Session | None
    last_seq: int
    applied: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    already_present: int = 0  # records the session already held (see the module docstring)


class _Held:
    """The ids a session holds: annotation, event and capture ids."""

    def __init__(self, session: Session) -> None:
        self.session_id = session.id
        self.events = {event.id for event in session.events}
        self.annotations = {note.id for note in session.annotations}
        self.captures = {c.capture_id for c in session.commands if c.capture_id is not None}

    def holds(self, session: Session, change: changes.Change) -> bool:
        """Whether `session` (whose ids these are) already holds `change`."""
        if isinstance(change, changes.RecordCommand):
            capture = change.entry.capture_id
            return change.event_id in self.events or (capture is not None and capture in self.captures)
        if isinstance(change, changes.Annotate):
            return change.annotation.id in self.annotations or change.event_id in self.events
        if isinstance(change, changes.Create):
            return change.session_id == self.session_id
        if isinstance(change, changes.Replace):
            return _same(session, change.session)
        return change.event_id in self.events  # Pause, Resume, Stop, Fail, Configure, EditAnnotation, DeleteAnnotation

    def add(self, change: changes.Change) -> None:
        """Keep the sets current after `change` (not a Create or a Replace) applied."""
        if isinstance(change, changes.RecordCommand):
            if change.entry.capture_id is not None:
                self.captures.add(change.entry.capture_id)
        elif isinstance(change, changes.Annotate):
            self.annotations.add(change.annotation.id)
        if not isinstance(change, (changes.Create, changes.Replace)):
            self.events.add(change.event_id)


def _same(a: Session, b: Session) -> bool:
    """Equal DocPilot fields (a snapshot's session may carry our file field besides)."""
    return a is b or all(getattr(a, name) == getattr(b, name) for name in Session.__struct_fields__)


def replay(session: Session | None, base_seq: int, records: list[Record]) -> Replayed:
    result = Replayed(session=session, last_seq=base_seq)
    pending: list[Record] = []
    for record in sorted(records, key=lambda r: r.seq):
        if record.seq > (pending[-1].seq if pending else base_seq):
            pending.append(record)  # at or below: already in the snapshot, or a duplicate sequence
    held: _Held | None = None
    # The last record the starting snapshot holds: it holds everything before it too.
    covered = base_seq
    if session is not None and pending:
        held = _Held(session)
        for record in pending:
            if held.holds(session, record.change):
                covered = record.seq
    for record in pending:
        if record.seq <= covered:
            result.already_present += 1
            result.last_seq = record.seq
            continue
        if record.seq != result.last_seq + 1 and not (result.session is None and result.last_seq == 0):
            result.gaps.append((result.last_seq + 1, record.seq - 1))
        result.last_seq = record.seq
        change = record.change
        if result.session is not None:
            if held is None:
                held = _Held(result.session)
            if held.holds(result.session, change):
                result.already_present += 1
                continue
        try:
            if result.session is None:
                if not isinstance(change, (changes.Create, changes.Replace)):
                    raise InvalidTransition("a change for a session that does not exist yet")
                result.session = changes.create(change) if isinstance(change, changes.Create) else change.session
                held = None
            else:
                result.session = changes.apply(result.session, change)
                if isinstance(change, changes.Replace):
                    held = None  # a whole new session: its ids are gathered when next needed
                elif held is not None:
                    held.add(change)
        except InvalidTransition as exc:
            result.refused.append(f"record {record.seq}: {exc}")
        else:
            result.applied += 1
    return result
