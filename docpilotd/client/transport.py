"""The client's one I/O seam: send a request line to the daemon's socket and read the reply line.

Finds the socket the way the daemon places it (see docpilotd.paths, mirrored here without its
imports to keep the client light). Raises DaemonNotRunning, with how to start it, when nothing
listens.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from ..errors import DaemonNotRunning, ProtocolError, error_from_code

SOCKET_NAME = "docpilotd.sock"
START_HINT = "start it with 'docpilotd run' (or 'docpilotd run --detach')"


def socket_path() -> Path:
    home = os.environ.get("DOCPILOT_HOME")
    if home:
        return Path(home).expanduser().absolute() / "run" / SOCKET_NAME
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        try:
            st = os.stat(runtime)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
                return Path(runtime) / "docpilot" / SOCKET_NAME
        except OSError:
            pass
    return Path.home() / ".docpilot" / "run" / SOCKET_NAME


class Connection:
    def __init__(self, path: Path | None = None, timeout: float = 30.0) -> None:
        self.path = path or socket_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise DaemonNotRunning(f"docpilotd is not running ({self.path}); {START_HINT}") from None
        except OSError as exc:
            self.sock.close()
            raise DaemonNotRunning(f"cannot reach docpilotd at {self.path}: {exc.strerror}; {START_HINT}") from None
        self._buffer = b""
        self._next_id = 1

    def request(self, op: str, **args: Any) -> Any:
        """Send one request and return its result; raise the daemon's error as a DocpilotError."""
        message = {"op": op, "id": self._next_id, **{k: v for k, v in args.items() if v is not None}}
        self._next_id += 1
        try:
            # Arguments that were not valid UTF-8 (surrogate-escaped by Python) keep their valid
            # parts; the invalid bytes become U+FFFD instead of making the request unreadable.
            raw = json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogateescape")
            self.sock.sendall(raw.decode("utf-8", "replace").encode("utf-8") + b"\n")
            line = self._read_line()
        except socket.timeout:
            raise DaemonNotRunning(f"docpilotd did not answer in time ({self.path})") from None
        except (ConnectionResetError, BrokenPipeError):
            raise DaemonNotRunning(f"docpilotd closed the connection ({self.path}); is it stopping?") from None
        try:
            reply = json.loads(line)
        except ValueError:
            raise ProtocolError("the daemon sent a reply that is not JSON") from None
        if not isinstance(reply, dict):
            raise ProtocolError("the daemon sent a reply that is not an object")
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise error_from_code(str(error.get("code", "error")), str(error.get("message", "unknown error")))

    def _read_line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
