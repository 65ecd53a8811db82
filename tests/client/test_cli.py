"""The real `docpilot` client against a real daemon: exit codes, `--json`, session selection,
export/import, backups/restore, and no traceback whatever the arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import Daemon, DaemonFactory, assert_docpilot_format

# Exit codes from docpilotd.errors, spelled out so that a change to them fails here.
OK, USAGE, NOT_RUNNING, NO_SUCH, TRANSITION, INVALID = 0, 2, 3, 4, 5, 6


def _run(d: Daemon, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    rc, out, err = d.client(*args, env=env)
    assert "Traceback" not in err and "Traceback" not in out, f"docpilot {args}: {err}"
    return rc, out, err


def _ok(d: Daemon, *args: str, env: dict[str, str] | None = None) -> str:
    rc, out, err = _run(d, *args, env=env)
    assert rc == OK, f"docpilot {' '.join(args)} exited {rc}: {err}"
    return out


def _json(d: Daemon, *args: str, env: dict[str, str] | None = None) -> Any:
    out = _ok(d, *args, "--json", env=env)
    assert out.endswith("\n") and out.count("\n") == 1, f"--json prints one line: {out!r}"
    return json.loads(out)


def _fails(d: Daemon, code: int, *args: str, env: dict[str, str] | None = None) -> str:
    rc, _out, err = _run(d, *args, env=env)
    assert rc == code, f"docpilot {' '.join(args)}: expected exit {code}, got {rc}: {err}"
    assert err.startswith("docpilot: ") and len(err.strip().splitlines()) == 1, f"one error line: {err!r}"
    return err


VERBS_WITHOUT_DAEMON = [
    ("start", "x"), ("stop",), ("pause",), ("resume",), ("note", "x"), ("status",), ("sessions",), ("save",),
    ("record", "--", "ls"), ("backups",), ("recovery",), ("stats",), ("export",), ("show",),
    ("cleanup", "--max-age-days", "1"), ("import", "/tmp/x.json"), ("info", "--json"),
]


@pytest.mark.parametrize("args", VERBS_WITHOUT_DAEMON, ids=lambda a: a[0])
def test_daemon_not_running_exit_3_with_a_hint(daemons: DaemonFactory, args: tuple[str, ...]) -> None:
    d = daemons(start=False)
    if "--json" in args:  # the error as a JSON object on standard output, nothing on standard error
        rc, out, err = _run(d, *args)
        assert rc == NOT_RUNNING and err == "", err
        error = json.loads(out)["error"]
        assert error["code"] == "daemon_not_running" and "docpilotd run" in error["message"], error
        return
    err = _fails(d, NOT_RUNNING, *args)
    assert "not running" in err and "docpilotd run" in err, err


def test_usage_errors_exit_2_even_without_a_daemon(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    for args in (
        ("fly",), ("start",), ("note",), ("cleanup",), ("cleanup", "--max-age-days", "soon"), ("record",),
        ("record", "--exit-code", "abc", "--", "ls"), ("annotate", "--type", "shout", "x"), ("restore",),
        ("import",), ("status", "--bogus"), ("sessions", "extra"),
    ):
        _fails(d, USAGE, *args)
    rc, out, _err = _run(d)
    assert rc == USAGE and "start" in out, "no verb: the help and exit 2"


def test_exit_codes_against_a_running_daemon(daemon: Daemon) -> None:
    _fails(daemon, NO_SUCH, "note", "nobody is live")
    _fails(daemon, NO_SUCH, "status", "--session", "00000000-0000-4000-8000-000000000000")
    sid = _ok(daemon, "start", "Exit codes").strip()
    _fails(daemon, NO_SUCH, "note", "--session", "not-a-session", "x")
    _fails(daemon, NO_SUCH, "note", "x", env={"DOCPILOT_SESSION": "not-a-session"})
    _fails(daemon, NO_SUCH, "restore", "--session", sid, f"{sid}_1.json")
    _fails(daemon, TRANSITION, "resume")
    _fails(daemon, USAGE, "record", "--started-at", "yesterday", "--", "ls")
    _ok(daemon, "pause")
    _fails(daemon, TRANSITION, "pause")
    _fails(daemon, TRANSITION, "record", "--exit-code", "0", "--", "ls")
    _ok(daemon, "stop")
    _fails(daemon, TRANSITION, "note", "--session", sid, "after the end")
    _fails(daemon, TRANSITION, "stop", "--session", sid)
    _fails(daemon, USAGE, "start", "   ")
    # No change got through any of the refusals.
    shown = _json(daemon, "show", "--session", sid)
    assert (shown["commands"], shown["annotations"], shown["state"]) == ([], [], "Stopped")


def test_json_after_every_verb_parses(daemon: Daemon, tmp_path: Path) -> None:
    sid = _json(daemon, "start", "Everything as JSON", "--tag", "t")["id"]
    assert _json(daemon, "note", "n")["annotation"]["annotation_type"] == "Note"
    assert _json(daemon, "explain", "e")["annotation"]["annotation_type"] == "Explanation"
    assert _json(daemon, "warn", "w")["annotation"]["annotation_type"] == "Warning"
    assert _json(daemon, "milestone", "m")["annotation"]["annotation_type"] == "Milestone"
    assert _json(daemon, "annotate", "--type", "warning", "a")["session"] == sid
    # After `--` everything is the command, so --json goes before it.
    recorded = json.loads(_ok(daemon, "record", "--json", "--exit-code", "1", "--duration-ms", "12", "--", "make"))
    assert recorded["commands"] == 1
    assert len(_json(daemon, "annotations")["annotations"]) == 5
    assert _json(daemon, "status")["session"]["id"] == sid
    assert [s["id"] for s in _json(daemon, "sessions")] == [sid]
    assert _json(daemon, "show")["commands"][0]["duration_ms"] == 12
    assert _json(daemon, "save") == {"saved": 1}
    assert _json(daemon, "pause")["state"] == "Paused"
    assert _json(daemon, "resume")["state"] == "Active"
    _json(daemon, "save")
    backups = _json(daemon, "backups")
    # Generations: the snapshot `start` wrote, and the one before this save.
    assert backups["session"] == sid and len(backups["backups"]) == 2
    assert _json(daemon, "restore", backups["backups"][0]["name"])["restored_from"] == backups["backups"][0]["name"]
    assert _json(daemon, "recovery")["sessions"] == []
    assert set(_json(daemon, "stats")) >= {"session_count", "backup_count", "journal_size"}
    assert _json(daemon, "export")["id"] == sid
    out_file = tmp_path / "exported.json"
    assert _json(daemon, "export", "--output", str(out_file))["session"] == sid
    assert _json(daemon, "stop")["state"] == "Stopped"
    assert _json(daemon, "cleanup", "--max-age-days", "0")["removed_sessions"] == [sid]
    assert _json(daemon, "import", str(out_file))["id"] == sid
    assert _json(daemon, "info")["daemon"]["pid"] == daemon.pid


def test_session_selection(daemon: Daemon) -> None:
    first = _ok(daemon, "start", "First").strip()
    second = _ok(daemon, "start", "Second").strip()

    def last_note(session: str) -> str:
        return _json(daemon, "annotations", "--session", session)["annotations"][-1]["text"]

    assert _json(daemon, "note", "to the latest")["session"] == second
    assert _json(daemon, "note", "from the environment", env={"DOCPILOT_SESSION": first})["session"] == first
    flag_wins = _json(daemon, "note", "--session", second, "flag wins", env={"DOCPILOT_SESSION": first})
    assert flag_wins["session"] == second
    assert _json(daemon, "note", "--session", first[:8], "by prefix")["session"] == first
    assert (last_note(first), last_note(second)) == ("by prefix", "flag wins")
    _ok(daemon, "stop", "--session", second)
    assert _json(daemon, "note", "latest live one")["session"] == first
    _ok(daemon, "pause")
    assert _json(daemon, "status")["session"]["id"] == first, "a paused session is still live"
    _ok(daemon, "stop")
    status = _json(daemon, "status")
    assert status["session"] is None and status["daemon"]["live_sessions"] == 0
    rc, out, _ = _run(daemon, "status")
    assert rc == OK and "no live session" in out


def test_export_import_round_trip(daemons: DaemonFactory, tmp_path: Path) -> None:
    d = daemons()
    sid = _ok(d, "start", "Exported and brought back").strip()
    _ok(d, "record", "--exit-code", "0", "--cwd", "/srv/app", "--", "git", "pull")
    _ok(d, "explain", "unicode survives: héllo ✓ 你好")
    _ok(d, "record", "--exit-code", "127", "--", "nonexistent-tool")
    _ok(d, "stop")
    exported = tmp_path / "session.json"
    _ok(d, "export", "--session", sid, "--output", str(exported))
    doc = json.loads(exported.read_text(encoding="utf-8"))
    assert_docpilot_format(doc)
    assert "docpilotd" not in doc, "an export is plain DocPilot JSON"
    assert json.loads(_ok(d, "export", "--session", sid)) == doc == _json(d, "show", "--session", sid)

    err = _fails(d, INVALID, "import", str(exported))
    assert sid in err and "exists" in err

    # Into another data root: the same session, byte for byte as JSON.
    other = daemons()
    assert _json(other, "import", str(exported))["id"] == sid
    assert _json(other, "show", "--session", sid) == doc
    # Back into the first one after cleanup removed it there.
    assert _json(d, "cleanup", "--max-age-days", "0")["removed_sessions"] == [sid]
    assert _json(d, "sessions") == [] and not d.session_file(sid).exists()
    _fails(d, NO_SUCH, "show", "--session", sid)
    rel = Path(os.path.relpath(exported, d.home.parent))
    assert _json(d, "import", str(rel))["id"] == sid, "a relative path is resolved by the client"
    assert _json(d, "show", "--session", sid) == doc
    assert_docpilot_format(d.read_session_file(sid))
    # What was imported survives a restart.
    assert d.terminate() == 0
    d.start()
    assert _json(d, "show", "--session", sid) == doc


def test_import_refuses_invalid_files(daemon: Daemon, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for content in ("", "not json", '{"id": "x"}', json.dumps({"description": "no id"})):
        bad.write_text(content)
        _fails(daemon, INVALID, "import", str(bad))
    _fails(daemon, 2, "import", str(tmp_path / "missing.json"))
    assert _json(daemon, "sessions") == []


def test_backups_and_restore(daemon: Daemon) -> None:
    sid = _ok(daemon, "start", "Three generations").strip()
    for text in ("one", "two", "three"):
        _ok(daemon, "note", text)
        _ok(daemon, "save")
    # The snapshot `start` wrote (no notes) and the saves of "one" and "one, two" are backups.
    generations = _json(daemon, "backups")["backups"]
    assert len(generations) == 3 and generations[0]["name"] > generations[1]["name"], "newest first"
    oldest = generations[-2]["name"]
    human = _ok(daemon, "backups")
    assert all(g["name"] in human for g in generations)

    restored = _json(daemon, "restore", oldest)
    assert (restored["annotations"], restored["restored_from"]) == (1, oldest)
    assert [a["text"] for a in _json(daemon, "annotations")["annotations"]] == ["one"]
    assert [a["text"] for a in daemon.read_session_file(sid)["annotations"]] == ["one"], "restore saves"
    # Reversible: the state before the restore is now the newest backup.
    newest = _json(daemon, "backups")["backups"][0]["name"]
    _ok(daemon, "restore", newest)
    assert [a["text"] for a in _json(daemon, "annotations")["annotations"]] == ["one", "two", "three"]
    _ok(daemon, "note", "four")
    assert len(_json(daemon, "show")["annotations"]) == 4


def test_human_output_is_readable(daemon: Daemon) -> None:
    sid = _ok(daemon, "start", "Readable").strip()
    assert _ok(daemon, "note", "hello") == f"Note added to {sid}: hello\n"
    _ok(daemon, "record", "--exit-code", "3", "--cwd", "/srv", "--", "make", "test")
    shown = _ok(daemon, "show")
    assert "Readable" in shown and "/srv$ make test  [exit 3]" in shown and "# Note: hello" in shown
    assert sid in _ok(daemon, "sessions")
    assert "session(s)" in _ok(daemon, "save")
    assert "recovery of" in _ok(daemon, "recovery")
    assert "session_count" in _ok(daemon, "stats")
    assert "docpilotd" in _ok(daemon, "status") and "Readable" in _ok(daemon, "status")


def test_undecodable_bytes_in_arguments_get_a_clear_error(daemon: Daemon) -> None:
    _ok(daemon, "start", "Bytes from a shell")
    done = subprocess.run(
        [sys.executable, "-m", "docpilotd.client.entry", "note", b"caf\xe9 latin-1"],  # type: ignore[list-item]
        env=daemon.env(), capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    err = done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err
    assert done.returncode != NOT_RUNNING, f"the daemon is running; the message must not say otherwise: {err}"
    if done.returncode != OK:
        assert err.startswith("docpilot: ") and len(err.strip().splitlines()) == 1, err
    assert daemon.alive and daemon.call("hello")["pid"] == daemon.pid


def test_export_to_an_unwritable_place_is_a_usage_error(daemon: Daemon, tmp_path: Path) -> None:
    _ok(daemon, "start", "Nowhere to go")
    _fails(daemon, USAGE, "export", "--output", str(tmp_path / "missing-dir" / "x.json"))


def test_client_import_path_stays_light() -> None:
    code = "import sys, docpilotd.client.cli; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=True)
    modules = set(done.stdout.decode().split())
    heavy = {"asyncio", "apscheduler", "watchdog", "daemon"} & {m.split(".")[0] for m in modules}
    assert heavy == set(), f"the client must not import {heavy}"


def test_start_names_the_sessions_already_live_and_stop_names_what_it_stopped(daemon: Daemon) -> None:
    first = _ok(daemon, "start", "Renew the certificates").strip()
    rc, out, err = daemon.client("start", "Rotate the logs")
    assert rc == 0 and "Traceback" not in err
    second = out.strip()
    assert f"also live: {first[:8]} \"Renew the certificates\" (Active)" in err
    rc, out, err = daemon.client("stop")
    assert rc == 0 and out.startswith(second) and '"Rotate the logs"' in out


def test_reading_verbs_after_stop_use_the_most_recent_session_and_say_so(daemon: Daemon, tmp_path: Path) -> None:
    older = _ok(daemon, "start", "Older").strip()
    _ok(daemon, "stop")
    newer = _ok(daemon, "start", "Newer").strip()
    _ok(daemon, "note", "in the newer one")
    _ok(daemon, "stop")
    rc, out, err = daemon.client("generate")
    assert rc == 0 and out.startswith("# Newer") and f"session {newer}" in err
    assert _json(daemon, "export")["id"] == newer
    assert _json(daemon, "show", "--session", older)["id"] == older
    assert [a["text"] for a in _json(daemon, "annotations")["annotations"]] == ["in the newer one"]
