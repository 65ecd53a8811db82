"""`docpilotd service install|uninstall|status` against a temporary home, with the real
systemctl/launchctl and no service manager reachable (no XDG_RUNTIME_DIR, no session bus): the
files are written or removed exactly, the manager is not touched, and the command says so in one
line with exit status 11. tests/service/test_user_manager.py does the same with a real manager.
"""

from __future__ import annotations

import io
import os
import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from docpilotd import service
from docpilotd.errors import ServiceError, ServiceManagerUnreachable, UsageError

UNREACHABLE = 11
_SCRUB = ("DOCPILOT_", "XDG_", "DBUS_", "NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _cli(home: Path, *args: str, **extra: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "docpilotd.admin", "service", *args], env=_env(home, **extra),
        capture_output=True, text=True, timeout=60, cwd=str(home),
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def _unit_dir(home: Path) -> Path:
    return home / ".config" / "systemd" / "user"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd user units are Linux only")
def test_install_status_uninstall_without_a_reachable_manager(home: Path) -> None:
    rc, out, err = _cli(home, "status")
    assert rc == 1 and "not installed" in out, (rc, out, err)

    rc, out, err = _cli(home, "install")
    unit = _unit_dir(home) / "docpilotd.service"
    assert rc == UNREACHABLE, (rc, out, err)
    assert err.count("\n") == 1 and err.startswith("docpilotd: "), err
    assert "no systemd user manager is reachable" in err
    assert "systemctl --user daemon-reload && systemctl --user enable --now docpilotd.service" in err
    expected = service.render_unit(service.systemd_command_line([*service.daemon_command(), "run"]))
    assert unit.read_text() == expected
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert not (_unit_dir(home) / "docpilotd.socket").exists()
    assert not (home / ".docpilot").exists(), "installing touches no data"

    rc, out, err = _cli(home, "status")
    assert rc == UNREACHABLE and f"{unit}: installed" in out and "cannot ask the service manager" in err

    rc, out, err = _cli(home, "install", "--socket")
    assert rc == UNREACHABLE and "enable --now docpilotd.socket docpilotd.service" in err
    assert (_unit_dir(home) / "docpilotd.socket").read_text() == service.render_socket(service.RUNTIME_SOCKET)
    rc, out, err = _cli(home, "install")
    assert rc == UNREACHABLE and not (_unit_dir(home) / "docpilotd.socket").exists(), "reinstalling without --socket"

    rc, out, err = _cli(home, "uninstall")
    assert rc == UNREACHABLE and f"removed {unit}" in out and "may still run" in err
    assert not unit.exists() and list(_unit_dir(home).iterdir()) == []
    rc, out, err = _cli(home, "uninstall")
    assert rc == 0 and "nothing to remove" in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd user units are Linux only")
def test_uninstall_removes_what_systemctl_enable_left(home: Path) -> None:
    """Where systemctl works on the files alone (no systemd as init), `enable` leaves links that
    uninstall must not leave dangling, even when no manager answers."""
    _cli(home, "install", "--socket")
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        pytest.skip("systemctl is not installed")
    for unit in ("docpilotd.service", "docpilotd.socket"):
        done = subprocess.run([systemctl, "--user", "enable", unit], env=_env(home), capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"systemctl --user enable needs a manager here: {done.stderr.strip()}")
    links = [p for p in _unit_dir(home).rglob("docpilotd.*") if p.is_symlink()]
    assert {p.parent.name for p in links} == {"default.target.wants", "sockets.target.wants"}
    rc, _out, err = _cli(home, "uninstall")
    assert rc in (0, UNREACHABLE), err
    assert [p for p in _unit_dir(home).rglob("*") if p.is_file() or p.is_symlink()] == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd user units are Linux only")
def test_a_custom_data_root_and_config_go_into_the_unit(home: Path, tmp_path: Path) -> None:
    data, config = tmp_path / "data root", tmp_path / "my.toml"
    config.write_text("")
    rc, _, err = _cli(home, "install", "--socket", "--home", str(data), "--config", str(config))
    assert rc == UNREACHABLE, err
    unit = (_unit_dir(home) / "docpilotd.service").read_text()
    assert f'run --home "{data}" --config {config}\n' in unit
    assert f"ListenStream={data}/run/docpilotd.sock\n" in (_unit_dir(home) / "docpilotd.socket").read_text()
    rc, _out, err = _cli(home, "install", DOCPILOT_HOME=str(data))
    assert rc == UNREACHABLE and f'run --home "{data}"\n' in (_unit_dir(home) / "docpilotd.service").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd user units are Linux only")
def test_files_somebody_else_wrote_are_left_alone(home: Path) -> None:
    unit = _unit_dir(home) / "docpilotd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/true\n")
    for action in ("install", "uninstall"):
        rc, out, err = _cli(home, action)
        assert rc == ServiceError.exit_code and "not written by docpilotd" in err, (action, rc, err)
        assert unit.read_text() == "[Service]\nExecStart=/usr/bin/true\n"
    rc, out, err = _cli(home, "status")
    assert "present, not written by docpilotd" in out


@pytest.mark.skipif(sys.platform == "darwin", reason="launchctl here would load a real LaunchAgent for this user")
def test_launchagent_install_and_uninstall_where_launchctl_is_missing(home: Path) -> None:
    target = service.this_target(platform="launchd", env={"HOME": str(home)})
    out = io.StringIO()
    with pytest.raises(ServiceManagerUnreachable) as info:
        service.install(target, out)
    assert "launchctl" in info.value.message and "\n" not in info.value.message
    plist = plistlib.loads(target.plist.read_bytes())
    assert plist["ProgramArguments"] == list(target.command) and plist["RunAtLoad"] is True
    assert target.log_file.parent.is_dir() and stat.S_IMODE(target.log_file.parent.stat().st_mode) == 0o700
    with pytest.raises(ServiceManagerUnreachable):
        service.status(target, out)
    with pytest.raises(ServiceManagerUnreachable):
        service.uninstall(target, out)
    assert not target.plist.exists() and target.log_file.parent.is_dir(), "logs are kept"
    assert service.uninstall(target, out) == 0


def test_an_unsupported_platform_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(UsageError):
        service.detect_platform()
