"""How the client's listings look on a terminal: colour and human times there, the plain form in
pipes and files (what scripts parse).

Colour follows `--color=never|auto|always` (auto: standard output is a terminal, `NO_COLOR` is
not set and TERM is not "dumb"; see no-color.org). Times are local and human (`today 14:03`,
`3 min ago`) when standard output is a terminal, the daemon's RFC 3339 otherwise. `configure` is
called once by cli.main with the parsed option; until then everything is plain.
"""

from __future__ import annotations

import os
import sys

_colour = False
_human = False

STATES = {"Active": "32", "Paused": "33", "Stopped": "2", "Error": "31"}  # green, yellow, dim, red


def configure(choice: str | None) -> None:
    global _colour, _human
    try:
        terminal = sys.stdout.isatty()
    except (OSError, ValueError):
        terminal = False
    _human = terminal
    if choice == "always":
        _colour = True
    elif choice == "never":
        _colour = False
    else:
        _colour = terminal and "NO_COLOR" not in os.environ and os.environ.get("TERM", "") != "dumb"


def paint(text: str, code: str) -> str:
    """`text` in SGR colour `code` (e.g. "32"), when colour is on."""
    return f"\x1b[{code}m{text}\x1b[0m" if _colour and code else text


def state(name: str, width: int = 0) -> str:
    """A session state, padded to `width`, coloured by what it means."""
    code = STATES.get(name.split(":")[0], "")
    return paint(name, code) + " " * max(0, width - len(name))


def failed(text: str) -> str:
    return paint(text, "31")


def when(stamp: str | None) -> str:
    """A time from the daemon: `today 14:03` on a terminal, as sent otherwise."""
    if not stamp:
        return "-"
    if not _human:
        return stamp
    from .human import when as human_when

    return human_when(stamp)
