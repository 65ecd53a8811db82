"""Whether a command line is a call of the tool itself (`docpilot note ...`), pure text logic.

Why: a person who types `docpilot note "the proxy is up"` in a hooked shell already gets the note;
recording the command line as well would show every note twice in the document. So such lines are
not recorded by default (`record_own_commands = true` records them).

Rule: the line is one simple command (no unquoted `;`, `&`, `|`, newline, or command substitution
outside quotes) whose command word, after leading `NAME=value` assignments and a `command` or
`builtin` prefix or a backslash, is exactly `docpilot` or a path ending in `/docpilot`.
Everything else is a command of the user's, including lines that mention docpilot elsewhere
(`cat ~/.docpilot/x`, `cd docpilot`, `docpilot-lint`, `echo docpilot`).

`docpilot run -- CMD` records CMD itself, with its output: such a line (the same rule, and `run`
the word after the tool's name) is a duplicate whatever `record_own_commands` says.
"""

from __future__ import annotations

import re

_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_PREFIXES = ("command", "builtin", "exec", "env")


def is_own_invocation(line: str) -> bool:
    return _own_arguments(line) is not None


def runs_itself(line: str) -> bool:
    """A `docpilot run ...` line: the command it runs is recorded by run itself."""
    return (_own_arguments(line) or [""])[0] == "run"


def _own_arguments(line: str) -> list[str] | None:
    """The words after `docpilot` when `line` calls the tool itself, else None."""
    words = _simple_command_words(line)
    if not words:
        return None
    i = 0
    while i < len(words) and (_ASSIGNMENT.match(words[i]) or words[i] in _PREFIXES):
        i += 1
    if i >= len(words):
        return None
    word = words[i].lstrip("\\")
    return words[i + 1 :] if word == "docpilot" or word.endswith("/docpilot") else None


def _simple_command_words(line: str) -> list[str] | None:
    """The words of `line` when it is a single simple command, else None (quotes respected)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i + 1 < len(line):
                i += 1
                current.append(line[i])
            else:
                current.append(ch)
        elif ch in "'\"":
            quote = ch
        elif ch == "\\" and i + 1 < len(line):
            current.append(ch)
            i += 1
            current.append(line[i])
        elif ch in ";&|\n`(" or (ch == "$" and line[i + 1 : i + 2] == "("):
            return None
        elif ch in " \t":
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(ch)
        i += 1
    if quote:
        return None
    if current:
        words.append("".join(current))
    return words
