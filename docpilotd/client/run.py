"""`docpilot run -- CMD ARGS...`: run a command as the terminal would, then record it with the
capped part of its output; and the output of `docpilot record --output-file F`.

The command runs once, whatever happens to docpilotd: its output passes through live, its exit
status is docpilot's (a death by signal N is 128+N, as shells say it), and only then is it recorded
(`record`: the argv shell-quoted, exit code, cwd, shell, start and duration, output). When that
fails (no daemon, no live session, a paused one, a refusal) one line on stderr says it was not
recorded and why; the exit status stays the command's. Nothing else is printed (`--json` changes
nothing: standard output is the command's).

How it runs:
- Standard output a terminal: on a pseudo-terminal of its own, so colours, progress bars and
  prompts still work. The pty gets our terminal's modes and size (SIGWINCH copies the size again);
  when standard input is that terminal and we are in its foreground, it is put in raw mode (always
  restored: on exit, on an exception, before we stop for SIGTSTP) and what is typed is copied to
  the command, Ctrl-C included (a character in raw mode; the pty turns it into SIGINT). Like
  script(1), what is typed while the command runs goes to the command, and Ctrl-Z does not stop it
  (its process group has no job control). Standard input not a terminal (`< file`) is the
  command's as it is; standard error not a terminal (`2>log`) gets a pipe of its own. SIGINT,
  SIGQUIT, SIGTERM or SIGHUP sent to docpilot go to the command's foreground process group. Done when the command has exited and its pty has drained (a background process that keeps
  the pty open is left after at most half a second).
- Otherwise (pipes, files, CI): standard output and standard error through pipes of their own, to
  ours, captured in the order they arrive; standard input inherited. Like a pipe into `tee`, done
  at the end of both pipes and the command's exit. SIGTERM and SIGHUP are passed on, SIGINT and
  SIGQUIT too unless the terminal already sent them to the command (our process group is in its
  foreground). When our standard output is closed (`| head`), the command's pipe is closed too: it
  gets SIGPIPE as in a pipeline; SIGTERM or SIGHUP while a reader has stopped reading also ends
  our writing (the command has the signal), so the run ends.
- The child: the same environment (DOCPILOT_SESSION as it is), SIGPIPE and SIGXFSZ back to their
  default (Python ignores them). A command that cannot start: 127 (not found) or 126, with the
  shell's message, recorded as well.

What is kept: `output_max_bytes` (docpilotd's configuration: $DOCPILOT_OUTPUT_MAX_BYTES, else the
config file's key, else 64 KiB), head and tail (docpilotd.domain.output). It is sent as captured,
escape sequences included; the daemon removes them before it redacts and stores (a coloured secret
is then redacted too), and caps again with its own setting.

Invariants: the command is started at most once and its exit status is always returned; the
terminal's mode and the signal handlers are restored before anything is printed or returned;
memory stays within about twice the cap (domain/output.Kept) and a few reads whatever the
output's size; nothing here imports
msgspec or asyncio, and this module is imported only by `run` and `record --output-file`.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import select
import signal
import stat
import sys
import termios
import time
from typing import Any

from ..domain.output import DEFAULT_MAX_BYTES, MAX_MAX_BYTES, Kept, assemble, halves
from ..errors import DocpilotError, UsageError

CHUNK = 65536
READS_PER_TURN = 16  # reads of one output before the others (and signals) get their turn
RECORD_TIMEOUT = 10.0  # seconds to wait for the daemon's answer once the command is done
DRAIN_QUIET = 0.05  # after the command exited: stop reading its pty after this long without output...
DRAIN_MAX = 0.5  # ...or this long in all (a background process may keep the pty open)
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
    code = Runner(argv, kept).run()
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
    return code


def _record(fields: dict[str, Any]) -> str | None:
    """Send the record; why it was not recorded, or None when it was."""
    from .. import results
    from .transport import Connection

    try:
        with Connection(timeout=RECORD_TIMEOUT) as conn:
            result = conn.request("record", results.Recorded, **fields)
    except DocpilotError as exc:
        return exc.message
    except OSError as exc:
        return exc.strerror or str(exc)
    except Exception as exc:  # never another exit status than the command's, never a traceback
        return f"{type(exc).__name__}: {exc}"
    return result.get("skipped") or None


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
        from ..paths import config_file

        path, _ = config_file()
        if not path.is_file():
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
    """Whether our process group is the foreground of the terminal at `fd` (we may read it)."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def _keyboard_reaches_us() -> bool:
    """Whether our process group is the foreground of our controlling terminal: a SIGINT from the
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


def spawn(argv: list[str], fds: tuple[int, int, int], terminal: int | None = None) -> int:
    """fork and exec `argv` with `fds` as its standard input, output and error (and, given
    `terminal`, a new session whose controlling terminal it is); the child's pid. OSError (the
    exec's own error) when the command could not be started; nothing is left running then."""
    err_r, err_w = os.pipe()  # close-on-exec: EOF means the exec went through
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (measured by the tests from outside)
        code = 127
        try:
            if terminal is not None:
                os.setsid()
                fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)
            moved = [fd if fd == target else fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for target, fd in enumerate(fds)]
            for target, fd in enumerate(moved):
                if fd == target:
                    try:
                        os.set_inheritable(fd, True)
                    except OSError:
                        pass  # closed here, closed for the command too
                else:
                    os.dup2(fd, target)
            for signum in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)):
                if signum is not None:
                    signal.signal(signum, signal.SIG_DFL)
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(err_w, str(exc.errno or errno.ENOEXEC).encode())
        except BaseException:
            os.write(err_w, str(errno.ENOEXEC).encode())
        finally:
            os._exit(code)
    os.close(err_w)
    try:
        reported = b""
        while chunk := os.read(err_r, 64):
            reported += chunk
    finally:
        os.close(err_r)
    if reported:
        os.waitpid(pid, 0)
        number = int(reported) if reported.isdigit() else errno.ENOEXEC
        raise OSError(number, os.strerror(number))
    return pid


class _Abandoned(Exception):
    """Raised by the signal handler into a blocked write to our output (see Runner._write)."""


class Runner:
    """One run of a command: its pipes or pty, the copying, the signals (see the module docstring)."""

    def __init__(self, argv: list[str], kept: Kept) -> None:
        self.argv = argv
        self.kept = kept
        self.pid = 0
        self.status: int | None = None  # the wait status, once reaped
        self.opened: set[int] = set()  # our ends of its pipes and pty, closed when it is done
        self.sources: dict[int, int] = {}  # the command's output fds -> ours they are copied to
        self.broken: set[int] = set()  # our fds that refused a write: not written again
        self.master: int | None = None  # the pty's master (pty mode)
        self.tty: int | None = None  # our terminal whose modes and size the pty copies
        self.forwarding = False  # copying our standard input to the pty
        self.pending = bytearray()  # typed, not yet taken by the pty
        self.writing = False  # in a write to our output (which a stalled reader may block)
        self.saved_mode: list[Any] | None = None  # our terminal's mode before raw
        self.wake_r = self.wake_w = -1
        self.old_handlers: dict[int, Any] = {}
        self.old_wakeup = -1

    # -- the whole run --------------------------------------------------------------------------

    def run(self) -> int:
        """Run the command to its end; its exit status (128+N for a death by signal N)."""
        try:
            self._catch_signals()
            try:
                if _isatty(1):
                    self._start_on_pty()
                else:
                    self._start_with_pipes()
            except OSError as exc:
                code, message = _not_started(self.argv[0], exc)
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
        master, slave = os.openpty()
        self.opened.update((master, slave))
        self.tty = 0 if _isatty(0) else 1
        raw = self.tty == 0 and _in_foreground(0)
        try:
            mode = termios.tcgetattr(self.tty)
            if not raw:  # our terminal still turns \n into \r\n: the pty must not do it as well
                mode[1] &= ~termios.OPOST
            termios.tcsetattr(slave, termios.TCSANOW, mode)
        except termios.error:
            pass
        self._copy_size(slave)
        err_fd, err_r = slave, -1
        if not _isatty(2):  # `2>log`: the command's errors go there, not to the terminal
            err_r, err_fd = self._pipe()
        try:
            # Our standard input a terminal: the command reads its pty (fed from ours while we are
            # in the foreground); else it reads what we were given.
            self.pid = spawn(self.argv, (slave if self.tty == 0 else 0, slave, err_fd), terminal=slave)
        finally:
            self._close(slave)
            self._close(err_fd)
        self.master = master
        self.sources = {master: 1, **({err_r: 2} if err_r >= 0 else {})}
        for fd in self.sources:
            os.set_blocking(fd, False)
        if raw:
            self._raw()

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
                if self.master is not None:  # the pty: what is there now, then done
                    now = time.monotonic()
                    exited_at = exited_at or now
                    if now - exited_at >= DRAIN_MAX:
                        return
                    timeout = DRAIN_QUIET
            readable = [self.wake_r, *self.sources]
            if self.forwarding and len(self.pending) < 4 * CHUNK:
                readable.append(0)
            writable = [self.master] if self.pending and self.master is not None else []
            r, w, _ = select.select(readable, writable, [], timeout)
            if not r and not w and timeout is not None:
                return  # quiet since the command exited
            if self.wake_r in r:
                self._signals()
            for fd in r:
                if fd in self.sources:
                    self._copy(fd)
                elif fd == 0 and self.forwarding:
                    self._take_input()
            if w and self.pending:
                self._give_input()

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
                if exc.errno == errno.EPIPE and self.master is None and source in self.sources:
                    del self.sources[source]  # as in a pipeline: the command gets SIGPIPE
                    self._close(source)

    def _take_input(self) -> None:
        try:
            data = os.read(0, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.pending += data
        else:
            self.forwarding = False

    def _give_input(self) -> None:
        assert self.master is not None
        try:
            written = os.write(self.master, self.pending)
        except BlockingIOError:
            return
        except OSError:  # the command is gone
            self.pending.clear()
            self.forwarding = False
            return
        del self.pending[:written]

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # pragma: no cover - reaped by someone else: say it failed
            pid, status = self.pid, 1 << 8
        if pid == self.pid:
            self.status = status

    # -- signals and the terminal ---------------------------------------------------------------

    def _catch_signals(self) -> None:
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.old_wakeup = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        caught = [signal.SIGCHLD, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP]
        if _isatty(1):
            caught += [signal.SIGWINCH, signal.SIGTSTP]
        for signum in caught:
            self.old_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        """Run by Python as soon as a signal arrives, also while a write to our output blocks (a
        reader that stopped reading must not keep SIGTERM from the command); the loop is woken
        through the wake-up fd for the rest (SIGCHLD: reap; SIGTSTP: suspend)."""
        if signum == signal.SIGWINCH:
            if self.master is not None:
                self._copy_size(self.master)
        elif signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
            if self.pid and self.status is None:
                self._pass_on(signum)
            if self.writing and signum in (signal.SIGTERM, signal.SIGHUP):
                raise _Abandoned  # out of the write that waits (see _write)

    def _signals(self) -> None:
        """The loop's part: SIGTSTP (SIGCHLD is handled by reaping at the top of the loop)."""
        try:
            numbers = os.read(self.wake_r, 512)
        except BlockingIOError:
            return
        if signal.SIGTSTP in numbers:
            self._suspend()

    def _pass_on(self, signum: int) -> None:
        try:
            if self.master is not None:  # the command's foreground process group on its pty
                try:
                    group = os.tcgetpgrp(self.master)
                except OSError:
                    group = self.pid
                os.killpg(group, signum)
            elif signum in (signal.SIGTERM, signal.SIGHUP) or not _keyboard_reaches_us():
                os.kill(self.pid, signum)
        except OSError:
            pass  # gone meanwhile

    def _suspend(self) -> None:
        """SIGTSTP (sent to us; the keyboard's goes to the command): our terminal as it was, stop;
        raw again once continued in the foreground."""
        was_raw = self.saved_mode is not None
        self._cooked()
        os.kill(os.getpid(), signal.SIGSTOP)
        if was_raw and _in_foreground(0):
            self._raw()
        else:
            self.forwarding = False

    def _copy_size(self, target: int) -> None:
        if self.tty is None:
            return
        try:
            size = fcntl.ioctl(self.tty, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(target, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    def _raw(self) -> None:
        try:
            mode = termios.tcgetattr(0)
            raw = [*mode[:6], list(mode[6])]
            raw[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
            raw[1] &= ~termios.OPOST
            raw[2] = (raw[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
            raw[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
            raw[6][termios.VMIN] = 1
            raw[6][termios.VTIME] = 0
            termios.tcsetattr(0, termios.TCSANOW, raw)  # TCSANOW: what was typed ahead stays
        except termios.error:
            return
        self.saved_mode = mode
        self.forwarding = True

    def _cooked(self) -> None:
        if self.saved_mode is not None:
            try:
                termios.tcsetattr(0, termios.TCSADRAIN, self.saved_mode)
            except termios.error:
                pass
            self.saved_mode = None

    def _restore(self) -> None:
        """Our terminal's mode, signal handlers and wake-up fd as they were (idempotent)."""
        self._cooked()
        self.forwarding = False
        for signum, handler in self.old_handlers.items():
            signal.signal(signum, handler)
        self.old_handlers.clear()
        if self.wake_w >= 0:
            signal.set_wakeup_fd(self.old_wakeup)
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
            self.wake_r = self.wake_w = -1

