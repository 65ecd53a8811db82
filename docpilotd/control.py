"""`docpilotd stop`: stop the daemon that owns a data root, and wait until it has exited.

Which daemon: the one holding the data root's lock (storage/lock.py). The holder writes its pid
into the lock file and the kernel drops the lock when the process exits, so a held lock names a
live process; the pid file of a detached daemon says the same, but only the lock is trusted.
Before any signal the process is checked to be docpilotd (its command line names it). When the
user's service manager runs it (systemd's MainPID, launchd's pid), it is stopped through the
manager, which then knows it was stopped on purpose; otherwise it gets SIGTERM, on which it
finishes its requests, saves every changed session and exits 0 (runtime/app.py).

Then `stop` waits until the lock is released (the daemon's last act, after its final save and
after removing its socket) and the process is gone, at most `timeout` seconds.

Invariants: no signal goes to a process that is not a docpilotd holding this data root's lock;
"not running" is DaemonNotRunning (exit 3) and changes nothing; a daemon that has not exited in
time is DaemonStillRunning (exit 3) and is left to finish, never killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from . import where
from .errors import DaemonNotRunning, DaemonStillRunning, DocpilotError, PermissionDenied
from .paths import layout_for
from .storage.lock import holder_pid


def stop(home: str | None, out: TextIO, timeout: float = 120.0) -> int:
    """Stop the daemon of the data root `home` (default: where the client looks); 0 once it has
    exited."""
    root = Path(where.absolute(home) if home else where.configured_root())
    layout = layout_for(root)
    pid = holder_pid(layout.lock)
    if pid is None:
        raise DaemonNotRunning(f"nothing to stop: no docpilotd is running for {layout.root}")
    command = command_line(pid)
    if command is not None and "docpilotd" not in command:
        raise PermissionDenied(
            f"pid {pid} holds {layout.lock} but is not docpilotd ({command[:80]!r}); it was not signalled"
        )
    how = _through_service_manager(pid)
    if how is None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # it exited meanwhile: the wait below confirms it
        except PermissionError:
            raise PermissionDenied(f"not allowed to signal docpilotd (pid {pid})") from None
        how = "sent SIGTERM"
    _wait_for_exit(layout.lock, pid, timeout)
    out.write(f"docpilotd (pid {pid}) stopped: {how}; its sessions were saved\n")
    return 0


def command_line(pid: int) -> str | None:
    """The command line of process `pid` (arguments joined by spaces), or None when there is no
    such process or it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # Linux: the process is gone
    except OSError:
        return None
    try:  # macOS and the BSDs: no /proc
        done = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.decode("utf-8", "replace").strip()
    return text or None


def alive(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie waiting for its parent has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[-1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def _through_service_manager(pid: int) -> str | None:
    """Stop the service when the user's service manager runs docpilotd as `pid`; what was done,
    or None when it does not (or there is no manager to ask)."""
    if not (sys.platform.startswith("linux") or sys.platform == "darwin"):
        return None
    from . import service

    try:
        target = service.this_target()
        if service.main_pid(target) != pid:
            return None
        return service.stop(target)
    except DocpilotError:
        return None


def _wait_for_exit(lock: Path, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while holder_pid(lock) == pid or alive(pid):
        if time.monotonic() >= deadline:
            raise DaemonStillRunning(
                f"docpilotd (pid {pid}) has not exited {timeout:g} s after it was asked to stop (its final save "
                "may still be running); it was left to finish: 'docpilot status' tells whether it still runs"
            )
        time.sleep(0.05)
