"""macOS: docpilotd as a LaunchAgent `com.docpilot.docpilotd.plist` in `~/Library/LaunchAgents/`,
bootstrapped into the `gui/UID` domain: the plist text, and `launchctl` install/uninstall/status.

Invariants:
- The plist text is defined here once; `launchd/` in the repository holds the same text rendered
  for an example installation (`examples()`). MARKER sits in a comment before `<plist`.
- launchctl is run only when the `gui/UID` domain answers (`launchctl print gui/UID`). When it does
  not, the plist is still written (install) or removed (uninstall), and `ServiceManagerUnreachable`
  (exit 11) says what was done and what to run from a GUI login.
- Uninstall reverses install: launchd unloads the agent (bootout), then the plist goes; the data
  root and the log file are never touched.
"""

from __future__ import annotations

import plistlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..errors import ServiceError, ServiceManagerUnreachable
from .common import LABEL, MARKER, Target, ToolResult, check, is_ours, remove_ours, write_ours

# -- the file --------------------------------------------------------------------------------------


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


def rendered(target: Target) -> dict[Path, bytes]:
    """The one file `install` writes for `target`: the LaunchAgent."""
    return {target.plist: render_plist(target.command, str(target.log_file))}


def examples() -> dict[str, bytes]:
    """The repository's `launchd/` file: the same text, for user `you` (launchd expands no `~`)."""
    you = "/Users/you"
    return {
        f"launchd/{LABEL}.plist": render_plist(
            [f"{you}/.local/bin/docpilotd", "run"], f"{you}/Library/Logs/docpilotd/docpilotd.log"
        ),
    }


def installed_command(target: Target) -> list[str] | None:
    """The installed plist's ProgramArguments, as written there."""
    try:
        return list(plistlib.loads(target.plist.read_bytes())["ProgramArguments"])
    except (OSError, ValueError, KeyError, plistlib.InvalidFileException):
        return None


# -- install / uninstall / status ------------------------------------------------------------------


def _launchctl(target: Target, *args: str) -> ToolResult:
    return target.run(["launchctl", *args])


def _reachable(target: Target) -> str | None:
    """None when launchd's gui/UID domain answers, else why not."""
    probe = _launchctl(target, "print", target.domain)
    return None if probe.code == 0 else f"launchctl print {target.domain}: {probe.reason}"


def install(target: Target, out: TextIO) -> int:
    why = _reachable(target)
    if why is None:
        _launchctl(target, "bootout", f"{target.domain}/{LABEL}")  # a previous version, if loaded
    target.log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, data in rendered(target).items():
        write_ours(path, data)
        out.write(f"wrote {path}\n")
    if why is not None:
        raise ServiceManagerUnreachable(
            f"the LaunchAgent is written, but launchd's {target.domain} domain is not reachable ({why}); "
            f"from a GUI login run: launchctl bootstrap {target.domain} {target.plist}"
        )
    _launchctl(target, "enable", f"{target.domain}/{LABEL}")  # clears an earlier `launchctl disable`
    for _attempt in range(10):  # bootout finishes asynchronously; bootstrap fails (5) until it has
        result = _launchctl(target, "bootstrap", target.domain, str(target.plist))
        if result.code == 0:
            break
        time.sleep(0.3)
    check(result, f"bootstrap {LABEL}")
    out.write(f"loaded {LABEL}: docpilotd starts at login and restarts after a crash; log: {target.log_file}\n")
    return 0


def uninstall(target: Target, out: TextIO) -> int:
    if not target.plist.exists():
        out.write("nothing to remove: docpilotd is not installed as a LaunchAgent\n")
        return 0
    if not is_ours(target.plist):
        raise ServiceError(f"{target.plist} was not written by docpilotd; leaving it alone")
    why = _reachable(target)
    if why is None:
        _launchctl(target, "bootout", f"{target.domain}/{LABEL}")  # fails only when not loaded
    remove_ours(target.plist)
    out.write(f"removed {target.plist}\n")
    if why is not None:
        raise ServiceManagerUnreachable(
            f"the LaunchAgent is removed, but launchd's {target.domain} domain is not reachable ({why}); "
            f"a docpilotd it started may still run: launchctl bootout {target.domain}/{LABEL}"
        )
    out.write(f"unloaded; the data root and the log ({target.log_file}) are kept\n")
    return 0


def status(target: Target, out: TextIO) -> int:
    """What launchd says about the agent; 0 when it is running."""
    why = _reachable(target)
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


def main_pid(target: Target) -> int | None:
    """The pid launchd runs the agent as; None when it does not (not loaded, not running, or no
    GUI domain to ask)."""
    shown = _launchctl(target, "print", f"{target.domain}/{LABEL}")
    if shown.code != 0:
        return None
    for line in shown.out.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep and key == "pid" and value.strip().isdigit():
            return int(value.strip())
    return None


def stop(target: Target) -> str:
    """SIGTERM through launchd (KeepAlive restarts only after an unsuccessful exit, so the clean
    exit that follows stays stopped until the next login or `launchctl kickstart`)."""
    check(_launchctl(target, "kill", "SIGTERM", f"{target.domain}/{LABEL}"), f"stop {LABEL}")
    return f"asked launchd to stop {LABEL} (it starts again at the next login)"
