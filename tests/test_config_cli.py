"""`docpilotd config [--json]`: the effective configuration, each value with where it came from
(default, the config file and its path, an environment variable, a command-line flag), by the
precedence config.load uses; and `--version` of both commands. Through the real commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import docpilotd
from docpilotd import config

ADMIN = (sys.executable, "-m", "docpilotd.admin")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCPILOT_", "XDG_"))}
    env.update(XDG_CONFIG_HOME=str(tmp_path / "xdg"), HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def test_each_value_says_where_it_came_from(tmp_path: Path) -> None:
    cfg = tmp_path / "mine.toml"
    cfg.write_text("backups_kept = 7\n[limits]\nread_timeout = 4.5\n")
    home = tmp_path / "data"
    env = _env(tmp_path, DOCPILOT_CONFIG=str(cfg), DOCPILOT_DURABILITY="batch", DOCPILOT_HOME=str(home))

    rc, out, err = _run([*ADMIN, "config", "--json", "--log-level", "debug"], env)
    assert rc == 0, err
    shown = json.loads(out)
    assert shown["config_file"] == str(cfg) and shown["config_file_read"] is True
    assert shown["data_root"] == str(home) and shown["socket"] == str(home / "run" / "docpilotd.sock")
    settings = shown["settings"]
    assert settings["backups_kept"] == {"value": 7, "source": "file", "from": str(cfg)}
    assert settings["limits.read_timeout"] == {"value": 4.5, "source": "file", "from": str(cfg)}
    assert settings["durability"] == {"value": "batch", "source": "environment", "from": "DOCPILOT_DURABILITY"}
    assert settings["data_dir"] == {"value": str(home), "source": "environment", "from": "DOCPILOT_HOME"}
    assert settings["log_level"] == {"value": "debug", "source": "flag", "from": "--log-level"}
    assert settings["autosave_interval"] == {"value": 30.0, "source": "default", "from": None}
    assert settings["limits.max_line_bytes"]["source"] == "default"
    fields = [*config.Config.__struct_fields__, *(f"limits.{k}" for k in config.Limits.__struct_fields__),
              *(f"retention.{k}" for k in config.RetentionPolicy.__struct_fields__)]
    assert sorted(settings) == sorted(k for k in fields if k not in ("limits", "retention")), \
        "every key, a table's keys dotted"

    rc, out, _ = _run([*ADMIN, "config", "--home", str(tmp_path / "flagged")], env)
    assert rc == 0
    assert f"config file: {cfg}" in out
    lines = {line.split()[0]: line for line in out.splitlines() if " = " in line}
    assert lines["backups_kept"].endswith(f"config file {cfg}") and " 7 " in lines["backups_kept"]
    assert lines["durability"].endswith("environment DOCPILOT_DURABILITY") and '"batch"' in lines["durability"]
    assert lines["data_dir"].endswith("flag --home"), "the flag beats DOCPILOT_HOME"
    assert lines["autosave_interval"].endswith("default")


def test_the_environment_beats_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "mine.toml"
    cfg.write_text('durability = "off"\n')
    env = _env(tmp_path, DOCPILOT_CONFIG=str(cfg), DOCPILOT_DURABILITY="batch")
    shown = json.loads(_run([*ADMIN, "config", "--json"], env)[1])
    assert shown["settings"]["durability"] == {"value": "batch", "source": "environment", "from": "DOCPILOT_DURABILITY"}
    env.pop("DOCPILOT_DURABILITY")
    shown = json.loads(_run([*ADMIN, "config", "--json"], env)[1])
    assert shown["settings"]["durability"] == {"value": "off", "source": "file", "from": str(cfg)}


def test_no_file_and_an_invalid_one(tmp_path: Path) -> None:
    rc, out, _ = _run([*ADMIN, "config"], _env(tmp_path))
    default_file = tmp_path / "xdg" / "docpilot" / "docpilotd.toml"
    assert rc == 0 and f"config file: {default_file} (not there: nothing read from it)" in out
    assert all(line.endswith("default") for line in out.splitlines() if " = " in line)

    cfg = tmp_path / "bad.toml"
    cfg.write_text("backups_kept = 0\n")
    rc, out, err = _run([*ADMIN, "config", "--json"], _env(tmp_path, DOCPILOT_CONFIG=str(cfg)))
    assert rc == 2 and out == "" and err.count("\n") == 1 and "backups_kept" in err and str(cfg) in err, err


@pytest.mark.parametrize("argv, expected", [
    ([*ADMIN, "--version"], f"docpilotd {docpilotd.__version__}\n"),
    ([sys.executable, "-m", "docpilotd.client.entry", "--version"], f"docpilot {docpilotd.__version__}\n"),
    ([sys.executable, "-m", "docpilotd.client.cli", "--version"], f"docpilot {docpilotd.__version__}\n"),
], ids=["docpilotd", "docpilot", "docpilot-full-parser"])
def test_version(tmp_path: Path, argv: list[str], expected: str) -> None:
    rc, out, err = _run(argv, _env(tmp_path))
    assert (rc, out, err) == (0, expected, "")


def test_docpilot_version_stays_cheap() -> None:
    code = ("import sys; sys.argv = ['docpilot', '--version']; from docpilotd.client.entry import main; main(); "
            "print(' '.join(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    modules = set(done.stdout.splitlines()[-1].split())
    assert not {"argparse", "docpilotd.client.cli", "docpilotd.client.verbs"} & modules, "no parser, no verb table"
