"""The results of the daemon's requests, as types the daemon and the client share.

Requests are msgspec types (protocol.py). A result is what an `ok` reply carries in `"result"`,
and each is described here, once: the daemon's handlers build them, and the client decodes every
reply into the type its request expects (`decode`, called by client/transport.py) before reading
a key of it. Standard library only: the client imports this module (no msgspec, no asyncio).

Why TypedDicts rather than dataclasses: the JSON on the wire is the contract and stays what it
was, key for key, including the keys that are left out rather than sent as null (`also_live`,
`duplicate`, `skipped`, `redacted`). A TypedDict says exactly that (NotRequired); the daemon
encodes the dict it built as it is (no per-field omission rules to keep in step); and a decoded
result is the parsed JSON itself, so `--json` prints what the daemon sent. (Defining one also
costs the client's start-up about 25 us, a frozen dataclass about 0.4 ms on Python 3.11.)

A result that is a stored object's JSON is sent by the daemon as that object, not copied into a
dict: `show` and `export` send the session (domain.model.Session, `SessionDocument` here),
`recovery`, `cleanup` and `stats` storage's reports. Their types here name the same fields in the
same order; tests/client/test_results.py checks the two agree.

`decode(shape, value)` checks a parsed result against its type: every required key present and
every value of its declared type, all the way down. A key the type does not name is accepted (a
newer daemon may add one). A reply that does not fit is one ProtocolError (exit 8) saying where,
never a KeyError or TypeError later. The checks are derived from the annotations themselves (on
first use of a type), so a type and its check cannot disagree.

Invariants: every handler's result is one of the types here; keys are declared in the order the
daemon writes them; a key the daemon may leave out is NotRequired and never sent as null; `decode`
returns its argument unchanged or raises ProtocolError.
"""

# No `from __future__ import annotations`: `decode` reads the annotations as objects.

import types
from collections.abc import Callable
from itertools import repeat
from typing import Any, Literal, NotRequired, Required, TypedDict, TypeVar, Union, get_args, get_origin, is_typeddict

from .errors import ProtocolError

T = TypeVar("T")

State = str  # "Active", "Paused", "Stopped" or "Error" (domain.model.state_name)
AnnotationKind = Literal["Note", "Explanation", "Warning", "Milestone"]


# -- sessions in short ---------------------------------------------------------------------------


class SessionSummary(TypedDict):
    """A session without its lists: `stop`, `pause`, `resume`, `import`, each of `sessions`, and
    what the daemon keeps in memory of every session (runtime.engine.summarize)."""

    id: str
    description: str
    state: State
    created_at: str
    updated_at: str
    started_at: str | None
    stopped_at: str | None
    commands: int
    annotations: int
    successful_commands: int
    failed_commands: int


class ListedSession(SessionSummary):
    """One of `sessions`: `offline` (left out otherwise) says why start-up recovery kept it offline
    (its state is then "Offline" and the rest is its best copy as found, read only)."""

    offline: NotRequired[str]


class LiveSession(TypedDict):
    id: str
    description: str
    state: State


class Started(SessionSummary):
    """`start`: the new session; `also_live` (left out when none) the sessions live before it."""

    also_live: NotRequired[list[LiveSession]]


class Restored(SessionSummary):
    """`restore`: the session as restored, and the backup it came from (`dry_run`: the session as
    it would be; nothing changed). `reopened`: it was stopped and the backup is of it while live,
    so it is live again (the client says so)."""

    restored_from: str
    reopened: NotRequired[bool]
    dry_run: NotRequired[bool]
    as_of: NotRequired[str]  # restore --at: the moment of the state rebuilt (its updated_at)
    journal_records: NotRequired[int]  # restore --at: records applied on top of `restored_from`


class PointsAvailable(TypedDict):
    """`restore --list-points`: any moment from `earliest` to `latest` can be restored."""

    session: str
    earliest: str  # the state of the oldest copy kept
    earliest_copy: str
    latest: str  # the last change the journal holds
    changes: int  # changes between them, each a moment that can be restored
    copies: list[str]  # copies a rebuild can start from, newest first


class SessionStatus(SessionSummary):
    seq: int  # the last acknowledged journal record
    unsaved: bool  # changes not yet in a snapshot (the journal holds them)


class SpoolBacklog(TypedDict):
    """What hooked shells spooled that the daemon has not read yet (runtime/capture/spool.py)."""

    files: int
    bytes: int


class ScrubStatus(TypedDict):
    """The last scrub (storage/scrubbing.py, runtime/scrubber.py): when it started, what it read,
    the problems found and how many were repaired from a good copy."""

    at: str
    files: int
    bytes: int
    seconds: float
    problems: int
    repaired: int


class StorageQuota(TypedDict):
    """`max_storage_mb` and what backups, journal and quarantine use (runtime/quota.py)."""

    limit_mb: float
    used_mb: float
    backups_mb: float
    journal_mb: float
    quarantine_mb: float
    over: bool  # still over after pruning backups to each policy's minimum
    pruned: int  # generations the last check removed


class DaemonStatus(TypedDict):
    pid: int
    version: str
    uptime_s: float
    durability: str
    root: str
    degraded: dict[str, str]  # session id -> why its changes are not being saved normally
    live_sessions: int
    sessions: int
    log: NotRequired[str]  # the log file, or where standard error goes (runtime/logplace.py)
    spool: NotRequired[SpoolBacklog]
    storage: NotRequired[StorageQuota]  # with a quota set, as of its last check
    scrub: NotRequired[ScrubStatus]  # the last scrub (left out: none yet)
    offline: NotRequired[dict[str, str]]  # session id -> why start-up recovery kept it offline (left out: none)


class Status(TypedDict):
    """`status`: the daemon, the session named or the latest live one (null when none), and every
    live session, oldest first (`live`; older daemons leave it out)."""

    daemon: DaemonStatus
    session: SessionStatus | None
    live: NotRequired[list[SessionSummary]]


class Hello(TypedDict):
    version: int  # the protocol version
    daemon: str  # docpilotd's version
    pid: int


# -- what a session holds (DocPilot's format) ----------------------------------------------------


class Annotation(TypedDict):
    id: str
    text: str
    timestamp: str
    annotation_type: AnnotationKind


class Command(TypedDict):
    command: str
    timestamp: str
    exit_code: int | None
    working_directory: str
    shell: str
    output: str | None
    error: str | None
    # docpilotd's additions, left out unless a hook sent them.
    duration_ms: NotRequired[int]
    capture_id: NotRequired[str]
    pipestatus: NotRequired[list[int]]


class Event(TypedDict):
    id: str
    event_type: str
    timestamp: str
    details: str | None


class Metadata(TypedDict):
    working_directory: str
    shell_type: str
    platform: str
    hostname: str
    user: str | None
    tags: list[str]
    llm_provider: str | None
    settings: dict[str, str]


class SessionStats(TypedDict):
    total_commands: int
    successful_commands: int
    failed_commands: int
    total_annotations: int
    duration_seconds: int | None
    pause_resume_count: int


class SessionDocument(TypedDict):
    """`show` and `export` (JSON): the whole session as DocPilot writes it. `state` is a name, or
    `{"Error": "message"}`."""

    id: str
    description: str
    state: State | dict[str, str]
    created_at: str
    updated_at: str
    started_at: str | None
    stopped_at: str | None
    output_file: str | None
    commands: list[Command]
    annotations: list[Annotation]
    events: list[Event]
    metadata: Metadata
    stats: SessionStats


# -- one result per verb -------------------------------------------------------------------------


class Annotated(TypedDict):
    """`annotate` (and the client's note, explain, warn, milestone)."""

    session: str
    annotation: Annotation


class Annotations(TypedDict):
    """`annotations`: the session's annotations (those `type` and `recent` chose, in the session's
    order); `total` (left out when nothing was filtered) how many the session has in all."""

    session: str
    annotations: list[Annotation]
    total: NotRequired[int]


class AnnotationEdited(TypedDict):
    """`edit_annotation`: the annotation as it is now (the same id and timestamp)."""

    session: str
    annotation: Annotation


class AnnotationDeleted(TypedDict):
    """`delete_annotation`: which annotation went (its text is not sent back) and how many the
    session has left."""

    session: str
    deleted: str  # the annotation's id
    annotation_type: AnnotationKind
    remaining: int


class Recorded(TypedDict):
    """`record`: where it went and the session's command count. Left out unless they apply:
    `duplicate` (a capture id already recorded: nothing new), `skipped` (why it was not recorded),
    `redacted` (how many secrets were replaced)."""

    session: str
    seq: int
    commands: int
    duplicate: NotRequired[bool]
    skipped: NotRequired[str]
    redacted: NotRequired[int]


class Saved(TypedDict):
    saved: int  # sessions whose snapshot was written


class Backup(TypedDict):
    name: str
    time: str
    size: int
    # What the generation holds; when it cannot be read, `problem` (why) instead. Older daemons
    # send neither.
    state: NotRequired[str | None]
    commands: NotRequired[int | None]
    annotations: NotRequired[int | None]
    problem: NotRequired[str | None]
    # Why the session's backup policy keeps it now (`last`, `hourly 2026-11-30 14h`, `daily ...`):
    # empty when the next rotation would remove it.
    kept_for: NotRequired[list[str]]


class Backups(TypedDict):
    session: str
    backups: list[Backup]  # newest first


class SessionRecovery(TypedDict):
    """One session in the recovery report (storage.recovery.SessionReport)."""

    session_id: str
    status: str  # "ok", "repaired", "needs_repair" or "unrecoverable"
    source: str | None
    seq: int
    state: str | None
    commands: int
    annotations: int
    replayed: int
    problems: list[str]
    actions: list[str]
    quarantined: list[str]
    lost_window: str | None


class OfflineRecovery(TypedDict):
    """A session start-up recovery kept offline (storage.recovery.OfflineSession)."""

    session_id: str
    why: str
    description: str
    created_at: str
    state: str | None
    commands: int
    annotations: int


class Recovery(TypedDict):
    """`recovery`: the daemon's last start-up recovery (storage.recovery.RecoveryReport)."""

    root: str
    repair: bool
    started_at_ns: int
    duration_ms: float
    sessions: list[SessionRecovery]
    other: list[str]
    from_manifest: int  # finished sessions taken from the manifest's rows, not read (storage/manifest.py)
    prefer: str  # recovery_prefer: "newest_valid" or "most_complete"
    damage: str  # recovery_damage: "quarantine" or "offline" (fsck --repair: always "quarantine")
    offline: list[OfflineRecovery]  # sessions kept offline, and why


class Cleanup(TypedDict):
    """`cleanup` (storage.maintenance.CleanupResult)."""

    removed_sessions: list[str]
    removed_backups: list[str]
    dry_run: bool  # true: what would be removed; nothing was


class StorageStats(TypedDict):
    """`stats` (storage.maintenance.StorageStats)."""

    session_count: int
    backup_count: int
    total_size: int
    backup_size: int
    journal_size: int
    quarantine_count: int


class MarkdownExport(TypedDict):
    """`export` with format "markdown"."""

    session: str
    format: Literal["markdown"]
    markdown: str


class Generated(TypedDict):
    """`generate` without `output` (what the client sends): the document, the session's output
    file (absolute, or null) and whether it is trusted (chosen by `start` in this data root)."""

    session: str
    commands: int
    annotations: int
    markdown: str
    output_file: str | None
    output_file_trusted: bool


class TemplateInfo(TypedDict):
    name: str
    source: str     # "built-in", or the file that defines it
    alias_of: str   # DocPilot's other names: the layout used ("" for a layout of its own)


class Templates(TypedDict):
    """`generate --list-templates`: the names `--template` accepts, the default, and where a
    user's own templates go."""

    templates: list[TemplateInfo]
    default: str
    directory: str


class Written(TypedDict):
    """A document written to a file: `generate` with `output` (older clients: the daemon wrote
    it), and what the client prints after writing one itself."""

    session: str
    commands: int
    annotations: int
    path: str
    bytes: int


class RetentionRules(TypedDict):
    keep_last: int
    keep_hourly: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    schedule_seconds: int  # 0: generations at checkpoints only


class PolicyShown(TypedDict):
    session: str
    policy: str  # its name; "default" is the config's [retention] table
    chosen: bool  # chosen for this session (start --policy, policy NAME), not by a tag or by default
    rules: RetentionRules
    available: list[str]  # the names the config offers, "default" first


class Found(TypedDict):
    rule: str  # the rule's name (github_token, tool_options, pattern 0, ...)
    secret: str  # the text it matched


class RedactChecked(TypedDict):
    text: str  # the text as it would be stored
    replaced: list[Found]  # in the order the rules ran
    allowed: list[Found]  # found, but kept by a `redact_allow` pattern


class Redacted(TypedDict):
    session: str
    replaced: int  # occurrences replaced in the session
    rewritten: list[str]  # files rewritten, relative to the data root
    spool_removed: list[str]
    remaining: list[str]  # files that still hold it (the user is told)
    files_examined: int


class Purged(TypedDict):
    session: str
    removed: list[str]
    spool_removed: list[str]
    dry_run: NotRequired[bool]  # true: what would be removed; nothing was


class SearchHit(TypedDict):
    """One hit of `search`: a command (with `directory` and `exit_code`) or an annotation (with
    `annotation_type` and `annotation_id`), and its session. `match` says where the words are:
    "command", "output" (then `snippet`: the words of the output around them) or "annotation"."""

    session: str
    description: str  # the session's
    kind: Literal["command", "annotation"]
    timestamp: str
    text: str  # the command, or the annotation's text
    match: Literal["command", "output", "annotation"]
    directory: NotRequired[str]
    exit_code: NotRequired[int | None]
    annotation_type: NotRequired[AnnotationKind]
    annotation_id: NotRequired[str]
    snippet: NotRequired[str]


class Search(TypedDict):
    """`search`: the newest hits first; `more` when there are more than the limit; `complete` false
    while the index is being built (hits may be missing then), `unindexed` the sessions not yet in."""

    hits: list[SearchHit]
    more: bool
    complete: bool
    unindexed: int


# -- decoding ------------------------------------------------------------------------------------


class _Mismatch(Exception):
    """A value that does not fit; `path` is filled in on the way out (innermost first)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []


Check = Callable[[Any], None]
_checks: dict[Any, Check] = {}
_NONE = type(None)
# What a JSON value of each plain type is, and how a person would call it.
_PLAIN: dict[Any, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a string"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
    bool: ((bool,), "true or false"),
    _NONE: ((_NONE,), "null"),
}


def decode(shape: type[T], value: Any, what: str = "the daemon's reply") -> T:
    """`value` (parsed JSON) as a `shape`, checked all the way down; ProtocolError if it does not
    fit. `what` names it in the message."""
    try:
        _check_of(shape)(value)
    except _Mismatch as exc:
        where = "result" + "".join(reversed(exc.path))
        raise ProtocolError(
            f"{what} does not fit this client ({where}: {exc.problem}); "
            "are docpilot and docpilotd the same version?"
        ) from None
    return value  # type: ignore[no-any-return]


def _check_of(shape: Any) -> Check:
    check = _checks.get(shape)
    if check is None:
        check = _checks[shape] = _compile(shape)
    return check


def _compile(shape: Any) -> Check:
    if shape is Any:
        return _anything
    if shape is None:
        shape = _NONE
    origin, args = get_origin(shape), get_args(shape)
    if origin in (NotRequired, Required):
        return _compile(args[0])
    if is_typeddict(shape):
        return _object(shape)
    if origin in (Union, types.UnionType):
        if all(a in _PLAIN for a in args):
            return _plain(tuple(t for a in args for t in _PLAIN[a][0]), " or ".join(_PLAIN[a][1] for a in args),
                          bool in args)
        return _either([_compile(a) for a in args], " or ".join(_name(a) for a in args))
    if origin is Literal:
        return _literal(args)
    if origin is list:
        return _list(args[0])
    if origin is dict:
        return _dict(_compile(args[1]))
    if shape in _PLAIN:
        return _plain(_PLAIN[shape][0], _PLAIN[shape][1], shape is bool)
    raise TypeError(f"results.decode cannot check {shape!r}")  # a programming error, not a reply


def _name(shape: Any) -> str:
    if shape in _PLAIN:
        return _PLAIN[shape][1]
    if is_typeddict(shape):
        return "an object"
    origin = get_origin(shape)
    return {list: "a list", dict: "an object"}.get(origin, repr(shape))


def _anything(value: Any) -> None:
    pass


def _plain(kinds: tuple[type, ...], name: str, bool_allowed: bool) -> Check:
    def check(value: Any) -> None:
        # JSON true and false are not numbers, though Python's bool is an int.
        if not isinstance(value, kinds) or (value.__class__ is bool and not bool_allowed):
            raise _Mismatch(f"{name} expected, got {_shown(value)}")

    return check


def _literal(allowed: tuple[Any, ...]) -> Check:
    def check(value: Any) -> None:
        if value not in allowed or value.__class__ is bool:
            raise _Mismatch(f"one of {', '.join(repr(a) for a in allowed)} expected, got {_shown(value)}")

    return check


def _either(alternatives: list[Check], name: str) -> Check:
    def check(value: Any) -> None:
        for alternative in alternatives:
            try:
                alternative(value)
                return
            except _Mismatch:
                continue
        raise _Mismatch(f"{name} expected, got {_shown(value)}")

    return check


def _list(item_shape: Any) -> Check:
    item = _compile(item_shape)
    columns = _columns(item_shape) if is_typeddict(item_shape) else None

    def check(value: Any) -> None:
        if value.__class__ is not list:
            raise _Mismatch(f"a list expected, got {_shown(value)}")
        if columns is not None and _fits_by_column(value, *columns):
            return
        index = 0
        try:
            for index, element in enumerate(value):  # noqa: B007  (named in the error below)
                item(element)
        except _Mismatch as exc:
            exc.path.append(f"[{index}]")
            raise

    return check


_ABSENT = object()
Columns = tuple[list[tuple[str, bool, frozenset[type]]], list[tuple[str, bool, Check]]]


def _columns(shape: Any) -> Columns:
    """What checking a list of objects a field at a time takes: for each field, whether it is
    required, and the exact JSON types it may have (a plain field) or its check (the others)."""
    plain: list[tuple[str, bool, frozenset[type]]] = []
    other: list[tuple[str, bool, Check]] = []
    for key, annotation in shape.__annotations__.items():
        required = key in shape.__required_keys__
        if get_origin(annotation) in (NotRequired, Required):
            annotation = get_args(annotation)[0]
        kinds = _plain_kinds(annotation)
        if kinds is not None:
            plain.append((key, required, frozenset(kinds)))
        else:
            other.append((key, required, _compile(annotation)))
    return plain, other


def _fits_by_column(items: list[Any], plain: list[tuple[str, bool, frozenset[type]]],
                    other: list[tuple[str, bool, Check]]) -> bool:
    """True when every item fits; False when one may not (the caller then finds it and says why).

    A field at a time over the whole list, in C loops: a session's hundred thousand commands are
    checked in less than half the time it takes to parse them (an object at a time takes as long as
    parsing). Types are compared exactly: json makes no subclasses, and bool is not an int here."""
    if not items:
        return True
    if set(map(type, items)) != {dict}:
        return False
    count = len(items)
    for key, required, allowed in plain:
        found = set(map(type, map(dict.get, items, repeat(key, count), repeat(_ABSENT, count))))
        if object in found:  # absent from some
            if required:
                return False
            found.discard(object)
        if not found <= allowed:
            return False
    try:
        for key, required, check in other:
            for field in map(dict.get, items, repeat(key, count), repeat(_ABSENT, count)):
                if field is not _ABSENT:
                    check(field)
                elif required:
                    return False
    except _Mismatch:
        return False
    return True


def _plain_kinds(annotation: Any) -> tuple[type, ...] | None:
    """The JSON types a plain annotation (str, int, str | None...) allows; None for the others."""
    if annotation in _PLAIN:
        return _PLAIN[annotation][0]
    if get_origin(annotation) in (Union, types.UnionType) and all(a in _PLAIN for a in get_args(annotation)):
        return tuple(t for a in get_args(annotation) for t in _PLAIN[a][0])
    return None


def _dict(item: Check) -> Check:
    def check(value: Any) -> None:
        if value.__class__ is not dict:
            raise _Mismatch(f"an object expected, got {_shown(value)}")
        key = ""
        try:
            for key, element in value.items():  # noqa: B007  (named in the error below)
                item(element)
        except _Mismatch as exc:
            exc.path.append(f"[{key!r}]")
            raise

    return check


def _object(shape: Any) -> Check:
    required: frozenset[str] = shape.__required_keys__
    # No result type refers to itself, so the checks of its fields can all be made now.
    fields = [(key, _compile(annotation)) for key, annotation in shape.__annotations__.items()]

    def check(value: Any) -> None:
        if value.__class__ is not dict:
            raise _Mismatch(f"an object expected, got {_shown(value)}")
        if not value.keys() >= required:
            missing = ", ".join(repr(k) for k in shape.__annotations__ if k in required and k not in value)
            raise _Mismatch(f"missing {missing}")
        key = ""
        try:
            for key, field in fields:
                if key in value:
                    field(value[key])
        except _Mismatch as exc:
            exc.path.append(f".{key}")
            raise

    return check


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    return {list: "a list", dict: "an object"}.get(value.__class__, type(value).__name__)
