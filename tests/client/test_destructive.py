"""purge, cleanup and restore as a person uses them (issue 16): --dry-run says what would go and
changes nothing, a terminal asks first (--yes skips it), the result lists what went; backups say
what each generation holds; restore finds its session in the backup's name and says when it
reopens a stopped session. Real client, real daemon."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from tests.daemon_harness import CLIENT_CMD, Daemon


def tree(d: Daemon) -> dict[str, bytes]:
    """Every file of the data root but the derived search index and the log."""
    found = {}
    for path in sorted(d.home.rglob("*")):
        relative = path.relative_to(d.home)
        if path.is_file() and relative.parts[0] not in ("index", "run") and not path.name.endswith(".log"):
            found[str(relative)] = path.read_bytes()
    return found


def stopped_session(d: Daemon, description: str = "done") -> str:
    sid = d.call("start", description=description)["id"]
    d.call("record", session=sid, command="make", exit_code=0)
    d.call("stop", session=sid)
    return sid


def test_dry_runs_list_what_would_go_and_change_nothing(daemon: Daemon) -> None:
    sid = stopped_session(daemon)
    before = tree(daemon)
    code, out, err = daemon.client("purge", "-s", sid, "--dry-run")
    assert code == 0, err
    assert f"purging session {sid} would remove" in out and f"would remove sessions/{sid}.json" in out
    code, out, err = daemon.client("cleanup", "--max-age-days", "0", "--dry-run")
    assert code == 0 and "would remove 1 session(s)" in out and f"session {sid}" in out, out + err
    backup = daemon.call("backups", session=sid)["backups"][-1]["name"]
    code, out, err = daemon.client("restore", backup, "--dry-run")
    assert code == 0 and "nothing changed" in out, out + err
    assert tree(daemon) == before, "a dry run changed the data root"
    code, out, _ = daemon.client("purge", "-s", sid)  # not a terminal: no question
    assert code == 0 and f"removed sessions/{sid}.json" in out
    assert not any(sid in name for name in tree(daemon))


def answer_on_a_terminal(d: Daemon, answer: bytes, *argv: str) -> tuple[int, str]:
    """Run the client on a pseudo-terminal, answer its question; (exit code, what it showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLIENT_CMD, *argv], stdin=slave, stdout=slave, stderr=slave, env=d.env())
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 30
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        if not answered and b"[y/N]" in shown:
            os.write(master, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    code = proc.wait(10)
    os.close(master)
    return code, shown.decode("utf-8", "replace")


def test_a_terminal_is_asked_first_and_no_means_nothing_changes(daemon: Daemon) -> None:
    sid = stopped_session(daemon)
    before = tree(daemon)
    code, shown = answer_on_a_terminal(daemon, b"n\n", "purge", "-s", sid)
    assert code == 0 and "would remove" in shown and "Delete them for good? [y/N]" in shown
    assert "nothing was changed" in shown
    assert tree(daemon) == before
    code, shown = answer_on_a_terminal(daemon, b"y\n", "purge", "-s", sid)
    assert code == 0 and f"purged session {sid}" in shown, shown
    assert not any(sid in name for name in tree(daemon))
    other = stopped_session(daemon)
    code, shown = answer_on_a_terminal(daemon, b"", "purge", "-s", other, "--yes")
    assert code == 0 and "[y/N]" not in shown and f"purged session {other}" in shown


def test_backups_say_what_each_generation_holds(daemon: Daemon) -> None:
    sid = daemon.call("start", description="generations")["id"]
    for i in range(3):
        daemon.call("record", session=sid, command=f"step {i}", exit_code=0)
        daemon.call("save")
    daemon.call("stop", session=sid)
    code, out, err = daemon.client("backups", "-s", sid)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith(sid)]
    assert lines and all(("ago" in line or "just now" in line) and "commands" in line and "B" in line for line in lines), out
    assert any("Active" in line for line in lines)
    listed = daemon.client_json("backups", "-s", sid)["backups"]
    assert all(b["state"] in ("Active", "Paused", "Stopped") and isinstance(b["commands"], int) for b in listed)
    Path(daemon.backups_dir / listed[0]["name"]).write_bytes(b"{torn")
    code, out, _ = daemon.client("backups", "-s", sid)
    assert code == 0 and "unreadable" in out


def test_restore_finds_the_session_in_the_backup_name_and_says_it_reopens_a_stopped_one(daemon: Daemon) -> None:
    sid = daemon.call("start", description="reopen me")["id"]
    daemon.call("record", session=sid, command="make", exit_code=0)
    daemon.call("save")
    daemon.call("stop", session=sid)
    other = daemon.call("start", description="current one")["id"]  # the one a bare verb would pick
    live_backup = next(b["name"] for b in daemon.call("backups", session=sid)["backups"] if b["state"] == "Active")
    code, out, err = daemon.client("restore", live_backup, "--yes")
    assert code == 0, err
    assert out.startswith(sid) and "restored from" in out
    assert "was stopped" in err and "stop it with" in err
    assert daemon.call("show", session=sid)["state"] == "Active"
    assert daemon.call("show", session=other)["state"] == "Active"
