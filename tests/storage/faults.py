"""`FaultyOps`: the real file system, failing on purpose at the Nth call of one method.

    ops = FaultyOps()
    ops.arm("fsync", at=2, error=errno.EIO)           # the 2nd fsync from now fails, once
    ops.arm("write", at=1, error=errno.ENOSPC, persistent=True)   # every write from now fails
    ops.arm("write", at=1, short=True)                 # the 1st write writes part and says so
    ops.disarm()

Calls are counted from the last `arm` (or `reset`), per method, in `ops.calls`. A failing `close`
still closes the descriptor, as Linux does; every other failing call does nothing before raising.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from pathlib import Path

from docpilotd.storage.fsops import OsFileOps

FAULTABLE = ("open_exclusive", "write", "fsync", "close", "replace", "link", "unlink", "fsync_dir")


class FaultyOps(OsFileOps):
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.log: list[str] = []
        self.faults = 0
        self.disarm()

    def arm(
        self,
        method: str,
        at: int = 1,
        error: int = errno.EIO,
        persistent: bool = False,
        short: bool = False,
    ) -> None:
        """Fail the `at`-th call of `method` from now (and every later one if `persistent`).

        With `short`, that `write` writes about a third of its bytes and returns the count; with
        `persistent` too, the writes after it fail with `error` (a disk filling up).
        """
        assert method in FAULTABLE, method
        assert not short or method == "write"
        self.reset()
        self.method: str | None = method
        self.at = at
        self.error = error
        self.persistent = persistent
        self.short = short

    def disarm(self) -> None:
        self.method = None
        self.at = 0
        self.error = errno.EIO
        self.persistent = False
        self.short = False

    def reset(self) -> None:
        self.calls.clear()
        self.log.clear()
        self.faults = 0

    def _fault(self, name: str) -> str | None:
        """Count the call; 'short' or 'raise' when this call must misbehave."""
        self.calls[name] += 1
        self.log.append(name)
        if name != self.method:
            return None
        n = self.calls[name]
        if n == self.at:
            self.faults += 1
            return "short" if self.short else "raise"
        if self.persistent and n > self.at:
            self.faults += 1
            return "raise"
        return None

    def _raise(self, name: str, path: object = None) -> None:
        raise OSError(self.error, f"{os.strerror(self.error)} (injected in {name})", None if path is None else str(path))

    def open_exclusive(self, path: Path, mode: int = 0o600) -> int:
        if self._fault("open_exclusive"):
            self._raise("open_exclusive", path)
        return super().open_exclusive(path, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        fault = self._fault("write")
        if fault == "short" and len(data) > 1:
            return super().write(fd, bytes(data[: max(1, len(data) // 3)]))
        if fault:
            self._raise("write")
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        if self._fault("fsync"):
            self._raise("fsync")
        super().fsync(fd)

    def close(self, fd: int) -> None:
        if self._fault("close"):
            super().close(fd)  # Linux releases the descriptor even when close reports an error
            self._raise("close")
        super().close(fd)

    def replace(self, src: Path, dst: Path) -> None:
        if self._fault("replace"):
            self._raise("replace", src)
        super().replace(src, dst)

    def link(self, src: Path, dst: Path) -> None:
        if self._fault("link"):
            self._raise("link", src)
        super().link(src, dst)

    def unlink(self, path: Path) -> None:
        if self._fault("unlink"):
            self._raise("unlink", path)
        super().unlink(path)

    def fsync_dir(self, path: Path) -> None:
        if self._fault("fsync_dir"):
            self._raise("fsync_dir", path)
        super().fsync_dir(path)
