"""What recovery says and gives: the reports the daemon and fsck print, and the sessions found.

Why apart: the reports are the JSON of `docpilot recovery` and `docpilotd fsck --json`
(results.SessionRecovery and results.Recovery name the same fields), so they change only with
those; planning and execution both fill them in.

Invariants: the field names and the texts put in them are stable (tests and the client read
them); `Recovered.outline` is always the session with the same stats, whether it is held whole or
loaded on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from ...domain.model import Session

# "offline": a damaged session recovery left exactly as it was (recovery_damage = "offline").
Status = Literal["ok", "repaired", "needs_repair", "unrecoverable", "offline"]


class SessionReport(msgspec.Struct, kw_only=True):
    session_id: str
    status: Status = "ok"
    source: str | None = None
    seq: int = 0
    state: str | None = None
    commands: int = 0
    annotations: int = 0
    replayed: int = 0
    problems: list[str] = msgspec.field(default_factory=list)
    actions: list[str] = msgspec.field(default_factory=list)
    quarantined: list[str] = msgspec.field(default_factory=list)
    lost_window: str | None = None


class OfflineSession(msgspec.Struct, kw_only=True):
    """A session kept offline: not loaded, its files left as they are, until `docpilotd fsck
    --repair` (or `docpilot recover`) decides. What it would be recovered as is said for `docpilot
    sessions` (from the best copy found, read only)."""

    session_id: str
    why: str  # its damage, one line
    description: str = ""
    created_at: str = ""
    state: str | None = None
    commands: int = 0
    annotations: int = 0


class RecoveryReport(msgspec.Struct, kw_only=True):
    root: str
    repair: bool
    started_at_ns: int
    duration_ms: float = 0.0
    sessions: list[SessionReport] = msgspec.field(default_factory=list)
    other: list[str] = msgspec.field(default_factory=list)
    # How many finished sessions start-up took from the manifest's rows instead of their files
    # (see storage.manifest); 0 for fsck, which reads every file.
    from_manifest: int = 0
    # The preferences recovery ran with (config: recovery_prefer, recovery_damage; fsck --repair
    # always quarantines) and the sessions kept offline.
    prefer: str = "newest_valid"
    damage: str = "quarantine"
    offline: list[OfflineSession] = msgspec.field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """No problem found anywhere (what fsck without --repair exits 0 on)."""
        return not self.other_problems and all(not s.problems for s in self.sessions)

    @property
    def other_problems(self) -> list[str]:
        return [line for line in self.other if not line.startswith("ignored")]

    @property
    def clean_after_repair(self) -> bool:
        """Everything left in sessions/ is valid (what fsck --repair exits 0 on)."""
        return all(s.status in ("ok", "repaired") for s in self.sessions) and not any(
            line.startswith("unresolved") for line in self.other
        )


class Recovered:
    """A session recovery found, ready to be made live (or None when unrecoverable).

    `session` is the whole session and `seq` the last journal record it contains. `recover_all`
    does not keep the whole of a finished session that recovery left as it was (stopped or failed,
    its own snapshot verified and chosen, nothing replayed): a daemon keeps only a summary of
    those, and holding thousands of them only to summarize them would cost start-up time and
    memory. For those, `held` is False, `outline` is the session without its commands, annotations
    and events (its stats still count them), and `session` reads the snapshot again on first use.
    `checksum` is the checksum of the file such a session was taken from, as it was verified
    (what the manifest records, see storage.manifest); None otherwise.
    """

    def __init__(self, session: Session, seq: int) -> None:
        self.seq = seq
        self.outline = session
        self._session: Session | None = session
        self._load: Callable[[], Session] | None = None
        self.checksum: str | None = None

    @classmethod
    def outlined(cls, outline: Session, seq: int, load: Callable[[], Session]) -> Recovered:
        found = cls(outline, seq)
        found._session, found._load = None, load
        return found

    @property
    def held(self) -> bool:
        return self._session is not None

    @property
    def session(self) -> Session:
        if self._session is None:
            assert self._load is not None
            self._session = self._load()
        return self._session


def outline(session: Session) -> Session:
    """The session without its commands, annotations and events (see Recovered)."""
    fields = {name: getattr(session, name) for name in Session.__struct_fields__}
    fields.update(commands=[], annotations=[], events=[])
    return Session(**fields)
