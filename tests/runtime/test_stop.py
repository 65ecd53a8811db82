"""`docpilotd run --detach` says where the daemon is (pid, log file) once it serves, and `docpilotd
stop` stops it (SIGTERM to the process that holds the data root's lock, checked to be docpilotd),
waits until it has exited, and says "nothing to stop" (exit 3) when nothing runs. Real processes,
temporary data roots; stopping through systemd is in tests/service/test_user_manager.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, DaemonFactory, wait_for

ADMIN = (sys.executable, "-m", "docpilotd.admin")
NOT_RUNNING = 3
PERMISSION = 9


def _admin(d: Daemon, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    done = subprocess.run([*ADMIN, *args], env=d.env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=str(d.home.parent))
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.fixture
def detached(daemons: DaemonFactory) -> Iterator[Daemon]:
    """A data root for detached daemons; one still running at the end is killed."""
    d = daemons(start=False)
    yield d
    lock = d.home / "run" / "docpilotd.lock"
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return
    if _alive(pid) and "docpilotd" in Path(f"/proc/{pid}/cmdline").read_text():
        os.kill(pid, signal.SIGKILL)


def test_detach_prints_pid_and_log_and_stop_stops_it(detached: Daemon) -> None:
    d = detached
    rc, out, err = _admin(d, "run", "--detach")
    assert rc == 0 and err == "", err
    pid = int(re.search(r"pid (\d+)", out).group(1))  # type: ignore[union-attr]
    log = Path(re.search(r"^log: (.+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert log == d.home / "docpilotd.log" and log.exists()
    assert "docpilotd stop" in out, "and how to stop it"
    assert d.pid_file.read_text().strip() == str(pid) and d.call("hello")["pid"] == pid, "it serves when the command returns"
    rc, status, _ = d.client("status")
    assert rc == 0 and f"log: {log}" in status

    sid = d.client("start", "stopped by docpilotd stop")[1].strip()
    assert d.client("note", "saved before it exits")[0] == 0
    rc, out, err = _admin(d, "stop")
    assert rc == 0 and f"docpilotd (pid {pid}) stopped" in out, (out, err)
    assert not _alive(pid), "stop returns once it has exited"
    assert not d.socket_path.exists() and not d.pid_file.exists()
    assert "saved before it exits" in d.session_file(sid).read_text(), "its final save ran"
    assert "final save" in log.read_text()

    rc, out, err = _admin(d, "stop")
    assert rc == NOT_RUNNING and out == "" and err.count("\n") == 1, err
    assert err.startswith("docpilotd: nothing to stop: no docpilotd is running for "), err


def test_stop_when_nothing_ever_ran(daemons: DaemonFactory) -> None:
    d = daemons(start=False, name="never")
    rc, _, err = _admin(d, "stop")
    assert rc == NOT_RUNNING and "nothing to stop" in err and err.count("\n") == 1
    assert not d.home.exists(), "stop creates nothing"


def test_stop_a_daemon_running_in_the_foreground(daemon: Daemon) -> None:
    rc, out, err = _admin(daemon, "stop", "--home", str(daemon.home))
    assert rc == 0 and f"(pid {daemon.pid}) stopped" in out, err
    assert daemon.proc is not None and daemon.proc.wait(timeout=10) == 0, "a clean exit after SIGTERM"
    assert not daemon.socket_path.exists()


def test_stop_waits_at_most_its_timeout_and_leaves_the_daemon_be(daemon: Daemon) -> None:
    daemon.send_signal(signal.SIGSTOP)  # a daemon that cannot finish now
    try:
        rc, _, err = _admin(daemon, "stop", "--timeout", "1")
    finally:
        daemon.send_signal(signal.SIGCONT)
    assert rc == NOT_RUNNING and "has not exited 1 s after it was asked to stop" in err and err.count("\n") == 1, err
    assert daemon.proc is not None and daemon.proc.wait(timeout=20) == 0, "the SIGTERM it got is handled once it runs"


def test_stop_signals_only_docpilotd(daemons: DaemonFactory) -> None:
    """A process that is not docpilotd holding the lock (whatever put it there) is left alone."""
    d = daemons(start=False)
    (d.home / "run").mkdir(parents=True, mode=0o700)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(os.environ['LOCK'], os.O_RDWR | os.O_CREAT, 0o600)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid()); print('held', flush=True)\n"
         "time.sleep(60)"],
        env={**d.env(), "LOCK": str(d.home / "run" / "docpilotd.lock")}, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        rc, _, err = _admin(d, "stop")
        assert rc == PERMISSION and f"pid {holder.pid} holds" in err and "not docpilotd" in err, err
        assert holder.poll() is None, "not signalled"
    finally:
        holder.kill()
        holder.wait()


def test_detach_reports_an_error_after_detaching(detached: Daemon) -> None:
    d = detached
    (d.home / "run" / "docpilotd.sock" / "x").mkdir(parents=True)  # the socket's path is taken
    rc, out, err = _admin(d, "run", "--detach")
    assert rc == 10 and out == "" and err.count("\n") == 1, (rc, out, err)
    assert err.startswith("docpilotd: ") and str(d.socket_path) in err, err
    wait_for(lambda: not (d.home / "run" / "docpilotd.pid").exists(), 10, what="the failed daemon to clean up")
