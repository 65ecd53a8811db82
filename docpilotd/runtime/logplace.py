"""Where the daemon's log goes, in words a person can act on (`docpilot status` shows it).

The log file when `log_file` is set (a detached daemon always has one: `docpilotd.log` in the data
root unless configured otherwise). Otherwise standard error, which is the journal under systemd
(JOURNAL_STREAM names the stream), the plist's log file under launchd, a file a script redirected
it to, or the terminal `docpilotd run` was started in: the file is named when it is one.

Invariants: standard library only; never raises (a log that cannot be found is said in words).
"""

from __future__ import annotations

import os
import stat

JOURNAL = "the journal (journalctl --user -u docpilotd)"
TERMINAL = "standard error (the terminal or program that started docpilotd run)"


def describe(log_file: str | None) -> str:
    """The log file's absolute path, or where standard error goes."""
    if log_file:
        return os.path.abspath(os.path.expanduser(log_file))
    try:
        st = os.fstat(2)
    except OSError:
        return "nowhere: standard error is closed"
    if os.environ.get("JOURNAL_STREAM") == f"{st.st_dev}:{st.st_ino}":
        return JOURNAL
    if stat.S_ISREG(st.st_mode):
        return _path_of(2) or TERMINAL
    return TERMINAL


def _path_of(fd: int) -> str | None:
    """The path of the file open as `fd` (Linux: /proc; macOS: F_GETPATH), or None."""
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
        return path if path.startswith("/") else None
    except OSError:
        pass
    import fcntl

    op = getattr(fcntl, "F_GETPATH", None)
    if op is None:
        return None
    try:
        raw = fcntl.fcntl(fd, op, bytes(1024))
    except OSError:
        return None
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace") or None
