"""`docpilotd service install|uninstall|status`: docpilotd as a per-user service (and the
service-manager side of `docpilotd stop`: `main_pid`, `stop`).

Linux: a systemd user unit `docpilotd.service` (Type=notify, restarted on failure, watchdog), and
with `--socket` a `docpilotd.socket` unit for socket activation, in `$XDG_CONFIG_HOME/systemd/user/`
(systemd.py). macOS: a LaunchAgent `com.docpilot.docpilotd.plist` in `~/Library/LaunchAgents/`,
bootstrapped into the `gui/UID` domain (launchd.py). What both share, the target, the command it
runs, the seam to the service manager and the marker, is in common.py.

This module is the package's public API (admin.py and the tests use only `docpilotd.service.X`):
it dispatches on `Target.platform` and re-exports the names of the modules below it.

Invariants:
- The imports point one way: __init__ -> systemd, launchd -> common; no module of the package
  imports this one.
- `examples()` is what the repository's `systemd/` and `launchd/` hold: the texts systemd.py and
  launchd.py define, rendered for an example installation.
- `status` lists every file of the platform and whether it is ours before asking the manager;
  1 when none is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from . import launchd, systemd
from .common import (
    LABEL,
    MARKER,
    RUNTIME_SOCKET,
    SOCKET_UNIT,
    UNIT,
    Platform,
    Runner,
    Target,
    ToolResult,
    daemon_command,
    detect_platform,
    is_ours,
    run_tool,
    this_target,
)
from .launchd import render_plist
from .systemd import render_socket, render_unit, systemd_command_line

__all__ = [
    "LABEL", "MARKER", "RUNTIME_SOCKET", "SOCKET_UNIT", "UNIT", "Platform", "Runner", "Target", "ToolResult",
    "daemon_command", "detect_platform", "examples", "install", "installed_command", "is_ours", "main_pid",
    "render_plist", "render_socket", "render_unit", "rendered", "run_tool", "status", "stop", "systemd_command_line",
    "this_target", "uninstall",
]


def rendered(target: Target, socket: bool) -> dict[Path, bytes]:
    """Every file `install` writes for `target`."""
    if target.platform == "launchd":
        return launchd.rendered(target)
    return systemd.rendered(target, socket)


def examples() -> dict[str, bytes]:
    """The repository's `systemd/` and `launchd/` files: the same texts, for an example install
    (`pip install --user`/pipx on Linux; user `you` on macOS, where launchd expands no `~`)."""
    return {**systemd.examples(), **launchd.examples()}


def install(target: Target, out: TextIO, socket: bool = False) -> int:
    if target.platform == "launchd":
        return launchd.install(target, out)
    return systemd.install(target, out, socket)


def uninstall(target: Target, out: TextIO) -> int:
    if target.platform == "launchd":
        return launchd.uninstall(target, out)
    return systemd.uninstall(target, out)


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
        return launchd.status(target, out)
    return systemd.status(target, out)


def main_pid(target: Target) -> int | None:
    """The pid the service manager runs docpilotd as, or None (`docpilotd stop` asks, to stop a
    service through its manager, which would otherwise see a failure or start it again)."""
    if target.platform == "launchd":
        return launchd.main_pid(target)
    return systemd.main_pid(target)


def stop(target: Target) -> str:
    """Stop the service through its manager; returns what was done, in words."""
    if target.platform == "launchd":
        return launchd.stop(target)
    return systemd.stop(target)


def installed_command(target: Target) -> list[str] | None:
    """The command the installed unit or plist runs, as written there."""
    if target.platform == "launchd":
        return launchd.installed_command(target)
    return systemd.installed_command(target)
