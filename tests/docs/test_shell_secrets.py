"""Secrets typed in real interactive bash, zsh and fish with the hooks loaded: recorded redacted,
and once the spool has been read, no file under the data root holds them (the bash hook's scratch
copy of the last command line included)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.disk import files_holding
from tests.reliability.kill9 import DaemonProcess
from tests.shell.ptyshell import run_shell
from tests.shell.test_hooks import LOAD, SHELLS, assert_quiet, commands_of, shell_env, start_session


@pytest.fixture
def shell_home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dps-", dir="/tmp") as tmp:  # short: socket paths
        yield Path(tmp)


@pytest.fixture
def shell_daemon(shell_home: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(shell_home / "data")
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.terminate()


@pytest.mark.parametrize("shell", SHELLS)
def test_secrets_typed_in_a_hooked_shell_never_stay_on_disk(shell: str, shell_home: Path, shell_daemon: DaemonProcess) -> None:
    session = start_session(shell_daemon)
    assign = "set -x API_TOKEN shell-secret-1" if shell == "fish" else "export API_TOKEN=shell-secret-1"
    lines = [
        LOAD[shell],
        assign,
        "echo --password=shell-secret-2 > /dev/null",
        "echo mysql -u root -pshell-secret-3 > /dev/null",
        "true",
        " echo shell-secret-5 > /dev/null",
        "echo https://ci:shell-secret-4@git.example.com > /dev/null",  # last: in bash's scratch file
    ]
    output, _ = run_shell(shell, lines, shell_env(shell_home), cwd=str(shell_home))
    assert_quiet(output)
    deadline = time.monotonic() + 20
    while len(commands_of(shell_daemon, session)) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c["command"] for c in commands_of(shell_daemon, session)] == [
        assign.replace("shell-secret-1", "[REDACTED]"),
        "echo --password=[REDACTED] > /dev/null",
        "echo mysql -u root -p[REDACTED] > /dev/null",
        "true",
        "echo https://ci:[REDACTED]@git.example.com > /dev/null",
    ]
    request_save(shell_daemon)
    secrets = [f"shell-secret-{n}" for n in range(1, 6)]
    data = shell_home / "data"
    while files_holding(data, *secrets) and time.monotonic() < deadline + 10:
        time.sleep(0.1)
    assert files_holding(data, *secrets) == {}
    assert any((data / "journal").iterdir()) and any((data / "sessions").iterdir())


def request_save(daemon: DaemonProcess) -> None:
    from tests.reliability.kill9 import request

    assert request(daemon.socket_path, {"op": "save"})["ok"]
