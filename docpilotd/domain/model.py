"""The DocPilot session model as msgspec types, with DocPilot's exact JSON shape.

Field names, order, enum spellings and nullability follow DocPilot's Rust structs (serde defaults:
unit variants as bare strings, the data-carrying `Error` variant as a one-key object). Timestamps are
RFC 3339 strings (see `timestamps`). Integer fields carry the ranges of their Rust types, so a file
with a huge number fails decoding instead of producing a session DocPilot cannot read.

Invariant kept by `changes.apply`, checked by `validate`: `stats` agrees with the lists.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec

Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Seconds = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

AnnotationType = Literal["Note", "Explanation", "Warning", "Milestone"]
ANNOTATION_TYPES: tuple[AnnotationType, ...] = ("Note", "Explanation", "Warning", "Milestone")

EventType = Literal[
    "SessionStarted",
    "SessionPaused",
    "SessionResumed",
    "SessionStopped",
    "AnnotationAdded",
    "CommandCaptured",
    "ErrorOccurred",
    "ConfigurationChanged",
]


class ErrorState(msgspec.Struct, forbid_unknown_fields=True):
    """DocPilot's `SessionState::Error(String)`, written as `{"Error": "message"}`."""

    Error: str


SimpleState = Literal["Active", "Paused", "Stopped"]
SessionState = Union[SimpleState, ErrorState]


# gc=False on the structs a session holds by the hundred thousand: they hold only strings,
# numbers and lists of numbers, so they can never be part of a reference cycle, and the cyclic
# garbage collector need not walk them (a full collection over a 200,000-command session
# otherwise holds the event loop for 30 to 50 ms, again and again as the session grows).
class CommandEntry(msgspec.Struct, omit_defaults=True, gc=False):
    command: str
    timestamp: str
    exit_code: Int32 | None
    working_directory: str
    shell: str
    output: str | None
    error: str | None
    # docpilotd's additions (DocPilot ignores unknown fields); absent unless a hook sent them.
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=2**53)] | None = None
    # "{shell instance}:{counter}": lets a spooled command be ingested exactly once.
    capture_id: str | None = None
    pipestatus: list[int] | None = None


class Annotation(msgspec.Struct, gc=False):
    id: str
    text: str
    timestamp: str
    annotation_type: AnnotationType


class SessionEvent(msgspec.Struct, gc=False):
    id: str
    event_type: EventType
    timestamp: str
    details: str | None


class SessionMetadata(msgspec.Struct):
    working_directory: str
    shell_type: str
    platform: str
    hostname: str
    user: str | None
    tags: list[str]
    llm_provider: str | None
    settings: dict[str, str]


class SessionStats(msgspec.Struct):
    total_commands: Count
    successful_commands: Count
    failed_commands: Count
    total_annotations: Count
    duration_seconds: Seconds | None
    pause_resume_count: Count


class Session(msgspec.Struct):
    id: str
    description: str
    state: SessionState
    created_at: str
    updated_at: str
    started_at: str | None
    stopped_at: str | None
    output_file: str | None
    commands: list[CommandEntry]
    annotations: list[Annotation]
    events: list[SessionEvent]
    metadata: SessionMetadata
    stats: SessionStats


def state_name(state: SessionState) -> str:
    """"Active", "Paused", "Stopped" or "Error"."""
    return "Error" if isinstance(state, ErrorState) else state


def is_live(session: Session) -> bool:
    """Active and Paused sessions are live: the only ones that may change."""
    return session.state in ("Active", "Paused")
