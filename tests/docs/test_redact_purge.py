"""`docpilot redact` and `docpilot purge` against a real daemon: a secret (or a whole session) that
is in the snapshot, the backups, several journal segments, a quarantined copy and the shell spool
is gone from every file under the data root afterwards, and nothing else is lost."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import CLIENT_CMD, Daemon, DaemonFactory, wait_for
from tests.docs.disk import Hook, directories_of, every_file, files_holding

SECRET = "zebra-cobalt-42"  # matches no built-in rule: only `redact` can remove it
INVALID_TRANSITION = 5


def _client(d: Daemon, *args: str, stdin: str = "") -> tuple[int, str, str]:
    done = subprocess.run([*CLIENT_CMD, *args], env=d.env(), input=stdin.encode(), capture_output=True, timeout=60,
                          cwd=str(d.home.parent))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _everywhere(d: Daemon, stop: bool) -> tuple[str, Hook]:
    """A session whose secret is in sessions/, backups/, journal/ (several segments), quarantine/
    and spool/; the daemon is running again at the end."""
    sid = d.call("start", description="Rotate the cache password")["id"]
    hook = Hook(d)
    d.call("record", session=sid, command="redis-cli ping", exit_code=0, cwd="/srv")
    d.call("record", session=sid, command=f"redis-cli config set requirepass {SECRET}", exit_code=0, cwd="/srv")
    d.call("save")
    d.call("annotate", session=sid, text=f"the new password is {SECRET}", type="note")
    hook.send(f"echo {SECRET} > /etc/cache.pass", session=sid)
    wait_for(lambda: d.call("status", session=sid)["session"]["commands"] == 3, what="the spooled command")
    d.call("save")
    d.call("record", session=sid, command=f"echo {SECRET} | wc -c", exit_code=0, cwd="/srv")
    d.call("save")
    if stop:
        d.call("stop", session=sid)
        d.call("save")
    # A damaged snapshot: recovery restores it from a backup and keeps the damaged copy in quarantine.
    d.kill9()
    main = d.session_file(sid)
    main.write_bytes(main.read_bytes()[: len(main.read_bytes()) // 2])
    d.start()
    holding = files_holding(d.home, SECRET)[SECRET]
    assert {"sessions", "backups", "journal", "quarantine", "spool"} <= directories_of(holding), holding
    assert sum(name.startswith("journal/") for name in holding) >= 2, holding
    return sid, hook


def _commands(d: Daemon, sid: str) -> list[str]:
    return [c["command"] for c in d.call("show", session=sid)["commands"]]


@pytest.mark.parametrize("stop", [False, True], ids=["live", "stopped"])
def test_redact_removes_a_secret_from_every_file(daemons: DaemonFactory, stop: bool) -> None:
    d = daemons()
    sid, hook = _everywhere(d, stop)
    before = d.call("show", session=sid)
    rc, out, err = _client(d, "redact", "--session", sid, stdin=SECRET + "\n")  # typed, not in argv
    assert rc == 0, err
    assert SECRET not in out
    # Three commands and their events, and the annotation.
    assert out.splitlines()[0] == f"redacted 7 occurrence(s) in session {sid}"
    rewritten = [line.split()[-1] for line in out.splitlines() if line.strip().startswith("rewrote")]
    assert {"sessions", "backups", "journal", "quarantine"} <= directories_of(rewritten), out
    assert any(line.strip().startswith("removed spool/") for line in out.splitlines()), out
    assert "STILL PRESENT" not in out
    assert not files_holding(d.home, SECRET)

    after = d.call("show", session=sid)
    assert after["state"] == before["state"] and len(after["events"]) == len(before["events"])
    assert _commands(d, sid) == [
        "redis-cli ping", "redis-cli config set requirepass [REDACTED]", "echo [REDACTED] > /etc/cache.pass",
        "echo [REDACTED] | wc -c",
    ]
    assert after["annotations"][0]["text"] == "the new password is [REDACTED]"

    if not stop:
        # The command line the hook captures right after `redact` is redacted too (the pattern
        # stays in force while the daemon runs), and its spool file goes.
        # The `docpilot redact ...` line itself is the tool's own: not recorded, yet its file goes.
        hook.send(f"docpilot redact --session {sid} {SECRET}", session=sid)
        hook.send(f"echo {SECRET} again", session=sid)
        wait_for(lambda: len(_commands(d, sid)) == 5, what="the spooled command")
        assert _commands(d, sid)[-1] == "echo [REDACTED] again"
        wait_for(lambda: not files_holding(d.home, SECRET), timeout=15, what="the spool file to go")
        after = d.call("show", session=sid)

    # Recovery from what is on disk now gives the same session, still without the secret.
    d.kill9()
    d.start()
    assert d.call("show", session=sid) == after
    report = next(s for s in d.call("recovery")["sessions"] if s["session_id"] == sid)
    assert report["problems"] == [] and report["status"] == "ok"
    assert not files_holding(d.home, SECRET)


def test_redact_with_a_regular_expression(daemon: Daemon) -> None:
    sid = daemon.call("start", description="regex")["id"]
    for n in range(3):
        daemon.call("record", session=sid, command=f"vault write key=zebra-{n}{n}{n}-x", exit_code=0)
        daemon.call("save")
    result = daemon.call("redact", session=sid, pattern=r"zebra-\d+", regex=True)
    assert result["replaced"] == 6 and result["remaining"] == []  # 3 commands and their 3 events
    assert _commands(daemon, sid) == ["vault write key=[REDACTED]-x"] * 3
    assert not files_holding(daemon.home, "zebra-000", "zebra-111", "zebra-222")
    bad = daemon.request("redact", session=sid, pattern="(unclosed", regex=True)
    assert bad["error"]["code"] == "bad_usage"
    assert daemon.request("redact", session=sid, pattern=".*", regex=True)["error"]["code"] == "bad_usage"
    nothing = daemon.call("redact", session=sid, pattern="not-there")
    assert nothing["replaced"] == 0 and nothing["rewritten"] == [] and nothing["files_examined"] >= 3


def test_redact_keeps_every_change_made_meanwhile(daemon: Daemon) -> None:
    sid = daemon.call("start", description="busy")["id"]
    for n in range(50):
        daemon.call("record", session=sid, command=f"echo {SECRET} {n}", exit_code=0)
    daemon.call("save")
    acknowledged: list[str] = []
    done = threading.Event()

    def writer() -> None:
        n = 0
        while not done.is_set():
            reply = daemon.request("record", session=sid, command=f"echo during {n}", exit_code=0)
            if reply.get("ok"):
                acknowledged.append(f"echo during {n}")
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(lambda: len(acknowledged) >= 20, what="the writer to get going")
        result = daemon.call("redact", session=sid, pattern=SECRET)
        after_redact = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= after_redact + 20, what="writes after the redaction")
    finally:
        done.set()
        thread.join()
    assert result["replaced"] == 100
    commands = _commands(daemon, sid)
    assert commands[:50] == [f"echo [REDACTED] {n}" for n in range(50)]
    during = [c for c in commands if c.startswith("echo during")]
    assert during == acknowledged, "every acknowledged change is there, once, in order"
    daemon.call("save")
    assert not files_holding(daemon.home, SECRET)


def _all_bytes(d: Daemon) -> dict[str, bytes]:
    return every_file(d.home)


def test_purge_removes_a_session_everywhere(daemons: DaemonFactory) -> None:
    d = daemons()
    other = d.call("start", description="Another session, kept")["id"]
    d.call("record", session=other, command="echo keep me", exit_code=0)
    sid, hook = _everywhere(d, stop=True)
    hook.send("echo a line that named no session")  # recorded in `other` (the current session)
    wait_for(lambda: len(_commands(d, other)) == 2, what="ingestion into the other session")
    d.call("save")
    other_before = d.call("show", session=other)

    rc, out, err = _client(d, "purge", "--session", sid)
    assert rc == 0, err
    assert out.splitlines()[0].startswith(f"purged session {sid}")
    removed = [line.split()[-1] for line in out.splitlines()[1:]]
    assert {"sessions", "backups", "journal", "quarantine", "spool"} <= directories_of(removed), out

    leftovers = {name: data for name, data in _all_bytes(d).items() if sid.encode() in data or sid in name}
    assert leftovers == {}
    assert not files_holding(d.home, SECRET, "Rotate the cache password")
    assert sid not in [s["id"] for s in d.call("sessions")]
    assert d.request("show", session=sid)["error"]["code"] == "no_such_session"
    # The other session, and the spooled line that went into it, are untouched.
    assert d.call("show", session=other) == other_before

    d.kill9()
    d.start()
    assert sid not in [s["id"] for s in d.call("sessions")]
    assert d.call("show", session=other) == other_before
    assert not any(sid.encode() in data or sid in name for name, data in _all_bytes(d).items())


def test_purge_refuses_a_live_session_unless_forced(daemon: Daemon) -> None:
    sid = daemon.call("start", description="live")["id"]
    daemon.call("record", session=sid, command="echo hi", exit_code=0)
    rc, _, err = _client(daemon, "purge", "--session", sid)
    assert rc == INVALID_TRANSITION and "--force" in err
    assert _client(daemon, "purge")[0] == 2, "the session must be named"
    assert len(_commands(daemon, sid)) == 1
    rc, _out, err = _client(daemon, "purge", "--session", sid, "--force")
    assert rc == 0, err
    reply: dict[str, Any] = daemon.request("record", session=sid, command="echo after", exit_code=0)
    assert reply["error"]["code"] == "no_such_session"
    assert not (daemon.home / "spool" / "active" / sid).exists(), "its capture marker is gone"
    assert not any(sid in name for name in every_file(daemon.home))
    assert not Path(daemon.home / "sessions" / f"{sid}.json").exists()


def test_a_pattern_that_also_matches_json_keys_never_damages_a_backup(daemon: Daemon) -> None:
    sid = daemon.call("start", description="one letter")["id"]
    for n in range(3):
        daemon.call("annotate", session=sid, text=f"note number {n}")
        daemon.call("save")
    result = daemon.call("redact", session=sid, pattern="n")
    assert result["replaced"] > 0
    # Every backup still decodes, and the oldest can be restored.
    from docpilotd.paths import layout_for
    from docpilotd.storage.store import SessionStore

    generations = daemon.call("backups", session=sid)["backups"]
    assert len(generations) >= 3
    for backup in generations:  # older ones compressed: read as the daemon reads them
        decoded = SessionStore(layout_for(daemon.home)).read(daemon.backups_dir / backup["name"], sid)
        assert decoded.usable, (backup["name"], decoded.problem)
    assert daemon.call("restore", session=sid, backup=generations[-1]["name"])["id"] == sid
    daemon.kill9()
    daemon.start()
    report = next(s for s in daemon.call("recovery")["sessions"] if s["session_id"] == sid)
    assert report["problems"] == [], report
