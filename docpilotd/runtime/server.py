"""The socket server: framing, limits, peer check, and one clear reply per request line.

Invariants: a connection from another uid gets `permission_denied` and is closed before anything is
read; a line longer than `max_line_bytes` gets `request_too_large` and the connection is closed (the
rest of that line cannot be framed); a silent connection is closed after `idle_timeout`, a started
line that does not finish within `read_timeout` likewise; at most `max_connections` are served at
once (the next is told `busy` and closed). No input can raise out of `_serve`: every failure is a
reply or a closed connection, and other clients are served meanwhile.

A reply is one line, however large. A large one is written as the client takes it: a session
(`show`, `export`: handlers.SessionReply) is encoded a slice at a time, every other reply longer
than WRITE_SLICE is handed to the transport in slices of it; before each slice the connection
waits until the transport's buffer is below its high-water mark (pause_writing/resume_writing),
and yields to the loop, so other clients are answered between two slices and the daemon holds a
slice or two of a reply, never a second copy of it. A client that goes away mid-reply ends the
writing at the next slice (nothing more is encoded), and so does one that takes nothing of it for
`idle_timeout` (it is hung up on). A request is in flight (`stop` waits for it) until its reply is
written.

After a large reply built whole (longer than WRITE_SLICE: a document, `generate` or a Markdown
`export`), the memory its handler used is handed back to the system (`trim_heap`, in the I/O pool):
rendering a large session makes millions of small objects, in the I/O threads' malloc arenas too,
and glibc keeps the pages they freed unless asked. A streamed session needs no trim (it holds a
slice or two at a time), and a trim is not free: with a 1,000,000-command session in memory it
takes about 100 ms, during which the loop's own large allocations wait for the arena.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import struct
import sys
from collections import deque
from collections.abc import Iterator
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
# A reply longer than this is written a slice at a time (see the module docstring).
WRITE_SLICE = 256 * 1024
Reply = bytes | Iterator[bytes]  # one line, or the pieces of one line (a streamed reply)


def _malloc_trim() -> object:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; elsewhere freed memory is the allocator's affair
    except (OSError, AttributeError):
        return None


_trim = _malloc_trim() if sys.platform.startswith("linux") else None


def trim_heap() -> None:
    """Return the free pages of every malloc arena to the system (glibc's malloc_trim(0); nothing a
    program can see changes). Does nothing where there is no such call."""
    if callable(_trim):
        _trim(0)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None if the OS cannot say)."""
    try:
        if sys.platform.startswith("linux"):
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            uid: int = struct.unpack("3i", creds)[1]
            return uid
        getpeereid = getattr(os, "getpeereid", None)
        if getpeereid is not None:  # pragma: no cover - BSD and macOS
            return int(getpeereid(sock.fileno())[0])
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
    """Owns the listening socket and every connection; one `_Connection` protocol per client."""

    def __init__(self, ctx: handlers.Context, limits: Limits, socket_path: Path, owns_path: bool = True) -> None:
        self.ctx = ctx
        self.limits = limits
        self.socket_path = socket_path
        # False for a socket a service manager passed in: it keeps the path after we exit.
        self.owns_path = owns_path
        self._server: asyncio.base_events.Server | None = None
        self.connections: set[_Connection] = set()
        self._in_flight = 0
        self._trimming = False
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = bind_socket(self.socket_path)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Connection(self), sock=sock, backlog=512)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish, then close every connection."""
        if self._server is not None:
            self._server.close()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        except TimeoutError:
            log.warning("requests still running after %.0f s; closing anyway", grace)
        for connection in list(self.connections):
            connection.close()
        if self.owns_path:
            try:
                self.socket_path.unlink()
            except OSError:
                pass

    async def serve(self, line: bytes, connection: _Connection) -> None:
        """Answer one request line on `connection`: in flight until the reply is written."""
        self._in_flight += 1
        self._idle.clear()
        try:
            reply = await self.handle(line)
            # A large reply made at once (a document): its handler built the whole of it.
            built = isinstance(reply, bytes) and len(reply) > WRITE_SLICE
            await connection.send(reply)
            del reply
            if built:
                await self._trim_heap()
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _trim_heap(self) -> None:
        """After a large reply: the memory it took back to the system (one trim at a time)."""
        if self._trimming or _trim is None:
            return
        self._trimming = True
        try:
            await asyncio.get_running_loop().run_in_executor(self.ctx.engine.pool, trim_heap)
        finally:
            self._trimming = False

    async def handle(self, line: bytes) -> Reply:
        """The reply line (or its pieces) for one request line; never raises."""
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
        if isinstance(result, handlers.SessionReply):
            return result.pieces(request.id)
        try:
            return protocol.encode(protocol.Response(ok=True, id=request.id, result=result))
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            log.exception("could not encode the reply")
            return error_reply(request.id, DocpilotError(f"internal error encoding the reply: {exc}"))


class _Connection(asyncio.Protocol):
    """One client. Lines are answered strictly in order, one at a time (a pipelining client gets
    its replies in order); reading pauses while replies are not being read (bounded memory)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.lines: deque[bytes] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.last_activity = self.loop.time()
        self.partial_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.eof = False
        self.closed = False
        self.reading_paused = False
        self.writable = asyncio.Event()  # clear while the transport's buffer is above its high-water mark
        self.writable.set()

    # -- transport events ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if uid is None or uid != os.getuid():
            self._refuse(PermissionDenied("this daemon serves only its owner"))
            return
        if len(self.server.connections) >= self.server.limits.max_connections:
            self._refuse(ProtocolError("busy: too many connections, try again"))
            return
        self.server.connections.add(self)
        self._arm_timer(min(self.server.limits.idle_timeout, self.server.limits.read_timeout))

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = self.loop.time()
        self.buffer += data
        start = 0
        while (end := self.buffer.find(b"\n", start)) != -1:
            if end > start:
                self.lines.append(bytes(self.buffer[start:end]))
            start = end + 1
        if start:
            del self.buffer[:start]
        limit = self.server.limits.max_line_bytes
        if len(self.buffer) > limit:
            # The rest of this line cannot be framed: answer once, then hang up.
            self.buffer.clear()
            self.lines.append(b"")  # marker: the worker replies request_too_large and closes
        self.partial_since = (self.partial_since or self.last_activity) if self.buffer else None
        self._kick()

    def eof_received(self) -> bool:
        # A last line without a newline is still a request (`printf ... | nc -U` sends those).
        if self.buffer.strip():
            self.lines.append(bytes(self.buffer))
        self.buffer.clear()
        self.partial_since = None
        self.eof = True
        self._kick()
        return True  # keep the transport open to write the remaining replies

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()  # a reply being written ends at its next slice
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()

    def pause_writing(self) -> None:
        self.writable.clear()
        if self.transport is not None and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writable.set()
        if self.transport is not None and self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- work ------------------------------------------------------------------------------------

    def _kick(self) -> None:
        if self.lines and self.worker is None:
            self.worker = self.loop.create_task(self._work())
        elif self.eof and not self.lines and self.worker is None:
            self.close()

    async def _work(self) -> None:
        try:
            while self.lines and not self.closed:
                line = self.lines.popleft()
                if not line:  # the oversize marker
                    limit = self.server.limits.max_line_bytes
                    self._write(error_reply(None, RequestTooLarge(f"request line longer than {limit} bytes")))
                    self.close()
                    return
                if not line.strip():
                    continue
                await self.server.serve(line, self)
        finally:
            self.worker = None
        if self.eof and not self.closed:
            self.close()

    async def send(self, reply: Reply) -> None:
        """Write one reply line: at once when short, else a slice at a time as the client reads."""
        if isinstance(reply, bytes) and len(reply) <= WRITE_SLICE:
            self._write(reply)
            return
        pieces: Iterator[bytes | memoryview]
        if isinstance(reply, bytes):
            view = memoryview(reply)  # slices of it are not copies
            pieces = (view[i : i + WRITE_SLICE] for i in range(0, len(view), WRITE_SLICE))
        else:
            pieces = reply
        try:
            for piece in pieces:
                await self._writable()
                if self.closed:
                    return  # the client left: the rest is neither encoded nor written
                self._write(piece)
        except (TypeError, ValueError, UnicodeEncodeError):
            # Part of the line is sent already: no error reply can follow it. Hang up (the client
            # sees the connection closed mid-reply) and keep serving the others.
            log.exception("could not encode a streamed reply")
            self.close()

    async def _writable(self) -> None:
        """Return when the next slice may be written: the transport's buffer is below its
        high-water mark (or the connection is closed), after letting other work run. A client
        that takes nothing of its reply for `idle_timeout` is hung up on (it held the reply)."""
        if self.writable.is_set():
            await asyncio.sleep(0)
            return
        try:
            await asyncio.wait_for(self.writable.wait(), self.server.limits.idle_timeout)
        except TimeoutError:
            self.close()

    def _write(self, data: bytes | memoryview) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def _refuse(self, error: DocpilotError) -> None:
        self._write(error_reply(None, error))
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.server.connections.discard(self)
            self.writable.set()
            self.transport.close()  # flushes what is buffered, then closes
        if self.timer is not None:
            self.timer.cancel()

    # -- timeouts: one lazy timer per connection ---------------------------------------------------

    def _arm_timer(self, delay: float) -> None:
        self.timer = self.loop.call_later(max(delay, 0.05), self._check_timeouts)

    def _check_timeouts(self) -> None:
        if self.closed:
            return
        limits = self.server.limits
        now = self.loop.time()
        if self.partial_since is not None and now - self.partial_since >= limits.read_timeout:
            self.close()  # a half-sent line that never finishes
            return
        if self.worker is None and not self.lines and now - self.last_activity >= limits.idle_timeout:
            self.close()
            return
        self._arm_timer(min(limits.idle_timeout, limits.read_timeout))


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
