"""`docpilot run -- CMD` typed in a real hooked bash, zsh and fish on a pty, with a real daemon: the
session has CMD once (recorded by run, with its output, exit status and the shell it was typed in),
not the `docpilot run` line the hook spooled as well, whatever `record_own_commands` says; other
docpilot lines keep following that setting.

And run stays out of the way at the terminal: lines typed ahead while it runs reach the shell
after it, Ctrl-C ends the command (recorded with 130) and a loop around it, Ctrl-Z stops the job
and `fg` continues it, as without docpilot.
"""

from __future__ import annotations

import os
import pty
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..reliability.kill9 import DaemonProcess
from .ptyshell import COMMANDS, _controlling_terminal
from .test_hooks import LOAD, SHELLS, assert_quiet, home, shell_env, start_session, wait_for

__all__ = ["home"]  # a fixture, imported for pytest

READY = b"[ready]> "
PROMPT = {  # typed split by quotes, so that the echo of the line is not the prompt itself
    "bash": "PS1='[rea''dy]> '",
    "zsh": "PS1='[rea''dy]> '",
    "fish": "function fish_prompt; echo -n '[rea''dy]> '; end",
}
FAILING = "sh -c 'echo out; echo err >&2; exit 3'"
STATUS = {"bash": "echo status=$?", "zsh": "echo status=$?", "fish": "echo status=$status"}


class Terminal:
    """An interactive shell on a pty, one line at a time: `type` waits for the next prompt."""

    def __init__(self, shell: str, env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(COMMANDS[shell], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(cwd),
                                     preexec_fn=_controlling_terminal, close_fds=True)
        os.close(slave)
        self.output = bytearray()

    def _read(self, timeout: float) -> bool:
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            return False
        self.output += chunk
        return bool(chunk)

    def send(self, data: bytes) -> int:
        """Type `data` as it is; where the output was before it."""
        start = len(self.output)
        os.write(self.master, data)
        return start

    def wait_for(self, needle: bytes, start: int = 0, timeout: float = 30.0) -> int:
        """Read until `needle` shows after `start`; where it ends."""
        deadline = time.monotonic() + timeout
        while (at := self.output.find(needle, start)) < 0:
            assert time.monotonic() < deadline, f"no {needle!r}:\n{self.text()[-3000:]}"
            assert self._read(0.05), f"the shell ended before {needle!r}:\n{self.text()[-3000:]}"
        return at + len(needle)

    def type(self, line: str, timeout: float = 60.0) -> None:
        """Type `line` and Enter, and wait for the prompt after its end of line (fish redraws the
        prompt at each key typed)."""
        start = len(self.output)
        os.write(self.master, line.encode() + b"\n")
        deadline = time.monotonic() + timeout
        while (end := self.output.find(b"\r\n", start)) < 0 or self.output.find(READY, end) < 0:
            assert time.monotonic() < deadline, f"no prompt after {line!r}:\n{self.text()[-3000:]}"
            assert self._read(0.05), f"the shell ended after {line!r}:\n{self.text()[-3000:]}"

    def exit(self, timeout: float = 30.0) -> None:
        os.write(self.master, b"exit\n")
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline and self._read(0.05):
            pass
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        os.close(self.master)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


@pytest.fixture(params=[False, True], ids=["own-lines-dropped", "own-lines-recorded"])
def daemon(request: pytest.FixtureRequest, home: Path) -> Iterator[tuple[DaemonProcess, bool]]:
    data = home / "data"
    data.mkdir()
    (data / "docpilotd.toml").write_text(f"record_own_commands = {'true' if request.param else 'false'}\n")
    process = DaemonProcess(data)
    process.start()
    try:
        yield process, request.param
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.terminate()


@pytest.mark.parametrize("shell", SHELLS)
def test_a_command_run_by_docpilot_run_is_recorded_once_with_its_output(
    shell: str, home: Path, daemon: tuple[DaemonProcess, bool]
) -> None:
    process, own_recorded = daemon
    terminal = Terminal(shell, shell_env(home), home)
    try:
        os.write(terminal.master, (LOAD[shell] + "\n").encode())
        terminal.type(PROMPT[shell])
        session = start_session(process)  # what comes from here on is recorded
        terminal.type(f"docpilot run -- {FAILING}")
        terminal.type(STATUS[shell])
        terminal.type('docpilot note "after the run"')
        terminal.type("true")
    finally:
        terminal.exit()
    shown = terminal.text()
    assert_quiet(shown.replace("docpilot run", "").replace("docpilot note", ""))
    assert "out\r\nerr\r\n" in shown or "err\r\nout\r\n" in shown, "the command's output on the terminal"
    assert "status=3" in shown, "its exit status is the shell's $?"
    expected = [FAILING, STATUS[shell], *(['docpilot note "after the run"'] if own_recorded else []), "true"]
    recorded = wait_for(process, session, len(expected))
    time.sleep(0.5)  # anything more would have come by now (the spool is read within ~20 ms)
    recorded = wait_for(process, session, len(expected) + 1, timeout=0.5)
    assert [c["command"] for c in recorded] == expected
    run = recorded[0]
    assert run["exit_code"] == 3 and run["output"] in ("out\nerr\n", "err\nout\n"), "stdout and stderr, each as it came"
    assert run["working_directory"] == str(home)
    assert run["shell"] == shell, "DOCPILOT_SHELL, exported by the hook (SHELL is /bin/sh here)"


# -- at the terminal, as without docpilot -------------------------------------------------------------

AFTER = {  # what the shell prints only when it runs the line: its echo does not hold "after-42"
    "bash": "echo after-$((6*7))",
    "zsh": "echo after-$((6*7))",
    "fish": "echo after-(math '6*7')",
}
LOOP = {
    "bash": "for i in 1 2; do docpilot run -- sleep 30; echo next-$i; done",
    "zsh": "for i in 1 2; do docpilot run -- sleep 30; echo next-$i; done",
    # fish goes on with a loop when a command in a function dies of Ctrl-C (the hook's `docpilot`
    # is one, as is any wrapper: `function w; command $argv; end`): `command` leaves it out.
    "fish": "for i in 1 2; command docpilot run -- sleep 30; echo next-$i; end",
}
STOPPED = {"bash": b"Stopped", "zsh": b"suspended", "fish": b""}  # fish says nothing of a job stopped in a function
SLOW_ARGV = ["sh", "-c", "echo started; sleep 2; echo finished"]
SLOW = shlex.join(SLOW_ARGV)


@pytest.fixture
def running(home: Path) -> Iterator[DaemonProcess]:
    """A daemon on the default configuration (this module's `daemon` is parametrized)."""
    process = DaemonProcess(home / "data")
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.terminate()


def _hooked(shell: str, home: Path, process: DaemonProcess) -> tuple[Terminal, str]:
    terminal = Terminal(shell, shell_env(home), home)
    os.write(terminal.master, (LOAD[shell] + "\n").encode())
    terminal.type(PROMPT[shell])
    return terminal, start_session(process)


def _processes(session: int) -> dict[int, tuple[str, list[str]]]:
    """The processes of the terminal's session (its shell's pid): pid -> (state, argv)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == session:
            found[int(entry.name)] = (fields[0], argv)
    return found


def _wait_for_process(terminal: Terminal, argv: list[str], timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        for pid, (_, found) in _processes(terminal.proc.pid).items():
            if found == argv:
                return pid
        assert time.monotonic() < deadline, f"{argv} never ran:\n{terminal.text()[-3000:]}"
        time.sleep(0.01)


def _settled(process: DaemonProcess, session: str, count: int) -> list[dict[str, Any]]:
    wait_for(process, session, count)
    time.sleep(0.5)  # anything more would have come by now (the spool is read within ~20 ms)
    return wait_for(process, session, count + 1, timeout=0.5)


@pytest.mark.parametrize("shell", SHELLS)
def test_lines_typed_while_run_runs_reach_the_shell_after_it(shell: str, home: Path, running: DaemonProcess) -> None:
    terminal, session = _hooked(shell, home, running)
    try:
        terminal.send(b"docpilot run -- sleep 1\n")
        _wait_for_process(terminal, ["sleep", "1"])
        terminal.send(f"{AFTER[shell]}\nexit\n".encode())  # typed ahead, while the command runs
        deadline = time.monotonic() + 30
        while terminal.proc.poll() is None and time.monotonic() < deadline and terminal._read(0.05):
            pass
        try:
            terminal.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the shell is still waiting:\n{terminal.text()[-3000:]}") from None
    finally:
        terminal.close()
    shown = terminal.text()
    assert "after-42" in shown, shown[-3000:]
    assert_quiet(shown.replace("docpilot run", ""))
    recorded = _settled(running, session, 2)
    assert [c["command"] for c in recorded] == ["sleep 1", AFTER[shell]]
    assert recorded[0]["exit_code"] == 0 and recorded[0]["shell"] == shell


@pytest.mark.parametrize("shell", SHELLS)
def test_ctrl_c_ends_the_command_it_is_recorded_with_130_and_a_loop_around_it_stops(
    shell: str, home: Path, running: DaemonProcess
) -> None:
    terminal, session = _hooked(shell, home, running)
    try:
        start = terminal.send(b"docpilot run -- sleep 30\n")
        _wait_for_process(terminal, ["sleep", "30"])
        terminal.send(b"\x03")
        terminal.wait_for(READY, terminal.wait_for(b"\r\n", start))
        terminal.type(STATUS[shell])
        start = terminal.send(LOOP[shell].encode() + b"\n")
        _wait_for_process(terminal, ["sleep", "30"])
        terminal.send(b"\x03")
        terminal.wait_for(READY, terminal.wait_for(b"\r\n", start))
        terminal.type("echo loop-done")
    finally:
        terminal.exit()
    shown = terminal.text()
    assert "status=130" in shown, shown[-3000:]
    assert "next-1" not in shown and "loop-done" in shown, f"the loop went on after Ctrl-C:\n{shown[-3000:]}"
    recorded = _settled(running, session, 5)
    assert [c["command"] for c in recorded] == ["sleep 30", STATUS[shell], "sleep 30", LOOP[shell], "echo loop-done"]
    assert recorded[0]["exit_code"] == 130 and recorded[2]["exit_code"] == 130


@pytest.mark.parametrize("shell", SHELLS)
def test_ctrl_z_stops_the_command_and_docpilot_and_fg_continues_both(shell: str, home: Path, running: DaemonProcess) -> None:
    terminal, session = _hooked(shell, home, running)
    try:
        start = terminal.send(f"docpilot run -- {SLOW}\n".encode())
        terminal.wait_for(b"started\r\n", start)
        sh = _wait_for_process(terminal, SLOW_ARGV)
        # Ctrl-Z once sleep runs: while sh is in vfork() it cannot stop (its child stopped before
        # exec holds it), with or without docpilot.
        _wait_for_process(terminal, ["sleep", "2"])
        terminal.send(b"\x1a")  # Ctrl-Z
        terminal.wait_for(READY, terminal.wait_for(STOPPED[shell], terminal.wait_for(b"^Z", start)))
        deadline = time.monotonic() + 10
        while True:  # docpilot, sh and sleep (and zsh's own fork for the hook's function)
            job = {pid: found for pid, found in _processes(terminal.proc.pid).items() if pid != terminal.proc.pid}
            if all(state == "T" for state, _ in job.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert all(state == "T" for state, _ in job.values()), f"not all stopped: {job}"
        assert sh in job and any(argv[-5:] == ["run", "--", *SLOW_ARGV] for _, argv in job.values()), job  # and docpilot
        start = len(terminal.output)
        terminal.type("fg")
        assert b"finished" in terminal.output[start:], terminal.text()[-3000:]
        terminal.type(STATUS[shell])
    finally:
        terminal.exit()
    shown = terminal.text()
    assert "status=0" in shown, shown[-3000:]
    assert_quiet(shown.replace("docpilot run", ""))
    recorded = _settled(running, session, 3)
    assert [c["command"] for c in recorded] == [SLOW, "fg", STATUS[shell]]
    assert recorded[0]["exit_code"] == 0 and recorded[0]["output"] == "started\nfinished\n"
