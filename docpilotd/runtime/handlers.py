"""One handler per request type: turn a protocol request into changes and results.

Handlers are where the clock and random ids enter: each builds a complete `Change` (timestamps,
uuids) and hands it to the engine, which journals it before anything is applied. A handler returns
a JSON-ready result or raises a DocpilotError; it never touches files itself except through the
engine, the store and maintenance functions (run in the I/O pool).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import platform
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from .. import __version__, protocol as p
from ..domain import changes, timestamps
from ..domain.model import Annotation, CommandEntry, SessionMetadata
from ..errors import BackupNotFound, InvalidSession, SessionExists, UnknownOperation, UsageError
from ..storage import backups, maintenance, snapshot
from ..docs import output as docs_output
from ..docs.markdown import render as render_markdown
from . import privacy
from .capture_ids import capture_marks, split_capture_id
from .engine import Engine, Entry, summarize

Handler = Callable[[Any, "Context"], Awaitable[Any]]


class Context:
    """What handlers share: the engine, the last recovery report, the redaction rules and the
    shell spool (set by the app once it exists)."""

    def __init__(self, engine: Engine, recovery_report: Any, started_ns: int) -> None:
        self.engine = engine
        self.recovery_report = recovery_report
        self.started_ns = started_ns
        self.privacy = privacy.Privacy(engine.config)
        self.spool: Any = None


def _now() -> str:
    return timestamps.format_ns(time.time_ns())


_ID_BATCH = 256  # ids per read of the kernel's random source
_id_pool = bytearray()
_id_pool_pid = 0
_id_lock = threading.Lock()


def _new_id() -> str:
    """A random (version 4) UUID, as uuid.uuid4() makes it, at a fraction of the cost.

    A change needs two ids; reading os.urandom for each was two system calls per change, which
    on a virtual machine cost more than the rest of the handler. The bytes are the same kernel
    randomness, read 4 KB at a time; a forked process never reuses its parent's bytes (pid check).
    """
    global _id_pool, _id_pool_pid
    with _id_lock:
        if len(_id_pool) < 16 or _id_pool_pid != os.getpid():
            _id_pool, _id_pool_pid = bytearray(os.urandom(16 * _ID_BATCH)), os.getpid()
        raw = _id_pool[-16:]
        del _id_pool[-16:]
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def _io(ctx: Context, fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(ctx.engine.pool, fn, *args)


async def hello(req: p.Hello, ctx: Context) -> dict[str, Any]:
    return {"version": p.PROTOCOL_VERSION, "daemon": __version__, "pid": os.getpid()}


async def start(req: p.Start, ctx: Context) -> dict[str, Any]:
    if not req.description.strip():
        raise UsageError("a session needs a description")
    redactor = ctx.privacy.redactor
    description = redactor.text(req.description)
    session_id = _new_id()
    metadata = SessionMetadata(
        working_directory=req.cwd or os.getcwd(),
        shell_type=req.shell or os.path.basename(os.environ.get("SHELL", "")) or "unknown",
        platform=platform.system().lower(),
        hostname=socket.gethostname(),
        user=req.user or getpass.getuser(),
        tags=[redactor.text(tag) for tag in req.tags],
        llm_provider=None,
        settings={},
    )
    change = changes.Create(
        session_id=session_id, description=description, at=_now(), event_id=_new_id(),
        metadata=metadata, output_file=req.output_file,
    )
    entry = ctx.engine.new_entry(session_id)
    await ctx.engine.commit(entry, change)
    return entry.summary


async def _transition(req: Any, ctx: Context, kind: type) -> dict[str, Any]:
    entry = ctx.engine.resolve(req.session)
    await ctx.engine.commit(entry, kind(at=_now(), event_id=_new_id()))
    return entry.summary


async def stop(req: p.Stop, ctx: Context) -> dict[str, Any]:
    return await _transition(req, ctx, changes.Stop)


async def pause(req: p.Pause, ctx: Context) -> dict[str, Any]:
    return await _transition(req, ctx, changes.Pause)


async def resume(req: p.Resume, ctx: Context) -> dict[str, Any]:
    return await _transition(req, ctx, changes.Resume)


async def annotate(req: p.Annotate, ctx: Context) -> dict[str, Any]:
    if not req.text.strip():
        raise UsageError("an annotation needs text")
    entry = ctx.engine.resolve(req.session)
    text = ctx.privacy.redactor.text(req.text)
    note = Annotation(id=_new_id(), text=text, timestamp=_now(), annotation_type=p.ANNOTATION_KINDS[req.type])
    await ctx.engine.commit(entry, changes.Annotate(annotation=note, event_id=_new_id()))
    return {"session": entry.session_id, "annotation": msgspec.to_builtins(note)}


async def record(req: p.Record, ctx: Context) -> dict[str, Any]:
    entry = ctx.engine.resolve(req.session)
    if req.command.startswith(" "):  # the shells' convention (HISTCONTROL=ignorespace): private
        return {"session": entry.session_id, "seq": entry.seq, "commands": entry.summary.get("commands", 0),
                "skipped": "the command starts with a space: not recorded"}
    capture = split_capture_id(req.capture_id) if req.capture_id else None
    if capture is not None:
        marks = capture_marks(entry, await ctx.engine.full_session(entry))
        if capture[1] <= marks.get(capture[0], -1):
            return {"session": entry.session_id, "seq": entry.seq, "commands": entry.summary["commands"], "duplicate": True}
    at = _now()
    if req.started_us is not None:
        at = timestamps.format_ns(req.started_us * 1000)
    elif req.started_at is not None:
        try:
            at = timestamps.format_ns(timestamps.parse_ns(req.started_at))
        except timestamps.TimestampError as exc:
            raise UsageError(f"started_at: {exc}") from None
    elif req.duration_ms is not None:  # fish knows the duration but has no clock builtin
        at = timestamps.format_ns(time.time_ns() - req.duration_ms * 1_000_000)
        # Estimated, so never before the previous command: the order of a burst is kept.
        if entry.last_command_at and not timestamps.not_before(at, entry.last_command_at):
            at = entry.last_command_at
    # Redacted last, right before the change is built: a pattern `redact` registers meanwhile applies.
    redactor = ctx.privacy.redactor
    text, redacted = redactor.count(req.command)
    output, in_output = redactor.optional(req.output)
    command = CommandEntry(
        command=text, timestamp=at, exit_code=req.exit_code, working_directory=req.cwd,
        shell=req.shell, output=output, error=None, duration_ms=req.duration_ms,
        capture_id=req.capture_id, pipestatus=req.pipestatus,
    )
    entry.last_command_at = at
    await ctx.engine.commit(entry, changes.RecordCommand(entry=command, event_id=_new_id()))
    if capture is not None and entry.capture_marks is not None:
        entry.capture_marks[capture[0]] = max(capture[1], entry.capture_marks.get(capture[0], -1))
    result = {"session": entry.session_id, "seq": entry.seq, "commands": entry.summary["commands"]}
    if redacted + in_output:
        result["redacted"] = redacted + in_output
    return result


async def status(req: p.Status, ctx: Context) -> dict[str, Any]:
    engine = ctx.engine
    result: dict[str, Any] = {
        "daemon": {
            "pid": os.getpid(),
            "version": __version__,
            "uptime_s": round((time.time_ns() - ctx.started_ns) / 1e9, 3),
            "durability": engine.config.durability,
            "root": str(engine.store.layout.root),
            "degraded": dict(engine.degraded),
            "live_sessions": sum(1 for e in engine.entries.values() if e.pending_state in ("Active", "Paused")),
            "sessions": len(engine.entries),
        }
    }
    try:
        entry = engine.resolve(req.session)
    except Exception:
        if req.session:
            raise
        result["session"] = None
    else:
        result["session"] = dict(entry.summary, seq=entry.seq, unsaved=entry.dirty)
    return result


async def sessions(req: p.Sessions, ctx: Context) -> list[dict[str, Any]]:
    found = sorted(ctx.engine.entries.values(), key=lambda e: e.summary.get("created_at") or "")
    return [e.summary for e in found if "state" in e.summary]


async def show(req: p.Show, ctx: Context) -> Any:
    entry = ctx.engine.resolve(req.session)
    return snapshot.plain_session(await ctx.engine.full_session(entry))


async def annotations_(req: p.Annotations, ctx: Context) -> dict[str, Any]:
    entry = ctx.engine.resolve(req.session)
    session = await ctx.engine.full_session(entry)
    return {"session": entry.session_id, "annotations": session.annotations}


async def save(req: p.Save, ctx: Context) -> dict[str, Any]:
    return {"saved": await ctx.engine.checkpoint_dirty()}


async def backups_(req: p.Backups, ctx: Context) -> dict[str, Any]:
    entry = ctx.engine.resolve(req.session)
    found = await _io(ctx, maintenance.backup_info, ctx.engine.store, entry.session_id)
    return {"session": entry.session_id, "backups": found}


async def restore(req: p.Restore, ctx: Context) -> dict[str, Any]:
    """Replace the session with a backup generation. Reversible: the current version becomes a
    backup at the next checkpoint, which this forces."""
    entry = ctx.engine.resolve(req.session)
    store = ctx.engine.store
    name = Path(req.backup).name
    generation = backups.parse_name(store.layout.backups, name)
    if generation is None or generation.session_id != entry.session_id or not store.ops.exists(generation.path):
        raise BackupNotFound(f"no backup {name!r} of session {entry.session_id} (see 'docpilot backups')")
    decoded = await _io(ctx, store.read, generation.path, entry.session_id)
    if not decoded.usable or decoded.session is None:
        raise InvalidSession(f"backup {name} cannot be restored: {decoded.problem or 'checksum mismatch'}")
    await ctx.engine.full_session(entry)
    await ctx.engine.commit(entry, changes.Replace(session=snapshot.plain_session(decoded.session), reason=f"restore {name}"))
    await ctx.engine.checkpoint(entry)
    return dict(entry.summary, restored_from=name)


async def recovery(req: p.Recovery, ctx: Context) -> Any:
    return ctx.recovery_report


async def cleanup(req: p.Cleanup, ctx: Context) -> Any:
    engine = ctx.engine
    await engine.checkpoint_dirty()
    known = [await engine.full_session(e) for e in list(engine.entries.values()) if "state" in e.summary]
    result = await _io(ctx, maintenance.cleanup, engine.store, known, req.max_age_days, time.time_ns())
    for session_id in result.removed_sessions:
        entry = engine.entries.pop(session_id, None)
        if entry is not None and entry.writer is not None:
            entry.writer.close()
    return result


async def stats(req: p.Stats, ctx: Context) -> Any:
    return await _io(ctx, maintenance.storage_stats, ctx.engine.store)


async def export(req: p.Export, ctx: Context) -> Any:
    entry = ctx.engine.resolve(req.session)
    session = await ctx.engine.full_session(entry)
    if req.format == "markdown":
        text = await _io(ctx, render_markdown, docs_output.freeze(session))
        return {"session": entry.session_id, "format": "markdown", "markdown": text}
    return snapshot.plain_session(session)


async def generate(req: p.Generate, ctx: Context) -> dict[str, Any]:
    """Markdown documentation, rendered and written in the I/O pool (never on the loop)."""
    entry = ctx.engine.resolve(req.session)
    view = docs_output.freeze(await ctx.engine.full_session(entry))
    result: dict[str, Any] = await _io(ctx, docs_output.generate, view, req.output, ctx.engine.store.layout)
    return result


async def redact(req: p.Redact, ctx: Context) -> dict[str, Any]:
    entry = ctx.engine.resolve(req.session)
    return await privacy.redact(ctx.engine, ctx.privacy, ctx.spool, entry, req.pattern, req.regex)


async def purge(req: p.Purge, ctx: Context) -> dict[str, Any]:
    entry = ctx.engine.resolve(req.session)
    return await privacy.purge(ctx.engine, ctx.spool, entry, req.force)


async def import_(req: p.Import, ctx: Context) -> dict[str, Any]:
    path = Path(req.path)
    if not path.is_absolute():
        raise UsageError("import needs an absolute path (the client resolves it)")
    data = await _io(ctx, maintenance.read_import_file, path)
    session, _ = ctx.privacy.redactor.session(maintenance.parse_import(data, str(path)))
    if session.id in ctx.engine.entries:
        raise SessionExists(f"session {session.id} already exists; nothing was imported")
    entry = ctx.engine.new_entry(session.id)
    try:
        await ctx.engine.commit(entry, changes.Replace(session=session, reason=f"import {path.name}"))
    except Exception:
        if entry.session is None:
            ctx.engine.entries.pop(session.id, None)
        raise
    await ctx.engine.checkpoint(entry)
    return entry.summary


HANDLERS: dict[type, Handler] = {
    p.Hello: hello, p.Start: start, p.Stop: stop, p.Pause: pause, p.Resume: resume,
    p.Annotate: annotate, p.Record: record, p.Status: status, p.Sessions: sessions, p.Show: show,
    p.Annotations: annotations_, p.Save: save, p.Backups: backups_, p.Restore: restore,
    p.Recovery: recovery, p.Cleanup: cleanup, p.Stats: stats, p.Export: export, p.Import: import_,
    p.Generate: generate, p.Redact: redact, p.Purge: purge,
}


async def dispatch(request: Any, ctx: Context) -> Any:
    handler = HANDLERS.get(type(request))
    if handler is None:  # pragma: no cover - every request type has a handler (tested)
        raise UnknownOperation(f"no handler for {type(request).__name__}")
    return await handler(request, ctx)
