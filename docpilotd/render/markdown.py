"""A session as a Markdown document: what `docpilot generate` writes.

Layout: the description as the title, a short list of facts (state, times, host, counts, tags),
then the session in time order. Commands and annotations are interleaved by timestamp; a milestone
starts a section (`## text`); a note is a paragraph; an explanation and a warning are set apart as
block quotes (`> **Warning:** ...`); commands are fenced code blocks, consecutive successful
commands in the same directory sharing one block; a command that failed has its own block followed
by `**Failed** (exit code N)`; a captured output follows its command in a `text` block; the
working directory is named whenever it changes.

Invariants (what makes any session text safe to render):
  - nothing a user typed can close a code block: a fence is longer than the longest run of
    backticks in its content, and an info string is made of letters and digits only;
  - text outside code blocks is escaped so that it renders as the characters typed: every ASCII
    punctuation character Markdown (CommonMark and GitHub's extensions) gives a meaning to is
    backslash-escaped, line starts that would open a list, heading or quote are escaped, and
    leading whitespace (an indented code block) is dropped; newlines stay line breaks;
  - control characters never reach the document: terminal escape sequences are removed from
    output, other control characters and lone surrogates become U+FFFD, and the characters that
    reorder text (bidirectional overrides, "Trojan source") are shown as `<U+202E>`.

Pure: `render(session)` depends on the session alone (no clock, no files).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..domain import timestamps
from ..domain.model import Annotation, CommandEntry, ErrorState, Session, state_name

# Characters with a meaning somewhere in CommonMark or GFM inline syntax (emphasis, code, links,
# autolinks and raw HTML, entities, tables, strikethrough, math).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#&$])")
# Line starts that open a block: list items (- + * 1. 1)), setext underlines (= -), thematic breaks.
_BLOCK_START = re.compile(r"^([-+=])|^(\d{1,9})([.)])")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]|[\ud800-\udfff]")
_BIDI = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_INFO = re.compile(r"[A-Za-z0-9_+\-]{1,20}\Z")

_LANGUAGES = {"bash": "bash", "zsh": "zsh", "fish": "fish", "sh": "sh", "dash": "sh", "ksh": "sh"}


def render(session: Session) -> str:
    """The Markdown document of `session`, ending with a newline."""
    out: list[str] = []
    out.append(f"# {_inline(session.description) or 'Untitled session'}")
    out.append("")
    out.extend(_facts(session))
    out.append("")
    language = _language(session.metadata.shell_type)
    cwd: str | None = None
    for block in _blocks(session):
        if isinstance(block, _Milestone):
            first, _, rest = _normalize_text(block.note.text).strip().partition("\n")
            out.append(f"## {_inline(first) or 'Milestone'}")
            out.append("")
            if rest.strip():
                out.extend(_paragraph(rest))
                out.append("")
        elif isinstance(block, _Note):
            kind = block.note.annotation_type
            if kind == "Note":
                out.extend(_paragraph(block.note.text))
            else:
                label = "Warning" if kind == "Warning" else "Explanation"
                lines = _paragraph(block.note.text)
                lines[0] = f"**{label}:** {lines[0]}".rstrip()
                out.extend(f"> {line}" if line else ">" for line in lines)
            out.append("")
        else:
            first_cwd = block.commands[0].working_directory
            if first_cwd and first_cwd != cwd:
                out.append(f"In {_code_span(first_cwd)}:")
                out.append("")
                cwd = first_cwd
            out.extend(_fenced("\n".join(_code_text(c.command) for c in block.commands),
                               _language(block.commands[0].shell) or language or "shell"))
            last = block.commands[-1]
            if last.output is not None and last.output.strip():
                out.append("")
                out.extend(_fenced(_output_text(last.output), "text"))
            if last.exit_code not in (None, 0):
                out.append("")
                out.append(f"**Failed** ({_exit_status(last)})")
            out.append("")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


# -- the facts at the top ----------------------------------------------------------------------------


def _facts(s: Session) -> list[str]:
    state = state_name(s.state)
    if isinstance(s.state, ErrorState):
        state = f"Error: {_inline(s.state.Error)}"
    lines = [f"- **Session:** {_code_span(s.id)} ({state})"]
    started = _when(s.started_at or s.created_at)
    if s.stopped_at:
        took = _duration(s.stats.duration_seconds)
        lines.append(f"- **Started:** {started}; **stopped:** {_when(s.stopped_at)}" + (f" ({took})" if took else ""))
    else:
        lines.append(f"- **Started:** {started}")
    meta = s.metadata
    who = f"{meta.user}@{meta.hostname}" if meta.user else meta.hostname
    where = ", ".join(x for x in (who, meta.platform, meta.shell_type) if x)
    if where:
        lines.append(f"- **Where:** {_inline(where)}")
    stats = s.stats
    counts = f"{stats.total_commands} command{'s' if stats.total_commands != 1 else ''}"
    if stats.total_commands:
        counts += f" ({stats.successful_commands} succeeded, {stats.failed_commands} failed)"
    counts += f", {stats.total_annotations} annotation{'s' if stats.total_annotations != 1 else ''}"
    lines.append(f"- **Recorded:** {counts}")
    if meta.tags:
        lines.append(f"- **Tags:** {', '.join(_inline(t) for t in meta.tags)}")
    return lines


def _when(stamp: str) -> str:
    try:
        ns = timestamps.parse_ns(stamp)
    except timestamps.TimestampError:
        return _inline(stamp)
    t = time.gmtime(ns // 1_000_000_000)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} UTC"


def _duration(seconds: int | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes or hours:
        parts.append(f"{minutes} min")
    parts.append(f"{secs} s")
    return " ".join(parts)


# -- the timeline ------------------------------------------------------------------------------------


@dataclass
class _Milestone:
    note: Annotation


@dataclass
class _Note:
    note: Annotation


@dataclass
class _Commands:
    commands: list[CommandEntry]


def _order(stamp: str) -> int:
    try:
        return timestamps.parse_ns(stamp)
    except timestamps.TimestampError:
        return 0


def _blocks(s: Session) -> Iterator[_Milestone | _Note | _Commands]:
    """The timeline as blocks: commands grouped while nothing sets one apart."""
    items: list[tuple[int, int, int, CommandEntry | Annotation]] = []
    items.extend((_order(c.timestamp), 0, i, c) for i, c in enumerate(s.commands))
    items.extend((_order(a.timestamp), 1, i, a) for i, a in enumerate(s.annotations))
    items.sort(key=lambda item: item[:3])
    group: list[CommandEntry] = []
    for _, _, _, item in items:
        if isinstance(item, Annotation):
            if group:
                yield _Commands(group)
                group = []
            yield _Milestone(item) if item.annotation_type == "Milestone" else _Note(item)
            continue
        if group and not (_plain(item) and _joins(group[-1], item)):
            yield _Commands(group)
            group = []
        group.append(item)
        if not _plain(item):  # a failure or an output: its own block, so the mark is unambiguous
            yield _Commands(group)
            group = []
    if group:
        yield _Commands(group)


def _plain(c: CommandEntry) -> bool:
    """A command that may share a block: it succeeded (or its status is unknown), no output."""
    return c.exit_code in (None, 0) and not (c.output and c.output.strip())


def _joins(previous: CommandEntry, c: CommandEntry) -> bool:
    return _plain(previous) and previous.working_directory == c.working_directory and previous.shell == c.shell


def _exit_status(c: CommandEntry) -> str:
    text = f"exit code {c.exit_code}"
    if c.pipestatus and len(c.pipestatus) > 1:
        text += "; pipeline: " + " ".join(str(code) for code in c.pipestatus)
    return text


# -- escaping ----------------------------------------------------------------------------------------


def _visible(text: str) -> str:
    """Control characters as U+FFFD, text-reordering characters as <U+XXXX>."""
    text = _BIDI.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)
    return _CONTROL.sub("\ufffd", text)


def _normalize_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _visible(_ANSI.sub("", text.replace("\t", " ")))


def _escape_line(line: str) -> str:
    line = _SPECIAL.sub(r"\\\1", line.strip())
    return _BLOCK_START.sub(lambda m: f"\\{m.group(1)}" if m.group(1) else f"{m.group(2)}\\{m.group(3)}", line)


def _inline(text: str) -> str:
    """One line of text (newlines become spaces), escaped."""
    return _escape_line(" ".join(_normalize_text(text).split()))


def _paragraph(text: str) -> list[str]:
    """Escaped lines of a text; lines of one paragraph end in a hard break (a backslash)."""
    lines = [_escape_line(line) for line in _normalize_text(text).strip().split("\n")]
    out: list[str] = []
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        out.append(f"{line}\\" if line and following else line)
    return out


def _code_span(text: str) -> str:
    text = " ".join(_normalize_text(text).split("\n"))
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (run + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _code_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _visible(text)


def _output_text(text: str) -> str:
    """Captured output as a terminal showed it: escape sequences dropped, and of a line rewritten
    with carriage returns (a progress bar) only its last state."""
    lines = []
    for line in _ANSI.sub("", text).replace("\r\n", "\n").split("\n"):
        if "\r" in line:
            parts = [p for p in line.split("\r") if p]
            line = parts[-1] if parts else ""
        lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    return _code_text("\n".join(lines))


def _fenced(content: str, info: str) -> list[str]:
    run = max((len(m) for m in re.findall(r"`+", content)), default=0)
    fence = "`" * max(3, run + 1)
    return [f"{fence}{info if _INFO.match(info) else ''}", *content.split("\n"), fence]


def _language(shell: str | None) -> str:
    return _LANGUAGES.get((shell or "").strip().lower(), "")
