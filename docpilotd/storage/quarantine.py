"""The quarantine: where a file that cannot be trusted goes instead of being deleted.

`quarantine/{UTC time}_{original name}` holds the file (moved, or copied when the original must
stay), and `….reason` beside it says where it came from and why, as one JSON object. Nothing here
ever overwrites or deletes: names are unique, and a move is a rename within the data root.

Whatever is there is moved as the entry itself and never opened: a regular file by a hard link then
an unlink (a link never replaces anything), anything else (a FIFO, socket, device node, symbolic
link, or a directory as a whole) by a rename, as is a regular file the kernel will not link (one
owned by another user, under protected_hardlinks). A name that is not UTF-8 text gets %XX escapes in
quarantine, and the reason names the original as readable text with its exact bytes
(`fsops.display_name`), so writing the reason never fails on a name.
"""

from __future__ import annotations

import errno
import stat
import time
from pathlib import Path

import msgspec

from ..domain import timestamps
from .atomic import storage_error
from .fsops import FileOps, display_name, display_path, safe_name

# link() refusals after which the entry is renamed instead (the hard link is only the way to never
# replace anything; a rename to a name checked to be free does the same in this private directory).
_LINK_REFUSED = (errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV)


class Reason(msgspec.Struct):
    original: str
    reason: str
    at: str


def _destination(ops: FileOps, quarantine_dir: Path, name: str) -> Path:
    ns = time.time_ns()
    name = safe_name(name)
    while True:
        stamp = timestamps.format_ns(ns).replace(":", "")
        candidate = quarantine_dir / f"{stamp}_{name}"
        if not ops.exists(candidate):
            return candidate
        ns += 1


def _write_reason(ops: FileOps, target: Path, original: Path, reason: str) -> None:
    record = Reason(original=display_path(str(original)), reason=display_name(reason), at=timestamps.format_ns(time.time_ns()))
    fd = ops.open_exclusive(target.with_name(target.name + ".reason"))
    try:
        ops.write_all(fd, msgspec.json.encode(record) + b"\n")
        ops.fsync(fd)
    finally:
        ops.close(fd)


def move(ops: FileOps, quarantine_dir: Path, path: Path, reason: str) -> Path:
    """Move `path` (whatever it is, never opened) into quarantine with `reason`; returns where it
    went. StorageError when it could not be moved (then nothing of it is in quarantine)."""
    target = _destination(ops, quarantine_dir, path.name)
    reason_written = False
    try:
        _write_reason(ops, target, path, reason)
        reason_written = True
        if stat.S_ISREG(ops.stat(path).st_mode) and _linked(ops, path, target):
            ops.fsync_dir(quarantine_dir)
            ops.unlink(path)
        else:
            ops.rename(path, target)  # the entry itself: a FIFO, a link, a directory as a whole...
            ops.fsync_dir(quarantine_dir)
        ops.fsync_dir(path.parent)
    except OSError as exc:
        if reason_written and not ops.exists(target):
            try:  # a reason for a move that did not happen would only mislead
                ops.unlink(target.with_name(target.name + ".reason"))
            except OSError:
                pass
        raise storage_error(exc, f"moving {display_name(path.name)} to quarantine") from exc
    return target


def _linked(ops: FileOps, path: Path, target: Path) -> bool:
    """Hard-link `path` at `target`; False when the kernel refuses links of it (rename instead)."""
    try:
        ops.link(path, target)
    except OSError as exc:
        if exc.errno in _LINK_REFUSED:
            return False
        raise
    return True


def keep_copy(ops: FileOps, quarantine_dir: Path, name: str, data: bytes, original: Path, reason: str) -> Path:
    """Keep a copy of `data` (for example a torn journal tail about to be cut off)."""
    target = _destination(ops, quarantine_dir, name)
    try:
        _write_reason(ops, target, original, reason)
        fd = ops.open_exclusive(target)
        try:
            ops.write_all(fd, data)
            ops.fsync(fd)
        finally:
            ops.close(fd)
        ops.fsync_dir(quarantine_dir)
    except OSError as exc:
        raise storage_error(exc, f"copying {display_name(name)} to quarantine") from exc
    return target
