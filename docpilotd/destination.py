"""Writing a document or an export where the user asked, without destroying what is there.

Used by the client (on the user's side of the socket, relative to the user's directory, with the
user's umask) and, for the older protocol's `generate` with an absolute `output`, by the daemon:
so it lives beside paths.py and errors.py, shared by both sides, not inside either. Standard
library only, and little of it: the client's import path stays light.

What a target can be, and what happens to it (`write`):

- `-`: standard output.
- a regular file, or a name that does not exist yet in an existing directory: replaced atomically
  (a temp file beside it, all bytes, fsync, rename over it, fsync of the directory). A replaced file
  keeps its permission bits (and, when we can, its owner); a new one gets 0666 less the umask.
- a directory: `{session id}.md` (or `.json`) inside it, by the same rules.
- a symbolic link: followed. Whatever it finally names is written by the rules here: a regular
  file that is the link's target is replaced atomically (the temp file beside the target, not beside
  the link), a dangling link gets its target created; the link itself is never replaced.
- a FIFO or a character device (a terminal, /dev/null): written into, never replaced or truncated.
  A FIFO is opened without blocking first: nobody reading it is a clear error, not a hang.
- the very file standard output is open on (`/dev/stdout`, `/proc/self/fd/1`): standard output.
- a socket, a block device, anything else: refused, untouched.
- anything inside docpilotd's data root or run directory (by path, after following links, and by
  the identity of every directory above it, so a bind mount or a second link is caught too), or one
  of its configuration files: refused, untouched.

Errors are DocpilotErrors with one-line messages: a target that cannot be used is a UsageError
(exit 2), a write the disk refused a StorageError or DiskFull (exit 10), a permission the system
refused PermissionDenied (exit 9).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
from collections.abc import Callable, Sequence

from .errors import DiskFull, DocpilotError, PermissionDenied, StorageError, UsageError

STDOUT = "-"
# What is written: the bytes, or a function that writes them a block at a time to the writer it is
# given (a session read as it arrives: client/streamed.py); an exception it raises leaves a
# replaced file as it was.
Data = bytes | Callable[[Callable[[bytes], object]], None]


class Refusal(UsageError):
    """A target docpilot will not write (kind, place): nothing was written."""


def error_for(exc: OSError, shown: str) -> DocpilotError:
    """The DocpilotError for an OSError raised while writing `shown`."""
    reason = exc.strerror or str(exc)
    message = f"cannot write {shown}: {reason}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(message)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(message)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EEXIST):
        return UsageError(message)
    return StorageError(message)


def write(
    target: str,
    data: Data,
    *,
    name: str,
    forbidden: Sequence[str] = (),
    config_files: Sequence[str] = (),
    special: bool = True,
) -> tuple[str, str]:
    """Write `data` to `target` (see the module docstring). Returns the absolute path that was
    named (a directory's `name` inside it) and where the bytes went: that path, a link's final
    target, or "-" for standard output.

    `forbidden`: directories nothing may be written under; `config_files`: files never written;
    `special`: whether FIFOs, character devices and standard output may be written into (the
    daemon passes False: it never writes into something that can block it)."""
    if target == STDOUT:
        if not special:
            raise Refusal("'-' (standard output) is the client's to write")
        write_stdout(data)
        return STDOUT, STDOUT
    shown = target
    path = os.path.abspath(os.path.expanduser(target))
    st = _stat(path, shown)
    if st is None and target.endswith(os.sep):
        raise Refusal(f"cannot write {shown}: no such directory")
    if st is not None and stat.S_ISDIR(st.st_mode):
        if not name or name in (".", "..") or os.sep in name or name.startswith(".") or "\0" in name:
            raise Refusal(f"cannot write into the directory {shown}: {name!r} is not a usable file name")
        path = os.path.join(path, name)
        shown = os.path.join(target, name)
        st = _stat(path, shown)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise Refusal(f"cannot write {shown}: it is a directory")
    if st is None and not os.path.islink(path):
        real = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    else:
        real = os.path.realpath(path)
    refuse_private(shown, (path, real), forbidden, config_files)
    if st is not None and special and _is_stdout(st):
        write_stdout(data)
        return path, STDOUT
    if st is None or stat.S_ISREG(st.st_mode):
        _replace(real, data, st, shown)
        return path, real
    kind = _kind(st.st_mode)
    if not special or not (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise Refusal(
            f"refusing to write {shown}: it is {kind}; docpilot writes a document into a file or a "
            "directory" + (", a FIFO or a character device" if special else "") + ", and never replaces anything else"
        )
    _write_into(path, data, st, shown, kind)
    return path, path


def write_stdout(data: Data) -> None:
    """All of `data` on standard output, flushed; a full disk or a broken device is one error line."""
    stream = sys.stdout
    if stream is None:
        raise UsageError("there is no standard output to write to")
    try:
        stream.flush()
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            if callable(data):
                data(buffer.write)
            else:
                buffer.write(data)
            buffer.flush()
        else:  # pragma: no cover - a text-only replacement of sys.stdout
            if callable(data):
                data(lambda block: stream.write(block.decode("utf-8", "replace")))
            else:
                stream.write(data.decode("utf-8", "replace"))
            stream.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        discard_stdout()
        raise error_for(exc, "standard output") from None


def discard_stdout() -> None:
    """After a failed write to standard output: send what is still buffered nowhere, so that the
    interpreter's final flush does not fail a second time with a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):
        pass


def _stat(path: str, shown: str) -> os.stat_result | None:
    """stat() following links; None when nothing is there (a dangling link included)."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error_for(exc, shown) from None


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISSOCK, "a socket"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return kind
    return "a special file"


def _is_stdout(st: os.stat_result) -> bool:
    try:
        out = os.fstat(sys.stdout.fileno()) if sys.stdout is not None else None
    except (OSError, AttributeError, ValueError):
        return False
    return out is not None and (out.st_dev, out.st_ino) == (st.st_dev, st.st_ino)


def _forms(path: str) -> set[str]:
    lexical = os.path.normpath(os.path.abspath(os.path.expanduser(path)))
    return {lexical, os.path.realpath(lexical)}


def _under(path: str, place: str) -> bool:
    return path == place or path.startswith(place.rstrip(os.sep) + os.sep)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def refuse_private(shown: str, paths: Sequence[str], forbidden: Sequence[str], config_files: Sequence[str]) -> None:
    """Refuse a target inside docpilotd's own directories or one of its configuration files: by
    path, by resolved path, and by the identity of the target and each directory above it."""
    places = [p for p in forbidden if p]
    files = [f for f in config_files if f]
    for path in paths:
        for form in _forms(path):
            for place in places:
                if any(_under(form, root) for root in _forms(place)):
                    raise Refusal(f"refusing to write {shown}: it is inside docpilotd's data directory {place}; "
                                  "choose another place")
            for config in files:
                if form in _forms(config):
                    raise Refusal(f"refusing to write {shown}: it is docpilotd's configuration file")
    directories = {i: p for p in places if (i := _identity(p)) is not None}
    configs = {i for f in files if (i := _identity(f)) is not None}
    current = os.path.realpath(paths[-1])
    own = _identity(current)
    if own is not None and own in configs:
        raise Refusal(f"refusing to write {shown}: it is docpilotd's configuration file")
    while True:
        found = _identity(current)
        if found is not None and found in directories:
            raise Refusal(f"refusing to write {shown}: it is inside docpilotd's data directory "
                          f"{directories[found]}; choose another place")
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def _write_all(fd: int, data: Data) -> None:
    if callable(data):
        data(lambda block: _write_all(fd, block))
        return
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_into(path: str, data: Data, st: os.stat_result, shown: str, kind: str) -> None:
    """Write into a FIFO or a character device: never created, truncated or replaced."""
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO and stat.S_ISFIFO(st.st_mode):
            raise Refusal(f"nothing is reading the FIFO {shown}; start its reader first (nothing was written)") from None
        raise error_for(exc, shown) from None
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or stat.S_IFMT(opened.st_mode) != stat.S_IFMT(st.st_mode):
            raise Refusal(f"refusing to write {shown}: it changed while it was being opened")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        try:
            _write_all(fd, data)
        except BrokenPipeError:
            raise StorageError(f"cannot write {shown}: its reader closed it before the whole document was written") from None
        except OSError as exc:
            raise error_for(exc, shown) from None
    finally:
        os.close(fd)


def _replace(real: str, data: Data, st: os.stat_result | None, shown: str) -> None:
    """Atomically put `data` at `real` (a regular file, or a new name in an existing directory)."""
    directory, name = os.path.split(real)
    try:
        dir_fd = os.open(directory or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"cannot write {shown}: {directory} is not a directory") from None
    except OSError as exc:
        raise error_for(exc, shown) from None
    temp = f".{name}.{os.urandom(6).hex()}.tmp"
    fd: int | None = None
    created = False
    try:
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666, dir_fd=dir_fd)
            created = True
            if st is not None:
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                mine = os.fstat(fd)
                if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                    try:
                        os.fchown(fd, st.st_uid, st.st_gid)
                        os.fchmod(fd, stat.S_IMODE(st.st_mode))  # chown clears set-id bits
                    except PermissionError:
                        pass
            _write_all(fd, data)
            os.fsync(fd)
            os.close(fd)
            fd = None
            # What is there now must still be a regular file (or nothing): a FIFO or a device that
            # appeared meanwhile is not replaced.
            try:
                now = os.lstat(name, dir_fd=dir_fd)
            except FileNotFoundError:
                now = None
            if now is not None and not stat.S_ISREG(now.st_mode):
                raise Refusal(f"refusing to write {shown}: it became {_kind(now.st_mode)} while being written")
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            created = False
        except OSError as exc:
            raise error_for(exc, shown) from None
        try:
            os.fsync(dir_fd)
        except OSError as exc:
            raise error_for(exc, shown) from None
    finally:
        if fd is not None:
            os.close(fd)
        if created:
            try:
                os.unlink(temp, dir_fd=dir_fd)
            except OSError:
                pass
        os.close(dir_fd)
