"""The shell hooks in real interactive bash, zsh and fish, loaded the way the README says."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..reliability.kill9 import DaemonProcess, request
from .ptyshell import available, run_shell

SHELLS = [s for s in ("bash", "zsh", "fish") if available(s)]
LOAD = {
    "bash": 'eval "$(docpilot init bash)"',
    "zsh": 'eval "$(docpilot init zsh)"',
    "fish": "docpilot init fish | source",
}
NOISE = ("command not found", "Traceback", "docpilot:", "__docpilot", "parse error", "syntax error")


@pytest.fixture
def home() -> Iterator[Path]:
    # Short path: Unix socket paths are limited to about 100 bytes.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dph-", dir="/tmp") as tmp:
        yield Path(tmp)


@pytest.fixture
def daemon(home: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(home / "data")
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.terminate()


def shell_env(home: Path, **extra: str) -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "DOCPILOT_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "xdg"),
        "XDG_DATA_HOME": str(home / "xdg-data"),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HISTFILE": str(home / "history"),
        "SHELL": "/bin/sh",
    }
    env.update(extra)
    return env


def start_session(daemon: DaemonProcess, description: str = "hooks") -> str:
    return str(request(daemon.socket_path, {"op": "start", "description": description})["result"]["id"])


def commands_of(daemon: DaemonProcess, session: str) -> list[dict[str, Any]]:
    return list(request(daemon.socket_path, {"op": "show", "session": session})["result"]["commands"])


def wait_for(daemon: DaemonProcess, session: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = commands_of(daemon, session)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def assert_quiet(output: str) -> None:
    for word in NOISE:
        assert word not in output, f"the shell showed {word!r}:\n{output[-3000:]}"


@pytest.mark.parametrize("shell", SHELLS)
def test_exit_codes_cwd_text_and_pipes_are_recorded(shell: str, home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    work = home / "wörk dir"
    work.mkdir()
    lines = [
        LOAD[shell],
        f"cd '{work}'",
        "true",
        "false",
        "ls /definitely-missing-file",
        "sh -c 'exit 7'",
        "echo 'ünïcödé ✓' | tr a-z A-Z | cat",
        'echo "quotes \\" and \\\\ backslash"',
        " echo not-recorded-because-of-the-leading-space",
        "cd /",
    ]
    output, _ = run_shell(shell, lines, shell_env(home), cwd=str(home))
    assert_quiet(output)
    recorded = wait_for(daemon, session, 8)
    texts = [c["command"] for c in recorded]
    assert texts == [
        f"cd '{work}'", "true", "false", "ls /definitely-missing-file", "sh -c 'exit 7'",
        "echo 'ünïcödé ✓' | tr a-z A-Z | cat", 'echo "quotes \\" and \\\\ backslash"', "cd /",
    ]
    by_text = {c["command"]: c for c in recorded}
    assert by_text["true"]["exit_code"] == 0
    assert by_text["false"]["exit_code"] == 1
    assert by_text["ls /definitely-missing-file"]["exit_code"] == 2
    assert by_text["sh -c 'exit 7'"]["exit_code"] == 7
    assert by_text["true"]["working_directory"] == str(work)
    assert by_text[f"cd '{work}'"]["working_directory"] == str(home)
    assert by_text["cd /"]["working_directory"] == str(work)
    assert by_text["echo 'ünïcödé ✓' | tr a-z A-Z | cat"]["pipestatus"] == [0, 0, 0]
    assert all(c["shell"] == shell for c in recorded)
    assert all(c["duration_ms"] is not None and c["duration_ms"] >= 0 for c in recorded)
    stamps = [c["timestamp"] for c in recorded]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("shell", [s for s in SHELLS if s != "fish"])
def test_a_multi_line_command_is_kept_whole(shell: str, home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    output, _ = run_shell(shell, [LOAD[shell], "echo 'first", "second'", "true"], shell_env(home), cwd=str(home))
    assert_quiet(output)
    recorded = wait_for(daemon, session, 2)
    assert [c["command"] for c in recorded] == ["echo 'first\nsecond'", "true"]


@pytest.mark.parametrize("shell", SHELLS)
def test_paused_and_stopped_sessions_record_nothing_and_no_daemon_stays_quiet(
    shell: str, home: Path, daemon: DaemonProcess
) -> None:
    session = start_session(daemon)
    sock = daemon.socket_path
    env = shell_env(home)
    run_shell(shell, [LOAD[shell], "echo before-pause"], env, cwd=str(home))
    assert [c["command"] for c in wait_for(daemon, session, 1)] == ["echo before-pause"]
    request(sock, {"op": "pause", "session": session})
    output, _ = run_shell(shell, [LOAD[shell], "echo while-paused"], env, cwd=str(home))
    request(sock, {"op": "resume", "session": session})
    request(sock, {"op": "stop", "session": session})
    output2, _ = run_shell(shell, [LOAD[shell], "echo after-stop"], env, cwd=str(home))
    time.sleep(0.5)
    assert [c["command"] for c in commands_of(daemon, session)] == ["echo before-pause"]
    # After stop nothing more is even written to the spool.
    spooled = [p for p in (home / "data" / "spool").iterdir() if p.is_file() and "jsonl" in p.name]
    assert not any(b"after-stop" in p.read_bytes() for p in spooled)
    daemon.terminate()
    output3, _ = run_shell(shell, [LOAD[shell], "echo no-daemon", "docpilot status || true"], env, cwd=str(home))
    for text in (output, output2):
        assert_quiet(text)
    assert "Traceback" not in output3


@pytest.mark.parametrize("shell", SHELLS)
def test_loading_twice_is_harmless_and_the_users_hooks_survive(shell: str, home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    marker = home / "user-hook-ran"
    user_hook = {
        "bash": f"PROMPT_COMMAND='touch {marker}'",
        "zsh": f"my_precmd() {{ touch {marker} }}; precmd_functions+=(my_precmd)",
        "fish": f"function my_postexec --on-event fish_postexec; touch {marker}; end",
    }[shell]
    output, _ = run_shell(shell, [user_hook, LOAD[shell], LOAD[shell], "echo once"], shell_env(home), cwd=str(home))
    assert_quiet(output)
    # The second load is itself a command the first hook records; "echo once" is recorded once.
    assert [c["command"] for c in wait_for(daemon, session, 2)] == [LOAD[shell], "echo once"]
    time.sleep(0.3)
    assert [c["command"] for c in commands_of(daemon, session)] == [LOAD[shell], "echo once"]
    assert marker.exists(), "the user's own prompt hook no longer runs"


@pytest.mark.parametrize("shell", SHELLS)
def test_join_and_leave_choose_this_shells_session(shell: str, home: Path, daemon: DaemonProcess) -> None:
    first = start_session(daemon, "first")
    second = start_session(daemon, "second")  # the most recent: where commands go by default
    lines = [LOAD[shell], "echo to-second", f"docpilot join {first}", "echo to-first", "docpilot leave", "echo to-second-again"]
    output, _ = run_shell(shell, lines, shell_env(home), cwd=str(home))
    assert_quiet(output)
    # `docpilot join` and `leave` themselves are the tool's own command lines: not recorded.
    assert [c["command"] for c in wait_for(daemon, first, 1)] == ["echo to-first"]
    to_second = [c["command"] for c in wait_for(daemon, second, 2)]
    assert [t for t in to_second if t.startswith("echo")] == ["echo to-second", "echo to-second-again"]


@pytest.mark.parametrize("shell", [s for s in ("bash", "zsh") if s in SHELLS])
def test_a_burst_of_300_commands_is_recorded_in_order(shell: str, home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    burst = [f"echo burst-{i}" for i in range(300)]
    output, _ = run_shell(shell, [LOAD[shell], *burst], shell_env(home), cwd=str(home))
    assert_quiet(output)
    recorded = [c["command"] for c in wait_for(daemon, session, 300)]
    assert recorded == burst


@pytest.mark.parametrize("shell", [s for s in ("bash", "zsh") if s in SHELLS])
def test_daemon_killed_mid_burst_then_started_again_records_every_command_once(
    shell: str, home: Path, daemon: DaemonProcess
) -> None:
    session = start_session(daemon)
    burst = [f"echo outage-{i}" for i in range(300)]
    killed: list[bool] = []

    def kill_midway(written: int) -> None:
        if written >= 120 and not killed:
            daemon.kill9()
            killed.append(True)

    output, _ = run_shell(shell, [LOAD[shell], *burst], shell_env(home), cwd=str(home), on_progress=kill_midway)
    assert killed, "the daemon was never stopped"
    assert_quiet(output)
    daemon.start()  # ingests what the shell spooled while it was down, before serving
    recorded = [c["command"] for c in wait_for(daemon, session, 300)]
    assert recorded == burst


def test_commands_typed_while_the_daemon_is_down_are_ingested_at_start(home: Path, daemon: DaemonProcess) -> None:
    shell = SHELLS[0]
    session = start_session(daemon)
    daemon.terminate()
    output, _ = run_shell(shell, [LOAD[shell], "echo while-down-1", "echo while-down-2"], shell_env(home), cwd=str(home))
    assert_quiet(output)
    spool = home / "data" / "spool"
    files = [p for p in spool.iterdir() if p.name.endswith(".jsonl")]
    assert files and all((p.stat().st_mode & 0o777) == 0o600 for p in files)
    daemon.start()
    assert [c["command"] for c in wait_for(daemon, session, 2)] == ["echo while-down-1", "echo while-down-2"]
    daemon.terminate()
    daemon.start()
    time.sleep(0.3)
    assert len(commands_of(daemon, session)) == 2, "ingested twice after a restart"


def test_init_writes_a_hook_for_each_shell_and_rejects_others(home: Path) -> None:
    import subprocess

    env = shell_env(home)
    for shell in ("bash", "zsh", "fish"):
        done = subprocess.run([sys.executable, "-m", "docpilotd.client.cli", "init", shell], env=env, capture_output=True, text=True)
        hook = home / "xdg-data" / "docpilot" / f"docpilot.{shell}"
        assert done.returncode == 0 and done.stdout.strip() in (f"source {hook}", f"source '{hook}'"), done.stdout
        assert str(home / "data" / "spool") in hook.read_text()
    bad = subprocess.run([sys.executable, "-m", "docpilotd.client.cli", "init", "tcsh"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


if not SHELLS:  # pragma: no cover
    pytest.skip("no shell available", allow_module_level=True)

_ = (shutil, signal)
