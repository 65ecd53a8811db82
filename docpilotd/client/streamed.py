"""Reading a session the daemon sends (`show`, `export`) as it arrives, one item at a time.

The reply is one ordinary line, `{"ok":true,"id":N,"result":{...the session...}}` (the daemon
writes it a slice at a time: runtime/server.py), and an older daemon's reply is the same line. A
session of a million commands is hundreds of megabytes of JSON and several times that as Python
objects, so the line is not parsed whole: `events` walks it as it comes off the socket and yields
each key of the session and each item of its three long lists (commands, annotations, events);
`read` hands them to a `Consumer`, which prints or writes each and lets it go. The client then
holds what it prints (or nothing, for a file) instead of the reply and its parse.

Invariants: every item is checked against its results type (Command, Annotation, Event) before the
consumer sees it, and the rest of the session against SessionDocument (its lists empty) once the
line has ended: a reply that does not fit is a ProtocolError, exit 8, as for every other reply.
A reply that is an error, or whose result is not an object, is parsed whole and reported exactly
as `Connection.request` reports it. `JsonWriter` writes what `json.dumps(session, ...)` would, to
the byte. Standard library only, imported only by the verbs that read a whole session.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from .. import results
from ..errors import DaemonNotRunning, ProtocolError, error_from_code
from .transport import Connection

LISTS = {"commands": results.Command, "annotations": results.Annotation, "events": results.Event}
_WHITESPACE = " \t\r"
_decoder = json.JSONDecoder()


class Consumer(Protocol):
    """What `read` tells as it walks the session: its keys in the order the daemon sent them."""

    def value(self, key: str, value: Any) -> None:
        """A key of the session other than the long lists, with its value."""

    def start(self, key: str) -> None:
        """One of the long lists begins (its items follow, then `end`)."""

    def item(self, key: str, item: Any) -> None:
        """An item of the list `key`, checked against its type."""

    def end(self, key: str) -> None:
        """The list `key` has ended."""


class _Truncated(Exception):
    """The reply ended (the daemon closed the connection) before its line did."""


class _Line:
    """The reply line as it arrives: `buf[pos:]` is what is received and not yet parsed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buf = self.utf8.decode(conn._buffer)
        conn._buffer = b""
        self.pos = 0

    def more(self, at_least: int = 1) -> None:
        """Receive more of the line (at least `at_least` more characters, when it has them)."""
        received = 0
        pieces = [self.buf[self.pos :]]
        while received < at_least:
            if "\n" in pieces[-1] and len(pieces) > 1:
                break
            try:
                chunk = self.conn.sock.recv(1 << 20)
            except TimeoutError:
                raise DaemonNotRunning(f"docpilotd did not answer in time ({self.conn.path})") from None
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                raise _Truncated
            try:
                text = self.utf8.decode(chunk)
            except UnicodeDecodeError:
                raise ProtocolError("the daemon sent a reply that is not JSON") from None
            pieces.append(text)
            received += len(text)
            if "\n" in text:
                break
        self.buf = "".join(pieces)
        self.pos = 0

    def char(self) -> str:
        """The next character that is not white space (not consumed)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            self.more()

    def take(self, expected: str) -> str:
        found = self.char()
        if found not in expected:
            raise ProtocolError("the daemon sent a reply that is not JSON")
        self.pos += 1
        return found

    def value(self) -> Any:
        """The next JSON value, whole."""
        self.char()
        while True:
            # A value at the very end of what arrived may go on (a number, or one cut in two):
            # it is complete once a character follows it, and the line's newline always does.
            try:
                value, end = _decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf):
                    self.pos = end
                    return value
            except ValueError:
                if "\n" in self.buf[self.pos :]:  # the whole rest of the line is here: not JSON
                    raise ProtocolError("the daemon sent a reply that is not JSON") from None
            self.more(at_least=len(self.buf) - self.pos)  # a long value: twice as much each time


# What `events` yields: ("value", key, value) for a key of the session other than the long lists,
# ("start", key, None), ("item", key, item) and ("end", key, None) for one of them, and last
# ("done", "", session): the session's other keys, its long lists empty, checked.
Event = tuple[str, str, Any]


def events(conn: Connection, op: str, /, **args: Any) -> Iterator[Event]:
    """Send `op` and walk its reply, a session, as it arrives (see Event). An error reply raises
    its DocpilotError at the first step, before anything of the session is seen."""
    try:
        conn.write_request(op, **args)
        yield from _walk(_Line(conn), op)
    except _Truncated:
        raise DaemonNotRunning(f"docpilotd closed the connection ({conn.path}); is it stopping?") from None
    except TimeoutError:
        raise DaemonNotRunning(f"docpilotd did not answer in time ({conn.path})") from None
    except (ConnectionResetError, BrokenPipeError):
        raise DaemonNotRunning(f"docpilotd closed the connection ({conn.path}); is it stopping?") from None


def feed(stream: Iterable[Event], consumer: Consumer) -> results.SessionDocument:
    """Hand every event of `stream` to `consumer`; returns the session of the last ("done")."""
    for kind, key, value in stream:
        if kind == "item":
            consumer.item(key, value)
        elif kind == "value":
            consumer.value(key, value)
        elif kind == "start":
            consumer.start(key)
        elif kind == "end":
            consumer.end(key)
        else:
            done: results.SessionDocument = value
            return done
    raise ProtocolError("the daemon's reply ended before the session did")  # pragma: no cover


def read(conn: Connection, op: str, consumer: Consumer, /, **args: Any) -> results.SessionDocument:
    """Send `op` and walk its reply, a session, through `consumer`; returns the session's keys
    other than the long lists, which are empty (each item went to the consumer), checked."""
    return feed(events(conn, op, **args), consumer)


def _walk(line: _Line, op: str) -> Iterator[Event]:
    what = f"the daemon's reply to {op!r}"
    reply: dict[str, Any] = {}
    if line.char() != "{":
        line.value()  # not an object: a ProtocolError if it is not JSON either
        raise ProtocolError("the daemon sent a reply that is not an object")
    line.take("{")
    if line.char() != "}":
        while True:
            key = line.value()
            if not isinstance(key, str):
                raise ProtocolError("the daemon sent a reply that is not JSON")
            line.take(":")
            if key == "result" and reply.get("ok") is True and line.char() == "{":
                session: dict[str, Any] = {}
                yield from _session(line, session, what)
                reply[key] = session
            else:
                reply[key] = line.value()
            if line.take(",}") == "}":
                break
    else:
        line.take("}")
    line.take("\n")
    if not reply.get("ok"):
        error = reply.get("error") or {}
        if not isinstance(error, dict):
            error = {}
        raise error_from_code(str(error.get("code", "error")), str(error.get("message", "unknown error")))
    yield "done", "", results.decode(results.SessionDocument, reply.get("result"), what)


def _session(line: _Line, session: dict[str, Any], what: str) -> Iterator[Event]:
    line.take("{")
    if line.char() == "}":
        line.take("}")
        return
    while True:
        key = line.value()
        if not isinstance(key, str):
            raise ProtocolError("the daemon sent a reply that is not JSON")
        line.take(":")
        shape = LISTS.get(key)
        if shape is not None and line.char() == "[":
            line.take("[")
            yield "start", key, None
            if line.char() == "]":
                line.take("]")
            else:
                index = 0
                while True:
                    item = line.value()
                    yield "item", key, results.decode(shape, item, f"{what} ({key}[{index}])")
                    index += 1
                    if line.take(",]") == "]":
                        break
            yield "end", key, None
            session[key] = []
        else:
            value = line.value()
            yield "value", key, value
            session[key] = value
        if line.take(",}") == "}":
            return


class JsonWriter(Consumer):
    """The session as `json.dumps(session, ensure_ascii=False, indent=indent)` writes it (plus a
    newline), produced as it arrives: `write` gets the text a piece at a time."""

    def __init__(self, write: Callable[[str], None], indent: int | None) -> None:
        self.write = write
        self.indent = indent
        self.keys = 0
        self.items = 0
        if indent is None:
            self.key_sep, self.item_sep, self.item_pad, self.close_list, self.close = ", ", ", ", "", "]", "}"
        else:
            pad = " " * indent
            self.key_sep, self.item_sep = ",\n" + pad, ",\n" + pad * 2
            self.item_pad, self.close_list, self.close = "\n" + pad * 2, "\n" + pad + "]", "\n}"
        self.first_key = "{" if indent is None else "{\n" + " " * indent

    def _key(self, key: str) -> None:
        self.write((self.first_key if not self.keys else self.key_sep) + json.dumps(key, ensure_ascii=False) + ": ")
        self.keys += 1

    def _dumps(self, value: Any, depth: int) -> str:
        text = json.dumps(value, ensure_ascii=False, indent=self.indent)
        if self.indent is None:
            return text
        # A string never holds a raw newline (JSON escapes it): every newline is the layout's.
        return text.replace("\n", "\n" + " " * (self.indent * depth))

    def value(self, key: str, value: Any) -> None:
        self._key(key)
        self.write(self._dumps(value, 1))

    def start(self, key: str) -> None:
        self._key(key)
        self.write("[")
        self.items = 0

    def item(self, key: str, item: Any) -> None:
        self.write((self.item_pad if not self.items else self.item_sep) + self._dumps(item, 2))
        self.items += 1

    def end(self, key: str) -> None:
        self.write(self.close_list if self.items else "]")

    def finish(self) -> None:
        self.write((self.close if self.keys else "{}") + "\n")


class Blocks:
    """Text gathered into UTF-8 blocks of about `size` characters, each handed to `sink` (a file
    or standard output is written in large blocks, not once per item)."""

    def __init__(self, sink: Callable[[bytes], object], size: int = 1 << 20) -> None:
        self.sink = sink
        self.size = size
        self.parts: list[str] = []
        self.length = 0

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)
        if self.length >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            # As the whole text was encoded before: a lone surrogate from a JSON escape becomes "?".
            self.sink("".join(self.parts).encode("utf-8", "replace"))
            self.parts, self.length = [], 0
