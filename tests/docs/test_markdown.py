"""The Markdown of a session (docpilotd.render.markdown), read back by a CommonMark parser.

A reader's expectations, checked on a realistic session: everything in time order, milestones as
section headings, warnings and explanations set apart, failed commands marked with their exit
code, the working directory named when it changes. Then hostile text: whatever a command or an
annotation contains (backtick runs, Markdown and HTML syntax, Unicode, control characters), the
parsed document shows exactly that text, as code or as plain text, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docpilotd.domain import changes
from docpilotd.domain.model import Annotation, CommandEntry, Session, SessionMetadata
from docpilotd.domain.timestamps import format_ns
from docpilotd.render.markdown import render

markdown_it = pytest.importorskip("markdown_it")

BASE = 1_754_038_800 * 1_000_000_000  # 2025-08-01T09:00:00Z
SESSION_ID = "6513270e-269e-4d37-b2a7-4de452e6b438"


def at(minutes: float) -> str:
    return format_ns(BASE + int(minutes * 60) * 1_000_000_000)


class Builder:
    """A session made through the state machine, with fixed ids and times."""

    def __init__(self, description: str = "Set up the staging proxy", shell: str = "bash") -> None:
        self._ids = (f"00000000-0000-4000-8000-{i:012d}" for i in range(1, 1_000_000))
        self.shell = shell
        meta = SessionMetadata(
            working_directory="/home/ada", shell_type=shell, platform="linux", hostname="ada-laptop", user="ada",
            tags=["nginx", "staging"], llm_provider=None, settings={},
        )
        self.session = changes.create(changes.Create(
            session_id=SESSION_ID, description=description, at=at(0), event_id=next(self._ids), metadata=meta,
        ))

    def cmd(self, text: str, when: str, cwd: str = "/home/ada", code: int | None = 0, output: str | None = None) -> None:
        entry = CommandEntry(command=text, timestamp=when, exit_code=code, working_directory=cwd, shell=self.shell,
                             output=output, error=None)
        self.session = changes.apply(self.session, changes.RecordCommand(entry=entry, event_id=next(self._ids)))

    def note(self, text: str, when: str, kind: str = "Note") -> None:
        note = Annotation(id=next(self._ids), text=text, timestamp=when, annotation_type=kind)  # type: ignore[arg-type]
        self.session = changes.apply(self.session, changes.Annotate(annotation=note, event_id=next(self._ids)))

    def stop(self, when: str) -> Session:
        self.session = changes.apply(self.session, changes.Stop(at=when, event_id=next(self._ids)))
        return self.session


def staging_proxy() -> Session:
    b = Builder()
    b.cmd("sudo apt install nginx", at(1))
    b.cmd("cd /etc/nginx/sites-available", at(2))
    b.note("nginx reads the sites in sites-enabled/ (symlinks to sites-available/)", at(3))
    b.cmd("sudo vim staging.conf", at(4), "/etc/nginx/sites-available")
    b.cmd("sudo nginx -t", at(6), "/etc/nginx/sites-available", 1,
          'nginx: [emerg] unknown directive "proxy_pas" in /etc/nginx/sites-enabled/staging.conf:12\n'
          "nginx: configuration file /etc/nginx/nginx.conf test failed\n")
    b.note("`nginx -t` checks the configuration before a reload: a typo in *proxy_pass* broke it", at(7), "Explanation")
    b.cmd("sudo sed -i 's/proxy_pas /proxy_pass /' staging.conf", at(8), "/etc/nginx/sites-available")
    b.cmd("sudo nginx -t && sudo systemctl reload nginx", at(9), "/etc/nginx/sites-available")
    b.note("reload, never restart: a restart drops open connections", at(10), "Warning")
    b.note("Proxy answers on :443", at(11), "Milestone")
    # Added from another terminal while certbot ran: in the list before the command, later in time.
    b.note("certbot finished while the test ran", at(13))
    b.cmd("sudo certbot --nginx -d staging.example.com", at(12), "/etc/nginx/sites-available")
    b.cmd("curl -sI https://staging.example.com | head -1", at(14), "/home/ada", 0, "HTTP/2 200\n")
    return b.stop(at(15.5))


EXPECTED = """\
# Set up the staging proxy

- **Session:** `6513270e-269e-4d37-b2a7-4de452e6b438` (Stopped)
- **Started:** 2025-08-01 09:00:00 UTC; **stopped:** 2025-08-01 09:15:30 UTC (15 min 30 s)
- **Where:** ada@ada-laptop, linux, bash
- **Recorded:** 8 commands (7 succeeded, 1 failed), 5 annotations
- **Tags:** nginx, staging

In `/home/ada`:

```bash
sudo apt install nginx
cd /etc/nginx/sites-available
```

nginx reads the sites in sites-enabled/ (symlinks to sites-available/)

In `/etc/nginx/sites-available`:

```bash
sudo vim staging.conf
```

```bash
sudo nginx -t
```

```text
nginx: [emerg] unknown directive "proxy_pas" in /etc/nginx/sites-enabled/staging.conf:12
nginx: configuration file /etc/nginx/nginx.conf test failed
```

**Failed** (exit code 1)

> **Explanation:** \\`nginx -t\\` checks the configuration before a reload: a typo in \\*proxy\\_pass\\* broke it

```bash
sudo sed -i 's/proxy_pas /proxy_pass /' staging.conf
sudo nginx -t && sudo systemctl reload nginx
```

> **Warning:** reload, never restart: a restart drops open connections

## Proxy answers on :443

```bash
sudo certbot --nginx -d staging.example.com
```

certbot finished while the test ran

In `/home/ada`:

```bash
curl -sI https://staging.example.com | head -1
```

```text
HTTP/2 200
```
"""


# -- reading the document back ------------------------------------------------------------------------


def parser() -> Any:
    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])


def inline_text(token: Any) -> str:
    """The text a reader sees in an inline token; fails on any markup inside it."""
    out = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif child.type in ("strong_open", "strong_close"):
            out.append("**")  # only ever ours (labels): user text has its asterisks escaped
        else:
            raise AssertionError(f"markup {child.type!r} in rendered text: {token.content!r}")
    return "".join(out)


def outline(md: str) -> list[tuple[str, str]]:
    """The document as (kind, text) in reading order: h1/h2, para, quote, code:INFO, list items."""
    tokens = parser().parse(md)
    found: list[tuple[str, str]] = []
    depth = {"blockquote": 0, "list": 0}
    pending: str | None = None
    for token in tokens:
        if token.type == "blockquote_open":
            depth["blockquote"] += 1
        elif token.type == "blockquote_close":
            depth["blockquote"] -= 1
        elif token.type == "bullet_list_open":
            depth["list"] += 1
        elif token.type == "bullet_list_close":
            depth["list"] -= 1
        elif token.type == "heading_open":
            pending = token.tag
        elif token.type == "paragraph_open":
            pending = "quote" if depth["blockquote"] else "item" if depth["list"] else "para"
        elif token.type == "inline":
            assert pending is not None
            found.append((pending, inline_text(token)))
            pending = None
        elif token.type == "fence":
            found.append((f"code:{token.info}", token.content))
        elif token.type in ("html_block", "code_block", "hr", "table_open", "ordered_list_open"):
            raise AssertionError(f"unexpected block {token.type}: {token.content!r}")
    return found


def timeline(md: str) -> list[tuple[str, str]]:
    return [item for item in outline(md) if item[0] not in ("h1", "item")]


# -- a realistic session ---------------------------------------------------------------------------------


def test_a_realistic_session_reads_as_expected() -> None:
    assert render(staging_proxy()) == EXPECTED


def test_the_timeline_is_in_time_order_with_headings_failures_and_directories() -> None:
    assert timeline(render(staging_proxy())) == [
        ("para", "In /home/ada:"),
        ("code:bash", "sudo apt install nginx\ncd /etc/nginx/sites-available\n"),
        ("para", "nginx reads the sites in sites-enabled/ (symlinks to sites-available/)"),
        ("para", "In /etc/nginx/sites-available:"),
        ("code:bash", "sudo vim staging.conf\n"),
        ("code:bash", "sudo nginx -t\n"),
        ("code:text", 'nginx: [emerg] unknown directive "proxy_pas" in /etc/nginx/sites-enabled/staging.conf:12\n'
                      "nginx: configuration file /etc/nginx/nginx.conf test failed\n"),
        ("para", "**Failed** (exit code 1)"),
        ("quote", "**Explanation:** `nginx -t` checks the configuration before a reload: a typo in *proxy_pass* broke it"),
        ("code:bash", "sudo sed -i 's/proxy_pas /proxy_pass /' staging.conf\nsudo nginx -t && sudo systemctl reload nginx\n"),
        ("quote", "**Warning:** reload, never restart: a restart drops open connections"),
        ("h2", "Proxy answers on :443"),
        ("code:bash", "sudo certbot --nginx -d staging.example.com\n"),
        ("para", "certbot finished while the test ran"),
        ("para", "In /home/ada:"),
        ("code:bash", "curl -sI https://staging.example.com | head -1\n"),
        ("code:text", "HTTP/2 200\n"),
    ]


def test_the_facts_at_the_top() -> None:
    found = outline(render(staging_proxy()))
    assert found[0] == ("h1", "Set up the staging proxy")
    items = [text for kind, text in found if kind == "item"]
    assert items[0] == f"**Session:** {SESSION_ID} (Stopped)"
    assert "8 commands (7 succeeded, 1 failed), 5 annotations" in items[3]
    assert items[4] == "**Tags:** nginx, staging"


def test_every_failed_command_has_its_own_block_and_exit_code() -> None:
    b = Builder()
    b.cmd("make", at(1), code=0)
    b.cmd("make test", at(2), code=2)
    b.cmd("make lint", at(3), code=None)  # unknown status: not a failure
    b.cmd("false | true", at(4), code=1)
    b.session.commands[-1].pipestatus = [1, 0]
    found = timeline(render(b.session))
    assert found == [
        ("para", "In .:"),  # every command ran where the session started: paths are relative to it
        ("code:bash", "make\n"),
        ("code:bash", "make test\n"),
        ("para", "**Failed** (exit code 2)"),
        ("code:bash", "make lint\n"),
        ("code:bash", "false | true\n"),
        ("para", "**Failed** (exit code 1; pipeline statuses 1 0, stage 1 failed)"),
    ]


def test_the_directory_is_named_only_when_it_changes() -> None:
    b = Builder()
    for minute, cwd in enumerate(["/a", "/a", "/b", "/b", "/a", ""], start=1):
        b.cmd(f"step {minute}", at(minute), cwd)
    found = timeline(render(b.session))
    assert [text for kind, text in found if kind == "para"] == ["In /a:", "In /b:", "In /a:"]
    assert [text for kind, text in found if kind.startswith("code")] == [
        "step 1\nstep 2\n", "step 3\nstep 4\n", "step 5\n", "step 6\n"
    ]


def test_an_empty_session_is_a_title_and_its_facts() -> None:
    md = render(Builder("Nothing yet").session)
    assert outline(md)[0] == ("h1", "Nothing yet")
    assert timeline(md) == []
    assert "0 commands, 0 annotations" in md


def test_the_shell_names_the_code_language() -> None:
    for shell, info in (("zsh", "zsh"), ("fish", "fish"), ("weird`shell", "shell"), ("", "shell")):
        b = Builder(shell=shell)
        b.cmd("ls", at(1))
        assert timeline(render(b.session))[1] == (f"code:{info}", "ls\n")


# -- hostile text ----------------------------------------------------------------------------------------

COMMANDS = [
    "echo ``` && echo ````",
    "```\nrm -rf /\n```",
    "~~~\ncat <<EOF\n# not a heading\nEOF",
    "printf '%s\\n' `date` $(whoami) *.md _x_ [a](b) <b>bold</b> &amp; | ~~strike~~ $x$",
    "git commit -m 'fix: ünïcödé ✓ 日本語 🚀 — \u0645\u0631\u062d\u0628\u0627'",
    "    indented four spaces",
    "`",
    "\\",
]

TEXTS = [
    "*bold* _em_ **strong** `code` [link](http://example.com) ![img](x.png) <script>alert(1)</script>",
    "# not a heading",
    "## nor this ##",
    "- not a list",
    "+ nor this",
    "1. not numbered",
    "2) nor this",
    "> not a quote",
    "---",
    "***",
    "___",
    "===",
    "| a | b |",
    "&amp; &#x41; &copy;",
    "~~not struck~~",
    "$not math$ and \\(not either\\)",
    "trailing backslash \\",
    "[ref]: http://example.com",
    "<http://example.com> <a@b.c>",
    "ünïcödé ✓ 日本語 🚀 — \u0645\u0631\u062d\u0628\u0627 \u00a0nbsp",
    "```\nfenced?\n```",
    "    indented",
]


def test_commands_come_out_exactly_as_typed() -> None:
    b = Builder()
    for minute, command in enumerate(COMMANDS, start=1):
        b.cmd(command, at(minute), "/w", code=minute % 2)  # every other one fails: one block each
    codes = [text for kind, text in timeline(render(b.session)) if kind.startswith("code")]
    assert codes == [c.replace("\r\n", "\n") + "\n" for c in COMMANDS]


@pytest.mark.parametrize("kind", ["Note", "Warning", "Explanation"])
def test_annotation_text_comes_out_as_plain_text(kind: str) -> None:
    b = Builder()
    for minute, text in enumerate(TEXTS, start=1):
        b.note(text, at(minute), kind)
    found = timeline(render(b.session))
    label = "" if kind == "Note" else f"**{kind}:** "
    assert found == [("para" if kind == "Note" else "quote", label + text.strip()) for text in TEXTS]


def test_milestone_text_is_one_heading() -> None:
    b = Builder("# Title with `code` and *stars*")
    for minute, text in enumerate(TEXTS, start=1):
        b.note(text, at(minute), "Milestone")
    found = outline(render(b.session))
    assert found[0] == ("h1", "# Title with `code` and *stars*")
    # A milestone's first line is its heading (the rest, if any, a paragraph under it).
    first_lines = [" ".join(t.strip().split("\n")[0].split()) for t in TEXTS]
    assert [item for item in found if item[0] == "h2"] == [("h2", line) for line in first_lines]


def test_multi_line_annotations_keep_their_lines() -> None:
    b = Builder()
    b.note("first line\n# second\n- third\n\nnew paragraph", at(1), "Warning")
    b.note("Milestone title\nwith details", at(2), "Milestone")
    assert timeline(render(b.session)) == [
        ("quote", "**Warning:** first line\n# second\n- third"),
        ("quote", "new paragraph"),
        ("h2", "Milestone title"),
        ("para", "with details"),
    ]


def test_control_characters_and_reordering_characters_never_reach_the_document() -> None:
    b = Builder()
    b.cmd("echo \x1b[31mred\x1b[0m\x07 \u202eevil\u202c", at(1), "/w", 0, "\x1b[32mok\x1b[0m\rprogress 50%\rprogress 100%\n")
    b.note("bell\x07 nul\x00 rtl\u202eoverride", at(2))
    md = render(b.session)
    assert not any(ord(ch) < 32 and ch not in "\n" for ch in md)
    assert "\u202e" not in md and "\u202c" not in md
    found = timeline(md)
    assert found[1] == ("code:bash", "echo \ufffd[31mred\ufffd[0m\ufffd <U+202E>evil<U+202C>\n")
    assert found[2] == ("code:text", "progress 100%\n")
    assert found[3] == ("para", "bell\ufffd nul\ufffd rtl<U+202E>override")


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    b = Builder()
    b.cmd("echo \udcff", at(1))
    md = render(b.session)
    md.encode("utf-8")  # would raise on a lone surrogate
    assert "echo \ufffd\n" in md


# -- any text at all -----------------------------------------------------------------------------------------

_PRINTABLE = st.characters(
    blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
)
_MARKUP = st.sampled_from(list("`*_[]()<>#&|~$!\\-+=.:)") + ["```", "~~~", "1.", "- ", "> ", "    ", "\n", "&amp;"])
_TEXT = st.lists(st.one_of(_PRINTABLE, _MARKUP), max_size=40).map("".join)


def _lines_of(text: str) -> Iterator[str]:
    yield from (line.strip() for line in text.split("\n"))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(command=_TEXT, note=_TEXT)
def test_any_command_and_any_note_survive_rendering(command: str, note: str) -> None:
    b = Builder()
    b.cmd(command, at(1), "/w", code=3)
    b.note(note, at(2))
    found = timeline(render(b.session))
    assert found[1] == ("code:bash", command + "\n")
    assert found[2] == ("para", "**Failed** (exit code 3)")
    # The note: its paragraphs, each line as typed (less surrounding spaces; a tab is a space).
    expected = [p for p in "\n".join(_lines_of(note.replace("\t", " "))).split("\n\n")]
    paragraphs = [text for kind, text in found[3:]]
    assert [p.strip("\n") for p in paragraphs] == [p.strip("\n") for p in expected if p.strip()] or (
        not note.strip() and paragraphs == []
    )
