"""What the systemd and launchd halves of `docpilotd service` share: whom and where a service is
installed for (`Target`, `this_target`), the command it runs (`daemon_command`), the one seam to
systemctl/launchctl (`run_tool`, `Target.run`), and the marker that makes a file ours.

Invariants:
- The files name this installation's absolute paths: the `docpilotd` script installed beside this
  interpreter (checked by its shebang), else `sys.executable -m docpilotd.admin`; never a shim
  found on PATH.
- Only files carrying `MARKER` are overwritten or removed (`write_ours`, `remove_ours`); a file
  somebody else wrote there is refused with a one-line error and left alone.
- systemctl/launchctl are run for real, through `Target.run` (the one seam: tests give it a
  temporary home and a scrubbed environment, nothing is faked).
- This module imports nothing else of docpilotd.service: systemd.py and launchd.py build on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import ConfigError, ServiceError, UsageError
from ..paths import MAX_SOCKET_PATH, SOCKET_NAME
from ..storage.atomic import write_atomic
from ..storage.fsops import OsFileOps

Platform = Literal["systemd", "launchd"]
UNIT = "docpilotd.service"
SOCKET_UNIT = "docpilotd.socket"
LABEL = "com.docpilot.docpilotd"
MARKER = "docpilotd service file: `docpilotd service install` writes it, `docpilotd service uninstall` removes it"
# The socket every client looks for when DOCPILOT_HOME is unset and $XDG_RUNTIME_DIR is private,
# which is what a systemd user manager gives its services (see docpilotd.paths).
RUNTIME_SOCKET = "%t/docpilot/docpilotd.sock"


@dataclass(frozen=True)
class ToolResult:
    code: int
    out: str
    err: str

    @property
    def reason(self) -> str:
        """The last line the tool printed, for a one-line error."""
        lines = [line.strip() for line in (self.err + "\n" + self.out).splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.code}"


Runner = Callable[[Sequence[str]], ToolResult]


def run_tool(argv: Sequence[str]) -> ToolResult:
    """Run systemctl/launchctl and capture what it says; a missing tool is exit status 127."""
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    except FileNotFoundError:
        return ToolResult(127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return ToolResult(124, "", f"{' '.join(argv)}: no answer within 120 s")
    return ToolResult(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))


def check(result: ToolResult, action: str, ok: Sequence[int] = (0,)) -> ToolResult:
    """`result` if its exit status is one of `ok`, else a one-line ServiceError."""
    if result.code not in ok:
        raise ServiceError(f"could not {action}: {result.reason}")
    return result


@dataclass(frozen=True)
class Target:
    """Where and what to install for one user; `run` is the seam to systemctl/launchctl."""

    platform: Platform
    home: Path
    config_home: Path
    uid: int
    command: tuple[str, ...]  # docpilotd's absolute argv, up to and including "run" and its options
    listen: str  # the socket unit's ListenStream=
    run: Runner = field(default=run_tool, compare=False)

    @property
    def unit_dir(self) -> Path:
        return self.config_home / "systemd" / "user"

    @property
    def plist(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    @property
    def log_file(self) -> Path:
        return self.home / "Library" / "Logs" / "docpilotd" / "docpilotd.log"

    @property
    def files(self) -> tuple[Path, ...]:
        if self.platform == "launchd":
            return (self.plist,)
        return (self.unit_dir / UNIT, self.unit_dir / SOCKET_UNIT)

    @property
    def domain(self) -> str:
        return f"gui/{self.uid}"


def this_target(
    platform: Platform | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
    run: Runner = run_tool,
) -> Target:
    """The target for the current user and this installation (the data root from DOCPILOT_HOME)."""
    env = os.environ if env is None else env
    platform = platform or detect_platform()
    home = Path(env.get("HOME") or Path.home()).absolute()
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config").absolute()
    command = [*daemon_command(), "run"]
    listen = RUNTIME_SOCKET
    if env.get("DOCPILOT_HOME"):
        data_root = Path(env["DOCPILOT_HOME"]).expanduser().absolute()
        command += ["--home", str(data_root)]
        # `run --home` puts the socket under the data root (docpilotd.paths), whatever the runtime dir.
        socket_path = data_root / "run" / SOCKET_NAME
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
            raise ConfigError(f"socket path is too long for a Unix socket: {socket_path}; choose a shorter data root")
        listen = str(socket_path).replace("%", "%%")
    config = config_file or env.get("DOCPILOT_CONFIG")
    if config:
        command += ["--config", str(Path(config).expanduser().absolute())]
    return Target(platform, home, config_home, os.getuid(), tuple(command), listen, run)


def detect_platform() -> Platform:
    if sys.platform == "darwin":
        return "launchd"
    if sys.platform.startswith("linux"):
        return "systemd"
    raise UsageError(f"docpilotd service supports Linux (systemd) and macOS (launchd), not {sys.platform}")


def daemon_command() -> list[str]:
    """This installation's `docpilotd`: the script beside this interpreter, else `python -m`."""
    if not sys.executable:
        raise UsageError("cannot tell which Python runs docpilotd (sys.executable is empty)")
    python = os.path.realpath(sys.executable)
    schemes = [sysconfig.get_default_scheme(), f"{os.name}_user"]
    for scheme in schemes:
        try:
            script = Path(sysconfig.get_path("scripts", scheme)) / "docpilotd"
        except KeyError:
            continue
        if script.is_file() and os.access(script, os.X_OK) and _shebang_python(script) == python:
            return [str(script.absolute())]
    return [sys.executable, "-m", "docpilotd.admin"]


def _shebang_python(script: Path) -> str | None:
    try:
        with open(script, "rb") as handle:
            first = handle.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return os.path.realpath(words[0]) if words else None


# -- the marker ------------------------------------------------------------------------------------


def is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return MARKER.encode() in handle.read(65536)
    except OSError:
        return False


def write_ours(path: Path, data: bytes) -> None:
    """Write `path` atomically (mode 0644), unless a file not carrying MARKER is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not is_ours(path):
        raise ServiceError(f"{path} exists and was not written by docpilotd; move it away first")
    write_atomic(OsFileOps(), path, data)
    os.chmod(path, 0o644)


def remove_ours(path: Path) -> bool:
    """Remove `path` if it carries MARKER; False if it is absent, ServiceError if it is not ours."""
    if not path.exists():
        return False
    if not is_ours(path):
        raise ServiceError(f"{path} was not written by docpilotd; leaving it alone")
    path.unlink()
    return True
