"""A session as it was at a moment: a retained generation, then the journal's records up to then.

The journal is kept from the oldest retained generation on (the engine trims only segments no
retained copy needs), so the segments between generations are incremental backups: any moment
from the oldest generation's state to now can be rebuilt. A moment is read on the session's own
clock: each change's time is the timestamp its event carries (`changes.moment`; a command's is when
it started), taken as never before the change before it, as the session's `updated_at` is; so the
state at T holds exactly the changes whose time, so read, is at or before T.

`rebuild` reads the journal after the oldest copy that verifies (the timeline), finds the last
change at or before T, and starts from the newest copy (the snapshot or a generation, compressed
or not) whose sequence is at or before that change, applying the records after it. Copies are
chosen by sequence, never by their own `updated_at`: a restore sets that back, while it happened
when it was made (`Replace.at`). Every record is checksummed (journal.py); a record missing in the
middle ends the timeline there (what follows cannot be reached from that copy), never silently
skipped; a torn tail is what recovery makes of it too (those records were never acknowledged).
`points` lists what can be rebuilt: the oldest copy's moment, the last change's, and the copies.

Pure storage: reads files, writes nothing (the runtime commits the result as a `Replace`, like a
restore, so it is reversible the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..domain import changes, timestamps
from ..domain.model import Session
from ..errors import InvalidTransition, PointNotAvailable
from . import journal, snapshot
from .store import SessionStore


@dataclass(frozen=True)
class Copy:
    """A snapshot or generation that can start a rebuild: its file, the sequence and the moment
    (`updated_at`) of the state it holds."""

    name: str
    seq: int
    moment_ns: int
    moment: str


@dataclass
class Rebuilt:
    session: Session
    base: str  # the file it started from
    seq: int  # the last journal record applied (the base's, when none was)
    applied: int  # records applied on top of the base
    moment: str  # the moment of the state rebuilt (its updated_at)
    skipped: list[str] = field(default_factory=list)  # records the state machine refused (as replay does)


@dataclass
class Points:
    """What `rebuild` can reach: from `earliest` (the state of the oldest copy that verifies) to
    `latest` (the last change the journal holds, or that copy's when none follows), and the
    changes in between, with the copies that can start a rebuild."""

    earliest: Copy
    latest: str
    changes: int  # journal records after the oldest copy, each a moment that can be restored
    copies: list[str]  # the copies' names, newest first (the snapshot's included)


def _candidates(store: SessionStore, session_id: str) -> list[Path]:
    """The snapshot, then the generations newest first."""
    return [store.layout.session_file(session_id), *(b.path for b in reversed(store.generations(session_id)))]


def _oldest(store: SessionStore, session_id: str, paths: list[Path]) -> Copy:
    """The oldest copy that verifies: where the timeline that can be rebuilt starts."""
    for path in reversed(paths):
        decoded = store.read(path, session_id)
        if decoded.usable and decoded.session is not None:
            stamp = decoded.session.updated_at
            return Copy(path.name, decoded.seq, timestamps.parse_ns(stamp), stamp)
    raise PointNotAvailable("no copy of the session verifies: nothing can be rebuilt")


@dataclass
class _Timeline:
    """The journal's records after the oldest copy, each with its moment on the session's clock:
    the latest of its own time and those before it (a restore to an earlier state happens when it
    is made, not at the earlier state's time)."""

    records: list[journal.Record]
    moments: list[int]
    stamps: list[str]


def _timeline(store: SessionStore, session_id: str, oldest: Copy) -> _Timeline:
    read = journal.read_segments(store.ops, store.layout.journal, session_id, after_seq=oldest.seq,
                                 owner=store.owner_uid)
    line = _Timeline([], [], [])
    last_ns, last_stamp, seq = oldest.moment_ns, oldest.moment, oldest.seq
    for record in read.records:
        if record.seq <= seq:
            continue
        if record.seq != seq + 1:
            break  # a gap (damage in the middle): nothing after it can be reached
        stamp = changes.moment(record.change)
        if stamp is not None and timestamps.parse_ns(stamp) > last_ns:
            last_ns, last_stamp = timestamps.parse_ns(stamp), stamp
        line.records.append(record)
        line.moments.append(last_ns)
        line.stamps.append(last_stamp)
        seq = record.seq
    return line


def points(store: SessionStore, session_id: str) -> Points:
    """See `Points`. Decodes the oldest verifying copy only, and reads the journal after it."""
    paths = _candidates(store, session_id)
    oldest = _oldest(store, session_id, paths)
    line = _timeline(store, session_id, oldest)
    latest = line.stamps[-1] if line.stamps else oldest.moment
    return Points(oldest, latest, len(line.records), [path.name for path in paths if store.ops.exists(path)])


def rebuild(store: SessionStore, session_id: str, at_ns: int) -> Rebuilt:
    """The session as it was at `at_ns` (see the module docstring): the last record whose moment
    is at or before it is found on the timeline, then the newest copy at or before that record
    (by sequence, never by the copy's own clock, which a restore sets back) is decoded and the
    records after it are applied."""
    paths = _candidates(store, session_id)
    oldest = _oldest(store, session_id, paths)
    if oldest.moment_ns > at_ns:
        raise PointNotAvailable(
            f"the oldest copy kept holds the session as of {oldest.moment}: nothing earlier can be rebuilt")
    line = _timeline(store, session_id, oldest)
    if not line.records:  # no journal after the oldest copy (durability "off"): the copies are the points
        return _newest_copy_before(store, session_id, paths, at_ns)
    reached = 0  # records of the timeline at or before the moment
    while reached < len(line.records) and line.moments[reached] <= at_ns:
        reached += 1
    target_seq = line.records[reached - 1].seq if reached else oldest.seq
    for path in paths:
        if path.name != oldest.name and store.read_seq(path) > target_seq:
            continue  # holds changes after the moment (or cannot say: read below if it is the oldest)
        decoded = store.read(path, session_id)
        if decoded.usable and decoded.session is not None and oldest.seq <= decoded.seq <= target_seq:
            break
    else:  # pragma: no cover - the oldest copy verified a moment ago
        raise PointNotAvailable("the copies changed while reading them: try again")
    session = snapshot.plain_session(decoded.session)
    applied = 0
    skipped: list[str] = []
    for record in line.records[:reached]:
        if record.seq <= decoded.seq:
            continue
        try:
            session = changes.apply(session, record.change)
        except InvalidTransition as exc:
            skipped.append(f"record {record.seq}: {exc}")
        applied += 1
    moment = line.stamps[reached - 1] if reached else oldest.moment
    return Rebuilt(session, path.name, target_seq, applied, moment, skipped)


def _newest_copy_before(store: SessionStore, session_id: str, paths: list[Path], at_ns: int) -> Rebuilt:
    for path in paths:
        decoded = store.read(path, session_id)
        if decoded.usable and decoded.session is not None and timestamps.parse_ns(decoded.session.updated_at) <= at_ns:
            session = snapshot.plain_session(decoded.session)
            return Rebuilt(session, path.name, decoded.seq, 0, session.updated_at)
    raise PointNotAvailable("no copy of the session verifies at or before that moment")
