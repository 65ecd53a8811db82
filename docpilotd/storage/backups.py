"""Backup generations: `backups/{id}_{seconds}.{nanoseconds}.json`, older ones `.json.zst`.

DocPilot names backups with whole seconds, so two saves in one second overwrote each other; ours add
nine digits of nanoseconds and are created exclusively, so a name never collides. Generations are
ordered by the time in their name, never by mtime (which copies and restores change), and
DocPilot's second-named files sort among ours by the same key. Only regular files with text names
are backups: anything else that has a backup's name (a directory, FIFO, socket, device node or
symlink, or a name that is not UTF-8) is never read, rotated or removed; `scan_entries` lists it
among the strays, which recovery reports and moves to quarantine as they are.

Every generation but the newest is kept compressed (see `compression` and `SessionStore`): the
same name with `.zst` after it. A crash while one is being compressed can leave both the plain
file and its compressed twin: that is one generation, listed once, as the plain file (which is
preferred: it is read without decompressing), with the twin's name in `Backup.twin`, so whatever
removes the generation removes both.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import NamedTuple

from .atomic import storage_error
from .fsops import REGULAR, FileOps, a_kind, is_text_name

_NAME = re.compile(r"(?P<id>[^/_]+)_(?P<sec>\d{1,19})(?:\.(?P<frac>\d{9}))?\.json(?:\.zst)?\Z")
COMPRESSED_SUFFIX = ".json.zst"


class Backup(NamedTuple):
    """One generation. A tuple (quick to make for every backup of a large root), ordered by its
    fields: oldest first."""

    ns: int  # first, so generations sort oldest first
    session_id: str
    name: str
    # The name and its directory, not a path: listing a root of many sessions makes no path
    # object per backup; only a backup that is read or removed needs one.
    directory: Path
    # A plain generation's compressed copy, when an interrupted compression left both.
    twin: str | None = None

    @property
    def path(self) -> Path:
        return self.directory / self.name

    @property
    def compressed(self) -> bool:
        return self.name.endswith(COMPRESSED_SUFFIX)

    @property
    def paths(self) -> list[Path]:
        """Every file of this generation: itself and its twin (what removing it removes)."""
        return [self.path] if self.twin is None else [self.path, self.directory / self.twin]


def backup_name(session_id: str, ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{session_id}_{seconds}.{fraction:09d}.json"


def compressed_name(name: str) -> str:
    """The name of a plain generation's compressed copy."""
    return name if name.endswith(COMPRESSED_SUFFIX) else name + ".zst"


def locate(ops: FileOps, directory: Path, name: str) -> Backup | None:
    """The generation a person names: `name` as listed, or, when a rotation compressed it since
    (or the name was typed without `.zst`), its other form. None when neither is a regular file
    (nothing is opened)."""
    first = parse_name(directory, name)
    if first is None:
        return None
    other = name[: -len(".zst")] if first.compressed else compressed_name(name)
    for candidate in (name, other):
        if is_regular_file(ops, directory / candidate):
            return first._replace(name=candidate)
    return None


def parse_name(directory: Path, name: str) -> Backup | None:
    match = _NAME.match(name)
    if match is None:
        return None
    ns = int(match["sec"]) * 1_000_000_000 + int(match["frac"] or 0)
    return Backup(ns=ns, session_id=match["id"], name=name, directory=directory)


def is_regular_file(ops: FileOps, path: Path, owner: int | None = None) -> bool:
    """Whether `path` is a regular file itself (not a directory, and not a symlink to anything),
    and, with `owner`, one that user owns."""
    try:
        st = ops.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (owner is None or st.st_uid == owner)


def scan(ops: FileOps, directory: Path) -> tuple[dict[str, list[Backup]], list[str]]:
    """Backups per session id (oldest first) and the names that are not backups (strays included)."""
    by_session, junk, strays = scan_entries(ops, directory)
    return by_session, sorted(junk + [name for name, _ in strays])


def scan_entries(ops: FileOps, directory: Path) -> tuple[dict[str, list[Backup]], list[str], list[tuple[str, str]]]:
    """Backups per session id (oldest first), the names that are not backups' names at all (junk,
    left alone), and strays: (name, why) of what has a backup's name but cannot be one (not a
    regular file, or a name that is not text). Nothing is opened."""
    by_session: dict[str, list[Backup]] = {}
    junk: list[str] = []
    strays: list[tuple[str, str]] = []
    try:
        kinds = ops.list_kinds(directory)
    except FileNotFoundError:
        return {}, [], []
    except OSError as exc:
        raise storage_error(exc, f"listing {directory.name}/") from exc
    for name, kind in kinds.items():
        backup = parse_name(directory, name)
        if backup is None:
            junk.append(name)
        elif not is_text_name(name):
            strays.append((name, "a name that is not UTF-8 text, which docpilotd never writes"))
        elif kind != REGULAR:
            strays.append((name, f"not a regular file: {a_kind(kind)}"))
        else:
            by_session.setdefault(backup.session_id, []).append(backup)
    for session_id, generations in by_session.items():
        by_session[session_id] = paired(generations)
    return by_session, sorted(junk), sorted(strays)


def paired(found: list[Backup]) -> list[Backup]:
    """One session's generations, oldest first, each plain file and its compressed twin as one
    (the plain file, naming the twin)."""
    names = {b.name for b in found}
    result = []
    for backup in found:
        if backup.compressed and backup.name[: -len(".zst")] in names:
            continue  # listed with its plain file
        twin = compressed_name(backup.name)
        result.append(backup._replace(twin=twin) if not backup.compressed and twin in names else backup)
    result.sort()
    return result


def for_session(ops: FileOps, directory: Path, session_id: str, owner: int | None = None) -> list[Backup]:
    """The backups of one session, oldest first (with `owner`, only the files that user owns: a
    backup of another user is neither named after, rotated nor listed)."""
    prefix = f"{session_id}_"
    try:
        names = ops.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise storage_error(exc, f"listing {directory.name}/") from exc
    found = [parse_name(directory, n) for n in names if n.startswith(prefix) and is_text_name(n)]
    return paired([
        b for b in found if b is not None and b.session_id == session_id and is_regular_file(ops, b.path, owner)
    ])
