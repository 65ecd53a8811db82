"""Recovery's decisions, as a value: what one session is recovered from and what repair would do.

Why a plan: the daemon must never serve from a copy it has not checked, and a person must be able
to see, before anything changes, what recovery would do. So planning only reads (the files the
listing names, the journal) and returns a `SessionPlan` (or, for what belongs to no session, a
`RootPlan`): the chosen source, the session after the journal records replayed on it, typed
`Finding`s and typed actions. `docpilotd fsck` prints it (`describe`: the findings as problems,
each action as "would ..."); fsck --repair and start-up carry it out (`execute`).

Actions, in the order they are carried out:
  MoveAside(segment)    a journal segment not read at all (not trusted, unreadable): moved as it is;
  CutTornTail(segment)  a torn last record: kept in quarantine, the segment truncated before it;
  KeepCopy(segment)     a damaged record in the middle: a copy of the segment kept in quarantine;
  Rewrite(session)      the source (after replay) written as the session's file; what was there is
                        copied to quarantine first (moved, when it is not a file), so there is never
                        a moment without a main file; not written when it cannot be moved away;
  Quarantine(path)      an unusable main file (when not rewritten), unusable backups, stale temp
                        files of the session: moved to quarantine (only after Rewrite, which may read
                        from one of them).
For the root: QuarantineTemp (a temp file no session owns) and SetAsideStray (an entry with one of
our names that cannot be one of our files).

Which copy is the source (`prefer`, the `recovery_prefer` setting):
  "newest_valid"   the first usable candidate in the order above, plus the journal after it;
  "most_complete"  every usable candidate (the main file, each generation, each temp file) is
                   replayed with the journal records after it, and the one whose recovered session
                   holds the most commands + annotations is the source (ties: the newest, i.e. the
                   earlier in the order above). Why after replay, not the copies as they are: the
                   journal is the record of what was acknowledged. An older generation with more
                   commands, followed in the journal by a restore or a deleted annotation, replays
                   to the same smaller session the newer copy gives, so an acknowledged change is
                   never undone; only a copy the journal cannot carry forward (records trimmed or
                   damaged) or that a program changed behind the journal's back (a valid but shorter
                   file, a generation restored to an older state) differs, and then the fuller one
                   wins. A main file that is our own verified checkpoint with nothing after it in the
                   journal (and no temp file) is the last acknowledged state itself, so it is taken
                   as it is under either preference: a fuller old generation there is content the
                   user removed on purpose (delete, restore, purge), not content lost.

What damage is (`damaged`, for `recovery_damage = "offline"`): a file that fails a check (an
unusable snapshot, backup or temp file; a copy used despite its checksum; a journal segment not
read; a damaged record; missing or refused records). A torn last journal record and the temp file
of an interrupted save are what a crash leaves of writes never acknowledged, and a missing main
file is not a damaged one: those are recovered as usual.

Invariants: planning changes nothing on disk (it may remember, in memory, the identity of a file it
accepted as the daemon's own); the findings' messages are the report's problem texts; every name in
a plan is readable text; a plan with a source never moves that source before the Rewrite.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import msgspec

from ...domain import changes
from ...domain.model import Session, is_live, state_name
from .. import backups, journal, snapshot
from ..replay import replay
from ..store import SessionStore
from .report import SessionReport
from .scan import Listing, SessionFiles, relative

FindingKind = Literal[
    "unusable",  # a snapshot, backup or temp file that fails a check
    "missing",  # the session's file is gone (backups remain)
    "stale_temp",  # a temp file of an interrupted save
    "checksum_fallback",  # the source is a copy whose checksum disagrees (no verified copy left)
    "segment_unread",  # a journal segment not read at all
    "torn_tail",  # a torn last journal record
    "damaged_record",  # a damaged journal record in the middle of a segment
    "gap",  # journal records missing
    "refused",  # a journal record the state machine refuses
    "unresolved",  # (execution) an entry that could not be moved to quarantine
    "less_complete",  # most_complete: a newer usable copy was passed over for a fuller one
]


Prefer = Literal["newest_valid", "most_complete"]

# The findings that say a file is damaged (see the module docstring).
DAMAGE: frozenset[str] = frozenset({"unusable", "checksum_fallback", "segment_unread", "damaged_record", "gap", "refused"})


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    message: str  # as the report prints it (a problem)


@dataclass(frozen=True)
class MoveAside:
    path: Path
    name: str
    reason: str


@dataclass(frozen=True)
class CutTornTail:
    damage: journal.Damage
    name: str

    @property
    def offset(self) -> int:
        return self.damage.offset


@dataclass(frozen=True)
class KeepCopy:
    segment: Path
    name: str
    offset: int


@dataclass(frozen=True)
class Rewrite:
    path: Path
    name: str
    source: str  # what it is written from (a file's name, or "journal")
    session: Session
    seq: int
    displaced: str | None  # why the entry there goes to quarantine; None: nothing there


@dataclass(frozen=True)
class Quarantine:
    path: Path
    name: str
    reason: str


Action = Union[MoveAside, CutTornTail, KeepCopy, Rewrite, Quarantine]


@dataclass
class SessionPlan:
    session_id: str
    source: str | None  # what the session is recovered from; None: unrecoverable
    session: Session | None  # after replay; None: unrecoverable
    seq: int  # the last journal record the session contains
    replayed: int = 0
    findings: list[Finding] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    lost_window: str | None = None
    # The finished session's own verified snapshot is all there is: nothing else was read (see
    # the package docstring); `session` was decoded trusting the file's checksum.
    as_it_is: bool = False
    main_path: Path | None = None  # the session's own file (as_it_is: the source)

    @property
    def damaged(self) -> bool:
        """Whether any of the session's files is damaged (see the module docstring)."""
        return any(f.kind in DAMAGE for f in self.findings)


@dataclass(frozen=True)
class QuarantineTemp:
    path: Path
    name: str


@dataclass(frozen=True)
class SetAsideStray:
    path: Path
    name: str
    reason: str


@dataclass
class RootPlan:
    ignored: list[str]  # names that are not docpilotd's, left alone
    actions: list[QuarantineTemp | SetAsideStray]


def would(action: Action) -> str:
    if isinstance(action, (MoveAside, Quarantine)):
        return f"would quarantine {action.name} ({action.reason})"
    if isinstance(action, CutTornTail):
        return f"would cut the torn tail of {action.name}"
    if isinstance(action, KeepCopy):
        return f"would keep a copy of {action.name} in quarantine (damaged record at byte {action.offset})"
    return f"would restore {action.name} from {action.source}"


def describe(plan: SessionPlan, with_actions: bool = True) -> SessionReport:
    """The report of a plan not carried out (fsck): its findings, and what repair would do."""
    report = SessionReport(
        session_id=plan.session_id, replayed=plan.replayed, problems=[f.message for f in plan.findings],
        lost_window=plan.lost_window,
    )
    if plan.session is None:
        report.status = "unrecoverable"
    else:
        report.source, report.seq, report.state = plan.source, plan.seq, state_name(plan.session.state)
        report.commands, report.annotations = len(plan.session.commands), len(plan.session.annotations)
        if report.problems:
            report.status = "needs_repair"
    if with_actions:
        restores = []
        for action in plan.actions:
            if isinstance(action, Rewrite):
                if action.displaced is not None:
                    report.actions.append(f"would quarantine {action.name} ({action.displaced})")
                restores.append(would(action))  # said last: after what goes to quarantine
            else:
                report.actions.append(would(action))
        report.actions.extend(restores)
    return report


def describe_root(plan: RootPlan) -> list[str]:
    lines = list(plan.ignored)
    for action in plan.actions:
        if isinstance(action, QuarantineTemp):
            lines.append(f"stale temp file: {action.name}")
        else:
            lines.append(f"not a docpilotd file: {action.name} ({action.reason}); would move it to quarantine")
    return lines


def plan_root(store: SessionStore, listing: Listing) -> RootPlan:
    actions: list[QuarantineTemp | SetAsideStray] = [
        QuarantineTemp(path, relative(store, path)) for path in listing.loose_temps
    ]
    actions.extend(SetAsideStray(path, relative(store, path), why) for path, why in listing.strays)
    return RootPlan(list(listing.other), actions)


@dataclass
class _Candidate:
    path: Path
    kind: Literal["main", "backup", "temp"]
    decoded: snapshot.Decoded


def plan_session(
    store: SessionStore, session_id: str, files: SessionFiles, check_backups: bool = False,
    trust_finished: bool = False, prefer: Prefer = "newest_valid",
) -> SessionPlan:
    """Decide how to recover one session from its files (`files`: what a listing found of them).

    The candidates are tried in order (see the package docstring). `check_backups` (fsck): every
    backup is examined, and the whole journal read; otherwise backups only when the main file is
    unusable, and only the journal after the chosen copy. `trust_finished`: see snapshot.decode
    (start-up only: a later load of the session checks everything). `prefer`: see the module
    docstring ("most_complete" examines every generation unless the main file is settled)."""
    main_path = files.main_path or store.layout.session_file(session_id)
    journal_dir = files.journal_dir or store.layout.journal
    main_exists = files.main_exists if files.main_exists is not None else store.ops.exists(main_path)
    main = _Candidate(main_path, "main", store.read(main_path, session_id, trust_finished)) if main_exists else None
    if trust_finished and main is not None and main.decoded.usable:
        decoded = main.decoded
        if _quiet(store, journal_dir, session_id, files.temps, files.segments, decoded.seq):
            if decoded.session is not None and decoded.integrity == "verified" and not is_live(decoded.session):
                # The common case at start-up, without the general machinery below: a finished
                # session whose own verified snapshot is all there is. Recovery leaves it as it is.
                return SessionPlan(session_id, f"sessions/{session_id}.json", decoded.session, decoded.seq, as_it_is=True,
                                   main_path=main_path)
        else:
            # Trust is only for a session recovery leaves as it is, never held in memory: this one
            # has more to it (temp files, journal records or damage), so every check applies.
            main = _Candidate(main_path, "main", store.read(main_path, session_id))
    generations = files.generations
    if generations is None:
        generations = backups.for_session(store.ops, store.layout.backups, session_id)
    newest_first = list(reversed(generations))

    findings: list[Finding] = []
    examined: list[_Candidate] = []
    source: _Candidate | None = main if main is not None and main.decoded.usable else None
    if main is not None and source is None:
        findings.append(Finding("unusable", f"{relative(store, main_path)}: {_why(main.decoded)}"))
    elif main is None and newest_first:
        findings.append(Finding("missing", f"{relative(store, main_path)}: missing"))
    # most_complete compares candidates unless the main file is the last acknowledged state itself.
    compare = prefer == "most_complete" and not (
        source is not None and source.decoded.integrity == "verified"
        and _quiet(store, journal_dir, session_id, files.temps, files.segments, source.decoded.seq)
    )
    if source is None or check_backups or compare:
        # A generation is plain or compressed (store.read decompresses); one that has both (an
        # interrupted compression) is tried plain first, then compressed: two copies of it.
        for path in (path for backup in newest_first for path in backup.paths):
            candidate = _Candidate(path, "backup", store.read(path, session_id))
            examined.append(candidate)
            if not candidate.decoded.usable:
                findings.append(Finding("unusable", f"{relative(store, path)}: {_why(candidate.decoded)}"))
            elif source is None:
                source = candidate
    temps = [_Candidate(p, "temp", store.read(p, session_id)) for p in files.temps]
    for temp in temps:
        distrusted = temp.decoded.problem if _distrusted(temp.decoded) else None
        findings.append(Finding(
            "stale_temp",
            f"{relative(store, temp.path)}: stale temp file of an interrupted save" + (f" ({distrusted})" if distrusted else ""),
        ))
    if source is None:
        source = next((t for t in temps if t.decoded.usable), None)
    if source is None:
        # Last resort: a copy that validates although its checksum disagrees beats no copy at all.
        everything = ([main] if main else []) + examined + temps
        source = next((c for c in everything if c.decoded.session is not None and c.decoded.problem is None), None)
        if source is not None:
            findings.append(Finding(
                "checksum_fallback",
                f"{relative(store, source.path)}: used despite a checksum mismatch (no verified copy left)",
            ))

    usable = ([main] if main is not None and main.decoded.usable else []) + [
        c for c in examined + temps if c.decoded.usable
    ]
    compare = compare and len(usable) > 1
    base_seq = source.decoded.seq if source is not None else 0
    # Only fsck (check_backups) reads the segments that hold nothing after the chosen copy: with
    # start-up's skip, replay would skip those records anyway, so damage there is left to fsck.
    # Comparing candidates reads from the oldest of them on, so each gets its own records.
    after_seq = 0 if check_backups else min(c.decoded.seq for c in usable) if compare else base_seq
    read = journal.read_segments(
        store.ops, journal_dir, session_id, files.segments, after_seq=after_seq, owner=store.owner_uid,
    )
    if compare:
        newest, source = usable[0], _most_complete(usable, read.records)
        if source is not newest:
            findings.append(Finding("less_complete", (
                f"{relative(store, newest.path)}: holds less than {relative(store, source.path)} after replay; "
                "the fuller copy is used (recovery_prefer = most_complete)"
            )))
    base = source.decoded.session if source is not None else None
    base_seq = source.decoded.seq if source is not None else 0
    actions: list[Action] = []
    for damage in read.damage:
        name = relative(store, damage.segment)
        if damage.whole:
            # Not read at all (not trusted, or unreadable): nothing of it is replayed; it goes to
            # quarantine as it is (a gap it leaves is reported below).
            findings.append(Finding("segment_unread", f"{name}: {damage.detail}; none of its records replayed"))
            actions.append(MoveAside(damage.segment, name, damage.detail))
        elif damage.torn_tail:
            findings.append(Finding(
                "torn_tail", f"{name} at byte {damage.offset}: torn last record ({damage.detail}, {damage.size} bytes)"
            ))
            actions.append(CutTornTail(damage, name))
        else:
            findings.append(Finding(
                "damaged_record", f"{name} at byte {damage.offset}: damaged record in the middle ({damage.detail})"
            ))
            actions.append(KeepCopy(damage.segment, name, damage.offset))
    replayed = replay(base, base_seq, read.records)
    lost_window: str | None = None
    for first, last in replayed.gaps:
        window = f"journal records {first}..{last} are missing (damaged or trimmed)"
        findings.append(Finding("gap", window))
        lost_window = window if lost_window is None else f"{lost_window}; {window}"
    findings.extend(Finding("refused", line) for line in replayed.refused)

    plan = SessionPlan(
        session_id, None, replayed.session, replayed.last_seq, replayed.applied, findings, actions, lost_window,
    )
    if replayed.session is None:
        plan.lost_window = "no usable copy of this session was found"
    else:
        plan.source = relative(store, source.path) if source is not None else "journal"
    main_name = relative(store, main_path)
    rewrite = source is not None and (source is not main or source.decoded.integrity == "mismatch")
    if rewrite and replayed.session is not None:
        assert plan.source is not None
        displaced = None if main is None else "holds less than " + plan.source if main.decoded.usable else _why(main.decoded)
        actions.append(Rewrite(main_path, main_name, plan.source, replayed.session, replayed.last_seq, displaced))
    elif main is not None and source is not main:
        actions.append(Quarantine(main_path, main_name, _why(main.decoded)))
    actions.extend(
        Quarantine(c.path, relative(store, c.path), _why(c.decoded))
        for c in examined if not c.decoded.usable and c is not source
    )
    actions.extend(Quarantine(t.path, relative(store, t.path), "stale temp file of an interrupted save") for t in temps)
    return plan


def _most_complete(usable: list[_Candidate], records: list[journal.Record]) -> _Candidate:
    """The candidate whose session after replaying `records` holds the most commands and
    annotations; `usable` is newest first, and a tie keeps the newer one. Each is replayed on
    copies: replay applies changes in place (to the session, and to a Replace's session), and the
    one chosen is replayed again, from what was decoded, as the plan's session."""
    best, best_count = usable[0], -1
    for candidate in usable:
        assert candidate.decoded.session is not None
        replayed = replay(_copy(candidate.decoded.session), candidate.decoded.seq, [
            dataclasses.replace(r, change=msgspec.structs.replace(r.change, session=_copy(r.change.session)))
            if isinstance(r.change, changes.Replace) else r
            for r in records
        ]).session
        count = len(replayed.commands) + len(replayed.annotations) if replayed is not None else -1
        if count > best_count:
            best, best_count = candidate, count
    return best


_session_decoder = msgspec.msgpack.Decoder(Session)


def _copy(session: Session) -> Session:
    """A copy of `session` that shares no list with it."""
    return _session_decoder.decode(msgspec.msgpack.encode(session))


def _quiet(store: SessionStore, journal_dir: Path, session_id: str, temp_files: list[Path],
           segments: list[tuple[int, Path]] | None, seq: int) -> bool:
    """No temp file, and nothing in the journal after `seq` (neither records nor damage)."""
    if temp_files:
        return False
    after = journal.read_segments(store.ops, journal_dir, session_id, segments, after_seq=seq, owner=store.owner_uid)
    return not after.records and not after.damage


def _distrusted(decoded: snapshot.Decoded) -> bool:
    """The file was not read at all: not a regular file, or another user's (see store.distrust)."""
    return (decoded.problem or "").startswith(("not a regular file", "owned by another user"))


def _why(decoded: snapshot.Decoded) -> str:
    if decoded.problem:
        return decoded.problem
    if decoded.integrity == "mismatch":
        return "checksum mismatch: the content changed after it was written"
    return "unusable"
