"""Where the data root, the configuration file and the socket are: the one definition, as strings.

The data root is `DOCPILOT_HOME` when set, else the configuration file's `data_dir`, else
`~/.docpilot`. The socket lives in `run/` under the data root when `DOCPILOT_HOME` is set (isolated
instances never meet); otherwise in `$XDG_RUNTIME_DIR/docpilot/` when that is a private directory
of ours, else in `run/` under the data root.

Why strings and a module of its own: the client's hot verbs (`docpilot note`, `docpilot run`) find
the socket before anything else, and must start near the interpreter's own start-up; pathlib,
dataclasses and typing cost more than everything else they do. paths.py builds the daemon's
Layout (pathlib) on these same functions, so the daemon, the client and the hooks agree
(tests/test_paths_agree.py). Imports: os and stat, tomllib only when a configuration file exists.
"""

from __future__ import annotations

import os
import stat

from .errors import ConfigError

SOCKET_NAME = "docpilotd.sock"
# sun_path is 108 bytes on Linux and 104 on macOS, including the terminating NUL.
MAX_SOCKET_PATH = 103


def absolute(path: str) -> str:
    """`path` with `~` expanded, made absolute, with empty and `.` parts dropped (what
    pathlib's `Path(path).expanduser().absolute()` gives: `..` is kept)."""
    path = os.path.expanduser(path)
    if not path.startswith("/"):
        path = os.path.join(os.getcwd(), path)
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return "/" + "/".join(parts)


def default_home() -> str:
    """$DOCPILOT_HOME, else ~/.docpilot (as given: not yet absolute)."""
    return os.environ.get("DOCPILOT_HOME") or os.path.join(os.path.expanduser("~"), ".docpilot")


def config_file(explicit: str | None = None) -> tuple[str, bool]:
    """The config file to read and whether it must exist: `explicit` (--config), else
    $DOCPILOT_CONFIG, else $DOCPILOT_HOME/docpilotd.toml, else ~/.config/docpilot/docpilotd.toml."""
    if explicit:
        return os.path.expanduser(explicit), True
    if os.environ.get("DOCPILOT_CONFIG"):
        return os.path.expanduser(os.environ["DOCPILOT_CONFIG"]), True
    if os.environ.get("DOCPILOT_HOME"):
        return os.path.join(os.path.expanduser(os.environ["DOCPILOT_HOME"]), "docpilotd.toml"), False
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "docpilot", "docpilotd.toml"), False


def configured_root() -> str:
    """The data root, as the daemon decides it, for the parts that do not load the whole
    configuration (the client, the hooks), absolute."""
    if os.environ.get("DOCPILOT_HOME"):
        return absolute(default_home())
    path, _ = config_file()
    if os.path.exists(path):
        try:
            import tomllib

            with open(path, "rb") as handle:
                configured = tomllib.load(handle).get("data_dir")
            if isinstance(configured, str) and configured:
                return absolute(configured)
        except (OSError, ValueError):
            pass  # a file the daemon itself will refuse with a clear error
    return absolute(default_home())


def run_dir(root: str) -> str:
    """The directory of the socket, the lock and the pid file for the data root `root`."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not os.environ.get("DOCPILOT_HOME") and runtime and is_private_dir(runtime):
        return os.path.join(runtime, "docpilot")
    return os.path.join(root, "run")


def socket_in(run_directory: str) -> str:
    """The socket's path in `run_directory`; ConfigError when it is too long for a Unix socket."""
    path = os.path.join(run_directory, SOCKET_NAME)
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise ConfigError(
            f"socket path is too long for a Unix socket ({size} bytes, at most {MAX_SOCKET_PATH}): "
            f"{path}; choose a shorter DOCPILOT_HOME"
        )
    return path


def socket_path() -> str:
    """Where the daemon listens (the client's and the hooks' answer)."""
    return socket_in(run_dir(configured_root()))


def is_private_dir(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and (st.st_mode & 0o077) == 0
