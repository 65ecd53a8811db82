"""One definition of where the data root and the socket are: the daemon (from its configuration),
the client and the hooks agree, whatever DOCPILOT_HOME, the config file and XDG_RUNTIME_DIR say."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from docpilotd import config, paths
from docpilotd.client import hooks, transport


@pytest.fixture
def tmp_home(monkeypatch: pytest.MonkeyPatch) -> Path:
    # Short: socket paths are limited to about 100 bytes.
    root = Path(tempfile.mkdtemp(prefix="dpp-", dir="/tmp"))
    for name in ("DOCPILOT_HOME", "DOCPILOT_CONFIG", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(root))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "xdg"))
    return root


def _write_config(root: Path, data_dir: Path) -> None:
    (root / "xdg" / "docpilot").mkdir(parents=True, exist_ok=True)
    (root / "xdg" / "docpilot" / "docpilotd.toml").write_text(f'data_dir = "{data_dir}"\n')


@pytest.mark.parametrize("case", ["defaults", "data_dir in the config", "DOCPILOT_HOME", "both", "private runtime dir"])
def test_daemon_client_and_hooks_agree(tmp_home: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    if case in ("data_dir in the config", "both", "private runtime dir"):
        _write_config(tmp_home, tmp_home / "configured")
    if case in ("DOCPILOT_HOME", "both"):
        monkeypatch.setenv("DOCPILOT_HOME", str(tmp_home / "env-home"))
    if case == "private runtime dir":
        runtime = tmp_home / "runtime"
        runtime.mkdir(mode=0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    daemon_layout = paths.layout_for(config.load().home)
    assert transport.socket_path() == str(daemon_layout.socket)
    assert hooks.data_root() == daemon_layout.root
    assert f"{daemon_layout.root / 'spool'}" in hooks.hook_script("bash")


def test_a_configured_data_dir_without_a_runtime_dir_is_reached_by_the_client(tmp_home: Path) -> None:
    data = tmp_home / "configured"
    _write_config(tmp_home, data)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCPILOT_", "XDG_RUNTIME"))}
    env.update(HOME=str(tmp_home), XDG_CONFIG_HOME=str(tmp_home / "xdg"))
    daemon = subprocess.Popen([sys.executable, "-m", "docpilotd.admin", "run"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            done = subprocess.run([sys.executable, "-m", "docpilotd.client.cli", "status"], env=env, capture_output=True, text=True)
            if done.returncode == 0:
                break
            assert daemon.poll() is None, daemon.stderr.read().decode() if daemon.stderr else ""
            time.sleep(0.05)
        assert done.returncode == 0, done.stderr
        assert (data / "run" / "docpilotd.sock").exists()
    finally:
        daemon.terminate()
        daemon.wait(30)
