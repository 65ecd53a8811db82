"""Document templates (docpilotd.render.templates), each read back by a CommonMark parser.

A golden file per built-in layout from one fixed session (commands in three shells, a failure with
output, a pipeline with a failing stage, a slow command, notes of every kind, two milestones):
`DOCPILOT_UPDATE_GOLDEN=1 python3 -m pytest tests/docs/test_templates.py` writes them again, to be
read and committed with the change that alters a layout. Then what a reader checks in each: every
command once in a code block, exactly as typed; every link of the contents and the failures list
leads to a heading of the document (GitHub's anchors); the summary counts; nothing a user typed
becomes markup; a user's own template, an override and broken templates.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from docpilotd.domain.model import Session
from docpilotd.errors import UsageError
from docpilotd.render import templates, view
from docpilotd.render.markdown import render

from .test_markdown import COMMANDS, TEXTS, Builder, at, parser

GOLDEN = Path(__file__).with_name("golden")
BUILTIN = list(templates.BUILTIN)


def fixed_session() -> Session:
    """A session like one typed in bash, zsh and fish, with every kind of thing a document shows."""
    b = Builder("Move the blog to the new server")
    b.session.metadata.working_directory = "/home/ada/blog"
    b.cmd("git pull --ff-only", at(1), "/home/ada/blog")
    b.cmd("make build", at(2), "/home/ada/blog/site", code=2,
          output="\x1b[1mbuilding\x1b[0m 12 pages\nerror: `theme` not found in <config.toml>\n")
    b.note("The theme is a git submodule: clone with --recursive", at(3), "Explanation")
    b.cmd("git submodule update --init", at(4), "/home/ada/blog")
    b.cmd("make build", at(5), "/home/ada/blog/site")
    b.session.commands[-1].duration_ms = 73_500  # slow: its duration is shown
    b.note("Site builds", at(6), "Milestone")
    b.shell = "zsh"
    b.cmd("rsync -a public/ web:/srv/blog | tee rsync.log | grep -c deleted", at(7), "/home/ada/blog/site", code=0)
    b.session.commands[-1].pipestatus = [0, 0, 1]  # grep found nothing: a stage failed, the pipeline did not
    b.note("rsync deletes nothing without --delete", at(8), "Warning")
    b.shell = "fish"
    b.cmd("curl -sI https://blog.example.org | head -1", at(9), "/home/ada/blog", output="HTTP/2 200\n")
    b.note("Live on the new server\nDNS moved at 10:09", at(10), "Milestone")
    b.note("Remember to cancel the old VPS", at(11))
    return b.stop(at(12))


# -- golden files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN)
def test_each_layout_matches_its_golden_file(name: str) -> None:
    text = render(fixed_session(), name)
    golden = GOLDEN / f"{name}.md"
    if os.environ.get("DOCPILOT_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), f"{name} changed: see the module docstring to update"


@pytest.mark.parametrize("alias,target", sorted(templates.ALIASES.items()))
def test_docpilots_other_names_render_the_nearest_layout(alias: str, target: str) -> None:
    assert render(fixed_session(), alias) == render(fixed_session(), target)


# -- reading a document back -------------------------------------------------------------------------------


def github_anchor(text: str) -> str:
    """GitHub's heading anchor, written independently of the code under test."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def plain(token: Any) -> str:
    return "".join(c.content for c in token.children or [] if c.type in ("text", "code_inline"))


def read(md: str) -> dict[str, Any]:
    """What a reader finds: headings (with anchors, numbered as GitHub numbers repeats), code blocks,
    links, raw HTML blocks, paragraphs."""
    tokens = parser().parse(md)
    headings: list[tuple[str, str, str]] = []
    seen: dict[str, int] = {}
    links: list[str] = []
    paragraphs: list[str] = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            text = plain(tokens[i + 1])
            base = github_anchor(text)
            n = seen.get(base, 0)
            seen[base] = n + 1
            headings.append((token.tag, text, base if n == 0 else f"{base}-{n}"))
        if token.type == "inline":
            links += [c.attrs["href"] for c in token.children or [] if c.type == "link_open"]
            if i > 0 and tokens[i - 1].type == "paragraph_open":
                paragraphs.append(plain(token))
    return {
        "headings": headings,
        "fences": [(t.info, t.content) for t in tokens if t.type == "fence"],
        "links": links,
        "html": [t.content for t in tokens if t.type == "html_block"],
        "paragraphs": paragraphs,
        "tables": sum(1 for t in tokens if t.type == "table_open"),
    }


@pytest.mark.parametrize("name", BUILTIN)
def test_every_command_is_in_a_code_block_once_exactly_as_typed(name: str) -> None:
    session = fixed_session()
    found = read(render(session, name))
    code_lines = [line for info, content in found["fences"] if info != "text" for line in content.splitlines()]
    assert sorted(code_lines) == sorted(c.command for c in session.commands)
    assert [info for info, _ in found["fences"] if info != "text"].count("zsh") == 1
    assert [info for info, _ in found["fences"] if info != "text"].count("fish") == 1


@pytest.mark.parametrize("name", BUILTIN)
def test_failures_failing_stages_and_slow_commands_are_marked(name: str) -> None:
    found = read(render(fixed_session(), name))
    assert "Failed (exit code 2)" in found["paragraphs"]
    assert "A stage failed (pipeline statuses 0 0 1, stage 3 failed)" in found["paragraphs"]
    if name != "minimal":
        assert "Took 1 min 14 s" in found["paragraphs"]


@pytest.mark.parametrize("name", ["comprehensive", "github"])
def test_contents_and_failure_links_lead_to_headings(name: str) -> None:
    found = read(render(fixed_session(), name))
    anchors = {anchor for _, _, anchor in found["headings"]}
    assert found["links"], "no links"
    for link in found["links"]:
        assert link.startswith("#") and link[1:] in anchors, f"{link} leads nowhere: {sorted(anchors)}"
    h2 = [text for tag, text, _ in found["headings"] if tag == "h2"]
    assert h2 == ["Summary", "Contents", "Steps", "Site builds", "Live on the new server", "Failures", "Statistics"]


@pytest.mark.parametrize("name", ["comprehensive", "github"])
def test_the_summary_tells_what_was_done_by_milestone(name: str) -> None:
    md = render(fixed_session(), name)
    summary = md.split("## Summary", 1)[1].split("## Contents", 1)[0]
    assert "6 commands, 1 failure, 2 milestones in 12 min 0 s." in summary
    assert "**[Site builds](#site-builds)** (09:06:00): 2 commands, 1 note" in summary
    assert "**[Live on the new server](#live-on-the-new-server)** (09:10:00): 0 commands, 1 note" in summary


def test_github_folds_output_and_puts_numbers_in_a_table() -> None:
    found = read(render(fixed_session(), "github"))
    folded = [h for h in found["html"] if h.startswith("<details>")]
    assert len(folded) == 2 and "<summary>Output (2 lines)</summary>" in folded[0]
    outputs = [content for info, content in found["fences"] if info == "text"]
    assert outputs == ["building 12 pages\nerror: `theme` not found in <config.toml>\n", "HTTP/2 200\n"]
    assert found["tables"] == 1
    for name in ("standard", "comprehensive", "minimal"):
        assert read(render(fixed_session(), name))["html"] == []


def test_paths_are_relative_to_the_start_directory_when_every_command_ran_under_it() -> None:
    session = fixed_session()
    md = render(session, "standard")
    assert "/home/ada" not in md
    assert "In `./site`:" in md and "In `.`:" in md
    absolute = render(session, "standard", view.Options(relative_to=None))
    assert "In `/home/ada/blog/site`:" in absolute
    elsewhere = render(session, "standard", view.Options(relative_to="/home/ada"))
    assert "In `./blog/site`:" in elsewhere
    session.commands[0].working_directory = "/etc"  # one command outside: absolute by default
    assert "In `/home/ada/blog/site`:" in render(session, "standard")


def test_the_shells_used_are_named() -> None:
    md = render(fixed_session(), "standard")
    assert "- **Where:** ada@ada-laptop, linux, bash, zsh and fish" in md


@pytest.mark.parametrize("name", BUILTIN)
def test_nothing_typed_becomes_markup_in_any_layout(name: str) -> None:
    b = Builder("Title `with` *markup* [x](y) <b>")
    for minute, command in enumerate(COMMANDS, start=1):
        b.cmd(command, at(minute), "/w", code=minute % 2)
    for minute, text in enumerate(TEXTS, start=len(COMMANDS) + 1):
        b.note(text, at(minute), "Warning" if minute % 2 else "Milestone")
    md = render(b.session, name)
    found = read(md)
    codes = [content for info, content in found["fences"] if info != "text"]
    assert sorted(codes) == sorted(c.replace("\r\n", "\n") + "\n" for c in COMMANDS)
    assert found["headings"][0][:2] == ("h1", "Title `with` *markup* [x](y) <b>")
    assert found["html"] == []
    for link in found["links"]:  # only the document's own links
        assert link.startswith("#")


# -- a user's own templates ------------------------------------------------------------------------------------


def test_a_users_template_is_listed_rendered_and_escapes_by_default(tmp_path: Path) -> None:
    (tmp_path / "runbook.md.j2").write_text(
        "# Runbook: {{ doc.title }}\n{% for s in doc.sections %}{% for b in s.blocks if b.kind == 'commands' %}\n"
        "{{ b.text|fence(b.language) }}\n{% endfor %}{% endfor %}\n", encoding="utf-8")
    names = {t.name: t for t in templates.available(tmp_path)}
    assert names["runbook"].source == str(tmp_path / "runbook.md.j2")
    assert names["hierarchical"].alias_of == "comprehensive"
    b = Builder("*not emphasis*")
    b.cmd("echo ```", at(1))
    md = render(b.session, "runbook", user_templates=tmp_path)
    assert md.startswith("# Runbook: \\*not emphasis\\*\n")
    assert read(md)["fences"] == [("bash", "echo ```\n")]


def test_a_users_file_overrides_a_built_in_layout_and_can_reuse_its_parts(tmp_path: Path) -> None:
    (tmp_path / "standard.md.j2").write_text(
        '{% import "_parts.md.j2" as parts %}# Ours: {{ doc.title }}\n\n{{ parts.facts(doc)|md }}\n', encoding="utf-8")
    md = render(fixed_session(), "standard", user_templates=tmp_path)
    assert md.startswith("# Ours: Move the blog to the new server\n\n- **Session:**")
    assert render(fixed_session(), "standard") != md  # without the directory: the built-in


@pytest.mark.parametrize("source,message", [
    ("{% for x in %}", "line 1"),
    ("{{ doc.no_such_field }}", "no_such_field"),
    ("{{ doc.title|no_such_filter }}", "no_such_filter"),
])
def test_a_broken_template_is_one_clear_error(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "broken.md.j2").write_text(source, encoding="utf-8")
    with pytest.raises(UsageError, match=re.escape(message)) as caught:
        render(fixed_session(), "broken", user_templates=tmp_path)
    assert "broken" in caught.value.message


@pytest.mark.parametrize("name", ["nope", "../standard", "", "standard.md.j2", "_parts"])
def test_unknown_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no template"):
        render(fixed_session(), name, user_templates=tmp_path)
