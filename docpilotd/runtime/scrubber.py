"""The scheduled scrub: every `scrub_interval_days` (7; 0 never), an APScheduler job reads and
checks every retained generation and journal segment (storage/scrubbing.py) and repairs what it
can, without stalling the event loop.

Where the work runs: the listing and the checking in the default executor's thread (not the
engine's I/O pool, which checkpoints need), a batch of files at a time. Reading, CRC-32 and zstd
release the interpreter lock for all but the per-file bookkeeping, so the loop waits for it at
most a switch interval at a time, and the listing leaves nothing for the cyclic collector to walk
(see `scrubbing.Item`). Not in forked children as `fsck --scrub` does: forking a daemon that holds
many sessions copies its page tables holding the interpreter lock, and one thread already reads
at about the disk's rate (benchmarks/scrub.py). Repairs, rare, run one at a time, with the
session's files held
still (`Engine.files_held`: no checkpoint, rotation or trim meanwhile) and no change of it being
written (`Engine.in_pool_exclusive`). A session the engine does not serve (kept offline by
recovery, or only backups left) is reported and left to `docpilotd fsck --scrub --repair`.

When: the last scrub's summary is kept in the data root (`scrubbing.STATE_FILE`), so a daemon
restarted more often than the interval still scrubs: the next one is due one interval after the
last (at the earliest a minute after start, not competing with start-up); without a record, one
interval after start. `coalesce` and `max_instances=1`, as autosave: after a suspend, missed runs
are one run, and a scrub never overlaps the next. The last one shows in `status` (`last`).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .. import results
from ..domain import timestamps
from ..storage import scrubbing
from .engine import Engine

log = logging.getLogger("docpilotd.scrub")

DAY_S = 86_400.0
BATCH_FILES = 4096  # files per batch handed to the checkers: the stop is noticed between batches
FIRST_DELAY_S = 60.0


class Scrubber:
    def __init__(self, engine: Engine, interval_days: float) -> None:
        self.engine = engine
        self.interval_days = interval_days
        self.last: results.ScrubStatus | None = None
        self._scheduler = AsyncIOScheduler()
        self._stopping = False

    def start(self) -> None:
        store = self.engine.store
        saved = scrubbing.load_last(store.ops, store.layout)
        if saved is not None:
            self.last = _status(saved)
        self._schedule(saved)
        self._scheduler.start()

    def _schedule(self, saved: scrubbing.Last | None) -> None:
        if self.interval_days <= 0:
            return
        interval = self.interval_days * DAY_S
        now = time.time()
        due = now + interval
        if saved is not None:
            try:
                due = timestamps.parse_ns(saved.at) / 1e9 + interval
            except ValueError:
                pass
        due = max(due, now + min(interval, FIRST_DELAY_S))
        self._scheduler.add_job(
            self.run_once, "interval", seconds=interval, id="scrub", coalesce=True, max_instances=1,
            misfire_grace_time=None, next_run_time=datetime.datetime.fromtimestamp(due).astimezone(),
        )

    def reschedule(self, interval_days: float) -> None:
        self.interval_days = interval_days
        if self._scheduler.get_job("scrub") is not None:
            self._scheduler.remove_job("scrub")
        store = self.engine.store
        self._schedule(scrubbing.load_last(store.ops, store.layout))

    def stop(self) -> None:
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def run_once(self) -> scrubbing.Report:
        """One whole scrub, then its repairs; its summary is kept and shown by `status`."""
        loop = asyncio.get_running_loop()
        store = self.engine.store
        report = scrubbing.Report(started_at=timestamps.format_ns(time.time_ns()))
        started = time.perf_counter()
        items = await loop.run_in_executor(None, scrubbing.listing, store.ops, store.layout)
        for at in range(0, len(items), BATCH_FILES):
            if self._stopping:
                return report  # not a whole scrub: nothing recorded
            batch = items[at : at + BATCH_FILES]
            checked = await loop.run_in_executor(None, scrubbing.check, store.layout, batch)
            report.files += checked.files
            report.bytes += checked.bytes
            report.problems.extend(checked.problems)
        report.seconds = time.perf_counter() - started
        for problem in report.problems:
            await self._repair(problem)
            log.warning("scrub: %s", report.line(problem))
        summary = scrubbing.summary(report)
        self.last = _status(summary)
        try:
            await loop.run_in_executor(None, scrubbing.save_last, store.ops, store.layout, summary)
        except Exception as exc:  # only dates the next scrub
            log.warning("scrub: its summary was not kept: %s", exc)
        (log.warning if report.problems else log.info)("scrub: %s", report.totals())
        return report

    async def _repair(self, problem: scrubbing.Problem) -> None:
        engine = self.engine
        entry = engine.entries.get(problem.session_id)
        if problem.session_id in engine.offline:  # its files wait, as they are, for fsck --repair
            problem.action = "left as it is: the session is offline (recovery_damage = offline)"
            return
        if problem.kind == "segment" or entry is None:
            if entry is None and problem.kind == "generation":
                problem.action = "left for 'docpilotd fsck --scrub --repair' (a session the daemon does not serve)"
            else:
                scrubbing.repair(engine.store, problem)
            return
        # The engine knows the sequence of every generation it compressed or read, by inode: a
        # file whose own bytes no longer say it can still be rebuilt.
        def known_seq(path: Path) -> int | None:
            try:
                return engine.known_seq(os.stat(path).st_ino)
            except OSError:
                return None

        try:
            async with engine.files_held(entry):
                await engine.in_pool_exclusive(entry, lambda: scrubbing.repair(engine.store, problem, known_seq))
        except Exception as exc:  # a bug or an I/O error: reported, the scrub goes on
            problem.action = f"not repaired: {exc}"


def _status(last: scrubbing.Last) -> results.ScrubStatus:
    return {"at": last.at, "files": last.files, "bytes": last.bytes, "seconds": last.seconds,
            "problems": last.problems, "repaired": last.repaired}
