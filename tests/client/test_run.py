"""`docpilot run -- CMD` and `docpilot record --output-file F` against a real daemon, as a user
would check them: the command's output where it belongs, its exit status passed back, the command
recorded once with the kept part of its output (redacted), and the command run exactly once
whatever happens to the daemon. On pipes (the default here) and on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import CLIENT_CMD, Daemon, DaemonFactory

FAILING = "echo out; echo err >&2; exit 3"
TOKEN = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"  # a GitHub token's shape: redacted by default
USAGE = 2


def _commands(d: Daemon, session: str) -> list[dict[str, Any]]:
    return list(d.call("show", session=session)["commands"])


def _only_command(d: Daemon, session: str) -> dict[str, Any]:
    commands = _commands(d, session)
    assert len(commands) == 1, commands
    return commands[0]


def _run(d: Daemon, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 60.0) -> tuple[int, str, str]:
    rc, out, err = d.client("run", "--", *argv, env=env, cwd=cwd, timeout=timeout)
    assert "Traceback" not in err, err
    return rc, out, err


# -- on pipes -------------------------------------------------------------------------------------


def test_a_failing_command_passes_its_output_and_status_through_and_is_recorded_once(
    daemon: Daemon, tmp_path: Path
) -> None:
    sid = daemon.call("start", description="run")["id"]
    before_ns = time.time_ns()
    rc, out, err = _run(daemon, "sh", "-c", FAILING, cwd=tmp_path, env={"SHELL": "/usr/bin/zsh"})
    assert (rc, out, err) == (3, "out\n", "err\n"), "status, stdout and stderr as the command gave them; no line of ours"
    command = _only_command(daemon, sid)
    assert command["command"] == "sh -c 'echo out; echo err >&2; exit 3'"
    assert command["exit_code"] == 3
    assert command["output"] == "out\nerr\n"
    assert command["working_directory"] == str(tmp_path)
    assert command["shell"] == "zsh"
    assert isinstance(command["duration_ms"], int) and 0 <= command["duration_ms"] < 30_000
    from docpilotd.domain import timestamps

    assert before_ns - 1_000_000 <= timestamps.parse_ns(command["timestamp"]) <= time.time_ns()
    shown = daemon.client("show", "--session", sid)[1]
    assert "sh -c 'echo out; echo err >&2; exit 3'  [exit 3]" in shown


def test_the_shell_comes_from_docpilot_shell_and_the_environment_is_the_callers(daemon: Daemon) -> None:
    first = daemon.call("start", description="first")["id"]
    daemon.call("start", description="second, the latest")
    env = {"DOCPILOT_SESSION": first, "DOCPILOT_SHELL": "fish", "SHELL": "/bin/bash", "MY_VARIABLE": "kept"}
    rc, out, _ = _run(daemon, "sh", "-c", 'echo "$DOCPILOT_SESSION $MY_VARIABLE"', env=env)
    assert rc == 0 and out == f"{first} kept\n"
    command = _only_command(daemon, first)  # DOCPILOT_SESSION chose the session, as for every verb
    assert command["shell"] == "fish" and command["output"] == f"{first} kept\n"


def test_a_command_killed_by_a_signal_is_128_plus_n(daemon: Daemon) -> None:
    sid = daemon.call("start", description="signals")["id"]
    rc, out, _ = _run(daemon, "sh", "-c", "echo before; kill -KILL $$")
    assert rc == 128 + signal.SIGKILL and out == "before\n"
    command = _only_command(daemon, sid)
    assert command["exit_code"] == 137 and command["output"] == "before\n"


def test_sigterm_to_docpilot_reaches_the_command_and_the_run_is_still_recorded(daemon: Daemon) -> None:
    sid = daemon.call("start", description="sigterm")["id"]
    script = "import time; print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([*CLIENT_CMD, "run", "--", sys.executable, "-c", script], env=daemon.env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()
    assert rc == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and err == "", err
    command = _only_command(daemon, sid)
    assert command["exit_code"] == 143 and command["output"] == "ready\n"


def _ignoring_hup_and_int() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup does
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell does for a job in the background of a script


def _default_hup_and_int() -> None:
    # The suite itself may run with them ignored (under nohup, or in the background of a script).
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_signal_ignored_when_docpilot_starts_stays_ignored_for_the_command(daemon: Daemon) -> None:
    daemon.call("start", description="nohup")
    script = "import signal; print([signal.getsignal(s) == signal.SIG_IGN for s in (signal.SIGHUP, signal.SIGINT)])"
    argv = [*CLIENT_CMD, "run", "--", sys.executable, "-c", script]
    ignoring = subprocess.run(argv, env=daemon.env(), stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                              preexec_fn=_ignoring_hup_and_int)
    plain = subprocess.run(argv, env=daemon.env(), stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                           preexec_fn=_default_hup_and_int)
    assert (ignoring.returncode, ignoring.stdout) == (0, b"[True, True]\n"), ignoring.stderr
    assert (plain.returncode, plain.stdout) == (0, b"[False, False]\n"), plain.stderr


def test_our_standard_output_closed_gives_the_command_sigpipe_as_in_a_pipeline(daemon: Daemon) -> None:
    sid = daemon.call("start", description="head")["id"]
    proc = subprocess.Popen([*CLIENT_CMD, "run", "--", "yes"], env=daemon.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.read(4) == b"y\ny\n"
        proc.stdout.close()  # `docpilot run -- yes | head -2`
        rc = proc.wait(timeout=30)
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()
    assert rc == 128 + signal.SIGPIPE and err == "", err
    command = _only_command(daemon, sid)
    assert command["exit_code"] == 141 and command["output"].startswith("y\ny\n")


def test_sigterm_while_our_reader_stopped_reading_ends_the_run_at_once(daemon: Daemon) -> None:
    sid = daemon.call("start", description="stalled reader")["id"]
    proc = subprocess.Popen([*CLIENT_CMD, "run", "--", "yes"], env=daemon.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.read(2) == b"y\n"
        time.sleep(1.0)  # the pipe is full: docpilot waits in a write that nobody will take
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert rc == 128 + signal.SIGTERM
    assert _only_command(daemon, sid)["exit_code"] == 143


def test_a_command_that_cannot_start_is_127_with_the_shells_message_and_is_recorded(daemon: Daemon) -> None:
    sid = daemon.call("start", description="missing")["id"]
    rc, out, err = _run(daemon, "no-such-command-anywhere", "--flag")
    assert rc == 127 and out == "" and err == "docpilot: no-such-command-anywhere: command not found\n"
    command = _only_command(daemon, sid)
    assert command["exit_code"] == 127 and "command not found" in command["output"]
    rc, _, err = _run(daemon, str(Path(__file__)))  # not executable
    assert rc == 126 and "Permission denied" in err


def test_output_over_the_cap_keeps_its_head_and_tail_and_says_how_much_was_not_kept(daemon: Daemon) -> None:
    sid = daemon.call("start", description="big")["id"]
    lines = 100_000
    script = f"import sys\nfor i in range(1, {lines + 1}): sys.stdout.write(f'line {{i}}\\n')"
    rc, out, _ = _run(daemon, sys.executable, "-c", script, env={"DOCPILOT_OUTPUT_MAX_BYTES": "1000"})
    total = sum(len(f"line {i}\n") for i in range(1, lines + 1))
    assert rc == 0 and len(out) == total, "all of it passed through"
    kept = _only_command(daemon, sid)["output"]
    head, marker, tail = kept.partition("\n[... ")
    assert head.startswith("line 1\nline 2\n") and tail.endswith(f"line {lines}\n")
    match = re.match(r"([\d,]+) bytes not kept \.\.\.\]\n", tail)
    assert marker and match, kept
    tail = tail[match.end():]
    assert int(match.group(1).replace(",", "")) == total - len(head) - 1 - len(tail), "the count is exact"
    assert len(head) + 1 + len(tail) <= 1000, "at most the cap, besides the marker"
    assert head.splitlines()[-1].startswith("line ") and re.fullmatch(r"(line \d+\n)+", tail), "cut at line ends"


def test_output_max_bytes_zero_keeps_no_output(daemon: Daemon) -> None:
    sid = daemon.call("start", description="none")["id"]
    rc, out, _ = _run(daemon, "echo", "hello", env={"DOCPILOT_OUTPUT_MAX_BYTES": "0"})
    assert rc == 0 and out == "hello\n"
    assert _only_command(daemon, sid)["output"] is None


def test_the_daemon_applies_its_own_cap_whatever_the_client_sends(daemons: DaemonFactory, tmp_path: Path) -> None:
    d = daemons(env={"DOCPILOT_OUTPUT_MAX_BYTES": "2000"})
    sid = d.call("start", description="cap")["id"]
    log = tmp_path / "build.log"
    log.write_text("".join(f"step {i} done\n" for i in range(20_000)))
    rc, _, err = d.client("record", "--output-file", str(log), "--exit-code", "0", "--", "make",
                          env={"DOCPILOT_OUTPUT_MAX_BYTES": "100000"})
    assert rc == 0, err
    kept = _only_command(d, sid)["output"]
    assert kept.startswith("step 0 done\n") and kept.endswith("step 19999 done\n") and "bytes not kept" in kept
    assert len(kept.encode()) <= 2000 + 64


# -- the daemon, the session ------------------------------------------------------------------------


def test_without_a_daemon_the_command_runs_once_and_its_status_is_passed_back(daemons: DaemonFactory,
                                                                              tmp_path: Path) -> None:
    d = daemons(start=False)
    ran = tmp_path / "ran"
    rc, out, err = _run(d, "sh", "-c", f"echo once >> '{ran}'; echo out; exit 5")
    assert rc == 5 and out == "out\n"
    assert ran.read_text() == "once\n", "run exactly once"
    assert err.startswith("docpilot: not recorded: ") and err.count("\n") == 1, err
    assert "not running" in err, err


def test_without_a_live_session_the_command_runs_and_one_line_says_why(daemon: Daemon) -> None:
    rc, out, err = _run(daemon, "sh", "-c", "echo out; exit 4")
    assert (rc, out) == (4, "out\n")
    assert err.startswith("docpilot: not recorded: ") and err.count("\n") == 1 and "no live session" in err, err
    sid = daemon.call("start", description="then paused")["id"]
    daemon.call("pause", session=sid)
    rc, out, err = _run(daemon, "true")
    assert rc == 0 and err.startswith("docpilot: not recorded: ") and err.count("\n") == 1, err
    assert _commands(daemon, sid) == []


def test_run_without_a_command_is_a_usage_error(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    for args in (("run",), ("run", "--")):
        rc, out, err = d.client(*args)
        assert rc == USAGE and out == "" and err.startswith("docpilot: run needs a command"), err


def test_a_secret_in_the_output_is_redacted_everywhere_it_is_stored(daemon: Daemon) -> None:
    sid = daemon.call("start", description="secret")["id"]
    script = f"echo 'token {TOKEN}'; printf '\\033[32m%s\\033[0m\\n' '{TOKEN}'"
    rc, out, _ = _run(daemon, "sh", "-c", script)
    assert rc == 0 and out.count(TOKEN) == 2, "the terminal shows it as the command printed it"
    command = _only_command(daemon, sid)
    assert command["output"] == "token [REDACTED]\n[REDACTED]\n", "plain and in colour"
    daemon.call("save")
    holding = [name for name, content in daemon.tree().items()
               if isinstance(content, bytes) and TOKEN.encode() in content]
    assert holding == [], f"the token is stored in {holding}"


def test_a_docpilot_run_line_sent_to_record_is_skipped_with_the_reason_that_holds(daemon: Daemon) -> None:
    sid = daemon.call("start", description="own lines")["id"]
    reply = daemon.call("record", session=sid, command="docpilot run -- make", exit_code=0, cwd="/w")
    assert reply["skipped"] == "a docpilot run line: not recorded (run records the command it runs)"
    reply = daemon.call("record", session=sid, command="docpilot note hello", exit_code=0, cwd="/w")
    assert "record_own_commands = true records them" in reply["skipped"]
    assert _commands(daemon, sid) == []


# -- record --output-file ---------------------------------------------------------------------------


def test_record_output_file_reads_a_regular_file(daemon: Daemon, tmp_path: Path) -> None:
    sid = daemon.call("start", description="record")["id"]
    log = tmp_path / "nginx.log"
    log.write_bytes(b"nginx: [emerg] unknown directive \xff\n")
    rc, _, err = daemon.client("record", "--exit-code", "1", "--output-file", str(log), "--", "nginx", "-t")
    assert rc == 0, err
    command = _only_command(daemon, sid)
    assert command["output"] == "nginx: [emerg] unknown directive \ufffd\n" and command["exit_code"] == 1


def test_record_output_file_refuses_a_fifo_and_a_directory_at_once(daemon: Daemon, tmp_path: Path) -> None:
    sid = daemon.call("start", description="record")["id"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target, kind in ((fifo, "a FIFO"), (tmp_path, "a directory"), (tmp_path / "missing", "no such file")):
        started = time.monotonic()
        rc, out, err = daemon.client("record", "--output-file", str(target), "--", "make", timeout=10)
        assert rc == USAGE and out == "", err
        assert err.startswith(f"docpilot: --output-file {target}: ") and kind in err and err.count("\n") == 1, err
        assert time.monotonic() - started < 10, "never waits for a writer"
    assert _commands(daemon, sid) == [], "nothing recorded"


def test_record_output_file_dash_reads_standard_input(daemon: Daemon) -> None:
    sid = daemon.call("start", description="stdin")["id"]
    done = subprocess.run([*CLIENT_CMD, "record", "--output-file", "-", "--exit-code", "2", "--", "pytest"],
                          input=b"1 failed, 3 passed\n", env=daemon.env(), capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert _only_command(daemon, sid)["output"] == "1 failed, 3 passed\n"


def test_record_output_file_keeps_head_and_tail_of_a_large_file_without_reading_its_middle(
    daemon: Daemon, tmp_path: Path
) -> None:
    sid = daemon.call("start", description="large")["id"]
    log = tmp_path / "large.log"
    with open(log, "wb") as handle:
        handle.write(b"first line\n")
        handle.seek(50_000_000)  # a sparse middle
        handle.write(b"\nlast line\n")
    rc, _, err = daemon.client("record", "--output-file", str(log), "--", "big", env={"DOCPILOT_OUTPUT_MAX_BYTES": "100"})
    assert rc == 0, err
    kept = _only_command(daemon, sid)["output"]
    assert kept.startswith("first line\n") and kept.endswith("\nlast line\n") and "bytes not kept" in kept


# -- on a pseudo-terminal ---------------------------------------------------------------------------


def _controlling_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class OnPty:
    """`argv` (docpilot, or a shell calling it) on a pseudo-terminal of the test's, as in a
    terminal window; the test keeps the terminal's other side open, to read its mode at the end."""

    def __init__(self, d: Daemon, argv: list[str], rows: int = 24, cols: int = 80) -> None:
        self.master, self.slave = os.openpty()
        self.resize(rows, cols)
        self.mode = termios.tcgetattr(self.slave)
        self.output = bytearray()
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave, stderr=self.slave,
                                     env=d.env({"TERM": "xterm"}), preexec_fn=_controlling_terminal)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def _read(self, timeout: float) -> None:
        r, _, _ = select.select([self.master], [], [], timeout)
        if r:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:
                pass

    def wait_for(self, needle: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            assert time.monotonic() < deadline, f"no {needle!r} in {bytes(self.output)!r}"
            self._read(0.05)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"still running; output {bytes(self.output)!r}"
            self._read(0.05)
        for _ in range(5):
            self._read(0.02)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def on_pty() -> Any:
    made: list[OnPty] = []

    def start(d: Daemon, argv: list[str], **size: int) -> OnPty:
        made.append(OnPty(d, argv, **size))
        return made[-1]

    yield start
    for terminal in made:
        terminal.close()


PTY_CHILD = """
import os, sys
print(sys.stdin.isatty(), sys.stdout.isatty(), sys.stderr.isatty(), os.get_terminal_size(1), os.get_terminal_size(2))
print("\\033[31mred\\033[0m", flush=True)
print("\\033[33mwarning\\033[0m", file=sys.stderr, flush=True)
print("answer:", input("question? "))
sys.exit(4)
"""


def test_on_a_terminal_the_command_writes_to_ptys_colours_pass_and_reads_the_terminal(daemon: Daemon, on_pty: Any) -> None:
    sid = daemon.call("start", description="pty")["id"]
    terminal = on_pty(daemon, [*CLIENT_CMD, "run", "--", sys.executable, "-c", PTY_CHILD], rows=33, cols=101)
    terminal.wait_for(b"question? ")
    terminal.type(b"forty-two\r")  # the terminal's own line: the command reads it there
    assert terminal.finish() == 4
    shown = bytes(terminal.output)
    size = b"os.terminal_size(columns=101, lines=33)"
    assert b"True True True " + size + b" " + size in shown, shown
    assert b"\x1b[31mred\x1b[0m\r\n" in shown and b"\x1b[33mwarning\x1b[0m\r\n" in shown, "colours, one \\r per line"
    assert b"question? forty-two\r\nanswer: forty-two\r\n" in shown, "typed on the terminal, read by the command"
    assert termios.tcgetattr(terminal.slave) == terminal.mode, "the terminal's mode is as it was"
    command = _only_command(daemon, sid)
    assert command["exit_code"] == 4
    output = command["output"]
    assert "red\n" in output and "warning\n" in output and "\x1b" not in output, "stored without escape sequences"
    assert "question? " in output and "answer: forty-two\n" in output
    assert "forty-two\n" not in output.replace("answer: forty-two\n", ""), "what is typed is the terminal's, not captured"


def test_on_a_terminal_ctrl_c_ends_the_command_and_docpilot_records_it_then_ends_the_same_way(
    daemon: Daemon, on_pty: Any
) -> None:
    sid = daemon.call("start", description="ctrl-c")["id"]
    terminal = on_pty(daemon, [*CLIENT_CMD, "run", "--", "sh", "-c", "echo ready; exec sleep 60"])
    terminal.wait_for(b"ready\r\n")
    terminal.type(b"\x03")  # Ctrl-C: the terminal sends SIGINT to its foreground, docpilot and the command
    assert terminal.finish() == -signal.SIGINT, "docpilot ends by SIGINT too, as a shell expects (a loop stops)"
    assert termios.tcgetattr(terminal.slave) == terminal.mode
    command = _only_command(daemon, sid)
    assert command["exit_code"] == 130 and command["output"] == "ready\n", "recorded all the same"


def test_on_a_terminal_a_command_that_handles_ctrl_c_gives_its_own_status(daemon: Daemon, on_pty: Any) -> None:
    sid = daemon.call("start", description="handled")["id"]
    script = ("import sys, time\ntry:\n    print('ready', flush=True)\n    time.sleep(60)\n"
              "except KeyboardInterrupt:\n    print('cleaned up', flush=True)\n    sys.exit(3)\n")
    terminal = on_pty(daemon, [*CLIENT_CMD, "run", "--", sys.executable, "-c", script])
    terminal.wait_for(b"ready\r\n")
    terminal.type(b"\x03")
    assert terminal.finish() == 3, "docpilot survived Ctrl-C and returns the command's status"
    command = _only_command(daemon, sid)
    assert command["exit_code"] == 3 and command["output"] == "ready\ncleaned up\n"


def test_on_a_terminal_sigterm_to_docpilot_reaches_the_command(daemon: Daemon, on_pty: Any) -> None:
    sid = daemon.call("start", description="sigterm on a pty")["id"]
    terminal = on_pty(daemon, [*CLIENT_CMD, "run", "--", sys.executable, "-c",
                               "import time; print('ready', flush=True); time.sleep(60)"])
    terminal.wait_for(b"ready\r\n")
    terminal.proc.send_signal(signal.SIGTERM)
    assert terminal.finish() == 128 + signal.SIGTERM
    assert _only_command(daemon, sid)["exit_code"] == 143


def test_on_a_terminal_a_resize_reaches_the_ptys_and_the_command(daemon: Daemon, on_pty: Any) -> None:
    sid = daemon.call("start", description="resize")["id"]
    script = ("import os, signal\n"
              "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})\n"
              "print('size', tuple(os.get_terminal_size(1)), flush=True)\n"
              "while tuple(os.get_terminal_size(1)) != (120, 40):\n"
              "    signal.sigwait({signal.SIGWINCH})\n"
              "print('resized', tuple(os.get_terminal_size(1)), tuple(os.get_terminal_size(2)), flush=True)\n")
    terminal = on_pty(daemon, [*CLIENT_CMD, "run", "--", sys.executable, "-c", script], rows=24, cols=80)
    terminal.wait_for(b"size (80, 24)")
    # The kernel sends SIGWINCH to the terminal's foreground, docpilot and the command; docpilot
    # copies the size to the ptys and sends the command one more, after that.
    terminal.resize(40, 120)
    terminal.wait_for(b"resized (120, 40) (120, 40)")
    assert terminal.finish() == 0
    assert "resized (120, 40)" in _only_command(daemon, sid)["output"]


RAW_CHILD = """
import os, sys, termios, tty
cooked = termios.tcgetattr(1)
tty.setraw(1)  # as a full-screen program does: on the terminal it writes to, the pty
os.write(1, b"raw\\r\\n")
key = os.read(0, 1)  # from the real terminal
termios.tcsetattr(1, termios.TCSADRAIN, cooked)
os.write(1, b"key %r, cooked\\n" % key)
line = sys.stdin.readline()
termios.tcsetattr(1, termios.TCSADRAIN, termios.tcgetattr(1)[:3] + [cooked[3] & ~termios.ECHO] + cooked[4:])
os.write(1, b"line %r, silent\\n" % line)
"""


def test_on_a_terminal_a_full_screen_programs_mode_is_mirrored_and_the_terminals_restored(
    daemon: Daemon, on_pty: Any
) -> None:
    sid = daemon.call("start", description="raw")["id"]
    terminal = on_pty(daemon, [*CLIENT_CMD, "run", "--", sys.executable, "-c", RAW_CHILD])
    terminal.wait_for(b"raw\r")
    mode = termios.tcgetattr(terminal.slave)
    assert not mode[3] & (termios.ICANON | termios.ECHO | termios.ISIG), "the real terminal is raw while the program is"
    assert mode[1] == terminal.mode[1] and mode[2] == terminal.mode[2], "its output and hardware flags are left as they were"
    terminal.type(b"x")  # no Enter: a raw read takes one key, unechoed
    terminal.wait_for(b"cooked")
    terminal.type(b"a line\r")  # canonical again: the line as typed, echoed by the terminal
    terminal.wait_for(b"silent")
    # The program left its pty without echo: mirrored, and restored when it ended.
    assert terminal.finish() == 0
    shown = bytes(terminal.output)
    assert re.search(rb"raw\r+\nkey b'x', cooked\r\na line\r\nline 'a line\\n', silent\r\n", shown), shown
    assert termios.tcgetattr(terminal.slave) == terminal.mode, "the terminal's mode is as it was"
    assert _only_command(daemon, sid)["exit_code"] == 0


def test_on_a_terminal_with_input_from_a_file_the_command_reads_the_file(daemon: Daemon, on_pty: Any, tmp_path: Path) -> None:
    sid = daemon.call("start", description="<file")["id"]
    given = tmp_path / "input"
    given.write_text("from the file\n")
    script = f"exec {shlex.join(CLIENT_CMD)} run -- sh -c 'read line; echo \"read: $line\"' <'{given}'"
    terminal = on_pty(daemon, ["sh", "-c", script])
    assert terminal.finish() == 0
    assert b"read: from the file\r\n" in terminal.output
    assert _only_command(daemon, sid)["output"] == "read: from the file\n"
    assert termios.tcgetattr(terminal.slave) == terminal.mode


def test_on_a_terminal_with_errors_redirected_they_go_to_the_file(daemon: Daemon, on_pty: Any, tmp_path: Path) -> None:
    sid = daemon.call("start", description="2>file")["id"]
    errors = tmp_path / "errors"
    script = f"exec {shlex.join(CLIENT_CMD)} run -- sh -c 'echo out; echo err >&2' 2>'{errors}'"
    terminal = on_pty(daemon, ["sh", "-c", script])
    assert terminal.finish() == 0
    assert errors.read_text() == "err\n" and b"out\r\n" in terminal.output and b"err" not in terminal.output
    command = _only_command(daemon, sid)
    assert command["output"] in ("out\nerr\n", "err\nout\n"), "both, each as it came"
