"""The single I/O seam of the storage layer.

`FileOps` names every file-system call storage makes; `OsFileOps` performs them for real. Storage
modules never call `os` directly for data files, so a test can subclass or wrap `FileOps` to fail
(EIO, ENOSPC, a short write) or crash at call N, and a model file system can stand in to simulate
power loss. Each method is one system call, or the smallest unit that fails as one.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path


class FileOps:
    """Every file-system call of the storage layer. `OsFileOps` is the real one."""

    def open_exclusive(self, path: Path, mode: int = 0o600) -> int:
        raise NotImplementedError

    def open_append(self, path: Path, mode: int = 0o600) -> int:
        raise NotImplementedError

    def write(self, fd: int, data: bytes | memoryview) -> int:
        raise NotImplementedError

    def fsync(self, fd: int) -> None:
        raise NotImplementedError

    def close(self, fd: int) -> None:
        raise NotImplementedError

    def ftruncate(self, fd: int, size: int) -> None:
        raise NotImplementedError

    def replace(self, src: Path, dst: Path) -> None:
        raise NotImplementedError

    def link(self, src: Path, dst: Path) -> None:
        raise NotImplementedError

    def unlink(self, path: Path) -> None:
        raise NotImplementedError

    def fsync_dir(self, path: Path) -> None:
        raise NotImplementedError

    def read_bytes(self, path: Path) -> bytes:
        raise NotImplementedError

    def listdir(self, path: Path) -> list[str]:
        raise NotImplementedError

    def stat(self, path: Path) -> os.stat_result:
        raise NotImplementedError

    # Compositions of the primitives above, kept here so every implementation shares them.

    def write_all(self, fd: int, data: bytes) -> None:
        """Write every byte, continuing after short writes; a write of 0 bytes is an error."""
        view = memoryview(data)
        while view:
            written = self.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, "write made no progress")
            view = view[written:]

    def read_tail(self, path: Path, size: int) -> bytes:
        """The last `size` bytes of a file (all of it when shorter)."""
        return self.read_bytes(path)[-size:]

    def settle(self, fd: int) -> None:
        """Write out what was written to `fd` so far, now: a large file then reaches the disk in
        bursts, and a small fsync of another file (a journal commit) waits behind one burst, not
        behind the whole file. Only pacing, never relied on for durability (the file's own fsync
        is), so a stand-in file system may ignore it."""

    def list_regular(self, path: Path) -> dict[str, bool]:
        """Every name in a directory, and whether it is a regular file itself (not a symlink)."""
        found = {}
        for name in self.listdir(path):
            try:
                found[name] = stat.S_ISREG(self.stat(path / name).st_mode)
            except OSError:
                found[name] = False
        return found

    def exists(self, path: Path) -> bool:
        try:
            self.stat(path)
        except FileNotFoundError:
            return False
        return True


class OsFileOps(FileOps):
    """The real file system."""

    def open_exclusive(self, path: Path, mode: int = 0o600) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)

    def open_append(self, path: Path, mode: int = 0o600) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if sys.platform == "darwin":  # pragma: no cover - macOS only
            import fcntl

            # fsync on macOS does not flush the drive's cache; F_FULLFSYNC does.
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
        else:
            os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def replace(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def link(self, src: Path, dst: Path) -> None:
        os.link(src, dst, follow_symlinks=False)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.fsync(fd)
        finally:
            os.close(fd)

    def read_bytes(self, path: Path) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            size = os.fstat(fd).st_size
            chunks = []
            while True:
                chunk = os.read(fd, max(size, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def settle(self, fd: int) -> None:
        os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)

    def read_tail(self, path: Path, size: int) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            length = os.fstat(fd).st_size
            return os.pread(fd, size, max(0, length - size))
        finally:
            os.close(fd)

    def listdir(self, path: Path) -> list[str]:
        return os.listdir(path)

    def list_regular(self, path: Path) -> dict[str, bool]:
        # The directory entries' types, without a stat per file (one per entry whose type the
        # file system does not report).
        with os.scandir(path) as entries:
            return {entry.name: entry.is_file(follow_symlinks=False) for entry in entries}

    def stat(self, path: Path) -> os.stat_result:
        return os.stat(path, follow_symlinks=False)
