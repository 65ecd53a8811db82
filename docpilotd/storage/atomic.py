"""Atomic, durable file replacement.

`write_atomic` puts `data` at `path` so that, whatever happens at any moment, `path` holds either
its old content or all of the new one: a unique temp file in the same directory (created exclusive,
0600), all bytes written, fsync, rename over `path`, fsync of the directory. A failed step removes the
temp file and raises; the file at `path` is then untouched. An fsync that failed is never retried on
the same file (the kernel may have dropped its dirty pages): the next attempt writes a new temp file.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import DiskFull, StorageError
from .fsops import FileOps

TEMP_PREFIX = ".tmp-"
# A large file is written out every this many bytes (a journal commit then waits behind at most
# this much of it on the disk's queue, not behind the whole snapshot of a large session).
SETTLE_BYTES = 4 << 20
TEMP_SUFFIX = ".tmp"


def temp_path_for(path: Path) -> Path:
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    """Our temp files and DocPilot's (`{id}.tmp`): never authoritative."""
    return name.endswith(TEMP_SUFFIX)


def storage_error(exc: OSError, action: str) -> StorageError:
    """The StorageError for an OSError, DiskFull when the disk or quota is full."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"disk full while {action}")
    return StorageError(f"{action} failed: {exc.strerror or exc}")


def write_atomic(ops: FileOps, path: Path, data: bytes | Sequence[bytes],
                 before_replace: Callable[[os.stat_result], None] | None = None) -> os.stat_result:
    """Durably replace `path` with `data` (bytes, or blocks written in order: a large snapshot is
    never copied into one buffer); returns the stat of the new file (its identity).
    `before_replace(identity)` is called once the new file is complete and before it takes the
    name: whoever watches the name can know the file as ours from the moment it appears."""
    temp = temp_path_for(path)
    fd: int | None = None
    try:
        fd = ops.open_exclusive(temp, 0o600)
        unsettled = 0
        for block in [data] if isinstance(data, bytes) else data:
            if unsettled >= SETTLE_BYTES:
                ops.settle(fd)  # pacing for large files: see FileOps.settle
                unsettled = 0
            ops.write_all(fd, block)
            unsettled += len(block)
        ops.fsync(fd)
        ops.close(fd)
        fd = None
        identity = ops.stat(temp)
        if before_replace is not None:
            before_replace(identity)
        ops.replace(temp, path)
    except OSError as exc:
        _discard(ops, fd, temp)
        raise storage_error(exc, f"writing {path.name}") from exc
    try:
        ops.fsync_dir(path.parent)
    except OSError as exc:
        # The rename happened but may not survive a power cut: report it; the caller does not
        # acknowledge, and the next save writes (and syncs) the directory again.
        raise storage_error(exc, f"syncing the directory of {path.name}") from exc
    return identity


def _discard(ops: FileOps, fd: int | None, temp: Path) -> None:
    if fd is not None:
        try:
            ops.close(fd)
        except OSError:
            pass
    try:
        ops.unlink(temp)
    except OSError:
        pass  # a leftover temp file is cleaned by the next recovery
