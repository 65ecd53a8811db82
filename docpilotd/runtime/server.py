"""The socket server: framing, limits, peer check, and one clear reply per request line.

Invariants: a connection from another uid gets `permission_denied` and is closed before anything is
read; a line longer than `max_line_bytes` gets `request_too_large` and the connection is closed (the
rest of that line cannot be framed); a silent connection is closed after `idle_timeout`, a started
line that does not finish within `read_timeout` likewise; at most `max_connections` are served at
once (the next is told `busy` and closed). No input can raise out of `_serve`: every failure is a
reply or a closed connection, and other clients are served meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import sys
from pathlib import Path

import msgspec

from .. import protocol
from ..config import Limits
from ..errors import (
    DocpilotError,
    PermissionDenied,
    ProtocolError,
    RequestTooLarge,
    UnknownOperation,
    UnsupportedVersion,
)
from . import handlers

log = logging.getLogger("docpilotd.server")


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None if the OS cannot say)."""
    try:
        if sys.platform.startswith("linux"):
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return struct.unpack("3i", creds)[1]
        if hasattr(os, "getpeereid"):  # pragma: no cover - BSD and macOS
            return os.getpeereid(sock.fileno())[0]  # type: ignore[attr-defined]
    except OSError:
        return None
    return None  # pragma: no cover


def error_reply(request_id: object, exc: DocpilotError) -> bytes:
    body = protocol.ErrorBody(code=exc.code, message=exc.message)
    return protocol.encode(protocol.Response(ok=False, id=request_id, error=body))  # type: ignore[arg-type]


def parse(line: bytes) -> protocol.Request:
    """Decode one request line into a request, or raise a ProtocolError saying what is wrong."""
    try:
        request = protocol.decode_request(line)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "$.op" in text:
            raise UnknownOperation(f"unknown op; known: {', '.join(protocol.OPS)}") from None
        raise ProtocolError(f"invalid request: {text}") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises it for bad UTF-8 inside a string
        raise ProtocolError(f"not valid JSON: a string is not UTF-8 ({exc.reason})") from None
    except RecursionError:
        raise ProtocolError("not valid JSON: nested too deeply") from None
    if request.v != protocol.PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"protocol version {request.v} is not supported (this daemon speaks {protocol.PROTOCOL_VERSION})"
        )
    return request


def request_id_of(line: bytes) -> object:
    """Best effort: the id of a request that failed to decode, so the client can match the error."""
    try:
        raw = msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    ident = raw.get("id") if isinstance(raw, dict) else None
    return ident if isinstance(ident, (int, str)) and not isinstance(ident, bool) else None


class Server:
    def __init__(self, ctx: handlers.Context, limits: Limits, socket_path: Path) -> None:
        self.ctx = ctx
        self.limits = limits
        self.socket_path = socket_path
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = bind_socket(self.socket_path)
        self._server = await asyncio.start_unix_server(
            self._accept, sock=sock, limit=self.limits.max_line_bytes + 1, backlog=512
        )

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish, then close every connection."""
        if self._server is not None:
            self._server.close()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        except asyncio.TimeoutError:
            log.warning("requests still running after %.0f s; closing anyway", grace)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        try:
            self.socket_path.unlink()
        except OSError:
            pass

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # pragma: no cover - a bug; keep serving everyone else
            log.exception("connection failed")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid is None or uid != os.getuid():
            writer.write(error_reply(None, PermissionDenied("this daemon serves only its owner")))
            await _drain(writer)
            return
        if len(self._connections) > self.limits.max_connections:
            writer.write(error_reply(None, ProtocolError("busy: too many connections, try again")))
            await _drain(writer)
            return
        while True:
            line = await self._read_line(reader, writer)
            if line is None:
                return
            if not line.strip():
                continue
            self._begin()
            try:
                reply = await self._handle(line)
            finally:
                self._end()
            writer.write(reply)
            await _drain(writer)

    async def _read_line(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
        try:
            # Idle wait for the first byte, then the rest of the line within read_timeout.
            first = await asyncio.wait_for(reader.read(1), timeout=self.limits.idle_timeout)
            if not first:
                return None
            if first == b"\n":
                return b""
            rest = await asyncio.wait_for(reader.readuntil(b"\n"), timeout=self.limits.read_timeout)
            return first + rest
        except asyncio.TimeoutError:
            return None
        except asyncio.IncompleteReadError as exc:
            # The peer closed after a last line without a newline: serve that line (hooks do this).
            return (first + exc.partial) if exc.partial else None
        except asyncio.LimitOverrunError:
            writer.write(error_reply(None, RequestTooLarge(f"request line longer than {self.limits.max_line_bytes} bytes")))
            await _drain(writer)
            return None

    async def _handle(self, line: bytes) -> bytes:
        if len(line) > self.limits.max_line_bytes:
            return error_reply(None, RequestTooLarge(f"request line longer than {self.limits.max_line_bytes} bytes"))
        try:
            request = parse(line)
        except ProtocolError as exc:
            return error_reply(request_id_of(line), exc)
        try:
            result = await handlers.dispatch(request, self.ctx)
        except DocpilotError as exc:
            return error_reply(request.id, exc)
        except Exception as exc:  # a bug: report it, keep serving
            log.exception("request %s failed", type(request).__name__)
            return error_reply(request.id, DocpilotError(f"internal error: {type(exc).__name__}"))
        try:
            return protocol.encode(protocol.Response(ok=True, id=request.id, result=result))
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            log.exception("could not encode the reply")
            return error_reply(request.id, DocpilotError(f"internal error encoding the reply: {exc}"))

    def _begin(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _end(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()


async def _drain(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        pass


def bind_socket(path: Path) -> socket.socket:
    """Bind the listening socket 0600 in its 0700 directory, replacing a stale socket file.

    Called only while holding the data lock, so an existing socket file belongs to a dead daemon.
    """
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is created 0600, never briefly world-connectable
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(512)
    sock.setblocking(False)
    return sock
