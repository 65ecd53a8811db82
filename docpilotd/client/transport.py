"""The client's one I/O seam: send a request line to the daemon's socket and read the reply line.

Finds the socket where the daemon places it (`where.socket_path`, the one definition both use;
it imports only os and stat). Light on purpose (no pathlib, typing only when a reply is decoded):
the hot verbs (client/lean.py) start with this module and little else. Raises DaemonNotRunning, with how to start it, when nothing
listens. It speaks JSON through the interpreter's own accelerator (`_json`: the scanner and string
quoting json.loads and json.dumps use) and sockets through `_socket`: the `json` and `socket`
modules import `re`, `enum` and `selectors`, which cost `docpilot note` more than the
interpreter's start-up itself. `dumps` and `loads` give what json.dumps(ensure_ascii=False) and
json.loads give for JSON values (tests/client/test_lean.py compares them).

A reply is decoded before anyone reads it: `request` names the result type it expects
(docpilotd/results.py, the types the daemon's handlers build) and returns the result checked
against it. A reply that is not JSON, not an object, or whose result does not fit is a
ProtocolError (exit 8) naming the request, never a KeyError later.

Only our own daemon hears us. Before anything is sent (a note, a command line, the secret piped into
`redact`), the client checks that the socket's directory belongs to us and is not writable by
others, that the socket itself is a socket that belongs to us, and, once connected, that the process
listening runs as our uid (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS and the BSDs). Anything
else is PermissionDenied (exit 9) and the connection is closed unused. On a system with neither
peer-credential call the path checks are all there is (a listener of another user cannot bind in a
directory of ours that only we can write).
"""

from __future__ import annotations

import _socket
import os
import stat
import sys

from .. import where
from ..errors import DaemonNotRunning, PermissionDenied, ProtocolError, error_from_code

TYPE_CHECKING = False  # not typing's: importing typing costs the hot verbs 2 ms (see lean.py)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    R = TypeVar("R")

START_HINT = "start it with 'docpilotd run' (or 'docpilotd run --detach')"

_accel: Any
try:  # CPython's accelerator of the json module; the json module itself where it is missing
    import _json as _accel
except ImportError:  # pragma: no cover
    _accel = None


class _Reading:
    """What json.loads reads JSON with by default (the scanner reads these attributes)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan = _accel.make_scanner(_Reading) if _accel is not None else None
_BLANK = " \t\n\r"


def loads(data: bytes) -> Any:
    """json.loads(data) for a UTF-8 line; ValueError when it is not one JSON value."""
    text = data.decode("utf-8", "surrogatepass")
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_BLANK))
    try:
        value, end = _scan(text, start)
    except StopIteration:
        raise ValueError("Expecting value") from None
    if text[end:].strip(_BLANK):
        raise ValueError("Extra data")
    return value


def dumps(value: Any) -> str:
    """json.dumps(value, ensure_ascii=False), by the same C encoder; what it cannot encode is
    json.dumps's to refuse."""
    if _accel is not None:
        try:
            encode = _accel.make_encoder({}, _refuse, _accel.encode_basestring, None, ": ", ", ", False, False, True)
            return "".join(encode(value, 0))
        except TypeError:
            pass
    import json

    return json.dumps(value, ensure_ascii=False)


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def socket_path() -> str:
    """Where the daemon listens: where.socket_path(), the one definition the daemon uses too."""
    return where.socket_path()


def check_socket_path(path: str) -> None:
    """Refuse (PermissionDenied) a socket that another user could have put there: its directory
    must be ours and not writable by others, the socket a socket of ours. Nothing there at all is
    DaemonNotRunning."""
    uid = os.geteuid()
    directory = os.path.dirname(path)
    try:
        dir_st = os.stat(directory)
    except (FileNotFoundError, NotADirectoryError):
        raise DaemonNotRunning(f"docpilotd is not running ({path}); {START_HINT}") from None
    except OSError as exc:
        raise PermissionDenied(f"refusing to use {path}: cannot examine {directory}: {exc.strerror}") from None
    if dir_st.st_uid != uid:
        raise PermissionDenied(
            f"refusing to use {path}: its directory {directory} belongs to uid {dir_st.st_uid}, not to you "
            f"(uid {uid}); another user may be listening there (check DOCPILOT_HOME)"
        )
    if dir_st.st_mode & 0o022:
        raise PermissionDenied(
            f"refusing to use {path}: its directory {directory} is writable by other users "
            f"(mode {stat.S_IMODE(dir_st.st_mode):o}); make it 0700"
        )
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise DaemonNotRunning(f"docpilotd is not running ({path}); {START_HINT}") from None
    except OSError as exc:
        raise PermissionDenied(f"refusing to use {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise PermissionDenied(f"refusing to use {path}: it is not a socket")
    if st.st_uid != uid:
        raise PermissionDenied(
            f"refusing to use {path}: the socket belongs to uid {st.st_uid}, not to you (uid {uid})"
        )


def peer_uid(sock: _socket.socket) -> int | None:
    """The uid of the process at the other end (as it was when it listened), or None when this
    system offers no way to ask."""
    if hasattr(_socket, "SO_PEERCRED"):  # Linux: struct ucred {pid_t pid; uid_t uid; gid_t gid;}
        raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        return int.from_bytes(raw[4:8], sys.byteorder)
    if sys.platform == "darwin" or "bsd" in sys.platform:
        # getpeereid(3) is LOCAL_PEERCRED at level SOL_LOCAL (0), giving struct xucred
        # {u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16];} (76 bytes).
        level, option = getattr(_socket, "SOL_LOCAL", 0), getattr(_socket, "LOCAL_PEERCRED", 0x001)
        try:
            raw = sock.getsockopt(level, option, 76)
        except OSError:
            return None
        return int.from_bytes(raw[4:8], sys.byteorder)
    return None


class Connection:
    def __init__(self, path: str | None = None, timeout: float = 30.0) -> None:
        self.path = str(path) if path else socket_path()
        check_socket_path(self.path)
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise DaemonNotRunning(f"docpilotd is not running ({self.path}); {START_HINT}") from None
        except OSError as exc:
            self.sock.close()
            raise DaemonNotRunning(f"cannot reach docpilotd at {self.path}: {exc.strerror}; {START_HINT}") from None
        try:
            uid = peer_uid(self.sock)
        except OSError as exc:
            self.sock.close()
            raise PermissionDenied(f"refusing to talk to {self.path}: cannot tell who listens there ({exc.strerror})") from None
        if uid is not None and uid != os.geteuid():
            self.sock.close()
            raise PermissionDenied(
                f"refusing to talk to {self.path}: the process listening there runs as uid {uid}, "
                f"not as you (uid {os.geteuid()}); nothing was sent"
            )
        self._buffer = b""
        self._next_id = 1

    def request(self, op: str, expect: type[R], /, **args: Any) -> R:
        """Send one request and return its result, decoded as `expect`; raise the daemon's error
        as a DocpilotError, a reply that does not fit as a ProtocolError."""
        from ..results import decode  # typing: paid by the verbs that decode, not by the hot ones

        return decode(expect, self.send(op, **args), f"the daemon's reply to {op!r}")

    def send(self, op: str, /, **args: Any) -> Any:
        """Send one request and return its result as sent (JSON); the daemon's error as a
        DocpilotError. For the hot verbs, which check the few fields they read themselves."""
        try:
            self.write_request(op, **args)
            line = self._read_line()
        except TimeoutError:
            raise DaemonNotRunning(f"docpilotd did not answer in time ({self.path})") from None
        except (ConnectionResetError, BrokenPipeError):
            raise DaemonNotRunning(f"docpilotd closed the connection ({self.path}); is it stopping?") from None
        try:
            reply = loads(line)
        except ValueError:
            raise ProtocolError("the daemon sent a reply that is not JSON") from None
        if not isinstance(reply, dict):
            raise ProtocolError("the daemon sent a reply that is not an object")
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise error_from_code(str(error.get("code", "error")), str(error.get("message", "unknown error")))

    def write_request(self, op: str, /, **args: Any) -> None:
        """Send one request line (None values left out); the reply is the caller's to read (send,
        or client/streamed.py for a session read as it arrives)."""
        message = {"op": op, "id": self._next_id, **{k: v for k, v in args.items() if v is not None}}
        self._next_id += 1
        # Arguments that were not valid UTF-8 (surrogate-escaped by Python) keep their valid
        # parts; the invalid bytes become U+FFFD instead of making the request unreadable.
        raw = dumps(message).encode("utf-8", "surrogateescape")
        self.sock.sendall(raw.decode("utf-8", "replace").encode("utf-8") + b"\n")

    def _read_line(self) -> bytes:
        # The pieces joined once at the end: a reply of hundreds of megabytes is not copied again
        # for every piece received.
        parts = [self._buffer]
        while (end := parts[-1].find(b"\n")) == -1:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionResetError
            parts.append(chunk)
        last = parts.pop()
        parts.append(last[:end])
        self._buffer = last[end + 1 :]
        return b"".join(parts)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
