"""Writing a generated document: where it goes, and writing it atomically.

The destination is the path the client asked for (already absolute: the client resolves it
against its own directory), else the session's `output_file` (`~` expanded, a relative path taken
from the session's working directory), else none (the client prints the document). A directory
gets `{session id}.md` inside it. A path inside the data root's own directories is refused: those
hold the daemon's files only.

The write is atomic: a unique temp file beside the destination (created exclusively), all bytes,
fsync, rename over the destination, fsync of the directory. A reader of the destination sees the
old document or the new one, never a mix. A new file gets the usual permissions for a document
(0666 less the daemon's umask); a replaced file keeps its permission bits.

These functions run in the daemon's I/O pool (`freeze` runs on the loop: pointer copies only).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import msgspec

from ..domain.model import Session
from ..errors import StorageError, UsageError
from ..paths import Layout
from ..storage.atomic import storage_error
from . import markdown


def freeze(session: Session) -> Session:
    """A view of the session that later changes cannot alter, at the cost of pointer copies.

    The loop keeps appending to the live session's lists while a thread renders; items are never
    mutated once appended (see storage.snapshot), so copying the lists is enough."""
    return msgspec.structs.replace(
        session, commands=list(session.commands), annotations=list(session.annotations), events=[]
    )


def destination(session: Session, requested: str | None, layout: Layout) -> Path | None:
    """Where the document of `session` goes, or None when it should be returned as text."""
    if requested:
        path = Path(requested)
        if not path.is_absolute():
            raise UsageError("generate needs an absolute output path (the client resolves it)")
    elif session.output_file:
        path = Path(session.output_file).expanduser()
        if not path.is_absolute():
            base = Path(session.metadata.working_directory or "/").expanduser()
            path = base / path
    else:
        return None
    path = Path(os.path.normpath(path))
    if path.is_dir():
        path = path / f"{session.id}.md"
    _refuse_data_root(path, layout)
    return path


def _refuse_data_root(path: Path, layout: Layout) -> None:
    resolved = path.parent.resolve() / path.name
    for directory in (*layout.data_dirs()[1:], layout.run_dir):
        try:
            inside = resolved.is_relative_to(directory.resolve())
        except OSError:  # pragma: no cover - resolve() does not fail on missing paths
            inside = False
        if inside:
            raise UsageError(f"{path} is inside docpilotd's data directory {directory}; choose another place")


def write_document(path: Path, text: str) -> int:
    """Atomically replace `path` with `text` (UTF-8); returns the number of bytes written."""
    data = text.encode("utf-8", "replace")
    directory = path.parent
    if not directory.is_dir():
        raise StorageError(f"cannot write {path}: {directory} is not a directory")
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise storage_error(exc, f"writing {path}") from exc
    temp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd: int | None = None
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
        if mode is not None:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.replace(temp, path)
    except OSError as exc:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise storage_error(exc, f"writing {path}") from exc
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise storage_error(exc, f"syncing the directory of {path}") from exc
    return len(data)


def generate(session: Session, requested: str | None, layout: Layout) -> dict[str, object]:
    """Render and write (or return) the document; the result the client gets."""
    text = markdown.render(session)
    result: dict[str, object] = {
        "session": session.id, "commands": len(session.commands), "annotations": len(session.annotations),
    }
    path = destination(session, requested, layout)
    if path is None:
        result["markdown"] = text
        return result
    result["path"] = str(path)
    result["bytes"] = write_document(path, text)
    return result
