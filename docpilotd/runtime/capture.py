"""Shell capture, daemon side: the markers hooks read, and the spool hooks write.

Why a spool and not the socket: the prompt must never wait for the daemon, and a shell builtin
that appends one line to a file costs tens of microseconds, never blocks on a hung daemon, and
needs no fork. So every hooked shell appends each command, as one JSON `record` request, to its
own file `spool/{instance}.jsonl` (0600, in the 0700 data root); the daemon ingests it within
milliseconds when it runs, and at start-up (before serving) when it was down.

Markers: `spool/active/{session id}` exists while that session is Active, and
`spool/active/current` while the most recently started live session is Active. A hook sends
nothing at all unless its marker exists, so a paused or stopped session costs the shell one
`stat`. Markers live under the data root, so they survive a reboot while the daemon is down.

Exactly once: a record carries `capture_id` = "{instance}:{counter}"; the counter increases per
command within one shell instance, and each instance writes to one file in order. The daemon reads
each file in order and keeps, per session, the highest counter ingested per instance (rebuilt from
the session's own commands after a restart, since the id is stored with each command), and skips
anything at or below it. Only a file idle for a minute is claimed by renaming it (the shell's next
append creates a new file); it is deleted after a grace period and a final read.

Secrets: a line is redacted when it is recorded (handlers.record), but the spool file holds the raw
line until it is deleted. So a file in which a line was redacted (or held a command starting with a
space) is claimed as soon as it is ingested and deleted after the grace period (about 2 s), instead
of after a minute of idleness; `discard` does the same at once for `docpilot redact` and `purge`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from .. import protocol as p
from ..domain.model import Session
from ..errors import DocpilotError
from ..paths import Layout
from . import handlers
from .engine import Engine

log = logging.getLogger("docpilotd.capture")

CURRENT = "current"
CLAIM_GRACE_S = 2.0
_CONTROL = re.compile(rb"[\x00-\x1f]")
_record_decoder = msgspec.json.Decoder(p.Record)


class Markers:
    """Keeps `spool/active/` in step with the sessions' states."""

    def __init__(self, layout: Layout) -> None:
        self.directory = layout.active_markers

    def sync(self, engine: Engine) -> None:
        wanted = {e.session_id for e in engine.entries.values() if e.pending_state == "Active"}
        try:
            current = engine.resolve(None)
        except DocpilotError:
            current = None
        if current is not None and current.pending_state == "Active":
            wanted.add(CURRENT)
        try:
            present = set(os.listdir(self.directory))
        except FileNotFoundError:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            present = set()
        for name in present - wanted:
            try:
                os.unlink(self.directory / name)
            except OSError:
                pass
        for name in wanted - present:
            try:
                os.close(os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            except OSError as exc:
                log.warning("cannot write capture marker %s: %s", name, exc.strerror)


def parse_line(line: bytes) -> p.Record | None:
    """A spooled record; tolerant of what shells write (raw control characters, invalid UTF-8)."""
    try:
        return _record_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        pass
    repaired = _CONTROL.sub(lambda m: b"\\u%04x" % m.group()[0], line)
    repaired = repaired.decode("utf-8", "replace").encode("utf-8")
    try:
        return _record_decoder.decode(repaired)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


class Spool:
    """Ingests spool files: at start-up before serving, then whenever the watcher sees a change.

    A live file is read incrementally, up to its last complete line, in order; nothing renames it
    under a shell that may be appending. A file idle for IDLE_S is claimed (renamed; the shell's
    next append starts a new file) and deleted after a grace period and a final read. After a
    restart every file is read from the start again and the capture marks drop what was ingested.
    """

    IDLE_S = 60.0

    def __init__(self, engine: Engine, ctx: handlers.Context) -> None:
        self.engine = engine
        self.ctx = ctx
        self.directory = engine.store.layout.spool
        self._lock = asyncio.Lock()
        self._offsets: dict[Path, int] = {}
        self._claimed: dict[Path, float] = {}  # claimed file -> when it was claimed (monotonic)
        self.ingested = 0
        self.skipped = 0
        self._tasks: set[asyncio.Task[int]] = set()

    async def ingest(self) -> int:
        """Ingest every new complete line of every spool file; returns how many were recorded."""
        async with self._lock:
            before = self.ingested
            for path in self._scan():
                await self._ingest_file(path)
            await self._retire_idle()
            return self.ingested - before

    def _scan(self) -> list[Path]:
        """Claimed files first, oldest first, then live ones: a shell's lines are read in the order
        it wrote them (a line that reached a file just before it was claimed comes before the lines
        of the shell's next file; the capture marks would take it for a duplicate otherwise)."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        claimed, live = [], []
        left_over = False
        for name in names:
            path = self.directory / name
            if name.endswith(".jsonl"):
                live.append(path)
            elif name.endswith(".claimed"):
                if path not in self._claimed:  # one left by an earlier run too: retire it soon
                    self._claimed[path] = time.monotonic()
                    left_over = True
                claimed.append(path)
        if left_over:
            self._retire_soon()
        return claimed + live

    async def _ingest_file(self, path: Path) -> None:
        offset = self._offsets.get(path, 0)
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written is left for the next read
        if not end:
            return
        self._offsets[path] = offset + end
        pending = []
        for line in data[:end].split(b"\n"):
            if not line.strip():
                continue
            record = parse_line(line)
            if record is None:
                self.skipped += 1
                log.warning("spool %s: skipped a line that is not a record", path.name)
                continue
            pending.append(self._record(record))
        # Started together: the engine numbers them in this order and they share fsyncs.
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, DocpilotError):
                raise outcome
        if any(outcome is True for outcome in outcomes) and path.name.endswith(".jsonl"):
            # A secret was redacted from a line of this file: do not keep the raw line for a minute.
            if self._claim(path) is not None:
                self._retire_soon()

    async def _record(self, record: p.Record) -> bool:
        """Record one spooled line; True when it held something private (a redacted secret, a
        command starting with a space)."""
        try:
            result = await handlers.record(record, self.ctx)
        except DocpilotError as exc:
            self.skipped += 1  # no such session, or paused or stopped meanwhile: not recorded
            log.debug("spooled command not recorded: %s", exc)
            return False
        if result.get("duplicate") or result.get("skipped"):
            self.skipped += 1  # already ingested (a file read again after a restart), or private
        else:
            self.ingested += 1
        return bool(result.get("redacted") or result.get("skipped"))

    def _claim(self, path: Path) -> Path | None:
        """Rename a live file out of the shells' way (their next append starts a new file)."""
        claimed = path.with_name(f"{path.name}.{time.time_ns()}.claimed")
        try:
            os.rename(path, claimed)
        except OSError:
            return None
        self._offsets[claimed] = self._offsets.pop(path, 0)
        self._claimed[claimed] = time.monotonic()
        return claimed

    def _retire_soon(self) -> None:
        """Look at claimed files again once their grace period is over."""
        loop = asyncio.get_running_loop()

        def start() -> None:
            task = loop.create_task(self.ingest())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        loop.call_later(CLAIM_GRACE_S + 0.05, start)

    async def discard(self, lines_match: Callable[[bytes], bool], scratch_match: Callable[[bytes], bool]) -> list[str]:
        """Ingest every complete line, then delete each spool file whose content `lines_match`
        (after its grace period and a last read), and empty each shell's scratch file (`.fc.*`,
        the bash hook's copy of its last command) whose content `scratch_match`. Returns the names
        of the files deleted or emptied, and of any still holding an incomplete line (kept)."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            for path in self._scan():
                await self._ingest_file(path)
            doomed: list[Path] = []
            for path in self._scan():
                if await loop.run_in_executor(self.engine.pool, _file_matches, path, lines_match):
                    claimed = self._claim(path) if path.name.endswith(".jsonl") else path
                    if claimed is not None:
                        doomed.append(claimed)
            done = await loop.run_in_executor(self.engine.pool, _empty_scratch, self.directory, scratch_match)
        if not doomed:
            return done
        await asyncio.sleep(CLAIM_GRACE_S)  # an append that raced the rename lands meanwhile
        async with self._lock:
            for path in doomed:
                await self._ingest_file(path)
                try:
                    complete = os.stat(path).st_size <= self._offsets.get(path, 0)
                    if complete:
                        os.unlink(path)
                except FileNotFoundError:
                    complete = True
                except OSError:
                    complete = False
                if complete:
                    self._claimed.pop(path, None)
                    self._offsets.pop(path, None)
                done.append(path.name if complete else f"{path.name} (kept: its last line is incomplete)")
        return done

    async def _retire_idle(self) -> None:
        """Claim files idle for IDLE_S; delete claimed files after a grace period and a last read."""
        now_wall, now = time.time(), time.monotonic()
        for path in [p for p in self._offsets if p.name.endswith(".jsonl")]:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                self._offsets.pop(path, None)
                continue
            if now_wall - st.st_mtime >= self.IDLE_S and self._offsets[path] >= st.st_size:
                self._claim(path)
        for path, claimed_at in list(self._claimed.items()):
            if now - claimed_at < CLAIM_GRACE_S:
                continue
            await self._ingest_file(path)  # an append that raced the rename
            try:
                if os.stat(path).st_size > self._offsets.get(path, 0):
                    continue  # a last line without its newline yet: look again later
                os.unlink(path)
            except OSError:
                pass
            self._claimed.pop(path, None)
            self._offsets.pop(path, None)

    @property
    def has_claims(self) -> bool:
        """Files that still need a later look (claimed, or live and not yet idle)."""
        return bool(self._claimed) or bool(self._offsets)


def _file_matches(path: Path, match: Callable[[bytes], bool]) -> bool:
    try:
        with open(path, "rb") as handle:
            return match(handle.read())
    except OSError:
        return False


def _empty_scratch(directory: Path, match: Callable[[bytes], bool]) -> list[str]:
    emptied = []
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(".fc."))
    except FileNotFoundError:
        return []
    for name in names:
        path = directory / name
        try:
            with open(path, "rb") as handle:
                if not match(handle.read()):
                    continue
            os.truncate(path, 0)
        except OSError:
            continue
        emptied.append(name)
    return emptied
