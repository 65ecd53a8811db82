"""`docpilotd service install|uninstall|status`: docpilotd as a per-user service.

Linux: a systemd user unit `docpilotd.service` (Type=notify, restarted on failure, watchdog), and
with `--socket` a `docpilotd.socket` unit for socket activation, in `$XDG_CONFIG_HOME/systemd/user/`.
macOS: a LaunchAgent `com.docpilot.docpilotd.plist` in `~/Library/LaunchAgents/`, bootstrapped into
the `gui/UID` domain. The unit texts are defined here once; `systemd/` and `launchd/` in the
repository hold the same texts rendered for an example installation (`examples()`).

Invariants:
- The files name this installation's absolute paths: the `docpilotd` script installed beside this
  interpreter (checked by its shebang), else `sys.executable -m docpilotd.admin`; never a shim
  found on PATH.
- Only files carrying `MARKER` are overwritten or removed; a file somebody else wrote there is
  refused with a one-line error and left alone.
- systemctl/launchctl are run for real, through `Target.run` (the one seam: tests give it a
  temporary home and a scrubbed environment, nothing is faked), and only when the service manager
  answers. When it does not, the files are still written (install) or removed (uninstall), and
  `ServiceManagerUnreachable` (exit 11) says what was done and what to run in a login session.
- Uninstall reverses install: the manager stops and disables the units, then the files and their
  enablement links go; the data root and the log file are never touched.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from ..errors import ConfigError, ServiceError, ServiceManagerUnreachable, UsageError
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


# -- the files -------------------------------------------------------------------------------------


def systemd_command_line(argv: Sequence[str]) -> str:
    """`argv` as one ExecStart= value: specifiers escaped everywhere, `$` in the arguments (the
    executable's path gets no variable expansion, so no `$$` there), words quoted as needed."""
    words = []
    for index, arg in enumerate(argv):
        if any(c in arg for c in "\n\r\0"):
            raise UsageError(f"a path with a line break cannot go into a unit file: {arg!r}")
        text = arg.replace("%", "%%")
        if index:
            text = text.replace("$", "$$")
        if not text or any(c in text for c in " \t\"'\\;"):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        words.append(text)
    return " ".join(words)


def render_unit(exec_start: str) -> str:
    return f"""\
# {MARKER}
[Unit]
Description=docpilotd: keeps DocPilot documentation sessions
# Shell hooks spool to disk while the daemon is down, so nothing needs to wait for it.

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
# 2: the configuration or command line is invalid; 3: another docpilotd owns the data root.
# Restarting fixes neither.
RestartPreventExitStatus=2 3
# READY=1 comes after start-up recovery, which takes longer on a large data root.
TimeoutStartSec=300
# After SIGTERM docpilotd finishes requests and saves every changed session before exiting 0.
TimeoutStopSec=120
# docpilotd sends WATCHDOG=1 from its event loop every WatchdogSec/2: a hung loop gets restarted.
WatchdogSec=30
UMask=0077
SyslogIdentifier=docpilotd
# Hardening that needs no privileges, so it works in a user manager: seccomp and no_new_privs
# only, no mount or user namespaces (PrivateTmp=, ProtectSystem=, ProtectHome= would need them).
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=default.target
"""


def render_socket(listen: str) -> str:
    return f"""\
# {MARKER}
[Unit]
Description=docpilotd socket: connections wait here while docpilotd starts or restarts

[Socket]
# Must be the socket path docpilotd computes for its data root, where every client looks.
ListenStream={listen}
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
"""


def render_plist(program: Sequence[str], log_file: str) -> bytes:
    body = plistlib.dumps(
        {
            "Label": LABEL,
            "ProgramArguments": list(program),
            "RunAtLoad": True,  # at login (and at `launchctl bootstrap`)
            "KeepAlive": {"SuccessfulExit": False},  # again after a crash, not after a clean stop
            "ThrottleInterval": 10,
            "ExitTimeOut": 120,  # SIGTERM to SIGKILL: time for the final save
            "Umask": 0o077,
            "ProcessType": "Standard",
            "StandardOutPath": log_file,
            "StandardErrorPath": log_file,
        },
        sort_keys=False,
    )
    head, sep, rest = body.partition(b"<plist")
    return head + f"<!-- {MARKER} -->\n".encode() + sep + rest


def rendered(target: Target, socket: bool) -> dict[Path, bytes]:
    """Every file `install` writes for `target`."""
    if target.platform == "launchd":
        return {target.plist: render_plist(target.command, str(target.log_file))}
    files = {target.unit_dir / UNIT: render_unit(systemd_command_line(target.command)).encode()}
    if socket:
        files[target.unit_dir / SOCKET_UNIT] = render_socket(target.listen).encode()
    return files


def examples() -> dict[str, bytes]:
    """The repository's `systemd/` and `launchd/` files: the same texts, for an example install
    (`pip install --user`/pipx on Linux; user `you` on macOS, where launchd expands no `~`)."""
    you = "/Users/you"
    return {
        f"systemd/{UNIT}": render_unit("%h/.local/bin/docpilotd run").encode(),
        f"systemd/{SOCKET_UNIT}": render_socket(RUNTIME_SOCKET).encode(),
        f"launchd/{LABEL}.plist": render_plist(
            [f"{you}/.local/bin/docpilotd", "run"], f"{you}/Library/Logs/docpilotd/docpilotd.log"
        ),
    }


def is_ours(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return MARKER.encode() in handle.read(65536)
    except OSError:
        return False


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not is_ours(path):
        raise ServiceError(f"{path} exists and was not written by docpilotd; move it away first")
    write_atomic(OsFileOps(), path, data)
    os.chmod(path, 0o644)


def _remove(path: Path) -> bool:
    if not path.exists():
        return False
    if not is_ours(path):
        raise ServiceError(f"{path} was not written by docpilotd; leaving it alone")
    path.unlink()
    return True


# -- install / uninstall / status ------------------------------------------------------------------


def install(target: Target, out: TextIO, socket: bool = False) -> int:
    if target.platform == "launchd":
        return _launchd_install(target, out)
    return _systemd_install(target, out, socket)


def uninstall(target: Target, out: TextIO) -> int:
    if target.platform == "launchd":
        return _launchd_uninstall(target, out)
    return _systemd_uninstall(target, out)


def status(target: Target, out: TextIO) -> int:
    """Print what is installed and what the manager says; 0 running, 1 not installed or not
    running, 11 (ServiceManagerUnreachable) when the manager cannot be asked."""
    installed = [path for path in target.files if path.exists()]
    for path in target.files:
        state = ("installed" if is_ours(path) else "present, not written by docpilotd") if path.exists() else "not installed"
        out.write(f"{path}: {state}\n")
    if not installed:
        return 1
    out.write(f"runs: {' '.join(installed_command(target) or ['?'])}\n")
    if target.platform == "launchd":
        return _launchd_status(target, out)
    return _systemd_status(target, out)


def installed_command(target: Target) -> list[str] | None:
    """The command the installed unit or plist runs, as written there."""
    try:
        if target.platform == "launchd":
            return list(plistlib.loads(target.plist.read_bytes())["ProgramArguments"])
        for line in (target.unit_dir / UNIT).read_text().splitlines():
            if line.startswith("ExecStart="):
                return [line.removeprefix("ExecStart=")]
    except (OSError, ValueError, KeyError, plistlib.InvalidFileException):
        return None
    return None


# -- systemd ---------------------------------------------------------------------------------------


def _systemctl(target: Target, *args: str) -> ToolResult:
    return target.run(["systemctl", "--user", *args])


def _systemd_reachable(target: Target) -> str | None:
    """None when the user manager answers, else why not."""
    probe = _systemctl(target, "show-environment")
    return None if probe.code == 0 else f"systemctl --user: {probe.reason}"


def _systemd_install(target: Target, out: TextIO, socket: bool) -> int:
    files = rendered(target, socket)
    for path in files:
        if path.exists() and not is_ours(path):
            raise ServiceError(f"{path} exists and was not written by docpilotd; move it away first")
    # Reinstalling without --socket retires the socket unit an earlier install wrote.
    old_socket = target.unit_dir / SOCKET_UNIT
    retire_socket = not socket and old_socket.exists() and is_ours(old_socket)
    why = _systemd_reachable(target)
    if why is None:
        # systemd refuses to start a socket unit while its service runs: stop the old one first.
        _check(_systemctl(target, "stop", UNIT), f"stop the running {UNIT}", ok=(0, 5))
        if retire_socket:
            _check(_systemctl(target, "disable", "--now", SOCKET_UNIT), f"disable {SOCKET_UNIT}", ok=(0, 1, 5))
    for path, data in files.items():
        _write(path, data)
        out.write(f"wrote {path}\n")
    if retire_socket:
        for link in _enablement_links(target, old_socket):
            link.unlink()
        _remove(old_socket)
        out.write(f"removed {old_socket} (installed without --socket)\n")
    units = [SOCKET_UNIT, UNIT] if socket else [UNIT]
    if why is not None:
        raise ServiceManagerUnreachable(
            f"the unit files are written, but no systemd user manager is reachable ({why}); "
            f"in a login session run: systemctl --user daemon-reload && systemctl --user enable --now {' '.join(units)}"
        )
    _check(_systemctl(target, "daemon-reload"), "reload the user manager")
    _check(_systemctl(target, "enable", *units), f"enable {' '.join(units)}")
    for unit in units:
        _check(_systemctl(target, "restart", unit), f"start {unit} (see: journalctl --user -u docpilotd)")
    out.write(f"enabled and started {' and '.join(units)}: docpilotd starts at login and restarts after a failure\n")
    return 0


def _systemd_uninstall(target: Target, out: TextIO) -> int:
    present = [path for path in target.files if path.exists()]
    if not present:
        out.write("nothing to remove: docpilotd is not installed as a systemd user service\n")
        return 0
    for path in present:
        if not is_ours(path):
            raise ServiceError(f"{path} was not written by docpilotd; leaving it alone")
    why = _systemd_reachable(target)
    if why is None:
        names = [path.name for path in present]
        _check(_systemctl(target, "disable", "--now", *names), f"stop and disable {' '.join(names)}", ok=(0, 1, 5))
    for path in present:
        for link in _enablement_links(target, path):
            link.unlink()
        _remove(path)
        out.write(f"removed {path}\n")
    if why is not None:
        raise ServiceManagerUnreachable(
            f"the unit files are removed, but no systemd user manager is reachable ({why}), so a docpilotd "
            "it started may still run: stop it from its login session (systemctl --user stop docpilotd)"
        )
    _systemctl(target, "daemon-reload")
    _systemctl(target, "reset-failed", UNIT)
    out.write("stopped and disabled; the data root and the logs are kept\n")
    return 0


def _enablement_links(target: Target, unit_file: Path) -> list[Path]:
    """Symlinks in `*.wants/` and `*.requires/` that point at `unit_file` (left by `enable`)."""
    found = []
    for directory in target.unit_dir.glob("*.*"):
        if directory.is_dir() and directory.suffix in (".wants", ".requires"):
            link = directory / unit_file.name
            if link.is_symlink() and os.path.realpath(link) == os.path.realpath(unit_file):
                found.append(link)
    return found


def _systemd_status(target: Target, out: TextIO) -> int:
    why = _systemd_reachable(target)
    if why is not None:
        raise ServiceManagerUnreachable(f"cannot ask the service manager: {why}")
    props = "LoadState,ActiveState,SubState,UnitFileState,MainPID,StatusText"
    shown = _check(_systemctl(target, "show", UNIT, f"--property={props}"), "ask about docpilotd.service")
    values = dict(line.split("=", 1) for line in shown.out.splitlines() if "=" in line)
    active = values.get("ActiveState", "unknown")
    line = f"{UNIT}: {values.get('UnitFileState') or 'unknown'}, {active} ({values.get('SubState', '?')})"
    if values.get("MainPID", "0") != "0":
        line += f", pid {values['MainPID']}"
    if values.get("StatusText"):
        line += f": {values['StatusText']}"
    out.write(line + "\n")
    return 0 if active == "active" else 1


# -- launchd ---------------------------------------------------------------------------------------


def _launchctl(target: Target, *args: str) -> ToolResult:
    return target.run(["launchctl", *args])


def _launchd_reachable(target: Target) -> str | None:
    probe = _launchctl(target, "print", target.domain)
    return None if probe.code == 0 else f"launchctl print {target.domain}: {probe.reason}"


def _launchd_install(target: Target, out: TextIO) -> int:
    why = _launchd_reachable(target)
    if why is None:
        _launchctl(target, "bootout", f"{target.domain}/{LABEL}")  # a previous version, if loaded
    target.log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, data in rendered(target, socket=False).items():
        _write(path, data)
        out.write(f"wrote {path}\n")
    if why is not None:
        raise ServiceManagerUnreachable(
            f"the LaunchAgent is written, but launchd's {target.domain} domain is not reachable ({why}); "
            f"from a GUI login run: launchctl bootstrap {target.domain} {target.plist}"
        )
    _launchctl(target, "enable", f"{target.domain}/{LABEL}")  # clears an earlier `launchctl disable`
    for attempt in range(10):  # bootout finishes asynchronously; bootstrap fails (5) until it has
        result = _launchctl(target, "bootstrap", target.domain, str(target.plist))
        if result.code == 0:
            break
        time.sleep(0.3)
    _check(result, f"bootstrap {LABEL}")
    out.write(f"loaded {LABEL}: docpilotd starts at login and restarts after a crash; log: {target.log_file}\n")
    return 0


def _launchd_uninstall(target: Target, out: TextIO) -> int:
    if not target.plist.exists():
        out.write("nothing to remove: docpilotd is not installed as a LaunchAgent\n")
        return 0
    if not is_ours(target.plist):
        raise ServiceError(f"{target.plist} was not written by docpilotd; leaving it alone")
    why = _launchd_reachable(target)
    if why is None:
        _launchctl(target, "bootout", f"{target.domain}/{LABEL}")  # fails only when not loaded
    _remove(target.plist)
    out.write(f"removed {target.plist}\n")
    if why is not None:
        raise ServiceManagerUnreachable(
            f"the LaunchAgent is removed, but launchd's {target.domain} domain is not reachable ({why}); "
            f"a docpilotd it started may still run: launchctl bootout {target.domain}/{LABEL}"
        )
    out.write(f"unloaded; the data root and the log ({target.log_file}) are kept\n")
    return 0


def _launchd_status(target: Target, out: TextIO) -> int:
    why = _launchd_reachable(target)
    if why is not None:
        raise ServiceManagerUnreachable(f"cannot ask the service manager: {why}")
    shown = _launchctl(target, "print", f"{target.domain}/{LABEL}")
    if shown.code != 0:
        out.write(f"{LABEL}: not loaded\n")
        return 1
    values = {}
    for line in shown.out.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep and key in ("state", "pid", "last exit code") and key not in values:
            values[key] = value
    state = values.get("state", "unknown")
    pid = f", pid {values['pid']}" if "pid" in values else ""
    out.write(f"{LABEL}: loaded, {state}{pid}; log: {target.log_file}\n")
    return 0 if state == "running" else 1


def _check(result: ToolResult, action: str, ok: Sequence[int] = (0,)) -> ToolResult:
    if result.code not in ok:
        raise ServiceError(f"could not {action}: {result.reason}")
    return result

