"""`docpilot run -- CMD` typed in a real hooked bash, zsh and fish on a pty, with a real daemon: the
session has CMD once (recorded by run, with its output and exit status), not the `docpilot run`
line the hook spooled as well, whatever `record_own_commands` says; other docpilot lines keep
following that setting.

The shell is driven line by line (each line typed once the prompt is back): what is typed while
`docpilot run` runs goes to the command, as in script(1), so typing ahead would feed the command.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

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
    assert "out\r\nerr\r\n" in shown, "the command's output on the terminal"
    assert "status=3" in shown, "its exit status is the shell's $?"
    expected = [FAILING, STATUS[shell], *(['docpilot note "after the run"'] if own_recorded else []), "true"]
    recorded = wait_for(process, session, len(expected))
    time.sleep(0.5)  # anything more would have come by now (the spool is read within ~20 ms)
    recorded = wait_for(process, session, len(expected) + 1, timeout=0.5)
    assert [c["command"] for c in recorded] == expected
    run = recorded[0]
    assert run["exit_code"] == 3 and run["output"] == "out\r\nerr\r\n"
    assert run["working_directory"] == str(home)
