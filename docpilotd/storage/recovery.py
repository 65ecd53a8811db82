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
it): reading every generation of every session would multiply startup time for no gain. Likewise,
start-up reads only the journal after the chosen copy (fsck reads it all), and `recover_all` lists
each directory once for every session.

Start-up with many sessions, and why it stays cheap: most sessions are finished, and recovery
leaves them as they are (their own verified snapshot is all there is). For those, `recover_all`
keeps an outline (no commands, annotations or events) that loads the session on first use, skips
the per-item checks (see snapshot.decode: they run in full when the session is loaded), and lets
forked processes examine a share each, read-only (see `forked`): a child reports back the sessions
it found untouched, and this process handles every other one itself, repairs included, so the
outcome is what one process alone would produce.

Hostile entries (see storage.fsops and storage.store): nothing is opened before lstat (or the
directory's own listing) says it is a regular file, and reads cannot block or follow a link, so
recovery and fsck always finish. What recovery does with what it finds where a session, backup,
journal segment or temp file should be (names that are not docpilotd's are left alone, reported as
"ignored", as before):
  - a FIFO, socket, device node, symbolic link or directory: reported; with repair moved to
    quarantine as it is (renamed, never opened; a directory as a whole). A session whose own file
    it was is restored from its backups and journal, like a missing file. When it cannot be moved
    (a mount point...), it is reported "unresolved" and left alone, never read;
  - a name that is not UTF-8 text: reported (readably, with its bytes) and moved the same way;
    docpilotd never writes such a name, so it is never taken for a session;
  - a regular file another user owns: not trusted, so never a source and never replayed;
    reported, and with repair moved to quarantine (a session with no file of its own left is
    unrecoverable, its files kept there). Only root can put one there; the owner's own files are
    the only ones docpilotd reads as sessions.
Every name in a report is readable text (`fsops.display_name`), so a report always prints and
encodes.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from ..domain.model import Session, is_live, state_name
from ..errors import StorageError
from . import backups, forked, journal, quarantine, snapshot
from .replay import Replayed, replay
from .atomic import TEMP_PREFIX, is_temp_name, write_atomic
from .fsops import REGULAR, OsFileOps, a_kind, display_name, display_path, is_text_name
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


class Recovered:
    """A session recovery found, ready to be made live (or None when unrecoverable).

    `session` is the whole session and `seq` the last journal record it contains. `recover_all`
    does not keep the whole of a finished session that recovery left as it was (stopped or failed,
    its own snapshot verified and chosen, nothing replayed): a daemon keeps only a summary of
    those, and holding thousands of them only to summarize them would cost start-up time and
    memory. For those, `held` is False, `outline` is the session without its commands, annotations
    and events (its stats still count them), and `session` reads the snapshot again on first use.
    """

    def __init__(self, session: Session, seq: int) -> None:
        self.seq = seq
        self.outline = session
        self._session: Session | None = session
        self._load: Callable[[], Session] | None = None

    @classmethod
    def outlined(cls, outline: Session, seq: int, load: Callable[[], Session]) -> Recovered:
        found = cls(outline, seq)
        found._session, found._load = None, load
        return found

    @property
    def held(self) -> bool:
        return self._session is not None

    @property
    def session(self) -> Session:
        if self._session is None:
            assert self._load is not None
            self._session = self._load()
        return self._session


def _outline(session: Session) -> Session:
    fields = {name: getattr(session, name) for name in Session.__struct_fields__}
    fields.update(commands=[], annotations=[], events=[])
    return Session(**fields)


@dataclass
class _Candidate:
    path: Path
    kind: Literal["main", "backup", "temp"]
    decoded: snapshot.Decoded


def _relative(store: SessionStore, path: Path) -> str:
    """`path` relative to the data root, as readable text (see fsops.display_name)."""
    root, text = str(store.layout.root), str(path)
    if text.startswith(root + "/"):  # the usual case, without pathlib's parsing
        return display_path(text[len(root) + 1 :])
    try:
        return display_path(str(path.relative_to(store.layout.root)))
    except ValueError:
        return display_path(text)


@dataclass
class _Scan:
    """One listing of each directory, for every session (listing per session would cost
    sessions x files)."""

    ids: list[str]
    mains: set[str]  # ids whose sessions/{id}.json was listed
    temps: dict[str, list[Path]]
    loose_temps: list[Path]
    other: list[str]
    backups: dict[str, list[backups.Backup]]
    segments: dict[str, list[tuple[int, Path]]]
    # What has the name of one of our files but cannot be one, and why (see the module docstring).
    strays: list[tuple[Path, str]] = field(default_factory=list)


def scan_ids(store: SessionStore) -> tuple[list[str], dict[str, list[Path]], list[Path], list[str]]:
    """Session ids, temp files per id, unattributed temp files, and other findings."""
    found = _scan(store)
    return found.ids, found.temps, found.loose_temps, found.other


def _scan(store: SessionStore) -> _Scan:
    ops, layout = store.ops, store.layout
    ids: set[str] = set()
    mains: set[str] = set()
    temps: dict[str, list[Path]] = {}
    loose_temps: list[Path] = []
    other: list[str] = []
    strays: list[tuple[Path, str]] = []
    special_mains: dict[str, tuple[Path, str]] = {}  # id -> (path, why) of a main that is no file
    try:
        listed = ops.list_kinds(layout.sessions)
    except FileNotFoundError:
        listed = {}
    sessions_dir = layout.sessions
    for name in sorted(listed):
        kind = listed[name]
        ours = name.endswith(".json") or is_temp_name(name)
        if not ours:
            why = "is not a regular file" if kind != REGULAR else "is not a session file"
            other.append(f"ignored: sessions/{display_name(name)} {why}")
        elif not is_text_name(name):
            strays.append((sessions_dir / name, "a name that is not UTF-8 text, which docpilotd never writes"))
        elif kind != REGULAR:
            if is_temp_name(name):
                strays.append((sessions_dir / name, f"not a regular file: {a_kind(kind)}"))
            else:
                special_mains[name[: -len(".json")]] = (sessions_dir / name, f"not a regular file: {a_kind(kind)}")
        elif is_temp_name(name):
            session_id = _temp_owner(name)
            if session_id:
                temps.setdefault(session_id, []).append(sessions_dir / name)
            else:
                loose_temps.append(sessions_dir / name)
        else:
            ids.add(name[: -len(".json")])
            mains.add(name[: -len(".json")])
    by_session, junk, backup_strays = backups.scan_entries(ops, layout.backups)
    ids.update(by_session)
    other.extend(f"ignored: backups/{display_name(name)} is not a backup file" for name in junk)
    strays.extend((layout.backups / name, why) for name, why in backup_strays)
    ids.update(temps)
    segments, segment_strays = journal.index_entries(ops, layout.journal)
    strays.extend((layout.journal / name, why) for name, why in segment_strays)
    ids.update(segments)
    for session_id, (path, why) in special_mains.items():
        if session_id in ids:
            mains.add(session_id)  # in the way of the session's own file: handled with the session
        else:
            strays.append((path, why))
    return _Scan(sorted(ids), mains, temps, loose_temps, other, by_session, segments, sorted(strays))


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
    report = RecoveryReport(root=display_path(str(store.layout.root)), repair=repair, started_at_ns=started)
    scan = _scan(store)
    report.other.extend(scan.other)
    results: dict[str, tuple[SessionReport, Recovered | None]] = {}
    mine: list[str] = scan.ids
    children: list[forked.Child | None] = []
    shares: list[list[str]] = []
    processes = forked.workers() if _can_fork(store, len(scan.ids)) else 1
    if processes > 1:
        # Other processes check their shares read-only; whatever they find untouched needs
        # nothing more, the rest comes back to this process (which alone changes anything).
        shares = [scan.ids[n::processes] for n in range(processes)]
        mine = shares[0]
        children = forked.start(shares[1:], lambda share: _check_share(store, scan, share, check_backups))
    for session_id in mine:
        results[session_id] = _recover(store, scan, session_id, repair, check_backups)
    for share, data in zip(shares[1:], forked.collect(children)):
        if data is not None:
            for checked in _checked_decoder.decode(data):
                session_id = checked.report.session_id
                results[session_id] = (checked.report, Recovered.outlined(checked.outline, checked.seq, _loader(store, session_id)))
                if checked.identity is not None:
                    store.remember(session_id, Identity(*checked.identity))
        for session_id in share:
            if session_id not in results:
                results[session_id] = _recover(store, scan, session_id, repair, check_backups)
    recovered: dict[str, Recovered] = {}
    for session_id in scan.ids:
        session_report, found = results[session_id]
        report.sessions.append(session_report)
        if found is not None:
            recovered[session_id] = found
    for path in scan.loose_temps:
        name = _relative(store, path)
        if repair:
            quarantine.move(store.ops, store.layout.quarantine, path, "stale temp file")
            report.other.append(f"quarantined: {name} (stale temp file)")
        else:
            report.other.append(f"stale temp file: {name}")
    for path, why in scan.strays:
        name = _relative(store, path)
        if not repair:
            report.other.append(f"not a docpilotd file: {name} ({why}); would move it to quarantine")
            continue
        moved, error = _move_aside(store, path, why)
        if moved is not None:
            report.other.append(f"quarantined: {name} ({why})")
        elif error is not None:
            report.other.append(f"unresolved: {name} ({why}): could not move it to quarantine ({error}); left alone, never read")
    report.duration_ms = (time.time_ns() - started) / 1e6
    return report, recovered


def _move_aside(store: SessionStore, path: Path, why: str) -> tuple[Path | None, str | None]:
    """Move an entry that is not docpilotd's file (a FIFO, a directory...) to quarantine as it is:
    (where it went, None), (None, None) when it is gone already, (None, why not) when it could not
    be moved (it is then left where it is, and never read)."""
    try:
        return quarantine.move(store.ops, store.layout.quarantine, path, why), None
    except StorageError as exc:
        if not store.ops.exists(path):
            return None, None
        return None, exc.message


# Below this many sessions, one process is quicker than forking others.
PARALLEL_MIN = 300


class _Checked(msgspec.Struct, array_like=True):
    """What a child process sends back for a session it found untouched and finished."""

    report: SessionReport
    outline: Session
    seq: int
    identity: tuple[int, int, int] | None = None  # of the snapshot file recovery accepted


_checked_decoder = msgspec.msgpack.Decoder(list[_Checked])


def _can_fork(store: SessionStore, count: int) -> bool:
    # Only over the real file system: a stand-in (a model of the disk in tests) lives in this
    # process's memory, and counts its calls.
    return count >= PARALLEL_MIN and forked.AVAILABLE and type(store.ops) is OsFileOps


def _recover(
    store: SessionStore, scan: _Scan, session_id: str, repair: bool, check_backups: bool
) -> tuple[SessionReport, Recovered | None]:
    session_report, found = recover_session(
        store, session_id, scan.temps.get(session_id, []), repair=repair, check_backups=check_backups,
        generations=scan.backups.get(session_id, []), segments=scan.segments.get(session_id, []),
        main_exists=session_id in scan.mains, trust_finished=not check_backups,
    )
    if found is not None and found.held and _untouched(session_report) and not is_live(found.session):
        found = Recovered.outlined(_outline(found.session), found.seq, _loader(store, session_id))
    return session_report, found


def _check_share(store: SessionStore, scan: _Scan, share: Sequence[str], check_backups: bool) -> bytes:
    """In a child process: the sessions of `share` that are untouched and finished, examined
    without repair (for those, repair would do nothing: their reports are the same)."""
    checked = []
    for session_id in share:
        session_report, found = recover_session(
            store, session_id, scan.temps.get(session_id, []), repair=False, check_backups=check_backups,
            generations=scan.backups.get(session_id, []), segments=scan.segments.get(session_id, []),
            main_exists=session_id in scan.mains, trust_finished=not check_backups,
        )
        if found is not None and _untouched(session_report) and not is_live(found.outline):
            known = store.written_identity(session_id)
            identity = (known.ino, known.size, known.mtime_ns) if known is not None else None
            checked.append(_Checked(session_report, _outline(found.outline), found.seq, identity))
    return msgspec.msgpack.encode(checked)


def _quiet(store: SessionStore, session_id: str, temp_files: list[Path], segments: list[tuple[int, Path]] | None, seq: int) -> bool:
    """No temp file, and nothing in the journal after `seq` (neither records nor damage)."""
    if temp_files:
        return False
    after = journal.read_segments(store.ops, store.layout.journal, session_id, segments, after_seq=seq, owner=store.owner_uid)
    return not after.records and not after.damage


def _as_it_is(store: SessionStore, session_id: str, session: Session, seq: int) -> tuple[SessionReport, Recovered]:
    """The report and outline of a finished session recovery leaves untouched (what the general
    path gives for it: its own snapshot as the source, nothing replayed, no problem). The file's
    identity is remembered as the daemon's own, as the watcher would at start (see store)."""
    try:
        store.remember(session_id, Identity.of(store.ops.stat(store.layout.session_file(session_id))))
    except OSError:
        pass  # the watcher looks at it again
    report = SessionReport(
        session_id=session_id, status="ok", source=f"sessions/{session_id}.json", seq=seq,
        state=state_name(session.state), commands=len(session.commands), annotations=len(session.annotations),
    )
    return report, Recovered.outlined(_outline(session), seq, _loader(store, session_id))


def _untouched(report: SessionReport) -> bool:
    """Recovery chose the session's own snapshot, found nothing wrong and replayed nothing."""
    return (
        report.status == "ok" and not report.replayed and not report.problems
        and report.source == f"sessions/{report.session_id}.json"
    )


def _loader(store: SessionStore, session_id: str) -> Callable[[], Session]:
    return lambda: store.load(session_id)


def recover_session(
    store: SessionStore,
    session_id: str,
    temp_files: list[Path],
    repair: bool,
    check_backups: bool = False,
    generations: list[backups.Backup] | None = None,
    segments: list[tuple[int, Path]] | None = None,
    main_exists: bool | None = None,
    trust_finished: bool = False,
) -> tuple[SessionReport, Recovered | None]:
    """Recover one session. `generations` (oldest first), `segments` and `main_exists` are its
    backups, journal segments and whether its snapshot is there, when the caller has listed the
    directories already (recover_all lists each once for all sessions). `trust_finished`: see
    snapshot.decode (start-up only: a later load of the session checks everything)."""
    report = SessionReport(session_id=session_id)
    main_path = store.layout.session_file(session_id)
    if main_exists is None:
        main_exists = store.ops.exists(main_path)
    main = _Candidate(main_path, "main", store.read(main_path, session_id, trust_finished)) if main_exists else None
    if trust_finished and main is not None and main.decoded.usable:
        decoded = main.decoded
        if _quiet(store, session_id, temp_files, segments, decoded.seq):
            if decoded.session is not None and decoded.integrity == "verified" and not is_live(decoded.session):
                # The common case at start-up, without the general machinery below: a finished
                # session whose own verified snapshot is all there is. Recovery leaves it as it is.
                return _as_it_is(store, session_id, decoded.session, decoded.seq)
        else:
            # Trust is only for a session recovery leaves as it is, never held in memory: this one
            # has more to it (temp files, journal records or damage), so every check applies.
            main = _Candidate(main_path, "main", store.read(main_path, session_id))
    if generations is None:
        generations = backups.for_session(store.ops, store.layout.backups, session_id)
    generations = list(reversed(generations))

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
        distrusted = temp.decoded.problem if _distrusted(temp.decoded) else None
        report.problems.append(
            f"{_relative(store, temp.path)}: stale temp file of an interrupted save" + (f" ({distrusted})" if distrusted else "")
        )
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
    # Only fsck (check_backups) reads the segments that hold nothing after the chosen copy.
    replayed = _replay_journal(store, session_id, base, base_seq, repair, report, segments, skip_covered=not check_backups)

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

    blocked = False  # the main path holds something that could not be moved out of the way
    if source is not None and rewrite and replayed.session is not None:
        if main is not None:
            try:
                content: bytes | None = store.ops.read_bytes(main_path)
            except OSError:
                content = None  # not a regular file (or unreadable): the entry itself goes
            if content is not None:
                # Copy, then replace atomically: there is never a moment without a main file.
                kept: Path | None = quarantine.keep_copy(
                    store.ops, store.layout.quarantine, main_path.name, content, main_path, _why(main.decoded),
                )
            else:
                kept, error = _move_aside(store, main_path, _why(main.decoded))
                if error is not None:
                    blocked = True
                    report.problems.append(
                        f"unresolved: {_relative(store, main_path)} could not be moved to quarantine ({error}); "
                        "the session is not written there"
                    )
            if kept is not None:
                report.quarantined.append(_relative(store, kept))
        if not blocked:
            # Replay already applied the journal to this session: record the sequence it now contains.
            data = snapshot.encode(snapshot.plain_session(replayed.session), replayed.last_seq)
            store.remember(session_id, Identity.of(write_atomic(store.ops, main_path, data)))
            report.actions.append(f"restored {_relative(store, main_path)} from {report.source}")
    for path, why in to_quarantine:
        if path == main_path and rewrite:
            continue  # copied or moved above; the file there now is the restored one
        if store.ops.exists(path):
            try:
                regular = store.ops.stat(path).st_mode
            except OSError:
                regular = 0
            if stat.S_ISREG(regular):
                target = quarantine.move(store.ops, store.layout.quarantine, path, why)
            else:
                moved, error = _move_aside(store, path, why)
                if moved is None:
                    if error is not None:
                        blocked = True
                        report.problems.append(f"unresolved: {_relative(store, path)} could not be moved to quarantine ({error})")
                    continue
                target = moved
            report.quarantined.append(_relative(store, target))
    if report.quarantined:
        report.actions.append("quarantined " + ", ".join(report.quarantined))
    if replayed.session is not None:
        report.status = "needs_repair" if blocked else "repaired" if report.problems else "ok"
    return report, _recovered(replayed)


def _replay_journal(
    store: SessionStore,
    session_id: str,
    base: Session | None,
    base_seq: int,
    repair: bool,
    report: SessionReport,
    segments: list[tuple[int, Path]] | None = None,
    skip_covered: bool = False,
) -> Replayed:
    """Apply the journal after the chosen copy; cut torn tails and keep damaged segments (repair).

    With `skip_covered` (start-up), records at or below the copy's sequence are not decoded and
    segments holding only such records are not read: replay would skip them anyway, so damage
    there costs nothing and is left to fsck, which reads everything."""
    read = journal.read_segments(
        store.ops, store.layout.journal, session_id, segments, after_seq=base_seq if skip_covered else 0,
        owner=store.owner_uid,
    )
    for damage in read.damage:
        where = f"{_relative(store, damage.segment)} at byte {damage.offset}"
        if damage.whole:
            # Not read at all (not trusted, or unreadable): nothing of it is replayed; with repair
            # it goes to quarantine as it is (a gap it leaves is reported below).
            report.problems.append(f"{_relative(store, damage.segment)}: {damage.detail}; none of its records replayed")
            if not repair:
                report.actions.append(f"would quarantine {_relative(store, damage.segment)} ({damage.detail})")
            else:
                moved, error = _move_aside(store, damage.segment, damage.detail)
                if moved is not None:
                    report.quarantined.append(_relative(store, moved))
                elif error is not None:
                    report.problems.append(f"unresolved: {_relative(store, damage.segment)} could not be moved to quarantine ({error})")
        elif damage.torn_tail:
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


def _distrusted(decoded: snapshot.Decoded) -> bool:
    """The file was not read at all: not a regular file, or another user's (see store.distrust)."""
    return (decoded.problem or "").startswith(("not a regular file", "owned by another user"))


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
