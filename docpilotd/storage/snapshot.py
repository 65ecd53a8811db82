"""The snapshot file: a DocPilot Session JSON plus one extra top-level field, `docpilotd`.

    {...every DocPilot field..., "docpilotd": {"schema": 1, "seq": 42, "checksum": "blake2b:…"}}

DocPilot ignores unknown fields, so our files still load there. `seq` is the last journal sequence
number the snapshot contains (replay starts after it). `checksum` is a BLAKE2b-128 of the compact
encoding of the session without the `docpilotd` field, and of `seq`: it catches damage that still parses and
validates (bit rot in a command's text). msgspec encodes a decoded struct to the same bytes, so the
check re-encodes what was read. Files written pretty-printed with a 2-space indent, like DocPilot's.

`decode` never raises: it returns a `Decoded` with the session or the reason it is not usable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import msgspec

from ..domain import validate
from ..domain.model import Session

SCHEMA = 1
CHECKSUM_PREFIX = "blake2b:"


class FileMeta(msgspec.Struct, forbid_unknown_fields=False):
    schema: int
    seq: int
    checksum: str


class SessionFile(Session, omit_defaults=True):
    """A Session as stored, with docpilotd's own field (absent in DocPilot's files)."""

    docpilotd: FileMeta | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(SessionFile)

Integrity = Literal["verified", "unverified", "mismatch"]


def checksum(body: bytes, seq: int) -> str:
    """BLAKE2b-128 of the session body and the sequence number (a rotted `seq` would make replay
    skip or repeat journal records, so it is covered too)."""
    digest = hashlib.blake2b(body, digest_size=16)
    digest.update(b"\0seq=%d" % seq)
    return CHECKSUM_PREFIX + digest.hexdigest()


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
    body = encode_body(session)
    meta = _encoder.encode(FileMeta(schema=SCHEMA, seq=seq, checksum=checksum(body, seq)))
    # The body is a JSON object: splice our field in before its closing brace.
    data = body[:-1] + b',"docpilotd":' + meta + b"}"
    return msgspec.json.format(data, indent=2) + b"\n" if pretty else data + b"\n"


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
    if data.count(0) == len(data):
        return f"file is all NUL bytes ({len(data)} bytes)"
    if b"\x00" in data:
        return f"file contains NUL bytes at offset {data.index(0)} (torn or damaged write)"
    return None


def decode(data: bytes, expected_id: str | None = None) -> Decoded:
    """Decode and validate snapshot bytes; never raises."""
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
        integrity = "verified" if checksum(encode_body(session), meta.seq) == meta.checksum else "mismatch"
    found = validate.problems(session)
    if expected_id is not None and session.id != expected_id:
        found.insert(0, f"id: file is named for {expected_id} but holds session {session.id[:60]!r}")
    if found:
        return Decoded(session, seq, integrity, "; ".join(found))
    return Decoded(session, seq, integrity)


def plain_session(session: Session) -> Session:
    """The session as a plain DocPilot Session (no docpilotd field), sharing the same lists."""
    if type(session) is Session:
        return session
    fields = {name: getattr(session, name) for name in Session.__struct_fields__}
    return Session(**fields)


def encode_plain(session: Session) -> bytes:
    """Pretty DocPilot JSON without docpilotd's field (export)."""
    return msgspec.json.format(encode_body(session), indent=2) + b"\n"
