"""The journal writer: one drain appends every session's queued records and fsyncs them.

Why: with a write and an fsync per session handed to a thread pool one at a time, every group
commit paid its own round trip between the event loop and a pool thread (futures, callbacks, a
wake-up each way), and sessions written at the same moment each paid it again. Here the loop hands
over batches, and one drain, running in a pool thread for as long as there is work, takes
everything handed over meanwhile, of every session: it appends each batch to its segment, fsyncs
each file touched once (several files side by side: the kernel commits concurrent fsyncs
together, 8 files in about half the time of one after the other here), and reports the whole round back to the loop with one call. The more the
daemon is asked, the larger each round, so the cost per change falls as load rises.

The drain runs on the engine's executor (asked for at each start, so a test that swaps in an
inline executor makes every write happen at one exact moment, as the power-loss suite needs).

Invariants:
- a submission's future is resolved only after each of its jobs was written and, if it asked for
  it, fsynced (the segment checked to still be the file at its path), or failed: an `ok` is never
  given early;
- if the write or the fsync of a file fails, every job that wrote to that file in the round gets
  the error (none of their records may be acknowledged); jobs on other files are not affected;
- jobs of one session are never reordered: the engine hands over a session's next batch only
  after the previous one was reported (its flusher holds the session's io_lock meanwhile);
- at most one drain runs at a time, and a job handed over is always taken by a drain (the flag
  `_draining` is cleared under the lock only when the drain found nothing left).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor

from ..errors import DocpilotError, StorageError
from ..storage.journal import SegmentWriter

log = logging.getLogger("docpilotd.journal")

# Appends one batch in the writer's thread and returns the segment it went to.
WriteJob = Callable[[], SegmentWriter]
# What a round reports for each job of a submission: None (written, and fsynced if asked) or the error.
Outcome = BaseException | None
_Submission = tuple[list[tuple[WriteJob, bool]], "asyncio.Future[list[Outcome]]", asyncio.AbstractEventLoop]


class JournalWriter:
    def __init__(self, executor: Callable[[], Executor]) -> None:
        self._executor = executor
        self._pending: list[_Submission] = []
        self._lock = threading.Lock()
        self._draining = False
        self.rounds = 0  # rounds written (how much batching happened: tests and benchmarks read it)
        self.jobs_written = 0

    def submit(self, jobs: list[tuple[WriteJob, bool]]) -> asyncio.Future[list[Outcome]]:
        """Hand batches to the writer (on the loop): (job, fsync it?) each. The future ends, once
        all of them were written in the same round, with one outcome per job, in order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Outcome]] = loop.create_future()
        with self._lock:
            self._pending.append((jobs, future, loop))
            start, self._draining = not self._draining, True
        if start:
            try:
                self._executor().submit(self._drain)
            except RuntimeError as exc:  # the executor is shut down: the daemon is stopping
                with self._lock:
                    pending, self._pending, self._draining = self._pending, [], False
                for submitted, waiting, _ in pending:
                    waiting.set_result([StorageError(f"journal not written: {exc}")] * len(submitted))
        return future

    def _drain(self) -> None:
        """In a pool thread: write rounds until nothing is left."""
        while True:
            with self._lock:
                pending, self._pending = self._pending, []
                if not pending:
                    self._draining = False
                    return
            jobs = [job for submitted, _, _ in pending for job in submitted]
            try:
                outcomes = self._write_round(jobs)
            except BaseException as exc:  # a bug: fail the round rather than hang its waiters
                log.exception("journal round failed unexpectedly")
                outcomes = [StorageError(f"journal write failed: {exc}")] * len(jobs)
            self.rounds += 1
            self.jobs_written += len(jobs)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[list[Outcome]], list[Outcome]]]] = {}
            at = 0
            for submitted, future, loop in pending:
                by_loop.setdefault(loop, []).append((future, outcomes[at : at + len(submitted)]))
                at += len(submitted)
            for loop, reported in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_report, reported)
                except RuntimeError:
                    pass  # that loop is closed: nobody waits for these any more

    def _write_round(self, jobs: list[tuple[WriteJob, bool]]) -> list[Outcome]:
        errors: dict[int, BaseException] = {}  # by job index
        to_sync: dict[int, tuple[SegmentWriter, list[int]]] = {}  # by id(writer)
        for index, (job, sync) in enumerate(jobs):
            try:
                writer = job()
            except DocpilotError as exc:
                errors[index] = exc
                continue
            if sync:
                to_sync.setdefault(id(writer), (writer, []))[1].append(index)
        pending = list(to_sync.values())
        failures: list[BaseException | None]
        if len(pending) <= 1:
            failures = [_sync(writer) for writer, _ in pending]
        else:
            # The first here, the others on the executor's free threads, all at once.
            others = [self._executor().submit(_sync, writer) for writer, _ in pending[1:]]
            failures = [_sync(pending[0][0]), *(f.result() for f in others)]
        for (_, indexes), failure in zip(pending, failures, strict=True):
            if failure is not None:
                for index in indexes:
                    errors[index] = failure
        return [errors.get(index) for index in range(len(jobs))]


def _sync(writer: SegmentWriter) -> BaseException | None:
    try:
        writer.sync()
    except DocpilotError as exc:
        return exc
    except Exception as exc:
        log.exception("journal fsync failed unexpectedly")
        return StorageError(f"journal fsync failed: {exc}")
    return None


def _report(reported: list[tuple[asyncio.Future[list[Outcome]], list[Outcome]]]) -> None:
    """On the loop: one call for a whole round."""
    for future, outcomes in reported:
        if not future.done():
            future.set_result(outcomes)
