"""A session as a Markdown document: what `docpilot generate` and `export -f markdown` write.

`render(session, template, options)`: the typed view of the session (view.py) laid out by a
template (templates.py; `standard` unless another is named). The standard layout: the
description as the title, a short list of facts (state, times, where, counts, tags), then the
session in time order. Commands and annotations are interleaved by timestamp; a milestone starts
a section (`## text`); a note is a paragraph; an explanation and a warning are set apart as block
quotes (`> **Warning:** ...`); commands are fenced code blocks, consecutive successful commands in
the same directory sharing one block; a command that failed has its own block followed by
`**Failed** (exit code N)` (and the failing stages of a pipeline); a captured output follows its
command in a `text` block; a slow command says how long it took; the working directory is named
whenever it changes, relative to where the session started when every command ran under it.

Escaping and its invariants: markup.py. Pure: depends on the session and its arguments alone.
"""

from __future__ import annotations

from pathlib import Path

from ..domain.model import Session
from . import templates, view
from .view import DEFAULT_OPTIONS, Options


def render(session: Session, template: str = "standard", options: Options = DEFAULT_OPTIONS,
           user_templates: Path | None = None) -> str:
    """The Markdown document of `session`, ending with a newline."""
    return templates.render(view.build(session, options), template, user_templates)
