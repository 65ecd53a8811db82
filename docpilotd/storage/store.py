"""The snapshot store: saving sessions with backup generations, and reading them back.

Save of session S (only when S changed):
  1. If `sessions/S.json` exists and is trusted (it is the file we last wrote, by inode, size and
     mtime, or it decodes and validates), hard-link it to a new backup generation and sync
     `backups/`. A file that is not trusted goes to quarantine instead: it never becomes a backup.
  2. Write the new snapshot atomically (see `atomic`).
  3. Only after 1 and 2 succeeded, remove the oldest generations beyond `backups_kept`.
  4. With `compress_backups` (the daemon's store), compress every generation but the newest that
     is still plain (normally the one that was newest before step 1), from the generations the
     store keeps (no listing): its bytes as one zstd frame in `{name}.zst` (see `compression`),
     written atomically (temp file, fsync, rename, directory fsync), read back and checked to
     decompress to the very same bytes, and only then is the plain file unlinked. A crash at any
     point leaves the plain file, or both (see `backups`: one generation), or the compressed one;
     a failure leaves the plain file and is retried at the next save. The newest generation
     stays plain JSON under DocPilot's name (DocPilot reads it).

At every instant the store holds a valid copy of the last saved state: the old snapshot until the
rename, the new one after it; the backup that step 1 made is never removed in the same save.

What is trusted: only regular files owned by the owner of the data root (the daemon's own user: the
daemon and `fsck --repair` refuse a root that is not theirs) are ever read as a session. Anything
else at a session's path -- a FIFO, socket, device node, symbolic link or directory, or a file
another user owns (only root can put one there; its content did not come from docpilotd, and the
daemon may be unable to read, link or replace it) -- reads as unusable with the reason, is never
opened for reading (`read` looks with lstat first; FileOps' reads refuse it anyway), and is moved to
quarantine as it is (the entry itself) when a save or recovery needs the place.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..domain import retention
from ..domain.model import Session
from ..errors import DocpilotError, StorageError
from ..paths import Layout
from . import backups, compression, quarantine, snapshot
from .atomic import storage_error, write_atomic
from .fsops import FileOps, OsFileOps, a_kind, kind_of

log = logging.getLogger(__name__)


def local_offset(ns: int) -> int:
    """Seconds east of UTC of the machine's local time at `ns`: the days and hours a retention
    policy's buckets follow are the user's."""
    return time.localtime(ns // 1_000_000_000).tm_gmtoff


def owner_of(root: Path) -> int:
    """Whose files the data root holds: the owner of its directory (this process's user when it
    does not exist yet)."""
    try:
        return os.stat(root).st_uid
    except OSError:
        return os.geteuid()


def distrust(st: os.stat_result, owner: int | None) -> str | None:
    """Why the entry `st` (from lstat) is not to be read as one of docpilotd's files, or None."""
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file: {a_kind(kind_of(st.st_mode))}"
    if owner is not None and st.st_uid != owner:
        return f"owned by another user (uid {st.st_uid}, the data root's owner is uid {owner}): not trusted"
    return None


@dataclass(frozen=True)
class Identity:
    """What we know of a file we wrote: enough to recognise it without reading it back."""

    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class SaveResult:
    path: Path
    identity: Identity
    backup: Path | None = None
    quarantined: Path | None = None
    removed_backups: list[Path] = field(default_factory=list)
    # Generations compressed by this save: the inode of each compressed file and the journal
    # sequence it holds (the engine's trim goes by a backup's sequence, known by inode).
    compressed: dict[int, int] = field(default_factory=dict)


class SessionStore:
    def __init__(self, layout: Layout, ops: FileOps | None = None, backups_kept: int = 5,
                 compress_backups: bool = False, clock: Callable[[], int] = time.time_ns) -> None:
        self.layout = layout
        self.ops = ops or OsFileOps()
        self.backups_kept = backups_kept
        # The wall clock (ns) that names generations and dates a retention policy's buckets: a
        # test steps it through a month; nothing else here reads the time.
        self.clock = clock
        # Step 4 of a save (the daemon turns it on; every store reads both forms either way).
        self.compress_backups = compress_backups
        self._written: dict[str, Identity] = {}
        # Files being put in place (complete, renamed or about to be, directory not yet synced):
        # already ours, so the watcher never takes our own save for another program's change.
        self._placing: dict[str, Identity] = {}
        self._last_backup_ns = 0
        self._named_after: dict[str, int] = {}  # per session: the newest backup name seen on disk
        # Per session: its backups, oldest first, as listed once and then as this store made and
        # removed them (`generations`), so a save does not list backups/, which holds every
        # session's generations (hundreds of thousands of names with 100,000 sessions).
        self._generations: dict[str, list[backups.Backup]] = {}
        self.owner_uid = owner_of(layout.root)  # see the module docstring: whose files are trusted

    # -- what we wrote -------------------------------------------------------------------------

    def written_identity(self, session_id: str) -> Identity | None:
        return self._written.get(session_id)

    def remember(self, session_id: str, identity: Identity) -> None:
        self._written[session_id] = identity

    def forget(self, session_id: str) -> None:
        self._written.pop(session_id, None)

    def is_own_file(self, session_id: str) -> bool:
        """Whether `sessions/{id}.json` is still exactly the file we last wrote (or are writing:
        one that took the name while its save has not returned yet)."""
        known = (self._written.get(session_id), self._placing.get(session_id))
        if known == (None, None):
            return False
        try:
            return Identity.of(self.ops.stat(self.layout.session_file(session_id))) in known
        except OSError:
            return False

    # -- saving ----------------------------------------------------------------------------------

    def save(self, session: Session, seq: int) -> SaveResult:
        """Durably write `session` (containing journal records up to `seq`) as its snapshot."""
        data = snapshot.encode(session, seq)
        return self.save_encoded(session.id, data)

    def save_encoded(
        self, session_id: str, data: bytes | Sequence[bytes], policy: retention.RetentionPolicy | None = None
    ) -> SaveResult:
        """Save bytes already produced by `snapshot.encode` or `snapshot.encode_captured` (encoding
        may happen elsewhere); the generations kept are the session's `policy`'s (without one, the
        `backups_kept` newest)."""
        path = self.layout.session_file(session_id)
        backup, quarantined = self._preserve_current(session_id, path)
        try:
            st = write_atomic(self.ops, path, data,
                              before_replace=lambda new: self._placing.__setitem__(session_id, Identity.of(new)))
            identity = Identity.of(st)
            self._written[session_id] = identity
        finally:
            self._placing.pop(session_id, None)
        result = SaveResult(path=path, identity=identity, backup=backup, quarantined=quarantined)
        if backup is not None:
            result.removed_backups = self.rotate(session_id, keep_newest=backup, policy=policy)
            if self.compress_backups:
                result.compressed = self.compress_older(session_id)
        return result

    def _preserve_current(self, session_id: str, path: Path) -> tuple[Path | None, Path | None]:
        """Step 1: make the current snapshot a backup, or quarantine it if it is not trusted."""
        try:
            st = self.ops.stat(path)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise storage_error(exc, f"examining {path.name}") from exc
        why = distrust(st, self.owner_uid)
        if why is not None:  # never opened: moved aside as it is (a FIFO, a directory...)
            return None, quarantine.move(self.ops, self.layout.quarantine, path, why)
        if self._written.get(session_id) != Identity.of(st):
            try:
                data = self.ops.read_bytes(path)
            except OSError as exc:
                raise storage_error(exc, f"reading {path.name}") from exc
            decoded = snapshot.decode(data, session_id)
            if not decoded.usable:
                # A copy goes to quarantine and the file stays until the atomic replace of step 2:
                # a reader of sessions/ never finds the session's file missing, even for a moment.
                reason = decoded.problem or "checksum mismatch"
                return None, quarantine.keep_copy(self.ops, self.layout.quarantine, path.name, data, path, reason)
        try:
            target = self._new_backup_path(session_id)
            self._link_or_copy(path, target)
            self.ops.fsync_dir(self.layout.backups)
        except OSError as exc:
            self.forget_generations(session_id)
            raise storage_error(exc, f"backing up {path.name}") from exc
        known = self._generations.get(session_id)
        made = backups.parse_name(self.layout.backups, target.name)
        if known is not None and made is not None:
            known.append(made)  # the newest name: the list stays oldest first
        return target, None

    def compress_older(self, session_id: str) -> dict[int, int]:
        """Step 4 of a save: compress every generation but the newest that is plain. Returns
        the compressed files' inodes with their sequences. Never raises: a generation that cannot
        be compressed now stays plain (valid) and is tried again at the next save."""
        made: dict[int, int] = {}
        generations = self.generations(session_id)
        for backup in generations[:-1]:
            if backup.compressed:
                continue
            try:
                done = self.compress(backup)
            except DocpilotError as exc:
                log.warning("backup %s stays uncompressed for now: %s", backup.name, exc)
                continue
            if done is None:
                continue
            compressed, ino, seq = done
            made[ino] = seq
            known = self._generations.get(session_id)
            if known is not None:
                self._generations[session_id] = [compressed if g == backup else g for g in known]
        return made

    def compress(self, backup: backups.Backup) -> tuple[backups.Backup, int, int] | None:
        """Replace a plain generation with its compressed copy (see step 4 in the module
        docstring): the new Backup, the compressed file's inode and the sequence it holds; None
        when the plain file is gone. StorageError when it could not be done (the plain file is
        then still there, and a compressed file that does not read back is removed)."""
        plain_path = backup.path
        try:
            data = self.ops.read_bytes(plain_path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(exc, f"reading {backup.name}") from exc
        target = backup.directory / backups.compressed_name(backup.name)
        existing = self._content_of(target) if backup.twin is not None else None
        if existing is not None and existing != data and snapshot.decode(existing).usable and not snapshot.decode(data).usable:
            # Both forms were left, and the plain one was damaged since: the compressed one is
            # the generation (never overwritten with the damage), the plain one goes to quarantine.
            quarantine.move(self.ops, self.layout.quarantine, plain_path, "damaged; its compressed copy is intact")
            data = existing
        else:
            if existing != data:  # else the compressed copy is already complete and right
                packed = compression.compress(data)
                write_atomic(self.ops, target, packed)
                try:
                    back = self.ops.read_bytes(target)
                except OSError:
                    back = b""
                if back != packed or not compression.holds(packed, data):
                    try:
                        self.ops.unlink(target)
                    except OSError:
                        pass  # listed as the plain file's twin: replaced by the next attempt
                    raise StorageError(f"compressing {backup.name}: it does not read back as the same bytes")
            try:
                self.ops.unlink(plain_path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                # Both are there: one generation (see backups), compressed again at the next save.
                raise storage_error(exc, f"removing {backup.name} once compressed") from exc
            # No directory fsync: a crash that undoes the unlink leaves both files, which is allowed.
        try:
            ino = self.ops.stat(target).st_ino
        except OSError as exc:
            raise storage_error(exc, f"examining {target.name}") from exc
        seq = snapshot.seq_from_tail(data[-snapshot.TAIL_BYTES :])
        if seq is None:
            decoded = snapshot.decode(data)
            seq = decoded.seq if decoded.session is not None else 0
        return backup._replace(name=target.name, twin=None), ino, seq

    def _content_of(self, path: Path) -> bytes | None:
        """The decompressed content of a compressed file, None when it cannot be had."""
        try:
            return compression.decompress(self.ops.read_bytes(path))[0]
        except OSError:
            return None

    def generations(self, session_id: str) -> list[backups.Backup]:
        """The session's backups, oldest first: listed from backups/ the first time (regular files
        of the data root's owner), then kept as this store makes and rotates them. Another part
        that adds or removes backups of the session says so (`forget_generations`); a file
        removed behind the store's back only stays listed until then (rotation and trimming
        skip a file that is gone)."""
        known = self._generations.get(session_id)
        if known is None:
            known = backups.for_session(self.ops, self.layout.backups, session_id, self.owner_uid)
            self._generations[session_id] = known
        return list(known)

    def forget_generations(self, session_id: str | None = None) -> None:
        """List the session's backups (every session's, with None) from the disk again next time."""
        if session_id is None:
            self._generations.clear()
        else:
            self._generations.pop(session_id, None)

    def _new_backup_path(self, session_id: str) -> Path:
        # Strictly increasing even if the clock stalls or steps back, in this run or since an
        # earlier one (or DocPilot's whole second): names never collide, and the newest content
        # always has the newest name, which is what rotation and recovery go by.
        # Only the first backup of a session in this run needs to look at the disk.
        if session_id not in self._named_after:
            existing = backups.for_session(self.ops, self.layout.backups, session_id, self.owner_uid)
            self._named_after[session_id] = existing[-1].ns if existing else 0
        ns = max(self.clock(), self._last_backup_ns + 1, self._named_after[session_id] + 1)
        self._last_backup_ns = ns
        return self.layout.backups / backups.backup_name(session_id, ns)

    def _link_or_copy(self, src: Path, dst: Path) -> None:
        try:
            self.ops.link(src, dst)
            return
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
        data = self.ops.read_bytes(src)
        fd = self.ops.open_exclusive(dst)
        try:
            self.ops.write_all(fd, data)
            self.ops.fsync(fd)
        finally:
            self.ops.close(fd)

    def rotate(
        self, session_id: str, keep_newest: Path | None = None, policy: retention.RetentionPolicy | None = None
    ) -> list[Path]:
        """Remove the generations `policy` does not keep (domain/retention.py: the newest always
        stays, and one is removed only when a newer one is kept), or without a policy those beyond
        the `backups_kept` newest; never `keep_newest` (the one this save made).

        Generations that are hard links of one file count once (they are one generation).
        """
        generations = self.generations(session_id)
        distinct: list[backups.Backup] = []
        duplicates: list[backups.Backup] = []
        seen: set[int] = set()
        for backup in reversed(generations):  # newest first
            try:
                ino = self.ops.stat(backup.path).st_ino
            except OSError:
                continue
            (duplicates if ino in seen else distinct).append(backup)
            seen.add(ino)
        if policy is None:
            doomed = distinct[self.backups_kept :]
        else:
            now = self.clock()
            plan = retention.plan(
                (retention.Generation(b.ns, True, b.name) for b in distinct), policy, now,
                tz_offset_seconds=local_offset(now),
            )
            removed_names = {g.name for g in plan.remove}
            doomed = [b for b in distinct if b.name in removed_names]
        doomed += [d for d in duplicates if d.path != keep_newest]
        removed: list[Path] = []
        for backup in doomed:
            if backup.path == keep_newest:
                continue
            self._unlink_generation(session_id, backup)
            removed.append(backup.path)
        self._drop_generations(session_id, removed)
        return removed

    def remove_generation(self, session_id: str, backup: backups.Backup) -> int:
        """Remove one generation (and its compressed twin) that is not the session's newest, as a
        storage quota asks; returns the bytes freed (0: already gone, or the newest)."""
        known = self.generations(session_id)
        if not known or backup.path == known[-1].path or backup.path not in {g.path for g in known}:
            return 0
        freed = 0
        for path in backup.paths:
            try:
                freed += self.ops.stat(path).st_size
            except OSError:
                continue
        self._unlink_generation(session_id, backup)
        self._drop_generations(session_id, [backup.path])
        return freed

    def _unlink_generation(self, session_id: str, backup: backups.Backup) -> None:
        # No directory fsync here: an unlink that a crash undoes only brings back an old, valid
        # generation (removed again by the next rotation). The power-loss suite shows that this
        # fsync protects nothing, while the one after the link in _preserve_current is required.
        for path in reversed(backup.paths):  # a twin first: the plain file is the generation
            try:
                self.ops.unlink(path)
            except FileNotFoundError:
                pass  # gone already: not a generation any more
            except OSError as exc:
                self.forget_generations(session_id)
                raise storage_error(exc, f"removing old backup {path.name}") from exc

    def _drop_generations(self, session_id: str, removed: list[Path]) -> None:
        """The store's list of the session's generations, without those just removed."""
        if session_id in self._generations and removed:
            gone = set(removed)
            self._generations[session_id] = [g for g in self._generations[session_id] if g.path not in gone]

    # -- reading ---------------------------------------------------------------------------------

    def read(self, path: Path, expected_id: str | None = None, trust_finished: bool = False) -> snapshot.Decoded:
        """Decode one snapshot or backup file; unreadable files give a Decoded with a problem
        (`trust_finished`: see snapshot.decode). Anything but a regular file of the data root's
        owner is not opened: its problem says what it is."""
        try:
            why = distrust(self.ops.stat(path), self.owner_uid)
        except FileNotFoundError:
            return snapshot.Decoded(None, problem="file not found")
        except OSError as exc:
            return snapshot.Decoded(None, problem=f"cannot read: {exc.strerror or exc}")
        if why is not None:
            return snapshot.Decoded(None, problem=why)
        try:
            data = self.ops.read_bytes(path)
        except FileNotFoundError:
            return snapshot.Decoded(None, problem="file not found")
        except OSError as exc:
            return snapshot.Decoded(None, problem=f"cannot read: {exc.strerror or exc}")
        if path.name.endswith(backups.COMPRESSED_SUFFIX):
            plain, problem = compression.decompress(data)
            if plain is None:
                return snapshot.Decoded(None, problem=f"compressed backup: {problem}")
            data = plain
        return snapshot.decode(data, expected_id, trust_finished)

    def read_seq(self, path: Path) -> int:
        """The journal sequence a snapshot or backup file contains, 0 when it has none or cannot
        be read. Read from the file's last bytes when they hold our field (see
        `snapshot.seq_from_tail`; of a compressed generation, from the end of its content), else
        from the decoded file."""
        if path.name.endswith(backups.COMPRESSED_SUFFIX):
            # A zstd frame has no readable tail: decompressed keeping only the end (once per file:
            # the engine keeps the sequence by inode, and is told it for those its saves compress).
            try:
                end = compression.tail(self.ops.read_bytes(path), snapshot.TAIL_BYTES)
            except OSError:
                return 0
            seq = snapshot.seq_from_tail(end) if end is not None else 0
        else:
            try:
                seq = snapshot.seq_from_tail(self.ops.read_tail(path, snapshot.TAIL_BYTES))
            except OSError:
                return 0
        if seq is None:
            decoded = self.read(path)
            seq = decoded.seq if decoded.session is not None else 0
        return seq

    def load(self, session_id: str) -> Session:
        """The session (a plain `Session`, as recovery gives) from its snapshot; raises StorageError
        if the snapshot is not usable."""
        decoded = self.read(self.layout.session_file(session_id), session_id)
        if not decoded.usable or decoded.session is None:
            raise StorageError(f"session {session_id}: {decoded.problem or 'checksum mismatch'}")
        return snapshot.plain_session(decoded.session)
