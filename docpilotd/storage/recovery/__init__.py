"""Startup recovery and `fsck`: find the best copy of every session, and say what was done.

Why this shape: the daemon must never serve from a copy it has not checked, and a person must be
able to see, before anything changes, what recovery would do. So recovery is a plan, then carrying
it out: `scan` lists the data root once; `plan` reads one session's files and decides (a
`SessionPlan`: the source, the session after replay, typed findings and actions; a `RootPlan` for
what belongs to no session) without changing anything; `execute` carries a plan out. With
`repair=False` (fsck) the plan is reported ("would ...") and nothing changes; `repair=True` (fsck
--repair, daemon startup) executes it. This module puts them together (`recover_all`,
`recover_session`, `load_one`) and re-exports the report types (`report`).

For each session id found in `sessions/` or `backups/`, the candidates are tried in order:
  1. `sessions/{id}.json` when it decodes, validates and its checksum (if any) matches;
  2. backups, newest first, on the same terms (a compressed one, `.json.zst`, decompressed first,
     never past `compression.MAX_DECOMPRESSED_BYTES`; a generation that has both forms after an
     interrupted compression: the plain file, then the compressed one);
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

Start-up with a manifest (see storage.manifest): start-up (repair, without check_backups) first
sets against the manifest's rows every session whose file, as listed, still has the identity of
its row, with no temp file and nothing in the journal after the row's sequence; such a session is
its row (report, outline, sequence), and no file of it is opened. Every other session is planned as
above. After the plans were carried out, the manifest is written anew when its rows changed: the
rows kept, plus every finished session recovery left as it is, with the identity its file had in
the listing (taken before it was read: a file changed since then no longer matches next time).
fsck never uses it (it checks every file in full), and a manifest that is damaged or missing
only costs start-up time.

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

Preferences (the `recovery_prefer` and `recovery_damage` settings; the report names both):
  - which copy: `prefer="newest_valid"` is the order above; `"most_complete"` replays every usable
    candidate and takes the fullest (see plan: why after replay, and why a settled main file is
    taken as it is);
  - what damage does: `damage="quarantine"` carries the plan out as above; `"offline"` (start-up
    only: fsck --repair always repairs) leaves a session with any damaged file exactly as it is
    (nothing moved, cut or rewritten, not loaded) and lists it in `RecoveryReport.offline` with
    why. Its plan is still made, read only, so the report says what fsck --repair would do.

Invariants: the outcome is the same whether forked processes helped or not (a child only plans,
and only what it found untouched comes back from it); nothing is ever deleted; a healthy main file
is never rewritten; planning never changes the data root, only execution does (see plan, execute).
"""
from __future__ import annotations

import gc
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from ...domain.model import Session, is_live, state_name
from ...errors import StorageError
from .. import forked, manifest, snapshot
from ..fsops import OsFileOps, display_path
from ..store import Identity, SessionStore
from .execute import execute, execute_root
from .plan import (
    DAMAGE,
    Action,
    CutTornTail,
    Finding,
    FindingKind,
    KeepCopy,
    MoveAside,
    Prefer,
    Quarantine,
    QuarantineTemp,
    Rewrite,
    RootPlan,
    SessionPlan,
    SetAsideStray,
    describe,
    describe_root,
    plan_root,
    plan_session,
)
from .report import OfflineSession, Recovered, RecoveryReport, SessionReport, Status, outline
from .scan import Listing, SessionFiles, scan

__all__ = [
    "DAMAGE",
    "PARALLEL_MIN",
    "Action",
    "CutTornTail",
    "Finding",
    "FindingKind",
    "KeepCopy",
    "MoveAside",
    "OfflineSession",
    "Prefer",
    "Quarantine",
    "QuarantineTemp",
    "Recovered",
    "RecoveryReport",
    "Rewrite",
    "RootPlan",
    "SessionFiles",
    "SessionPlan",
    "SessionReport",
    "SetAsideStray",
    "Status",
    "describe",
    "execute",
    "load_one",
    "plan_root",
    "plan_session",
    "recover_all",
    "recover_session",
    "scan_ids",
]

# Below this many sessions, one process is quicker than forking others.
PARALLEL_MIN = 300


def scan_ids(store: SessionStore) -> tuple[list[str], dict[str, list[Path]], list[Path], list[str]]:
    """Session ids, temp files per id, unattributed temp files, and other findings."""
    found = scan(store)
    return found.ids, found.temps, found.loose_temps, found.other


Damage = Literal["quarantine", "offline"]


def recover_all(
    store: SessionStore, repair: bool, check_backups: bool = False, prefer: Prefer = "newest_valid",
    damage: Damage = "quarantine",
) -> tuple[RecoveryReport, dict[str, Recovered]]:
    """Examine (and with `repair`, fix) every session under the store's root. Start-up (repair
    without check_backups) uses and keeps the manifest (see the package docstring). `prefer` and
    `damage`: see the package docstring (a session kept offline is not among the sessions given
    back)."""
    # What recovery builds (reports, outlines, a row per session) makes no reference cycles to
    # collect: the cycle collector would only walk it again and again while it grows (with
    # 100,000 sessions, over half of recovery's time). At start-up all of it lives on, and is
    # frozen at once (as runtime/app.py freezes what the engine made of it afterwards): the
    # engine's own start and the daemon's first collections then walk only what is new (with
    # 100,000 finished sessions, about 2.5 s of CPU less before the daemon serves).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _recover_all(store, repair, check_backups, prefer, damage)
    finally:
        if repair and not check_backups:
            gc.freeze()
        if collecting:
            gc.enable()


def _recover_all(
    store: SessionStore, repair: bool, check_backups: bool, prefer: Prefer, damage: Damage,
) -> tuple[RecoveryReport, dict[str, Recovered]]:
    started = time.time_ns()
    if not repair:
        damage = "quarantine"  # nothing is changed anyway: the plan is what fsck shows
    report = RecoveryReport(root=display_path(str(store.layout.root)), repair=repair, started_at_ns=started,
                            prefer=prefer, damage=damage)
    offline = report.offline if damage == "offline" else None
    use_manifest = repair and not check_backups
    listing = scan(store, with_stats=use_manifest)
    root_plan = plan_root(store, listing)
    results: dict[str, tuple[SessionReport, Recovered | None]] = {}
    rows: dict[str, manifest.Row] = {}
    ignored: str | None = None
    pending: list[str] = listing.ids
    if use_manifest:
        rows, ignored = manifest.load(store)
        if rows:
            pending = []
            for session_id in listing.ids:
                row = rows.get(session_id)
                if row is not None and _row_holds(store, listing, row):
                    results[session_id] = _from_row(store, row)
                else:
                    pending.append(session_id)
            report.from_manifest = len(results)
    mine: list[str] = pending
    children: list[forked.Child | None] = []
    shares: list[list[str]] = []
    processes = forked.workers() if _can_fork(store, len(pending)) else 1
    if processes > 1:
        # Other processes check their shares read-only; whatever they find untouched needs
        # nothing more, the rest comes back to this process (which alone changes anything).
        shares = [pending[n::processes] for n in range(processes)]
        mine = shares[0]
        children = forked.start(shares[1:], lambda share: _check_share(store, listing, share, check_backups, prefer))
    for session_id in mine:
        results[session_id] = _recover(store, session_id, listing.files_of(session_id), repair, check_backups,
                                       prefer=prefer, offline=offline)
    for share, data in zip(shares[1:], forked.collect(children)):
        if data is not None:
            for checked in _checked_decoder.decode(data):
                session_id = checked.report.session_id
                outlined = Recovered.outlined(checked.outline, checked.seq, _loader(store, session_id))
                outlined.checksum = checked.checksum
                results[session_id] = (checked.report, outlined)
                if checked.identity is not None:
                    store.remember(session_id, Identity(*checked.identity))
        for session_id in share:
            if session_id not in results:
                results[session_id] = _recover(store, session_id, listing.files_of(session_id), repair, check_backups,
                                               prefer=prefer, offline=offline)
    recovered: dict[str, Recovered] = {}
    for session_id in listing.ids:
        session_report, found = results[session_id]
        report.sessions.append(session_report)
        if found is not None:
            recovered[session_id] = found
    report.other.extend(execute_root(store, root_plan) if repair else describe_root(root_plan))
    report.offline.sort(key=lambda o: o.session_id)
    if use_manifest:
        _keep_manifest(store, listing, rows, ignored, results, set(pending))
    report.duration_ms = (time.time_ns() - started) / 1e6
    return report, recovered


def _row_holds(store: SessionStore, listing: Listing, row: manifest.Row) -> bool:
    """Whether `row` stands for its session as listed (see storage.manifest)."""
    session_id = row.session_id
    st = listing.main_stats.get(session_id)
    if st is None or st.st_uid != store.owner_uid or not row.matches(st) or session_id in listing.temps:
        return False
    segments = listing.segments.get(session_id)
    if not segments:
        return True
    first, name = segments[-1]
    last = listing.segment_stats.get(name)
    # Recovery reads only this segment (every earlier one ends at or before the row's sequence).
    return (
        first == row.seq + 1 and last is not None and stat.S_ISREG(last.st_mode)
        and last.st_uid == store.owner_uid and last.st_size == 0
    )


def _from_row(store: SessionStore, row: manifest.Row) -> tuple[SessionReport, Recovered]:
    """What planning the session would give (see _as_it_is), from its row."""
    session_id = row.session_id
    store.remember(session_id, Identity(row.ino, row.size, row.mtime_ns))
    report = SessionReport(
        session_id=session_id, status="ok", source=f"sessions/{session_id}.json", seq=row.seq,
        state=state_name(row.outline.state), commands=row.commands, annotations=row.annotations,
    )
    found = Recovered.outlined(row.outline, row.seq, _loader(store, session_id))
    found.checksum = row.checksum
    return report, found


def _keep_manifest(
    store: SessionStore, listing: Listing, rows: dict[str, manifest.Row], ignored: str | None,
    results: dict[str, tuple[SessionReport, Recovered | None]], planned: set[str],
) -> None:
    """Write the manifest when its rows changed: the rows that held, and a new row for every
    finished session `planned` that recovery left as it is (its file's identity as listed, before
    it was read)."""
    kept: list[manifest.Row] = []
    changed = ignored is not None
    for session_id in listing.ids:
        if session_id not in planned:  # taken from its row
            kept.append(rows[session_id])
            continue
        session_report, found = results[session_id]
        if found is None or found.held or found.checksum is None or not _untouched(session_report):
            continue
        row = rows.get(session_id)
        st = listing.main_stats.get(session_id)
        if row is not None and st is not None and row.matches(st) and row.seq == found.seq:
            kept.append(row)
            continue
        if st is None or st.st_uid != store.owner_uid:
            continue
        kept.append(manifest.row_of(session_id, st, found.seq, found.checksum, session_report.commands,
                                    session_report.annotations, found.outline))
        changed = True
    if changed or len(kept) != len(rows):
        manifest.write(store, kept)


def recover_session(
    store: SessionStore, session_id: str, temp_files: Sequence[Path] = (), repair: bool = False,
    check_backups: bool = False, prefer: Prefer = "newest_valid",
) -> tuple[SessionReport, Recovered | None]:
    """Recover one session, listing its files (`temp_files`: its temp files, when known)."""
    return _recover(store, session_id, SessionFiles(list(temp_files)), repair, check_backups, outline_untouched=False,
                    prefer=prefer)


def load_one(store: SessionStore, session_id: str) -> Session:
    """Best usable copy of one session without changing anything (for export or inspection)."""
    _, found = recover_session(store, session_id, [], repair=False)
    if found is None:
        raise StorageError(f"session {session_id}: no usable copy")
    return found.session


def _recover(
    store: SessionStore, session_id: str, files: SessionFiles, repair: bool, check_backups: bool,
    outline_untouched: bool = True, prefer: Prefer = "newest_valid", offline: list[OfflineSession] | None = None,
) -> tuple[SessionReport, Recovered | None]:
    """Plan one session and, with `repair`, carry the plan out. `outline_untouched` (recover_all):
    a finished session recovery leaves as it is is not held whole (see Recovered); start-up also
    trusts such a session's checksum (`trust_finished`, not with check_backups: fsck checks all).
    `offline` (recovery_damage = "offline"): a damaged session is added there instead of repaired."""
    plan = plan_session(store, session_id, files, check_backups, trust_finished=outline_untouched and not check_backups,
                        prefer=prefer)
    if plan.as_it_is:
        return _as_it_is(store, plan)
    if repair and offline is not None and plan.damaged:
        return _kept_offline(plan, offline), None
    session_report = execute(store, plan) if repair else describe(plan)
    if plan.session is None:
        return session_report, None
    found = Recovered(snapshot.plain_session(plan.session), plan.seq)
    if outline_untouched and _untouched(session_report) and not is_live(found.session):
        found = Recovered.outlined(outline(found.session), found.seq, _loader(store, session_id))
    return session_report, found


def _kept_offline(plan: SessionPlan, offline: list[OfflineSession]) -> SessionReport:
    """The report of a damaged session left as it is (nothing of the plan is carried out): its
    problems, and what `docpilotd fsck --repair` would do."""
    report = describe(plan)
    report.status = "offline"
    why = "; ".join(f.message for f in plan.findings if f.kind in DAMAGE)
    report.actions.insert(0, "kept offline, its files left as they are (recovery_damage = offline); "
                             "'docpilotd fsck --repair' (daemon stopped) or 'docpilot recover' repairs it")
    session = plan.session
    offline.append(OfflineSession(
        session_id=plan.session_id, why=why,
        description=session.description if session is not None else "",
        created_at=session.created_at if session is not None else "",
        state=report.state, commands=report.commands, annotations=report.annotations,
    ))
    return report


def _as_it_is(store: SessionStore, plan: SessionPlan) -> tuple[SessionReport, Recovered]:
    """The report and outline of a finished session recovery leaves untouched (what the general
    path gives for it: its own snapshot as the source, nothing replayed, no problem). The file's
    identity is remembered as the daemon's own, as the watcher would at start (see store)."""
    session_id, session = plan.session_id, plan.session
    assert session is not None
    try:
        store.remember(session_id, Identity.of(store.ops.stat(plan.main_path or store.layout.session_file(session_id))))
    except OSError:
        pass  # the watcher looks at it again
    report = SessionReport(
        session_id=session_id, status="ok", source=plan.source, seq=plan.seq,
        state=state_name(session.state), commands=len(session.commands), annotations=len(session.annotations),
    )
    found = Recovered.outlined(outline(session), plan.seq, _loader(store, session_id))
    meta = session.docpilotd if isinstance(session, snapshot.SessionFile) else None
    found.checksum = meta.checksum if meta is not None else None
    return report, found


def _untouched(report: SessionReport) -> bool:
    """Recovery chose the session's own snapshot, found nothing wrong and replayed nothing."""
    return (
        report.status == "ok" and not report.replayed and not report.problems
        and report.source == f"sessions/{report.session_id}.json"
    )


def _loader(store: SessionStore, session_id: str) -> Callable[[], Session]:
    return lambda: store.load(session_id)


class _Checked(msgspec.Struct, array_like=True):
    """What a child process sends back for a session it found untouched and finished."""

    report: SessionReport
    outline: Session
    seq: int
    identity: tuple[int, int, int] | None = None  # of the snapshot file recovery accepted
    checksum: str | None = None  # of that file (see Recovered)


_checked_decoder = msgspec.msgpack.Decoder(list[_Checked])


def _can_fork(store: SessionStore, count: int) -> bool:
    # Only over the real file system: a stand-in (a model of the disk in tests) lives in this
    # process's memory, and counts its calls.
    return count >= PARALLEL_MIN and forked.AVAILABLE and type(store.ops) is OsFileOps


def _check_share(store: SessionStore, listing: Listing, share: Sequence[str], check_backups: bool,
                 prefer: Prefer = "newest_valid") -> bytes:
    """In a child process: the sessions of `share` that are untouched and finished, planned only
    (for those, the plan has no action: carrying it out would change nothing)."""
    checked = []
    for session_id in share:
        session_report, found = _recover(store, session_id, listing.files_of(session_id), False, check_backups,
                                         prefer=prefer)
        if found is not None and _untouched(session_report) and not is_live(found.outline):
            known = store.written_identity(session_id)
            identity = (known.ino, known.size, known.mtime_ns) if known is not None else None
            checked.append(_Checked(session_report, outline(found.outline), found.seq, identity, found.checksum))
    return msgspec.msgpack.encode(checked)
