"""Power loss over the model file system: nothing acknowledged is lost, and every fsync matters."""

from __future__ import annotations

import asyncio
import random

import msgspec
import pytest

from docpilotd import protocol as p
from docpilotd.config import Config
from docpilotd.errors import DocpilotError
from docpilotd.runtime.engine import Engine
from docpilotd.runtime.handlers import Context, annotate, pause, record, resume, start, stop
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.snapshot import encode_body
from docpilotd.storage.store import SessionStore

from . import powerloss
from .powerloss import LAYOUT, InlineExecutor, new_ops

# The lines that fsync on the acknowledgement and checkpoint paths. A new fsync elsewhere shows up
# in fsync_sites() and is checked automatically; one that disappears fails this test, on purpose.
EXPECTED_SITES = 5


def test_power_loss_at_every_call_loses_nothing_acknowledged() -> None:
    result = powerloss.explore(states_per_point=6)
    v = result.violations
    print(
        f"\npower loss: crash points {result.crash_points}, disk states {result.states}, "
        f"acknowledged changes checked {result.acknowledged}, lost {v.lost}, duplicated {v.duplicated}, "
        f"unexpected {v.unexpected}, sessions lost {v.sessions_lost}"
    )
    assert result.crash_points > 100 and result.states > 600
    assert result.acknowledged > 0
    assert v.total == 0, v.examples


def test_removing_any_single_fsync_is_caught() -> None:
    caught = powerloss.mutation_check(states_per_point=8, stride=1)
    print("\nfsync removed at -> violations found: " + ", ".join(f"{k}: {n}" for k, n in caught.items()))
    assert len(caught) >= EXPECTED_SITES
    missed = [site for site, found in caught.items() if found == 0]
    assert not missed, f"removing these fsyncs went unnoticed: {missed}"


# -- replay reproduces the live state, for random change sequences with crashes between them ----


def _engine(ops: object) -> Engine:
    engine = Engine(Config(durability="always", backups_kept=2), SessionStore(LAYOUT, ops, backups_kept=2))  # type: ignore[arg-type]
    engine.pool.shutdown()
    engine.pool = InlineExecutor()  # type: ignore[assignment]
    return engine


async def _random_changes(engine: Engine, rng: random.Random, steps: int) -> None:
    ctx = Context(engine, None, 0)
    live = [e.session_id for e in engine.entries.values() if e.pending_state in ("Active", "Paused")]
    for step in range(steps):
        roll = rng.random()
        try:
            if not live or roll < 0.08:
                summary = await start(p.Start(description=f"s{step}", cwd="/w", shell="zsh"), ctx)
                live.append(summary["id"])
                continue
            target = rng.choice(live)
            if roll < 0.5:
                await record(p.Record(session=target, command=f"cmd {step} ✓ | tee", exit_code=rng.choice([0, 1, 2, None]), cwd="/w"), ctx)
            elif roll < 0.75:
                await annotate(p.Annotate(session=target, text=f"note {step}", type=rng.choice(["note", "warning", "milestone"])), ctx)
            elif roll < 0.83:
                await pause(p.Pause(session=target), ctx)
            elif roll < 0.91:
                await resume(p.Resume(session=target), ctx)
            elif roll < 0.94:
                await stop(p.Stop(session=target), ctx)
                live.remove(target)
            else:
                await engine.checkpoint_dirty()
        except DocpilotError:
            pass  # refused transitions (record while paused...) are part of the sequence


def _state_of(engine: Engine) -> dict[str, bytes]:
    async def collect() -> dict[str, bytes]:
        return {sid: encode_body(await engine.full_session(e)) for sid, e in engine.entries.items() if "state" in e.summary}

    return asyncio.run(collect())


@pytest.mark.parametrize("seed", range(12))
def test_replay_reproduces_live_state_across_crashes(seed: int) -> None:
    rng = random.Random(seed)
    ops = new_ops()
    expected: dict[str, bytes] = {}
    for _ in range(4):  # four lives of the daemon, each ended by a crash
        engine = _engine(ops)
        report, recovered = recover_all(engine.store, repair=True)
        engine.adopt(recovered)
        assert _state_of(engine) == expected, "recovery did not reproduce the acknowledged state"
        asyncio.run(engine.settle_after_recovery({s.session_id for s in report.sessions if s.replayed}))
        asyncio.run(_random_changes(engine, rng, rng.randint(5, 40)))
        expected = _state_of(engine)
        # Power is cut: unsynced data is dropped or garbled at random.
        ops = next(ops.crash_states(rng, 1))
    engine = _engine(ops)
    _, recovered = recover_all(engine.store, repair=True)
    engine.adopt(recovered)
    assert _state_of(engine) == expected
    assert expected, "the sequence created no session at all"
    assert msgspec.json.decode(next(iter(expected.values())))["id"]
