"""The recorder: one captured command (from a hook's spool line or `docpilot record`) into the
session it was typed for, at most once, stamped with when it ran. Returns a typed `Outcome`.

The session: the one the line names (hooks write the id they read from the capture marker when
the command ran, or the joined session); a line that names none goes to the current session.
So a line read late (daemon down, stalled, restarted, another session started meanwhile) still
lands where it was typed. A line for a session that is no longer Active is refused, never moved.

At most once: a line carries `capture_id` = "{shell instance}:{counter}"; per session, the
highest counter recorded per instance is kept (rebuilt from the session's commands after a
restart, since the id is stored with each command) and anything at or below it is a duplicate.
Lines name their session, so this holds across sessions and restarts.

When it ran: bash and zsh send the start in epoch microseconds; fish sends the boot clock and
the boot it was read in (no clock builtin), turned into wall time with this boot's offset; a
line without either is stamped now minus its duration, never before the previous command.

Output: terminal escape sequences removed, redacted, then capped to `output_max_bytes`
(domain/output.py), whatever the client already kept.

Privacy: `Outcome.private` says whether the raw line held something private (a redacted secret,
a leading space), computed for duplicates too, so a spool file holding such a line is retired
early even when the line was recorded before a crash.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from ... import protocol as p
from ...config import Config
from ...domain import changes, timestamps
from ...domain import output as command_output
from ...domain.invocation import is_own_invocation, runs_itself
from ...domain.model import CommandEntry
from ...errors import DocpilotError, InvalidTransition, SessionNotFound, UsageError
from .. import clock
from ..engine import Engine, Entry
from ..privacy import Privacy
from .ids import capture_marks, split_capture_id

log = logging.getLogger("docpilotd.capture")

UPTIME_STEP_NS = 10_000_000  # the resolution of /proc/uptime

Status = Literal["recorded", "duplicate", "private", "own", "refused"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    session_id: str | None
    seq: int = 0
    commands: int = 0
    redacted: int = 0  # secrets replaced in what was recorded
    private: bool = False  # the raw line held a secret or started with a space
    error: DocpilotError | None = None  # why a line was refused

    @property
    def recorded(self) -> bool:
        return self.status == "recorded"


def _boot() -> tuple[str | None, int]:
    """This boot's id and the wall-clock time of the boot clock's zero, in nanoseconds."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as handle:
            boot_id: str | None = handle.read(64).decode("ascii", "replace").strip()
    except OSError:
        boot_id = None
    try:
        offset = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        offset = 0
        boot_id = None
    return boot_id, offset


class Recorder:
    def __init__(self, engine: Engine, privacy: Privacy, config: Config) -> None:
        self.engine = engine
        self.privacy = privacy
        self.config = config
        self._boot_id, self._boot_offset_ns = _boot()
        self._last_estimate: dict[str, int] = {}  # shell instance -> start given to its last command

    async def record(self, req: p.Record) -> Outcome:
        try:
            entry = self.engine.resolve(req.session)
        except DocpilotError as exc:
            return Outcome("refused", req.session, error=exc)
        commands = entry.summary["commands"] if entry.summary is not None else 0  # None: being created
        base: dict[str, Any] = {"session_id": entry.session_id, "seq": entry.seq, "commands": commands}
        if req.command.startswith(" "):  # the shells' convention (HISTCONTROL=ignorespace): private
            return Outcome("private", private=True, **base)
        # Redacted here, right before the change is built: a pattern `redact` registers meanwhile applies.
        redactor = self.privacy.redactor
        text, redacted = redactor.count(req.command)
        # Escape sequences out first (a coloured token would escape the token rules), the cap last
        # (a secret is redacted whole before a cut could leave a part the rules no longer know).
        raw_output = None if req.output is None else command_output.without_escapes(req.output)
        output, in_output = redactor.optional(raw_output)
        output = command_output.keep_text(output, self.config.output_max_bytes)
        private = bool(redacted + in_output)
        if is_own_invocation(req.command) and (not self.config.record_own_commands or runs_itself(req.command)):
            return Outcome("own", private=private, **base)  # `docpilot run` records its command itself
        try:
            changes.require(entry.pending_state, changes.RecordCommand)
        except DocpilotError as exc:
            return Outcome("refused", private=private, error=exc, **base)
        capture = split_capture_id(req.capture_id) if req.capture_id else None
        if capture is not None:
            marks = capture_marks(entry, await self.engine.full_session(entry))
            if capture[1] <= marks.get(capture[0], -1):
                return Outcome("duplicate", private=private, **base)
        at = self._started_at(req, entry)
        command = CommandEntry(
            command=text, timestamp=at, exit_code=req.exit_code, working_directory=req.cwd,
            shell=req.shell, output=output, error=None, duration_ms=req.duration_ms,
            capture_id=req.capture_id, pipestatus=req.pipestatus,
        )
        try:
            await self.engine.commit(entry, changes.RecordCommand(entry=command, event_id=clock.new_id()))
        except DocpilotError as exc:
            if isinstance(exc, (InvalidTransition, SessionNotFound)):  # stopped or purged meanwhile
                return Outcome("refused", private=private, error=exc, **base)
            raise
        if entry.last_command_at is None or timestamps.not_before(at, entry.last_command_at):
            entry.last_command_at = at
        if capture is not None and entry.capture_marks is not None:
            entry.capture_marks[capture[0]] = max(capture[1], entry.capture_marks.get(capture[0], -1))
        return Outcome(
            "recorded", entry.session_id, seq=entry.seq,
            commands=entry.summary["commands"] if entry.summary is not None else 0,  # set by the commit
            redacted=redacted + in_output, private=private,
        )

    def _started_at(self, req: p.Record, entry: Entry) -> str:
        if req.started_us is not None:
            return timestamps.format_ns(req.started_us * 1000)
        if req.started_at is not None:
            try:
                return timestamps.format_ns(timestamps.parse_ns(req.started_at))
            except timestamps.TimestampError as exc:
                raise UsageError(f"started_at: {exc}") from None
        duration_ns = (req.duration_ms or 0) * 1_000_000
        if req.uptime_s is not None and req.boot_id and req.boot_id == self._boot_id:
            # /proc/uptime counts in 10 ms steps, cut short: the command ended before the next
            # step. Taking that upper bound, a command is never placed before a note made just
            # before it ran in the same shell (the note's own client takes far longer than 10 ms).
            ended_ns = self._boot_offset_ns + round(req.uptime_s * 100) * 10_000_000 + UPTIME_STEP_NS
            started_ns = min(ended_ns, time.time_ns()) - duration_ns
            # That bound may put a command a few ms after the start of the shell's next one:
            # within one shell, the order the lines were written in is the order they ran.
            shell_instance = req.capture_id.rpartition(":")[0] if req.capture_id else ""
            if shell_instance:
                started_ns = max(started_ns, self._last_estimate.get(shell_instance, 0) + 1)
                if len(self._last_estimate) > 10_000:  # shells come and go: forget the oldest
                    self._last_estimate.pop(next(iter(self._last_estimate)))
                self._last_estimate[shell_instance] = started_ns
            return timestamps.format_ns(started_ns)
        at = timestamps.format_ns(time.time_ns() - duration_ns)
        # Estimated, so never before the previous command: the order of a burst is kept.
        if entry.last_command_at and not timestamps.not_before(at, entry.last_command_at):
            at = entry.last_command_at
        return at
