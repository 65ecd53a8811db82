"""The engine: live sessions in memory, changes made durable before they are acknowledged.

Why this design: an acknowledged change must survive kill -9 and power loss, yet a change must cost
the same on a 10-command and a 100k-command session. So a change is one journal record (O(1)),
fsynced before the reply; records that arrive together share one fsync (group commit); the whole
session is written only at checkpoints (autosave), which also start a new journal segment.

Flow of a change to session S (all on the event loop, which owns every Entry):
  1. check it against the state S will have after every change already queued (`state_after`);
     a refused change never reaches the journal;
  2. give it the next sequence number, frame it, queue it, and wait;
  3. the flusher (one task for every session, `_flush_ready`) hands the queued records of every
     session with changes to the journal writer in one round (runtime/journal_writer.py: one
     write per session and one fsync per file, durability "always", in a pool thread); only when
     the round reported are each session's records applied to memory in order and their
     waiters told `ok`;
  4. if the write or fsync fails, every queued change of S is refused (never `ok`), the writer is
     dead, and S must be rebased before it accepts another change: a snapshot written from memory
     (which holds only acknowledged changes) and a new segment after it; the old segment goes to
     quarantine so the refused records can never be replayed.

Flushes of one session and the start of its checkpoints are serialized by its `io_lock`, so a
checkpoint never sees a record written but not applied; the snapshot itself is encoded and written
while changes go on (see `Engine.checkpoint`). Invariants: `entry.seq` is the last acknowledged
record and the session in memory contains exactly records 1..seq; `next_seq` is one past the last
queued record; every segment but the current one holds only records below the current one's first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from ..config import POLICY_SETTING, Config
from ..domain import changes, timestamps
from ..domain.changes import Change
from ..domain.model import Session, is_live, state_name
from ..domain.retention import RetentionPolicy
from ..domain.validate import MIN_ID_PREFIX, canonical_prefix, canonical_uuid
from ..errors import AmbiguousId, DocpilotError, NotDurable, SessionNotFound, SessionOffline, StorageError, UsageError
from ..results import SessionSummary
from ..storage import journal, quarantine, snapshot
from ..storage.journal import SegmentWriter
from ..storage.recovery import Recovered
from ..storage.store import SaveResult, SessionStore
from .journal_writer import JournalWriter
from .tasks import TaskSet

log = logging.getLogger("docpilotd.engine")
SETTLE_TIMEOUT_S = 30.0
_T = TypeVar("_T")
CLOCK_STEP_LOG_NS = 1_000_000_000  # a wall clock behind by more than this is logged as a step


@dataclass
class Entry:
    """One session known to the daemon. `session` is None for a stopped session not in memory.
    `summary` is None while the session is not created yet (a `start` or `import` whose first
    change is not yet applied): readers that list or pick sessions pass over such an entry.

    The fields starting with `_` are the journal tail (writer, queue, locks, rebase state): only
    the Engine touches them; other parts use its operations (settled, files_held, remove, forget,
    rewrite, in_pool_exclusive)."""

    session_id: str
    session: Session | None
    seq: int
    summary: SessionSummary | None
    next_seq: int = 0
    pending_state: str | None = None
    checkpoint_seq: int = -1
    started_ns: int = 0
    dirty: bool = False
    _writer: SegmentWriter | None = None
    _queue: list[tuple[int, Change, asyncio.Future[None]]] = field(default_factory=list)
    _pending_bytes: bytearray = field(default_factory=bytearray)
    _flushing: bool = False
    # Set while no change of the session is queued or being written (see Engine.settled).
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _needs_rebase: str | None = None
    _io_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # One snapshot write per session at a time, in the order of their captures (taken before io_lock).
    _snapshot_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    capture_marks: dict[str, int] | None = None  # see runtime.capture.ids
    # Segments written by a writer that failed: they may hold refused records, so they leave
    # journal/ (for quarantine) before any record reuses their sequence numbers.
    _dead_segments: list[Path] = field(default_factory=list)
    # The session's journal segments, (first sequence, path) in order, as the engine made and
    # removed them, so that a checkpoint's trim does not list journal/ (with 100,000 sessions,
    # hundreds of thousands of names; the store keeps the backups the same way). None: not known
    # yet, or another part rewrote the files (files_held): listed once, at the next trim. A
    # segment missing from the list only makes trimming keep more (see `_trim`).
    _segments: list[tuple[int, Path]] | None = None
    # The backup policy of the session as of its last capture for a checkpoint (read in the I/O
    # pool by the save that rotates its generations).
    policy: RetentionPolicy | None = None
    last_command_at: str | None = None  # timestamp given to the latest recorded command
    # For the autosave policy (Engine.autosave): the size of the last snapshot written, the
    # journal bytes written since its segment switch, and when it was written (monotonic).
    snapshot_bytes: int = 0
    journal_bytes: int = 0
    snapshot_mono: float = 0.0
    # The last timestamp `Engine.stamp` gave, and the monotonic clock then (see `stamp`).
    last_stamp_ns: int = 0
    last_stamp_mono_ns: int = 0
    clock_behind: bool = False

    def __post_init__(self) -> None:
        self._idle.set()
        self.next_seq = self.seq + 1
        if self.pending_state is None and self.session is not None:
            self.pending_state = state_name(self.session.state)


def _recency(entry: Entry) -> tuple[int, int]:
    """When a session last began or ended, for `resolve_latest` (live sessions win ties)."""
    summary = entry.summary
    live = entry.pending_state in ("Active", "Paused")
    if summary is None:
        stamp = None
    else:
        stamp = summary["started_at"] if live else summary["stopped_at"] or summary["updated_at"]
    try:
        ns = timestamps.parse_ns(stamp) if isinstance(stamp, str) else 0
    except timestamps.TimestampError:
        ns = 0
    return (max(ns, entry.started_ns) if live else ns), int(live)


def summarize(session: Session) -> SessionSummary:
    return {
        "id": session.id,
        "description": session.description,
        "state": state_name(session.state),
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "started_at": session.started_at,
        "stopped_at": session.stopped_at,
        # The stats count the lists (kept by changes.apply, checked by validate): an outline of a
        # session without its lists (see storage.recovery.Recovered) summarizes the same.
        "commands": session.stats.total_commands,
        "annotations": session.stats.total_annotations,
        "successful_commands": session.stats.successful_commands,
        "failed_commands": session.stats.failed_commands,
    }


# Changes that never alter which sessions are live (so the capture markers need no update).
_CONTENT_ONLY = (changes.RecordCommand, changes.Annotate, changes.EditAnnotation, changes.DeleteAnnotation)


class ChangeFeed(Protocol):
    """What follows the sessions' content as it changes (the search index, runtime/search.py).
    Told on the loop, after a change is applied, when a session is adopted (found on disk while
    running) and when one leaves the registry; each call returns at once (it queues)."""

    def applied(self, entry: Entry, seq: int, change: Change) -> None: ...

    def adopted(self, entry: Entry) -> None: ...

    def forgotten(self, session_id: str) -> None: ...


class Engine:
    def __init__(self, config: Config, store: SessionStore) -> None:
        self.config = config
        self.store = store
        self.entries: dict[str, Entry] = {}
        # The live sessions (Active or Paused once their queued changes apply), kept as states
        # change, so that the default session of a note or a hook line and the counts `status`
        # shows cost the same with 10 or 100,000 sessions (see `_track`).
        self._live: dict[str, Entry] = {}
        # The most recent finished session for `resolve_latest`, found again only after a change
        # that can alter it (a state change, a session leaving or arriving): never on a note.
        self._latest_finished: Entry | None = None
        self._latest_finished_known = False
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="docpilotd-io")
        self.journal = JournalWriter(lambda: self.pool)  # every session's appends and fsyncs, one drain
        # Sessions with changes queued that no flush has taken yet, and the one task that takes
        # them all, a journal round at a time (`_flush_ready`).
        self._ready: list[Entry] = []
        self._flusher: asyncio.Task[None] | None = None
        self.degraded: dict[str, str] = {}
        # Sessions start-up recovery kept offline (recovery_damage = "offline"): id -> why. Not in
        # `entries`: a request naming one is refused (SessionOffline), nothing adopts or makes it.
        self.offline: dict[str, str] = {}
        self._seq_by_inode: dict[int, int] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self._unsynced: set[str] = set()
        # Called after a change that may alter which sessions capture commands (capture markers).
        self.on_state_change: Callable[[], None] | None = None
        # Called (from any thread) after removed data directories were made again (the watcher).
        self.on_directories_restored: Callable[[], None] | None = None
        self.feed: ChangeFeed | None = None  # told of every applied change (the search index)
        self.tasks = TaskSet("engine")  # journal flushes and batch syncs: awaited by close()

    # -- start-up ---------------------------------------------------------------------------------

    def adopt(self, recovered: dict[str, Recovered]) -> None:
        """Take the sessions recovery produced; stopped ones are kept as summaries only."""
        for session_id, found in recovered.items():
            # A finished session recovery did not keep whole (see Recovered) stays on disk until used.
            outline = found.outline
            entry = Entry(
                session_id, found.session if found.held else None, found.seq, summarize(outline),
                pending_state=state_name(outline.state),
            )
            # Only live sessions are ever picked by start time (`resolve`); a finished one that a
            # replacement makes live again gets its time then (`_apply`).
            entry.started_ns = _started_ns(outline) if is_live(outline) else 0
            if is_live(outline):  # for the autosave policy (`due`): how large its snapshot is
                try:
                    entry.snapshot_bytes = self.store.ops.stat(self.store.layout.session_file(session_id)).st_size
                except OSError:
                    pass  # none yet: written at the first autosave it changed in
                entry.snapshot_mono = time.monotonic()
            entry.checkpoint_seq = -1  # unknown until written: forces a first checkpoint if dirty
            self.entries[session_id] = entry
            self._track(entry)
            if self.feed is not None:  # found while running (the watcher); at start-up the feed is not set yet
                self.feed.adopted(entry)

    async def settle_after_recovery(self, replayed_ids: set[str]) -> None:
        """Checkpoint sessions that recovery changed, then drop stopped sessions from memory."""
        for session_id in sorted(replayed_ids):
            entry = self.entries.get(session_id)
            if entry is not None and entry.session is not None:
                entry.dirty = True
                await self.checkpoint(entry)
        for entry in self.entries.values():
            if entry.session is not None and not is_live(entry.session) and not entry.dirty:
                entry.session = None

    # -- looking sessions up ----------------------------------------------------------------------

    def resolve(self, session_id: str | None) -> Entry:
        if session_id:
            entry = self.entries.get(session_id) or self.entries.get(canonical_uuid(session_id))
            if entry is None:
                self.refuse_offline(session_id)
                return self._by_prefix(session_id)
            return entry
        if not self._live:
            raise SessionNotFound("no live session (start one with 'docpilot start \"what you are doing\"')")
        return max(self._live.values(), key=lambda e: e.started_ns)

    def live_entries(self) -> list[Entry]:
        """The live sessions (Active or Paused as their queued changes leave them), oldest start
        first; a session whose creation is not applied yet is among them."""
        return sorted(self._live.values(), key=lambda e: e.started_ns)

    def summary_changed(self, entry: Entry, summary: SessionSummary) -> None:
        """Another part found the session changed on disk (the watcher): take its new summary."""
        entry.summary = summary
        self._track(entry)

    def _track(self, entry: Entry) -> None:
        """Call after `entry.pending_state` changed or the entry joined or left the registry."""
        if entry.pending_state in ("Active", "Paused") and self.entries.get(entry.session_id) is entry:
            self._live[entry.session_id] = entry
        else:
            self._live.pop(entry.session_id, None)
        self._latest_finished_known = False

    def _by_prefix(self, given: str) -> Entry:
        """The one session whose id starts with `given` (case and hyphens do not matter: ids are
        stored in one spelling, canonical_uuid). Too short a prefix, none or several matching:
        an error that says which, and what to type instead."""
        wanted = canonical_prefix(given)
        if not wanted:
            raise UsageError("which session? give its id or its first characters (see 'docpilot sessions')")
        if len(wanted) < MIN_ID_PREFIX:
            raise UsageError(f"session id {given.strip()!r} is too short: give at least {MIN_ID_PREFIX} characters "
                             "of it (see 'docpilot sessions')")
        matches = [e for key, e in self.entries.items() if key.replace("-", "").startswith(wanted)]
        if not matches:
            offline = [sid for sid in self.offline if sid.replace("-", "").startswith(wanted)]
            if len(offline) == 1:
                self.refuse_offline(offline[0])
            raise SessionNotFound(f"no session {given.strip()!r} (see 'docpilot sessions')")
        if len(matches) > 1:
            matches.sort(key=_recency, reverse=True)
            listed = ", ".join(
                f"{e.session_id} ({e.pending_state or 'unknown'}"
                + (f", {e.summary['description'][:40]!r}" if e.summary is not None else "") + ")"
                for e in matches[:10]
            )
            more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
            raise AmbiguousId(f"session id {given.strip()!r} matches {len(matches)} sessions: {listed}{more}; give more of it")
        return matches[0]

    def resolve_latest(self, session_id: str | None) -> Entry:
        """For verbs that read a session: the named one, else the most recent session, live or
        stopped (the latest of a live session's start and a finished one's stop)."""
        if session_id:
            return self.resolve(session_id)
        candidates = [e for e in self._live.values() if e.summary is not None]
        finished = self._latest_finished_entry()
        if finished is not None:
            candidates.append(finished)
        if not candidates:
            raise SessionNotFound("no session yet (start one with 'docpilot start \"what you are doing\"')")
        return max(candidates, key=_recency)

    def _latest_finished_entry(self) -> Entry | None:
        """The finished session that stopped last: one pass over the registry after a change
        that may alter it (`_track`), none for the commands and notes in between."""
        if not self._latest_finished_known:
            finished = (e for e in self.entries.values()
                        if e.summary is not None and e.session_id not in self._live)
            self._latest_finished = max(finished, key=_recency, default=None)
            self._latest_finished_known = True
        return self._latest_finished

    async def full_session(self, entry: Entry) -> Session:
        """The whole session, loading a stopped one from its snapshot when not in memory."""
        if entry.session is not None:
            return entry.session
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, self.store.load, entry.session_id)
        except StorageError:
            from ..storage.recovery import recover_session

            _, found = await loop.run_in_executor(
                self.pool, lambda: recover_session(self.store, entry.session_id, [], repair=True)
            )
            if found is None:
                raise
            return found.session

    # -- time -------------------------------------------------------------------------------------

    def policy_for(self, session: Session) -> RetentionPolicy:
        """The session's backup policy (runtime/policies.py: chosen, by tag, or the default)."""
        meta = session.metadata
        return self.config.policy_for(meta.tags, meta.settings.get(POLICY_SETTING))[1]

    def stamp(self, entry: Entry) -> str:
        """The timestamp for a change of `entry` now: the wall clock, but never before the
        session's last change. When the wall clock has stepped back, the session's time goes on
        from its last change at the pace of the monotonic clock (logged once per step), so that
        what the daemon writes always passes its own validator (stopped_at >= started_at, events
        in order)."""
        wall, mono = time.time_ns(), time.monotonic_ns()
        last = entry.last_stamp_ns
        if not last:
            text = entry.summary["updated_at"] if entry.summary is not None else None
            try:
                last = timestamps.parse_ns(text) if isinstance(text, str) else 0
            except timestamps.TimestampError:
                last = 0
            entry.last_stamp_mono_ns = mono
        behind = wall <= last
        if behind:
            if wall + CLOCK_STEP_LOG_NS < last and not entry.clock_behind:
                log.warning(
                    "session %s: the wall clock is %.3f s behind the session's last change (stepped back?); "
                    "its timestamps go on from there", entry.session_id, (last - wall) / 1e9,
                )
            wall = last + max(1, mono - entry.last_stamp_mono_ns)
        entry.clock_behind = behind
        entry.last_stamp_ns, entry.last_stamp_mono_ns = wall, mono
        return timestamps.format_ns(wall)

    # -- changes ----------------------------------------------------------------------------------

    async def commit(self, entry: Entry, change: Change) -> None:
        """Make `change` durable (per the durability mode), then apply it; raises if refused."""
        new_state = changes.state_after(entry.pending_state, change)
        if entry._needs_rebase is not None:
            await self._rebase(entry)
        if entry.session is None and not isinstance(change, (changes.Create, changes.Replace)):
            entry.session = await self.full_session(entry)
        seq = entry.next_seq
        entry.next_seq += 1
        if new_state != entry.pending_state:
            entry.pending_state = new_state
            self._track(entry)
        if self.config.durability == "off":
            self._apply(entry, seq, change)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry._idle.clear()
        entry._queue.append((seq, change, future))
        entry._pending_bytes += journal.frame(seq, change)
        if not entry._flushing:
            entry._flushing = True
            self._ready.append(entry)
            if self._flusher is None:
                self._flusher = self.tasks.spawn(self._flush_ready(), name="journal flusher")
        await future

    # -- operations other parts need on a whole session ---------------------------------------------

    async def settled(self, entry: Entry, timeout: float = SETTLE_TIMEOUT_S) -> Session:
        """The session once no change of it is queued or being written: exactly records 1..seq.

        Returned without a pause, so a change the caller commits right away comes after all of
        them. NotDurable when the journal is recovering from an error or the session stays busy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if entry._needs_rebase is not None:
                raise NotDurable("the session's journal is recovering from a write error; try again in a moment")
            if entry._idle.is_set():
                if entry.session is not None:
                    return entry.session
                loaded = await self.full_session(entry)
                if entry.session is None and entry._idle.is_set():
                    return loaded
                continue
            try:
                await asyncio.wait_for(entry._idle.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise NotDurable("the session is too busy to be rewritten now; try again") from None

    @contextlib.asynccontextmanager
    async def files_held(self, entry: Entry) -> AsyncIterator[Path | None]:
        """Hold the session's files still (no snapshot, backup, trim or segment switch) while the
        caller rewrites them; yields the live journal segment, which must not be rewritten."""
        async with entry._snapshot_lock:
            try:
                yield entry._writer.path if entry._writer is not None else None
            finally:
                entry._segments = None  # rewritten by another part: list again
                self.store.forget_generations(entry.session_id)

    async def remove(self, entry: Entry, delete_files: Callable[[], _T], timeout: float = SETTLE_TIMEOUT_S) -> _T:
        """Purge: the session refuses every change from now on, changes already on their way end,
        its journal is closed, `delete_files` runs in the I/O pool with nothing else touching the
        session's files, and the session leaves the registry. If `delete_files` raises, the session
        is as it was."""
        entry.pending_state = None  # state_after(None, ...) refuses every change
        self._track(entry)
        self._state_changed()
        try:
            await asyncio.wait_for(entry._idle.wait(), timeout)
        except TimeoutError:
            pass  # a stuck write: its records are in files that are deleted now anyway
        async with entry._snapshot_lock, entry._io_lock:
            if entry._writer is not None:
                entry._writer.close()
                entry._writer = None
            try:
                result = await asyncio.get_running_loop().run_in_executor(self.pool, delete_files)
            except DocpilotError:
                entry.pending_state = state_name(entry.session.state) if entry.session is not None else None
                self._track(entry)
                entry.dirty = entry.session is not None
                self._state_changed()
                raise
            entry.session = None
            entry.dirty = False
        self.forget(entry.session_id)
        return result

    def forget(self, session_id: str) -> None:
        """The session leaves the registry (its files are gone, or it was never created)."""
        entry = self.entries.pop(session_id, None)
        self.store.forget_generations(session_id)
        if entry is not None:
            self._track(entry)
        if entry is not None and entry._writer is not None:
            entry._writer.close()
            entry._writer = None
        if entry is not None and self.feed is not None:
            self.feed.forgotten(session_id)
        self.degraded.pop(session_id, None)
        self._state_changed()

    async def rewrite(self, entry: Entry) -> None:
        """Write the snapshot from memory now, even when nothing changed (its file was damaged)."""
        entry.dirty = True
        await self.checkpoint(entry)

    def known_seq(self, ino: int) -> int | None:
        """The journal sequence of the snapshot or generation with this inode, when this run wrote,
        compressed or read it (what trimming goes by; the scrub's repair too)."""
        return self._seq_by_inode.get(ino)

    async def trim(self, entry: Entry) -> None:
        """Trim the session's journal now (its generations were removed by another part: the
        storage quota), as a checkpoint would after its snapshot."""
        if entry.checkpoint_seq < 0:
            return  # no snapshot of this run yet: the next checkpoint trims

        def trim() -> None:
            try:
                self._trim(entry, entry.checkpoint_seq)
            except (DocpilotError, OSError) as exc:  # harmless: the next checkpoint trims
                log.warning("session %s: journal not trimmed: %s", entry.session_id, exc)

        async with entry._snapshot_lock:
            await self.in_pool_exclusive(entry, trim)

    async def in_pool_exclusive(self, entry: Entry, fn: Callable[[], _T]) -> _T:
        """Run `fn` in the I/O pool while no change of the session is written."""
        async with entry._io_lock:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn)

    def _state_changed(self) -> None:
        if self.on_state_change is not None:
            self.on_state_change()

    def refuse_offline(self, session_id: str) -> None:
        """Raise SessionOffline when `session_id` (any spelling) names a session kept offline."""
        if self.offline:
            for sid in (session_id, canonical_uuid(session_id)):
                if sid in self.offline:
                    raise SessionOffline(
                        f"session {sid} is offline: a file of it is damaged ({self.offline[sid]}); its files are "
                        "left as they are: stop docpilotd, run 'docpilotd fsck --repair', and start it again")

    def new_entry(self, session_id: str) -> Entry:
        self.refuse_offline(session_id)  # never written over: its files wait for a repair
        entry = Entry(session_id, None, 0, None)  # not created yet: no summary until its first change applies
        entry.started_ns = time.time_ns()
        self.entries[session_id] = entry
        self._track(entry)
        return entry

    def _apply(self, entry: Entry, seq: int, change: Change) -> None:
        if isinstance(change, changes.Create):
            entry.session = changes.create(change)
        elif isinstance(change, changes.Replace):
            entry.session = change.session
            entry.capture_marks = None  # rebuilt from the replacement's commands when needed
            if not entry.started_ns:
                entry.started_ns = _started_ns(change.session)
        else:
            assert entry.session is not None
            entry.session = changes.apply(entry.session, change)
        entry.seq = seq
        entry.dirty = True
        entry.summary = summarize(entry.session)
        if not isinstance(change, _CONTENT_ONLY):
            self._latest_finished_known = False  # a stop or a replacement moves when it ended
        if self.feed is not None:
            self.feed.applied(entry, seq, change)
        if not isinstance(change, _CONTENT_ONLY) and self.on_state_change is not None:
            self.on_state_change()

    async def _flush_ready(self) -> None:
        """The flusher: every session with changes queued goes into one journal round (one
        hand-off to the writer, one report back, whatever the number of sessions); a session
        whose io_lock a checkpoint holds is left to a flush of its own that waits for it.
        Each session's records are applied and answered, in order, only once its round reported
        them written and fsynced; changes queued meanwhile go into the next round."""
        sync = self.config.durability == "always"
        try:
            while self._ready:
                ready, self._ready = self._ready, []
                taken: list[tuple[Entry, list[tuple[int, Change, asyncio.Future[None]]], bytes]] = []
                for entry in ready:
                    if not entry._queue:  # refused meanwhile (a failed write of its own flush)
                        self._flush_ended(entry)
                    elif entry._io_lock.locked():
                        self.tasks.spawn(self._flush(entry), name=f"flush {entry.session_id}")
                    else:
                        await entry._io_lock.acquire()  # free: taken without a pause
                        taken.append((entry, entry._queue, bytes(entry._pending_bytes)))
                        entry._queue, entry._pending_bytes = [], bytearray()
                if not taken:
                    continue
                try:
                    outcomes = await self.journal.submit(
                        [(functools.partial(self._append, entry, batch[0][0], data), sync) for entry, batch, data in taken]
                    )
                except BaseException:
                    for entry, _, _ in taken:
                        entry._io_lock.release()
                    raise
                for (entry, batch, data), error in zip(taken, outcomes, strict=True):
                    try:
                        self._written(entry, batch, data, error, sync)
                    finally:
                        entry._io_lock.release()
                    if error is None and entry._queue:
                        self._ready.append(entry)  # more came meanwhile: the next round
                    else:
                        self._flush_ended(entry)
        finally:
            self._flusher = None

    async def _flush(self, entry: Entry) -> None:
        """One session's own flush, for when its io_lock was held (a checkpoint's capture)."""
        sync = self.config.durability == "always"
        try:
            async with entry._io_lock:
                while entry._queue:
                    batch, data = entry._queue, bytes(entry._pending_bytes)
                    entry._queue, entry._pending_bytes = [], bytearray()
                    (error,) = await self.journal.submit([(functools.partial(self._append, entry, batch[0][0], data), sync)])
                    self._written(entry, batch, data, error, sync)
                    if error is not None:
                        return
        finally:
            self._flush_ended(entry)

    def _written(
        self, entry: Entry, batch: list[tuple[int, Change, asyncio.Future[None]]], data: bytes,
        error: BaseException | None, sync: bool,
    ) -> None:
        """A batch's round reported: apply and answer its changes in order, or refuse them all."""
        if error is not None:
            self._refuse(entry, batch, error if isinstance(error, DocpilotError) else StorageError(str(error)))
            return
        entry.journal_bytes += len(data)
        for seq, change, future in batch:
            self._apply(entry, seq, change)
            if not future.done():
                future.set_result(None)
        if not sync:
            self._schedule_sync(entry)

    def _flush_ended(self, entry: Entry) -> None:
        entry._flushing = False
        if not entry._queue:
            entry._idle.set()

    def _append(self, entry: Entry, first_seq: int, data: bytes) -> SegmentWriter:
        """In the journal writer's thread: append a batch (the writer fsyncs it); opens the
        segment on first use."""
        if entry._writer is None:
            writer = SegmentWriter(
                self.store.ops, self.store.layout.journal / journal.segment_name(entry.session_id, first_seq)
            )
            try:
                writer.open()
            except DocpilotError:
                if not self.restore_directories():  # journal/ removed by another program?
                    entry._dead_segments.append(writer.path)
                    raise
                writer = SegmentWriter(self.store.ops, writer.path)
                try:
                    writer.open()
                except DocpilotError:
                    entry._dead_segments.append(writer.path)
                    raise
            entry._writer = writer
            _note_segment(entry, first_seq, writer.path)
        entry._writer.write(data)
        return entry._writer

    def _refuse(self, entry: Entry, batch: list[tuple[int, Change, asyncio.Future[None]]], exc: DocpilotError) -> None:
        """A write or fsync failed: nothing queued is acknowledged; rebase before the next change."""
        waiting = batch + entry._queue
        entry._queue, entry._pending_bytes = [], bytearray()
        self._bury_writer(entry)
        entry.next_seq = entry.seq + 1
        entry.pending_state = state_name(entry.session.state) if entry.session is not None else None
        self._track(entry)
        entry._needs_rebase = str(exc)
        self.degraded[entry.session_id] = f"journal write failed: {exc}"
        log.error("session %s: journal write failed, %d change(s) refused: %s", entry.session_id, len(waiting), exc)
        error = exc if isinstance(exc, StorageError) else NotDurable(str(exc))
        for _, _, future in waiting:
            if not future.done():
                future.set_exception(type(error)(f"not saved: {error.message}"))
        if entry.session is None:  # the session was never created: forget it, and its Create
            self.entries.pop(entry.session_id, None)
            self._track(entry)
            for path in entry._dead_segments:
                try:
                    quarantine.move(self.store.ops, self.store.layout.quarantine, path, "journal of a refused new session")
                except (DocpilotError, OSError):
                    pass  # at worst the refused session reappears at the next start (its outcome was unknown)

    def _schedule_sync(self, entry: Entry) -> None:
        self._unsynced.add(entry.session_id)
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = self.tasks.spawn(self._sync_later(), name="batch sync")

    async def _sync_later(self) -> None:
        """Durability "batch": fsync every written segment within batch_window_ms."""
        await asyncio.sleep(self.config.batch_window_ms / 1000)
        ids, self._unsynced = self._unsynced, set()
        for session_id in ids:
            entry = self.entries.get(session_id)
            if entry is None or entry._writer is None:
                continue
            async with entry._io_lock:
                if entry._writer is None:
                    continue
                try:
                    await asyncio.get_running_loop().run_in_executor(self.pool, entry._writer.sync)
                except DocpilotError as exc:
                    self._bury_writer(entry)
                    entry._needs_rebase = str(exc)
                    self.degraded[session_id] = f"journal sync failed: {exc}"

    def _bury_writer(self, entry: Entry) -> None:
        """The current segment failed: close it and remember it for retirement at the rebase."""
        if entry._writer is not None:
            entry._dead_segments.append(entry._writer.path)
            entry._writer.close()
            entry._writer = None

    async def _rebase(self, entry: Entry) -> None:
        """After a failed write: snapshot from memory, retire the dead segment, start anew."""
        async with entry._snapshot_lock, entry._io_lock:
            if entry._needs_rebase is None:
                return
            self._bury_writer(entry)
            if entry.session is not None:
                entry.dirty = True
                # Raises if the disk still fails: the dead segments stay listed for the next try.
                await self._checkpoint_locked(entry, retire=list(entry._dead_segments))
            entry._dead_segments.clear()
            entry._needs_rebase = None
            self.degraded.pop(entry.session_id, None)
            log.info("session %s: journal rebased after an error", entry.session_id)

    # -- checkpoints ------------------------------------------------------------------------------

    async def checkpoint(self, entry: Entry) -> bool:
        """Write the snapshot of a changed session; returns whether one was written.

        The session keeps committing changes while its snapshot is encoded and written: io_lock is
        held only to capture the session at `seq` (pointer copies, on the loop) and to switch the
        journal to a new segment starting at seq + 1 (so the segments before it hold records up to
        `seq` only, which is what trimming assumes). The snapshot of 1..seq is then written beside
        the live journal; the old segments are trimmed only after it is durable. Until then the
        previous snapshot and every segment since it are intact, so a crash at any point recovers
        every acknowledged change. After a write error (rebase pending), everything happens under
        io_lock as one step."""
        loop = asyncio.get_running_loop()
        async with entry._snapshot_lock:
            async with entry._io_lock:
                if entry._needs_rebase is not None or entry._dead_segments:
                    return await self._checkpoint_locked(entry)
                if not entry.dirty or entry.session is None:
                    return False
                seq = entry.seq
                captured = snapshot.capture(entry.session)
                entry.policy = self.policy_for(entry.session)
                try:
                    await loop.run_in_executor(self.pool, self._next_segment, entry, seq)
                except DocpilotError as exc:
                    self._checkpoint_failed(entry, exc)
                    raise
            try:
                await loop.run_in_executor(self.pool, self._write_snapshot, entry, seq, captured)
            except DocpilotError as exc:
                self._checkpoint_failed(entry, exc)
                raise
            self._checkpoint_done(entry, seq)
            return True

    async def _checkpoint_locked(self, entry: Entry, retire: list[Path] | None = None) -> bool:
        """The whole checkpoint as one step, under io_lock (which the caller holds)."""
        if not entry.dirty or entry.session is None:
            return False
        seq = entry.seq
        # Captured on the loop, in pointer copies, at the instant the session holds exactly records
        # 1..seq; encoded in the I/O thread a chunk at a time, so a large session never holds the
        # loop (items are never mutated once appended: see storage.snapshot).
        captured = snapshot.capture(entry.session)
        entry.policy = self.policy_for(entry.session)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.pool, self._write_checkpoint, entry, seq, captured, retire)
        except DocpilotError as exc:
            self._checkpoint_failed(entry, exc)
            raise
        self._checkpoint_done(entry, seq)
        return True

    def _checkpoint_failed(self, entry: Entry, exc: DocpilotError) -> None:
        self.degraded[entry.session_id] = f"checkpoint failed: {exc}"
        log.error("session %s: checkpoint failed: %s", entry.session_id, exc)

    def _checkpoint_done(self, entry: Entry, seq: int) -> None:
        if entry.seq == seq:
            entry.dirty = False  # else changes committed meanwhile: the next checkpoint has them
        entry.checkpoint_seq = seq
        if entry._needs_rebase is None:
            self.degraded.pop(entry.session_id, None)
        if entry.session is not None and not is_live(entry.session) and not entry._queue and not entry.dirty:
            entry.session = None  # stopped and saved: its snapshot is the copy we serve from

    def _next_segment(self, entry: Entry, seq: int) -> None:
        """In the I/O pool, under io_lock: records after `seq` go to a new segment from now on."""
        path = self.store.layout.journal / journal.segment_name(entry.session_id, seq + 1)
        if entry._writer is not None and entry._writer.path == path:
            return  # nothing was written since the last switch (its snapshot write failed)
        writer = SegmentWriter(self.store.ops, path)
        writer.open()  # raises before anything changed
        _note_segment(entry, seq + 1, path)
        entry.journal_bytes = 0  # what the next snapshot will compact starts here
        old, entry._writer = entry._writer, writer
        if old is not None:
            old.close()

    def _save(self, entry: Entry, seq: int, captured: snapshot.Capture) -> SaveResult:
        """In the I/O pool: write the snapshot; a data directory another program removed is made
        again first (and watched again), so a `rm -rf sessions/` heals at the next save."""
        data = snapshot.encode_captured(captured, seq)
        try:
            result = self.store.save_encoded(entry.session_id, data, entry.policy)
        except DocpilotError:
            if not self.restore_directories():
                raise
            result = self.store.save_encoded(entry.session_id, data, entry.policy)
        # Generations compressed by this save are new files: their sequences by their new inodes.
        self._seq_by_inode.update(result.compressed)
        size = len(data) if isinstance(data, bytes) else sum(map(len, data))
        entry.snapshot_bytes, entry.snapshot_mono = size, time.monotonic()
        return result

    def restore_directories(self) -> bool:
        """Make the data directories that are missing again (0700); True when one was missing.
        Safe from any thread: the watcher is told through `on_directories_restored`."""
        layout = self.store.layout
        missing = [d for d in layout.data_dirs() if not os.path.isdir(d)]
        if not missing:
            return False
        try:
            layout.ensure()
        except (DocpilotError, OSError) as exc:
            log.error("cannot make the data directories again (%s): %s", ", ".join(str(m) for m in missing), exc)
            return False
        log.warning("made removed data directories again: %s", ", ".join(d.name for d in missing))
        if self.on_directories_restored is not None:
            self.on_directories_restored()
        return True

    def _write_snapshot(self, entry: Entry, seq: int, captured: snapshot.Capture) -> None:
        """In the I/O pool, beside the live journal: the snapshot of records 1..seq, then trim."""
        result = self._save(entry, seq, captured)
        # The next save hard-links this file into backups/: its inode then names a backup of `seq`.
        self._seq_by_inode[result.identity.ino] = seq
        try:
            self._trim(entry, seq)
        except (DocpilotError, OSError) as exc:
            # Harmless: an untrimmed segment only costs space; the next checkpoint trims it.
            log.warning("session %s: journal not trimmed: %s", entry.session_id, exc)

    def _write_checkpoint(self, entry: Entry, seq: int, captured: snapshot.Capture, retire: list[Path] | None) -> None:
        """In the I/O pool: snapshot, new segment, retire and trim old segments."""
        result = self._save(entry, seq, captured)
        # The next save hard-links this file into backups/: its inode then names a backup of `seq`.
        self._seq_by_inode[result.identity.ino] = seq
        for path in retire or ():
            entry._segments = None  # after an error: listed again at the trim
            if self.store.ops.exists(path):  # an earlier, partly successful rebase may have moved it
                quarantine.move(self.store.ops, self.store.layout.quarantine, path, "journal segment after a write error")
        old = entry._writer
        writer = SegmentWriter(self.store.ops, self.store.layout.journal / journal.segment_name(entry.session_id, seq + 1))
        writer.open()
        _note_segment(entry, seq + 1, writer.path)
        entry.journal_bytes = 0
        entry._writer = writer
        if old is not None:
            old.close()
        try:
            self._trim(entry, seq)
        except (DocpilotError, OSError) as exc:
            # Harmless: an untrimmed segment only costs space; the next checkpoint trims it.
            log.warning("session %s: journal not trimmed: %s", entry.session_id, exc)

    def _trim(self, entry: Entry, snapshot_seq: int) -> None:
        """Remove segments no retained copy needs: every record in them is at or below the
        sequence of the oldest retained backup (and of the snapshot). So recovery from the
        snapshot or from any retained backup always reaches the last acknowledged change.

        The backups are the ones the store keeps track of (`SessionStore.generations`), the
        segments the ones the engine does (Entry._segments), listed only when not known. Why a segment missing from that list is safe:
        a segment is removed when the next one listed starts at or below needed + 1; with one
        missing in between, the next listed starts later still, so its records, which end before
        the missing one's first, are at or below needed too, and the missing one is only kept."""
        session_id = entry.session_id
        seqs = [self._backup_seq(b.path) for b in self.store.generations(session_id)]
        if None in seqs:  # removed behind the store's back (quarantined by a repair): list again
            self.store.forget_generations(session_id)
        held = [seq for seq in seqs if seq is not None]
        # With no backup yet, the snapshot is the only copy: keep the whole journal, so that a
        # damaged snapshot can still be rebuilt from it.
        needed = min([snapshot_seq, *held]) if held else 0
        segments = entry._segments
        if segments is None:
            segments = journal.segments_of(self.store.ops, self.store.layout.journal, session_id)
        # Unlinks are not synced: a segment that a crash brings back holds only records at or
        # below the snapshot's sequence, which replay skips.
        kept: list[tuple[int, Path]] = []
        for (first, path), (next_first, _) in itertools.pairwise(segments):
            if next_first - 1 <= needed:
                try:
                    self.store.ops.unlink(path)
                    continue
                except FileNotFoundError:
                    continue
                except OSError:
                    pass
            kept.append((first, path))
        entry._segments = kept + segments[-1:]

    def _backup_seq(self, path: Path) -> int | None:
        """The last journal sequence the backup holds; None when it is gone, 0 when it cannot be
        examined (which keeps every segment)."""
        try:
            ino = self.store.ops.stat(path).st_ino
        except FileNotFoundError:
            return None
        except OSError:
            return 0
        if ino not in self._seq_by_inode:
            # From the file's last bytes: a backup written by an earlier run is not decoded (a
            # large one would hold the GIL, and so the loop, for a long time). A backup whose
            # middle is damaged but whose end is intact then counts with the sequence it claims,
            # as one with a checksum mismatch always did; it cannot be a source of recovery, and
            # every usable copy still finds the records it needs, since trimming keeps what the
            # oldest claimed sequence needs.
            self._seq_by_inode[ino] = self.store.read_seq(path)
        return self._seq_by_inode[ino]

    def due(self, entry: Entry, now: float) -> bool:
        """Whether autosave writes this changed session now (see Config.autosave_small_mb): a
        small one always; a large one once its journal since the snapshot is worth compacting
        (`autosave_growth` of the snapshot's size), or its snapshot is older than
        `autosave_max_age` or its backup policy's `schedule_seconds`, whichever is sooner (each
        checkpoint makes a generation: so a changing session gets one at least that often). So the bytes
        checkpoints write stay within 1/growth of the bytes recorded, whatever the session's size."""
        config = self.config
        if config.durability == "off":
            return True  # no journal: the snapshot is the only copy
        if entry.snapshot_bytes <= config.autosave_small_mb * 1024 * 1024:
            return True
        # The session's backup policy may ask for a generation sooner (its schedule_seconds).
        policy = self.policy_for(entry.session) if entry.session is not None else entry.policy
        schedule = policy.schedule_seconds if policy is not None and policy.schedule_seconds else config.autosave_max_age
        return (entry.journal_bytes >= config.autosave_growth * entry.snapshot_bytes
                or now - entry.snapshot_mono >= min(config.autosave_max_age, schedule))

    async def autosave(self) -> int:
        """The autosave job: checkpoint the changed sessions that are due (`due`)."""
        return await self.checkpoint_dirty(only_due=True)

    async def checkpoint_dirty(self, raise_failures: bool = False, only_due: bool = False) -> int:
        """Autosave: checkpoint every session that changed; returns how many were written.

        A failure is reported in status and the journal still holds every change; with
        `raise_failures` (an explicit `save`), the first error is raised once every session was
        tried, naming how many could not be saved."""
        written = 0
        failures: list[tuple[str, DocpilotError]] = []
        now = time.monotonic()
        for entry in list(self.entries.values()):
            if entry.dirty and entry.session is not None and (not only_due or self.due(entry, now)):
                try:
                    if await self.checkpoint(entry):
                        written += 1
                except DocpilotError as exc:
                    failures.append((entry.session_id, exc))
        if failures and raise_failures:
            session_id, first = failures[0]
            raise type(first)(
                f"{len(failures)} session(s) could not be saved ({session_id}: {first.message}); "
                f"{written} saved. Every change is still in the journal."
            )
        return written

    async def close(self) -> None:
        await self.tasks.wait_all()  # a flush in progress ends with its fsync and its replies
        for entry in self.entries.values():
            if entry._writer is not None:
                async with entry._io_lock:
                    if entry._writer is not None:
                        entry._writer.close()
                        entry._writer = None
        self.pool.shutdown(wait=True)

    def find_entries(self, predicate: Callable[[Entry], bool]) -> list[Entry]:
        return [e for e in self.entries.values() if predicate(e)]


def _note_segment(entry: Entry, first_seq: int, path: Path) -> None:
    """A segment the engine opened joins the session's known segments (when they are known)."""
    known = entry._segments
    if known is not None and (first_seq, path) not in known:
        entry._segments = sorted([*known, (first_seq, path)])


def _started_ns(session: Session) -> int:
    from ..domain import timestamps

    try:
        return timestamps.parse_ns(session.started_at or session.created_at)
    except timestamps.TimestampError:
        return 0
