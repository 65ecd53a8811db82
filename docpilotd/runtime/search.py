"""The daemon's search: the index kept up to date by a thread of its own, and the `search` request.

Why a thread: the index must follow every change without the durable path doing any of its work.
The engine tells the feed (`Indexer.applied`, on the loop, after a change is applied) and the feed
only puts it on a queue (about a microsecond); one thread, the only one that writes the index
(storage/search_index.py), takes what has gathered every BATCH_WINDOW_S (at once when a search or
the shutdown waits for it) and writes it in one transaction. The thread still shares the machine's
cores and the GIL with the loop: long windows keep its cost per change low (see BATCH_WINDOW_S).
Searches read the file in the engine's I/O pool, each with a connection of its own (WAL: readers
never wait for the writer).

The index is derived, so the thread makes it agree with the sessions rather than trusting it:
  - at start (after the daemon is ready, never before) it opens the file, made anew when missing,
    damaged or of another schema, and compares every session's mark (its last journal record and a
    fingerprint) with the engine's: the sessions that differ are "stale", those it no longer has
    are dropped. Stale sessions are indexed again a few at a time, oldest first, between batches
    of changes; while any remain, a search answers from what is indexed and says so (`complete`);
  - a change of a stale session is skipped (indexing it later takes the session as it then is);
    a change at or below a session's mark is already in (each is applied at most once); a
    `Replace` (restore, import, redact, an accepted edit of the file) indexes the session anew;
  - the file removed or replaced while running (checked every IDLE_S and before each batch), or a
    database error: the index is made anew and every session is stale again (a disk that keeps
    refusing is tried again every RETRY_S; searches say why meanwhile).

A session's content is captured on the loop (pointer copies of its lists: items are never mutated,
see domain.changes) or read from its snapshot by the thread when it is not in memory (a stopped,
saved session: its snapshot is all of it). `redact` and `purge` wait until the index holds no
trace of what they removed (`scrubbed`); `search` waits briefly until what was applied before it is
indexed (`caught_up`), so that a command just recorded is found.

Invariants: the loop never waits for the index except in `caught_up` (bounded) and `scrubbed`; only
the thread writes the file; a row is never added for a change the engine did not apply; a failure
of the index never reaches a change, only searches; a hit is shown only for a session the engine
has (one purged a moment ago is not, whatever the index still holds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .. import protocol as p
from .. import results
from ..domain import changes, timestamps
from ..domain.changes import Change
from ..domain.model import Annotation, CommandEntry
from ..errors import DocpilotError, SearchUnavailable, SessionNotFound, UsageError
from ..storage import search_index
from ..storage.search_index import Mark, Writer
from .engine import Engine, Entry

log = logging.getLogger("docpilotd.search")
# Changes gather this long before one transaction writes them, unless a search or the shutdown is
# waiting (`_hurry`). Each transaction costs the thread CPU beyond its rows (FTS5 writes a segment
# and merges), which the loop feels on a busy machine: at 10,000 changes/s on 2 cores, 20 ms
# windows raised the 99th percentile of a durable change from 1.1 to 4.5 ms; 250 ms windows leave
# it where it was (benchmarks/run.py --only throughput).
BATCH_WINDOW_S = 0.25
BATCH_MAX = 5000  # at most this many changes in one transaction
IDLE_S = 2.0  # an idle thread checks this often that the file is still in place
STALE_CHUNK = 16  # stale sessions captured on the loop in one call and written in one transaction
CATCH_UP_S = 1.0  # the longest a search waits for the changes applied before it
RETRY_S = 30.0  # after the index could not be made, the next try
# The index never takes the last of the disk from the sessions: below this much free space on the
# data root's file system it is deleted (it is derived) and made again once there is room.
MIN_FREE_BYTES = 64 * 1024 * 1024
LOOP_WAIT_S = 30.0
_T = TypeVar("_T")


@dataclass
class _Source:
    """A stale session's content at `mark`: lists captured on the loop, or None (its snapshot)."""

    mark: Mark
    commands: list[CommandEntry] | None
    annotations: list[Annotation] | None
    updated_at: str


class _Stop(Exception):
    pass


class Indexer:
    """The search index of a running daemon (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.path: Path = search_index.path_of(engine.store.layout)
        self._queue: queue.SimpleQueue[tuple[int, tuple[Any, ...]]] = queue.SimpleQueue()
        self._ticket = 0  # the last thing put on the queue (loop)
        self._done = 0  # the last thing written (loop, told by the thread)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._hurry = threading.Event()  # a search waits for what is queued: write it now
        # Read by the loop, written by the thread (single assignments).
        self.unindexed: int | None = None  # sessions not indexed yet; None until the first census
        self.problem: str | None = search_index.fts5_problem()  # why search cannot answer at all
        self.trouble: str | None = None  # why the index cannot be written now (searches still read it)
        # The thread's own.
        self._writer: Writer | None = None
        self._marks: dict[str, Mark] = {}
        self._stale: dict[str, str] = {}  # session id -> updated_at (oldest indexed first)
        # Rows replaced while indexing stale sessions: scrubbed once they are all done (one of
        # them may have been redacted by a change the index never saw before a crash).
        self._replaced = False
        self._taken = 0  # the last ticket taken off the queue

    # -- life ---------------------------------------------------------------------------------------

    def attach(self) -> None:
        """Follow the engine's changes from now on (before the spool is read at start-up)."""
        if self.problem is None:
            self.engine.feed = self
        else:
            log.error("%s: docpilot search is unavailable", self.problem)

    def start(self) -> None:
        """Start the thread (once the daemon serves: it never delays readiness)."""
        if self.problem is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="docpilotd-index", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Write what is queued, close the file (shutdown, after the final save)."""
        self.engine.feed = None
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._hurry.set()
        self._put(("wake",))
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 10.0)
        if thread.is_alive():
            log.warning("search index: still writing at shutdown; the next start completes it")
        for _, future in self._waiters:
            if not future.done():
                future.set_result(None)

    # -- the feed (on the loop) --------------------------------------------------------------------------

    def applied(self, entry: Entry, seq: int, change: Change) -> None:
        lists = None
        if isinstance(change, changes.Replace):  # the lists as they are now: later changes append to them
            lists = (list(change.session.commands), list(change.session.annotations))
        self._put(("apply", entry.session_id, seq, change, entry.summary, lists))

    def adopted(self, entry: Entry) -> None:
        if entry.summary is not None:
            self._put(("stale", entry.session_id, entry.summary["updated_at"]))

    def forgotten(self, session_id: str) -> None:
        self._put(("drop", session_id))

    def _put(self, item: tuple[Any, ...]) -> None:
        self._ticket += 1
        self._queue.put((self._ticket, item))

    # -- waiting for the thread (on the loop) -----------------------------------------------------------

    async def caught_up(self, timeout: float = CATCH_UP_S) -> bool:
        """Wait (at most `timeout`) until everything queued before now is written; whether it is."""
        if self._thread is None or not self._thread.is_alive() or self._done >= self._ticket:
            return True
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((self._ticket, future))
        self._hurry.set()
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True

    async def scrubbed(self, timeout: float = 120.0) -> None:
        """Wait until the index holds no trace of anything removed before now (redact, purge)."""
        if self._thread is None or not self._thread.is_alive():
            return
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._put(("scrub", future))
        self._hurry.set()
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            log.warning("search index: not scrubbed within %.0f s; it is scrubbed when the thread gets to it", timeout)

    def _written(self, ticket: int) -> None:
        """On the loop: everything up to `ticket` is in the index."""
        self._done = max(self._done, ticket)
        keep = []
        for wanted, future in self._waiters:
            if wanted <= self._done:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((wanted, future))
        self._waiters = keep

    # -- the request -----------------------------------------------------------------------------------

    async def search(self, req: p.Search) -> results.Search:
        engine = self.engine
        text = req.text.strip()
        if not text:
            raise UsageError("search needs the text to look for")
        found_words = search_index.words(text)
        if not found_words:
            raise UsageError(f"nothing to look for in {text[:80]!r}: search finds words and numbers "
                             "(punctuation is ignored)")
        since_ns = None
        if req.since:
            try:
                since_ns = timestamps.parse_ns(req.since)
            except timestamps.TimestampError:
                raise UsageError(f"--since needs an RFC 3339 time (the client turns 2d, 3h or a date into one), "
                                 f"not {req.since[:60]!r}") from None
        directory = None
        if req.dir:
            if not req.dir.startswith("/"):
                raise UsageError("--dir needs an absolute directory (the client resolves it)")
            directory = "/" + os.path.normpath(req.dir).lstrip("/")
        session_id = None
        if req.session:
            entry = engine.resolve(req.session)
            if entry.summary is None:
                raise SessionNotFound(f"no session {req.session!r}")
            session_id = entry.session_id
        if self.problem is not None:
            raise SearchUnavailable(self.problem)
        current = await self.caught_up()
        query = search_index.Query(found_words, req.failed, since_ns, directory, session_id, req.limit)
        entries = engine.entries

        def keep(sid: str) -> bool:
            entry = entries.get(sid)
            return entry is not None and entry.summary is not None

        loop = asyncio.get_running_loop()
        found: search_index.Found = await loop.run_in_executor(engine.pool, search_index.search, self.path, query, keep)
        if not found.usable:
            self._put(("check",))  # the thread looks at the file now rather than at its next idle check
            if self.trouble is not None:
                raise SearchUnavailable(f"the search index cannot be used: {self.trouble}")
        hits: list[results.SearchHit] = []
        for row in found.rows:
            owner = entries.get(row.session)
            if owner is None or owner.summary is None:
                continue
            hits.append(_hit(row, owner.summary["description"]))
        unindexed = self.unindexed
        pending = len(entries) if unindexed is None else unindexed
        complete = found.usable and unindexed == 0 and self.trouble is None and current
        return {"hits": hits, "more": found.more, "complete": complete, "unindexed": pending}

    # -- the thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        last_failure = -RETRY_S
        try:
            while not self._stopping.is_set():
                try:
                    self._open()
                    self._census()
                    # What was taken before (a batch a failure cut short) is covered by the census.
                    self._tell_written(self._taken)
                    self._serve()
                except _Stop:
                    return
                except Exception as exc:  # a database error, a file removed, a disk that refuses: made anew
                    self.trouble = str(exc) or type(exc).__name__
                    log.warning("search index: %s; making it anew", self.trouble,
                                exc_info=not isinstance(exc, (DocpilotError, OSError, sqlite3.Error)))
                    self._close(remove=True)
                    self.unindexed = None
                    # At once the first time; again within RETRY_S (a disk that keeps refusing), after RETRY_S.
                    now = time.monotonic()
                    delay, last_failure = (RETRY_S if now - last_failure < RETRY_S else 0.0), now
                    if self._stopping.wait(delay):
                        return
        finally:
            self._close(remove=False)

    def _open(self) -> None:
        self._check_room()
        writer, why = Writer.open(self.path)
        self._writer = writer
        if why is not None and why != "missing":
            log.warning("search index %s: %s; building it anew from the sessions", self.path, why)
        elif why == "missing":
            log.info("search index %s: building it from the sessions", self.path)
        self.trouble = None

    def _close(self, remove: bool) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.rollback()
                writer.close()
            except Exception:  # closing a damaged file: nothing more to do
                pass
        if remove:
            try:
                search_index.remove_files(self.path)
            except OSError:
                pass

    def _on_loop(self, fn: Callable[[], _T]) -> _T:
        """Run `fn` on the event loop and wait for its result (the engine's state is the loop's)."""
        assert self._loop is not None
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiting thread
                future.set_exception(exc)

        try:
            self._loop.call_soon_threadsafe(call)
        except RuntimeError:  # the loop is closed: the daemon is going away
            raise _Stop() from None
        while True:
            try:
                return future.result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                if self._stopping.is_set():
                    raise _Stop() from None

    def _census(self) -> None:
        """Which sessions the index does not reflect (stale) and which it holds no longer."""
        assert self._writer is not None
        engine = self.engine

        def marks() -> list[tuple[str, int, results.SessionSummary]]:
            # Only references on the loop (a summary is replaced, never changed): marks are made here.
            return [(sid, e.seq, e.summary) for sid, e in engine.entries.items() if e.summary is not None]

        known = [(sid, search_index.summary_mark(summary, seq), summary["updated_at"])
                 for sid, seq, summary in self._on_loop(marks)]
        self._marks = self._writer.marks()
        self._stale = {sid: updated for sid, mark, updated in known if self._marks.get(sid) != mark}
        gone = set(self._marks) - {sid for sid, _, _ in known}
        if gone:
            self._writer.begin()
            for sid in gone:
                self._writer.drop_session(sid)
                self._marks.pop(sid, None)
            self._writer.commit()
        self.unindexed = len(self._stale)
        if self._stale:
            log.info("search index: %d of %d session(s) to index", len(self._stale), len(known))

    def _serve(self) -> None:
        while True:
            if self._stopping.is_set():
                self._drain()
                raise _Stop()
            batch = self._take(wait=not self._stale)
            if batch:
                self._write(batch)
            elif self._stale:
                self._index_stale()
            else:
                self._check_in_place()

    def _take(self, wait: bool) -> list[tuple[int, tuple[Any, ...]]]:
        batch: list[tuple[int, tuple[Any, ...]]] = []
        try:
            batch.append(self._queue.get(timeout=IDLE_S) if wait else self._queue.get_nowait())
        except queue.Empty:
            return batch
        if wait and not self._stopping.is_set():  # (while sessions are being indexed, at once)
            self._hurry.wait(BATCH_WINDOW_S)  # let what comes together be written together
        self._hurry.clear()
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._taken = batch[-1][0]
        return batch

    def _check_in_place(self) -> None:
        assert self._writer is not None
        if not self._writer.in_place():
            raise OSError(f"{self.path} was removed or replaced")
        self._check_room()

    def _check_room(self) -> None:
        try:
            st = os.statvfs(self.engine.store.layout.root)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        if free < MIN_FREE_BYTES:
            raise OSError(f"only {free / 2**20:.0f} MB free on the data root's disk: the search index waits for "
                          f"{MIN_FREE_BYTES // 2**20} MB (the sessions need the space more)")

    def _write(self, batch: list[tuple[int, tuple[Any, ...]]]) -> None:
        writer = self._writer
        assert writer is not None
        self._check_in_place()
        scrubs: list[concurrent.futures.Future[None]] = []
        marks: dict[str, Mark] = {}  # the sessions' marks after this batch, written once each
        writer.begin()
        try:
            for _, item in batch:
                kind = item[0]
                if kind == "apply":
                    self._apply(writer, marks, *item[1:])
                elif kind == "drop":
                    self._stale.pop(item[1], None)
                    self._marks.pop(item[1], None)
                    marks.pop(item[1], None)
                    writer.drop_session(item[1])
                elif kind == "stale":
                    self._stale[item[1]] = item[2]
                elif kind == "scrub":
                    scrubs.append(item[1])
            writer.set_marks(marks)
            writer.commit()
        except BaseException:
            writer.rollback()
            for future in scrubs:
                _resolve(future)  # the index is made anew: nothing of it is left
            raise
        if scrubs:
            try:
                writer.scrub()
            finally:
                for future in scrubs:
                    _resolve(future)
        self.unindexed = len(self._stale)
        self._tell_written(batch[-1][0])

    def _tell_written(self, ticket: int) -> None:
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._written, ticket)
            except RuntimeError:  # the loop is closed
                pass

    def _apply(self, writer: Writer, marks: dict[str, Mark], session_id: str, seq: int, change: Change,
               summary: results.SessionSummary, lists: tuple[list[CommandEntry], list[Annotation]] | None) -> None:
        mark = search_index.summary_mark(summary, seq)
        if lists is not None:  # a Replace: the whole session as it was at `seq`
            self._stale.pop(session_id, None)
            marks.pop(session_id, None)
            writer.put_session(session_id, mark, lists[0], lists[1])
            self._marks[session_id] = mark
            return
        if session_id in self._stale:
            return  # indexed later, as it then is
        known = self._marks.get(session_id)
        if known is not None and seq <= known.seq:
            return  # already in
        if isinstance(change, changes.RecordCommand):
            writer.add_commands(session_id, [change.entry])
        elif isinstance(change, changes.Annotate):
            writer.add_annotation(session_id, change.annotation)
        elif isinstance(change, changes.EditAnnotation):
            writer.edit_annotation(session_id, change.annotation_id, change.text, change.annotation_type)
        elif isinstance(change, changes.DeleteAnnotation):
            writer.delete_annotation(session_id, change.annotation_id)
        marks[session_id] = self._marks[session_id] = mark

    def _index_stale(self) -> None:
        """Index a few stale sessions (oldest first) in one transaction."""
        writer = self._writer
        assert writer is not None
        self._check_in_place()
        # Oldest first: their rows' keys are the lowest, so they go in at the end of the file's
        # b-trees, which stay compact (newest first left pages a third empty: twice the file).
        chosen = sorted(self._stale, key=self._stale.__getitem__)[:STALE_CHUNK]
        engine = self.engine

        def capture() -> list[_Source | None]:
            captured: list[_Source | None] = []
            for sid in chosen:
                entry = engine.entries.get(sid)
                if entry is None or entry.summary is None:
                    captured.append(None)
                    continue
                mark = search_index.summary_mark(entry.summary, entry.seq)
                session = entry.session
                if session is None:
                    captured.append(_Source(mark, None, None, entry.summary["updated_at"]))
                else:
                    captured.append(_Source(mark, list(session.commands), list(session.annotations),
                                            entry.summary["updated_at"]))
            return captured

        sources = self._on_loop(capture)
        writer.begin()
        try:
            for sid, source in zip(chosen, sources):
                if sid not in self._stale:
                    continue  # a change in the queue meanwhile (a Replace, a purge) already settled it
                del self._stale[sid]
                if source is None:
                    writer.drop_session(sid)
                    self._marks.pop(sid, None)
                    continue
                if source.commands is None or source.annotations is None:
                    loaded = self._load(sid)
                    if loaded is None:
                        continue  # unreadable now: the next start tries again (its mark still differs)
                    mark, commands, annotations = loaded
                else:
                    mark, commands, annotations = source.mark, source.commands, source.annotations
                self._replaced = self._replaced or sid in self._marks
                writer.put_session(sid, mark, commands, annotations)
                self._marks[sid] = mark
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        if not self._stale:
            if self._replaced:
                writer.scrub()
                self._replaced = False
            log.info("search index: every session indexed")
        self.unindexed = len(self._stale)

    def _load(self, session_id: str) -> tuple[Mark, list[CommandEntry], list[Annotation]] | None:
        store = self.engine.store
        decoded = store.read(store.layout.session_file(session_id), session_id)
        if not decoded.usable or decoded.session is None:
            problem = decoded.problem or "unreadable"
            log.info("search index: session %s not indexed now: %s", session_id,
                     problem if len(problem) <= 200 else problem[:200] + "...")
            return None
        session = decoded.session
        return search_index.session_mark(session, decoded.seq), session.commands, session.annotations

    def _drain(self) -> None:
        """Shutdown: what is queued is written (a stale session stays stale for the next start)."""
        batch: list[tuple[int, tuple[Any, ...]]] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if batch and self._writer is not None:
            try:
                self._write(batch)
            except Exception as exc:  # the next start finds the marks behind
                log.warning("search index: last changes not written: %s", exc)


def _resolve(future: concurrent.futures.Future[None]) -> None:
    if not future.done():
        try:
            future.set_result(None)
        except concurrent.futures.InvalidStateError:  # cancelled meanwhile (its waiter gave up)
            pass


def _hit(row: search_index.Row, description: str) -> results.SearchHit:
    hit: results.SearchHit = {
        "session": row.session, "description": description, "kind": row.kind, "timestamp": row.timestamp,
        "text": row.text, "match": row.match,
    }
    if row.kind == "command":
        hit["directory"] = row.directory or ""
        hit["exit_code"] = row.exit_code
        if row.snippet is not None:
            hit["snippet"] = row.snippet
    else:
        hit["annotation_type"] = row.annotation_type  # type: ignore[typeddict-item]  # one of the four
        hit["annotation_id"] = row.annotation_id or ""
    return hit
