"""`docpilot run -- CMD ARGS...`: run a command as the terminal would, then record it with the
capped part of its output; and the output of `docpilot record --output-file F`.

The command runs once, whatever happens to docpilotd: its output passes through live, its exit
status is docpilot's (a death by signal N is 128+N, as shells say it), and only then is it recorded
(`record`: the argv shell-quoted, exit code, cwd, shell, start and duration, output). When that
fails (no daemon, no live session, a paused one, a refusal) one line on stderr says it was not
recorded and why; the exit status stays the command's. Nothing else is printed (`--json` changes
nothing: standard output is the command's). The shell is $DOCPILOT_SHELL (the hooks export it),
else the name of $SHELL.

How it runs. Either way the command is a plain child in our process group, in the foreground when
we are, with our standard input and our controlling terminal: `run` never reads standard input.
What is typed while the command runs stays in the terminal for whoever reads it, the command if
it reads, else the shell after it (a line typed ahead reaches the shell, as without docpilot);
`/dev/tty` prompts (sudo, ssh) go to the terminal itself and are never captured; the keyboard's
Ctrl-C, Ctrl-\\ and Ctrl-Z reach the command directly.
- Standard output a terminal: the command's standard output is a pseudo-terminal of ours, so
  isatty(1) holds and colours and progress bars work; its standard error a second one, copied to
  our standard error (not a terminal, `2>log`: a pipe). The ptys get the terminal's modes without
  OPOST (our terminal already turns \\n into \\r\\n) and its window size, again on SIGWINCH (then the
  command gets a SIGWINCH of ours too: the kernel's may come before the pty's size changed). The
  ptys are nobody's controlling terminal: a program that wants job control on its output (an
  interactive shell: `docpilot run -- bash`) has none.
  Full-screen programs (curses, `tty.setraw(1)`) set modes on the terminal they write to, our pty:
  when its mode changes (looked at before each output chunk is shown, and every MODE_POLL seconds),
  the bits and control characters that changed (input, output and local flags) are changed on the
  terminal of our standard input as well, while we are in its foreground; once anything was, the
  terminal's mode from before is restored at the end (on an exception too) and before docpilot
  stops, and what the pty holds is applied again when we continue. SIGINT and SIGQUIT from the
  keyboard are ignored here (the command has them, it ends, we record it); Ctrl-Z stops the
  command, and docpilot stops with the same signal once its command has stopped, so the shell's
  job control sees the job stopped; when continued (`fg`, `bg`) it continues its command and the
  copying goes on.
- Otherwise (pipes, files, CI): standard output and standard error through pipes of their own, to
  ours, captured in the order they arrive. Like a pipe into `tee`, done at the end of both pipes
  and the command's exit. When our standard output is closed (`| head`), the command's pipe is
  closed too: it gets SIGPIPE as in a pipeline; SIGTERM or SIGHUP while a reader has stopped
  reading also ends our writing (the command has the signal), so the run ends.
- Signals: SIGTERM and SIGHUP sent to docpilot are passed on to the command; SIGINT, SIGQUIT (and,
  on a terminal, SIGTSTP) too unless the terminal sent them to the command already (our process
  group is in its foreground). A signal ignored when docpilot started stays ignored, for the
  command too (`nohup docpilot run -- ...`). When Ctrl-C killed the command, docpilot records it
  (130) and then ends by SIGINT as well, as a shell expects of a program that did not handle
  Ctrl-C itself: a loop or script around `docpilot run` stops, as it would around the command.
- On a pty, done when the command has exited and its ptys have drained (a background process that
  keeps a pty open is left after at most half a second).
- The child: the same environment (DOCPILOT_SESSION as it is), SIGPIPE and SIGXFSZ back to their
  default (Python ignores them). A command that cannot start: 127 (not found) or 126, with the
  shell's message, recorded as well. No pseudo-terminal to be had: pipes.

What is kept: `output_max_bytes` (docpilotd's configuration: $DOCPILOT_OUTPUT_MAX_BYTES, else the
config file's key, else 64 KiB), head and tail (docpilotd.domain.output), of standard output and
standard error in the order they arrive (from two ptys, lines written close together may arrive
in either order). It is sent as captured, escape sequences included; the daemon removes them
before it redacts and stores (a coloured secret is then redacted too), and caps again with its own
setting. What is typed is not captured (the terminal echoes it, not the command).

Invariants: the command is started at most once and its exit status is always returned (or, after
Ctrl-C killed it, the same death); `run` never reads standard input nor changes the terminal's
mode except to mirror the command's pty, and restores it before anything is printed or returned;
the signal handlers are restored likewise; memory stays within about twice the cap
(domain/output.Kept) and a few reads whatever the output's size; nothing here imports msgspec or
asyncio, and this module is imported only by `run` and `record --output-file`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import stat
import sys
import termios
import time

from ..domain.output import DEFAULT_MAX_BYTES, MAX_MAX_BYTES, Kept, assemble, halves
from ..errors import DocpilotError, UsageError

TYPE_CHECKING = False  # not typing's: `run` starts on the client's lean path (client/lean.py)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    Mode = list[Any]  # termios.tcgetattr's list, control characters as numbers (see _mode)

CHUNK = 65536
READS_PER_TURN = 16  # reads of one output before the others (and signals) get their turn
RECORD_TIMEOUT = 10.0  # seconds to wait for the daemon's answer once the command is done
DRAIN_QUIET = 0.05  # after the command exited: stop reading its pty after this long without output...
DRAIN_MAX = 0.5  # ...or this long in all (a background process may keep the pty open)
MODE_POLL = 0.1  # on a pty: a mode change with no output after it is mirrored within this long
LIMIT_VARIABLE = "DOCPILOT_OUTPUT_MAX_BYTES"


# -- the verb ---------------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> int:
    """`docpilot run`: run the command, pass its status back, record it (see the module docstring)."""
    argv = list(args.command[1:] if args.command[:1] == ["--"] else args.command)
    if not argv:
        raise UsageError("run needs a command: docpilot run [--session ID] -- COMMAND [ARGS...]")
    kept = Kept(output_limit())
    cwd = _cwd()
    started_us = time.time_ns() // 1000
    began = time.monotonic()
    runner = Runner(argv, kept)
    code = runner.run()
    duration_ms = int((time.monotonic() - began) * 1000)
    import shlex

    fields: dict[str, Any] = {
        "session": getattr(args, "session", None) or os.environ.get("DOCPILOT_SESSION") or None,
        "command": shlex.join(argv), "exit_code": code, "cwd": cwd, "shell": _shell(),
        "duration_ms": duration_ms, "started_us": started_us, "output": kept.text(),
    }
    try:
        why = _record(fields)
    except KeyboardInterrupt:
        why = "interrupted while waiting for docpilotd"
    if why:
        try:
            print(f"docpilot: not recorded: {why}", file=sys.stderr, flush=True)
        except OSError:
            pass  # no standard error: the exit status is still the command's
    if runner.interrupted:
        _end_interrupted()
    return code


def _end_interrupted() -> None:
    """Ctrl-C killed the command: end by SIGINT as well. A shell takes an exit status of 130 for a
    program that handled Ctrl-C and carried on, and would go on with its loop or script."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)  # SIGINT blocked by whoever started us: the status is returned


def _record(fields: dict[str, Any]) -> str | None:
    """Send the record; why it was not recorded, or None when it was."""
    from .transport import Connection

    try:
        with Connection(timeout=RECORD_TIMEOUT) as conn:
            # Read as sent (the lean path does not import typing for results.decode): only
            # `skipped` is read, and only when it is a string.
            result = conn.send("record", **fields)
    except DocpilotError as exc:
        return exc.message
    except OSError as exc:
        return exc.strerror or str(exc)
    except Exception as exc:  # never another exit status than the command's, never a traceback
        return f"{type(exc).__name__}: {exc}"
    skipped = result.get("skipped") if isinstance(result, dict) else None
    return skipped if isinstance(skipped, str) and skipped else None


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # removed meanwhile
        return os.environ.get("PWD", "")


def _shell() -> str:
    """The shell the command was typed in: $DOCPILOT_SHELL, else the login shell's name."""
    return os.environ.get("DOCPILOT_SHELL") or os.path.basename(os.environ.get("SHELL", ""))


def output_limit() -> int:
    """`output_max_bytes` as the daemon reads it (environment, else config file, else default). A
    value the daemon would refuse counts as the default here; the daemon names it at its start."""
    value: object = os.environ.get(LIMIT_VARIABLE) or None
    if value is None:
        from ..where import config_file

        path, _ = config_file()
        if not os.path.isfile(path):
            return DEFAULT_MAX_BYTES
        try:
            import tomllib

            with open(path, "rb") as handle:
                value = tomllib.load(handle).get("output_max_bytes")
        except (OSError, ValueError):
            return DEFAULT_MAX_BYTES
    try:
        limit = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else -1
    except ValueError:
        return DEFAULT_MAX_BYTES
    return limit if 0 <= limit <= MAX_MAX_BYTES else DEFAULT_MAX_BYTES


# -- record --output-file ---------------------------------------------------------------------------


def output_of_file(name: str, limit: int | None = None) -> str | None:
    """The kept part of file `name` (`-`: standard input), for `record --output-file`. A regular
    file only: anything else (a FIFO, a device, a directory) is a UsageError, nothing opened that
    could block; a regular file's middle is never read."""
    limit = output_limit() if limit is None else limit
    if name == "-":
        return _output_of_stdin(limit)
    option = f"--output-file {name}"
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise UsageError(f"{option}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{option}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{option}: not a regular file ({_a_kind(st.st_mode)}); give a file, or - for standard input")
    if limit == 0:
        return None
    try:
        # O_NONBLOCK: if a FIFO took its place since the stat, opening it does not wait either.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise UsageError(f"{option}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{option}: not a regular file ({_a_kind(st.st_mode)})")
        head_size, tail_size = halves(limit)
        head = os.pread(fd, head_size, 0)
        tail = os.pread(fd, tail_size, max(0, st.st_size - tail_size)) if st.st_size > len(head) else b""
        return assemble(head, tail, max(st.st_size, len(head)))
    except OSError as exc:
        raise UsageError(f"{option}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _output_of_stdin(limit: int) -> str | None:
    if _isatty(0):
        raise UsageError("--output-file -: standard input is a terminal; pipe the output in "
                         "(... | docpilot record --output-file - -- COMMAND)")
    kept = Kept(limit)
    try:
        while chunk := os.read(0, CHUNK):
            kept.add(chunk)
    except OSError as exc:
        raise UsageError(f"--output-file -: cannot read standard input: {exc.strerror}") from None
    return kept.text()


def _a_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a file"


# -- running the command ----------------------------------------------------------------------------


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _in_foreground(fd: int) -> bool:
    """Whether our process group is the foreground of the terminal at `fd` (we may set its mode)."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def _keyboard_reaches_us() -> bool:
    """Whether our process group is the foreground of our controlling terminal: a signal from the
    keyboard then reached the command (in our group) as well."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _in_foreground(fd)
    finally:
        os.close(fd)


def _not_started(argv0: str, exc: OSError) -> tuple[int, str]:
    """The exit status and message a shell gives for a command it could not start."""
    if exc.errno == errno.ENOENT:
        return 127, f"docpilot: {argv0}: " + ("command not found" if "/" not in argv0 else "No such file or directory")
    return 126, f"docpilot: {argv0}: {exc.strerror or os.strerror(exc.errno or 0)}"


def spawn(argv: list[str], fds: tuple[int, int, int]) -> int:
    """Start `argv` with `fds` as its standard input, output and error, in our session and process
    group; the child's pid. OSError (the exec's own error) when the command could not be started;
    nothing is left running then. Signals we catch are the command's default again (exec does
    that), those ignored stay ignored, SIGPIPE and SIGXFSZ are set back to their default (Python
    ignores them). posix_spawn (vfork and exec: about 1 ms, where a fork of this interpreter took
    3 to 4) reports a failed exec as OSError itself."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds) if fd != target]
    for target, fd in enumerate(fds):
        if fd == target:
            try:
                os.set_inheritable(fd, True)
            except OSError:
                pass  # closed here, closed for the command too
    defaults = [signum for signum in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if signum is not None]
    return os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions, setsigdef=defaults)


def _mode(fd: int) -> Mode:
    """The terminal mode at `fd`, its control characters all numbers (tcgetattr gives VMIN and VTIME
    as numbers in non-canonical mode only, one-byte strings otherwise: compared as they are, every
    switch of ICANON would look like a change of both)."""
    mode = termios.tcgetattr(fd)
    mode[6] = [c if isinstance(c, int) else c[0] for c in mode[6]]
    return mode


def _with_changes(target: Mode, before: Mode, after: Mode) -> Mode:
    """`target` with what changed from `before` to `after` changed the same way: the input, output
    and local flags' bits, the control characters (never the hardware flags or speeds)."""
    result = [*target[:6], list(target[6])]
    for index in (0, 1, 3):
        changed = before[index] ^ after[index]
        result[index] = (target[index] & ~changed) | (after[index] & changed)
    for index, (old, new) in enumerate(zip(before[6], after[6])):
        if old != new:
            result[6][index] = new
    return result


class _Abandoned(Exception):
    """Raised by the signal handler into a blocked write to our output (see Runner._write)."""


class Runner:
    """One run of a command: its pipes or ptys, the copying, the signals, the terminal's mode (see
    the module docstring)."""

    def __init__(self, argv: list[str], kept: Kept) -> None:
        self.argv = argv
        self.kept = kept
        self.pid = 0
        self.status: int | None = None  # the wait status, once reaped
        self.interrupted = False  # SIGINT from the keyboard reached us (and the command)
        self.opened: set[int] = set()  # our ends of its pipes and ptys, closed when it is done
        self.sources: dict[int, int] = {}  # the command's output fds -> ours they are copied to
        self.broken: set[int] = set()  # our fds that refused a write: not written again
        self.ptys: list[int] = []  # the masters of its ptys (pty mode); the first is its stdout's
        self.tty: int | None = None  # our terminal whose modes and size the ptys copy
        self.real: int | None = None  # our standard input when a terminal: the pty's mode mirrored onto it
        self.initial: Mode | None = None  # the mode the stdout pty was given
        self.applied: Mode | None = None  # the pty's mode the real terminal shows (initial: nothing mirrored)
        self.original: list[Any] | None = None  # the real terminal's mode before anything was mirrored
        self.mirrored = False  # the real terminal's mode was changed: restore `original`
        self.writing = False  # in a write to our output (which a stalled reader may block)
        self.wake_r = self.wake_w = -1
        self.old_handlers: dict[int, Any] = {}
        self.old_wakeup = -1

    # -- the whole run --------------------------------------------------------------------------

    def run(self) -> int:
        """Run the command to its end; its exit status (128+N for a death by signal N)."""
        try:
            on_terminal = _isatty(1)
            self._catch_signals(on_terminal)
            try:
                if on_terminal:
                    self._start_on_pty()
                else:
                    self._start_with_pipes()
            except OSError as exc:
                code, message = _not_started(self.argv[0], exc)
                self.interrupted = False
                self.kept.add(message.encode("utf-8", "replace") + b"\n")
                self._restore()
                print(message, file=sys.stderr)
                return code
            self._pump()
        finally:
            self._restore()
            for fd in list(self.opened):
                self._close(fd)
            if self.pid and self.status is None:  # an error of ours: the command still ends once
                self.status = os.waitpid(self.pid, 0)[1]
        assert self.status is not None
        code = os.waitstatus_to_exitcode(self.status)
        if code != -signal.SIGINT:
            self.interrupted = False  # the command handled Ctrl-C its own way: its status says it
        return 128 - code if code < 0 else code

    def _pipe(self) -> tuple[int, int]:
        fds = os.pipe()
        self.opened.update(fds)
        return fds

    def _close(self, fd: int) -> None:
        if fd in self.opened:
            self.opened.discard(fd)
            try:
                os.close(fd)
            except OSError:
                pass

    def _start_with_pipes(self) -> None:
        out_r, out_w = self._pipe()
        err_r, err_w = self._pipe()
        try:
            self.pid = spawn(self.argv, (0, out_w, err_w))
        finally:
            self._close(out_w)
            self._close(err_w)
        self.sources = {out_r: 1, err_r: 2}
        for fd in self.sources:
            os.set_blocking(fd, False)

    def _start_on_pty(self) -> None:
        pairs: list[tuple[int, int]] = []
        try:
            for _ in range(2 if _isatty(2) else 1):
                pairs.append(os.openpty())
                self.opened.update(pairs[-1])
        except OSError:  # no pseudo-terminal to be had: the command runs all the same
            for pair in pairs:
                for fd in pair:
                    self._close(fd)
            self._start_with_pipes()
            return
        self.tty = 0 if _isatty(0) else 1
        slaves = [slave for _, slave in pairs]
        try:
            mode = termios.tcgetattr(self.tty)
            mode[1] &= ~termios.OPOST  # our terminal turns \n into \r\n: the pty must not do it as well
            for slave in slaves:
                termios.tcsetattr(slave, termios.TCSANOW, mode)
        except termios.error:
            pass
        for slave in slaves:
            self._copy_size(slave)
        self.ptys = [master for master, _ in pairs]
        if self.tty == 0:
            try:
                self.original = termios.tcgetattr(0)
                self.initial = self.applied = _mode(self.ptys[0])
                self.real = 0
            except termios.error:
                pass
        err_r = self.ptys[1] if len(pairs) > 1 else -1
        err_fd = slaves[1] if len(pairs) > 1 else -1
        if err_fd < 0:  # `2>log`: the command's errors go there through a pipe, not to the terminal
            err_r, err_fd = self._pipe()
        try:
            self.pid = spawn(self.argv, (0, slaves[0], err_fd))
        finally:
            for fd in (*slaves, err_fd):
                self._close(fd)
        self.sources = {self.ptys[0]: 1, err_r: 2}
        for fd in self.sources:
            os.set_blocking(fd, False)

    # -- the copying ----------------------------------------------------------------------------

    def _pump(self) -> None:
        exited_at: float | None = None
        while True:
            if self.status is None:
                self._reap()
            timeout: float | None = None
            if self.status is not None:
                if not self.sources:
                    return
                if self.ptys:  # the ptys: what is there now, then done
                    now = time.monotonic()
                    exited_at = exited_at or now
                    if now - exited_at >= DRAIN_MAX:
                        return
                    timeout = DRAIN_QUIET
            elif self.real is not None:
                timeout = MODE_POLL
            r, _, _ = select.select([self.wake_r, *self.sources], [], [], timeout)
            if self.wake_r in r:
                self._signals()
            for fd in r:
                if fd in self.sources:
                    self._copy(fd)
            if not r:
                if self.status is not None:
                    return  # quiet since the command exited
                self._mirror()

    def _copy(self, fd: int) -> None:
        """What `fd` has now (a few reads: a pty gives a few KiB at a time), out and kept."""
        for _ in range(READS_PER_TURN):
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return
            except OSError:  # EIO: the pty's other side is closed
                data = b""
            if not data:
                del self.sources[fd]
                self._close(fd)
                return
            if fd in self.ptys:
                self._mirror()  # the mode this output was written in, before it is shown
            self.kept.add(data)
            self._write(self.sources[fd], data, fd)
            if fd not in self.sources:
                return

    def _write(self, target: int, data: bytes, source: int) -> None:
        """All of `data` to our `target`, unless it refused a write before. SIGTERM or SIGHUP while
        a write waits for a reader that stopped reading: the command has it, and we stop writing."""
        view = memoryview(data)
        while view and target not in self.broken:
            try:
                self.writing = True
                try:
                    view = view[os.write(target, view):]
                except BlockingIOError:  # our output was left non-blocking by someone
                    select.select([], [target], [])
                self.writing = False
            except _Abandoned:
                self.writing = False
                self.broken.add(target)
            except OSError as exc:
                self.writing = False
                self.broken.add(target)
                if exc.errno == errno.EPIPE and not self.ptys and source in self.sources:
                    del self.sources[source]  # as in a pipeline: the command gets SIGPIPE
                    self._close(source)

    def _reap(self) -> None:
        flags = os.WNOHANG | (os.WUNTRACED if self.ptys else 0)
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # pragma: no cover - reaped by someone else: say it failed
            pid, status = self.pid, 1 << 8
        if pid != self.pid:
            return
        if os.WIFSTOPPED(status):
            self._stop_with(os.WSTOPSIG(status))
        else:
            self.status = status

    # -- signals --------------------------------------------------------------------------------

    def _catch_signals(self, on_terminal: bool) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.old_handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, self._on_signal)
        self.old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        caught = [signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP]
        if on_terminal:
            caught += [signal.SIGWINCH, signal.SIGTSTP, signal.SIGCONT]
        for signum in caught:
            # Ignored when we started (nohup, a shell's background job): ignored by the command too.
            if signal.getsignal(signum) != signal.SIG_IGN:
                self.old_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        """Run by Python as soon as a signal arrives, also while a write to our output blocks (a
        reader that stopped reading must not keep SIGTERM from the command); the loop is woken
        through the wake-up fd for the rest (SIGCHLD: reap, a stop followed; SIGCONT: mirror)."""
        if signum == signal.SIGWINCH:
            self._copy_sizes()
        elif signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP):
            if signum in (signal.SIGTERM, signal.SIGHUP) or not _keyboard_reaches_us():
                if self.pid and self.status is None:
                    try:
                        os.kill(self.pid, signum)
                    except OSError:
                        pass  # gone meanwhile
            elif signum == signal.SIGINT:
                # The keyboard's, the command's too (this may run after it was reaped already).
                self.interrupted = True
            if self.writing and signum in (signal.SIGTERM, signal.SIGHUP):
                raise _Abandoned  # out of the write that waits (see _write)

    def _signals(self) -> None:
        """The loop's part: SIGCONT (SIGCHLD is handled by reaping at the top of the loop)."""
        try:
            numbers = os.read(self.wake_r, 512)
        except BlockingIOError:
            return
        if signal.SIGCONT in numbers:
            self._resumed()

    def _stop_with(self, signum: int) -> None:
        """The command stopped (Ctrl-Z, SIGSTOP, SIGTTIN...): the terminal's mode as it was, and we
        stop with the same signal, so that the shell sees its job stopped; once continued, the
        command continues too and its pty's mode is mirrored again."""
        self._unmirror()
        stop = signum if signum in (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU) else signal.SIGSTOP
        previous = signal.signal(stop, signal.SIG_DFL) if stop != signal.SIGSTOP else None
        try:
            os.kill(os.getpid(), stop)  # delivered before this returns: here we wait to be continued
        finally:
            if previous is not None:
                signal.signal(stop, previous)
        try:
            os.kill(self.pid, signal.SIGCONT)  # `fg` continued both; someone continued us alone
        except OSError:
            pass
        self._resumed()

    # -- the terminal ---------------------------------------------------------------------------

    def _copy_size(self, target: int) -> bool:
        """Our terminal's size onto the pty at `target`; whether that changed it."""
        if self.tty is None:
            return False
        try:
            size = fcntl.ioctl(self.tty, termios.TIOCGWINSZ, b"\0" * 8)
            if fcntl.ioctl(target, termios.TIOCGWINSZ, b"\0" * 8) == size:
                return False
            fcntl.ioctl(target, termios.TIOCSWINSZ, size)
        except OSError:
            return False
        return True

    def _copy_sizes(self) -> None:
        """SIGWINCH: the new size onto the ptys; then a SIGWINCH to the command, which had the
        kernel's before the pty's size changed (a program that asks its standard output asks again)."""
        changed = [self._copy_size(master) for master in self.ptys]
        if any(changed) and self.pid and self.status is None:
            try:
                os.kill(self.pid, signal.SIGWINCH)
            except OSError:
                pass

    def _mirror(self) -> None:
        """What the command changed in its stdout pty's mode, changed on the real terminal too."""
        if self.real is None or self.applied is None or not self.ptys:
            return
        try:
            now = _mode(self.ptys[0])
        except termios.error:
            return
        if now == self.applied or not _in_foreground(self.real):
            return  # unchanged; or in the background (a mode set then would stop us with SIGTTOU)
        try:
            current = _mode(self.real)
            wanted = _with_changes(current, self.applied, now)
            if wanted != current:
                termios.tcsetattr(self.real, termios.TCSANOW, wanted)  # TCSANOW: typed-ahead input stays
                self.mirrored = True
        except termios.error:
            return
        self.applied = now

    def _unmirror(self) -> None:
        """The real terminal's mode as it was before anything was mirrored (if it was)."""
        if self.mirrored and self.real is not None and self.original is not None and _in_foreground(self.real):
            try:
                termios.tcsetattr(self.real, termios.TCSANOW, self.original)
                self.mirrored = False
            except termios.error:
                pass
        self.applied = self.initial

    def _resumed(self) -> None:
        """Continued (SIGCONT): the shell may have set the terminal's mode meanwhile; the pty's mode
        is mirrored again (a change applied again is no change)."""
        self.applied = self.initial
        if self.status is None:
            self._mirror()

    def _restore(self) -> None:
        """Our terminal's mode, signal handlers and wake-up fd as they were (idempotent)."""
        self._unmirror()
        self.real = None
        for signum, handler in self.old_handlers.items():
            signal.signal(signum, handler)
        self.old_handlers.clear()
        if self.wake_w >= 0:
            signal.set_wakeup_fd(self.old_wakeup)
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
            self.wake_r = self.wake_w = -1
