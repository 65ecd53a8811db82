"""The spool, daemon side: what hooked shells append, read in order, in bounded batches.

Why a spool and not the socket: the prompt must never wait for the daemon, and a shell builtin
that appends one line to a file costs tens of microseconds, never blocks on a hung daemon, and
needs no fork. So every hooked shell appends each command, as one JSON `record` request naming
its session, to its own file `spool/{instance}.jsonl` (0600, in the 0700 data root).

When lines are read:
  - within ~20 ms of an append while the daemon runs (`notify`, from the watcher's inotify
    events; a periodic rescan covers dropped events);
  - before `stop`, `pause`, `generate`, `show` and `export` answer (`ingest`), so what was typed
    before them is in;
  - at start-up, before serving, and at shutdown, before the final save.
Reading is chunked: at most BATCH_LINES lines (and BATCH_BYTES) are recorded at a time, then the
loop is free again, so a 200,000-line file neither holds the loop nor memory.

Retiring files (a separate timer from ingestion, so neither delays the other): a file idle for
IDLE_S whose lines were all read is claimed (renamed: the shell's next append creates a new file)
and deleted after CLAIM_GRACE_S and a last read. A file holding something private (a redacted
secret, a line starting with a space) is claimed as soon as it is read, even when its lines were
recorded before a restart. A file whose last line never got its newline is claimed once idle
too; after the grace period that torn tail is kept in quarantine, redacted, and the file deleted.
After a restart every file is read from the start again and the recorder drops what was
recorded (capture ids), so nothing is lost or recorded twice.

Invariants: the lines of one file are recorded in file order; a line is read only once complete
(up to its newline); nothing is deleted before every complete line in it was read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from ... import protocol as p
from ... import results
from ...storage import quarantine
from ..engine import Engine
from ..privacy import Privacy
from ..tasks import TaskSet
from .recorder import Outcome, Recorder

log = logging.getLogger("docpilotd.capture")

CLAIM_GRACE_S = 2.0
NOTIFY_DELAY_S = 0.02
MAINTAIN_INTERVAL_S = 1.0
BATCH_LINES = 128
BATCH_BYTES = 256 * 1024
MAX_LINE_BYTES = 4 * 1024 * 1024  # larger than any valid record (the protocol caps text at 1 MB)


def _read_chunk(path: Path, offset: int, size: int) -> tuple[bytes, int] | None:
    """Up to `size` bytes of a regular file from `offset`, and the file's size; None when it is
    gone or not a regular file (never waited on: no FIFO, device or link is read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size <= offset:
            return b"", st.st_size
        return os.pread(fd, min(size, st.st_size - offset), offset), st.st_size
    except OSError:
        return None
    finally:
        os.close(fd)


class Spool:
    IDLE_S = 60.0

    def __init__(self, engine: Engine, recorder: Recorder, privacy: Privacy) -> None:
        self.engine = engine
        self.recorder = recorder
        self.privacy = privacy
        self.directory = engine.store.layout.spool
        self._lock = asyncio.Lock()
        self._offsets: dict[Path, int] = {}
        self._claimed: dict[Path, float] = {}  # claimed file -> when it was claimed (monotonic)
        self.ingested = 0
        self.skipped = 0
        self._notify_timer: asyncio.TimerHandle | None = None
        self._notified_task: asyncio.Task[None] | None = None
        self._again = False
        self._tasks = TaskSet("capture")

    # -- triggers ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start retiring files on a timer of its own."""
        self._tasks.spawn(self._maintain_forever(), name="retire spool files")

    async def close(self) -> None:
        """Stop reading on notifications and retiring; an `ingest` may still be called after."""
        if self._notify_timer is not None:
            self._notify_timer.cancel()
            self._notify_timer = None
        await self._tasks.cancel_all()

    def notify(self) -> None:
        """A shell appended (or may have): read within NOTIFY_DELAY_S; appends of a burst coalesce."""
        if self._notified_task is not None and not self._notified_task.done():
            self._again = True  # the running read may have missed it: read once more after it
            return
        if self._notify_timer is None:
            self._notify_timer = asyncio.get_running_loop().call_later(NOTIFY_DELAY_S, self._notified)

    def _notified(self) -> None:
        self._notify_timer = None
        self._notified_task = self._tasks.spawn(self._ingest_notified(), name="read the spool")

    async def _ingest_notified(self) -> None:
        while True:
            self._again = False
            try:
                await self.ingest()
            except Exception:  # a bug, or a change refused by the disk: capture must keep working
                log.exception("spool ingestion failed")
            if not self._again:
                return

    async def _maintain_forever(self) -> None:
        while True:
            await asyncio.sleep(MAINTAIN_INTERVAL_S)
            if self._offsets or self._claimed:
                try:
                    async with self._lock:
                        await self._retire()
                except Exception:  # pragma: no cover - a bug; retiring must keep working
                    log.exception("retiring spool files failed")

    # -- reading ----------------------------------------------------------------------------------

    async def ingest(self) -> int:
        """Record every complete line not yet read, of every spool file; returns how many were
        recorded."""
        async with self._lock:
            before = self.ingested
            for path in self._scan():
                await self._ingest_file(path)
            return self.ingested - before

    def _scan(self) -> list[Path]:
        """Claimed files first, oldest first, then live ones: a shell's lines are read in the order
        it wrote them (a line that reached a file just before it was claimed comes before the lines
        of the shell's next file)."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        claimed, live = [], []
        for name in names:
            path = self.directory / name
            if name.endswith(".jsonl"):
                live.append(path)
            elif name.endswith(".claimed"):
                # One left by an earlier run too: retire it after the grace period.
                self._claimed.setdefault(path, time.monotonic())
                claimed.append(path)
        return claimed + live

    async def _ingest_file(self, path: Path) -> None:
        private = False
        while True:
            offset = self._offsets.get(path, 0)
            chunk = _read_chunk(path, offset, BATCH_BYTES)
            if chunk is None:
                return
            data, size = chunk
            end = data.rfind(b"\n") + 1  # a line still being written is left for the next read
            if not end:
                if len(data) < BATCH_BYTES or not self._skip_long_line(path, offset, size):
                    break
                continue
            lines = [line for line in data[:end].split(b"\n") if line.strip()]
            # One batch at a time: at most BATCH_LINES lines between two turns of the loop.
            for start in range(0, len(lines), BATCH_LINES):
                outcomes = await self._record_batch(path, lines[start : start + BATCH_LINES])
                private = private or any(o.private for o in outcomes)
            self._offsets[path] = offset + end
            if offset + end >= size:
                break
            await asyncio.sleep(0)
        if private and path.name.endswith(".jsonl"):
            self._claim(path)  # do not keep a raw secret for the idle minute

    def _skip_long_line(self, path: Path, offset: int, size: int) -> bool:
        """A line longer than MAX_LINE_BYTES is no record: skip to its end. False: not complete yet."""
        chunk = _read_chunk(path, offset, MAX_LINE_BYTES + 1)
        if chunk is None:
            return False
        data = chunk[0]
        newline = data.find(b"\n")
        if newline < 0 and len(data) <= MAX_LINE_BYTES:
            return False  # still being written, and may still be a record
        if newline < 0:
            # Longer still: look further without holding more than a chunk at a time.
            position = offset + len(data)
            while newline < 0:
                more = _read_chunk(path, position, BATCH_BYTES)
                if more is None or not more[0]:
                    return False
                newline = more[0].find(b"\n")
                if newline < 0:
                    position += len(more[0])
            self._offsets[path] = position + newline + 1
        else:
            self._offsets[path] = offset + newline + 1
        self.skipped += 1
        log.warning("spool %s: skipped a line of over %d bytes", path.name, MAX_LINE_BYTES)
        return True

    async def _record_batch(self, path: Path, lines: list[bytes]) -> list[Outcome]:
        records = []
        for line in lines:
            record = p.decode_spooled_record(line)
            if record is None:
                self.skipped += 1
                log.warning("spool %s: skipped a line that is not a record", path.name)
                continue
            records.append(record)
        # Started together: the engine numbers them in this order and they share fsyncs.
        outcomes = await asyncio.gather(*(self.recorder.record(r) for r in records))
        refused: dict[str, tuple[int, str]] = {}
        for outcome in outcomes:
            if outcome.recorded:
                self.ingested += 1
            else:
                self.skipped += 1
                if outcome.status == "refused":
                    count, _ = refused.get(outcome.session_id or "", (0, ""))
                    refused[outcome.session_id or ""] = (count + 1, str(outcome.error))
        for session_id, (count, why) in refused.items():  # one line per session and batch, not per line
            log.info("spool %s: %d command(s) for session %s not recorded: %s", path.name, count, session_id or "?", why)
        return outcomes

    def backlog(self) -> results.SpoolBacklog:
        """What hooks spooled that is not read yet (`status`, and so `docpilot doctor`): the files
        with bytes past what was read, and those bytes; a stat of each file, nothing read (a
        status asked while a large spool is read costs the loop no more than a listing)."""
        found: results.SpoolBacklog = {"files": 0, "bytes": 0}
        try:
            names = os.listdir(self.directory)
        except OSError:
            return found
        for name in names:
            if not name.endswith((".jsonl", ".claimed")):
                continue
            path = self.directory / name
            try:
                st = os.lstat(path)
            except OSError:
                continue
            unread = st.st_size - self._offsets.get(path, 0)
            if stat.S_ISREG(st.st_mode) and unread > 0:
                found["files"] += 1
                found["bytes"] += unread
        return found

    # -- retiring ---------------------------------------------------------------------------------

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

    async def _retire(self) -> None:
        """Claim files idle for IDLE_S; delete claimed ones after the grace period and a last read."""
        now_wall, now = time.time(), time.monotonic()
        for path in [live for live in self._offsets if live.name.endswith(".jsonl")]:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self._offsets.pop(path, None)
                continue
            except OSError:
                continue
            if now_wall - st.st_mtime >= self.IDLE_S:
                self._claim(path)  # complete, or with a torn tail no shell will finish now
        for path, claimed_at in list(self._claimed.items()):
            if now - claimed_at < CLAIM_GRACE_S:
                continue
            await self._ingest_file(path)  # an append that raced the rename
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                self._forget(path)
                continue
            except OSError:
                continue
            read = self._offsets.get(path, 0)
            if st.st_size > read and stat.S_ISREG(st.st_mode):
                await self._keep_torn_tail(path, read)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("spool %s: cannot remove it: %s", path.name, exc.strerror)
                continue
            self._forget(path)

    async def _keep_torn_tail(self, path: Path, offset: int) -> None:
        chunk = _read_chunk(path, offset, MAX_LINE_BYTES)
        if chunk is None:
            return
        tail = self.privacy.redactor.text(chunk[0].decode("utf-8", "replace")).encode("utf-8")
        store = self.engine.store
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self.engine.pool, quarantine.keep_copy, store.ops, store.layout.quarantine,
                path.name.split(".jsonl")[0] + ".torn-tail", tail, path,
                "the last line of a shell's spool file never got its newline (the shell was killed "
                "while writing it); kept here, redacted, and not recorded",
            )
            log.warning("spool %s: a torn last line was moved to quarantine", path.name)
        except Exception as exc:  # a full disk must not keep the file (and a secret) forever
            log.warning("spool %s: could not keep its torn last line: %s", path.name, exc)

    def _forget(self, path: Path) -> None:
        self._claimed.pop(path, None)
        self._offsets.pop(path, None)

    # -- privacy ----------------------------------------------------------------------------------

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
                    self._forget(path)
                done.append(path.name if complete else f"{path.name} (kept: its last line is incomplete)")
        return done


def _file_matches(path: Path, match: Callable[[bytes], bool]) -> bool:
    chunk = _read_chunk(path, 0, 1 << 62)  # the whole file: a secret may be anywhere in it
    return chunk is not None and match(chunk[0])


def _empty_scratch(directory: Path, match: Callable[[bytes], bool]) -> list[str]:
    emptied = []
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(".fc."))
    except FileNotFoundError:
        return []
    for name in names:
        path = directory / name
        chunk = _read_chunk(path, 0, 1024 * 1024)
        if chunk is None or not match(chunk[0]):
            continue
        try:
            os.truncate(path, 0)
        except OSError:
            continue
        emptied.append(name)
    return emptied
