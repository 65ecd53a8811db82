"""The session a request without `--session` goes to, and the counts `status` shows, are kept up
to date as sessions start, pause, stop, are purged and restarted (not found by scanning every
session): after every step of random histories they equal what a scan of all sessions gives."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from docpilotd import protocol as p
from docpilotd.config import Config
from docpilotd.errors import DocpilotError, SessionNotFound
from docpilotd.paths import Layout
from docpilotd.runtime.engine import Engine, _recency
from docpilotd.runtime.handlers import Context, annotate, pause, purge, resume, start, status, stop
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore

LIVE = ("Active", "Paused")


def _scanned_default(engine: Engine) -> str | None:
    live = [e for e in engine.entries.values() if e.pending_state in LIVE]
    return max(live, key=lambda e: e.started_ns).session_id if live else None


def _scanned_latest(engine: Engine) -> str | None:
    known = [e for e in engine.entries.values() if e.summary is not None]
    return max(known, key=_recency).session_id if known else None


def _check(engine: Engine) -> None:
    try:
        chosen: str | None = engine.resolve(None).session_id
    except SessionNotFound:
        chosen = None
    assert chosen == _scanned_default(engine)
    try:
        latest: str | None = engine.resolve_latest(None).session_id
    except SessionNotFound:
        latest = None
    assert latest == _scanned_latest(engine)


async def _probe(engine: Engine, done: asyncio.Event) -> int:
    """Check at every turn of the loop, also while changes are queued and not yet applied."""
    turns = 0
    while not done.is_set():
        _check(engine)
        turns += 1
        await asyncio.sleep(0)
    return turns


async def _history(engine: Engine, ctx: Context, rng: random.Random, steps: int) -> int:
    checked = 0
    for step in range(0, steps, 2):
        done = asyncio.Event()
        probe = asyncio.ensure_future(_probe(engine, done))
        await asyncio.gather(_step(ctx, rng, step), _step(ctx, rng, step + 1))
        done.set()
        assert await probe > 0
        _check(engine)
        answer = await status(p.Status(), ctx)
        live = [e for e in engine.entries.values() if e.pending_state in LIVE and e.summary is not None]
        assert answer["daemon"]["live_sessions"] == len([e for e in engine.entries.values() if e.pending_state in LIVE])
        assert answer["daemon"]["sessions"] == len(engine.entries)
        assert [s["id"] for s in answer["live"]] == [e.session_id for e in sorted(live, key=lambda e: e.started_ns)]
        checked += 2
    return checked


async def _step(ctx: Context, rng: random.Random, step: int) -> None:
    ids = list(ctx.engine.entries)
    roll = rng.random()
    try:
        if not ids or roll < 0.2:
            await start(p.Start(description=f"s{step}", cwd="/w"), ctx)
        elif roll < 0.45:
            await annotate(p.Annotate(text=f"note {step}"), ctx)  # the default session
        elif roll < 0.55:
            await pause(p.Pause(session=rng.choice(ids)), ctx)
        elif roll < 0.65:
            await resume(p.Resume(session=rng.choice(ids)), ctx)
        elif roll < 0.85:
            await stop(p.Stop(session=rng.choice(ids)), ctx)
        else:
            await purge(p.Purge(session=rng.choice(ids), force=True), ctx)
    except DocpilotError:
        pass  # refused transitions are part of the history


@pytest.mark.parametrize("seed", range(3))
def test_default_session_and_counts_follow_every_change(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "home"
    layout = Layout(root=root, run_dir=root / "run")
    for directory in layout.data_dirs():
        directory.mkdir(parents=True, exist_ok=True)
    for _life in range(2):  # and again after a restart: what recovery adopts is tracked too
        engine = Engine(Config(durability="always"), SessionStore(layout))
        _, recovered = recover_all(engine.store, repair=True)
        engine.adopt(recovered)
        ctx = Context(engine, None, 0)

        async def life(engine: Engine = engine, ctx: Context = ctx) -> int:
            _check(engine)
            checked = await _history(engine, ctx, rng, 40)
            await engine.close()
            return checked

        assert asyncio.run(life()) == 40
