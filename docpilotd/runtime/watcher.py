"""The watcher: notices when another program changes, tears or deletes a session file.

A watchdog Observer thread only hands file names to the event loop (`call_soon_threadsafe`); the
loop debounces them and checks each file against the identity (inode, size, mtime) of what the
daemon itself last wrote, so its own atomic replaces are never mistaken for foreign changes. A
periodic rescan repeats the check for every session, because inotify can overflow and watchdog
only logs that, never telling the handler.

What a foreign change leads to:
  - a live session (or one with unsaved changes): the file is rewritten from memory; whatever
    was there is kept (as a backup when valid, in quarantine when not);
  - a stopped session: a valid edit is accepted (journaled as a replacement and re-saved with a
    fresh checksum); a torn, damaged or deleted file is restored by recovery from backups and the
    journal, the damage kept in quarantine;
  - an unknown session file (copied in by hand): adopted when recovery finds it usable;
  - a session start-up recovery kept offline (recovery_damage = "offline"): left alone, never
    adopted or repaired behind recovery's back.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from ..domain import changes
from ..domain.model import is_live
from ..errors import DocpilotError
from ..storage import snapshot
from ..storage.recovery import recover_session
from ..storage.store import Identity
from .engine import Engine, Entry, summarize
from .tasks import TaskSet

if TYPE_CHECKING:
    from .capture.spool import Spool

log = logging.getLogger("docpilotd.watcher")
DEBOUNCE_S = 0.2
_READ_ONLY_EVENTS = frozenset({"opened", "closed_no_write"})


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _READ_ONLY_EVENTS:  # someone (often the daemon itself) only read it
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = raw.decode() if isinstance(raw, bytes) else raw
            if path.endswith(".json"):
                self.watcher.notify_threadsafe(Path(path).name[: -len(".json")])


class _SpoolHandler(FileSystemEventHandler):
    """A shell appended to its spool file: ingest soon (appends of a burst are coalesced)."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Only what a shell's append does: the daemon's own reads (opened, closed without
        # writing) would otherwise have it read the spool again every few milliseconds.
        if event.event_type not in ("modified", "created", "moved"):
            return
        raw = event.src_path
        path = raw.decode() if isinstance(raw, bytes) else raw
        if path.endswith(".jsonl"):
            self.watcher.spool_threadsafe()


class Watcher:
    def __init__(self, engine: Engine, rescan_interval: float, spool: Spool | None = None) -> None:
        self.engine = engine
        self.rescan_interval = rescan_interval
        self.spool = spool
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._pending: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks = TaskSet("watcher")
        self._watched: list[tuple[Path, FileSystemEventHandler]] = []
        self._watches: dict[Path, tuple[ObservedWatch, int | None]] = {}

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.baseline()
        observer = Observer()
        layout = self.engine.store.layout
        self._watched = [(layout.sessions, _Handler(self))]
        if self.spool is not None:
            self._watched.append((layout.spool, _SpoolHandler(self)))
        for directory, handler in self._watched:
            self._watches[directory] = (observer.schedule(handler, str(directory), recursive=False), _inode(directory))
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._tasks.spawn(self._rescan_forever(), name="rescan sessions")

    def baseline(self) -> None:
        """Remember the files recovery accepted as ours, so they are not taken for foreign ones."""
        store = self.engine.store
        for session_id in self.engine.entries:
            if store.written_identity(session_id) is None:
                try:
                    store.remember(session_id, Identity.of(store.ops.stat(store.layout.session_file(session_id))))
                except OSError:
                    self._pending.add(session_id)

    async def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            await asyncio.get_running_loop().run_in_executor(None, self._observer.join, 5)
        if self._timer is not None:
            self._timer.cancel()
        await self._tasks.cancel_all()

    def spool_threadsafe(self) -> None:
        if self.spool is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.spool.notify)

    def notify_threadsafe(self, session_id: str) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.notify, session_id)

    def notify(self, session_id: str) -> None:
        self._pending.add(session_id)
        if self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(DEBOUNCE_S, self._drain)

    def _drain(self) -> None:
        self._timer = None
        pending, self._pending = self._pending, set()
        assert self._loop is not None
        self._tasks.spawn(self._check_all(pending), name="check session files")

    async def _check_all(self, ids: set[str]) -> None:
        for session_id in sorted(ids):
            try:
                await self.check(session_id)
            except DocpilotError as exc:
                log.error("session %s: could not repair its file: %s", session_id, exc)
            except Exception:  # pragma: no cover - a bug; the watcher must keep watching
                log.exception("session %s: watcher check failed", session_id)

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.rescan_interval)
            await self.rescan()

    def rewatch(self) -> None:
        """Watch again a directory that was removed and made again (inotify watched the old one)."""
        if self._observer is None:
            return
        for directory, handler in self._watched:
            watch, inode = self._watches[directory]
            now = _inode(directory)
            if now is None or now == inode:
                continue
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError):
                pass  # the old watch went with its directory
            try:
                self._watches[directory] = (self._observer.schedule(handler, str(directory), recursive=False), now)
            except OSError as exc:
                log.error("cannot watch %s again: %s", directory, exc)
                continue
            log.warning("watching %s again (it was removed and made again)", directory)
            if directory == self.engine.store.layout.sessions:
                for session_id in self.engine.entries:
                    self.notify(session_id)  # their files went with it: write them again
            elif self.spool is not None:
                self.spool.notify()

    def directories_restored_threadsafe(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.rewatch)

    async def rescan(self) -> None:
        # A removed data directory is made again now rather than at the next save.
        self.engine.restore_directories()
        self.rewatch()
        if self.spool is not None:
            self.spool.notify()  # in case an inotify event was dropped
        store = self.engine.store
        ids = {sid for sid in self.engine.entries if not store.is_own_file(sid)}
        try:
            names = store.ops.listdir(store.layout.sessions)
        except OSError:
            names = []
        ids.update(n[: -len(".json")] for n in names if n.endswith(".json") and n[: -len(".json")] not in self.engine.entries)
        if ids:
            await self._check_all(ids)

    async def check(self, session_id: str) -> None:
        engine, store = self.engine, self.engine.store
        if store.is_own_file(session_id) or session_id in engine.offline:
            return  # an offline session's files wait, as they are, for a repair (storage/recovery)
        entry = engine.entries.get(session_id)
        loop = asyncio.get_running_loop()
        if entry is None:
            if not snapshot_name_ok(session_id):
                return
            _report, found = await loop.run_in_executor(
                engine.pool, lambda: recover_session(store, session_id, [], repair=True)
            )
            if found is not None and session_id not in engine.entries:
                engine.adopt({session_id: found})
                try:  # the file is now the one we hold: not a foreign change any more
                    store.remember(session_id, Identity.of(store.ops.stat(store.layout.session_file(session_id))))
                except OSError:
                    pass
                log.info("adopted session %s found in sessions/", session_id)
            return
        if entry.session is not None and (is_live(entry.session) or entry.dirty):
            log.warning("session %s: its file was changed by another program; rewriting it from memory", session_id)
            await engine.rewrite(entry)
            return
        await self._check_stopped(entry)

    async def _check_stopped(self, entry: Entry) -> None:
        engine, store = self.engine, self.engine.store
        loop = asyncio.get_running_loop()
        path = store.layout.session_file(entry.session_id)
        decoded = await loop.run_in_executor(engine.pool, store.read, path, entry.session_id)
        if decoded.session is not None and decoded.problem is None:
            # A valid edit: accept it, journaled like any change, and re-save it with a checksum.
            try:
                store.remember(entry.session_id, Identity.of(store.ops.stat(path)))
            except OSError:
                return
            edited = snapshot.plain_session(decoded.session)
            if decoded.integrity == "verified" and entry.session is None:
                engine.summary_changed(entry, summarize(edited))
                return  # e.g. a copy of one of our own files put back: nothing to rewrite
            await engine.commit(entry, changes.Replace(session=edited, reason="edited on disk", at=engine.stamp(entry)))
            await engine.checkpoint(entry)
            log.info("session %s: accepted an edit of its file", entry.session_id)
            return
        log.warning("session %s: its file is %s; restoring it", entry.session_id, decoded.problem or "damaged")
        _report, found = await engine.in_pool_exclusive(
            entry, lambda: recover_session(store, entry.session_id, [], repair=True)
        )
        if found is not None:
            engine.summary_changed(entry, summarize(found.session))


def _inode(directory: Path) -> int | None:
    try:
        return os.stat(directory).st_ino
    except OSError:
        return None


def snapshot_name_ok(session_id: str) -> bool:
    from ..domain.validate import is_uuid

    return is_uuid(session_id)
