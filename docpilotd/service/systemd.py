"""Linux: docpilotd as a systemd user unit `docpilotd.service` (Type=notify, restarted on failure,
watchdog), and with `--socket` a `docpilotd.socket` unit for socket activation, in
`$XDG_CONFIG_HOME/systemd/user/`: the unit texts, and `systemctl --user` install/uninstall/status.

Invariants:
- The unit texts are defined here once; `systemd/` in the repository holds the same texts rendered
  for an example installation (`examples()`).
- ExecStart= is `systemd_command_line(target.command)`: specifiers and `$` escaped, so the daemon
  gets its paths as written; a path with a line break is refused.
- systemctl is run only when the user manager answers (`systemctl --user show-environment`). When
  it does not, the files are still written (install) or removed (uninstall), and
  `ServiceManagerUnreachable` (exit 11) says what was done and what to run in a login session.
- Uninstall reverses install: the manager stops and disables the units, then the files and their
  enablement links go; the data root and the logs are never touched. Reinstalling without
  `--socket` retires the socket unit an earlier install wrote.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..errors import ServiceError, ServiceManagerUnreachable, UsageError
from .common import (
    MARKER,
    RUNTIME_SOCKET,
    SOCKET_UNIT,
    UNIT,
    Target,
    ToolResult,
    check,
    is_ours,
    remove_ours,
    write_ours,
)

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


def rendered(target: Target, socket: bool) -> dict[Path, bytes]:
    """The unit files `install` writes for `target`: the service, and with `socket` the socket."""
    files = {target.unit_dir / UNIT: render_unit(systemd_command_line(target.command)).encode()}
    if socket:
        files[target.unit_dir / SOCKET_UNIT] = render_socket(target.listen).encode()
    return files


def examples() -> dict[str, bytes]:
    """The repository's `systemd/` files: the same texts, for `pip install --user`/pipx."""
    return {
        f"systemd/{UNIT}": render_unit("%h/.local/bin/docpilotd run").encode(),
        f"systemd/{SOCKET_UNIT}": render_socket(RUNTIME_SOCKET).encode(),
    }


def installed_command(target: Target) -> list[str] | None:
    """The installed unit's ExecStart=, as written there."""
    try:
        for line in (target.unit_dir / UNIT).read_text().splitlines():
            if line.startswith("ExecStart="):
                return [line.removeprefix("ExecStart=")]
    except (OSError, ValueError):
        return None
    return None


# -- install / uninstall / status ------------------------------------------------------------------


def _systemctl(target: Target, *args: str) -> ToolResult:
    return target.run(["systemctl", "--user", *args])


def _reachable(target: Target) -> str | None:
    """None when the user manager answers, else why not."""
    probe = _systemctl(target, "show-environment")
    return None if probe.code == 0 else f"systemctl --user: {probe.reason}"


def install(target: Target, out: TextIO, socket: bool) -> int:
    files = rendered(target, socket)
    for path in files:
        if path.exists() and not is_ours(path):
            raise ServiceError(f"{path} exists and was not written by docpilotd; move it away first")
    # Reinstalling without --socket retires the socket unit an earlier install wrote.
    old_socket = target.unit_dir / SOCKET_UNIT
    retire_socket = not socket and old_socket.exists() and is_ours(old_socket)
    why = _reachable(target)
    if why is None:
        # systemd refuses to start a socket unit while its service runs: stop the old one first.
        check(_systemctl(target, "stop", UNIT), f"stop the running {UNIT}", ok=(0, 5))
        if retire_socket:
            check(_systemctl(target, "disable", "--now", SOCKET_UNIT), f"disable {SOCKET_UNIT}", ok=(0, 1, 5))
    for path, data in files.items():
        write_ours(path, data)
        out.write(f"wrote {path}\n")
    if retire_socket:
        for link in _enablement_links(target, old_socket):
            link.unlink()
        remove_ours(old_socket)
        out.write(f"removed {old_socket} (installed without --socket)\n")
    units = [SOCKET_UNIT, UNIT] if socket else [UNIT]
    if why is not None:
        raise ServiceManagerUnreachable(
            f"the unit files are written, but no systemd user manager is reachable ({why}); "
            f"in a login session run: systemctl --user daemon-reload && systemctl --user enable --now {' '.join(units)}"
        )
    check(_systemctl(target, "daemon-reload"), "reload the user manager")
    check(_systemctl(target, "enable", *units), f"enable {' '.join(units)}")
    for unit in units:
        check(_systemctl(target, "restart", unit), f"start {unit} (see: journalctl --user -u docpilotd)")
    out.write(f"enabled and started {' and '.join(units)}: docpilotd starts at login and restarts after a failure\n")
    return 0


def uninstall(target: Target, out: TextIO) -> int:
    present = [path for path in target.files if path.exists()]
    if not present:
        out.write("nothing to remove: docpilotd is not installed as a systemd user service\n")
        return 0
    for path in present:
        if not is_ours(path):
            raise ServiceError(f"{path} was not written by docpilotd; leaving it alone")
    why = _reachable(target)
    if why is None:
        names = [path.name for path in present]
        check(_systemctl(target, "disable", "--now", *names), f"stop and disable {' '.join(names)}", ok=(0, 1, 5))
    for path in present:
        for link in _enablement_links(target, path):
            link.unlink()
        remove_ours(path)
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


def status(target: Target, out: TextIO) -> int:
    """What the user manager says about docpilotd.service; 0 when it is active."""
    why = _reachable(target)
    if why is not None:
        raise ServiceManagerUnreachable(f"cannot ask the service manager: {why}")
    props = "LoadState,ActiveState,SubState,UnitFileState,MainPID,StatusText"
    shown = check(_systemctl(target, "show", UNIT, f"--property={props}"), "ask about docpilotd.service")
    values = dict(line.split("=", 1) for line in shown.out.splitlines() if "=" in line)
    active = values.get("ActiveState", "unknown")
    line = f"{UNIT}: {values.get('UnitFileState') or 'unknown'}, {active} ({values.get('SubState', '?')})"
    if values.get("MainPID", "0") != "0":
        line += f", pid {values['MainPID']}"
    if values.get("StatusText"):
        line += f": {values['StatusText']}"
    out.write(line + "\n")
    return 0 if active == "active" else 1


def main_pid(target: Target) -> int | None:
    """The pid the user manager runs docpilotd.service as; None when it does not (inactive, not
    installed, or no manager to ask)."""
    shown = _systemctl(target, "show", UNIT, "--property=MainPID")
    if shown.code != 0:
        return None
    values = dict(line.split("=", 1) for line in shown.out.splitlines() if "=" in line)
    pid = values.get("MainPID", "0").strip()
    return int(pid) if pid.isdigit() and pid != "0" else None


def stop(target: Target) -> str:
    """`systemctl --user stop docpilotd.service` (it returns once docpilotd has exited); says so,
    and whether the socket unit still listens (the next client then starts docpilotd again)."""
    check(_systemctl(target, "stop", UNIT), f"stop {UNIT}")
    listening = _systemctl(target, "is-active", SOCKET_UNIT).out.strip() == "active"
    note = (f"; {SOCKET_UNIT} still listens, so the next client starts it again "
            f"(systemctl --user stop {SOCKET_UNIT} stops that too)") if listening else ""
    return f"stopped {UNIT} through systemd (systemctl --user start docpilotd starts it again){note}"
