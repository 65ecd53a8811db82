"""Start-up and shutdown order of the daemon.

Why this order: promise 3 says no request is served before recovery has finished, and promise 4
says one owner. So:

    start:  lock  ->  pid file (--detach)  ->  recovery (repair)  ->  engine adopts sessions,
            checkpoints what replay changed  ->  capture markers, the search index's feed, the shell
            spool read  ->  watcher  ->  autosave  ->  bind  ->  READY=1 to systemd  ->  the search
            index's thread (it compares the index with the sessions in the background)
    serve:  until SIGTERM or SIGINT (watchdog heartbeats meanwhile)
    shut down: as below

The lock comes first because binding would unlink a running daemon's socket; the pid file is
written only while holding it, so a refused second daemon never touches the first one's. The socket is bound
last, so a client that connects early finds no socket (and spools, or is told the daemon is not
running) instead of a socket that hangs during a long recovery.

Shutdown (SIGTERM/SIGINT): stop accepting, let in-flight requests finish, stop autosave, the
watcher and the spool's timers (their tasks are owned: see tasks.py), read the spool a last time,
final checkpoint of every changed session (shielded from cancellation), the search index's queue
written, let journal flushes end, close the journal, remove the pid file, release the lock. SIGHUP
re-reads the configuration: every setting but those config.RESTART_ONLY names (the data root, the
log file, the rescan interval).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import config as config_mod
from ..config import Config
from ..errors import DocpilotError
from ..paths import Layout, layout_for
from ..storage import spelling
from ..storage.lock import DataLock
from ..storage.recovery import recover_all
from ..storage.store import SessionStore
from . import activation, notify
from .autosave import Autosave
from .capture import Markers, Spool
from .engine import Engine
from .handlers import Context
from .quota import Quota
from .scrubber import Scrubber
from .search import Indexer
from .server import Server
from .watcher import Watcher

SWITCH_INTERVAL_S = 0.001
log = logging.getLogger("docpilotd")


class App:
    def __init__(self, config: Config, config_file: str | None = None, pid_file: Path | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.config = config
        self.config_file = config_file
        self.pid_file = pid_file
        self.on_ready = on_ready  # called once serving (`run --detach` tells the command that started it)
        self.layout: Layout = layout_for(config.home)
        self.lock = DataLock(self.layout.lock)
        self.stopping = asyncio.Event()
        self.engine: Engine | None = None
        self.server: Server | None = None
        self.watcher: Watcher | None = None
        self.autosave: Autosave | None = None
        self.scrubber: Scrubber | None = None
        self.spool: Spool | None = None
        self.indexer: Indexer | None = None

    async def run(self) -> int:
        # The loop shares the interpreter with threads that compute for a while (a checkpoint's
        # encoding, the search index): a request waiting for the loop waits for the interpreter
        # lock up to the switch interval each time it needs it, 5 ms by default. At 1 ms the
        # waits of requests during checkpoints of a 100,000-command session fell from p99 15-16
        # to 10 ms and max 59-74 to 28-44 ms (benchmarks/stall.py, side by side).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        """The three phases: start (lock, recovery, everything up to serving), serve (until
        SIGTERM or SIGINT), shut down (stop serving, final save)."""
        self.layout.ensure()
        self.lock.acquire()
        try:
            await self._start()
            await self._serve()
            await asyncio.shield(self._shutdown())
            return 0
        finally:
            if self.pid_file is not None:
                try:
                    self.pid_file.unlink()
                except OSError:
                    pass
            self.lock.release()

    async def _start(self) -> None:
        started = time.time_ns()
        # Before recovery: a SIGTERM or SIGHUP that arrives during a long recovery is kept for
        # later instead of killing the daemon with the default action.
        self._install_signals()
        # A socket passed by a service manager is taken over now and served only after recovery.
        inherited = activation.adopt_listening_socket(self.layout.socket)
        if self.pid_file is not None:
            _write_pid_file(self.pid_file)
        notify.send("STATUS=recovering")
        # Generations older than the newest are kept compressed (see storage.store).
        store = SessionStore(self.layout, backups_kept=self.config.retention.keep_last, compress_backups=True)
        loop = asyncio.get_running_loop()
        for line in await loop.run_in_executor(None, spelling.normalize, store, True):
            log.warning("recovery: %s", line)
        report, recovered = await loop.run_in_executor(None, lambda: recover_all(
            store, repair=True, prefer=self.config.recovery_prefer, damage=self.config.recovery_damage))
        self._log_recovery(report)
        engine = Engine(self.config, store)
        self.engine = engine
        engine.offline = {o.session_id: o.why for o in report.offline}  # refused by name, never adopted
        # What recovery loaded and the engine makes of it (an entry per session) lives as long as
        # the daemon and holds no reference cycles: the cyclic collector is kept off while it is
        # built (with 100,000 sessions, collections triggered by the allocations made adopting
        # them cost four times the work itself) and then freezes it out of its reach for good.
        # A live session of a million commands is lists of a million items, which every full
        # collection would walk (about 30 ms per 3 million items, more with the items' own
        # lists): a stall for whoever waited meanwhile. Reference counting still frees a session
        # that leaves memory.
        collecting = gc.isenabled()
        gc.disable()
        try:
            engine.adopt(recovered)
            changed = {s.session_id for s in report.sessions if s.replayed or s.status == "repaired"}
            await engine.settle_after_recovery(changed)
            gc.freeze()
        finally:
            if collecting:
                gc.enable()
        ctx = Context(engine, report, started)
        # Commands shells spooled while the daemon was down are part of recovery: ingested
        # before the socket serves anyone.
        markers = Markers(self.layout)
        engine.on_state_change = lambda: _sync_markers(markers, engine)
        _sync_markers(markers, engine)
        self.spool = Spool(engine, ctx.recorder, ctx.privacy)
        ctx.config_file = self.config_file
        ctx.spool = self.spool  # verbs read what was typed first; redact and purge remove spool files
        # The search index follows every change from here on; it is compared with the sessions
        # and built in its own thread once the daemon serves (never delaying readiness).
        self.indexer = Indexer(engine)
        self.indexer.attach()
        ctx.search = self.indexer
        spooled = await self.spool.ingest()
        if spooled:
            log.info("recovery: %d command(s) ingested from the shell spool", spooled)
        self.spool.start()
        self.watcher = Watcher(engine, self.config.rescan_interval, self.spool)
        self.watcher.start()
        engine.on_directories_restored = self.watcher.directories_restored_threadsafe
        quota = Quota(engine)
        ctx.quota = quota

        async def autosave_then_quota() -> int:
            written = await engine.autosave()
            try:
                await quota.maybe_check()
            except Exception:  # pragma: no cover - a bug; it must not stop autosave
                log.exception("storage quota check failed")
            return written

        self.autosave = Autosave(self.config.autosave_interval, autosave_then_quota)
        self.autosave.start()
        self.scrubber = Scrubber(engine, self.config.scrub_interval_days)
        self.scrubber.start()
        ctx.scrub = self.scrubber
        # An inherited socket's path belongs to the service manager: the server must not unlink it.
        self.server = Server(ctx, self.config.limits, self.layout.socket, owns_path=inherited is None)
        await self.server.start(sock=inherited)
        log.info(
            "ready: %d sessions (%d live) in %s, recovery %.0f ms, socket %s",
            len(engine.entries), len(engine.live_entries()),
            self.layout.root, report.duration_ms, self.layout.socket,
        )
        notify.send("READY=1", f"STATUS=serving {len(engine.entries)} sessions")
        self.indexer.start()
        if self.on_ready is not None:
            self.on_ready()

    async def _serve(self) -> None:
        heartbeat = notify.start_watchdog(asyncio.get_running_loop())
        await self.stopping.wait()
        if heartbeat is not None:
            heartbeat.cancel()
        notify.send("STOPPING=1")

    async def _shutdown(self) -> None:
        log.info("stopping: finishing requests and saving")
        if self.server is not None:
            await self.server.stop()
        if self.autosave is not None:
            self.autosave.stop()
        if self.scrubber is not None:
            self.scrubber.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        if self.spool is not None:
            await self.spool.close()
            try:
                await self.spool.ingest()  # what shells sent until now is kept before the final save
            except Exception:  # pragma: no cover - a bug; it must not stop the final save
                log.exception("final spool ingestion failed")
        if self.engine is not None:
            try:
                written = await self.engine.checkpoint_dirty()
                log.info("final save: %d session(s) written", written)
            except DocpilotError as exc:  # the journal still holds every acknowledged change
                log.error("final save failed: %s", exc)
            if self.indexer is not None:
                await self.indexer.stop()  # what it has queued is written; the rest at the next start
            await self.engine.close()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> None:
        """SIGHUP: take every setting that can change while running (config.reload_into says
        which), then tell the parts that keep a copy of one."""
        try:
            fresh = config_mod.load(self.config_file)
        except DocpilotError as exc:
            log.error("SIGHUP: configuration not reloaded: %s", exc)
            return
        changed, kept = config_mod.reload_into(self.config, fresh)
        for name in kept:
            log.warning("SIGHUP: %s cannot change while running; restart docpilotd for it", name)
        if "autosave_interval" in changed and self.autosave is not None:
            self.autosave.reschedule(self.config.autosave_interval)
        if "scrub_interval_days" in changed and self.scrubber is not None:
            self.scrubber.reschedule(self.config.scrub_interval_days)
        if self.engine is not None:
            self.engine.store.backups_kept = self.config.retention.keep_last
        if self.server is not None:
            self.server.limits = self.config.limits
        logging.getLogger("docpilotd").setLevel(self.config.log_level.upper())
        log.info("SIGHUP: configuration reloaded%s", f" ({', '.join(sorted(changed))} changed)" if changed else "")

    def _log_recovery(self, report: Any) -> None:
        for s in report.sessions:
            if s.problems or s.replayed:
                log.warning(
                    "recovery: session %s %s from %s, %d journal record(s) replayed%s",
                    s.session_id, s.status, s.source, s.replayed, "; " + "; ".join(s.problems) if s.problems else "",
                )
        for o in report.offline:
            log.warning("recovery: session %s kept offline, its files left as they are (%s); "
                        "'docpilotd fsck --repair' (daemon stopped) repairs it", o.session_id, o.why)
        log.info("recovery: %d session(s) in %.0f ms", len(report.sessions), report.duration_ms)


def _sync_markers(markers: Markers, engine: Engine) -> None:
    live = [(e.session_id, e.pending_state or "") for e in engine.live_entries()]
    try:
        current = engine.resolve(None)
    except DocpilotError:
        markers.sync(live, None)
        return
    markers.sync(live, (current.session_id, current.pending_state or ""))


def _write_pid_file(path: Path) -> None:
    """Replace the pid file (0600) with our pid; called only while holding the data lock."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
