"""One handler per request type: turn a protocol request into changes and results.

Handlers are where the clock and random ids enter: each builds a complete `Change` (timestamps,
uuids) and hands it to the engine, which journals it before anything is applied. A handler returns
its result, of the type docpilotd/results.py declares for it (the client decodes the reply into the
same type), or raises a DocpilotError; it never touches files itself except through the engine,
the store and maintenance functions (run in the I/O pool).

Invariants: a result is a results type, or the stored object whose JSON that type describes
(storage's reports for `recovery`, `cleanup`, `stats`), or a `SessionReply` (the session for `show`
and `export`): the server writes its JSON to the socket a slice at a time, the same bytes as
encoding the session whole, never the whole encoding at once; a session whose creation is not
applied yet (no summary) is never reported as one.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import platform
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, cast

import msgspec

from .. import __version__, paths, results
from .. import protocol as p
from ..config import POLICY_SETTING
from ..domain import changes, retention, timestamps
from ..domain.invocation import runs_itself
from ..domain.model import Annotation, Session, SessionMetadata, is_live, state_name
from ..domain.validate import MIN_ID_PREFIX, canonical_prefix, canonical_uuid
from ..errors import (
    AmbiguousId,
    AnnotationNotFound,
    BackupNotFound,
    DocpilotError,
    InvalidSession,
    InvalidTransition,
    SearchUnavailable,
    SessionExists,
    SessionNotFound,
    UnknownOperation,
    UsageError,
)
from ..render import output as docs_output
from ..render import templates as render_templates
from ..render.view import Options as DocumentOptions
from ..storage import backups, maintenance, point_in_time, snapshot
from ..storage.maintenance import CleanupResult, StorageStats
from ..storage.recovery import RecoveryReport
from ..storage.store import local_offset
from . import clock, logplace, policies, privacy
from .capture.recorder import Recorder
from .capture.spool import Spool
from .engine import Engine, Entry
from .engine import summarize as engine_summarize
from .search import Indexer

Handler = Callable[[Any, "Context"], Awaitable[Any]]
log = logging.getLogger("docpilotd.handlers")


class StorageQuotaSource(Protocol):
    state: results.StorageQuota | None


class ScrubSource(Protocol):
    last: results.ScrubStatus | None


class Context:
    """What handlers share: the engine, the last recovery report, the redaction rules and the
    shell spool (set by the app once it exists)."""

    def __init__(self, engine: Engine, recovery_report: Any, started_ns: int) -> None:
        self.engine = engine
        self.recovery_report = recovery_report
        self.started_ns = started_ns
        self.privacy = privacy.Privacy(engine.config)
        self.recorder = Recorder(engine, self.privacy, engine.config)
        self.spool: Spool | None = None
        self.config_file: str | None = None  # --config, when the daemon was given one (set by the app)
        self.search: Indexer | None = None  # the search index (set by the app)
        self.quota: StorageQuotaSource | None = None  # the storage quota's last check (set by the app)
        self.scrub: ScrubSource | None = None  # the scheduled scrub (set by the app)

    def templates_dir(self) -> Path:
        """Where the user's own document templates are (see render.templates.user_dir)."""
        return render_templates.user_dir(self.engine.config.templates_dir, paths.config_file(self.config_file)[0])

    async def take_spooled(self) -> None:
        """Record every complete line hooks have spooled: what was typed before a verb is in."""
        if self.spool is not None:
            await self.spool.ingest()


_now = clock.now
_new_id = clock.new_id


async def _io(ctx: Context, fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(ctx.engine.pool, fn, *args)


def _summary(entry: Entry) -> results.SessionSummary:
    """The summary of a session a change was just applied to (so it exists)."""
    assert entry.summary is not None, f"session {entry.session_id} has no summary after a change"
    return entry.summary


def _annotation(note: Annotation) -> results.Annotation:
    return {"id": note.id, "text": note.text, "timestamp": note.timestamp, "annotation_type": note.annotation_type}


async def hello(req: p.Hello, ctx: Context) -> results.Hello:
    return {"version": p.PROTOCOL_VERSION, "daemon": __version__, "pid": os.getpid()}


async def start(req: p.Start, ctx: Context) -> results.Started:
    if not req.description.strip():
        raise UsageError("a session needs a description")
    redactor = ctx.privacy.redactor
    description = redactor.text(req.description)
    session_id = _new_id()
    # The output file is stored absolute and marked as chosen here: only such a file is written by
    # a bare `docpilot generate` (one that came with an import or a foreign file is not trusted).
    output_file: str | None = None
    trust: dict[str, str] = {}
    if req.output_file:
        layout = ctx.engine.store.layout
        output_file = docs_output.absolute_output_file(redactor.text(req.output_file), req.cwd)
        await _io(ctx, docs_output.check_output_file, output_file, layout)
        trust = await _io(ctx, docs_output.mark_output_file, layout, session_id, output_file)
    if req.policy is not None:  # else its tags and the default decide, now and later
        trust = {**trust, POLICY_SETTING: policies.check_name(ctx.engine.config, req.policy)}
    metadata = SessionMetadata(
        working_directory=req.cwd or os.getcwd(),
        shell_type=req.shell or os.path.basename(os.environ.get("SHELL", "")) or "unknown",
        platform=platform.system().lower(),
        hostname=socket.gethostname(),
        user=req.user or getpass.getuser(),
        tags=[redactor.text(tag) for tag in req.tags],
        llm_provider=None,
        settings=trust,
    )
    change = changes.Create(
        session_id=session_id, description=description, at=_now(), event_id=_new_id(),
        metadata=metadata, output_file=output_file,
    )
    # A session being created meanwhile (its first change not applied yet) is live too.
    already_live: list[results.LiveSession] = [
        {"id": e.session_id, "description": e.summary["description"] if e.summary is not None else "",
         "state": e.pending_state or ""}
        for e in ctx.engine.live_entries()
    ]
    entry = ctx.engine.new_entry(session_id)
    await ctx.engine.commit(entry, change)
    # sessions/{id}.json exists when start answers (the journal already made it durable).
    await _write_snapshot(ctx, session_id)
    started = cast(results.Started, dict(_summary(entry)))  # a SessionSummary, plus also_live
    if already_live:
        started["also_live"] = already_live
    return started


async def _transition(req: Any, ctx: Context, kind: type) -> results.SessionSummary:
    entry = ctx.engine.resolve(req.session)
    await ctx.engine.commit(entry, kind(at=ctx.engine.stamp(entry), event_id=_new_id()))
    return _summary(entry)


async def _finish(req: Any, ctx: Context, kind: type) -> results.SessionSummary:
    """Stop or pause: first every command typed before it, then the transition."""
    await ctx.take_spooled()
    return await _transition(req, ctx, kind)


async def stop(req: p.Stop, ctx: Context) -> results.SessionSummary:
    summary = await _finish(req, ctx, changes.Stop)
    # The final snapshot is on disk before the reply: what another reader of sessions/ sees.
    await _write_snapshot(ctx, summary["id"])
    entry = ctx.engine.entries.get(summary["id"])
    return entry.summary if entry is not None and entry.summary is not None else summary


async def pause(req: p.Pause, ctx: Context) -> results.SessionSummary:
    return await _finish(req, ctx, changes.Pause)


async def _write_snapshot(ctx: Context, session_id: str) -> None:
    entry = ctx.engine.entries.get(session_id)
    if entry is None:
        return
    try:
        await ctx.engine.checkpoint(entry)
    except DocpilotError as exc:  # the journal holds the change; autosave tries again
        log.warning("session %s: snapshot not written now: %s", session_id, exc)


async def resume(req: p.Resume, ctx: Context) -> results.SessionSummary:
    return await _transition(req, ctx, changes.Resume)


async def annotate(req: p.Annotate, ctx: Context) -> results.Annotated:
    if not req.text.strip():
        raise UsageError("an annotation needs text")
    entry = ctx.engine.resolve(req.session)
    text = ctx.privacy.redactor.text(req.text)
    note = Annotation(id=_new_id(), text=text, timestamp=ctx.engine.stamp(entry), annotation_type=p.ANNOTATION_KINDS[req.type])
    await ctx.engine.commit(entry, changes.Annotate(annotation=note, event_id=_new_id()))
    return {"session": entry.session_id, "annotation": _annotation(note)}


async def record(req: p.Record, ctx: Context) -> results.Recorded:
    outcome = await ctx.recorder.record(req)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.session_id is not None  # a refusal is the only outcome without a session
    result: results.Recorded = {"session": outcome.session_id, "seq": outcome.seq, "commands": outcome.commands}
    if outcome.status == "duplicate":
        result["duplicate"] = True
    elif outcome.status == "private":
        result["skipped"] = "the command starts with a space: not recorded"
    elif outcome.status == "own":
        result["skipped"] = (
            "a docpilot run line: not recorded (run records the command it runs)" if runs_itself(req.command)
            else "a docpilot command line: not recorded (record_own_commands = true records them)"
        )
    if outcome.redacted:
        result["redacted"] = outcome.redacted
    return result


async def status(req: p.Status, ctx: Context) -> results.Status:
    """The daemon (its log, the spool not read yet), the session named or the latest live one, and
    every live session. A session whose creation is not applied yet (a `start` waiting for its fsync) is answered for as a moment earlier, when it did
    not exist: by name it is not found, and the latest live session is the one before it."""
    engine = ctx.engine
    result: results.Status = {
        "daemon": {
            "pid": os.getpid(),
            "version": __version__,
            "uptime_s": round((time.time_ns() - ctx.started_ns) / 1e9, 3),
            "durability": engine.config.durability,
            "root": str(engine.store.layout.root),
            "degraded": dict(engine.degraded),
            "live_sessions": len(engine.live_entries()),
            "sessions": len(engine.entries),
            "log": logplace.describe(engine.config.log_file),
        },
        "session": None,
    }
    if ctx.spool is not None:
        result["daemon"]["spool"] = ctx.spool.backlog()
    if engine.offline:
        result["daemon"]["offline"] = dict(engine.offline)
    if ctx.quota is not None and ctx.quota.state is not None:
        result["daemon"]["storage"] = ctx.quota.state
    if ctx.scrub is not None and ctx.scrub.last is not None:
        result["daemon"]["scrub"] = ctx.scrub.last
    try:
        entry: Entry | None = engine.resolve(req.session)
    except Exception:
        if req.session:
            raise
        entry = None
    if entry is not None and entry.summary is None:
        if req.session:
            raise SessionNotFound(f"no session {req.session!r}")
        entry = max((e for e in engine.live_entries() if e.summary is not None), key=lambda e: e.started_ns, default=None)
    if entry is not None and entry.summary is not None:
        result["session"] = results.SessionStatus(**entry.summary, seq=entry.seq, unsaved=entry.dirty)
    result["live"] = [e.summary for e in engine.live_entries() if e.summary is not None]
    return result


async def sessions(req: p.Sessions, ctx: Context) -> list[results.ListedSession]:
    # A summary is a listed session without `offline`.
    found = cast("list[results.ListedSession]", [e.summary for e in ctx.engine.entries.values() if e.summary is not None])
    # Sessions kept offline, as recovery found their best copy (read only), so none goes unseen.
    report: RecoveryReport | None = ctx.recovery_report
    for kept in report.offline if report is not None else ():
        if kept.session_id in ctx.engine.offline:
            found.append({
                "id": kept.session_id, "description": kept.description, "state": "Offline",
                "created_at": kept.created_at, "updated_at": kept.created_at, "started_at": None, "stopped_at": None,
                "commands": kept.commands, "annotations": kept.annotations, "successful_commands": 0,
                "failed_commands": 0, "offline": kept.why,
            })
    return sorted(found, key=lambda summary: summary["created_at"] or "")


async def _latest(req: Any, ctx: Context) -> Entry:
    """For verbs that read a session: what was typed is in first; without a name, the most
    recent session, live or stopped."""
    await ctx.take_spooled()
    return ctx.engine.resolve_latest(req.session)


# Items per encoded slice of a streamed session: about 100 KB of JSON, a fraction of a millisecond
# of encoding on the loop between two chances for every other client to be answered.
REPLY_SLICE_ITEMS = 400
# Session's fields are in this order (domain.model), so in the compact JSON of a session whose three
# lists are empty these bytes occur exactly once (a quote inside a string is always escaped).
_EMPTY_LISTS = b',"commands":[],"annotations":[],"events":[],'
_LIST_NAMES = (b"commands", b"annotations", b"events")
_encoder = msgspec.json.Encoder()


class SessionReply:
    """The session a `show` or `export` answers with (its JSON is results.SessionDocument), as it was
    when the handler ran: the compact JSON of everything but the three long lists, and of each list
    what it held then. Commands and events are only ever appended to, never changed, reordered or
    cut (domain.changes; a replacement or a redaction builds new lists): the list itself and its
    length at that instant describe it, and nothing is copied. An annotation's edit or delete
    changes its list in place, so the annotations (a few per hundred commands) are copied. Copying
    the two long lists instead would cost milliseconds on the loop at a million items, and the
    garbage collector's passes over two fresh lists of a million pointers about 100 ms each.

    `pieces` encodes the reply line lazily, a slice of REPLY_SLICE_ITEMS items at a time; joined,
    the pieces are byte for byte `protocol.encode(Response(ok=True, id=..., result=session))`, the
    line an older daemon sent (tests/runtime/test_streamed_replies.py), so every client reads it as
    before. The server writes them as the client takes them (runtime/server.py): the daemon never
    holds more than a slice or two of the encoding."""

    __slots__ = ("lists", "skeleton")

    def __init__(self, session: Session) -> None:
        fields = {name: getattr(session, name) for name in Session.__struct_fields__}  # not a SessionFile's own
        fields.update(commands=[], annotations=[], events=[])
        self.skeleton = _encoder.encode(Session(**fields))
        commands, annotations, events = session.commands, list(session.annotations), session.events
        self.lists: tuple[tuple[list[Any], int], ...] = (
            (commands, len(commands)), (annotations, len(annotations)), (events, len(events))
        )

    def pieces(self, request_id: p.RequestId) -> Iterator[bytes]:
        head, found, tail = self.skeleton.partition(_EMPTY_LISTS)
        if not found:  # pragma: no cover - the field order is fixed by the model
            raise ValueError("unexpected session layout")
        yield p.reply_head(request_id) + head
        for name, (items, count) in zip(_LIST_NAMES, self.lists):
            opening = b',"' + name + b'":['
            if not count:
                yield opening + b"]"
                continue
            for start in range(0, count, REPLY_SLICE_ITEMS):
                stop = min(start + REPLY_SLICE_ITEMS, count)
                encoded = _encoder.encode(items[start:stop])  # "[a,b,c]"
                # Slices joined by commas inside one pair of brackets: the list as encoded whole.
                yield (opening if start == 0 else b",") + encoded[1 : len(encoded) if stop == count else -1]
        yield b"," + tail + b"}\n"


async def show(req: p.Show, ctx: Context) -> SessionReply:
    """The session itself (its JSON is results.SessionDocument), streamed: see SessionReply."""
    entry = await _latest(req, ctx)
    return SessionReply(await ctx.engine.full_session(entry))


async def annotations_(req: p.Annotations, ctx: Context) -> results.Annotations:
    entry = await _latest(req, ctx)
    session = await ctx.engine.full_session(entry)
    notes = session.annotations
    if req.type is not None:
        kind = p.ANNOTATION_KINDS[req.type]
        notes = [note for note in notes if note.annotation_type == kind]
    if req.recent is not None and req.recent < len(notes):
        # The N latest by timestamp (the list is in time order unless a foreign file says otherwise).
        latest = sorted(range(len(notes)), key=lambda i: (_time_key(notes[i].timestamp), i))[-req.recent:]
        notes = [notes[i] for i in sorted(latest)]
    result: results.Annotations = {"session": entry.session_id, "annotations": [_annotation(note) for note in notes]}
    if req.type is not None or req.recent is not None:
        result["total"] = len(session.annotations)
    return result


def _time_key(text: str) -> int:
    try:
        return timestamps.parse_ns(text)
    except timestamps.TimestampError:
        return 0




def _find_annotation(session: Session, given: str) -> Annotation:
    """The annotation `given` names: its id or a prefix of it, in any case, hyphens or not.
    AnnotationNotFound when none matches; AmbiguousId, listing them, when several do."""
    wanted = canonical_prefix(given)
    if not wanted:
        raise UsageError("which annotation? give its id, or its first characters (see 'docpilot annotations')")
    exact = [note for note in session.annotations if canonical_prefix(note.id) == wanted]
    if exact:
        return exact[0]
    if len(wanted) < MIN_ID_PREFIX:
        raise UsageError(f"give at least {MIN_ID_PREFIX} characters of the annotation's id (see 'docpilot annotations')")
    found = [note for note in session.annotations if canonical_prefix(note.id).startswith(wanted)]
    if not found:
        raise AnnotationNotFound(f"no annotation {given.strip()!r} in session {session.id} (see 'docpilot annotations')")
    if len(found) > 1:
        listed = ", ".join(f"{note.id} ({note.annotation_type}, {note.timestamp})" for note in found[:10])
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        raise AmbiguousId(f"annotation id {given.strip()!r} is ambiguous in session {session.id}: {listed}{more}; "
                          "give more of it")
    return found[0]


async def _annotation_target(req: p.EditAnnotation | p.DeleteAnnotation, ctx: Context, kind: type) -> tuple[Entry, Annotation]:
    """The session (named, else the most recent one: the one `annotations` lists) and the annotation
    an edit or a delete is for, with no change of the session queued: the caller commits at once,
    without a pause, so its change comes right after the state the annotation was found in (an
    edit and a delete of one annotation that arrive together cannot both find it)."""
    entry = ctx.engine.resolve_latest(req.session)
    _require_live(entry, kind)
    session = await ctx.engine.settled(entry)
    _require_live(entry, kind)  # it may have stopped while we waited
    return entry, _find_annotation(session, req.annotation)


def _require_live(entry: Entry, kind: type) -> None:
    try:
        changes.require(entry.pending_state, kind)
    except InvalidTransition:
        raise InvalidTransition(
            f"session {entry.session_id} is {entry.pending_state or 'gone'}: its annotations can no longer "
            "change (only active and paused sessions can be modified)"
        ) from None


async def edit_annotation(req: p.EditAnnotation, ctx: Context) -> results.AnnotationEdited:
    if not req.text.strip():
        raise UsageError("an annotation needs text (to remove one: docpilot annotations delete ID)")
    entry, note = await _annotation_target(req, ctx, changes.EditAnnotation)
    # No pause from here to the commit (see _annotation_target). Redacted like a new annotation.
    text = ctx.privacy.redactor.text(req.text)
    kind = p.ANNOTATION_KINDS[req.type] if req.type is not None else note.annotation_type
    change = changes.EditAnnotation(
        annotation_id=note.id, text=text, annotation_type=kind, at=ctx.engine.stamp(entry), event_id=_new_id()
    )
    await ctx.engine.commit(entry, change)
    edited = Annotation(id=note.id, text=text, timestamp=note.timestamp, annotation_type=kind)
    return {"session": entry.session_id, "annotation": _annotation(edited)}


async def delete_annotation(req: p.DeleteAnnotation, ctx: Context) -> results.AnnotationDeleted:
    entry, note = await _annotation_target(req, ctx, changes.DeleteAnnotation)
    # No pause from here to the commit (see _annotation_target).
    change = changes.DeleteAnnotation(annotation_id=note.id, at=ctx.engine.stamp(entry), event_id=_new_id())
    await ctx.engine.commit(entry, change)
    return {
        "session": entry.session_id, "deleted": note.id, "annotation_type": note.annotation_type,
        "remaining": _summary(entry)["annotations"],
    }


async def save(req: p.Save, ctx: Context) -> results.Saved:
    return {"saved": await ctx.engine.checkpoint_dirty(raise_failures=True)}


async def backups_(req: p.Backups, ctx: Context) -> results.Backups:
    entry = ctx.engine.resolve_latest(req.session)
    # Why each is kept: the session's policy, as the next rotation will apply it.
    policy = ctx.engine.policy_for(await ctx.engine.full_session(entry))
    store = ctx.engine.store

    def listed() -> list[maintenance.BackupInfo]:  # in the pool: it reads the files (and may list backups/)
        found = maintenance.backup_info(store, entry.session_id)
        now = time.time_ns()
        plan = retention.plan((retention.Generation(g.ns, True, g.name) for g in store.generations(entry.session_id)),
                              policy, now, tz_offset_seconds=local_offset(now))
        reasons = {kept.generation.name: list(kept.reasons) for kept in plan.keep}
        for info in found:
            info.kept_for = reasons.get(info.name, [])
        return found

    found = await _io(ctx, listed)
    # What a generation holds, or why it cannot be read: the fields that apply (as BackupInfo
    # encodes itself: omit_defaults).
    return {"session": entry.session_id, "backups": [cast(results.Backup, msgspec.to_builtins(info)) for info in found]}


async def restore(req: p.Restore, ctx: Context) -> results.Restored:
    """Replace the session with a backup generation, or with itself as it was at a moment.
    Reversible: the current version becomes a backup at the next checkpoint, which this forces."""
    if (req.backup is None) == (req.at is None):
        raise UsageError("restore needs a backup's name (see 'docpilot backups') or --at TIME, one of them")
    if req.at is not None:
        return await _restore_at(req, req.at, ctx)
    assert req.backup is not None
    store = ctx.engine.store
    name = Path(req.backup).name
    generation = backups.parse_name(store.layout.backups, name)
    # Without --session: the session the backup's name names (`{id}_{time}.json`).
    entry = ctx.engine.resolve(req.session or (generation.session_id if generation is not None else None))
    # As listed, or in its other form: a save may have compressed it since (`{name}.zst`).
    located = backups.locate(store.ops, store.layout.backups, name) if generation is not None else None
    if generation is None or generation.session_id != entry.session_id or located is None:
        raise BackupNotFound(f"no backup {name!r} of session {entry.session_id} (see 'docpilot backups')")
    decoded = await _io(ctx, store.read, located.path, entry.session_id)
    if decoded.problem == "file not found":  # compressed meanwhile by a save: read it so
        located = backups.locate(store.ops, store.layout.backups, located.name) or located
        decoded = await _io(ctx, store.read, located.path, entry.session_id)
    if not decoded.usable or decoded.session is None:
        raise InvalidSession(f"backup {name} cannot be restored: {decoded.problem or 'checksum mismatch'}")
    restored = snapshot.plain_session(decoded.session)
    return await _replace_with(ctx, entry, restored, req.dry_run, name, {})


async def _restore_at(req: p.Restore, at: str, ctx: Context) -> results.Restored:
    """restore --at: the session rebuilt as it was at `at` (storage/point_in_time.py)."""
    try:
        at_ns = timestamps.parse_ns(at)
    except timestamps.TimestampError:
        raise UsageError(f"--at needs a time, not {at[:60]!r}") from None
    entry = ctx.engine.resolve(req.session)
    await ctx.engine.settled(entry)  # every acknowledged change is in the journal's files
    rebuilt = await _io(ctx, point_in_time.rebuild, ctx.engine.store, entry.session_id, at_ns)
    restored = snapshot.plain_session(rebuilt.session)
    extra: dict[str, Any] = {"as_of": rebuilt.moment, "journal_records": rebuilt.applied}
    return await _replace_with(ctx, entry, restored, req.dry_run, rebuilt.base, extra)


async def _replace_with(
    ctx: Context, entry: Entry, restored: Session, dry_run: bool, source: str, extra: dict[str, Any]
) -> results.Restored:
    current = await ctx.engine.full_session(entry)
    reopened = not is_live(current) and is_live(restored)
    if dry_run:
        return cast(results.Restored, {**engine_summarize(restored), "restored_from": source, "reopened": reopened,
                                       "dry_run": True, **extra})
    reason = f"restore {source}" + (f" as of {extra['as_of']}" if "as_of" in extra else "")
    await ctx.engine.commit(entry, changes.Replace(session=restored, reason=reason, at=ctx.engine.stamp(entry)))
    await ctx.engine.checkpoint(entry)
    if reopened:
        log.info("session %s: restoring %s made it %s again", entry.session_id, source, state_name(restored.state))
    return cast(results.Restored, {**_summary(entry), "restored_from": source, "reopened": reopened, **extra})


async def points(req: p.Points, ctx: Context) -> results.PointsAvailable:
    entry = ctx.engine.resolve(req.session)
    await ctx.engine.settled(entry)
    found = await _io(ctx, point_in_time.points, ctx.engine.store, entry.session_id)
    return {"session": entry.session_id, "earliest": found.earliest.moment, "earliest_copy": found.earliest.name,
            "latest": found.latest, "changes": found.changes, "copies": found.copies}


async def recovery(req: p.Recovery, ctx: Context) -> RecoveryReport:
    """The report itself (its JSON is results.Recovery)."""
    report: RecoveryReport = ctx.recovery_report
    return report


async def cleanup(req: p.Cleanup, ctx: Context) -> CleanupResult:
    """Storage's result itself (its JSON is results.Cleanup)."""
    engine = ctx.engine
    await engine.checkpoint_dirty()
    known = [await engine.full_session(e) for e in list(engine.entries.values()) if e.summary is not None]
    result: CleanupResult = await _io(
        ctx, maintenance.cleanup, engine.store, known, req.max_age_days, time.time_ns(), req.dry_run
    )
    if not req.dry_run:
        for session_id in result.removed_sessions:
            engine.forget(session_id)
    return result


async def stats(req: p.Stats, ctx: Context) -> StorageStats:
    """Storage's figures themselves (their JSON is results.StorageStats)."""
    found: StorageStats = await _io(ctx, maintenance.storage_stats, ctx.engine.store)
    return found


async def export(req: p.Export, ctx: Context) -> SessionReply | results.MarkdownExport:
    """The session itself (results.SessionDocument, streamed: see SessionReply), or its Markdown
    (the default template)."""
    entry = await _latest(req, ctx)
    session = await ctx.engine.full_session(entry)
    if req.format == "markdown":
        spec = _document_spec(ctx, None, "auto", None)
        text = await _io(ctx, docs_output.render, docs_output.freeze(session), spec)
        return {"session": entry.session_id, "format": "markdown", "markdown": text}
    return SessionReply(session)


def _document_spec(ctx: Context, template: str | None, relative_to: str, slow_seconds: float | None) -> docs_output.Spec:
    """How a document is laid out: the request's choices, else the configuration's."""
    config = ctx.engine.config
    if relative_to not in ("auto", "") and not relative_to.startswith("/"):
        raise UsageError("--relative-to needs an absolute directory (the client resolves it), or none")
    slow = config.slow_command_seconds if slow_seconds is None else slow_seconds
    return docs_output.Spec(
        template=template or config.default_template,
        options=DocumentOptions(relative_to=relative_to or None, slow_ms=round(slow * 1000)),
        user_templates=ctx.templates_dir(),
    )


async def templates_(req: p.Templates, ctx: Context) -> results.Templates:
    directory = ctx.templates_dir()
    found = await _io(ctx, render_templates.available, directory)
    return {
        "templates": [{"name": t.name, "source": t.source, "alias_of": t.alias_of} for t in found],
        "default": ctx.engine.config.default_template, "directory": str(directory),
    }


async def generate(req: p.Generate, ctx: Context) -> results.Generated | results.Written:
    """Markdown documentation, rendered in the I/O pool (never on the loop) and returned with the
    session's output file and whether it is trusted: the client writes it (see docs.output). Only
    the older protocol's absolute `output` is written here."""
    entry = await _latest(req, ctx)
    spec = _document_spec(ctx, req.template, req.relative_to, req.slow_seconds)
    view = docs_output.freeze(await ctx.engine.full_session(entry))
    result: results.Generated | results.Written = await _io(
        ctx, docs_output.generate, view, req.output, ctx.engine.store.layout, spec
    )
    return result


async def redact(req: p.Redact, ctx: Context) -> results.Redacted:
    entry = ctx.engine.resolve(req.session)
    result = await privacy.redact(ctx.engine, ctx.privacy, ctx.spool, entry, req.pattern, req.regex)
    if ctx.search is not None:  # the search index holds the session's text too: no trace of it left there
        await ctx.search.scrubbed()
    return result


async def policy(req: p.Policy, ctx: Context) -> results.PolicyShown:
    entry = ctx.engine.resolve(req.session)
    change = policies.change(ctx.engine.config, req.policy, req.clear, _now(), _new_id())
    if change is not None:
        change = msgspec.structs.replace(change, at=ctx.engine.stamp(entry))
        await ctx.engine.commit(entry, change)
    return policies.shown(ctx.engine.config, await ctx.engine.full_session(entry))


async def redact_check(req: p.RedactCheck, ctx: Context) -> results.RedactChecked:
    return privacy.check(ctx.privacy, req.text, req.patterns)


async def purge(req: p.Purge, ctx: Context) -> results.Purged:
    entry = ctx.engine.resolve(req.session)
    if req.dry_run:
        return await privacy.purge_listing(ctx.engine, entry, req.force)
    result = await privacy.purge(ctx.engine, ctx.spool, entry, req.force)
    if ctx.search is not None:  # the session's rows are gone from the search index, and every trace of them
        await ctx.search.scrubbed()
    return result


async def search(req: p.Search, ctx: Context) -> results.Search:
    """Commands, outputs and annotations of every session (runtime/search.py); what was typed
    before it is in first."""
    if ctx.search is None:
        raise SearchUnavailable("the search index is not running in this daemon")
    await ctx.take_spooled()
    return await ctx.search.search(req)


async def import_(req: p.Import, ctx: Context) -> results.SessionSummary:
    path = Path(req.path)
    if not path.is_absolute():
        raise UsageError("import needs an absolute path (the client resolves it)")
    data = await _io(ctx, maintenance.read_import_file, path)
    session, _ = ctx.privacy.redactor.session(maintenance.parse_import(data, str(path)))
    # Whatever the file says, its output file was not chosen here: never written without -o.
    session = docs_output.untrusted(session)
    # One spelling of an id everywhere: an id in upper case or without hyphens is the same session.
    session = msgspec.structs.replace(session, id=canonical_uuid(session.id))
    if session.id in ctx.engine.entries:
        raise SessionExists(f"session {session.id} already exists; nothing was imported")
    entry = ctx.engine.new_entry(session.id)
    try:
        await ctx.engine.commit(entry, changes.Replace(session=session, reason=f"import {path.name}", at=_now()))
    except Exception:
        if entry.session is None:
            ctx.engine.forget(session.id)
        raise
    await ctx.engine.checkpoint(entry)
    return _summary(entry)


HANDLERS: dict[type, Handler] = {
    p.Hello: hello, p.Start: start, p.Stop: stop, p.Pause: pause, p.Resume: resume,
    p.Annotate: annotate, p.Record: record, p.Status: status, p.Sessions: sessions, p.Show: show,
    p.Annotations: annotations_, p.EditAnnotation: edit_annotation, p.DeleteAnnotation: delete_annotation,
    p.Save: save, p.Backups: backups_, p.Restore: restore,
    p.Recovery: recovery, p.Cleanup: cleanup, p.Stats: stats, p.Export: export, p.Import: import_,
    p.Generate: generate, p.Templates: templates_, p.Redact: redact, p.RedactCheck: redact_check, p.Purge: purge,
    p.Search: search, p.Policy: policy, p.Points: points,
}


async def dispatch(request: Any, ctx: Context) -> Any:
    handler = HANDLERS.get(type(request))
    if handler is None:  # pragma: no cover - every request type has a handler (tested)
        raise UnknownOperation(f"no handler for {type(request).__name__}")
    return await handler(request, ctx)
