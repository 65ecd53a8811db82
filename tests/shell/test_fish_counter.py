"""fish's hook counts commands without `math` (no command substitution per command): nine
decimal digits kept as table indexes. What a user would see if it went wrong: a command recorded
twice or not at all (capture ids are how the daemon records each line at most once), or errors at
the prompt in a shell that had loaded an older hook (whose counter was a plain number)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..reliability.kill9 import DaemonProcess
from .ptyshell import available, run_shell
from .test_hooks import LOAD, commands_of, daemon, home, shell_env, start_session, wait_for

_ = (daemon, home)  # fixtures


@pytest.mark.skipif(not available("fish"), reason="fish is not installed")
def test_every_command_lands_once_with_counters_past_nine_after_an_older_hooks_counter(home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    older = ["set -g __docpilot_instance 123-4", "set -g __docpilot_n 41"]  # what the older hook left
    typed = [f"echo n{i} > /dev/null" for i in range(23)]
    out, _ = run_shell("fish", [*older, LOAD["fish"], *typed], shell_env(home), cwd=str(home))
    for noise in ("fish: ", "test: ", "Invalid index", "Unknown command", "Traceback", "docpilot:"):
        assert noise not in out, out  # (assert_quiet would find the __docpilot_ lines typed above)
    recorded = wait_for(daemon, session, len(typed))
    assert [c["command"] for c in recorded] == typed
    counters = [int(c["capture_id"].rpartition(":")[2]) for c in commands_of(daemon, session)]
    assert counters == sorted(set(counters)) and len(counters) == len(typed)
    assert not any(c["capture_id"].startswith("123-4:") for c in recorded)
