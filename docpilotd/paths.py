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
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, PermissionDenied

SOCKET_NAME = "docpilotd.sock"
LOCK_NAME = "docpilotd.lock"
PID_NAME = "docpilotd.pid"
# sun_path is 108 bytes on Linux and 104 on macOS, including the terminating NUL.
MAX_SOCKET_PATH = 103


def default_home() -> Path:
    env = os.environ.get("DOCPILOT_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".docpilot"


def config_file(explicit: str | None = None) -> tuple[Path, bool]:
    """The config file to read and whether it must exist: `explicit` (--config), else
    $DOCPILOT_CONFIG, else $DOCPILOT_HOME/docpilotd.toml, else ~/.config/docpilot/docpilotd.toml."""
    if explicit:
        return Path(explicit).expanduser(), True
    if os.environ.get("DOCPILOT_CONFIG"):
        return Path(os.environ["DOCPILOT_CONFIG"]).expanduser(), True
    if os.environ.get("DOCPILOT_HOME"):
        return Path(os.environ["DOCPILOT_HOME"]).expanduser() / "docpilotd.toml", False
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "docpilot" / "docpilotd.toml", False


def configured_root() -> Path:
    """The data root, as the daemon decides it, for the parts that do not load the whole
    configuration (the client, the hooks): $DOCPILOT_HOME, else the config file's `data_dir`,
    else ~/.docpilot. Import-light: the standard library's TOML reader, only when a file exists."""
    if os.environ.get("DOCPILOT_HOME"):
        return default_home().absolute()
    path, _ = config_file()
    try:
        import tomllib

        with open(path, "rb") as handle:
            configured = tomllib.load(handle).get("data_dir")
        if isinstance(configured, str) and configured:
            return Path(configured).expanduser().absolute()
    except (OSError, ValueError):
        pass  # no file, or one the daemon itself will refuse with a clear error
    return default_home().absolute()


def locate() -> Layout:
    """Where the data root and the socket are, for the client and the hooks: the same answer the
    daemon reaches from its configuration (one definition; tests/test_paths_agree.py checks it)."""
    return layout_for(configured_root())


@dataclass(frozen=True)
class Layout:
    root: Path
    run_dir: Path

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
    """The layout of `root` (default: DOCPILOT_HOME or ~/.docpilot), with the run directory chosen."""
    home_set = bool(os.environ.get("DOCPILOT_HOME"))
    root = (root or default_home()).expanduser().absolute()
    run_dir = root / "run"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not home_set and runtime and _is_private_dir(Path(runtime)):
        run_dir = Path(runtime) / "docpilot"
    socket_path = run_dir / SOCKET_NAME
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"socket path is too long for a Unix socket ({len(os.fsencode(socket_path))} bytes, "
            f"at most {MAX_SOCKET_PATH}): {socket_path}; choose a shorter DOCPILOT_HOME"
        )
    return Layout(root=root, run_dir=run_dir)


def _is_private_dir(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and (st.st_mode & 0o077) == 0


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
