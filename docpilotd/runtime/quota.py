"""The storage quota (`max_storage_mb`): backups, journal and quarantine together stay under it
when they can, and the user is told when they cannot.

Checked after autosave, at most every `quota_check_interval` (a minute), in the I/O pool (the sizes
of the three directories' files, one `scandir` each). When over, generations are pruned down to
each session's policy minimum (`retention.minimum_plan`: its `keep_last` newest, at least the
newest), the oldest first across all sessions, until under; each removal runs with the session's
files held still (`Engine.in_pool_exclusive`), and the session's journal is trimmed after it
(segments only the removed generations needed). A session whose policy is not known (stopped,
not in memory) counts with the largest `keep_last` of any policy: never pruned below its own.

Never removed: the snapshot, the journal a kept copy needs, quarantine (evidence), anything of a
session's newest generation. Live data is never refused or dropped because of the quota. When
the minimums alone are over it, `state` says so (in `status`, `doctor`), the log says it once per
crossing, and the service manager's status line (`notify STATUS=`) names it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .. import results
from ..domain import retention
from ..errors import DocpilotError
from ..storage import backups
from . import notify
from .engine import Engine, Entry

log = logging.getLogger("docpilotd.quota")

MB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    backups: int
    journal: int
    quarantine: int

    @property
    def total(self) -> int:
        return self.backups + self.journal + self.quarantine


def _size_of(directory: Path) -> int:
    """Bytes of the regular files under `directory` (quarantine keeps subdirectories)."""
    total = 0
    try:
        with os.scandir(directory) as listing:
            for item in listing:
                try:
                    if item.is_file(follow_symlinks=False):
                        total += item.stat(follow_symlinks=False).st_size
                    elif item.is_dir(follow_symlinks=False):
                        total += _size_of(Path(item.path))
                except OSError:
                    continue  # gone meanwhile
    except OSError:
        return total
    return total


def measure(engine: Engine) -> Usage:
    layout = engine.store.layout
    return Usage(_size_of(layout.backups), _size_of(layout.journal), _size_of(layout.quarantine))


class Quota:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.state: results.StorageQuota | None = None
        self._last_check: float | None = None
        self._was_over = False

    async def maybe_check(self) -> None:
        """After autosave: check when the last check is `quota_check_interval` old (or there was none)."""
        now = time.monotonic()
        if self._last_check is None or now - self._last_check >= self.engine.config.quota_check_interval:
            self._last_check = now
            await self.check()

    async def check(self) -> results.StorageQuota | None:
        limit = int(self.engine.config.max_storage_mb * MB)
        if not limit:
            self.state = None
            return None
        loop_pool = self.engine.pool
        loop = asyncio.get_running_loop()
        usage = await loop.run_in_executor(loop_pool, measure, self.engine)
        pruned = 0
        if usage.total > limit:
            pruned = await self._prune(usage.total - limit)
            if pruned:
                usage = await loop.run_in_executor(loop_pool, measure, self.engine)
        over = usage.total > limit
        self.state = {
            "limit_mb": round(limit / MB, 3), "used_mb": round(usage.total / MB, 3),
            "backups_mb": round(usage.backups / MB, 3), "journal_mb": round(usage.journal / MB, 3),
            "quarantine_mb": round(usage.quarantine / MB, 3), "over": over, "pruned": pruned,
        }
        if over != self._was_over:
            self._was_over = over
            if over:
                log.warning("storage over its quota: %.1f MB used of %.1f MB (backups %.1f, journal %.1f, "
                            "quarantine %.1f) after pruning backups to each policy's minimum; nothing needed "
                            "for recovery was removed: raise max_storage_mb, or purge or clean up sessions",
                            usage.total / MB, limit / MB, usage.backups / MB, usage.journal / MB, usage.quarantine / MB)
                notify.send(f"STATUS=over storage quota: {usage.total / MB:.0f} MB of {limit / MB:.0f} MB")
            else:
                log.info("storage back under its quota: %.1f MB of %.1f MB", usage.total / MB, limit / MB)
                notify.send(f"STATUS=serving {len(self.engine.entries)} sessions")
        return self.state

    def _minimum_keep(self) -> retention.RetentionPolicy:
        """For a session whose policy is not known: the largest keep_last of any policy."""
        config = self.engine.config
        largest = max([config.retention.keep_last, *(p.keep_last for p in config.policies.values())])
        return retention.RetentionPolicy(keep_last=largest)

    async def _prune(self, excess: int) -> int:
        """Remove generations beyond each session's minimum, oldest first, until `excess` bytes are
        freed or none is left to remove; returns how many were removed."""
        loop = asyncio.get_running_loop()
        engine = self.engine
        unknown = self._minimum_keep()
        now = time.time_ns()

        def candidates() -> list[tuple[int, str, backups.Backup]]:
            found: list[tuple[int, str, backups.Backup]] = []
            for entry in list(engine.entries.values()):
                policy = engine.policy_for(entry.session) if entry.session is not None else (entry.policy or unknown)
                generations = engine.store.generations(entry.session_id)
                by_name = {g.name: g for g in generations}
                plan = retention.minimum_plan(
                    (retention.Generation(g.ns, True, g.name) for g in generations), policy, now)
                found.extend((g.ns, entry.session_id, by_name[g.name]) for g in plan.remove if g.name in by_name)
            return sorted(found, key=lambda item: item[0])

        freed = removed = 0
        touched: set[str] = set()
        for _, session_id, generation in await loop.run_in_executor(engine.pool, candidates):
            if freed >= excess:
                break
            entry = engine.entries.get(session_id)
            if entry is None:
                continue
            freed_here = await engine.in_pool_exclusive(entry, functools.partial(self._remove, entry, generation))
            if freed_here:
                freed += freed_here
                removed += 1
                touched.add(session_id)
        for session_id in touched:
            entry = engine.entries.get(session_id)
            if entry is not None:
                await engine.trim(entry)
        if removed:
            log.info("storage quota: removed %d old backup generation(s), %.1f MB", removed, freed / MB)
        return removed

    def _remove(self, entry: Entry, generation: backups.Backup) -> int:
        """In the pool, the session's files held: one generation removed; its bytes."""
        try:
            return self.engine.store.remove_generation(entry.session_id, generation)
        except DocpilotError as exc:
            log.warning("storage quota: cannot remove %s: %s", generation.name, exc)
            return 0
