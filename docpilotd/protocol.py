"""The wire protocol: newline-delimited JSON over a Unix stream socket. Depends on msgspec alone.

One request object per line, one response per line, in order:

    {"op": "note", "id": 7, "session": "…", "text": "Proxy is up"}
    {"id": 7, "ok": true, "result": {...}}
    {"id": 7, "ok": false, "error": {"code": "invalid_transition", "message": "…"}}

Arguments are named like the client's long options. `v` (optional, default 1) is the protocol
version the client speaks; a daemon that does not know it answers `unsupported_version`. `session`
is optional on session verbs: the daemon then picks the most recently started live session.
A client that cannot link msgspec (a shell hook) can write these lines by hand; the daemon accepts
any JSON object that decodes to one of the request types below and nothing else.

Requests are defined here; the `result` of each is defined in docpilotd/results.py (standard
library only, so that the client can decode replies without msgspec): the handlers build those
types, and `Response` encodes them as they are.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

import msgspec

from .domain.model import AnnotationType, Int32

PROTOCOL_VERSION = 1

Text = Annotated[str, msgspec.Meta(max_length=1_000_000)]
ShortText = Annotated[str, msgspec.Meta(max_length=4096)]
RequestId = Union[int, str, None]


class _Request(msgspec.Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    id: RequestId = None
    v: int = PROTOCOL_VERSION


class _SessionRequest(_Request, kw_only=True):
    session: ShortText | None = None


class Hello(_Request, tag="hello"):
    pass


PolicyName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Start(_Request, tag="start"):
    description: Text
    output_file: ShortText | None = None
    tags: list[ShortText] = []
    cwd: ShortText | None = None
    shell: ShortText | None = None
    user: ShortText | None = None
    policy: PolicyName | None = None  # a backup policy of the config (`[policies.NAME]`, or "default")


class Policy(_SessionRequest, tag="policy"):
    """The session's backup policy: shown, or with `policy` chosen (a name of the config), or with
    `clear` given back to its tags and the default."""

    policy: PolicyName | None = None
    clear: bool = False


class Stop(_SessionRequest, tag="stop"):
    pass


class Pause(_SessionRequest, tag="pause"):
    pass


class Resume(_SessionRequest, tag="resume"):
    pass


AnnotationKind = Literal["note", "explanation", "warning", "milestone"]


class Annotate(_SessionRequest, tag="annotate"):
    text: Text
    type: AnnotationKind = "note"


class Record(_SessionRequest, tag="record"):
    command: Text
    exit_code: Int32 | None = None
    cwd: ShortText = ""
    shell: ShortText = ""
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=2**53)] | None = None
    started_at: ShortText | None = None  # RFC 3339; the daemon's clock when absent
    started_us: Annotated[int, msgspec.Meta(ge=0, le=2**62)] | None = None  # epoch microseconds (hooks)
    # fish has no clock builtin: it reads the boot clock (/proc/uptime, seconds) when it writes the
    # line, and names the boot it read it in; the daemon turns that into the wall-clock start.
    uptime_s: Annotated[float, msgspec.Meta(ge=0, le=2**40)] | None = None
    boot_id: ShortText | None = None
    output: Text | None = None
    # A spooled record carries the id the hook gave it, so a replayed spool never duplicates.
    capture_id: ShortText | None = None
    pipestatus: list[Int32] | None = None


class Status(_SessionRequest, tag="status"):
    pass


class Sessions(_Request, tag="sessions"):
    pass


class Show(_SessionRequest, tag="show"):
    pass


class Annotations(_SessionRequest, tag="annotations"):
    """The session's annotations; with `type`, only that kind; with `recent`, only the N most
    recent (by timestamp) of those, still in the session's order."""

    recent: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    type: AnnotationKind | None = None


class EditAnnotation(_SessionRequest, tag="edit_annotation"):
    """New text (and, with `type`, a new kind) for an annotation of a live session; its id and
    timestamp stay. `annotation`: its id, or a prefix of it (4 characters at least) that no other
    annotation of the session starts with."""

    annotation: ShortText
    text: Text
    type: AnnotationKind | None = None


class DeleteAnnotation(_SessionRequest, tag="delete_annotation"):
    """Remove an annotation of a live session (`annotation` as for `edit_annotation`)."""

    annotation: ShortText


class Save(_Request, tag="save"):
    pass


class Backups(_SessionRequest, tag="backups"):
    pass


class Restore(_SessionRequest, tag="restore"):
    """Replace the session with a backup generation (`backup`; without `session`: the session its
    name names), or with the session as it was at `at` (RFC 3339), rebuilt from a generation and the
    journal after it. `dry_run`: say what the session would become, change nothing."""

    backup: ShortText | None = None
    at: ShortText | None = None
    dry_run: bool = False


class Points(_SessionRequest, tag="points"):
    """The moments `restore --at` can rebuild for the session."""


class Recovery(_Request, tag="recovery"):
    pass


class Cleanup(_Request, tag="cleanup"):
    max_age_days: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]
    dry_run: bool = False  # list what would be removed, remove nothing


class Stats(_Request, tag="stats"):
    pass


class Export(_SessionRequest, tag="export"):
    format: Literal["json", "markdown"] = "json"


class Import(_Request, tag="import"):
    path: ShortText


class Generate(_SessionRequest, tag="generate"):
    """Markdown documentation of the session. Without `output` (what the client sends), the
    result has the text (`markdown`), the session's `output_file` (absolute, or null) and
    `output_file_trusted` (true only for a file `start --output-file` chose in this data root):
    the client decides where the document goes and writes it. `output` (older clients): an
    absolute path the daemon writes itself (never a FIFO, a device or the data root); the result
    then has `path` and `bytes` instead of the text."""

    output: ShortText | None = None
    # The layout (a built-in, DocPilot's alias, or the user's own; null: the configured default),
    # paths relative to `relative_to` ("auto": the start directory when every command ran under
    # it; "": absolute; else an absolute directory) and durations shown from `slow_seconds`.
    template: ShortText | None = None
    relative_to: ShortText = "auto"
    slow_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400 * 365)] | None = None


class Templates(_Request, tag="templates"):
    """The document templates `generate --template` accepts, and where each comes from."""


class Redact(_SessionRequest, tag="redact"):
    """Remove `pattern` (literal text, or a regular expression with `regex`) from everything
    stored of the session, and from whatever is recorded from now on."""

    pattern: ShortText
    regex: bool = False


class RedactCheck(_Request, tag="redact_check"):
    """What the redaction rules in force (plus `patterns`, tried for this text only) would replace
    in `text`, and what an allow pattern would keep; nothing is stored or changed."""

    text: Text
    patterns: Annotated[list[ShortText], msgspec.Meta(max_length=64)] = msgspec.field(default_factory=list)


class Search(_Request, tag="search"):
    """Commands (with their output) and annotations of every session, live or stopped, holding the
    words of `text` close together (the last may be the start of a word), newest first. `failed`:
    only commands that failed; `since` (RFC 3339): only what happened from then on; `dir` (absolute):
    only commands run in it or below; `session` (an id or its first characters): only that session;
    `limit`: at most this many hits."""

    text: ShortText
    failed: bool = False
    since: ShortText | None = None
    dir: ShortText | None = None
    session: ShortText | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20


class Purge(_Request, tag="purge"):
    """Delete a session everywhere; a live one only with `force`. The session must be named."""

    session: ShortText
    force: bool = False
    dry_run: bool = False  # list what would be removed, remove nothing


Request = Union[
    Hello, Start, Stop, Pause, Resume, Annotate, Record, Status, Sessions, Show, Annotations, EditAnnotation, DeleteAnnotation,
    Save, Backups, Restore, Recovery, Cleanup, Stats, Export, Import, Generate, Templates, Redact, RedactCheck, Purge, Search, Policy, Points,
]

OPS: tuple[str, ...] = tuple(t.__struct_config__.tag for t in Request.__args__)  # type: ignore[attr-defined]

ANNOTATION_KINDS: dict[str, AnnotationType] = {
    "note": "Note",
    "explanation": "Explanation",
    "warning": "Warning",
    "milestone": "Milestone",
}


class ErrorBody(msgspec.Struct):
    code: str
    message: str


class Response(msgspec.Struct, omit_defaults=True):
    ok: bool
    id: RequestId = None
    result: Any = None  # one of docpilotd.results' types (or the stored object one describes)
    error: ErrorBody | None = None


_request_decoder = msgspec.json.Decoder(Request)
_record_decoder = msgspec.json.Decoder(Record)
_CONTROL = re.compile(rb"[\x00-\x1f]")
_encoder = msgspec.json.Encoder()


def decode_request(line: bytes) -> Request:
    """The request on one line; raises msgspec errors or RecursionError on bad input."""
    return _request_decoder.decode(line)


def decode_spooled_record(line: bytes) -> Record | None:
    """A `record` line a shell hook appended to its spool file, or None. Tolerant of what shells
    write: raw control characters are escaped and invalid UTF-8 replaced before a second try."""
    try:
        return _record_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        pass
    repaired = _CONTROL.sub(lambda m: b"\\u%04x" % m.group()[0], line)
    repaired = repaired.decode("utf-8", "replace").encode("utf-8")
    try:
        return _record_decoder.decode(repaired)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def encode(message: Any) -> bytes:
    return _encoder.encode(message) + b"\n"


def reply_head(request_id: RequestId) -> bytes:
    """The bytes a successful reply starts with, up to its result's first byte: a result written
    after them, then `}` and a newline, make the line `encode(Response(ok=True, id=..., result=...))`
    (a streamed reply: runtime/server.py)."""
    empty = _encoder.encode(Response(ok=True, id=request_id))  # {"ok":true,"id":7}: result left out
    return empty[:-1] + b',"result":'
