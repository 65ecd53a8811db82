"""`docpilotd service install` end to end under a real systemd user manager.

The test starts its own `systemd --user` with a temporary HOME and XDG_RUNTIME_DIR, so the user's
own manager is never touched. systemd refuses to run a user instance unless the machine was booted
with systemd (/run/systemd/system exists); on a machine (or container) that was not, the manager
runs in a private mount namespace whose /run/systemd is an empty tmpfs holding that directory.
That needs root; without root, or without systemd, the test is skipped with the reason.

What it shows with the real manager: Type=notify start (systemctl start returns once READY=1
came), the hardening applied (seccomp, no_new_privs) while the daemon serves, restart after
kill -9, a clean stop (exit 0, final save), socket activation surviving a service stop, data roots
with spaces, `$` and `%` in their path, and an uninstall that leaves no unit behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import short_dir, wait_for

SYSTEMD = next((p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or SYSTEMD is None or shutil.which("systemctl") is None,
    reason="needs Linux with systemd and systemctl",
)


class UserManager:
    def __init__(self, base: Path) -> None:
        self.home = base / "home"
        self.runtime = base / "rt"
        self.home.mkdir()
        self.runtime.mkdir(mode=0o700)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert SYSTEMD is not None
        if os.path.isdir("/run/systemd/system"):
            argv = [SYSTEMD, "--user"]
        else:
            if os.geteuid() != 0 or shutil.which("unshare") is None or not os.path.isdir("/run/systemd"):
                pytest.skip("not booted with systemd, and giving a user manager its own /run/systemd needs root")
            script = 'mount -t tmpfs -o mode=755 tmpfs /run/systemd && mkdir /run/systemd/system && exec "$0" --user'
            argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, SYSTEMD]
        self.log = open(self.home.parent / "manager.log", "wb")
        self.proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while self.systemctl("show-environment", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = (self.home.parent / "manager.log").read_text(errors="replace")[-400:]
                pytest.skip(f"could not start a systemd user manager here: {text or 'no output'}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a user manager stops its units, then exits
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["systemctl", "--user", *args], env=self.env, capture_output=True, text=True, timeout=60)
        assert not check or done.returncode == 0, f"systemctl --user {' '.join(args)}: {done.stderr}"
        return done

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def run(self, *argv: str, **extra: str) -> tuple[int, str, str]:
        done = subprocess.run(list(argv), env={**self.env, **extra}, capture_output=True, text=True, timeout=120,
                              cwd=str(self.home))
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout, done.stderr

    def service(self, *args: str, **extra: str) -> tuple[int, str, str]:
        return self.run(sys.executable, "-m", "docpilotd.admin", "service", *args, **extra)

    def client(self, *args: str, **extra: str) -> tuple[int, str, str]:
        return self.run(sys.executable, "-m", "docpilotd.client.cli", *args, **extra)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[UserManager]:
    base = short_dir(tmp_path)
    um = UserManager(base)
    try:
        um.start()
        yield um
    finally:
        um.stop()
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def _main_pid(um: UserManager) -> int:
    return int(um.show("docpilotd.service", "MainPID")["MainPID"])


def test_install_runs_restarts_stops_and_uninstalls(manager: UserManager) -> None:
    rc, out, err = manager.service("install")
    assert rc == 0, (out, err)
    props = manager.show("docpilotd.service", "ActiveState", "SubState", "StatusText", "WatchdogUSec", "NRestarts")
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    assert props["StatusText"].startswith("serving"), "READY=1 and STATUS= reached the manager"
    assert props["WatchdogUSec"] == "30s"
    pid = _main_pid(manager)
    status = Path(f"/proc/{pid}/status").read_text()
    assert "NoNewPrivs:\t1" in status and "Seccomp:\t2" in status, "the unit's hardening is applied"

    rc, out, err = manager.client("start", "kept by systemd")
    assert rc == 0, err
    sid = out.strip()
    assert manager.client("note", "survives kill -9")[0] == 0
    rc, out, err = manager.service("status")
    assert rc == 0 and f"pid {pid}" in out, (out, err)

    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _main_pid(manager) not in (0, pid) and manager.client("status")[0] == 0, timeout=20,
             what="systemd to restart docpilotd after kill -9")
    assert manager.show("docpilotd.service", "NRestarts")["NRestarts"] == "1"
    rc, out, err = manager.client("status")
    assert "kept by systemd" in out and "1 annotations" in out, out

    manager.systemctl("stop", "docpilotd.service")
    props = manager.show("docpilotd.service", "Result", "ExecMainStatus", "ActiveState")
    assert props == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}, props
    saved = manager.home / ".docpilot" / "sessions" / f"{sid}.json"
    assert b"survives kill -9" in saved.read_bytes(), "the final save ran before exit 0"

    rc, out, err = manager.service("uninstall")
    assert rc == 0, err
    assert manager.show("docpilotd.service", "LoadState")["LoadState"] == "not-found"
    unit_dir = manager.home / ".config" / "systemd" / "user"
    assert [p for p in unit_dir.rglob("*") if not p.is_dir()] == []
    assert saved.exists(), "the data root is kept"


def test_socket_activation_and_an_odd_data_root(manager: UserManager) -> None:
    data = str(manager.home.parent / "d $x %y")
    rc, out, err = manager.service("install", "--socket", DOCPILOT_HOME=data)
    assert rc == 0, (out, err)
    sock = Path(data) / "run" / "docpilotd.sock"
    assert manager.show("docpilotd.socket", "ActiveState")["ActiveState"] == "active"
    assert manager.client("start", "via the socket unit", DOCPILOT_HOME=data)[0] == 0
    inode = sock.stat().st_ino
    first = _main_pid(manager)

    manager.systemctl("stop", "docpilotd.service")
    assert sock.exists() and sock.stat().st_ino == inode, "stopping the daemon leaves the manager's socket"
    rc, out, err = manager.client("status", DOCPILOT_HOME=data)  # this connection starts it again
    assert rc == 0 and "via the socket unit" in out, err
    assert _main_pid(manager) not in (0, first)

    rc, out, err = manager.service("uninstall")
    assert rc == 0, err
    assert manager.show("docpilotd.socket", "LoadState")["LoadState"] == "not-found"
    assert not sock.exists(), "RemoveOnStop= removes the socket with its unit"


def test_docpilotd_stop_goes_through_the_manager_and_doctor_sees_the_service(manager: UserManager) -> None:
    rc, out, err = manager.service("install")
    assert rc == 0, (out, err)
    pid = _main_pid(manager)
    rc, out, err = manager.client("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["service"]["status"] == "ok" and "installed and active" in checks["service"]["message"], checks
    assert checks["daemon"]["status"] == "ok" and f"pid {pid}" in checks["daemon"]["message"]

    rc, out, err = manager.run(sys.executable, "-m", "docpilotd.admin", "stop")
    assert rc == 0 and f"docpilotd (pid {pid}) stopped: stopped docpilotd.service through systemd" in out, (out, err)
    props = manager.show("docpilotd.service", "ActiveState", "Result", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, props
    time.sleep(3)  # RestartSec=2: a stop the manager did not know of would have been restarted by now
    assert _main_pid(manager) == 0

    rc, out, err = manager.client("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["service"]["status"] == "warn" and "installed but not active" in checks["service"]["message"]
    assert "systemctl --user start docpilotd" in checks["service"]["fix"]
    assert checks["daemon"]["status"] == "fail"
    rc, out, err = manager.run(sys.executable, "-m", "docpilotd.admin", "stop")
    assert rc == 3 and "nothing to stop" in err, err
    assert manager.service("uninstall")[0] == 0
