"""One typed view of a session, the only thing document templates read.

`build(session, options)` turns a stored session into what a document shows: facts in words
(times in UTC, durations, the shells used), the timeline split into sections at each milestone,
commands grouped into blocks while nothing sets one apart, each command with its status, failing
pipeline stages, duration when slow and cleaned output, directories relative to a base, the
failures and the statistics.

Invariants:
  - the timeline holds every command and every annotation exactly once, in time order (ties: the
    order they were stored in, commands before annotations);
  - a command that failed (or a stage of its pipeline did), has output or was slow ends its block, so what is said after the
    block (status, output, duration) is about that command;
  - directories are shown relative to `base` only when `base` is set (given, or by default the
    session's start directory when every command ran under it);
  - text is raw here (as typed): escaping is the templates' environment's job (markup.py).

Pure: depends on the session and the options alone (no clock, no files).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from ..domain import timestamps
from ..domain.model import Annotation, CommandEntry, ErrorState, Session, state_name
from . import markup

_LANGUAGES = {"bash": "bash", "zsh": "zsh", "fish": "fish", "sh": "sh", "dash": "sh", "ksh": "sh"}
AUTO: Literal["auto"] = "auto"
INTRO = "Steps"  # the heading of what came before the first milestone


@dataclass(frozen=True)
class Options:
    """relative_to: a directory, "auto" (the start directory when every command ran under it) or
    None (absolute paths). slow_ms: commands taking at least this long show their duration."""

    relative_to: str | None = AUTO
    slow_ms: int = 5_000


DEFAULT_OPTIONS = Options()


@dataclass(slots=True)
class Command:
    number: int                 # 1-based, in stored order
    text: str
    directory: str              # as shown (relative to the base when there is one)
    shell: str
    language: str               # the code block's info string
    ns: int                     # when it started, in ns since the epoch (0: unknown)
    exit_code: int | None
    status: Literal["succeeded", "failed", "unknown"]
    pipeline: tuple[int, ...]   # every stage's status, when there was more than one stage
    failed_stages: tuple[int, ...]  # 1-based numbers of the stages that failed (even when the
                                    # pipeline's own status was 0: `false | true`)
    duration_ms: int | None
    duration: str               # in words, only when at least Options.slow_ms ("" otherwise)
    output: str                 # cleaned for a document ("" when none)
    output_lines: int
    section: str = ""           # anchor of the section it is in

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def when(self) -> str:
        """HH:MM:SS UTC ("" when unknown)."""
        return _clock_ns(self.ns) if self.ns else ""

    @property
    def exit_status(self) -> str:
        """`exit code 2`, with the pipeline's stages when one failed inside it."""
        text = f"exit code {self.exit_code}"
        return f"{text}; {self.pipeline_status}" if self.failed_stages else text

    @property
    def pipeline_status(self) -> str:
        """`pipeline statuses 0 1 0, stage 2 failed` ("" when no stage failed)."""
        if not self.failed_stages:
            return ""
        stages = ", ".join(str(n) for n in self.failed_stages)
        return (f"pipeline statuses {' '.join(str(code) for code in self.pipeline)}, "
                f"stage{'s' if len(self.failed_stages) > 1 else ''} {stages} failed")


@dataclass(slots=True)
class Commands:
    """Consecutive commands shown as one code block (same directory and shell, nothing between)."""

    commands: list[Command]
    directory: str
    directory_changed: bool     # the directory differs from the previous block's (name it)
    language: str
    kind: Literal["commands"] = "commands"

    @property
    def last(self) -> Command:
        return self.commands[-1]

    @property
    def text(self) -> str:
        return "\n".join(markup.code_text(c.text) for c in self.commands)


@dataclass(slots=True)
class Note:
    type: str                   # Note, Explanation or Warning
    text: str
    when: str
    id: str
    kind: Literal["note"] = "note"


@dataclass(slots=True)
class Section:
    title: str                  # the milestone's first line; "" for what came before any milestone
    detail: str                 # the milestone's further lines
    heading: str                # what a heading shows: the title, or "Steps" before any milestone
    anchor: str                 # GitHub's anchor for that heading in a document of the layout below
    when: str
    blocks: list[Commands | Note] = field(default_factory=list)
    commands: int = 0
    failures: int = 0
    notes: int = 0


@dataclass(slots=True)
class Statistics:
    commands: int
    succeeded: int
    failed: int
    unknown: int
    annotations: dict[str, int]
    directories: int
    shells: dict[str, int]
    command_time: str           # the sum of known durations, in words
    slowest: list[Command]      # up to five, slowest first, with a known duration


@dataclass(slots=True)
class Document:
    id: str
    title: str
    state: str
    started: str
    stopped: str
    duration: str
    user: str
    host: str
    platform: str
    shells: list[str]           # most used first
    tags: list[str]
    base: str                   # the directory paths are relative to ("" when absolute)
    sections: list[Section]
    failures: list[Command]
    statistics: Statistics
    annotations: int
    failures_anchor: str
    statistics_anchor: str

    @property
    def where(self) -> str:
        who = f"{self.user}@{self.host}" if self.user else self.host
        shells = ", ".join(self.shells[:-1]) + " and " + self.shells[-1] if len(self.shells) > 1 else "".join(self.shells)
        return ", ".join(x for x in (who, self.platform, shells) if x)

    @property
    def milestones(self) -> list[Section]:
        return [s for s in self.sections if s.title]

    @property
    def commands(self) -> int:
        return self.statistics.commands


def build(session: Session, options: Options = DEFAULT_OPTIONS) -> Document:
    base = _base(session, options.relative_to)
    # A command recorded without its shell (`docpilot record`) counts as the session's shell.
    fallback = session.metadata.shell_type.strip()
    shells = Counter(c.shell.strip() or fallback for c in session.commands)
    shells.pop("", None)
    if not shells and fallback:
        shells[fallback] = 0
    default_language = _language(session.metadata.shell_type)
    # Anchors are numbered in document order, as GitHub numbers repeated headings; the built-in
    # layouts put the title, Summary and Contents before the sections, Failures and Statistics after.
    anchors: dict[str, int] = {}
    for heading in (session.description.strip() or "Untitled session", "Summary", "Contents"):
        _anchor(heading, anchors)
    sections: list[Section] = [Section(title="", detail="", heading=INTRO, anchor=_anchor(INTRO, anchors), when="")]
    failures: list[Command] = []
    durations: list[Command] = []
    directories: set[str] = set()
    group: list[Command] = []
    shown_directory: str | None = None
    previous: CommandEntry | None = None

    def close_group() -> None:
        nonlocal group, shown_directory
        if not group:
            return
        first = group[0]
        changed = bool(first.directory) and first.directory != shown_directory
        if first.directory:
            shown_directory = first.directory
        sections[-1].blocks.append(Commands(group, first.directory, changed, first.language))
        group = []

    shown: dict[str, str] = {}  # directory -> as shown (sessions revisit a few directories)
    for ns, item in _timeline(session):
        if isinstance(item, Annotation):
            close_group()
            previous = None
            if item.annotation_type == "Milestone":
                title, _, detail = markup.normalize_text(item.text).strip().partition("\n")
                title = " ".join(title.split()) or "Milestone"
                sections.append(Section(title=title, detail=detail.strip(), heading=title, anchor=_anchor(title, anchors),
                                        when=_clock_ns(ns) if ns else ""))
            else:
                sections[-1].blocks.append(Note(item.annotation_type, item.text, _clock_ns(ns) if ns else "", item.id))
                sections[-1].notes += 1
            continue
        number, entry = item
        directory = shown.get(entry.working_directory)
        if directory is None:
            directory = shown[entry.working_directory] = _shown_directory(entry.working_directory, base)
        command = _command(number, entry, ns, directory, options.slow_ms, default_language)
        command.section = sections[-1].anchor
        section = sections[-1]
        section.commands += 1
        if command.failed:
            section.failures += 1
            failures.append(command)
        if command.duration_ms is not None:
            durations.append(command)
        if entry.working_directory:
            directories.add(entry.working_directory)
        if group and not (previous is not None and _plain(entry, options.slow_ms) and _joins(previous, entry, options.slow_ms)):
            close_group()
        group.append(command)
        previous = entry
        if not _plain(entry, options.slow_ms):
            close_group()
            previous = None
    close_group()
    if not sections[0].blocks:
        sections.pop(0)
    failures_anchor, statistics_anchor = _anchor("Failures", anchors), _anchor("Statistics", anchors)

    stats = session.stats
    unknown = sum(1 for c in session.commands if c.exit_code is None)
    kinds = Counter(a.annotation_type for a in session.annotations)
    durations.sort(key=lambda c: -(c.duration_ms or 0))
    total_ms = sum(c.duration_ms or 0 for c in durations)
    statistics = Statistics(
        commands=len(session.commands), succeeded=stats.successful_commands, failed=stats.failed_commands,
        unknown=unknown, annotations={k: kinds[k] for k in ("Note", "Explanation", "Warning", "Milestone") if kinds[k]},
        directories=len(directories), shells=dict(shells.most_common()),
        command_time=_duration_ms(total_ms) if durations else "", slowest=durations[:5],
    )
    state = state_name(session.state)
    if isinstance(session.state, ErrorState):
        state = f"Error: {session.state.Error}"
    meta = session.metadata
    return Document(
        id=session.id, title=session.description.strip() or "Untitled session", state=state,
        started=_when(session.started_at or session.created_at), stopped=_when(session.stopped_at) if session.stopped_at else "",
        duration=_duration_s(session.stats.duration_seconds) if session.stopped_at else "",
        user=meta.user or "", host=meta.hostname, platform=meta.platform,
        shells=[name for name, _ in shells.most_common()], tags=list(meta.tags), base=base,
        sections=sections, failures=failures, statistics=statistics, annotations=len(session.annotations),
        failures_anchor=failures_anchor, statistics_anchor=statistics_anchor,
    )


# -- the timeline ----------------------------------------------------------------------------------


def _order(stamp: str, minutes: dict[str, int]) -> int:
    """Nanoseconds of `stamp` (0 when it is not a timestamp). The form every stored change has
    (`2025-08-01T09:15:02.123456789Z`) is read with its minute parsed once per minute: a long
    session's timestamps would otherwise take a third of the time a document does."""
    if len(stamp) == 30 and stamp[29] == "Z" and stamp[19] == "." and stamp[16] == ":":
        seconds, fraction = stamp[17:19], stamp[20:29]
        if seconds.isascii() and seconds.isdigit() and fraction.isascii() and fraction.isdigit() and seconds < "60":
            base = minutes.get(stamp[:16])
            if base is None:
                try:
                    base = minutes[stamp[:16]] = timestamps.parse_ns(stamp[:16] + ":00Z")
                except timestamps.TimestampError:
                    return 0
            return base + int(seconds) * 1_000_000_000 + int(fraction)
    try:
        return timestamps.parse_ns(stamp)
    except timestamps.TimestampError:
        return 0


def _timeline(s: Session) -> list[tuple[int, tuple[int, CommandEntry] | Annotation]]:
    """(time in ns, item) in time order; a command as (its 1-based number, it)."""
    items: list[tuple[int, int, int, tuple[int, CommandEntry] | Annotation]] = []
    minutes: dict[str, int] = {}
    items.extend((_order(c.timestamp, minutes), 0, i, (i + 1, c)) for i, c in enumerate(s.commands))
    items.extend((_order(a.timestamp, minutes), 1, i, a) for i, a in enumerate(s.annotations))
    items.sort(key=lambda item: item[:3])
    return [(item[0], item[3]) for item in items]


def _plain(c: CommandEntry, slow_ms: int) -> bool:
    """A command that may share a block: it succeeded (or its status is unknown), it has no
    output and was not slow (each of those is said after its block)."""
    return (c.exit_code in (None, 0) and not (c.output and c.output.strip())
            and (c.duration_ms is None or c.duration_ms < slow_ms)
            and not (c.pipestatus and len(c.pipestatus) > 1 and any(c.pipestatus)))


def _joins(previous: CommandEntry, c: CommandEntry, slow_ms: int) -> bool:
    return (_plain(previous, slow_ms) and previous.working_directory == c.working_directory
            and previous.shell == c.shell)


def _command(number: int, c: CommandEntry, ns: int, directory: str, slow_ms: int, default_language: str) -> Command:
    status: Literal["succeeded", "failed", "unknown"]
    status = "unknown" if c.exit_code is None else "succeeded" if c.exit_code == 0 else "failed"
    pipeline = tuple(c.pipestatus) if c.pipestatus and len(c.pipestatus) > 1 else ()
    failed_stages = tuple(i + 1 for i, code in enumerate(pipeline) if code != 0)
    output = markup.output_text(c.output) if c.output and c.output.strip() else ""
    slow = c.duration_ms is not None and c.duration_ms >= slow_ms
    return Command(
        number=number, text=c.command, directory=directory, shell=c.shell,
        language=_language(c.shell) or default_language or "shell", ns=ns,
        exit_code=c.exit_code, status=status, pipeline=pipeline, failed_stages=failed_stages,
        duration_ms=c.duration_ms, duration=_duration_ms(c.duration_ms) if slow and c.duration_ms is not None else "",
        output=output, output_lines=output.count("\n") + 1 if output else 0,
    )


def _language(shell: str | None) -> str:
    return _LANGUAGES.get((shell or "").strip().lower(), "")


# -- directories -----------------------------------------------------------------------------------


def _under(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def _base(session: Session, relative_to: str | None) -> str:
    if relative_to is None or relative_to == "":
        return ""
    if relative_to != AUTO:
        return os.path.normpath(relative_to) if os.path.isabs(relative_to) else ""
    start = session.metadata.working_directory
    if not start or not os.path.isabs(start) or start == "/":
        return ""
    start = os.path.normpath(start)
    directories = {c.working_directory for c in session.commands if c.working_directory}
    return start if directories and all(_under(d, start) for d in directories) else ""


def _shown_directory(path: str, base: str) -> str:
    if not base or not path or not _under(path, base):
        return path
    return "." if path == base else "./" + os.path.relpath(path, base)


# -- words for times -------------------------------------------------------------------------------


def _when(stamp: str) -> str:
    try:
        ns = timestamps.parse_ns(stamp)
    except timestamps.TimestampError:
        return stamp
    t = time.gmtime(ns // 1_000_000_000)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} UTC"


def _clock(stamp: str) -> str:
    try:
        return _clock_ns(timestamps.parse_ns(stamp))
    except timestamps.TimestampError:
        return ""


def _clock_ns(ns: int) -> str:
    t = time.gmtime(ns // 1_000_000_000)
    return f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def _duration_s(seconds: int | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes or hours:
        parts.append(f"{minutes} min")
    parts.append(f"{secs} s")
    return " ".join(parts)


def _duration_ms(ms: int) -> str:
    if ms < 10_000:
        return f"{ms / 1000:.1f} s"
    return _duration_s(round(ms / 1000))


def _anchor(title: str, seen: dict[str, int]) -> str:
    """GitHub's anchor for a heading, numbered as GitHub numbers repeated headings."""
    base = markup.slug(title) or "section"
    count = seen.get(base, 0)
    seen[base] = count + 1
    return base if count == 0 else f"{base}-{count}"
