"""Simulated power loss: crash the real engine at every file-system call, then recover.

The workload runs docpilotd's own engine and handlers (no daemon process, no threads: I/O runs
inline so a run is repeatable) over `ModelFileOps`. Several clients add annotations concurrently
(so group commit batches them) while checkpoints run in between. For a crash at call k, every
change the engine acknowledged before the machine died must be present after recovery, exactly
once, and nothing may appear that was never sent. Each crash point is resolved into many concrete
disk states (unsynced writes kept, dropped, cut short or garbled; unsynced directory changes
partly lost).

`explore()` prints and returns the figures; `mutation_check()` repeats the exploration with the
fsyncs of one source line turned into no-ops, for each line that fsyncs, and reports whether the
exploration notices (it must, for every line).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docpilotd import protocol as p
from docpilotd.config import Config
from docpilotd.errors import DocpilotError
from docpilotd.paths import Layout
from docpilotd.runtime.engine import Engine
from docpilotd.runtime.handlers import Context, annotate, start
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore

from .modelfs import ModelFileOps

logging.getLogger("docpilotd").setLevel(logging.CRITICAL)  # crashes are the point here

ROOT = Path("/model-root")
LAYOUT = Layout(root=ROOT, run_dir=ROOT / "run")


class InlineExecutor(concurrent.futures.Executor):
    """Runs submitted work at once, in the caller: a crash point is then one exact moment."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting coroutine, as a thread pool would
            future.set_exception(exc)
        return future


def new_ops() -> ModelFileOps:
    return ModelFileOps([LAYOUT.sessions, LAYOUT.backups, LAYOUT.journal, LAYOUT.quarantine, LAYOUT.spool])


@dataclass
class Outcome:
    sent: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    sessions_acked: set[str] = field(default_factory=set)
    calls: int = 0


async def _workload(engine: Engine, outcome: Outcome, clients: int, notes: int, checkpoint_every: int) -> None:
    ctx = Context(engine, None, 0)
    session_ids: list[str] = []
    for n in range(2):
        try:
            summary = await start(p.Start(description=f"session {n}", cwd="/w", shell="bash"), ctx)
        except DocpilotError:
            return
        session_ids.append(summary["id"])
        outcome.sessions_acked.add(summary["id"])

    async def client(index: int) -> None:
        for j in range(notes):
            text = f"client{index}-note{j}"
            outcome.sent.add(text)
            try:
                await annotate(p.Annotate(session=session_ids[index % 2], text=text), ctx)
            except DocpilotError:
                return  # the machine is gone (or the change refused): this client stops
            outcome.acked.add(text)
            await asyncio.sleep(0)

    async def checkpointer() -> None:
        for _ in range(clients * notes // checkpoint_every):
            for _ in range(checkpoint_every // clients or 1):
                await asyncio.sleep(0)
            try:
                await engine.checkpoint_dirty()
            except DocpilotError:
                return

    await asyncio.gather(*(client(i) for i in range(clients)), checkpointer())


def run_workload(
    crash_call: int | None = None,
    ignored_site: str | None = None,
    clients: int = 3,
    # 7 notes each: four checkpoints after the snapshots `start` writes, enough for a run in which
    # two generations in a row lose their unsynced data (what the snapshot fsync prevents).
    notes: int = 7,
    checkpoint_every: int = 5,
    backups_kept: int = 1,
) -> tuple[ModelFileOps, Outcome]:
    ops = new_ops()
    ops.ignored_site = ignored_site
    if crash_call is not None:
        ops.crash_at(crash_call)
    config = Config(durability="always", backups_kept=backups_kept)
    engine = Engine(config, SessionStore(LAYOUT, ops, backups_kept=backups_kept))
    engine.pool.shutdown()
    engine.pool = InlineExecutor()  # type: ignore[assignment]
    outcome = Outcome()
    asyncio.run(_workload(engine, outcome, clients, notes, checkpoint_every))
    outcome.calls = ops.calls
    return ops, outcome


@dataclass
class Violations:
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    sessions_lost: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.lost + self.duplicated + self.unexpected + self.sessions_lost


def check_state(state: ModelFileOps, outcome: Outcome, violations: Violations) -> None:
    """Recover from one post-crash disk state and compare with what was acknowledged; then
    again with every main snapshot destroyed as well (a crash followed by a damaged file): the
    retained backups and the journal alone must still reach every acknowledged change."""
    damaged = state.clone()
    _check_recovery(state, outcome, violations)
    sessions = damaged.dirs[LAYOUT.sessions]
    sessions.current.clear()
    sessions.durable.clear()
    _check_recovery(damaged, outcome, violations)


def _check_recovery(state: ModelFileOps, outcome: Outcome, violations: Violations) -> None:
    store = SessionStore(LAYOUT, state, backups_kept=1)
    _, recovered = recover_all(store, repair=True)
    seen: dict[str, int] = {}
    for found in recovered.values():
        for note in found.session.annotations:
            seen[note.text] = seen.get(note.text, 0) + 1
    for text in outcome.acked:
        if text not in seen:
            violations.lost += 1
            if len(violations.examples) < 5:
                violations.examples.append(f"lost {text}")
    for text, count in seen.items():
        if count > 1:
            violations.duplicated += count - 1
        if text not in outcome.sent:
            violations.unexpected += 1
    violations.sessions_lost += len(outcome.sessions_acked - set(recovered))


@dataclass
class Exploration:
    crash_points: int
    states: int
    acknowledged: int
    violations: Violations


def explore(states_per_point: int = 8, seed: int = 1, stride: int = 1, **workload: Any) -> Exploration:
    """Crash at every `stride`-th call of a full run; check `states_per_point` disk states each."""
    _, full = run_workload(**workload)
    rng = random.Random(seed)
    violations = Violations()
    states = acked = points = 0
    for call in range(1, full.calls + 2, stride):
        ops, outcome = run_workload(crash_call=call, **workload)
        points += 1
        acked += len(outcome.acked)
        for state in ops.crash_states(rng, states_per_point):
            check_state(state, outcome, violations)
            states += 1
    return Exploration(points, states, acked, violations)


def fsync_sites(**workload: Any) -> list[str]:
    ops, _ = run_workload(**workload)
    return sorted(ops.fsync_sites)


def mutation_check(states_per_point: int = 4, stride: int = 3, seed: int = 2, **workload: Any) -> dict[str, int]:
    """For each line that fsyncs: violations found with that line's fsyncs removed."""
    results: dict[str, int] = {}
    for site in fsync_sites(**workload):
        rng = random.Random(seed)
        violations = Violations()
        _, full = run_workload(ignored_site=site, **workload)
        for call in range(1, full.calls + 2, stride):
            ops, outcome = run_workload(crash_call=call, ignored_site=site, **workload)
            for state in ops.crash_states(rng, states_per_point):
                check_state(state, outcome, violations)
            if violations.total:
                break
        results[site] = violations.total
    return results
