"""Background tasks the daemon owns: none is left unreferenced, none fails silently.

asyncio keeps only weak references to tasks, and an exception in a task nobody awaits is reported
only when (and if) the task is garbage collected. So every background task of the daemon is
started through a `TaskSet`: it holds the task until it ends, logs an exception the moment the
task ends with one, and lets shutdown cancel or await what is still running.

Invariants: a task is in the set exactly while it runs; `cancel_all` and `wait_all` return only
when every task that was in the set has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("docpilotd")


class TaskSet:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task %s failed", self.owner, task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait_all(self) -> None:
        """Let every running task finish (work that must not be cut short: journal flushes)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel_all(self) -> None:
        """Cancel every running task and wait until each has ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
