"""Document templates: which exist, where each comes from, and rendering a view with one.

Built-in layouts live in `templates/NAME.md.j2` beside this module: standard (the timeline with
its facts), minimal (the commands, by milestone), comprehensive (summary, contents, sections,
failures, statistics) and github (comprehensive for GitHub/GitLab: output folded in `<details>`,
tables). DocPilot's other template names are aliases of the nearest layout (`ALIASES`). A user
adds or overrides a layout with `NAME.md.j2` in their templates directory (by default
`templates/` beside the configuration file; `templates_dir` in the configuration).

Safety: every value a template prints is escaped as Markdown text (the environment's `finalize`)
unless a filter made it Markdown already (`code`, `fence`, `paragraph`, `quote`, `output`,
`details`, `html`...), so no command, note or title can break a document's structure, whatever
the template. Jinja2 is imported only when a document is rendered (the daemon's start-up and the
client never pay for it).

Errors: an unknown name, or a template that does not compile or fails while rendering, is a
UsageError naming the template and, when known, the line.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from . import markup
from .view import Commands, Document, Note

if TYPE_CHECKING:
    import jinja2

BUILTIN = ("standard", "minimal", "comprehensive", "github")
# DocPilot's other names, each shown with the layout nearest to what it described.
ALIASES = {
    "hierarchical": "comprehensive",  # sections by milestone, with contents
    "professional": "comprehensive",
    "technical": "comprehensive",     # statistics, failures, output
    "rich": "github",                 # folded output, tables
    "compact": "minimal",
}
SUFFIX = ".md.j2"
BUILTIN_DIR = Path(__file__).with_name("templates")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


@dataclass(frozen=True)
class Template:
    name: str
    source: str          # "built-in", or the file that defines it
    alias_of: str = ""   # for DocPilot's aliases: the layout used


def user_dir(configured: str | None, config_file: Path) -> Path:
    """Where a user's templates are: `templates_dir` from the configuration, else `templates/`
    beside the configuration file."""
    return Path(configured).expanduser() if configured else config_file.parent / "templates"


def available(user_templates: Path | None) -> list[Template]:
    """Every template name that `generate -t` accepts, with where it comes from."""
    found: dict[str, Template] = {name: Template(name, "built-in") for name in BUILTIN}
    for name, target in ALIASES.items():
        found[name] = Template(name, "built-in", alias_of=target)
    for name, path in _user_files(user_templates).items():
        found[name] = Template(name, str(path))
    return sorted(found.values(), key=lambda t: (t.name not in BUILTIN, t.alias_of != "", t.name))


def _user_files(directory: Path | None) -> dict[str, Path]:
    if directory is None:
        return {}
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    files = {}
    for entry in names:
        name = entry[: -len(SUFFIX)] if entry.endswith(SUFFIX) else ""
        # A name starting with "_" is a part for other templates to import, not a layout.
        if name and not name.startswith("_") and set(name) <= _NAME_CHARS and (directory / entry).is_file():
            files[name] = directory / entry
    return files


def render(document: Document, name: str, user_templates: Path | None) -> str:
    """The document laid out by template `name`, ending with one newline."""
    import jinja2

    if not name or not set(name) <= _NAME_CHARS:
        raise UsageError(f"no template {name!r}: see 'docpilot generate --list-templates'")
    user = _user_files(user_templates)
    chosen = name if name in user else ALIASES.get(name, name)
    if chosen not in user and chosen not in BUILTIN:
        raise UsageError(f"no template {name!r}: see 'docpilot generate --list-templates'")
    env = _environment(user_templates if chosen in user else None)
    try:
        text = env.get_template(chosen + SUFFIX).render(doc=document)
    except jinja2.TemplateSyntaxError as exc:
        raise UsageError(f"template {name!r} ({exc.filename or exc.name}, line {exc.lineno}): {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise UsageError(f"template {name!r} failed: {exc}") from None
    return _tidy(text)


# A fenced block as markup.fenced writes one (kept whole), or trailing blanks, or a run of blank lines.
_TIDY = re.compile(r"^(`{3,})[^`\n]*\n.*?^\1$|[ \t]+$|\n(?:[ \t]*\n)+", re.M | re.S)


def _tidy(text: str) -> str:
    """At most one blank line between blocks, no trailing blanks, none at the ends: templates may
    leave runs of blank lines where optional parts were left out. A fenced block (commands,
    output) is kept exactly as it is."""
    def fix(match: re.Match[str]) -> str:
        found = match.group()
        if match.group(1):
            return found
        if found[0] != "\n":
            return ""
        return "\n\n" if found.count("\n") > 1 else "\n"

    return _TIDY.sub(fix, text).strip("\n") + "\n"


# -- the environment -------------------------------------------------------------------------------

_environments: dict[str, Any] = {}
_lock = threading.Lock()


def _environment(user_templates: Path | None) -> jinja2.Environment:
    import jinja2

    key = str(user_templates or "")
    with _lock:
        env = _environments.get(key)
        if env is None:
            loaders: list[jinja2.BaseLoader] = []
            if user_templates is not None:
                loaders.append(jinja2.FileSystemLoader(str(user_templates)))
            loaders.append(jinja2.FileSystemLoader(str(BUILTIN_DIR)))
            env = jinja2.Environment(
                loader=jinja2.ChoiceLoader(loaders), autoescape=False, finalize=_escape,
                trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                undefined=jinja2.StrictUndefined, auto_reload=True,
            )
            env.filters.update(FILTERS)
            _environments[key] = env
        return env


def _escape(value: object) -> object:
    """What every `{{ ... }}` prints: Markdown as it is, None as nothing, anything else as text."""
    if isinstance(value, markup.Markdown):
        return value
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    return markup.inline(value)


def _fence(text: str, info: str = "") -> markup.Markdown:
    return markup.fenced(markup.code_text(text), info)


def _output(text: str) -> markup.Markdown:
    return markup.fenced(text, "text")


def _details(body: str, summary: str) -> markup.Markdown:
    """A block folded on GitHub and GitLab; other readers show it open."""
    return markup.Markdown(f"<details>\n<summary>{markup.html(summary)}</summary>\n\n{body}\n\n</details>")


def _block(b: Commands | Note, folded: bool = False) -> markup.Markdown:
    """One block of the timeline (what `_parts.block` was as a macro, here because a long
    session has tens of thousands of blocks): a note as a paragraph or a labelled quote; commands
    as a code block, named with their directory when it changed, followed by their output
    (folded: in a <details> block) and by a failure, a failing pipeline stage or a slow duration."""
    if isinstance(b, Note):
        if b.type == "Note":
            return markup.paragraph(b.text)
        return markup.quote(f"**{b.type}:** " + markup.paragraph(b.text))
    parts = []
    if b.directory_changed:
        parts.append(f"In {markup.code_span(b.directory)}:")
    parts.append(_fence(b.text, b.language))
    c = b.commands[-1]
    if c.output:
        output = markup.fenced(c.output, "text")
        parts.append(_details(output, f"Output ({_plural(c.output_lines, 'line')})") if folded else output)
    after = f", after {c.duration}" if c.duration else ""
    if c.failed:
        parts.append(f"**Failed** ({markup.inline(c.exit_status)}{markup.inline(after)})")
    elif c.failed_stages:
        parts.append(f"**A stage failed** ({markup.inline(c.pipeline_status)}{markup.inline(after)})")
    elif c.duration:
        parts.append(f"*Took {markup.inline(c.duration)}*")
    return markup.Markdown("\n\n".join(parts))


def _plural(count: int, word: str, many: str = "") -> str:
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def _number(value: int) -> markup.Markdown:
    return markup.Markdown(f"{value:,}")


FILTERS: dict[str, Any] = {
    "text": markup.inline,            # one line of text, escaped (what printing does anyway)
    "code": markup.code_span,         # inline code
    "fence": _fence,                  # a fenced code block: {{ text|fence("bash") }}
    "output": _output,                # captured output as a `text` block
    "paragraph": markup.paragraph,    # text with its line breaks
    "quote": markup.quote,            # Markdown set in a block quote
    "details": _details,              # {{ body|details("Output") }}: folded on GitHub
    "block": _block,                  # a block of the timeline, laid out as the built-in layouts do
    "html": markup.html,              # text inside raw HTML
    "plural": _plural,                # {{ n|plural("command") }} -> "3 commands"
    "number": _number,                # 12,345
    "md": markup.Markdown,            # trust a string as Markdown (for template authors)
}
