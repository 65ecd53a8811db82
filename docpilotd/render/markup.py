"""Markdown that shows any text as typed: the escaping every document template relies on.

Invariants (what makes any session text safe to put in a document):
  - nothing a user typed can close a code block: a fence is longer than the longest run of
    backticks in its content, and an info string is made of letters and digits only;
  - text outside code blocks is escaped so that it renders as the characters typed: every ASCII
    punctuation character Markdown (CommonMark and GitHub's extensions) gives a meaning to is
    backslash-escaped, line starts that would open a list, heading or quote are escaped, and
    leading whitespace (an indented code block) is dropped; newlines stay line breaks;
  - control characters never reach the document: terminal escape sequences are removed from
    output, other control characters and lone surrogates become U+FFFD, and the characters that
    reorder text (bidirectional overrides, "Trojan source") are shown as `<U+202E>`;
  - text inside raw HTML (GitHub's collapsible `<details>`) is HTML-escaped as well.

`Markdown` marks a string that is already Markdown: the template environment escapes every
other value it prints (see templates.py), so a template cannot forget to.

Pure: text in, text out.
"""

from __future__ import annotations

import re
import unicodedata

# Characters with a meaning somewhere in CommonMark or GFM inline syntax (emphasis, code, links,
# autolinks and raw HTML, entities, tables, strikethrough, math).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#&$])")
# Line starts that open a block: list items (- + * 1. 1)), setext underlines (= -), thematic breaks.
_BLOCK_START = re.compile(r"^([-+=])|^(\d{1,9})([.)])")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]|[\ud800-\udfff]")
_BIDI = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_INFO = re.compile(r"[A-Za-z0-9_+\-]{1,20}\Z")
_BACKTICKS = re.compile(r"`+")


class Markdown(str):
    """A string that is Markdown already: printed by a template as it is."""

    __slots__ = ()


def visible(text: str) -> str:
    """Control characters as U+FFFD, text-reordering characters as <U+XXXX>."""
    text = _BIDI.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)
    return _CONTROL.sub("\ufffd", text)


def normalize_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return visible(_ANSI.sub("", text.replace("\t", " ")))


def _escape_line(line: str) -> str:
    line = _SPECIAL.sub(r"\\\1", line.strip())
    return _BLOCK_START.sub(lambda m: f"\\{m.group(1)}" if m.group(1) else f"{m.group(2)}\\{m.group(3)}", line)


def inline(text: object) -> Markdown:
    """One line of text (newlines become spaces), escaped."""
    return Markdown(_escape_line(" ".join(normalize_text(str(text)).split())))


def paragraph_lines(text: str) -> list[str]:
    """Escaped lines of a text; lines of one paragraph end in a hard break (a backslash)."""
    lines = [_escape_line(line) for line in normalize_text(text).strip().split("\n")]
    out: list[str] = []
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        out.append(f"{line}\\" if line and following else line)
    return out


def paragraph(text: str) -> Markdown:
    return Markdown("\n".join(paragraph_lines(text)))


def quote(markdown: str) -> Markdown:
    """Markdown set in a block quote, line by line."""
    return Markdown("\n".join(f"> {line}" if line else ">" for line in markdown.split("\n")))


def code_span(text: object) -> Markdown:
    text = " ".join(normalize_text(str(text)).split("\n"))
    run = max((len(m) for m in _BACKTICKS.findall(text)), default=0)
    ticks = "`" * (run + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return Markdown(f"{ticks}{pad}{text}{pad}{ticks}")


def code_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return visible(text)


def output_text(text: str) -> str:
    """Captured output as a terminal showed it: escape sequences dropped, and of a line rewritten
    with carriage returns (a progress bar) only its last state; trailing blank lines dropped."""
    lines = []
    for line in _ANSI.sub("", text).replace("\r\n", "\n").split("\n"):
        if "\r" in line:
            parts = [p for p in line.split("\r") if p]
            line = parts[-1] if parts else ""
        lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    return code_text("\n".join(lines))


def fenced(content: str, info: str = "") -> Markdown:
    """A fenced code block holding `content` exactly (its backtick runs cannot close it)."""
    run = max((len(m) for m in _BACKTICKS.findall(content)), default=0)
    fence = "`" * max(3, run + 1)
    return Markdown(f"{fence}{info if _INFO.match(info) else ''}\n{content}\n{fence}")


def html(text: object) -> Markdown:
    """Text for inside raw HTML (a `<summary>`): visible, one line, HTML-escaped."""
    text = " ".join(normalize_text(str(text)).split())
    return Markdown(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


def slug(text: str) -> str:
    """The anchor GitHub and GitLab give a heading: lower case, punctuation dropped, spaces to
    hyphens (the caller numbers repeats: `x`, `x-1`, `x-2`)."""
    text = " ".join(normalize_text(text).split()).lower()
    kept = []
    for ch in text:
        if ch in "-_ " or ch.isalnum() or unicodedata.category(ch).startswith("M"):
            kept.append("-" if ch == " " else ch)
    return "".join(kept)
