"""Startup recovery and `fsck`: find the best copy of every session, and say what was done.

Why this shape: the daemon must never serve from a copy it has not checked, and a person must be
able to see, before anything changes, what recovery would do. So one function examines the data
root and plans; `repair=False` (fsck) reports the plan and changes nothing, `repair=True` (fsck
--repair, daemon startup) carries it out.

For each session id found in `sessions/` or `backups/`, the candidates are tried in order:
  1. `sessions/{id}.json` when it decodes, validates and its checksum (if any) matches;
  2. backups, newest first, on the same terms;
  3. leftover temp files of an interrupted save (DocPilot's `{id}.tmp` among them);
  4. a last resort: any copy that decodes and validates but whose checksum disagrees.
The first usable one is the source. With repair: an unusable main file goes to quarantine, the
source is written as the new main file, unusable backups (when examined) and stale temp files go to
quarantine. Nothing is ever deleted, and a healthy main file is never rewritten. A session with no
usable copy is reported unrecoverable and its damaged files are kept in quarantine.

Backups are examined only when the main file is unusable, unless `check_backups` is set (fsck sets
it): reading every generation of every session would multiply startup time for no gain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from ..domain.model import Session, state_name
from ..errors import StorageError
from . import backups, journal, quarantine, snapshot
from .replay import Replayed, replay
from .atomic import TEMP_PREFIX, is_temp_name, write_atomic
from .store import Identity, SessionStore

Status = Literal["ok", "repaired", "needs_repair", "unrecoverable"]


class SessionReport(msgspec.Struct, kw_only=True):
    session_id: str
    status: Status = "ok"
    source: str | None = None
    seq: int = 0
    state: str | None = None
    commands: int = 0
    annotations: int = 0
    replayed: int = 0
    problems: list[str] = msgspec.field(default_factory=list)
    actions: list[str] = msgspec.field(default_factory=list)
    quarantined: list[str] = msgspec.field(default_factory=list)
    lost_window: str | None = None


class RecoveryReport(msgspec.Struct, kw_only=True):
    root: str
    repair: bool
    started_at_ns: int
    duration_ms: float = 0.0
    sessions: list[SessionReport] = msgspec.field(default_factory=list)
    other: list[str] = msgspec.field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """No problem found anywhere (what fsck without --repair exits 0 on)."""
        return not self.other_problems and all(not s.problems for s in self.sessions)

    @property
    def other_problems(self) -> list[str]:
        return [line for line in self.other if not line.startswith("ignored")]

    @property
    def clean_after_repair(self) -> bool:
        """Everything left in sessions/ is valid (what fsck --repair exits 0 on)."""
        return all(s.status in ("ok", "repaired") for s in self.sessions) and not any(
            line.startswith("unresolved") for line in self.other
        )


@dataclass
class Recovered:
    """A session recovery found, ready to be made live (or None when unrecoverable)."""

    session: Session
    seq: int


@dataclass
class _Candidate:
    path: Path
    kind: Literal["main", "backup", "temp"]
    decoded: snapshot.Decoded


def _relative(store: SessionStore, path: Path) -> str:
    try:
        return str(path.relative_to(store.layout.root))
    except ValueError:
        return str(path)


def scan_ids(store: SessionStore) -> tuple[list[str], dict[str, list[Path]], list[Path], list[str]]:
    """Session ids, temp files per id, unattributed temp files, and other findings."""
    ops, layout = store.ops, store.layout
    ids: set[str] = set()
    temps: dict[str, list[Path]] = {}
    loose_temps: list[Path] = []
    other: list[str] = []
    try:
        names = sorted(ops.listdir(layout.sessions))
    except FileNotFoundError:
        names = []
    for name in names:
        path = layout.sessions / name
        if not backups.is_regular_file(ops, path):
            other.append(f"ignored: sessions/{name} is not a regular file")
        elif is_temp_name(name):
            session_id = _temp_owner(name)
            if session_id:
                temps.setdefault(session_id, []).append(path)
            else:
                loose_temps.append(path)
        elif name.endswith(".json"):
            ids.add(name[: -len(".json")])
        else:
            other.append(f"ignored: sessions/{name} is not a session file")
    by_session, junk = backups.scan(ops, layout.backups)
    ids.update(by_session)
    other.extend(f"ignored: backups/{name} is not a backup file" for name in junk)
    ids.update(temps)
    ids.update(journal.session_ids(ops, layout.journal))
    return sorted(ids), temps, loose_temps, other


def _temp_owner(name: str) -> str | None:
    if name.startswith(TEMP_PREFIX):  # ours: .tmp-{id}.json.{random}.tmp
        inner = name[len(TEMP_PREFIX) :]
        head, sep, _ = inner.partition(".json.")
        return head if sep else None
    if name.endswith(".tmp") and "." not in name[: -len(".tmp")]:  # DocPilot's: {id}.tmp
        return name[: -len(".tmp")]
    return None


def recover_all(
    store: SessionStore, repair: bool, check_backups: bool = False
) -> tuple[RecoveryReport, dict[str, Recovered]]:
    """Examine (and with `repair`, fix) every session under the store's root."""
    started = time.time_ns()
    report = RecoveryReport(root=str(store.layout.root), repair=repair, started_at_ns=started)
    ids, temps, loose_temps, other = scan_ids(store)
    report.other.extend(other)
    recovered: dict[str, Recovered] = {}
    for session_id in ids:
        session_report, found = recover_session(
            store, session_id, temps.get(session_id, []), repair=repair, check_backups=check_backups
        )
        report.sessions.append(session_report)
        if found is not None:
            recovered[session_id] = found
    for path in loose_temps:
        name = _relative(store, path)
        if repair:
            quarantine.move(store.ops, store.layout.quarantine, path, "stale temp file")
            report.other.append(f"quarantined: {name} (stale temp file)")
        else:
            report.other.append(f"stale temp file: {name}")
    report.duration_ms = (time.time_ns() - started) / 1e6
    return report, recovered


def recover_session(
    store: SessionStore,
    session_id: str,
    temp_files: list[Path],
    repair: bool,
    check_backups: bool = False,
) -> tuple[SessionReport, Recovered | None]:
    report = SessionReport(session_id=session_id)
    main_path = store.layout.session_file(session_id)
    main_exists = store.ops.exists(main_path)
    main = _Candidate(main_path, "main", store.read(main_path, session_id)) if main_exists else None
    generations = list(reversed(backups.for_session(store.ops, store.layout.backups, session_id)))

    examined: list[_Candidate] = []
    source: _Candidate | None = main if main is not None and main.decoded.usable else None
    if main is not None and source is None:
        report.problems.append(f"{_relative(store, main_path)}: {_why(main.decoded)}")
    elif main is None and generations:
        report.problems.append(f"{_relative(store, main_path)}: missing")
    if source is None or check_backups:
        for backup in generations:
            candidate = _Candidate(backup.path, "backup", store.read(backup.path, session_id))
            examined.append(candidate)
            if not candidate.decoded.usable:
                report.problems.append(f"{_relative(store, backup.path)}: {_why(candidate.decoded)}")
            elif source is None:
                source = candidate
    temps = [_Candidate(p, "temp", store.read(p, session_id)) for p in temp_files]
    for temp in temps:
        report.problems.append(f"{_relative(store, temp.path)}: stale temp file of an interrupted save")
    if source is None:
        source = next((t for t in temps if t.decoded.usable), None)
    if source is None:
        # Last resort: a copy that validates although its checksum disagrees beats no copy at all.
        everything = ([main] if main else []) + examined + temps
        source = next((c for c in everything if c.decoded.session is not None and c.decoded.problem is None), None)
        if source is not None:
            report.problems.append(
                f"{_relative(store, source.path)}: used despite a checksum mismatch (no verified copy left)"
            )

    to_quarantine: list[tuple[Path, str]] = []
    if main is not None and (source is not main):
        to_quarantine.append((main.path, _why(main.decoded)))
    to_quarantine.extend(
        (c.path, _why(c.decoded)) for c in examined if not c.decoded.usable and c is not source
    )
    to_quarantine.extend((t.path, "stale temp file of an interrupted save") for t in temps)
    rewrite = source is not None and (source is not main or source.decoded.integrity == "mismatch")

    base = source.decoded.session if source is not None else None
    base_seq = source.decoded.seq if source is not None else 0
    replayed = _replay_journal(store, session_id, base, base_seq, repair, report)

    if replayed.session is None:
        report.status = "unrecoverable"
        report.lost_window = "no usable copy of this session was found"
    else:
        session = replayed.session
        report.source = _relative(store, source.path) if source is not None else "journal"
        report.seq = replayed.last_seq
        report.state = state_name(session.state)
        report.commands = len(session.commands)
        report.annotations = len(session.annotations)
        if report.problems:
            report.status = "needs_repair"

    if not repair:
        for path, why in to_quarantine:
            report.actions.append(f"would quarantine {_relative(store, path)} ({why})")
        if rewrite and source is not None:
            report.actions.append(f"would restore {_relative(store, main_path)} from {report.source}")
        return report, _recovered(replayed)

    if source is not None and rewrite and replayed.session is not None:
        if main is not None:
            # Copy, then replace atomically: there is never a moment without a main file.
            kept = quarantine.keep_copy(
                store.ops, store.layout.quarantine, main_path.name,
                store.ops.read_bytes(main_path), main_path, _why(main.decoded),
            )
            report.quarantined.append(_relative(store, kept))
        # Replay already applied the journal to this session: record the sequence it now contains.
        data = snapshot.encode(snapshot.plain_session(replayed.session), replayed.last_seq)
        store.remember(session_id, Identity.of(write_atomic(store.ops, main_path, data)))
        report.actions.append(f"restored {_relative(store, main_path)} from {report.source}")
    for path, why in to_quarantine:
        if path == main_path and rewrite:
            continue  # copied above; the file there now is the restored one
        if store.ops.exists(path):
            target = quarantine.move(store.ops, store.layout.quarantine, path, why)
            report.quarantined.append(_relative(store, target))
    if report.quarantined:
        report.actions.append("quarantined " + ", ".join(report.quarantined))
    if replayed.session is not None:
        report.status = "repaired" if report.problems else "ok"
    return report, _recovered(replayed)


def _replay_journal(
    store: SessionStore, session_id: str, base: Session | None, base_seq: int, repair: bool, report: SessionReport
) -> Replayed:
    """Apply the journal after the chosen copy; cut torn tails and keep damaged segments (repair)."""
    read = journal.read_segments(store.ops, store.layout.journal, session_id)
    for damage in read.damage:
        where = f"{_relative(store, damage.segment)} at byte {damage.offset}"
        if damage.torn_tail:
            report.problems.append(f"{where}: torn last record ({damage.detail}, {damage.size} bytes)")
            if repair:
                kept = journal.cut_tail(store.ops, store.layout.quarantine, damage)
                report.quarantined.append(_relative(store, kept))
                report.actions.append(f"cut the torn tail of {_relative(store, damage.segment)}")
        else:
            report.problems.append(f"{where}: damaged record in the middle ({damage.detail})")
            if repair:
                kept = quarantine.keep_copy(
                    store.ops, store.layout.quarantine, damage.segment.name,
                    store.ops.read_bytes(damage.segment), damage.segment, f"damaged record at byte {damage.offset}",
                )
                report.quarantined.append(_relative(store, kept))
    replayed = replay(base, base_seq, read.records)
    report.replayed = replayed.applied
    for first, last in replayed.gaps:
        window = f"journal records {first}..{last} are missing (damaged or trimmed)"
        report.problems.append(window)
        report.lost_window = window if report.lost_window is None else f"{report.lost_window}; {window}"
    report.problems.extend(replayed.refused)
    return replayed


def _recovered(replayed: Replayed) -> Recovered | None:
    if replayed.session is None:
        return None
    return Recovered(session=snapshot.plain_session(replayed.session), seq=replayed.last_seq)


def _why(decoded: snapshot.Decoded) -> str:
    if decoded.problem:
        return decoded.problem
    if decoded.integrity == "mismatch":
        return "checksum mismatch: the content changed after it was written"
    return "unusable"


def load_one(store: SessionStore, session_id: str) -> Session:
    """Best usable copy of one session without changing anything (for export or inspection)."""
    _, found = recover_session(store, session_id, [], repair=False)
    if found is None:
        raise StorageError(f"session {session_id}: no usable copy")
    return found.session
