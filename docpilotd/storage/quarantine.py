"""The quarantine: where a file that cannot be trusted goes instead of being deleted.

`quarantine/{UTC time}_{original name}` holds the file (moved, or copied when the original must
stay), and `….reason` beside it says where it came from and why, as one JSON object. Nothing here
ever overwrites or deletes: names are unique, and a move is a rename within the data root.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from ..domain import timestamps
from .atomic import storage_error
from .fsops import FileOps


class Reason(msgspec.Struct):
    original: str
    reason: str
    at: str


def _destination(ops: FileOps, quarantine_dir: Path, name: str) -> Path:
    ns = time.time_ns()
    while True:
        stamp = timestamps.format_ns(ns).replace(":", "")
        candidate = quarantine_dir / f"{stamp}_{name}"
        if not ops.exists(candidate):
            return candidate
        ns += 1


def _write_reason(ops: FileOps, target: Path, original: Path, reason: str) -> None:
    record = Reason(original=str(original), reason=reason, at=timestamps.format_ns(time.time_ns()))
    fd = ops.open_exclusive(target.with_name(target.name + ".reason"))
    try:
        ops.write_all(fd, msgspec.json.encode(record) + b"\n")
        ops.fsync(fd)
    finally:
        ops.close(fd)


def move(ops: FileOps, quarantine_dir: Path, path: Path, reason: str) -> Path:
    """Move `path` into quarantine with `reason`; returns where it went."""
    target = _destination(ops, quarantine_dir, path.name)
    try:
        _write_reason(ops, target, path, reason)
        ops.link(path, target)
        ops.fsync_dir(quarantine_dir)
        ops.unlink(path)
        ops.fsync_dir(path.parent)
    except OSError as exc:
        raise storage_error(exc, f"moving {path.name} to quarantine") from exc
    return target


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
        raise storage_error(exc, f"copying {name} to quarantine") from exc
    return target
