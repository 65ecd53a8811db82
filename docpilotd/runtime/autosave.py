"""Autosave: an APScheduler interval job that checkpoints the sessions that changed.

`coalesce=True` and `max_instances=1`: after a suspend, missed runs collapse into one, and a slow
checkpoint never overlaps the next. `misfire_grace_time=None`: APScheduler's default of 1 s would
silently skip the run that was due while the laptop slept.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger("docpilotd.autosave")


class Autosave:
    def __init__(self, interval: float, job: Callable[[], Awaitable[int]]) -> None:
        self.interval = interval
        self._job = job
        self._scheduler = AsyncIOScheduler()

    async def _run(self) -> None:
        written = await self._job()
        if written:
            log.debug("autosave wrote %d session(s)", written)

    def start(self) -> None:
        self._scheduler.add_job(
            self._run, "interval", seconds=self.interval, id="autosave",
            coalesce=True, max_instances=1, misfire_grace_time=None,
        )
        self._scheduler.start()

    def reschedule(self, interval: float) -> None:
        self.interval = interval
        self._scheduler.reschedule_job("autosave", trigger="interval", seconds=interval)

    def stop(self) -> None:
        # wait=False: a running job is cancelled; the caller shields and runs the final flush itself.
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
