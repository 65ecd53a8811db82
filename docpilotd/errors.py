"""The one exception tree of docpilotd, with stable codes and exit codes.

Every error a user, a hook or a client program can see is a `DocpilotError`. Each class carries a
stable string `code` (sent on the wire and printed by `--json`) and an `exit_code` (what the CLI
exits with). Codes and exit codes never change meaning once released; add new classes instead.

    DocpilotError                      code               exit
    ├── UsageError                     bad_usage            2
    │   └── AmbiguousId                ambiguous_id         2
    ├── ConfigError                    config_invalid       2
    ├── DaemonNotRunning               daemon_not_running   3
    ├── DaemonAlreadyRunning           already_running      3
    ├── DaemonStillRunning             still_running        3
    ├── SessionNotFound                no_such_session      4
    ├── BackupNotFound                 no_such_backup       4
    │   └── PointNotAvailable          no_such_point        4
    ├── AnnotationNotFound             no_such_annotation   4
    ├── DataRootNotFound               no_data_root         4
    ├── SessionOffline                 session_offline      7
    ├── InvalidTransition              invalid_transition   5
    ├── InvalidSession                 invalid_session      6
    ├── SessionExists                  session_exists       6
    ├── ProtocolError                  bad_request          8
    │   ├── RequestTooLarge            request_too_large    8
    │   ├── UnknownOperation           unknown_op           8
    │   └── UnsupportedVersion         unsupported_version  8
    ├── PermissionDenied               permission_denied    9
    ├── StorageError                   storage_error       10
    │   ├── NotDurable                 not_durable         10
    │   ├── DiskFull                   disk_full           10
    │   └── SearchUnavailable          search_unavailable  10
    └── ServiceError                   service_error       11
        └── ServiceManagerUnreachable  no_service_manager  11

Exit code 1 is kept for "the check found problems" (`docpilotd fsck`), never for an error.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs the hot client verbs 2 ms
if TYPE_CHECKING:  # the client's hot verbs start without typing
    from typing import ClassVar


class DocpilotError(Exception):
    """Base of every error docpilotd reports; `message` is one line meant for a person."""

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 10

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DocpilotError):
    """A command line or argument that cannot be acted on."""

    code = "bad_usage"
    exit_code = 2


class AmbiguousId(UsageError):
    """An id prefix that more than one item starts with; the message lists them."""

    code = "ambiguous_id"


class ConfigError(DocpilotError):
    """A configuration file, variable or flag that is invalid; the message names the key."""

    code = "config_invalid"
    exit_code = 2


class DaemonNotRunning(DocpilotError):
    """The client found no daemon listening on the socket."""

    code = "daemon_not_running"
    exit_code = 3


class DaemonAlreadyRunning(DocpilotError):
    """Another daemon holds the lock of this data directory."""

    code = "already_running"
    exit_code = 3


class DaemonStillRunning(DocpilotError):
    """`docpilotd stop`: the daemon was asked to stop and has not exited within the time allowed."""

    code = "still_running"
    exit_code = 3


class SessionNotFound(DocpilotError):
    """No session with that id (or no live session when one was implied)."""

    code = "no_such_session"
    exit_code = 4


class DataRootNotFound(DocpilotError):
    """The data root a command would examine does not exist (often a mistyped DOCPILOT_HOME)."""

    code = "no_data_root"
    exit_code = 4


class SessionOffline(DocpilotError):
    """A session start-up recovery kept offline (recovery_damage = "offline"): one of its files is
    damaged, so it is not loaded and its files are left as they are until a repair decides."""

    code = "session_offline"
    exit_code = 7


class BackupNotFound(DocpilotError):
    """No backup generation with that name for that session."""

    code = "no_such_backup"
    exit_code = 4


class PointNotAvailable(BackupNotFound):
    """No moment of the session can be rebuilt there: before the oldest copy kept, or the journal
    between that copy and the moment is damaged."""

    code = "no_such_point"


class AnnotationNotFound(DocpilotError):
    """No annotation with that id (or id prefix) in the session."""

    code = "no_such_annotation"
    exit_code = 4


class InvalidTransition(DocpilotError):
    """The session's state does not allow that change (a note on a stopped session...)."""

    code = "invalid_transition"
    exit_code = 5


class InvalidSession(DocpilotError):
    """Session data that fails decoding or validation; `problems` lists every finding."""

    code = "invalid_session"
    exit_code = 6

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class SessionExists(DocpilotError):
    """An import or create would overwrite an existing session."""

    code = "session_exists"
    exit_code = 6


class ProtocolError(DocpilotError):
    """A request that is not valid protocol (bad JSON, wrong types, missing fields)."""

    code = "bad_request"
    exit_code = 8


class RequestTooLarge(ProtocolError):
    code = "request_too_large"


class UnknownOperation(ProtocolError):
    code = "unknown_op"


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"


class PermissionDenied(DocpilotError):
    """A peer or a path that is not the owner's."""

    code = "permission_denied"
    exit_code = 9


class StorageError(DocpilotError):
    """The disk refused a write, a read or an fsync."""

    code = "storage_error"
    exit_code = 10


class NotDurable(StorageError):
    """A change could not be made durable; it was not applied."""

    code = "not_durable"


class DiskFull(StorageError):
    """The disk is full; changes are refused until space returns."""

    code = "disk_full"


class SearchUnavailable(StorageError):
    """`search` cannot answer: this Python's SQLite has no FTS5, or the search index cannot be
    read or made (the sessions themselves are not affected)."""

    code = "search_unavailable"


class ServiceError(DocpilotError):
    """Installing, removing or asking about the user service failed (`docpilotd service`)."""

    code = "service_error"
    exit_code = 11


class ServiceManagerUnreachable(ServiceError):
    """No systemd user manager (or launchd GUI domain) answers; the files were handled, the
    manager was not told."""

    code = "no_service_manager"


def _all_classes() -> list[type[DocpilotError]]:
    seen: list[type[DocpilotError]] = []
    stack: list[type[DocpilotError]] = [DocpilotError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


def error_from_code(code: str, message: str) -> DocpilotError:
    """Rebuild the error class for a code received on the wire (unknown codes stay generic)."""
    for cls in _all_classes():
        if cls.code == code:
            return cls(message)
    error = DocpilotError(message)
    error.code = code  # type: ignore[misc]  # keep the daemon's code even if this client is older
    return error
