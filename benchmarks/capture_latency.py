"""Capture latency: from a hooked shell writing a command's spool line to the daemon holding it.

    python benchmarks/capture_latency.py [--quick]

Each shell (bash, zsh, fish) runs interactive on a pseudo-terminal with the real hook loaded (as
in prompt.py), while a daemon runs with a live session. Commands are typed one at a time
(`echo lat-0`, `echo lat-1`, ...; 200, or 30 in quick mode) with 40 ms of quiet after each, so
every command is a separate event for the daemon, not part of a burst. After typing one, this
process reads the terminal until the shell's next prompt has appeared (the prompt shows a
per-command counter, so a redrawn old prompt is never taken for the new one) and meanwhile asks
the daemon, over one persistent connection, for the session's command count about every 1-2 ms.
The latency of a command is the moment the count went up minus the spool file's st_mtime_ns after
the hook's append (the moment the hook wrote; the newest *.jsonl in spool/, whose size must have
grown). A command the daemon has not counted 5 s after it was typed is a miss; a miss fails the
row, and so does a final command count that is not exactly the number typed. prompt.py measures
the same span (last append's mtime to stored) for a burst of commands typed ahead.

Why it can miss: the file's mtime comes from the kernel's coarse clock (up to one tick before the
true write on kernels without fine-grained timestamps: 0-7 ms, median 5 ms, on the machine this was
written on), so each figure can be high by up to a tick; the note gives the same figure measured from the moment the prompt appeared on the
terminal, which is later than the write and so low by the prompt's drawing time. Polling costs
the daemon a small request every ~1.5 ms, and the figure's resolution is that interval. The
machine is shared and noisy: one descheduled moment of the daemon is a p99 of 200 samples.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import Conn, Figure, percentile, python_path, start_daemon, stop_daemon, workdir
from prompt import SHELLS, _argv, _take_terminal

GOAL_S = 0.100
MISS_AFTER_S = 5.0
QUIET_S = 0.040
PROMPT = re.compile(rb"\[dpb:(\d+)\]")


@dataclass
class Measured:
    shell: str
    typed: int
    latencies_s: list[float] = field(default_factory=list)  # spool mtime -> counted by the daemon
    from_prompt_s: list[float] = field(default_factory=list)  # prompt seen -> counted (a lower bound)
    misses: list[int] = field(default_factory=list)  # indexes of commands not counted within 5 s
    recorded: int = 0  # the session's command count at the end
    durability: str = ""


def _rc(shell: str, directory: Path, hook: str) -> Path:
    """An rc file: a prompt showing a counter that goes up once per command run, then the hook."""
    prompt = {
        "bash": "PS1='[dpb:\\#]$ '\nHISTFILE=/dev/null\n",  # \#: the command number
        "zsh": "PS1='[dpb:%!]$ '\n",  # %!: the history event number
        # Counted in preexec: postexec is the hook's, which must read $status first.
        "fish": "set -g __dpb_n 0\nfunction __dpb_count --on-event fish_preexec; set -g __dpb_n (math $__dpb_n + 1); end\n"
                "function fish_prompt; echo -n \"[dpb:$__dpb_n]\\$ \"; end\nfunction fish_greeting; end\n",
    }[shell]
    rc = directory / (".zshrc" if shell == "zsh" else f"rc.{shell}")
    rc.write_text(prompt + hook)
    return rc


class Terminal:
    """A shell on a pseudo-terminal; `pump` reads what it wrote and notes the prompts it drew."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(cwd),
            start_new_session=True, close_fds=True, preexec_fn=_take_terminal,
        )
        os.close(slave)
        self.output = b""
        self.scanned = 0
        self.prompt = -1  # the highest prompt counter seen so far

    def pump(self, timeout: float) -> bool:
        """Read what is there (waiting up to `timeout`); True when a new prompt appeared."""
        before = self.prompt
        r, _, _ = select.select([self.master], [], [], timeout)
        if r:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the shell exited
                data = b""
            if not data:
                raise RuntimeError(f"the shell exited: {self.output[-500:]!r}")
            self.output += data
            # A counter may be split across reads: rescan from a little before the new bytes.
            for match in PROMPT.finditer(self.output, max(0, self.scanned - 32)):
                self.prompt = max(self.prompt, int(match.group(1)))
            self.scanned = len(self.output)
            if len(self.output) > 1 << 20:
                self.output = self.output[-4096:]
                self.scanned = len(self.output)
        return self.prompt > before

    def wait_prompt(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.pump(0.05):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no prompt within {timeout} s: {self.output[-500:]!r}")

    def idle(self, seconds: float) -> None:
        """Keep reading (so the shell never blocks on a full terminal) for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.pump(left)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.type("exit\n")
                self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            os.close(self.master)


def _newest_spool(spool: Path) -> os.stat_result | None:
    newest = None
    for path in spool.glob("*.jsonl"):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if newest is None or st.st_mtime_ns > newest.st_mtime_ns:
            newest = st
    return newest


def measure(shell: str, commands: int) -> Measured | None:
    if shutil.which(shell) is None:
        return None
    found = Measured(shell, commands)
    with workdir(f"latency-{shell}") as tmp:
        home = tmp / "home"
        daemon, _ = start_daemon(home)
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCPILOT_", "BASH_ENV", "ENV"))}
            env.update(DOCPILOT_HOME=str(home), PYTHONPATH=python_path(), TERM="xterm", HOME=str(tmp), XDG_DATA_HOME=str(tmp / "xdg-data"), ZDOTDIR=str(tmp))
            hook = subprocess.run(
                [sys.executable, "-m", "docpilotd.client.cli", "init", shell], env=env, capture_output=True,
                text=True, check=True,
            ).stdout
            rc = _rc(shell, tmp, hook)
            conn = Conn(daemon.socket_path)
            session = conn.call({"op": "start", "description": f"capture latency in {shell}"})["id"]

            def count() -> int:
                return conn.call({"op": "status", "session": session})["session"]["commands"]

            found.durability = conn.call({"op": "status"})["daemon"]["durability"]
            term = Terminal(_argv(shell, rc), env, tmp)
            try:
                term.wait_prompt(30.0)
                term.idle(0.2)
                spool = home / "spool"
                known = count()
                for i in range(commands):
                    before = _newest_spool(spool)
                    size_before = before.st_size if before is not None else 0
                    term.type(f"echo lat-{i}\n")
                    deadline = time.monotonic() + MISS_AFTER_S
                    prompt_ns = seen_ns = None
                    while prompt_ns is None or seen_ns is None:
                        if term.pump(0.001) and prompt_ns is None:
                            prompt_ns = time.time_ns()
                        if seen_ns is None:
                            now = count()
                            if now > known:
                                seen_ns, known = time.time_ns(), now
                        if time.monotonic() > deadline:
                            break
                    if prompt_ns is None:
                        raise TimeoutError(f"{shell}: no prompt {MISS_AFTER_S} s after command {i}: {term.output[-500:]!r}")
                    written = _newest_spool(spool)
                    if written is None or written.st_size <= size_before:
                        raise RuntimeError(f"{shell}: the hook wrote nothing to spool/ for command {i}")
                    if seen_ns is None:
                        found.misses.append(i)
                        known = count()  # what arrived late must not count for the next command
                    else:
                        found.latencies_s.append((seen_ns - written.st_mtime_ns) / 1e9)
                        found.from_prompt_s.append((seen_ns - prompt_ns) / 1e9)
                    term.idle(QUIET_S)
            finally:
                term.close()
            time.sleep(0.3)  # anything late is in by now
            found.recorded = count()
            conn.close()
        finally:
            stop_daemon(daemon)
    return found


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def run(quick: bool) -> list[Figure]:
    commands = 30 if quick else 200
    figures: list[Figure] = []
    for shell in SHELLS:
        found = measure(shell, commands)
        if found is None:
            figures.append(Figure(f"hook-to-stored latency, {shell}", "not installed", met=None))
            continue
        lat = found.latencies_s
        exact = found.recorded == found.typed
        if lat:
            measured = (f"p50 {_ms(percentile(lat, 0.5))}, p99 {_ms(percentile(lat, 0.99))}, "
                        f"max {_ms(max(lat))} (n={len(lat)})")
            p99 = percentile(lat, 0.99)
        else:
            measured, p99 = "no command arrived", float("inf")
        notes = [f"min {_ms(min(lat))}, mean {_ms(statistics.mean(lat))}" if lat else "",
                 f"from the prompt appearing: p50 {_ms(percentile(found.from_prompt_s, 0.5))}, "
                 f"p99 {_ms(percentile(found.from_prompt_s, 0.99))}" if lat else "",
                 f"durability {found.durability}"]
        if found.misses:
            notes.append(f"{len(found.misses)} MISSED (not counted within {MISS_AFTER_S:.0f} s): commands "
                         + ", ".join(map(str, found.misses[:10])) + (" ..." if len(found.misses) > 10 else ""))
        if not exact:
            notes.append(f"session holds {found.recorded} commands of {found.typed} typed: NOT each exactly once")
        figures.append(Figure(
            f"hook-to-stored latency, {shell}", measured, f"<= {GOAL_S * 1e3:.0f} ms p99",
            p99 <= GOAL_S and not found.misses and exact, note="; ".join(n for n in notes if n),
        ))
    return figures


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
