"""`docpilotd fsck` as a person runs it: a real process, a real data root, readable output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docpilotd.paths import Layout
from docpilotd.storage.lock import DataLock
from docpilotd.storage.store import SessionStore
from tests.conftest import build_session, tree_bytes


def fsck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "docpilotd.admin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env if env is not None else dict(os.environ),
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout
    return result


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def damaged_tree(store: SessionStore) -> tuple[str, str]:
    """Two sessions saved twice; the main file of the first torn in half. Returns (torn, fine)."""
    torn, fine = build_session(commands=4), build_session(commands=2)
    for session in (torn, fine):
        store.save(session, 1)
        store.save(session, 2)
    main = store.layout.session_file(torn.id)
    main.write_bytes(main.read_bytes()[:300])
    return torn.id, fine.id


def test_check_reports_problems_changes_nothing_and_repair_fixes_them(store: SessionStore, layout: Layout) -> None:
    torn, fine = damaged_tree(store)
    before = tree_bytes(layout.root)

    check = fsck("fsck")
    assert check.returncode == 1, check
    out = check.stdout
    assert "check only, nothing changed" in out
    assert f"{torn}  needs repair" in out and f"{fine}  ok" in out
    assert f"problem: sessions/{torn}.json: not valid JSON" in out
    assert f"would restore sessions/{torn}.json from backups/{torn}_" in out
    assert "problems found (run 'docpilotd fsck --repair')" in out
    assert check.stderr == ""
    assert tree_bytes(layout.root) == before

    repair = fsck("fsck", "--repair")
    assert repair.returncode == 0, repair
    assert f"{torn}  repaired" in repair.stdout
    assert f"restored sessions/{torn}.json from backups/{torn}_" in repair.stdout
    assert "everything in sessions/ is valid" in repair.stdout
    assert store.read(layout.session_file(torn)).usable
    assert any(p.name.endswith(f"{torn}.json.reason") for p in layout.quarantine.iterdir())

    again = fsck("fsck")
    assert again.returncode == 0, again
    assert "2 sessions: 2 ok; healthy" in again.stdout


def test_json_report_names_each_session(store: SessionStore, layout: Layout) -> None:
    torn, fine = damaged_tree(store)
    result = fsck("fsck", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["healthy"] is False and report["repair"] is False
    assert report["root"] == str(layout.root)
    by_id = {s["session_id"]: s for s in report["sessions"]}
    assert set(by_id) == {torn, fine}
    assert by_id[torn]["status"] == "needs_repair" and by_id[fine]["status"] == "ok"
    assert by_id[torn]["source"].startswith(f"backups/{torn}_")
    assert any("not valid JSON" in p for p in by_id[torn]["problems"])
    assert by_id[fine]["commands"] == 2

    repaired = json.loads(fsck("fsck", "--repair", "--json").stdout)
    assert {s["session_id"]: s["status"] for s in repaired["sessions"]} == {torn: "repaired", fine: "ok"}
    assert json.loads(fsck("fsck", "--json").stdout)["healthy"] is True


def test_unrecoverable_session_after_repair_exits_1(store: SessionStore, layout: Layout) -> None:
    sid = build_session().id
    layout.session_file(sid).write_bytes(b"\x00" * 512)
    result = fsck("fsck", "--repair")
    assert result.returncode == 1
    assert f"{sid}  unrecoverable" in result.stdout
    assert "lost: no usable copy of this session was found" in result.stdout
    assert "problems remain" in result.stdout
    assert not layout.session_file(sid).exists()
    assert b"\x00" * 512 in [p.read_bytes() for p in layout.quarantine.iterdir()]


def test_a_nonexistent_home_is_reported_without_creating_it(home: Path) -> None:
    assert not home.exists()
    result = fsck("fsck")
    # Not "healthy": a data root that is not there is most often a mistyped DOCPILOT_HOME.
    assert result.returncode == 4 and "healthy" not in result.stdout
    line = one_line(result.stderr)
    assert line.startswith("docpilotd: no data root at ") and str(home) in line
    assert not home.exists()
    home.mkdir(parents=True)
    result = fsck("fsck")
    assert result.returncode == 0 and "0 sessions: no sessions; healthy" in result.stdout


def test_a_home_that_is_a_file_is_one_error_line(home: Path) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("oops")
    result = fsck("fsck")
    assert result.returncode == 2  # its config file cannot be read: the first thing that fails
    line = one_line(result.stderr)
    assert line.startswith("docpilotd: ") and str(home) in line and "Not a directory" in line


def test_a_data_dir_entry_that_is_a_file_is_one_error_line(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "sessions").write_text("not a directory")
    result = fsck("fsck")
    assert result.returncode == 10
    assert one_line(result.stderr) == f"docpilotd: Not a directory: {home / 'sessions'}"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("bogus = 1\n", "unknown key 'bogus'"), ("backups_kept = 0\n", "'backups_kept'"), ("[x\n", "not valid TOML")],
)
def test_an_invalid_config_file_is_one_line_and_exit_2(home: Path, content: str, fragment: str) -> None:
    home.mkdir(parents=True)
    (home / "docpilotd.toml").write_text(content)
    result = fsck("fsck")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("docpilotd: ") and fragment in line and str(home / "docpilotd.toml") in line
    assert result.stdout == ""


def test_a_missing_named_config_file(home: Path, tmp_path: Path) -> None:
    result = fsck("fsck", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == 2
    assert "config file not found" in one_line(result.stderr)


@pytest.mark.parametrize(
    "args",
    [["fsck", "--bogus"], ["fsck", "--repair=yes"], ["frobnicate"], ["fsck", "extra"], ["--nope"]],
)
def test_bad_flags_exit_2_with_one_line(home: Path, args: list[str]) -> None:
    result = fsck(*args)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("docpilotd: ") and "docpilotd --help" in line
    assert result.stdout == ""


def test_repair_while_the_lock_is_held_exits_3(store: SessionStore, layout: Layout) -> None:
    torn, _ = damaged_tree(store)
    before = tree_bytes(layout.root)
    lock = DataLock(layout.lock)
    lock.acquire()
    try:
        result = fsck("fsck", "--repair")
        # A check only reads: it still runs while the daemon (or anyone) holds the lock.
        check = fsck("fsck")
    finally:
        lock.release()
    assert result.returncode == 3
    line = one_line(result.stderr)
    assert f"pid {os.getpid()}" in line and "stop the daemon first" in line
    assert result.stdout == ""
    assert check.returncode == 1 and torn in check.stdout
    assert {k: v for k, v in tree_bytes(layout.root).items() if not k.startswith("run")} == {
        k: v for k, v in before.items() if not k.startswith("run")
    }
    assert fsck("fsck", "--repair").returncode == 0  # once the lock is free


def test_home_flag_overrides_the_environment(store: SessionStore, layout: Layout, tmp_path: Path) -> None:
    damaged_tree(store)
    other = tmp_path / "other-home"
    other.mkdir()
    result = fsck("fsck", "--home", str(other))
    assert result.returncode == 0 and str(other) in result.stdout


def test_installed_script_runs(home: Path) -> None:
    """The `docpilotd` entry point, as a new user would type it."""
    script = Path(sys.executable).parent / "docpilotd"
    if not script.exists():
        pytest.skip("the docpilotd script is not installed beside this interpreter")
    home.mkdir(parents=True)
    result = subprocess.run([str(script), "fsck"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "healthy" in result.stdout
    assert "Traceback" not in result.stderr
