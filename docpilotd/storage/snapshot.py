"""The snapshot file: a DocPilot Session JSON plus one extra top-level field, `docpilotd`, last.

    {...every DocPilot field..., "docpilotd": {"schema": 2, "seq": 42, "checksum": "crc32:…"}}

DocPilot ignores unknown fields, so our files still load there. `seq` is the last journal sequence
number the snapshot contains (replay starts after it). The checksum catches damage that still
parses and validates (bit rot in a command's text). Two kinds, by schema:

- schema 2 (written now): `crc32:` + 8 hex digits, zlib's CRC-32 of the file's raw bytes before the
  `"docpilotd"` key, then of the schema and `seq`. The field is written last, so the key is the
  last occurrence of `"docpilotd"` in the file (a quote inside a JSON string is always escaped: the
  key cannot be inside one, and an earlier string value equal to it comes before). Everything
  after the key must be byte for byte what we write for that field (compact or 2-space pretty):
  with the CRC over everything before it, no byte of the file can change and still verify.
  Checking costs one backward search and one CRC of the bytes read, no re-encoding. Why CRC-32:
  this is a guard against accidental damage (torn writes, bit rot, an editor), not against
  someone forging a file; zlib.crc32 is in the standard library on every platform, runs at
  several GB/s (about 11 us for a 47 KB session, against 57 us to re-encode and BLAKE2b it) and
  detects every error burst up to 32 bits and every 1- or 2-bit error at any size we write.
- schema 1 (older daemons): `blake2b:` + BLAKE2b-128 of the compact encoding of the session
  without the `docpilotd` field, then of `seq`. Still verified that way (re-encoding what was
  read: msgspec encodes a decoded struct to the same bytes).

A file whose `docpilotd` field is missing although its last bytes hold one of our checksums had
that field's name damaged: it is a mismatch, not a DocPilot file without a checksum.
Files are written pretty-printed with a 2-space indent, like DocPilot's.

`decode` never raises: it returns a `Decoded` with the session or the reason it is not usable.

Encoding in two steps, for the daemon: `capture(session)` takes, on the event loop, what a snapshot
of this instant needs (the compact JSON of everything but the three long lists, and shallow copies
of those lists: pointer copies, about 1 ms per 100k items); `encode_captured` then produces the file
anywhere (the I/O thread), a chunk of items at a time, so the loop is never held for longer than one
chunk. This relies on an invariant of the domain: a command, annotation or event is never mutated
once it is in a session's list (changes append new items; an annotation's edit puts a new object
in the old one's place and a delete takes it out of the list; a replacement or a redaction builds
new objects), so the copied lists still describe exactly the captured instant. The result is byte for
byte what encoding the whole session at once gives (`encode` is built on the same two steps).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from ..domain import validate
from ..domain.model import Session, is_live

SCHEMA = 2
CHECKSUM_PREFIX = "crc32:"
SCHEMA_V1 = 1  # written by older daemons, still verified their way
CHECKSUM_PREFIX_V1 = "blake2b:"
# What encode_captured puts in the file until the checksum of the bytes before it is known (same
# length as every real one, so the layout of the file does not depend on the checksum's value).
_PLACEHOLDER = CHECKSUM_PREFIX + "0" * 8


class FileMeta(msgspec.Struct, forbid_unknown_fields=False):
    schema: int
    seq: int
    checksum: str


class SessionFile(Session, omit_defaults=True):
    """A Session as stored, with docpilotd's own field (absent in DocPilot's files)."""

    docpilotd: FileMeta | None = None


_META_KEY = b'"docpilotd"'
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SessionFile)

Integrity = Literal["verified", "unverified", "mismatch"]


def checksum_v1(body: bytes, seq: int) -> str:
    """Schema 1: BLAKE2b-128 of the compact session body and the sequence number (a rotted `seq`
    would make replay skip or repeat journal records, so it is covered too)."""
    digest: Any = hashlib.blake2b(body, digest_size=16)
    digest.update(b"\0seq=%d" % seq)
    return CHECKSUM_PREFIX_V1 + str(digest.hexdigest())


def raw_checksum(crc: int, seq: int) -> str:
    """Schema 2: finish `crc` (zlib.crc32 of the file's bytes before the `"docpilotd"` key) with
    the schema and `seq`, which sit after the key (a rotted `seq` would make replay skip or repeat
    journal records)."""
    crc = zlib.crc32(b"\0schema=%d\0seq=%d" % (SCHEMA, seq), crc)
    return f"{CHECKSUM_PREFIX}{crc:08x}"


def meta_tail(meta: FileMeta, pretty: bool) -> bytes:
    """The bytes of a file we write from the `"docpilotd"` key to its end, final newline included."""
    compact = _META_KEY + b":" + _encoder.encode(meta)
    if not pretty:
        return compact + b"}\n"
    # Formatted as a member of the top-level object, as the whole file is: key at depth 1.
    return msgspec.json.format(b"{" + compact + b"}", indent=2)[4:] + b"\n"


def encode_body(session: Session) -> bytes:
    """Compact JSON of the DocPilot fields only."""
    if isinstance(session, SessionFile) and session.docpilotd is not None:
        meta, session.docpilotd = session.docpilotd, None
        try:
            return _encoder.encode(session)
        finally:
            session.docpilotd = meta
    return _encoder.encode(session)


def encode(session: Session, seq: int, pretty: bool = True) -> bytes:
    """The bytes of a snapshot file for `session` containing journal records up to `seq`."""
    return b"".join(encode_captured(capture(session), seq, pretty))


# -- encoding in two steps: capture on the loop, encode anywhere ----------------------------------

# Items per encoded chunk: about 100 KB of JSON, well under a millisecond of encoding or formatting
# (what the event loop may wait for the GIL while the I/O thread encodes a large session).
CHUNK_ITEMS = 400
# Written files are handed to the file system in blocks of about this size (small sessions: one).
BLOCK_BYTES = 1 << 20
_LISTS = ("commands", "annotations", "events")
# Session's fields are in this order, so in the encoding of a session whose three lists are empty
# these bytes occur exactly once (a quote inside a JSON string is always escaped, so `,"` and a raw
# newline followed by a quote cannot be inside one).
_EMPTY_COMPACT = b',"commands":[],"annotations":[],"events":[],'
_EMPTY_PRETTY = b'\n  "commands": [],\n  "annotations": [],\n  "events": [],\n'


@dataclass(frozen=True)
class Capture:
    """A session as it is at one instant: `skeleton` is the compact JSON of the session with its
    three long lists empty, `lists` shallow copies of commands, annotations and events."""

    skeleton: bytes
    lists: tuple[Sequence[Any], Sequence[Any], Sequence[Any]]


def capture(session: Session) -> Capture:
    """What `encode_captured` needs, in time linear in pointer copies (call it where `session` is
    owned: the event loop). DocPilot's fields only: a SessionFile's own `docpilotd` is left out."""
    fields = {name: getattr(session, name) for name in Session.__struct_fields__}
    lists = (list(session.commands), list(session.annotations), list(session.events))
    fields.update(commands=[], annotations=[], events=[])
    return Capture(_encoder.encode(Session(**fields)), lists)


def encode_captured(captured: Capture, seq: int, pretty: bool = True) -> list[bytes]:
    """The snapshot file for `captured` containing journal records up to `seq`, as blocks of bytes
    to be written in order (joined, they equal `encode(session, seq, pretty)`)."""
    head, found, tail = captured.skeleton.partition(_EMPTY_COMPACT)
    if not found:  # pragma: no cover - the field order is fixed by the model
        raise ValueError("unexpected session layout")
    chunked: list[list[bytes]] = []
    for items in captured.lists:
        # The compact items of each chunk, without the brackets: "a,b,c".
        chunked.append([_encoder.encode(items[i : i + CHUNK_ITEMS])[1:-1] for i in range(0, len(items), CHUNK_ITEMS)])
    meta = _encoder.encode(FileMeta(schema=SCHEMA, seq=seq, checksum=_PLACEHOLDER))
    closing = b',"docpilotd":' + meta + b"}"
    pieces: list[bytes]
    if not pretty:
        pieces = [head]
        for name, chunks in zip(_LISTS, chunked):
            pieces.append(b',"' + name.encode() + b'":[')
            pieces.extend(_joined(chunks, b","))
            pieces.append(b"]")
        pieces += [b"," + tail[:-1], closing, b"\n"]
        return _blocks(_sealed(pieces, seq))
    # The skeleton (with our field) formatted as a whole, then each list's chunks formatted alone
    # and indented one level deeper: the items of the top-level lists sit at depth 2.
    skeleton = msgspec.json.format(captured.skeleton[:-1] + closing, indent=2)
    phead, found, ptail = skeleton.partition(_EMPTY_PRETTY)
    if not found:  # pragma: no cover - the field order is fixed by the model
        raise ValueError("unexpected session layout")
    pieces = [phead]
    for name, chunks in zip(_LISTS, chunked):
        pieces.append(b'\n  "' + name.encode() + b'": ')
        if not chunks:
            pieces.append(b"[],")
            continue
        pieces.append(b"[\n")
        formatted = []
        for chunk in chunks:
            lines = msgspec.json.format(b"[" + chunk + b"]", indent=2)[2:-2]  # without "[\n" and "\n]"
            formatted.append(b"  " + lines.replace(b"\n", b"\n  "))
        pieces.extend(_joined(formatted, b",\n"))
        pieces.append(b"\n  ],")
    pieces += [b"\n", ptail, b"\n"]
    return _blocks(_sealed(pieces, seq))


def _sealed(pieces: list[bytes], seq: int) -> list[bytes]:
    """`pieces` with the placeholder replaced by the checksum of every byte before our key (the
    last `"docpilotd"` of the next-to-last piece, which holds our field; the last is the newline)."""
    last = pieces[-2]
    at = last.rfind(_META_KEY)
    crc = 0
    for piece in pieces[:-2]:
        crc = zlib.crc32(piece, crc)  # zlib releases the GIL for large inputs
    crc = zlib.crc32(last[:at], crc)
    slot = last.rindex(_PLACEHOLDER.encode())
    sealed = last[:slot] + raw_checksum(crc, seq).encode() + last[slot + len(_PLACEHOLDER) :]
    return [*pieces[:-2], sealed, pieces[-1]]


def _joined(parts: list[bytes], separator: bytes) -> list[bytes]:
    """`parts` with `separator` between them, as a list of pieces (no copy of the parts)."""
    result: list[bytes] = []
    for n, part in enumerate(parts):
        if n:
            result.append(separator)
        result.append(part)
    return result


def _blocks(pieces: list[bytes]) -> list[bytes]:
    """Consecutive pieces joined into blocks of about BLOCK_BYTES (never one huge copy)."""
    blocks: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for piece in pieces:
        group.append(piece)
        size += len(piece)
        if size >= BLOCK_BYTES:
            blocks.append(b"".join(group))
            group, size = [], 0
    if group or not blocks:
        blocks.append(b"".join(group))
    return blocks


@dataclass(frozen=True)
class Decoded:
    session: Session | None
    seq: int = 0
    integrity: Integrity = "unverified"
    problem: str | None = None

    @property
    def usable(self) -> bool:
        """Decoded, valid and not contradicted by its checksum."""
        return self.session is not None and self.problem is None and self.integrity != "mismatch"


def describe_unreadable(data: bytes) -> str | None:
    """A plain description of content that cannot be a session at all, else None."""
    if not data:
        return "empty file (zero bytes)"
    if b"\x00" not in data:  # one fast scan for the usual case
        return None
    if data.count(0) == len(data):
        return f"file is all NUL bytes ({len(data)} bytes)"
    if b"\x00" in data:
        return f"file contains NUL bytes at offset {data.index(0)} (torn or damaged write)"
    return None


def decode(data: bytes, expected_id: str | None = None, trust_finished: bool = False) -> Decoded:
    """Decode and validate snapshot bytes; never raises.

    `trust_finished` (start-up recovery): a finished session (stopped or failed) whose checksum
    verifies skips the checks of each command, annotation and event (see domain.validate), which
    cost more than decoding. Such a session stays on disk and is validated in full when it is
    loaded to be served; fsck and every other load always check everything."""
    unreadable = describe_unreadable(data)
    if unreadable:
        return Decoded(None, problem=unreadable)
    try:
        session = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        return Decoded(None, problem=f"invalid session data: {exc}")
    except msgspec.DecodeError as exc:
        return Decoded(None, problem=f"not valid JSON: {exc}")
    except UnicodeDecodeError as exc:  # msgspec raises it for bad UTF-8 inside a string
        return Decoded(None, problem=f"not valid JSON: a string is not UTF-8 ({exc.reason})")
    except RecursionError:
        return Decoded(None, problem="not valid JSON: nested too deeply")
    meta = session.docpilotd
    integrity: Integrity = "unverified"
    seq = 0
    if meta is not None:
        seq = max(0, meta.seq)
        integrity = _check(data, session, meta)
    elif _sealed_tail(data):
        integrity = "mismatch"  # our field's name is damaged: see the module docstring
    trusted = trust_finished and integrity == "verified" and not is_live(session)
    found = validate.problems(session, items=not trusted)
    if expected_id is not None and session.id != expected_id:
        found.insert(0, f"id: file is named for {expected_id} but holds session {session.id[:60]!r}")
    if found:
        return Decoded(session, seq, integrity, "; ".join(found))
    return Decoded(session, seq, integrity)


def _check(data: bytes, session: SessionFile, meta: FileMeta) -> Integrity:
    """Whether the file's checksum, of the kind its schema says, verifies (see the module docstring)."""
    if meta.schema == SCHEMA and meta.checksum.startswith(CHECKSUM_PREFIX):
        at = data.rfind(_META_KEY)
        if at == -1:  # pragma: no cover - the decoder found the key
            return "mismatch"
        # Everything from the key on is exactly what we write for this field (the final newline
        # may be missing: it is the one byte of the file that no reader sees)...
        tail = data[at:]
        if tail.endswith(b"\n"):
            tail = tail[:-1]
        if tail not in (meta_tail(meta, pretty=True)[:-1], meta_tail(meta, pretty=False)[:-1]):
            return "mismatch"
        # ...and the CRC covers everything before it, with the schema and seq.
        crc = zlib.crc32(memoryview(data)[:at])
        return "verified" if raw_checksum(crc, meta.seq) == meta.checksum else "mismatch"
    if meta.schema == SCHEMA_V1 and meta.checksum.startswith(CHECKSUM_PREFIX_V1):
        return "verified" if checksum_v1(encode_body(session), meta.seq) == meta.checksum else "mismatch"
    return "mismatch"  # a kind of checksum this daemon cannot check (or a damaged schema)


_SEALED_TAIL_BYTES = 200  # our whole field fits in it, whatever `seq` (at most 19 digits)


def _sealed_tail(data: bytes) -> bool:
    """The last bytes hold a checksum value of ours (of either kind)."""
    tail = data[-_SEALED_TAIL_BYTES:]
    return b'"' + CHECKSUM_PREFIX.encode() in tail or b'"' + CHECKSUM_PREFIX_V1.encode() in tail


TAIL_BYTES = 4096  # our field is the last one of a file we wrote: it is always in its last bytes
_meta_decoder = msgspec.json.Decoder(FileMeta)


def seq_from_tail(tail: bytes) -> int | None:
    """The `seq` our field records, read from the last bytes of a snapshot without decoding the
    session (a checkpoint needs the sequence of each retained backup, and decoding a large backup
    would hold the GIL for a long time). 0 when there is no field of ours at the end (DocPilot's
    files); None when there is one but it cannot be read this way (the caller decodes the file)."""
    start = tail.rfind(_META_KEY)  # a quote inside a string is escaped: this is the key itself
    if start == -1:
        return 0
    rest = tail[start + len(_META_KEY) :].strip()
    if not (rest.startswith(b":") and rest.endswith(b"}")):
        return None
    try:
        return max(0, _meta_decoder.decode(rest[1:-1]).seq)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None


def plain_session(session: Session) -> Session:
    """The session as a plain DocPilot Session (no docpilotd field), sharing the same lists."""
    if type(session) is Session:
        return session
    fields = {name: getattr(session, name) for name in Session.__struct_fields__}
    return Session(**fields)


def encode_plain(session: Session) -> bytes:
    """Pretty DocPilot JSON without docpilotd's field (export)."""
    return msgspec.json.format(encode_body(session), indent=2) + b"\n"


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: whether the file is a good copy, the sequence it holds, why not, and
    how it was judged ("crc": our schema-2 field, from the bytes alone; "decoded": in full)."""

    ok: bool
    seq: int
    problem: str | None
    how: Literal["crc", "decoded"]


def verify(data: bytes, expected_id: str | None = None) -> Verdict:
    """Whether `data` is an intact snapshot (of `expected_id`), as cheaply as can be told (the
    scrub reads every retained copy). A file that ends with our schema-2 field is judged by its
    CRC over the raw bytes and by the id its first bytes name: no JSON is decoded, so a CRC that
    verifies means the bytes are exactly those we wrote (and validated). Anything else -- a
    DocPilot file, a schema-1 file, a field that does not parse -- is decoded in full (`decode`),
    so nothing is called good here that `decode` would refuse. Never raises."""
    unreadable = describe_unreadable(data)
    if unreadable:
        return Verdict(False, 0, unreadable, "crc")
    at = data.rfind(_META_KEY)
    meta: FileMeta | None = None
    if at != -1:
        rest = data[at + len(_META_KEY) :].strip()
        if rest.startswith(b":") and rest.endswith(b"}"):
            try:
                meta = _meta_decoder.decode(rest[1:-1])
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
                meta = None
    if meta is not None and meta.schema == SCHEMA and meta.checksum.startswith(CHECKSUM_PREFIX) \
            and (expected_id is None or _names_id(data, expected_id)):
        tail = data[at:]
        if tail.endswith(b"\n"):
            tail = tail[:-1]
        if tail in (meta_tail(meta, pretty=True)[:-1], meta_tail(meta, pretty=False)[:-1]) \
                and raw_checksum(zlib.crc32(memoryview(data)[:at]), meta.seq) == meta.checksum:
            return Verdict(True, max(0, meta.seq), None, "crc")
        return Verdict(False, max(0, meta.seq), "checksum mismatch (the bytes changed since they were written)", "crc")
    decoded = decode(data, expected_id)
    if decoded.usable:
        return Verdict(True, decoded.seq, None, "decoded")
    return Verdict(False, decoded.seq, decoded.problem or "checksum mismatch", "decoded")


def _names_id(data: bytes, session_id: str) -> bool:
    """Whether the file starts with the session's `id` (the first field of a Session, in the
    compact or the 2-space pretty form we write)."""
    quoted = _encoder.encode(session_id)
    return data.startswith(b'{"id":' + quoted + b",") or data.startswith(b'{\n  "id": ' + quoted + b",")
