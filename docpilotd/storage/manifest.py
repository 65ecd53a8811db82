"""The manifest of finished sessions: what start-up needs of each one, so that it costs one row.

Why: most sessions are finished (stopped or failed), and start-up recovery leaves them as they are
(their own verified snapshot is all there is) and keeps only their outline (the session without
its commands, annotations and events). Reading, decoding and checking every one of them at every
start makes start-up grow with everything ever recorded. The manifest keeps, for each, what
recovery took from it -- the outline, the journal sequence it contains, its checksum, its
counts -- and the identity of the file it was taken from: the name `sessions/{id}.json` and, from
the directory listing (scandir's lstat), its size, mtime_ns, ctime_ns and inode.

When a row stands for the session (recovery decides, see storage.recovery; start-up only):
  - the session's file, as listed, is a regular file of the data root's owner whose identity is
    exactly the row's (a file replaced or edited in place, even at the same size and with its
    mtime set back, has another inode or ctime: the kernel sets ctime, nobody can set it back);
  - the session has no temp file;
  - the journal holds nothing after the row's sequence: no segment at all, or the last one starts
    at sequence + 1 and is an empty regular file of the owner (exactly what recovery would read
    of the journal otherwise: it skips every segment before that one).
Anything else (no row, another identity, journal records or a temp file) is a cache miss: the
session is checked in full as without a manifest. So a row never stands for bytes other than the
ones it was made from, which recovery had verified.

The file, `manifest` in the data root (0600, written atomically, see storage.atomic):
MAGIC, then the CRC-32 (4 bytes, big-endian) of the rest, then the rest: msgpack of `_Body`
(the version, the identity of `sessions/` it describes, the rows). A file that is damaged, of
another version, written for another `sessions/` directory (copied from another data root) or not
a regular file of the owner is ignored and written anew after the next recovery: never an error,
never a reason to quarantine anything, never read by fsck (which checks every file in full).

Invariants: `load` never raises and returns only rows of a file that passed its checksum; `write`
never raises (the manifest is derived: a failure to write it only costs the next start-up time);
nothing here changes a session's files.
"""

from __future__ import annotations

import os
import stat
import zlib

import msgspec

from ..domain.model import Session
from ..errors import StorageError
from .atomic import TEMP_PREFIX, write_atomic
from .store import SessionStore, distrust

NAME = "manifest"
MAGIC = b"docpilotd manifest\n"
VERSION = 1


class Row(msgspec.Struct, array_like=True, frozen=True):
    """One finished session as recovery found it, and the identity of the file it came from."""

    session_id: str
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    seq: int  # the last journal record the file contains
    checksum: str  # the file's own checksum (its `docpilotd` field)
    commands: int
    annotations: int
    outline: Session  # the session without its commands, annotations and events

    def matches(self, st: os.stat_result) -> bool:
        return (st.st_ino, st.st_size, st.st_mtime_ns, _ctime_ns(st)) == (self.ino, self.size, self.mtime_ns, self.ctime_ns)


def _ctime_ns(st: os.stat_result) -> int:
    # A stand-in file system (tests' model of a disk) may not keep a ctime: it then counts as 0.
    return getattr(st, "st_ctime_ns", 0)


def row_of(session_id: str, st: os.stat_result, seq: int, checksum: str, commands: int, annotations: int,
           outline: Session) -> Row:
    return Row(session_id, st.st_ino, st.st_size, st.st_mtime_ns, _ctime_ns(st), seq, checksum, commands,
               annotations, outline)


class _Body(msgspec.Struct, array_like=True):
    version: int
    sessions_dir: tuple[int, int]  # st_dev, st_ino of the sessions/ directory it describes
    rows: list[Row]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Body)


def _sessions_dir(store: SessionStore) -> tuple[int, int] | None:
    try:
        st = store.ops.stat(store.layout.sessions)
    except OSError:
        return None
    return (getattr(st, "st_dev", 0), st.st_ino)  # a stand-in file system may have no devices


def load(store: SessionStore) -> tuple[dict[str, Row], str | None]:
    """The rows by session id, and why the file was ignored (None: it was read, or there is none).
    Never raises."""
    path = store.layout.root / NAME
    try:
        st = store.ops.stat(path)
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, f"cannot examine it: {exc.strerror or exc}"
    why = distrust(st, store.owner_uid)
    if why is not None:
        return {}, why
    try:
        data = store.ops.read_bytes(path)
    except OSError as exc:
        return {}, f"cannot read it: {exc.strerror or exc}"
    head = len(MAGIC) + 4
    if not data.startswith(MAGIC) or len(data) < head:
        return {}, "not a manifest of this daemon"
    body = memoryview(data)[head:]
    if int.from_bytes(data[len(MAGIC) : head], "big") != zlib.crc32(body):
        return {}, "checksum mismatch"
    try:
        decoded = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        return {}, f"undecodable: {exc}"
    if decoded.version != VERSION:
        return {}, f"version {decoded.version}, this daemon writes {VERSION}"
    if decoded.sessions_dir != _sessions_dir(store):
        return {}, "written for another sessions/ directory"
    return {row.session_id: row for row in decoded.rows}, None


def write(store: SessionStore, rows: list[Row]) -> str | None:
    """Replace the manifest with `rows`; None when written, else why not. Never raises."""
    where = _sessions_dir(store)
    if where is None:
        return "sessions/ cannot be examined"
    body = _encoder.encode(_Body(VERSION, where, rows))
    root = store.layout.root
    _remove_leftovers(store)
    try:
        write_atomic(store.ops, root / NAME, [MAGIC + zlib.crc32(body).to_bytes(4, "big"), body])
    except StorageError as exc:
        return exc.message
    return None


def _remove_leftovers(store: SessionStore) -> None:
    """Temp files of an interrupted write of the manifest (derived data: nothing to keep)."""
    root = store.layout.root
    prefix = f"{TEMP_PREFIX}{NAME}."
    try:
        names = [n for n in store.ops.listdir(root) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        try:
            if stat.S_ISREG(store.ops.stat(root / name).st_mode):
                store.ops.unlink(root / name)
        except OSError:
            pass
