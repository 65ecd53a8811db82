"""The single I/O seam of the storage layer.

`FileOps` names every file-system call storage makes; `OsFileOps` performs them for real. Storage
modules never call `os` directly for data files, so a test can subclass or wrap `FileOps` to fail
(EIO, ENOSPC, a short write) or crash at call N, and a model file system can stand in to simulate
power loss. Each method is one system call, or the smallest unit that fails as one.

Nothing under the data root is trusted to be what its name says. A read opens with
O_RDONLY|O_NONBLOCK|O_NOFOLLOW|O_NOCTTY|O_CLOEXEC, once lstat said it is a regular file (a device
node is never opened: that alone can have effects), and checks with fstat that it got a regular
file before reading a byte: a FIFO, socket, device node, directory or symbolic link raises
`NotRegularFile` (an OSError, so every caller that handles an unreadable file handles it) instead of
blocking the thread or following the link out of the data root. An append opens the same way.
`list_kinds` says what each directory entry is without following links or opening anything (the
types the directory itself reports). File names are bytes until proven text: `display_name` gives
any name (str with surrogate escapes, or bytes) as readable, encodable text, e.g.
`bad\ufffd.json (not UTF-8: b'bad\\xff.json')`, and `safe_name` one fit to create in quarantine.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

# What is there, in the words reports use (see `kind_of`).
REGULAR = "regular file"
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
_APPEND_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
)


def kind_of(mode: int) -> str:
    """What a file mode (from lstat) describes: "regular file", "directory", "FIFO"..."""
    if stat.S_ISREG(mode):
        return REGULAR
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def a_kind(kind: str) -> str:
    """"a FIFO", "a directory", "an unknown kind of file"..."""
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


class NotRegularFile(OSError):
    """What is at `path` is not a regular file (`kind` says what it is); it was not read."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({a_kind(kind)})", str(path))
        self.kind = kind


def _is_control(code: int) -> bool:
    return code < 0x20 or 0x7F <= code < 0xA0


def is_text_name(name: str) -> bool:
    """Whether a file name is text docpilotd can use as it is: valid UTF-8 (no surrogate escapes)
    without control characters. docpilotd never writes any other name."""
    if name.isascii():
        return name.isprintable()
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(_is_control(ord(c)) for c in name)


def _raw(name: str | bytes | Path) -> bytes:
    """The bytes of a name (what the file system holds)."""
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate that did not come from the file system
        return str(name).encode("utf-8", "surrogatepass")


def display_name(name: str | bytes | Path) -> str:
    """`name` as text that can always be printed, logged and encoded (JSON, UTF-8): control
    characters escaped, and bytes that are not UTF-8 replaced, with the exact bytes after it:
    `bad\ufffd.json (not UTF-8: b'bad\\xff.json')`. Never raises."""
    if isinstance(name, str) and name.isascii() and name.isprintable():
        return name  # the usual case, without any work
    raw = _raw(name)
    try:
        text = raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        valid = False
    shown = "".join(f"\\x{ord(c):02x}" if _is_control(ord(c)) else c for c in text)
    return shown if valid else f"{shown} (not UTF-8: {raw!r})"


def display_path(path: str | bytes | Path) -> str:
    """A path as readable text (see `display_name`): the directories as they are, the last
    component with its exact bytes when they are not UTF-8. Never raises."""
    text = path if isinstance(path, str) else os.fsdecode(path)
    head, sep, tail = text.rpartition("/")
    return (display_name(head) + sep if sep else "") + display_name(tail)


def safe_name(name: str | bytes) -> str:
    """A name to create a copy under (in quarantine): valid UTF-8 without control characters, each
    byte that was not (or each control character) written as %XX."""
    if isinstance(name, str) and is_text_name(name):
        return name
    text = _raw(name).decode("utf-8", "surrogateescape")
    out = []
    for c in text:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as surrogateescape holds it
            out.append(f"%{code - 0xDC00:02X}")
        elif _is_control(code):
            out.append(f"%{code:02X}")
        else:
            out.append(c)
    return "".join(out)


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
        """The entry itself (a symbolic link is not followed)."""
        raise NotImplementedError

    def rename(self, src: Path, dst: Path) -> None:
        """Rename the entry itself, whatever it is (a FIFO, a directory as a whole, a link)."""
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

    def list_kinds(self, path: Path) -> dict[str, str]:
        """Every name in a directory and what it is (`kind_of`), links not followed, nothing
        opened. A name that vanished meanwhile is left out."""
        found = {}
        for name in self.listdir(path):
            try:
                found[name] = kind_of(self.stat(path / name).st_mode)
            except FileNotFoundError:
                continue
            except OSError:
                found[name] = "special file"
        return found

    def list_stats(self, path: Path) -> dict[str, os.stat_result]:
        """Every name in a directory with its lstat (links not followed, nothing opened). A name
        that vanished meanwhile, or that cannot be examined, is left out."""
        found = {}
        for name in self.listdir(path):
            try:
                found[name] = self.stat(path / name)
            except OSError:
                continue
        return found

    def list_regular(self, path: Path) -> dict[str, bool]:
        """Every name in a directory, and whether it is a regular file itself (not a symlink)."""
        return {name: kind == REGULAR for name, kind in self.list_kinds(path).items()}

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
        # Non-blocking and no link followed: a FIFO in the way must not wait for a reader.
        fd = _open_checked(path, _APPEND_FLAGS, mode)
        try:
            os.set_blocking(fd, True)  # a regular file: back to the ordinary mode
        except OSError:
            os.close(fd)
            raise
        return fd

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
        fd = _open_checked(path, _READ_FLAGS)
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
        fd = _open_checked(path, _READ_FLAGS)
        try:
            length = os.fstat(fd).st_size
            return os.pread(fd, size, max(0, length - size))
        finally:
            os.close(fd)

    def listdir(self, path: Path) -> list[str]:
        return os.listdir(path)

    def list_kinds(self, path: Path) -> dict[str, str]:
        # The directory entries' types, without a stat per file (one per entry that is none of a
        # regular file, a directory or a link, or whose type the file system does not report).
        found = {}
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        kind = REGULAR
                    elif entry.is_dir(follow_symlinks=False):
                        kind = "directory"
                    elif entry.is_symlink():
                        kind = "symbolic link"
                    else:
                        kind = kind_of(entry.stat(follow_symlinks=False).st_mode)
                except FileNotFoundError:
                    continue
                except OSError:
                    kind = "special file"
                found[entry.name] = kind
        return found

    def list_stats(self, path: Path) -> dict[str, os.stat_result]:
        # One scandir, and the entries' own lstat: no path object per name.
        found = {}
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    found[entry.name] = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
        return found

    def stat(self, path: Path) -> os.stat_result:
        return os.stat(path, follow_symlinks=False)

    def rename(self, src: Path, dst: Path) -> None:
        os.rename(src, dst)


def _open_checked(path: Path, flags: int, mode: int = 0o600) -> int:
    """Open `path` with `flags` (which hold O_NONBLOCK and O_NOFOLLOW) and return the descriptor
    only if it is a regular file; NotRegularFile (nothing read, nothing waited for) otherwise.

    lstat first: what is not a regular file is not even opened (opening a device node can have
    effects of its own: a loop device is created by opening its node, a tape rewinds). The open
    flags and the fstat after it cover an entry replaced between the two."""
    try:
        there = os.stat(path, follow_symlinks=False).st_mode
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    else:
        if not stat.S_ISREG(there):
            raise NotRegularFile(path, kind_of(there))
    try:
        fd = os.open(path, flags, mode)
    except FileNotFoundError:
        raise
    except OSError as exc:
        # ELOOP (a link), ENXIO (a socket, a FIFO without reader for writing), EISDIR, ENODEV...:
        # say what is there when it is not a regular file.
        try:
            mode_there = os.stat(path, follow_symlinks=False).st_mode
        except OSError:
            raise exc from None
        if not stat.S_ISREG(mode_there):
            raise NotRegularFile(path, kind_of(mode_there)) from None
        raise
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(path, kind_of(st.st_mode))
    return fd


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """At most `limit` bytes (all by default) of the regular file at `path`, opened so that it
    cannot block or follow a link (for code outside the storage layer that reads a file of the
    data root); NotRegularFile when it is not a regular file."""
    fd = _open_checked(path, _READ_FLAGS)
    try:
        if limit is not None:
            return os.read(fd, limit)
        size = os.fstat(fd).st_size
        chunks = []
        while chunk := os.read(fd, max(size, 65536)):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
