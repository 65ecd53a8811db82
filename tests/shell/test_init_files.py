"""`docpilot init SHELL` as the README says it: the hook file and completions it writes, the one
`source` line in the rc file (no Python when a shell starts), the file keeping itself current, and
completion of verbs, options and choices in real bash, zsh and fish on a pty."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ..reliability.kill9 import DaemonProcess
from .ptyshell import available, run_shell
from .test_hooks import assert_quiet, daemon, home, shell_env, start_session, wait_for

_ = (daemon, home)  # fixtures
ALL = ("bash", "zsh", "fish")


def init(shell: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docpilotd.client.entry", "init", shell, *extra], env=env,
                          capture_output=True, text=True, timeout=60)


def need(shell: str) -> None:
    if not available(shell):
        pytest.skip(f"{shell} is not installed")


@pytest.mark.parametrize("shell", ALL)
def test_init_writes_the_hook_and_completion_0644_and_prints_one_source_line(shell: str, home: Path) -> None:
    env = shell_env(home)
    first = init(shell, env)
    assert first.returncode == 0, first.stderr
    folder = home / "xdg-data" / "docpilot"
    hook = folder / f"docpilot.{shell}"
    assert first.stdout.strip().replace("'", "") == f"source {hook}"
    completion = folder / "completions" / {"bash": "docpilot.bash", "zsh": "_docpilot", "fish": "docpilot.fish"}[shell]
    for path in (hook, completion):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert str(home / "data" / "spool" / "active") in hook.read_text()
    assert "start" in completion.read_text() and "generate" in completion.read_text()
    again = init(shell, env)  # the old rc line runs init in every shell: it must stay harmless
    assert again.returncode == 0 and again.stdout == first.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["completions", f"docpilot.{shell}"]  # no temporary files left


def test_init_where_nothing_can_be_written_prints_the_hook_itself(home: Path) -> None:
    (home / "not-a-dir").write_text("")
    done = init("bash", shell_env(home, XDG_DATA_HOME=str(home / "not-a-dir")))
    assert done.returncode == 0 and "__docpilot_precmd" in done.stdout
    assert "could not write the hook file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("shell", ALL)
def test_the_source_line_records_commands_without_starting_python(shell: str, home: Path, daemon: DaemonProcess) -> None:
    need(shell)
    env = shell_env(home)
    line = init(shell, env).stdout.strip()
    session = start_session(daemon)
    # A `docpilot` first on PATH that notes each call: the start-up must not call it (no Python).
    spy = home / "spy"
    spy.mkdir()
    (spy / "docpilot").write_text(f"#!/bin/sh\necho called >> {home}/calls\n")
    (spy / "docpilot").chmod(0o755)
    watched = dict(env, PATH=f"{spy}:{env['PATH']}")
    out, _ = run_shell(shell, [line, "echo sourced-$((1+1))" if shell != "fish" else "echo sourced-(math 1+1)", "true"], watched)
    assert_quiet(out)
    assert not (home / "calls").exists(), "the shell's start-up ran docpilot"
    assert any(c["command"].startswith("echo sourced-") for c in wait_for(daemon, session, 1)), out


@pytest.mark.parametrize("shell", ALL)
def test_a_stale_hook_file_writes_itself_again_once(shell: str, home: Path) -> None:
    need(shell)
    env = shell_env(home)
    hook = Path(init(shell, env).stdout.strip().split(" ", 1)[1].strip("'"))
    os.utime(hook, (946684800, 946684800))  # 2000: older than the package it was made from (an upgrade)
    probe = "echo refreshed=$__docpilot_refreshed"
    out, _ = run_shell(shell, [f"source {hook}", probe], env)
    assert "refreshed=1" in out, out
    assert hook.stat().st_mtime > 946684800 + 1
    # DOCPILOT_HOME changed since init: the file follows it.
    moved = shell_env(home, DOCPILOT_HOME=str(home / "other"))
    out, _ = run_shell(shell, [f"source {hook}", probe], moved)
    assert "refreshed=1" in out and str(home / "other" / "spool") in hook.read_text()
    out, _ = run_shell(shell, [f"source {hook}", probe], moved)  # current now: nothing runs
    assert "refreshed=1" not in out


def test_bash_completes_verbs_options_and_template_names(home: Path) -> None:
    need("bash")
    env = shell_env(home)
    line = init("bash", env).stdout.strip()
    out, _ = run_shell("bash", [
        line, "complete -p docpilot",
        "COMP_WORDS=(docpilot sta); COMP_CWORD=1; COMP_LINE='docpilot sta'; COMP_POINT=12; "
        "__docpilot_complete docpilot sta docpilot; echo \"verbs:${COMPREPLY[*]}.\"",
        "COMP_WORDS=(docpilot generate --tem); COMP_CWORD=2; COMP_LINE='docpilot generate --tem'; COMP_POINT=23; "
        "_shtab_docpilot docpilot --tem generate; echo \"options:${COMPREPLY[*]}.\"",
        "COMP_WORDS=(docpilot generate -t ''); COMP_CWORD=3; COMP_LINE='docpilot generate -t '; COMP_POINT=21; "
        "_shtab_docpilot docpilot '' -t; echo \"templates:${COMPREPLY[*]}.\"",
    ], env)
    assert "complete -o bashdefault -F __docpilot_complete docpilot" in out, out  # registered, not yet read
    verbs = printed(out, "verbs")
    assert {"start", "status", "stats"} <= set(verbs) and all(v.startswith("sta") for v in verbs), out
    assert "--template" in printed(out, "options"), out
    assert {"standard", "minimal", "comprehensive", "github"} <= set(printed(out, "templates")), out


def printed(out: str, label: str) -> list[str]:
    """The words the shell printed after `label:` (not the typed line that asks for them)."""
    for line in out.splitlines():
        if line.startswith(f"{label}:") and "$" not in line:
            return line.removeprefix(f"{label}:").rstrip(".\r").split()
    raise AssertionError(f"no {label}: line in {out}")


@pytest.mark.parametrize("compinit_first", [True, False])
def test_zsh_registers_the_completion_with_compinit_before_or_after(home: Path, compinit_first: bool) -> None:
    need("zsh")
    env = shell_env(home)
    line = init("zsh", env).stdout.strip()
    compinit = f"autoload -Uz compinit; compinit -u -d {home}/zcompdump"
    lines = [compinit, line] if compinit_first else [line, compinit]
    out, _ = run_shell("zsh", [*lines, "echo comp=$_comps[docpilot].", "autoload +X _docpilot; echo def=$+functions[_docpilot]."], env)
    assert "comp=_docpilot." in out and "def=1." in out, out


def test_fish_completes_verbs_options_and_template_names(home: Path) -> None:
    need("fish")
    env = shell_env(home)
    line = init("fish", env).stdout.strip()
    out, _ = run_shell("fish", [line, "complete -C 'docpilot sta' | string join ' '",
                                "complete -C 'docpilot generate -t ' | string join ' '"], env)
    assert "start\t" in out and "status\t" in out and "stats\t" in out, out
    for name in ("standard", "minimal", "comprehensive", "github"):
        assert f"{name}\t" in out, out
