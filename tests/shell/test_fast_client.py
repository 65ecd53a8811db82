"""A hooked shell's `docpilot`: the fast start (`PYTHON -I -S .../entry.py`, without site and pip's
launcher), and what must keep working around it: `command docpilot`, `which docpilot`, the
completion, a package removed or a virtualenv moved (the `docpilot` on PATH then), and the hook
file writing itself again when the entry it names is gone (a reinstall elsewhere)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from docpilotd.client import entry

from ..reliability.kill9 import DaemonProcess, request
from .ptyshell import available, run_shell
from .test_hooks import assert_quiet, daemon, home, shell_env, start_session
from .test_init_files import init

_ = (daemon, home)  # fixtures
ALL = ("bash", "zsh", "fish")


def need(shell: str) -> None:
    if not available(shell):
        pytest.skip(f"{shell} is not installed")


def notes_of(daemon: DaemonProcess, session: str) -> list[str]:
    return [a["text"] for a in request(daemon.socket_path, {"op": "show", "session": session})["result"]["annotations"]]


def spy_on_path(home: Path, env: dict[str, str]) -> dict[str, str]:
    """A `docpilot` first on PATH that only says it was called: whatever reaches it did not take
    the fast start."""
    spy = home / "spy"
    spy.mkdir()
    (spy / "docpilot").write_text('#!/bin/sh\necho "spy-called $*"\n')
    (spy / "docpilot").chmod(0o755)
    return dict(env, PATH=f"{spy}:{env['PATH']}")


@pytest.mark.parametrize("shell", ALL)
def test_init_names_this_interpreter_and_this_packages_entry(shell: str, home: Path) -> None:
    env = shell_env(home)
    done = init(shell, env)
    assert done.returncode == 0, done.stderr
    text = Path(done.stdout.strip().split(" ", 1)[1].strip("'")).read_text()
    assert sys.executable in text and entry.__file__ in text


@pytest.mark.parametrize("shell", ALL)
def test_the_function_starts_python_itself_and_falls_back_to_the_path(shell: str, home: Path, daemon: DaemonProcess) -> None:
    need(shell)
    env = shell_env(home)
    line = init(shell, env).stdout.strip()
    hook = Path(line.split(" ", 1)[1].strip("'"))
    # The interpreter as a virtualenv's link to it, which the shell then removes (the virtualenv
    # moved or deleted): the `docpilot` on PATH from then on, never a broken shell.
    venv = home / "venv"
    venv.mkdir()
    (venv / "python3").symlink_to(sys.executable)
    hook.write_text(hook.read_text().replace(sys.executable, str(venv / "python3")))
    session = start_session(daemon)
    kind = {"bash": "type -t docpilot", "zsh": "whence -w docpilot", "fish": "type -t docpilot"}[shell]
    lines = [
        line,
        "docpilot note by-the-fast-start",
        "command docpilot note by-command",  # the console script: here, the spy
        f"echo kind=$({kind})" if shell != "fish" else f"echo kind=({kind})",
        f"rm {venv / 'python3'}",
        "docpilot note after-the-move",
    ]
    if shutil.which("which"):  # zsh's `which` is a builtin that shows the function, as before
        lines.append("whence -p docpilot" if shell == "zsh" else "which docpilot")
    out, _ = run_shell(shell, lines, spy_on_path(home, env))
    assert_quiet(out.replace("docpilot: function", ""))
    assert notes_of(daemon, session) == ["by-the-fast-start"], out
    assert "spy-called note by-command" in out and "spy-called note after-the-move" in out, out
    assert "spy-called note by-the-fast-start" not in out
    assert ("kind=function" if shell != "zsh" else "kind=docpilot: function") in out, out
    if shutil.which("which"):
        assert str(home / "spy" / "docpilot") in out


def test_bash_still_completes_the_function(home: Path) -> None:
    need("bash")
    env = shell_env(home)
    out, _ = run_shell("bash", [init("bash", env).stdout.strip(), "complete -p docpilot"], env)
    assert "-F __docpilot_complete docpilot" in out, out


@pytest.mark.parametrize("shell", ALL)
def test_a_hook_whose_entry_is_gone_writes_itself_again(shell: str, home: Path) -> None:
    need(shell)
    env = shell_env(home)
    hook = Path(init(shell, env).stdout.strip().split(" ", 1)[1].strip("'"))
    hook.write_text(hook.read_text().replace(entry.__file__, "/gone/docpilotd/client/entry.py"))
    out, _ = run_shell(shell, [f"source {hook}", "echo refreshed=$__docpilot_refreshed"], env)
    assert "refreshed=1" in out, out
    assert entry.__file__ in hook.read_text() and "/gone/" not in hook.read_text()
