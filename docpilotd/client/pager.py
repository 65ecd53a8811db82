"""A long listing through a pager, as git does: only when standard output is a terminal, with
`$DOCPILOT_PAGER`, else `$PAGER`, else `less -FRX` (which quits at once when the text fits on one
screen and keeps it on the screen afterwards). `DOCPILOT_PAGER=cat` (or an empty value) turns it
off; a pipe or a file gets the text directly. A pager that cannot start is skipped silently.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def _command() -> list[str] | None:
    chosen = os.environ.get("DOCPILOT_PAGER", os.environ.get("PAGER", "less"))
    words = shlex.split(chosen) if chosen.strip() else []
    if not words or words[0] == "cat":
        return None
    return words


@contextmanager
def paged() -> Iterator[None]:
    """Within it, what is printed goes through the pager (when there should be one)."""
    words = _command() if sys.stdout.isatty() else None
    if words is None:
        yield
        return
    env = dict(os.environ)
    env.setdefault("LESS", "FRX")  # quit if one screen, raw colours, leave the text on screen
    try:
        pager = subprocess.Popen(words, stdin=subprocess.PIPE, env=env, text=True, errors="replace")
    except OSError:
        yield
        return
    assert pager.stdin is not None
    saved = sys.stdout
    sys.stdout = pager.stdin
    try:
        yield
    except BrokenPipeError:
        pass  # the reader quit the pager early
    finally:
        sys.stdout = saved
        try:
            pager.stdin.close()
        except BrokenPipeError:
            pass
        pager.wait()
