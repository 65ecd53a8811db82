"""From typing to a published document, as a person does it: one session typed in real hooked
bash, zsh and fish (a failing pipeline stage, `docpilot run` of a failing command with output on
stdout and stderr, notes, a milestone), stopped from fish, then `docpilot generate` in every
built-in layout from a fresh hooked shell with no session id typed. Each document is read back
with a CommonMark parser and checked for what a reader looks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from docpilotd.render.templates import BUILTIN

from ..docs.test_templates import read
from ..reliability.kill9 import DaemonProcess
from .ptyshell import available, run_shell
from .test_hooks import LOAD, assert_quiet, daemon, home, shell_env  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(not all(available(s) for s in ("bash", "zsh", "fish")), reason="needs bash, zsh and fish")

FAILING = "sh -c 'echo building 12 pages; echo \"error: theme not found\" >&2; exit 3'"


def test_a_session_typed_in_three_shells_then_stopped_is_generated_in_every_layout_with_no_id_typed(
    home: Path, daemon: DaemonProcess
) -> None:
    work = home / "blog"
    (work / "site").mkdir(parents=True)
    env = shell_env(home)
    typed, _ = run_shell("bash", [
        LOAD["bash"],
        'docpilot start "Move the blog"',
        "true | false | true",
        "cd site",
        f"docpilot run -- {FAILING}",
        "echo status=$?",
        "docpilot explain 'The theme is a git submodule'",
    ], env, cwd=str(work))
    assert "building 12 pages" in typed and "error: theme not found" in typed  # passed through live
    assert "status=3" in typed  # and its exit status passed back
    typed += run_shell("zsh", [LOAD["zsh"], "docpilot milestone 'Site builds'", "ls site > /dev/null"], env, cwd=str(work))[0]
    typed += run_shell("fish", [LOAD["fish"], "echo published", "docpilot stop"], env, cwd=str(work))[0]
    assert "Move the blog" in typed  # stop names what it stopped

    out = home / "docs"
    out.mkdir()
    generated, _ = run_shell("bash", [LOAD["bash"]] + [f"docpilot generate -t {name} -o {out}/{name}.md" for name in BUILTIN],
                             env, cwd=str(work))
    assert generated.count("that was session") == len(BUILTIN)
    assert_quiet(generated.replace("docpilot: that was session", "that was session"))

    for name in BUILTIN:
        md = (out / f"{name}.md").read_text(encoding="utf-8")
        found = read(md)
        assert found["headings"][0][:2] == ("h1", "Move the blog")
        commands = {content.rstrip("\n"): info for info, content in found["fences"] if info != "text"}
        assert commands.get("true | false | true") == "bash", (name, commands)
        assert commands.get(FAILING) in ("bash", "sh"), (name, commands)
        assert commands.get("ls site > /dev/null") == "zsh", (name, commands)
        assert commands.get("echo published") == "fish", (name, commands)
        assert not any(text.startswith("docpilot ") for text in commands), "docpilot's own lines are not commands"
        assert "A stage failed (pipeline statuses 0 1 0, stage 2 failed)" in found["paragraphs"], name
        assert "Failed (exit code 3)" in found["paragraphs"], name
        assert str(home) not in md, f"{name}: paths are relative to where the session started"
        if name == "minimal":
            continue
        outputs = [content for info, content in found["fences"] if info == "text"]
        assert any("building 12 pages" in o and "error: theme not found" in o for o in outputs), (name, outputs)
        assert any("bash, zsh and fish" in p for p in found["paragraphs"]), name
        assert "In ./site:" in found["paragraphs"], name
        if name in ("comprehensive", "github"):
            anchors = {anchor for _, _, anchor in found["headings"]}
            assert all(link[1:] in anchors for link in found["links"]), name
            assert [h for tag, h, _ in found["headings"] if tag == "h2"][3] == "Site builds"
