"""The seed's maintenance operations: backup info, cleanup, storage statistics, export and import.

Cleanup removes stopped (or failed) sessions, with their backups and journal, once their last
change is older than the cutoff, and backups older than the cutoff of sessions that are not live.
Backups are plain or compressed (`.json.zst`, see storage.compression): each is read, counted and
removed in either form, a generation with both forms as one.
A live (Active or Paused) session is never touched. Import validates everything first and never
overwrites an existing session.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

import msgspec

from ..domain import timestamps
from ..domain.model import Session, is_live, state_name
from ..errors import DocpilotError, InvalidSession, StorageError, UsageError
from . import backups, journal, snapshot
from .atomic import storage_error, write_atomic
from .fsops import OsFileOps
from .store import SessionStore


class BackupInfo(msgspec.Struct, omit_defaults=True):
    name: str
    time: str
    size: int
    # What the generation holds (read from it): its state, counts and whether it verifies; None
    # when it cannot be read (then `problem` says why).
    state: str | None = None
    commands: int | None = None
    annotations: int | None = None
    problem: str | None = None
    # Why the session's backup policy keeps it (filled in by the runtime, which knows the policy).
    kept_for: list[str] | None = None


class StorageStats(msgspec.Struct):
    session_count: int
    backup_count: int
    total_size: int
    backup_size: int
    journal_size: int
    quarantine_count: int


class CleanupResult(msgspec.Struct):
    removed_sessions: list[str]
    removed_backups: list[str]
    dry_run: bool = False  # what would be removed: nothing was


def backup_info(store: SessionStore, session_id: str) -> list[BackupInfo]:
    """Generations of one session, newest first, each read to say what it holds (a handful of
    files: `backups_kept`)."""
    found: list[BackupInfo] = []
    for backup in reversed(backups.for_session(store.ops, store.layout.backups, session_id, store.owner_uid)):
        try:
            size = store.ops.stat(backup.path).st_size
        except OSError:
            continue
        info = BackupInfo(name=backup.name, time=timestamps.format_ns(backup.ns), size=size)
        try:
            decoded = store.read(backup.path, session_id)
        except DocpilotError as exc:
            info.problem = exc.message
        else:
            if decoded.session is not None and decoded.usable:
                info.state = state_name(decoded.session.state)
                info.commands = len(decoded.session.commands)
                info.annotations = len(decoded.session.annotations)
            else:
                info.problem = decoded.problem or "does not verify"
        found.append(info)
    return found


def _dir_usage(store: SessionStore, directory: Path, suffix: str | tuple[str, ...] | None = None) -> tuple[int, int]:
    count = size = 0
    try:
        names = store.ops.listdir(directory)
    except FileNotFoundError:
        return 0, 0
    for name in names:
        if suffix and not name.endswith(suffix):
            continue
        try:
            st = store.ops.stat(directory / name)
        except OSError:
            continue
        count += 1
        size += st.st_size
    return count, size


def storage_stats(store: SessionStore) -> StorageStats:
    layout = store.layout
    sessions, session_bytes = _dir_usage(store, layout.sessions, ".json")
    backup_count, backup_bytes = _dir_usage(store, layout.backups, (".json", backups.COMPRESSED_SUFFIX))
    _, journal_bytes = _dir_usage(store, layout.journal)
    _quarantined, quarantine_bytes = _dir_usage(store, layout.quarantine)
    return StorageStats(
        session_count=sessions,
        backup_count=backup_count,
        total_size=session_bytes + backup_bytes + journal_bytes + quarantine_bytes,
        backup_size=backup_bytes,
        journal_size=journal_bytes,
        quarantine_count=sum(1 for n in _names(store, layout.quarantine) if not n.endswith(".reason")),
    )


def _names(store: SessionStore, directory: Path) -> list[str]:
    try:
        return store.ops.listdir(directory)
    except FileNotFoundError:
        return []


def cleanup(
    store: SessionStore, sessions: Iterable[Session], max_age_days: float, now_ns: int, dry_run: bool = False
) -> CleanupResult:
    """Remove old stopped sessions and old backups of sessions that are not live (`dry_run`:
    only say which).

    `sessions` is every known session (the daemon passes its registry), so the decision never
    rests on a file that might be stale.
    """
    cutoff = now_ns - int(max_age_days * 86400 * 1_000_000_000)
    removed_sessions: list[str] = []
    removed_backups: list[str] = []
    live = set()
    for session in sessions:
        if is_live(session):
            live.add(session.id)
            continue
        if timestamps.parse_ns(session.updated_at) < cutoff:
            if not dry_run:
                remove_session_files(store, session.id)
            removed_sessions.append(session.id)
    by_session, _ = backups.scan(store.ops, store.layout.backups)
    for session_id, generations in by_session.items():
        if session_id in live or session_id in removed_sessions:
            continue
        for backup in generations:
            if backup.ns < cutoff:
                if not dry_run:
                    for path in backup.paths:
                        unlink_file(store, path)
                removed_backups.append(backup.name)
    if not dry_run:
        sync_dir(store, store.layout.backups)
    return CleanupResult(removed_sessions=removed_sessions, removed_backups=removed_backups, dry_run=dry_run)


def _files_of(store: SessionStore, session_id: str) -> list[Path]:
    """Every file of a session: its backups, journal segments and main file (a directory where
    the main file would be was never the session's)."""
    found = [path for backup in backups.for_session(store.ops, store.layout.backups, session_id) for path in backup.paths]
    found += [segment for _, segment in journal.segments_of(store.ops, store.layout.journal, session_id)]
    main = store.layout.session_file(session_id)
    try:
        if not stat.S_ISDIR(store.ops.stat(main).st_mode):
            found.append(main)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise storage_error(exc, f"examining {main.name}") from exc
    return found


def session_files(store: SessionStore, session_id: str) -> list[str]:
    """What `remove_session_files` would remove (relative to the root), removing nothing."""
    return [f"{path.parent.name}/{path.name}" for path in _files_of(store, session_id)]


def remove_session_files(store: SessionStore, session_id: str) -> list[str]:
    """Delete a session everywhere: main file, backups, journal. Only on an explicit request."""
    removed: list[str] = []
    for path in _files_of(store, session_id):
        unlink_file(store, path)
        removed.append(f"{path.parent.name}/{path.name}")
    store.forget(session_id)
    for directory in (store.layout.backups, store.layout.journal, store.layout.sessions):
        sync_dir(store, directory)
    return removed


def unlink_file(store: SessionStore, path: Path) -> bool:
    """Remove `path`; False when it was already gone, StorageError for any other failure."""
    try:
        store.ops.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise storage_error(exc, f"removing {path.name}") from exc
    return True


def sync_dir(store: SessionStore, directory: Path) -> None:
    """fsync a directory of the data root (a missing one is fine); StorageError on failure."""
    try:
        store.ops.fsync_dir(directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise storage_error(exc, f"syncing {directory.name}/") from exc


def export_session(session: Session, destination: Path) -> Path:
    """Write the session as DocPilot JSON to `destination`, atomically (re-importable)."""
    destination = destination.expanduser().absolute()
    if destination.is_dir():
        destination = destination / f"{session.id}.json"
    try:
        write_atomic(OsFileOps(), destination, snapshot.encode_plain(session))
        os.chmod(destination, 0o600)
    except OSError as exc:
        raise storage_error(exc, f"exporting to {destination}") from exc
    return destination


def parse_import(data: bytes, source: str) -> Session:
    """A session from exported (or DocPilot) JSON; InvalidSession listing every problem."""
    decoded = snapshot.decode(data)
    if decoded.session is None or decoded.problem is not None:
        raise InvalidSession(f"{source}: {decoded.problem}", [decoded.problem or "invalid"])
    if decoded.integrity == "mismatch":
        raise InvalidSession(f"{source}: checksum mismatch: the file changed after it was written")
    return snapshot.plain_session(decoded.session)


def read_import_file(path: Path) -> bytes:
    """The bytes of a file to import; only a regular file is read (a FIFO would block the reading
    thread forever, and a device such as /dev/zero never ends)."""
    try:
        # O_NONBLOCK: opening a FIFO that has no writer must not wait for one.
        fd = os.open(path.expanduser(), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as exc:
        # The user named a file that is not there or not theirs to read: a usage mistake, not
        # a storage failure of the daemon's.
        raise UsageError(f"cannot import {path}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"cannot import {path}: not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
