"""A command's output as docpilotd keeps it: a capped part (its head and its tail), and without the
terminal's escape sequences. Pure text logic, standard library only: the client (`docpilot run`,
`docpilot record --output-file`) keeps the capped part while the output streams by, and the
daemon's recorder applies the same cap and removes escape sequences before it redacts and stores.

Why head and tail: a build or a test run says what it set out to do at its start and why it failed
at its end; the middle of 100 MB of output is what nobody reads in a document, and it would be in
every snapshot and backup of the session. So of more than `limit` bytes, the first half and the
last half of `limit` are kept, with one line between them saying how much was left out:

    [... 12,345,678 bytes not kept ...]

The cuts fall at line ends when a line end lies in the outer half of the kept part (a secret on a
line is then kept whole or not at all, so the redaction rules still recognise it), else at a
character boundary. Bytes are decoded as UTF-8, what is not UTF-8 becoming U+FFFD.

Why escape sequences go before redaction: a token printed in colour (`ESC[32mghp_...ESC[0m`) is
preceded by a letter, and the token rules only match a token that starts a word; without the
sequences it does. Carriage returns are kept (the renderer shows a progress bar's last state).

Invariants: `Kept` holds less than 2 x `limit` + 64 KiB (plus the chunk being added) however much
output passes; the kept text is at most `limit` bytes of the output plus the marker line; a
limit of 0 keeps nothing (None); nothing here raises on any input.
"""

from __future__ import annotations

import re

DEFAULT_MAX_BYTES = 64 * 1024
MAX_MAX_BYTES = 512 * 1024  # with the rest of a record, within the default request line limit (1 MiB)
MARKER_ROOM = 64  # bytes the marker line takes at most: a kept text that long over its limit is whole

# CSI (colours, cursor movement), OSC (window titles, links; ended by BEL or ST) and the other
# two-character escapes; the same sequences the renderer drops.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")


def marker(dropped: int) -> str:
    return f"[... {dropped:,} bytes not kept ...]"


def halves(limit: int) -> tuple[int, int]:
    """How many bytes of the head and of the tail `limit` keeps."""
    limit = max(0, limit)
    return limit // 2, limit - limit // 2


class Kept:
    """The capped part of a stream of bytes: `add` each chunk as it passes, `text()` at the end."""

    __slots__ = ("_head", "_head_limit", "_tail", "_tail_limit", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._head_limit, self._tail_limit = halves(self.limit)
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data and self._tail_limit:
            self._tail += data
            if len(self._tail) > 2 * self._tail_limit + 65536:  # trimmed now and then, not per chunk
                del self._tail[: len(self._tail) - self._tail_limit]

    def text(self) -> str | None:
        """What is kept, decoded; None when the limit is 0 (nothing is kept)."""
        if self.limit == 0:
            return None
        tail = bytes(self._tail[-self._tail_limit :]) if self._tail_limit else b""
        return assemble(bytes(self._head), tail, self.total)


def assemble(head: bytes, tail: bytes, total: int) -> str:
    """The text of `head` and `tail` (the first and last bytes of `total` bytes of output): whole
    when they are all of it, else cut at line ends with the marker line between them."""
    if len(head) + len(tail) >= total:
        return (head + tail[len(head) + len(tail) - total :]).decode("utf-8", "replace")
    cut = head.rfind(b"\n")
    if cut >= len(head) // 2:
        head = head[: cut + 1]
    else:
        head = _whole_characters_before(head)
    cut = tail.find(b"\n")
    if 0 <= cut < len(tail) // 2:
        tail = tail[cut + 1 :]
    else:
        tail = _whole_characters_after(tail)
    dropped = total - len(head) - len(tail)
    text = head.decode("utf-8", "replace")
    if text and not text.endswith("\n"):
        text += "\n"
    return text + marker(dropped) + "\n" + tail.decode("utf-8", "replace")


def keep(data: bytes, limit: int) -> str | None:
    """The capped part of `data` (all of it in hand)."""
    kept = Kept(limit)
    kept.add(data)
    return kept.text()


def keep_text(text: str | None, limit: int) -> str | None:
    """The capped part of `text`, unchanged when it is within `limit` bytes of UTF-8 and a marker
    line (so that what a client kept with the same limit is kept as it is)."""
    if text is None or limit <= 0:
        return None
    if len(text) * 4 <= limit + MARKER_ROOM:  # a character is at most 4 bytes
        return text
    data = text.encode("utf-8", "surrogatepass")
    return text if len(data) <= limit + MARKER_ROOM else keep(data, limit)


def without_escapes(text: str) -> str:
    """`text` without the terminal's escape sequences (colours, cursor moves, titles)."""
    return _ESCAPES.sub("", text) if "\x1b" in text else text


def _whole_characters_before(data: bytes) -> bytes:
    """`data` without a UTF-8 character cut short at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # the lead byte of the last character: is the character whole?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= need else data[:-back]
    return data


def _whole_characters_after(data: bytes) -> bytes:
    """`data` without the continuation bytes of a character cut short at its start."""
    skip = 0
    while skip < min(3, len(data)) and 0x80 <= data[skip] < 0xC0:
        skip += 1
    return data[skip:]
