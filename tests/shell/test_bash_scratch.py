"""bash's hook reads each command line through a scratch file written over in place (truncating
a file that holds data costs ext4 about 0.2 ms per command): a shorter line after a longer one must
never carry the longer one's tail, and the scratch file must hold nothing of any command after it
was read (a secret typed there does not stay on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..reliability.kill9 import DaemonProcess
from .ptyshell import available, run_shell
from .test_hooks import LOAD, assert_quiet, daemon, home, shell_env, start_session, wait_for

_ = (daemon, home)  # fixtures


@pytest.mark.skipif(not available("bash"), reason="bash is not installed")
def test_a_short_line_after_a_long_one_is_recorded_as_typed_and_the_scratch_is_blank(home: Path, daemon: DaemonProcess) -> None:
    session = start_session(daemon)
    lines = [
        LOAD["bash"],
        "echo " + "long-é-" * 40 + "end > /dev/null",
        "true",
        "echo 'two\nlines' > /dev/null",
        ": the-last-line-TOKEN-9f2",
    ]
    out, _ = run_shell("bash", lines, shell_env(home), cwd=str(home))
    assert_quiet(out)
    recorded = [c["command"] for c in wait_for(daemon, session, 4)]
    assert recorded == lines[1:], recorded
    scratch = list((home / "data" / "spool").glob(".fc.*"))
    assert len(scratch) == 1
    assert scratch[0].read_bytes().strip(b" ") == b"", scratch[0].read_bytes()[:200]
