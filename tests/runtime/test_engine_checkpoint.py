"""A checkpoint does not hold up changes to its session, and loses none of them whenever it stops.

The engine runs in-process over the real file system; the snapshot write of a checkpoint is held
at a gate while changes to the same session are committed, then the data root is recovered as a
fresh daemon would (after a crash at that moment, and after the checkpoint finished).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from docpilotd import protocol as p
from docpilotd.config import Config
from docpilotd.paths import Layout
from docpilotd.runtime.engine import Engine, Entry
from docpilotd.runtime.handlers import Context, annotate, start
from docpilotd.storage import backups, journal, snapshot
from docpilotd.storage.fsops import OsFileOps
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.snapshot import Capture
from docpilotd.storage.store import SessionStore


def _layout(root: Path) -> Layout:
    layout = Layout(root=root, run_dir=root / "run")
    for directory in layout.data_dirs():
        directory.mkdir(parents=True, exist_ok=True)
    return layout


def _notes(root: Path) -> list[str]:
    _, recovered = recover_all(SessionStore(_layout(root)), repair=True)
    (found,) = recovered.values()
    return [a.text for a in found.session.annotations]


def test_changes_go_on_during_a_checkpoint_and_survive_a_crash_at_any_point(tmp_path: Path) -> None:
    root = tmp_path / "home"
    engine = Engine(Config(durability="always"), SessionStore(_layout(root)))
    ctx = Context(engine, None, 0)
    gate = threading.Event()
    writing = threading.Event()
    write_snapshot = engine._write_snapshot

    def gated(entry: Entry, seq: int, captured: Capture) -> None:
        writing.set()
        assert gate.wait(30)
        write_snapshot(entry, seq, captured)

    engine._write_snapshot = gated  # type: ignore[method-assign]

    async def scenario() -> dict[str, Any]:
        gate.set()  # start writes the first snapshot before it answers
        sid = (await start(p.Start(description="gated"), ctx))["id"]
        entry = engine.entries[sid]
        for i in range(3):
            await annotate(p.Annotate(session=sid, text=f"before {i}"), ctx)
        gate.set()
        await engine.checkpoint(entry)  # a first snapshot, so that a backup exists later
        gate.clear()
        writing.clear()
        for i in range(3):
            await annotate(p.Annotate(session=sid, text=f"captured {i}"), ctx)
        captured_seq = entry.seq
        checkpoint = asyncio.ensure_future(engine.checkpoint(entry))
        while not writing.is_set():
            await asyncio.sleep(0.001)
        # The snapshot write is held; changes to the same session are acknowledged meanwhile.
        for i in range(4):
            await annotate(p.Annotate(session=sid, text=f"during {i}"), ctx)
        assert not checkpoint.done()
        crashed_here = tmp_path / "crash-during"
        shutil.copytree(root, crashed_here)
        gate.set()
        assert await checkpoint
        return {"sid": sid, "entry": entry, "captured_seq": captured_seq, "crash": crashed_here}

    result = asyncio.run(scenario())
    engine.pool.shutdown(wait=True)
    expected = [f"before {i}" for i in range(3)] + [f"captured {i}" for i in range(3)] + [f"during {i}" for i in range(4)]
    entry: Entry = result["entry"]
    assert entry.dirty, "changes after the capture are not in this snapshot"
    written = snapshot.decode((root / "sessions" / f"{result['sid']}.json").read_bytes())
    assert written.seq == result["captured_seq"] and written.integrity == "verified"
    segments = journal.segments_of(SessionStore(_layout(root)).ops, root / "journal", result["sid"])
    assert segments[-1][0] == result["captured_seq"] + 1, "changes after the capture go to a segment of their own"
    assert _notes(result["crash"]) == expected  # killed while the snapshot was being written
    assert _notes(root) == expected  # killed after the checkpoint


class _CountingOps(OsFileOps):
    """Counts the listings of each directory."""

    def __init__(self) -> None:
        self.listed: Counter[str] = Counter()

    def listdir(self, path: Path) -> list[str]:
        self.listed[path.name] += 1
        return super().listdir(path)

    def list_kinds(self, path: Path) -> dict[str, str]:
        self.listed[path.name] += 1
        return super().list_kinds(path)


def test_checkpoints_list_neither_backups_nor_journal_once_the_session_is_known(tmp_path: Path) -> None:
    """With 100,000 sessions each listing of backups/ or journal/ is hundreds of thousands of
    names: a session's checkpoints keep track of its own files instead, and still trim."""
    root = tmp_path / "home"
    layout = _layout(root)
    for n in range(50):  # other sessions' files in the same directories
        (layout.backups / f"{n:08d}-0000-4000-8000-000000000000_1.000000000.json").write_text("{}")
        (layout.journal / f"{n:08d}-0000-4000-8000-000000000000.0000000000000001.wal").write_bytes(b"")
    ops = _CountingOps()
    engine = Engine(Config(durability="always", backups_kept=2), SessionStore(layout, ops, backups_kept=2))
    ctx = Context(engine, None, 0)

    async def scenario() -> str:
        sid = (await start(p.Start(description="listed once"), ctx))["id"]
        for round_ in range(2):
            await annotate(p.Annotate(session=sid, text=f"warm {round_}"), ctx)
            await engine.checkpoint(engine.entries[sid])
        ops.listed.clear()
        for round_ in range(5):
            await annotate(p.Annotate(session=sid, text=f"note {round_}"), ctx)
            assert await engine.checkpoint(engine.entries[sid])
        await engine.close()
        return sid

    sid = asyncio.run(scenario())
    assert ops.listed["backups"] == 0 and ops.listed["journal"] == 0, ops.listed
    assert len(backups.for_session(ops, layout.backups, sid)) == 2, "rotation still keeps backups_kept"
    segments = journal.segments_of(ops, layout.journal, sid)
    assert len(segments) <= 3, f"trimming still removes what no copy needs: {segments}"
    assert _notes(root) == [f"warm {i}" for i in range(2)] + [f"note {i}" for i in range(5)]
