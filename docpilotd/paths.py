"""Where docpilotd keeps things: the data root and its layout.

The data root is `DOCPILOT_HOME` when set, else `~/.docpilot` (DocPilot's own directory, so an
existing DocPilot user keeps working). Inside it, DocPilot's `sessions/` and `backups/` plus
docpilotd's `journal/`, `quarantine/`, `spool/` and `run/`.

The socket and lock live in `run/` under the data root when `DOCPILOT_HOME` is set (so isolated
instances never meet); otherwise in `$XDG_RUNTIME_DIR/docpilot/` when that is a private directory
of ours, else in `run/` under the data root. Every directory is created 0700.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from . import where
from .errors import PermissionDenied
from .where import MAX_SOCKET_PATH, SOCKET_NAME

__all__ = ["MAX_SOCKET_PATH", "SOCKET_NAME", "Layout", "config_file", "configured_root", "default_home",
           "ensure_private_dir", "layout_for", "locate"]

LOCK_NAME = "docpilotd.lock"
PID_NAME = "docpilotd.pid"


def default_home() -> Path:
    return Path(where.default_home())


def config_file(explicit: str | None = None) -> tuple[Path, bool]:
    """The config file to read and whether it must exist (where.config_file)."""
    path, must_exist = where.config_file(explicit)
    return Path(path), must_exist


def configured_root() -> Path:
    """The data root, as the daemon decides it, for the parts that do not load the whole
    configuration (the client, the hooks): where.configured_root."""
    return Path(where.configured_root())


def locate() -> Layout:
    """Where the data root and the socket are, for the client and the hooks: the same answer the
    daemon reaches from its configuration (one definition; tests/test_paths_agree.py checks it)."""
    return layout_for(configured_root())


class Layout:
    """The data root's directories and the run directory (immutable; a plain class, not a
    dataclass: dataclasses imports inspect, a third of a hot client verb's start-up)."""

    __slots__ = ("root", "run_dir")
    root: Path
    run_dir: Path

    def __init__(self, root: Path, run_dir: Path) -> None:
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "run_dir", run_dir)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Layout is immutable ({name})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and (self.root, self.run_dir) == (other.root, other.run_dir)

    def __hash__(self) -> int:
        return hash((self.root, self.run_dir))

    def __repr__(self) -> str:
        return f"Layout(root={self.root!r}, run_dir={self.run_dir!r})"

    @property
    def sessions(self) -> Path:
        return self.root / "sessions"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def journal(self) -> Path:
        return self.root / "journal"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def active_markers(self) -> Path:
        """Empty files naming the sessions that capture commands (read by shell hooks)."""
        return self.spool / "active"

    @property
    def socket(self) -> Path:
        return self.run_dir / SOCKET_NAME

    @property
    def lock(self) -> Path:
        return self.run_dir / LOCK_NAME

    @property
    def pid_file(self) -> Path:
        return self.run_dir / PID_NAME

    def session_file(self, session_id: str) -> Path:
        return self.sessions / f"{session_id}.json"

    def data_dirs(self) -> tuple[Path, ...]:
        return (self.root, self.sessions, self.backups, self.journal, self.quarantine, self.spool, self.active_markers)

    def ensure(self) -> None:
        """Create every directory 0700 (and tighten an existing one we own)."""
        for directory in (*self.data_dirs(), self.run_dir):
            ensure_private_dir(directory)


def layout_for(root: Path | None = None) -> Layout:
    """The layout of `root` (default: DOCPILOT_HOME or ~/.docpilot), with the run directory chosen
    (where.run_dir; ConfigError when the socket's path would be too long)."""
    root = (root or default_home()).expanduser().absolute()
    run_dir = where.run_dir(str(root))
    where.socket_in(run_dir)
    return Layout(root=root, run_dir=Path(run_dir))


def ensure_private_dir(path: Path) -> None:
    """Make `path` a directory that only we can use; refuse one owned by somebody else."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionDenied(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise PermissionDenied(f"{path} belongs to another user (uid {st.st_uid})")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
