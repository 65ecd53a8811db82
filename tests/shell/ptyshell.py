"""Run a real interactive shell on a pseudo-terminal, as a person at a terminal would.

`run_shell(shell, lines, env)` starts bash, zsh or fish interactive (no user rc files) on a pty,
types `lines` ahead (the shell reads them at its prompts), ends with `exit`, and returns everything
the terminal showed and the wall time from the first typed line to the shell's exit.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import subprocess
import termios
import time
from collections.abc import Callable

COMMANDS = {
    "bash": ["bash", "--norc", "--noprofile", "-i"],
    "zsh": ["zsh", "-f", "-i"],
    "fish": ["fish", "--no-config", "-i"],
}


def _controlling_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty (job control needs it)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def available(shell: str) -> bool:
    return shutil.which(shell) is not None


def run_shell(
    shell: str,
    lines: list[str],
    env: dict[str, str],
    cwd: str | None = None,
    timeout: float = 120.0,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[str, float]:
    """Type `lines` into an interactive `shell`, then `exit`; returns (terminal output, seconds).

    `on_progress(n)` is called after the n-th line has been written (to act mid-burst).
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        COMMANDS[shell], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
        preexec_fn=_controlling_terminal, close_fds=True,
    )
    os.close(slave)
    output = bytearray()
    started = time.monotonic()
    try:
        pending = [line.encode() + b"\n" for line in lines] + [b"exit\n"]
        deadline = time.monotonic() + timeout
        written = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{shell} did not finish; last output: {output[-2000:].decode(errors='replace')}")
            # Keep the typed-ahead input small: the terminal's input buffer is about 4 KB.
            can_write = pending and len(output) >= 0
            r, w, _ = select.select([master], [master] if can_write else [], [], 0.05)
            if r:
                chunk = _read(master)
                if not chunk:
                    break
                output += chunk
            if w and pending:
                batch = b""
                while pending and len(batch) + len(pending[0]) < 1024:
                    batch += pending.pop(0)
                    written += 1
                if not batch and pending:
                    batch = pending.pop(0)
                    written += 1
                os.write(master, batch)
                if on_progress is not None:
                    on_progress(written)
                time.sleep(0.002 * batch.count(b"\n"))  # let the shell drain its input buffer
            if proc.poll() is not None and not r:
                break
        proc.wait(timeout=30)
        # The shell may have written its last output between the select and its exit: read what
        # the terminal still holds (without this, a fast shell's whole output was sometimes lost).
        while select.select([master], [], [], 0.1)[0] and (chunk := _read(master)):
            output += chunk
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    return output.decode("utf-8", errors="replace"), time.monotonic() - started


def _read(master: int) -> bytes:
    """What the terminal holds; b"" once the shell's side is closed (EIO on Linux)."""
    try:
        return os.read(master, 65536)
    except OSError:
        return b""
