"""Backup generations: `backups/{id}_{seconds}.{nanoseconds}.json`.

DocPilot names backups with whole seconds, so two saves in one second overwrote each other; ours add
nine digits of nanoseconds and are created exclusively, so a name never collides. Generations are
ordered by the time in their name, never by mtime (which copies and restores change), and
DocPilot's second-named files sort among ours by the same key. Only regular files are backups: a
directory or symlink that merely has a backup's name is junk (never read, rotated or removed).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .atomic import storage_error
from .fsops import FileOps

_NAME = re.compile(r"(?P<id>[^/_]+)_(?P<sec>\d{1,19})(?:\.(?P<frac>\d{9}))?\.json\Z")


@dataclass(frozen=True, order=True)
class Backup:
    ns: int  # first, so generations sort oldest first
    session_id: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


def backup_name(session_id: str, ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{session_id}_{seconds}.{fraction:09d}.json"


def parse_name(directory: Path, name: str) -> Backup | None:
    match = _NAME.match(name)
    if match is None:
        return None
    ns = int(match["sec"]) * 1_000_000_000 + int(match["frac"] or 0)
    return Backup(ns=ns, session_id=match["id"], path=directory / name)


def is_regular_file(ops: FileOps, path: Path) -> bool:
    """Whether `path` is a regular file itself (not a directory, and not a symlink to anything)."""
    try:
        return stat.S_ISREG(ops.stat(path).st_mode)
    except OSError:
        return False


def scan(ops: FileOps, directory: Path) -> tuple[dict[str, list[Backup]], list[str]]:
    """Backups per session id (oldest first) and the names that are not backups at all."""
    by_session: dict[str, list[Backup]] = {}
    junk: list[str] = []
    try:
        names = ops.list_regular(directory)
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        raise storage_error(exc, f"listing {directory.name}/") from exc
    for name, regular in names.items():
        backup = parse_name(directory, name) if regular else None
        if backup is None:
            junk.append(name)
        else:
            by_session.setdefault(backup.session_id, []).append(backup)
    for generations in by_session.values():
        generations.sort()
    return by_session, sorted(junk)


def for_session(ops: FileOps, directory: Path, session_id: str) -> list[Backup]:
    """The backups of one session, oldest first."""
    prefix = f"{session_id}_"
    try:
        names = ops.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise storage_error(exc, f"listing {directory.name}/") from exc
    found = [parse_name(directory, n) for n in names if n.startswith(prefix)]
    return sorted(
        b for b in found if b is not None and b.session_id == session_id and is_regular_file(ops, b.path)
    )
