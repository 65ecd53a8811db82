"""The unit files and the LaunchAgent: what is shipped, what `install` renders, and what the real
tools say about them (`systemd-analyze verify`, strace against the unit's system call filter)."""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from docpilotd import service
from docpilotd.errors import ConfigError, UsageError
from tests.daemon_harness import DAEMON_CMD, REPO, DaemonFactory, wait_for

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
# Sandboxing that needs mount or user namespaces, or privileges a user manager lacks.
NEEDS_PRIVILEGES = (
    "PrivateTmp", "ProtectSystem", "ProtectHome", "PrivateUsers", "PrivateDevices", "PrivateNetwork",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "CapabilityBoundingSet",
    "ReadWritePaths", "ProtectProc", "IPAddressDeny",
)


def _target(tmp_path: Path, **env: str) -> service.Target:
    return service.this_target(env={"HOME": str(tmp_path / "home"), **env})


def _directives(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found[key] = value
    return found


def _verify(tmp_path: Path, *units: Path, home: Path | None = None) -> str:
    """`systemd-analyze --user verify`: everything it prints (it exits 0 even on unknown keys)."""
    assert ANALYZE is not None
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "XDG_RUNTIME_DIR": str(runtime),
           "HOME": str(home or tmp_path / "home"), "SYSTEMD_LOG_COLOR": "0"}
    done = subprocess.run([ANALYZE, "--user", "verify", *map(str, units)], env=env, capture_output=True,
                          text=True, timeout=60)
    return f"exit {done.returncode}: {done.stdout}{done.stderr}" if done.returncode or done.stdout or done.stderr else ""


def test_shipped_files_are_the_rendered_ones() -> None:
    # If this fails after changing service.py, regenerate them:
    #   python3 -c 'from docpilotd.service import examples; [open(p, "wb").write(b) for p, b in examples().items()]'
    for relative, data in service.examples().items():
        assert (REPO / relative).read_bytes() == data, f"{relative} differs from docpilotd.service.examples()"


def test_the_unit_runs_this_installation(tmp_path: Path) -> None:
    target = _target(tmp_path)
    command = list(target.command)
    assert os.path.isabs(command[0]) and command[-1] == "run"
    assert command[0] == sys.executable or os.path.realpath(
        open(command[0], "rb").readline()[2:].split()[0].decode()
    ) == os.path.realpath(sys.executable), f"{command[0]} is not run by this interpreter"
    version = subprocess.run([*command[:-1], "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("docpilotd "), version
    unit = service.render_unit(service.systemd_command_line(command))
    assert _directives(unit)["ExecStart"] == service.systemd_command_line(command)


def test_unit_settings() -> None:
    unit = _directives(service.render_unit("/usr/bin/docpilotd run"))
    assert unit["Type"] == "notify" and unit["NotifyAccess"] == "main"
    assert unit["Restart"] == "on-failure"
    assert int(unit["WatchdogSec"]) >= 10
    assert int(unit["TimeoutStopSec"]) >= 60, "the final save needs time after SIGTERM"
    assert unit["WantedBy"] == "default.target"
    assert unit["NoNewPrivileges"] == "yes" and unit["RestrictAddressFamilies"] == "AF_UNIX"
    assert not set(unit) & set(NEEDS_PRIVILEGES), "options a user manager cannot apply"
    socket_unit = _directives(service.render_socket(service.RUNTIME_SOCKET))
    assert socket_unit["SocketMode"] == "0600" and socket_unit["DirectoryMode"] == "0700"
    assert socket_unit["ListenStream"] == "%t/docpilot/docpilotd.sock"


@needs_analyze
def test_systemd_analyze_verifies_the_units_for_this_installation(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    for path, data in service.rendered(_target(tmp_path), socket=True).items():
        (unit_dir / path.name).write_bytes(data)
    assert _verify(tmp_path, unit_dir / service.UNIT, unit_dir / service.SOCKET_UNIT) == ""


@needs_analyze
def test_systemd_analyze_verifies_the_shipped_units(tmp_path: Path) -> None:
    # The shipped unit runs %h/.local/bin/docpilotd (pip install --user, pipx): give it one.
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "docpilotd").symlink_to(service.daemon_command()[0])
    shipped = [REPO / "systemd" / service.UNIT, REPO / "systemd" / service.SOCKET_UNIT]
    assert _verify(tmp_path, *shipped, home=home) == ""
    missing = _verify(tmp_path, *shipped, home=tmp_path / "nobody")
    assert "is not executable" in missing, "verify must notice a missing docpilotd, or this test proves nothing"


@needs_analyze
def test_paths_with_spaces_and_specifier_characters_are_quoted(tmp_path: Path) -> None:
    odd = tmp_path / "my bin %h $HOME"
    odd.mkdir()
    (odd / "docpilotd").symlink_to(service.daemon_command()[0])
    line = service.systemd_command_line([str(odd / "docpilotd"), "run", "--home", "/data/a b/%n/$USER"])
    assert line.startswith('"') and "%%h $HOME" in line and "$$USER" in line
    (tmp_path / service.UNIT).write_text(service.render_unit(line))
    # verify resolves the executable: it finds it only if the quoting parses back to the path.
    assert _verify(tmp_path, tmp_path / service.UNIT) == ""
    with pytest.raises(UsageError):
        service.systemd_command_line(["/bin/x", "line\nbreak"])


def test_a_custom_data_root_goes_into_the_command_and_the_socket_unit(tmp_path: Path) -> None:
    root = tmp_path / "data"
    target = _target(tmp_path, DOCPILOT_HOME=str(root))
    assert list(target.command[-3:]) == ["run", "--home", str(root)]
    assert target.listen == str(root / "run" / "docpilotd.sock")
    with pytest.raises(ConfigError):
        _target(tmp_path, DOCPILOT_HOME="/" + "x" * 100)


def test_launchagent_plist(tmp_path: Path) -> None:
    target = service.this_target(platform="launchd", env={"HOME": str(tmp_path / "home")})
    [(path, data)] = service.rendered(target, socket=False).items()
    assert path == tmp_path / "home" / "Library" / "LaunchAgents" / "com.docpilot.docpilotd.plist"
    plist = plistlib.loads(data)
    assert plist["Label"] == "com.docpilot.docpilotd"
    assert plist["ProgramArguments"] == list(target.command) and plist["ProgramArguments"][-1] == "run"
    assert os.path.isabs(plist["ProgramArguments"][0])
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}, "restart after a crash, not after a clean stop"
    log = str(tmp_path / "home" / "Library" / "Logs" / "docpilotd" / "docpilotd.log")
    assert plist["StandardOutPath"] == log and plist["StandardErrorPath"] == log
    assert plist["ExitTimeOut"] >= 60 and plist["Umask"] == 0o077
    assert service.MARKER.encode() in data
    shipped = plistlib.loads((REPO / "launchd" / "com.docpilot.docpilotd.plist").read_bytes())
    assert shipped["ProgramArguments"][-1] == "run" and shipped["KeepAlive"] == {"SuccessfulExit": False}
    plutil = shutil.which("plutil")
    if plutil and sys.platform == "darwin":  # pragma: no cover - macOS only
        (tmp_path / "a.plist").write_bytes(data)
        assert subprocess.run([plutil, "-lint", str(tmp_path / "a.plist")], capture_output=True).returncode == 0


@needs_analyze
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_daemon_stays_within_the_units_system_call_filter(daemons: DaemonFactory, tmp_path: Path) -> None:
    """Every system call of a daemon's whole life (recovery, requests, fsync, autosave, SIGHUP,
    SIGTERM) is in @system-service, and it opens AF_UNIX sockets only: with the unit's
    SystemCallFilter= and RestrictAddressFamilies= nothing it does is refused."""
    allowed = _syscall_group("@system-service")
    d = daemons(start=False, env={"DOCPILOT_AUTOSAVE_INTERVAL": "0.3"})
    trace = tmp_path / "trace"
    log = open(d.log_path, "ab")
    try:
        proc = subprocess.Popen(["strace", "-f", "-qq", "-o", str(trace), *DAEMON_CMD], env=d.env(),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(d.home.parent))
    finally:
        log.close()
    d.proc = proc  # killed by the fixture if the test fails
    hello = wait_for(lambda: d._try_hello() or (proc.poll() is not None and {"dead": True}), timeout=30,
                     what="the traced daemon to answer")
    if "dead" in hello:
        pytest.skip(f"strace cannot trace here: {d.log()[-300:]}")
    pid = hello["result"]["pid"]
    sid = d.call("start", description="traced")["id"]
    d.call("annotate", session=sid, text="a note")
    d.call("record", session=sid, command="make", exit_code=0)
    d.call("save")
    d.call("backups", session=sid)
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in d.log(), what="SIGHUP to be handled")
    os.kill(pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, d.log()
    text = trace.read_text()
    used = set(re.findall(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)\(", text, re.MULTILINE))
    assert {"fsync", "flock", "accept4"} <= used | {"fdatasync"}, "the trace must cover the real work"
    assert used - allowed == set(), f"system calls outside @system-service: {sorted(used - allowed)}"
    families = set(re.findall(r"socket\((AF_[A-Z0-9]+)", text))
    assert families == {"AF_UNIX"}, families


def _syscall_group(name: str) -> set[str]:
    assert ANALYZE is not None
    out = subprocess.run([ANALYZE, "syscall-filter"], capture_output=True, text=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current = ""
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.strip()
            groups[current] = []
        elif line.strip() and not line.strip().startswith("#") and current:
            groups[current].append(line.strip())

    def expand(group: str) -> set[str]:
        found: set[str] = set()
        for item in groups.get(group, []):
            found |= expand(item) if item.startswith("@") else {item}
        return found

    result = expand(name)
    assert len(result) > 100, f"could not read {name} from systemd-analyze syscall-filter"
    return result
