"""The single-owner lock: `flock` on `run/docpilotd.lock`, held for the owner's lifetime.

Taken before anything writes or binds the socket (asyncio unlinks an existing socket path on bind,
which would steal a running daemon's socket). The kernel drops the lock when the process dies, so
a killed daemon never leaves a stale lock; no pid-liveness guessing. The file holds the owner's pid
for people to read; it is never trusted for locking.

The lock file is opened so that it cannot block or follow a link (O_NONBLOCK, O_NOFOLLOW) and must be
a regular file: anything else at its path (a FIFO, a directory, a link out of the data root) is
refused with a clear error naming it, never written through.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from ..errors import DaemonAlreadyRunning, StorageError
from .fsops import a_kind, display_name, kind_of

_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


def _open_lock_file(path: Path, flags: int) -> int:
    """Open the lock file (`flags` | _FLAGS); StorageError unless it is a regular file."""
    try:
        fd = os.open(path, flags | _FLAGS, 0o600)
    except FileNotFoundError:
        raise
    except OSError as exc:
        try:
            mode = os.stat(path, follow_symlinks=False).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise _not_a_file(path, mode) from None
        raise StorageError(f"cannot open {display_name(str(path))}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_a_file(path, mode)
    return fd


def _not_a_file(path: Path, mode: int) -> StorageError:
    return StorageError(
        f"{display_name(str(path))} is {a_kind(kind_of(mode))}, not the lock file; move it away and start again"
    )


class DataLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, purpose: str = "daemon") -> None:
        fd = _open_lock_file(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise DaemonAlreadyRunning(
                f"another docpilotd{who} already owns {self.path.parent.parent}; refusing to start a second {purpose}"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot lock {self.path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # closing drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DataLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def holder_pid(path: Path) -> int | None:
    """The pid written by the current holder, if the lock is held (for status messages)."""
    try:
        fd = _open_lock_file(path, os.O_RDONLY)
    except (OSError, StorageError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
