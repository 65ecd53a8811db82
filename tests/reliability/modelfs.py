"""A model file system for power-loss testing: what survives a crash is only what was synced.

`ModelFileOps` implements docpilotd's `FileOps` seam in memory, with POSIX-like semantics that
matter for durability:
  - file content written but not fsynced may, at a crash, be kept, lost, cut short or garbled;
  - directory changes (create, rename, link, unlink) not made durable by an fsync of that
    directory may, at a crash, be lost; each directory keeps a prefix of its pending changes
    (a journaling file system commits metadata in order; the prefix is chosen at random);
  - hard links share one inode, so content is per inode, as on a real file system.

`crash_at(k)` freezes the state at the k-th call (that call and every later one fail with EIO,
as if the machine had died there); `crash_states(rng, n)` then yields `n` concrete file systems
that could be on disk after the power came back, each a fresh `ModelFileOps` to run recovery on.

`ignore_fsync_site` turns the fsyncs made from one source line into no-ops: the mutation check
that shows the suite notices when any single fsync is removed from the code.
"""

from __future__ import annotations

import copy
import errno
import os
import random
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from docpilotd.storage.fsops import FileOps


@dataclass
class Inode:
    durable: bytes = b""
    current: bytearray = field(default_factory=bytearray)
    mtime_ns: int = 0


@dataclass
class Directory:
    durable: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    pending: list[tuple[str, int | None]] = field(default_factory=list)  # (name, ino or None=unlink)

    def set(self, name: str, ino: int | None) -> None:
        if ino is None:
            self.current.pop(name, None)
        else:
            self.current[name] = ino
        self.pending.append((name, ino))

    def sync(self) -> None:
        self.durable = dict(self.current)
        self.pending.clear()


class Crashed(Exception):
    pass


class _StatResult:
    def __init__(self, ino: int, size: int, mtime_ns: int, is_dir: bool = False) -> None:
        self.st_ino = ino
        self.st_size = size
        self.st_mtime_ns = mtime_ns
        self.st_mode = 0o040700 if is_dir else 0o100600
        self.st_uid = os.getuid()


def fsync_site() -> str:
    """file:line of the docpilotd code that called fsync (the first frame outside this module
    and outside the seam's own compositions)."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if "docpilotd" in filename and not filename.endswith("fsops.py") and "tests" not in filename:
            return f"{Path(filename).parent.name}/{Path(filename).name}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


class ModelFileOps(FileOps):
    def __init__(self, directories: list[Path]) -> None:
        self.lock = threading.RLock()
        self.inodes: dict[int, Inode] = {}
        self.dirs: dict[Path, Directory] = {Path(d): Directory() for d in directories}
        self.fds: dict[int, int] = {}
        self._next_ino = 100
        self._next_fd = 1000
        self._clock = 0
        self.calls = 0
        self.crash_call: int | None = None
        self.frozen: ModelFileOps | None = None
        self.ignored_site: str | None = None
        self.fsync_sites: set[str] = set()

    # -- bookkeeping ----------------------------------------------------------------------------

    def _tick(self) -> None:
        self.calls += 1
        if self.frozen is not None:
            raise OSError(errno.EIO, "the machine has crashed")
        if self.crash_call is not None and self.calls >= self.crash_call:
            self.frozen = self._freeze()
            raise OSError(errno.EIO, "the machine has crashed")

    def _freeze(self) -> ModelFileOps:
        clone = ModelFileOps([])
        clone.inodes = copy.deepcopy(self.inodes)
        clone.dirs = copy.deepcopy(self.dirs)
        clone._next_ino = self._next_ino
        return clone

    def clone(self) -> ModelFileOps:
        """An independent copy of the current state (a second disk to experiment on)."""
        return self._freeze()

    def crash_at(self, call: int) -> None:
        self.crash_call = call

    def _dir(self, path: Path) -> Directory:
        directory = self.dirs.get(path.parent)
        if directory is None:
            raise FileNotFoundError(errno.ENOENT, "no such directory", str(path.parent))
        return directory

    def _lookup(self, path: Path) -> int:
        ino = self._dir(path).current.get(path.name)
        if ino is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
        return ino

    def _new_inode(self) -> int:
        self._next_ino += 1
        self.inodes[self._next_ino] = Inode()
        return self._next_ino

    def _touch(self, inode: Inode) -> None:
        self._clock += 1
        inode.mtime_ns = self._clock

    # -- the seam -------------------------------------------------------------------------------

    def open_exclusive(self, path: Path, mode: int = 0o600) -> int:
        with self.lock:
            self._tick()
            directory = self._dir(path)
            if path.name in directory.current:
                raise FileExistsError(errno.EEXIST, "exists", str(path))
            ino = self._new_inode()
            directory.set(path.name, ino)
            return self._open_fd(ino)

    def open_append(self, path: Path, mode: int = 0o600) -> int:
        with self.lock:
            self._tick()
            directory = self._dir(path)
            ino = directory.current.get(path.name)
            if ino is None:
                ino = self._new_inode()
                directory.set(path.name, ino)
            return self._open_fd(ino)

    def _open_fd(self, ino: int) -> int:
        self._next_fd += 1
        self.fds[self._next_fd] = ino
        return self._next_fd

    def write(self, fd: int, data: bytes | memoryview) -> int:
        with self.lock:
            self._tick()
            inode = self.inodes[self.fds[fd]]
            inode.current += bytes(data)
            self._touch(inode)
            return len(data)

    def fsync(self, fd: int) -> None:
        with self.lock:
            self._tick()
            site = fsync_site()
            self.fsync_sites.add(site)
            if site == self.ignored_site:
                return
            inode = self.inodes[self.fds[fd]]
            inode.durable = bytes(inode.current)

    def close(self, fd: int) -> None:
        with self.lock:
            self._tick()
            self.fds.pop(fd, None)

    def ftruncate(self, fd: int, size: int) -> None:
        with self.lock:
            self._tick()
            inode = self.inodes[self.fds[fd]]
            del inode.current[size:]
            self._touch(inode)

    def replace(self, src: Path, dst: Path) -> None:
        with self.lock:
            self._tick()
            ino = self._lookup(src)
            self._dir(src).set(src.name, None)
            self._dir(dst).set(dst.name, ino)

    def link(self, src: Path, dst: Path) -> None:
        with self.lock:
            self._tick()
            ino = self._lookup(src)
            target = self._dir(dst)
            if dst.name in target.current:
                raise FileExistsError(errno.EEXIST, "exists", str(dst))
            target.set(dst.name, ino)

    def unlink(self, path: Path) -> None:
        with self.lock:
            self._tick()
            self._lookup(path)
            self._dir(path).set(path.name, None)

    def fsync_dir(self, path: Path) -> None:
        with self.lock:
            self._tick()
            site = fsync_site()
            self.fsync_sites.add(site)
            if site == self.ignored_site:
                return
            directory = self.dirs.get(Path(path))
            if directory is None:
                raise FileNotFoundError(errno.ENOENT, "no such directory", str(path))
            directory.sync()

    def read_bytes(self, path: Path) -> bytes:
        with self.lock:
            self._tick()
            return bytes(self.inodes[self._lookup(path)].current)

    def listdir(self, path: Path) -> list[str]:
        with self.lock:
            self._tick()
            directory = self.dirs.get(Path(path))
            if directory is None:
                raise FileNotFoundError(errno.ENOENT, "no such directory", str(path))
            return sorted(directory.current)

    def stat(self, path: Path) -> os.stat_result:
        with self.lock:
            self._tick()
            if Path(path) in self.dirs:
                return _StatResult(1, 0, 0, is_dir=True)  # type: ignore[return-value]
            ino = self._lookup(path)
            inode = self.inodes[ino]
            return _StatResult(ino, len(inode.current), inode.mtime_ns)  # type: ignore[return-value]

    # -- crash states ---------------------------------------------------------------------------

    def crash_states(self, rng: random.Random, count: int) -> Iterator[ModelFileOps]:
        """Concrete post-crash file systems of the frozen state (or of now, if never frozen)."""
        base = self.frozen or self._freeze()
        for _ in range(count):
            yield base._resolve(rng)

    def _resolve(self, rng: random.Random) -> ModelFileOps:
        after = ModelFileOps([])
        after._next_ino = self._next_ino
        reachable: set[int] = set()
        for path, directory in self.dirs.items():
            entries = dict(directory.durable)
            keep = rng.randint(0, len(directory.pending))
            for name, ino in directory.pending[:keep]:
                if ino is None:
                    entries.pop(name, None)
                else:
                    entries[name] = ino
            after.dirs[path] = Directory(durable=dict(entries), current=dict(entries))
            reachable.update(entries.values())
        for ino in reachable:
            inode = self.inodes[ino]
            content = _resolve_content(inode, rng)
            after.inodes[ino] = Inode(durable=content, current=bytearray(content), mtime_ns=0)
        return after


def _resolve_content(inode: Inode, rng: random.Random) -> bytes:
    durable, current = inode.durable, bytes(inode.current)
    if durable == current:
        return durable
    choice = rng.random()
    if choice < 0.3:
        return durable  # nothing of the unsynced writes reached the disk
    if choice < 0.55:
        return current  # all of them did
    if current.startswith(durable):
        # Appended data: a prefix of it survived, possibly with garbage in its last sector.
        cut = rng.randint(len(durable), len(current))
        data = bytearray(current[:cut])
        if choice > 0.8 and cut > len(durable):
            start = rng.randint(len(durable), cut - 1)
            for i in range(start, min(cut, start + 16)):
                data[i] = rng.randrange(256)
        return bytes(data)
    # Rewritten content (a new file's first write is the common case): torn at a random point,
    # the rest zeros, as a partly written sector range looks after power loss.
    cut = rng.randint(0, len(current))
    return current[:cut] + b"\0" * (len(current) - cut)
