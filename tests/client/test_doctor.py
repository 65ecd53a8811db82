"""`docpilot doctor`: through the real client against a real daemon in a temporary data root.

A healthy setup passes every check (exit 0); each problem a newcomer meets (no daemon, a socket
directory others can enter, a DOCPILOT_SESSION left from a stopped or purged session, a config
error, a shell without the hooks, DOCPILOT_HOME pointing nowhere) is one FAIL line naming the
problem and the fix, and exit 1; `--json` is one object with every check. Real bash, zsh and fish
load the hooks and are told apart.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import CLIENT_CMD, Daemon, DaemonFactory

NAMES = ["config", "data_root", "socket", "daemon", "version", "hooks", "session", "service", "spool", "disk"]
HOOKED = {"DOCPILOT_SHELL": "bash"}
PROBLEMS = 1


def _doctor(d: Daemon, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    # HOME and SHELL of the test: the service check reads no real user's files, the hint is for bash.
    rc, out, err = d.client("doctor", *args, env={"HOME": str(d.home.parent), "SHELL": "/bin/bash", **(env or {})})
    assert "Traceback" not in err and "Traceback" not in out, err
    return rc, out, err


def _checks(d: Daemon, env: dict[str, str] | None = None, expect_rc: int | None = None) -> dict[str, dict[str, Any]]:
    rc, out, _ = _doctor(d, "--json", env=env)
    report = json.loads(out)
    assert rc == (0 if report["ok"] else PROBLEMS), (rc, report)
    if expect_rc is not None:
        assert rc == expect_rc, json.dumps(report, indent=1)
    assert [c["name"] for c in report["checks"]] == NAMES
    return {c["name"]: c for c in report["checks"]}


def _line(out: str, name: str) -> str:
    found = [line for line in out.splitlines() if line.split()[1:2] == [name]]
    assert len(found) == 1, out
    return found[0]


def test_a_healthy_setup_passes_every_check(daemon: Daemon) -> None:
    checks = _checks(daemon, HOOKED, expect_rc=0)
    low_disk = checks["disk"]["status"] == "warn"  # a crowded test machine: the one check allowed to warn
    for name, check in checks.items():
        assert check["status"] == "ok" or (name == "disk" and low_disk), check
        assert check["fix"] is None
    assert "docpilot and docpilotd are both" in checks["version"]["message"]
    assert "loaded in this bash shell" in checks["hooks"]["message"]
    assert "not installed" in checks["service"]["message"] and "optional" in checks["service"]["message"]
    assert str(daemon.log_path) in checks["daemon"]["message"], "the daemon says where it logs"

    rc, out, err = _doctor(daemon, env=HOOKED)
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == len(NAMES) + 1 and all(line.split()[0] in ("ok", "WARN") for line in lines[:-1]), out
    assert lines[-1].endswith("everything works"), out


def test_json_is_one_object_with_every_check(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    rc, out, _ = _doctor(d, "--json")
    report = json.loads(out)
    assert out.count("\n") == 1 and set(report) == {"ok", "version", "counts", "checks"}
    assert report["ok"] is False and rc == PROBLEMS
    assert sum(report["counts"].values()) == len(NAMES) and set(report["counts"]) == {"ok", "warn", "fail", "skip"}
    for check in report["checks"]:
        assert set(check) == {"name", "status", "message", "fix"} and check["status"] in report["counts"]
        assert (check["fix"] is not None) == (check["status"] in ("warn", "fail")), check
    assert report["counts"]["fail"] == sum(1 for c in report["checks"] if c["status"] == "fail")


def test_no_daemon_is_a_failure_with_how_to_start_it(daemons: DaemonFactory) -> None:
    d = daemons()
    d.terminate()
    checks = _checks(d, HOOKED, expect_rc=PROBLEMS)
    assert checks["daemon"]["status"] == "fail" and "not running" in checks["daemon"]["message"]
    assert "docpilotd run --detach" in checks["daemon"]["fix"]
    assert checks["version"]["status"] == "skip" and checks["socket"]["status"] == "skip"
    assert [n for n, c in checks.items() if c["status"] == "fail"] == ["daemon"]

    rc, out, _ = _doctor(d, env=HOOKED)
    line = _line(out, "daemon")
    assert rc == PROBLEMS and line.startswith("FAIL") and "fix: docpilotd run --detach" in line, out
    assert out.splitlines()[-1].endswith("see the fixes above")


def test_a_socket_directory_others_can_enter_is_named_with_the_chmod(daemon: Daemon) -> None:
    run_dir = daemon.socket_path.parent
    os.chmod(run_dir, 0o750)
    try:
        checks = _checks(daemon, HOOKED, expect_rc=PROBLEMS)
    finally:
        os.chmod(run_dir, 0o700)
    assert checks["socket"]["status"] == "fail"
    assert "0750" in checks["socket"]["message"] and checks["socket"]["fix"] == f"chmod 700 {run_dir}"

    os.chmod(daemon.home, 0o755)
    try:
        checks = _checks(daemon, HOOKED, expect_rc=PROBLEMS)
    finally:
        os.chmod(daemon.home, 0o700)
    assert checks["data_root"]["status"] == "fail" and checks["data_root"]["fix"] == f"chmod 700 {daemon.home}"
    assert checks["socket"]["status"] == "ok"


def test_a_stale_docpilot_session_says_leave(daemon: Daemon) -> None:
    live = daemon.call("start", description="live one", cwd="/w")["id"]
    checks = _checks(daemon, {**HOOKED, "DOCPILOT_SESSION": live}, expect_rc=0)
    assert checks["session"]["status"] == "ok" and f"joined to {live} (Active" in checks["session"]["message"]

    daemon.call("stop", session=live)
    checks = _checks(daemon, {**HOOKED, "DOCPILOT_SESSION": live}, expect_rc=PROBLEMS)
    assert checks["session"]["status"] == "fail" and "Stopped" in checks["session"]["message"]
    assert checks["session"]["fix"].startswith("docpilot leave")

    gone = "00000000-0000-4000-8000-000000000000"
    checks = _checks(daemon, {**HOOKED, "DOCPILOT_SESSION": gone}, expect_rc=PROBLEMS)
    assert checks["session"]["status"] == "fail" and "no such session" in checks["session"]["message"]
    assert checks["session"]["fix"].startswith("docpilot leave")

    daemon.terminate()  # without a daemon, the capture markers tell
    checks = _checks(daemon, {**HOOKED, "DOCPILOT_SESSION": live}, expect_rc=PROBLEMS)
    assert checks["session"]["status"] == "fail" and "not live" in checks["session"]["message"]


def test_a_config_error_is_its_one_line_and_the_fix(daemon: Daemon) -> None:
    config = daemon.home / "docpilotd.toml"
    config.write_text('durability = "sometimes"\n')
    checks = _checks(daemon, HOOKED, expect_rc=PROBLEMS)
    check = checks["config"]
    assert check["status"] == "fail" and str(config) in check["message"] and "durability" in check["message"]
    assert "docpilotd config" in check["fix"] and "\n" not in check["message"]
    assert checks["daemon"]["status"] == "ok", "the running daemon keeps its configuration"

    config.write_text("backups_kept = 3\n")
    checks = _checks(daemon, HOOKED, expect_rc=0)
    assert checks["config"]["status"] == "ok" and str(config) in checks["config"]["message"]


def test_a_shell_without_the_hooks_is_told_the_line_to_add(daemon: Daemon) -> None:
    checks = _checks(daemon, expect_rc=PROBLEMS)
    assert checks["hooks"]["status"] == "fail" and "not loaded" in checks["hooks"]["message"]
    assert checks["hooks"]["fix"] == "run  docpilot init bash  and add the line it prints to ~/.bashrc, then open a new shell"
    checks = _checks(daemon, {"SHELL": "/usr/bin/fish"}, expect_rc=PROBLEMS)
    assert "docpilot init fish" in checks["hooks"]["fix"] and "config.fish" in checks["hooks"]["fix"]


def test_docpilot_home_pointing_nowhere_fails_fast_and_plainly(daemons: DaemonFactory) -> None:
    d = daemons(start=False, name="nowhere")
    assert not d.home.exists()
    checks = _checks(d, HOOKED, expect_rc=PROBLEMS)
    assert checks["data_root"]["status"] == "fail" and "does not exist" in checks["data_root"]["message"]
    assert "DOCPILOT_HOME" in checks["data_root"]["fix"]
    assert checks["daemon"]["status"] == "fail" and checks["disk"]["status"] in ("ok", "warn")
    assert not d.home.exists(), "doctor creates nothing"

    (d.home.parent / "xdg-config" / "docpilot").mkdir(parents=True)
    broken = d.home.parent / "broken.toml"
    broken.write_bytes(b"[limits\n")
    checks = _checks(d, {**HOOKED, "DOCPILOT_CONFIG": str(broken)}, expect_rc=PROBLEMS)
    assert checks["config"]["status"] == "fail" and "not valid TOML" in checks["config"]["message"]


def test_spooled_commands_not_read_yet_are_counted(daemon: Daemon) -> None:
    assert daemon.client_json("status")["daemon"]["spool"] == {"files": 0, "bytes": 0}
    torn = daemon.home / "spool" / "9-9.jsonl"
    torn.write_bytes(b'{"op":"rec')  # a line still being written: not read until its newline comes
    assert daemon.client_json("status")["daemon"]["spool"] == {"files": 1, "bytes": 10}
    checks = _checks(daemon, HOOKED, expect_rc=0)
    assert checks["spool"]["status"] == "ok" and "10 bytes in 1 file(s) being read" in checks["spool"]["message"]
    torn.write_bytes(b"x" * (2 * 1024 * 1024))
    checks = _checks(daemon, HOOKED, expect_rc=0)
    assert checks["spool"]["status"] == "warn" and "docpilotd is behind" in checks["spool"]["message"], checks
    torn.unlink()

    daemon.terminate()
    spool = daemon.home / "spool" / "1-2.jsonl"
    spool.write_text('{"op":"record"}\n{"op":"record"}\n{"op":"rec')
    checks = _checks(daemon, HOOKED, expect_rc=PROBLEMS)
    assert checks["spool"]["status"] == "warn" and "2 command(s) in 1 spool file(s)" in checks["spool"]["message"]
    assert "docpilotd run --detach" in checks["spool"]["fix"]


SHELLS = {
    "bash": ["bash", "--norc", "--noprofile", "-c", 'eval "$({c} init bash)"; {c} doctor --json; true'],
    "zsh": ["zsh", "-f", "-c", 'eval "$({c} init zsh)"; {c} doctor --json; true'],
    "fish": ["fish", "--no-config", "-c", "{c} init fish | source; {c} doctor --json; true"],
}


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_real_shells_with_the_hooks_are_recognised(daemon: Daemon, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    import subprocess

    client = " ".join(CLIENT_CMD)
    argv = [part.replace("{c}", client) for part in SHELLS[shell]]
    done = subprocess.run(argv, env=daemon.env({"HOME": str(daemon.home.parent)}), capture_output=True, text=True,
                          timeout=60, cwd=str(daemon.home.parent))
    assert "Traceback" not in done.stderr, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["hooks"]["status"] == "ok" and f"loaded in this {shell} shell" in checks["hooks"]["message"], checks


@pytest.mark.skipif(shutil.which("zsh") is None or not sys.platform.startswith("linux"), reason="needs zsh and /proc")
def test_hooks_inherited_from_another_shell_are_not_taken_for_this_ones(daemon: Daemon) -> None:
    """A zsh started from a hooked bash inherits DOCPILOT_SHELL=bash but records nothing."""
    import subprocess

    client = " ".join(CLIENT_CMD)
    script = f'eval "$({client} init bash)"; zsh -f -c "{client} doctor --json; true"'
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=daemon.env({"HOME": str(daemon.home.parent)}),
                          capture_output=True, text=True, timeout=60, cwd=str(daemon.home.parent))
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["hooks"]["status"] == "fail" and "this is zsh" in checks["hooks"]["message"], checks
    assert "docpilot init zsh" in checks["hooks"]["fix"] and "~/.zshrc" in checks["hooks"]["fix"]


def test_doctor_changes_nothing(daemon: Daemon) -> None:
    daemon.call("start", description="kept as it is", cwd="/w")
    daemon.call("save")

    def stored() -> dict[str, bytes | str]:  # what the daemon keeps for itself (a search index...) aside
        return {k: v for k, v in daemon.tree().items() if k.split("/")[0] in ("sessions", "backups", "journal", "spool", "run")}

    before = stored()
    _checks(daemon, HOOKED)
    assert stored() == before
    assert stat.S_IMODE(Path(daemon.home).stat().st_mode) == 0o700
