"""Socket activation: adopt the listening socket a service manager passed us (`LISTEN_FDS`).

systemd (a `docpilotd.socket` unit) or `systemd-socket-activate` binds the socket and passes it as
file descriptor 3 onwards, with `LISTEN_PID` naming the process it is meant for and `LISTEN_FDS`
the count (sd_listen_fds(3)); launchd does not use this protocol. `adopt_listening_socket` takes
that socket over, or returns None when nothing was passed to this process.

Invariants:
- The LISTEN_* variables are consumed (removed from the environment) on the first call, whatever
  the outcome, and every passed descriptor is marked close-on-exec, so nothing leaks further.
- Only a listening AF_UNIX stream socket bound at the data root's own socket path is adopted (that
  path is where every client looks); anything else is a `ConfigError` naming both paths, and the
  passed descriptors are closed. The adopted socket file is made 0600 (promise 6).
- Adopting does not accept anything: the caller hands the socket to `Server.start` only after
  recovery, so connections made meanwhile wait in the kernel's backlog (promise 3).
- The service manager owns the path of an adopted socket: it keeps listening after the daemon
  exits and starts it again on the next connection, so the daemon must never unlink that path
  (the server is told so: `Server(..., owns_path=False)`).
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..errors import ConfigError

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def passed_fds() -> list[int]:
    """The descriptors passed to this process (none when LISTEN_PID names another one); consumes
    the LISTEN_* variables and marks each descriptor close-on-exec."""
    pid = os.environ.get("LISTEN_PID", "")
    count = os.environ.get("LISTEN_FDS", "")
    for name in _VARIABLES:
        os.environ.pop(name, None)
    if not pid or not count:
        return []
    try:
        if int(pid) != os.getpid() or int(count) <= 0:
            return []
        fds = list(range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)))
    except ValueError:
        return []
    for fd in fds:
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        except OSError:
            raise ConfigError(f"LISTEN_FDS={count}, but descriptor {fd} is not open") from None
    return fds


def adopt_listening_socket(expected: Path) -> socket.socket | None:
    """The passed listening socket bound at `expected`, non-blocking; None if none was passed."""
    fds = passed_fds()
    if not fds:
        return None
    found: socket.socket | None = None
    seen: list[str] = []
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            seen.append(f"fd {fd} (not a socket)")
            continue
        where = _describe(sock)
        if found is None and _is_ours(sock, expected):
            found = sock
        else:
            seen.append(where)
            sock.close()
    if found is None:
        raise ConfigError(
            f"the service manager passed {', '.join(seen)}, but this data root's socket is {expected} "
            f"(a listening Unix stream socket there is required: set ListenStream={expected})"
        )
    try:
        os.chmod(expected, 0o600)
    except OSError:
        pass  # an abstract or vanished path: the peer uid check still guards every connection
    found.setblocking(False)
    return found


def _is_ours(sock: socket.socket, expected: Path) -> bool:
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        return False
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        name = sock.getsockname()
    except OSError:
        return False
    if not listening or not isinstance(name, str) or not name:
        return False
    return os.path.realpath(name) == os.path.realpath(expected)


def _describe(sock: socket.socket) -> str:
    try:
        name = sock.getsockname()
    except OSError:
        name = "?"
    kind = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "datagram"}.get(sock.type, str(sock.type))
    family = getattr(sock.family, "name", str(sock.family))
    return f"{family} {kind} socket {name or '(unnamed)'}"
