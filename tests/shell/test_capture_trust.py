"""Capture a person can trust, walked in real interactive bash, zsh and fish on a pty: every
command once, in the session it was typed for, stamped with when it ran, whatever the daemon does
meanwhile (slow, stopped with SIGSTOP, restarted, another session started)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from docpilotd.domain import timestamps

from ..reliability.kill9 import DaemonProcess, request
from .ptyshell import run_shell
from .test_hooks import LOAD, SHELLS, assert_quiet, commands_of, daemon, home, shell_env, start_session, wait_for

__all__ = ["daemon", "home"]  # fixtures, imported for pytest

MULTILINE = {
    "bash": ["for f in one two; do", 'echo "item $f"', "done"],
    "zsh": ["for f in one two; do", 'echo "item $f"', "done"],
    "fish": ["for f in one two", 'echo "item $f"', "end"],
}


def texts(daemon: DaemonProcess, session: str) -> list[str]:
    return [c["command"] for c in commands_of(daemon, session)]


@pytest.mark.parametrize("shell", SHELLS)
def test_commands_typed_right_before_stop_are_all_in(shell: str, home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    lines = [LOAD[shell], "echo first", "sleep 0.5", "echo make-deploy", "docpilot stop"]
    output, _ = run_shell(shell, lines, shell_env(home), cwd=str(home))
    assert_quiet_except_stop(output)
    # No waiting: `stop` read the spool before it stopped the session.
    shown = request(daemon.socket_path, {"op": "show", "session": session})["result"]
    assert shown["state"] == "Stopped"
    assert [c["command"] for c in shown["commands"]] == ["echo first", "sleep 0.5", "echo make-deploy"]
    # The final snapshot was on disk when stop answered: what DocPilot would read now.
    on_disk = json.loads((home / "data" / "sessions" / f"{session}.json").read_text())
    assert on_disk["state"] == "Stopped" and len(on_disk["commands"]) == 3


def assert_quiet_except_stop(output: str) -> None:
    # `docpilot stop` prints the session's line; nothing else may appear.
    assert "Traceback" not in output and "command not found" not in output and "__docpilot" not in output


@pytest.mark.parametrize("shell", SHELLS)
def test_commands_typed_in_a_then_start_b_at_once_all_land_in_a(shell: str, home: Path, daemon: DaemonProcess) -> None:
    first = start_session(daemon, "A")
    burst = [f"echo in-a-{i}" for i in range(40)]
    output, _ = run_shell(shell, [LOAD[shell], *burst, 'docpilot start "B"', "echo in-b"], shell_env(home), cwd=str(home))
    assert "Traceback" not in output
    sessions = request(daemon.socket_path, {"op": "sessions"})["result"]
    second = next(s["id"] for s in sessions if s["description"] == "B")
    assert [c["command"] for c in wait_for(daemon, first, 40)] == burst
    assert [c["command"] for c in wait_for(daemon, second, 1)] == ["echo in-b"]
    time.sleep(0.3)
    assert texts(daemon, first) == burst and texts(daemon, second) == ["echo in-b"]


@pytest.mark.parametrize("shell", SHELLS)
def test_sigstop_while_a_is_typed_and_b_started_keeps_everything_in_a(shell: str, home: Path, daemon: DaemonProcess) -> None:
    first = start_session(daemon, "A")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        typed = [f"echo stalled-{i}" for i in range(10)]
        output, _ = run_shell(shell, [LOAD[shell], *typed], shell_env(home), cwd=str(home))
        assert_quiet(output)
        ran_until = time.time_ns()
        started: dict[str, str] = {}
        starter = threading.Thread(
            target=lambda: started.update(request(daemon.socket_path, {"op": "start", "description": "B"}, timeout=30)["result"])
        )
        starter.start()
        time.sleep(1.0)  # `start B` waits on the stopped daemon, in front of the spooled lines
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    starter.join(30)
    recorded = wait_for(daemon, first, 10)
    assert [c["command"] for c in recorded] == typed
    assert texts(daemon, started["id"]) == []
    # Stamped when they ran, not when the daemon got to them (fish: to within the boot clock's 10 ms).
    slack = 10_000_000 if shell == "fish" else 0
    assert all(timestamps.parse_ns(c["timestamp"]) <= ran_until + slack for c in recorded)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_restart_with_another_session_current_records_nothing_twice(shell: str, home: Path, daemon: DaemonProcess) -> None:
    first = start_session(daemon, "A")
    typed = [f"echo before-restart-{i}" for i in range(5)]
    output, _ = run_shell(shell, [LOAD[shell], *typed], shell_env(home), cwd=str(home))
    assert_quiet(output)
    assert [c["command"] for c in wait_for(daemon, first, 5)] == typed
    second = start_session(daemon, "B")  # now current; the spool files are still there (idle < 1 min)
    assert any(p.name.endswith(".jsonl") for p in (home / "data" / "spool").iterdir())
    daemon.terminate()
    daemon.start()
    time.sleep(0.5)
    assert texts(daemon, first) == typed
    assert texts(daemon, second) == []


@pytest.mark.parametrize("shell", SHELLS)
def test_a_joined_shell_whose_session_stops_says_so_once_and_follows_the_current_one(
    shell: str, home: Path, daemon: DaemonProcess
) -> None:
    joined = start_session(daemon, "joined")
    current = start_session(daemon, "current")
    lines = [
        LOAD[shell], f"docpilot join {joined}", "echo in-joined", f"docpilot stop --session {joined}",
        "echo after-stop-1", "echo after-stop-2", 'docpilot start "third"', "echo in-third",
    ]
    output, _ = run_shell(shell, lines, shell_env(home), cwd=str(home))
    assert "Traceback" not in output
    assert output.count(f"session {joined} has ended") == 1, output[-3000:]
    sessions = request(daemon.socket_path, {"op": "sessions"})["result"]
    third = next(s["id"] for s in sessions if s["description"] == "third")
    assert texts(daemon, joined) == ["echo in-joined"]
    assert [c["command"] for c in wait_for(daemon, current, 2)] == ["echo after-stop-1", "echo after-stop-2"]
    assert [c["command"] for c in wait_for(daemon, third, 1)] == ["echo in-third"]


@pytest.mark.parametrize("shell", SHELLS)
def test_start_in_a_joined_shell_moves_the_shell_to_the_new_session(shell: str, home: Path, daemon: DaemonProcess) -> None:
    old = start_session(daemon, "old")
    other = start_session(daemon, "other")
    lines = [LOAD[shell], f"docpilot join {old}", "echo in-old", 'docpilot start "new"', "echo in-new"]
    output, _ = run_shell(shell, lines, shell_env(home), cwd=str(home))
    assert "Traceback" not in output
    sessions = request(daemon.socket_path, {"op": "sessions"})["result"]
    new = next(s["id"] for s in sessions if s["description"] == "new")
    assert [c["command"] for c in wait_for(daemon, old, 1)] == ["echo in-old"]
    assert [c["command"] for c in wait_for(daemon, new, 1)] == ["echo in-new"]
    assert texts(daemon, other) == []


@pytest.mark.parametrize("shell", SHELLS)
def test_a_multi_line_command_keeps_its_lines(shell: str, home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    output, _ = run_shell(shell, [LOAD[shell], *MULTILINE[shell], "true"], shell_env(home), cwd=str(home))
    assert_quiet(output)
    assert [c["command"] for c in wait_for(daemon, session, 2)] == ["\n".join(MULTILINE[shell]), "true"]


@pytest.mark.parametrize("shell", SHELLS)
def test_commands_and_notes_keep_the_order_they_happened_in(shell: str, home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    lines = [LOAD[shell], "echo one", "sleep 0.3", 'docpilot note "after the sleep"', "echo two"]
    output, _ = run_shell(shell, lines, shell_env(home), cwd=str(home))
    assert "Traceback" not in output
    shown = request(daemon.socket_path, {"op": "show", "session": session})["result"]
    items = [(c["timestamp"], c["command"]) for c in shown["commands"]] + [(a["timestamp"], a["text"]) for a in shown["annotations"]]
    ordered = [text for _, text in sorted(items, key=lambda item: timestamps.parse_ns(item[0]))]
    # The note is not recorded as a command as well (it is the tool's own command line).
    assert ordered == ["echo one", "sleep 0.3", "after the sleep", "echo two"]


def test_own_command_lines_are_recorded_when_configured(home: Path) -> None:
    (home / "data").mkdir()
    (home / "data" / "docpilotd.toml").write_text("record_own_commands = true\n")
    process = DaemonProcess(home / "data")
    process.start()
    try:
        session = start_session(process)
        lines = [LOAD["bash"], 'docpilot note "hello"', "cat ~/.docpilot-notes 2>/dev/null; true"]
        run_shell("bash", lines, shell_env(home), cwd=str(home))
        assert [c["command"] for c in wait_for(process, session, 2)] == [
            'docpilot note "hello"', "cat ~/.docpilot-notes 2>/dev/null; true",
        ]
    finally:
        process.terminate()


def _spool_line(session: str, command: str, counter: int, instance: str = "777-4242") -> bytes:
    record = {
        "op": "record", "shell": "bash", "session": session, "command": command, "cwd": "/tmp", "exit_code": 0,
        "started_us": time.time_ns() // 1000, "duration_ms": 1, "capture_id": f"{instance}:{counter}",
    }
    return json.dumps(record).encode() + b"\n"


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_torn_spool_tail_goes_to_quarantine_redacted_and_the_file_is_retired(home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    secret = b"hunter2-torn-tail-secret"
    spool = home / "data" / "spool"
    path = spool / "777-4242.jsonl"
    torn = b'{"op":"record","shell":"bash","session":"' + session.encode() + b'","command":"export PASSWORD=' + secret
    path.write_bytes(_spool_line(session, "echo complete", 1) + torn)
    os.chmod(path, 0o600)
    old = time.time() - 120  # idle for two minutes: no shell will finish that line
    os.utime(path, (old, old))
    assert [c["command"] for c in wait_for(daemon, session, 1)] == ["echo complete"]
    deadline = time.monotonic() + 15
    while path.exists() or list(spool.glob("*.claimed")):
        assert time.monotonic() < deadline, "the spool file with a torn tail was never retired"
        time.sleep(0.2)
    assert not _files_holding(home / "data", secret), "the raw secret stayed on disk"
    tails = list((home / "data" / "quarantine").glob("*torn-tail"))
    assert len(tails) == 1 and b"export PASSWORD=" in tails[0].read_bytes()
    assert texts(daemon, session) == ["echo complete"]


def test_a_secret_line_recorded_before_a_crash_is_retired_soon_after_the_restart(home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    spool = home / "data" / "spool"
    line = _spool_line(session, "export API_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789", 1)
    path = spool / "777-4242.jsonl"
    path.write_bytes(line)
    assert len(wait_for(daemon, session, 1)) == 1
    deadline = time.monotonic() + 10
    while _files_holding(spool, b"ghp_abcdef"):
        assert time.monotonic() < deadline, "a file holding a secret stayed"
        time.sleep(0.1)
    # As if the daemon had been killed after recording the line and before claiming its file.
    daemon.kill9()
    path.write_bytes(line)
    daemon.start()
    deadline = time.monotonic() + 10
    while _files_holding(spool, b"ghp_abcdef"):
        assert time.monotonic() < deadline, "after the restart the raw secret stayed (until the idle minute)"
        time.sleep(0.1)
    recorded = texts(daemon, session)
    assert len(recorded) == 1 and "ghp_abcdef" not in recorded[0]


@pytest.mark.parametrize("shell", [s for s in ("bash", "zsh") if s in SHELLS])
def test_kill9_at_random_moments_while_another_session_starts_keeps_each_command_once_in_its_session(
    shell: str, home: Path, daemon: DaemonProcess
) -> None:
    import random

    first = start_session(daemon, "A")
    burst = [f"echo chaos-{i}" for i in range(240)]
    rng = random.Random(1234)
    kills = sorted(rng.sample(range(20, 220), 3))
    second: list[str] = []

    def chaos(written: int) -> None:
        if kills and written >= kills[0]:
            kills.pop(0)
            daemon.kill9()
            daemon.start()
            if not second:  # from here on the shell's commands belong to B
                second.append(start_session(daemon, "B"))

    output, _ = run_shell(shell, [LOAD[shell], *burst], shell_env(home), cwd=str(home), on_progress=chaos)
    assert_quiet(output)
    assert not kills and second
    deadline = time.monotonic() + 20
    while len(texts(daemon, first)) + len(texts(daemon, second[0])) < len(burst) and time.monotonic() < deadline:
        time.sleep(0.1)
    in_a, in_b = texts(daemon, first), texts(daemon, second[0])
    # Each command once; those that ran before B started in A, the rest in B, in order.
    assert in_a + in_b == burst
    assert in_a and in_b
