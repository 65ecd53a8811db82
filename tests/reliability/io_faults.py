"""Injected I/O errors at each file-system call, once and persistently, and a real full disk.

In-process part: the engine and handlers run over the real file system through `FaultyOps`, which
fails the N-th call of one method with EIO, ENOSPC or EROFS, or makes a write short. For every
method and N, once and persistently, a workload of annotations and checkpoints runs through the
fault, the fault is lifted, and the workload goes on. Figures: crashes (any exception that is not
a DocpilotError escaping to a client), acknowledgements of changes that are not on disk after a
fresh recovery, and runs that never recovered after the fault was lifted.

Real part: a real daemon on a 2 MB tmpfs filled to the last byte (needs root to mount; skipped
with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from docpilotd import protocol as p
from docpilotd.config import Config
from docpilotd.errors import DocpilotError
from docpilotd.paths import layout_for
from docpilotd.runtime.engine import Engine
from docpilotd.runtime.handlers import Context, annotate, start
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore

from ..storage.faults import FAULTABLE, FaultyOps
from .kill9 import DaemonProcess, request
from .powerloss import InlineExecutor

MODES = (("EIO", errno.EIO, False), ("ENOSPC", errno.ENOSPC, False), ("EROFS", errno.EROFS, False), ("short", errno.EIO, True))


@dataclass
class FaultFigures:
    runs: int = 0
    faults_hit: int = 0
    crashes: int = 0
    acked_unsaved: int = 0
    not_recovered: int = 0
    examples: list[str] = field(default_factory=list)


async def _workload(root: Path, method: str, at: int, error: int, short: bool, persistent: bool) -> tuple[list[str], str | None, bool, int]:
    layout = layout_for(root)
    layout.ensure()
    ops = FaultyOps()
    engine = Engine(Config(durability="always", backups_kept=1), SessionStore(layout, ops, backups_kept=1))
    engine.pool.shutdown()
    engine.pool = InlineExecutor()  # type: ignore[assignment]
    ctx = Context(engine, None, 0)
    acked: list[str] = []
    crash: str | None = None
    sid = (await start(p.Start(description="faults", cwd="/w", shell="bash"), ctx))["id"]

    async def step(text: str) -> None:
        nonlocal crash
        try:
            await annotate(p.Annotate(session=sid, text=text), ctx)
            acked.append(text)
        except DocpilotError:
            pass
        except Exception as exc:  # what a client would see as a dead daemon
            crash = f"{type(exc).__name__}: {exc}"
        try:
            if len(text) % 3 == 0:
                await engine.checkpoint_dirty()
        except DocpilotError:
            pass
        except Exception as exc:
            crash = f"checkpoint {type(exc).__name__}: {exc}"

    for i in range(4):
        await step(f"before-{i}")
    ops.arm(method, at=at, error=error, persistent=persistent, short=short)
    for i in range(6):
        await step(f"during-{i}")
    hit = ops.faults
    ops.disarm()
    recovered_after = False
    for i in range(4):
        await step(f"after-{i}")
        recovered_after = recovered_after or f"after-{i}" in acked
    await engine.close()
    return acked, crash, recovered_after, hit


def run_injected(max_at: int = 6) -> FaultFigures:
    figures = FaultFigures()
    for method in FAULTABLE:
        for name, error, short in MODES:
            if short and method != "write":
                continue
            for persistent in (False, True):
                for at in range(1, max_at + 1):
                    with tempfile.TemporaryDirectory(prefix="dpf-") as tmp:
                        root = Path(tmp) / "h"
                        acked, crash, recovered, hit = asyncio.run(_workload(root, method, at, error, short, persistent))
                        figures.runs += 1
                        figures.faults_hit += int(hit > 0)
                        if crash:
                            figures.crashes += 1
                            figures.examples.append(f"{method}#{at} {name}: {crash}")
                        _, found = recover_all(SessionStore(layout_for(root)), repair=False)
                        on_disk = {a.text for r in found.values() for a in r.session.annotations}
                        missing = [t for t in acked if t not in on_disk]
                        figures.acked_unsaved += len(missing)
                        if missing and len(figures.examples) < 8:
                            figures.examples.append(f"{method}#{at} {name}: acknowledged but not on disk: {missing[:3]}")
                        if not recovered:
                            figures.not_recovered += 1
                            if len(figures.examples) < 8:
                                figures.examples.append(f"{method}#{at} {name} persistent={persistent}: no change accepted after the fault was lifted")
    return figures


@dataclass
class FullDisk:
    ran: bool
    reason: str = ""
    refused_while_full: int = 0
    accepted_after: int = 0
    daemon_alive: bool = False
    lost: int = 0


def run_full_disk() -> FullDisk:
    """A real daemon on a tiny tmpfs: full disk refuses changes clearly, space back resumes."""
    with tempfile.TemporaryDirectory(prefix="dpd-", dir="/tmp") as tmp:
        mount = Path(tmp) / "m"
        mount.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)], capture_output=True, text=True)
        if done.returncode != 0:
            return FullDisk(False, f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
        try:
            return _full_disk(mount / "h")
        finally:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _full_disk(home: Path) -> FullDisk:
    daemon = DaemonProcess(home)
    daemon.start()
    result = FullDisk(True)
    acked: list[str] = []
    try:
        sock = daemon.socket_path
        session = request(sock, {"op": "start", "description": "full disk"})["result"]["id"]
        filler = home / "filler"
        with open(filler, "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        big = "x" * 50_000
        for i in range(40):
            reply = request(sock, {"op": "annotate", "session": session, "text": f"full-{i} {big}"})
            if reply.get("ok"):
                acked.append(f"full-{i}")
            elif reply["error"]["code"] in ("disk_full", "storage_error"):
                result.refused_while_full += 1
        os.unlink(filler)
        for i in range(5):
            reply = request(sock, {"op": "annotate", "session": session, "text": f"after-{i}"})
            if reply.get("ok"):
                acked.append(f"after-{i}")
                result.accepted_after += 1
        result.daemon_alive = request(sock, {"op": "hello"}).get("ok", False)
        daemon.terminate()
        daemon.start()
        notes = request(sock, {"op": "show", "session": session})["result"]["annotations"]
        present = {n["text"].split(" ")[0] for n in notes}
        result.lost = sum(1 for t in acked if t not in present)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.terminate()
    shutil.rmtree(home, ignore_errors=True)
    return result
