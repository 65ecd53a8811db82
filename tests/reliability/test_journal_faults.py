"""Write and fsync errors on the journal: never `ok` for an unsaved change, a clear error, a fresh
segment written from memory, degraded status until then, and nothing acknowledged lost.

The engine and handlers run in-process over the real file system, with `FaultyOps` failing the
chosen call (a real failing disk cannot be had on demand here)."""

from __future__ import annotations

import asyncio
import errno
import os

import pytest

from docpilotd import protocol as p
from docpilotd.config import Config
from docpilotd.errors import DiskFull, StorageError
from docpilotd.paths import Layout
from docpilotd.runtime.engine import Engine
from docpilotd.runtime.handlers import Context, annotate, start, status
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore

from ..storage.faults import FaultyOps


def _texts(layout: Layout) -> dict[str, list[str]]:
    """What a fresh daemon would recover from disk: annotation texts per session."""
    _, recovered = recover_all(SessionStore(layout), repair=False)
    return {sid: [a.text for a in r.session.annotations] for sid, r in recovered.items()}


async def _setup(layout: Layout) -> tuple[Engine, Context, FaultyOps, str]:
    ops = FaultyOps()
    engine = Engine(Config(durability="always"), SessionStore(layout, ops))
    ctx = Context(engine, None, 0)
    sid = (await start(p.Start(description="faults", cwd="/w", shell="bash"), ctx))["id"]
    await annotate(p.Annotate(session=sid, text="before"), ctx)
    return engine, ctx, ops, sid


@pytest.mark.parametrize("method", ["write", "fsync"])
def test_failed_journal_io_is_refused_then_rebased(layout: Layout, method: str) -> None:
    async def scenario() -> str:
        engine, ctx, ops, sid = await _setup(layout)
        ops.arm(method, at=1, error=errno.EIO)
        with pytest.raises(StorageError) as refused:
            await annotate(p.Annotate(session=sid, text="refused"), ctx)
        assert refused.value.code == "storage_error" and "not saved" in refused.value.message
        degraded = (await status(p.Status(session=sid), ctx))["daemon"]["degraded"]
        assert sid in degraded and "journal" in degraded[sid]
        ops.disarm()
        await annotate(p.Annotate(session=sid, text="after"), ctx)
        assert (await status(p.Status(session=sid), ctx))["daemon"]["degraded"] == {}
        # The dead segment went to quarantine: the refused record can never be replayed.
        assert any(q.name.endswith(".wal") for q in layout.quarantine.iterdir())
        assert [a.text for a in engine.entries[sid].session.annotations] == ["before", "after"]  # type: ignore[union-attr]
        await engine.close()
        return sid

    sid = asyncio.run(scenario())
    assert _texts(layout)[sid] == ["before", "after"]


def test_full_disk_refuses_changes_and_recovers_when_space_returns(layout: Layout) -> None:
    async def scenario() -> str:
        engine, ctx, ops, sid = await _setup(layout)
        ops.arm("write", at=1, error=errno.ENOSPC, persistent=True)
        for attempt in range(3):
            with pytest.raises(DiskFull) as refused:
                await annotate(p.Annotate(session=sid, text=f"while full {attempt}"), ctx)
            assert refused.value.code == "disk_full"
        assert sid in (await status(p.Status(), ctx))["daemon"]["degraded"]
        ops.disarm()  # space returns
        await annotate(p.Annotate(session=sid, text="space is back"), ctx)
        await engine.checkpoint_dirty()
        await annotate(p.Annotate(session=sid, text="after checkpoint"), ctx)
        await engine.close()
        return sid

    sid = asyncio.run(scenario())
    assert _texts(layout)[sid] == ["before", "space is back", "after checkpoint"]


def test_short_write_then_failure_is_not_acknowledged(layout: Layout) -> None:
    async def scenario() -> str:
        engine, ctx, ops, sid = await _setup(layout)
        ops.arm("write", at=1, short=True, error=errno.EIO, persistent=True)
        with pytest.raises(StorageError):
            await annotate(p.Annotate(session=sid, text="torn"), ctx)
        ops.disarm()
        await annotate(p.Annotate(session=sid, text="whole"), ctx)
        await engine.close()
        return sid

    sid = asyncio.run(scenario())
    assert _texts(layout)[sid] == ["before", "whole"]


def test_concurrent_changes_in_a_failed_batch_are_all_refused(layout: Layout) -> None:
    async def scenario() -> tuple[str, list[object]]:
        engine, ctx, ops, sid = await _setup(layout)
        ops.arm("fsync", at=1, error=errno.EIO)
        results = await asyncio.gather(
            *(annotate(p.Annotate(session=sid, text=f"batch {i}"), ctx) for i in range(5)), return_exceptions=True
        )
        ops.disarm()
        await annotate(p.Annotate(session=sid, text="after"), ctx)
        await engine.close()
        return sid, results

    sid, results = asyncio.run(scenario())
    acknowledged = [f"batch {i}" for i, r in enumerate(results) if not isinstance(r, BaseException)]
    assert any(isinstance(r, StorageError) for r in results)
    # Whatever was acknowledged is on disk; whatever was refused is not.
    assert _texts(layout)[sid] == ["before", *acknowledged, "after"]


def test_a_refused_record_never_returns_after_a_failed_rebase(layout: Layout) -> None:
    """fsync fails persistently: the change is refused, the rebase fails too; once the disk
    works, the rebase must still retire the segment holding the refused record, or the refused
    change would be replayed in place of the next acknowledged one (same sequence number)."""

    async def scenario() -> str:
        engine, ctx, ops, sid = await _setup(layout)
        ops.arm("fsync", at=1, error=errno.EIO, persistent=True)
        for text in ("refused-1", "refused-2"):
            with pytest.raises(StorageError):
                await annotate(p.Annotate(session=sid, text=text), ctx)
        ops.disarm()
        await annotate(p.Annotate(session=sid, text="accepted"), ctx)
        await engine.close()
        return sid

    sid = asyncio.run(scenario())
    assert _texts(layout)[sid] == ["before", "accepted"]


class _FailOneFile(FaultyOps):
    """Fails every fsync of the journal segments of one session (found by the descriptor's path)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: str | None = None

    def fsync(self, fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1]
        if self.failing is not None and name.startswith(self.failing) and name.endswith(".wal"):
            self._raise("fsync")
        super().fsync(fd)


def test_one_sessions_failed_fsync_in_a_shared_round_refuses_only_its_changes(layout: Layout) -> None:
    """Changes of many sessions go to the disk in the same round of the journal writer; a session
    whose file fails is refused, the others in that round are acknowledged and recovered."""

    async def scenario() -> tuple[str, list[str], dict[str, list[str]], float]:
        ops = _FailOneFile()
        engine = Engine(Config(durability="always"), SessionStore(layout, ops))
        ctx = Context(engine, None, 0)
        ids = [(await start(p.Start(description=f"s{i}", cwd="/w"), ctx))["id"] for i in range(6)]
        bad = ids[2]
        ops.failing = bad
        rounds, jobs = engine.journal.rounds, engine.journal.jobs_written

        async def note(sid: str, n: int) -> str | None:
            try:
                await annotate(p.Annotate(session=sid, text=f"{sid[:8]} {n}"), ctx)
            except StorageError:
                return None
            return f"{sid[:8]} {n}"

        results = await asyncio.gather(*(note(sid, n) for n in range(5) for sid in ids))
        batched = (engine.journal.jobs_written - jobs) / max(1, engine.journal.rounds - rounds)
        ops.failing = None
        await annotate(p.Annotate(session=bad, text="after"), ctx)  # rebased, accepted again
        await engine.close()
        acked = [r for r in results if r is not None]
        expected = {sid: [f"{sid[:8]} {n}" for n in range(5) if f"{sid[:8]} {n}" in acked] for sid in ids}
        expected[bad].append("after")
        return bad, acked, expected, batched

    bad, acked, expected, batched = asyncio.run(scenario())
    assert not [a for a in acked if a.startswith(bad[:8])], "a change of the failing session was acknowledged"
    assert len(acked) == 25, acked  # every note of the five other sessions was acknowledged
    assert batched > 1.5, f"the sessions' batches did not share rounds ({batched:.2f} per round)"
    recovered = _texts(layout)
    for sid, texts in expected.items():
        assert recovered[sid] == texts
