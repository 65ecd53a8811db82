"""Editing and deleting annotations, and DocPilot's annotation flags, as a user does it: the real
`docpilot` client against a real daemon in a temporary data root.

What a user would check: an edit keeps the annotation's id and place in the timeline and adds one
event to the audit trail; a delete takes it out and the counts follow; neither works on a stopped
session, and a refusal changes no file; an id prefix that names no annotation, or several, is one
clear line; an acknowledged edit survives kill -9; a deleted note comes back with `restore` of an
older backup; `annotations -r/-f` and `annotate -a` take DocPilot's names and short forms; no
usage mistake prints a traceback.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import REFERENCE, Daemon, DaemonFactory, assert_docpilot_format, read_line

OK, USAGE, NO_SUCH, TRANSITION = 0, 2, 4, 5
# Only the journal holds changes between `start`'s snapshot and a save: what kill -9 tests.
NO_AUTOSAVE = {"DOCPILOT_AUTOSAVE_INTERVAL": "3600"}


def _run(d: Daemon, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    rc, out, err = d.client(*args, env=env)
    assert "Traceback" not in err and "Traceback" not in out, f"docpilot {args}: {err}"
    return rc, out, err


def _ok(d: Daemon, *args: str) -> str:
    rc, out, err = _run(d, *args)
    assert rc == OK, f"docpilot {' '.join(args)} exited {rc}: {err}"
    return out


def _json(d: Daemon, *args: str) -> Any:
    return json.loads(_ok(d, *args, "--json"))


def _fails(d: Daemon, code: int, *args: str) -> str:
    rc, out, err = _run(d, *args)
    assert rc == code, f"docpilot {' '.join(args)}: expected exit {code}, got {rc}: {err}"
    assert err.startswith("docpilot: ") and len(err.strip().splitlines()) == 1, f"one error line: {err!r}"
    assert out == "", out
    return err


def _stored(d: Daemon) -> dict[str, bytes | str]:
    """What a refusal must not change: sessions, backups and journal."""
    return {name: data for name, data in d.tree().items() if name.split("/")[0] in ("sessions", "backups", "journal")}


def _notes(d: Daemon, *args: str) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = _json(d, "annotations", *args)["annotations"]
    return notes


# -- edit and delete ------------------------------------------------------------------------------


def test_edit_keeps_id_and_time_replaces_the_text_and_adds_one_event(daemon: Daemon) -> None:
    sid = _ok(daemon, "start", "Fix the proxy").strip()
    _ok(daemon, "note", "ngnix config is in /etc/nginx")
    _ok(daemon, "warn", "reload, never restart")
    before = _json(daemon, "show")
    note = before["annotations"][0]

    out = _ok(daemon, "annotations", "edit", note["id"][:8], "nginx", "config", "is", "in", "/etc/nginx")
    assert out == f"Note {note['id'][:8]} edited in {sid}: nginx config is in /etc/nginx\n"
    after = _json(daemon, "show")
    edited = after["annotations"][0]
    assert edited == dict(note, text="nginx config is in /etc/nginx"), "same id, time and type; new text"
    assert after["annotations"][1] == before["annotations"][1]
    assert after["stats"]["total_annotations"] == 2
    assert after["events"][:-1] == before["events"], "the audit trail only grows"
    event = after["events"][-1]
    assert event["event_type"] == "AnnotationAdded" and event["details"] == f"Annotation edited: {note['id']}"
    assert "ngnix" not in json.dumps(after), "the old text is not kept in the session (backups keep it)"

    # --type (or DocPilot's -a) changes the type too; the event says so.
    edited_json = _json(daemon, "annotations", "edit", "-a", "M", note["id"], "Proxy", "config", "found")
    assert edited_json == {"session": sid, "annotation": dict(note, text="Proxy config found", annotation_type="Milestone")}
    assert _json(daemon, "show")["events"][-1]["details"] == f"Annotation edited: {note['id']} (Note -> Milestone)"
    # The session file stays DocPilot's format once saved.
    _ok(daemon, "save")
    saved = daemon.read_session_file(sid)
    assert_docpilot_format(saved)
    assert saved["annotations"][0]["text"] == "Proxy config found"


def test_delete_removes_it_fixes_the_counts_and_adds_one_event(daemon: Daemon) -> None:
    sid = _ok(daemon, "start", "Rotate the keys").strip()
    _ok(daemon, "note", "first")
    _ok(daemon, "warn", "I regret this one")
    _ok(daemon, "milestone", "done")
    regret = _notes(daemon)[1]
    events = len(_json(daemon, "show")["events"])

    out = _ok(daemon, "annotations", "delete", regret["id"][:6])
    assert out == f"Warning {regret['id'][:8]} deleted from {sid} (2 annotations left)\n"
    shown = _json(daemon, "show")
    assert [a["text"] for a in shown["annotations"]] == ["first", "done"]
    assert shown["stats"]["total_annotations"] == 2 and len(shown["events"]) == events + 1
    assert shown["events"][-1]["details"] == f"Annotation deleted: {regret['id']} (Warning)"
    assert "regret" not in json.dumps(shown)
    assert _json(daemon, "status")["session"]["annotations"] == 2
    assert [s["annotations"] for s in _json(daemon, "sessions")] == [2]
    deleted = _json(daemon, "annotations", "delete", _notes(daemon)[0]["id"])
    assert deleted == {"session": sid, "deleted": shown["annotations"][0]["id"], "annotation_type": "Note", "remaining": 1}
    _ok(daemon, "save")
    assert_docpilot_format(daemon.read_session_file(sid))
    assert "regret" not in daemon.session_file(sid).read_text()


def test_a_paused_session_can_be_edited_a_stopped_one_cannot_and_nothing_changes(daemon: Daemon) -> None:
    sid = _ok(daemon, "start", "Paused and stopped").strip()
    _ok(daemon, "note", "a note")
    note = _notes(daemon)[0]
    _ok(daemon, "pause")
    _ok(daemon, "annotations", "edit", note["id"][:8], "edited while paused")
    _ok(daemon, "resume")
    _ok(daemon, "stop")
    files = _stored(daemon)
    shown = _json(daemon, "show")

    for args in (("edit", note["id"][:8], "too late"), ("delete", note["id"][:8])):
        err = _fails(daemon, TRANSITION, "annotations", *args)
        assert f"session {sid} is Stopped" in err and "only active and paused sessions" in err, err
        _fails(daemon, TRANSITION, "annotations", *args, "--session", sid)
        reply = daemon.request("edit_annotation" if args[0] == "edit" else "delete_annotation", session=sid,
                               annotation=note["id"], **({"text": "x"} if args[0] == "edit" else {}))
        assert reply["error"]["code"] == "invalid_transition"
    assert _json(daemon, "show") == shown and _stored(daemon) == files, "a refusal changes nothing"
    assert shown["annotations"][0]["text"] == "edited while paused"


def test_unknown_and_ambiguous_prefixes_are_one_clear_line(daemons: DaemonFactory, tmp_path: Path) -> None:
    d = daemons()
    # A session whose two annotations share their first 12 characters (imported: ids are random here).
    doc = json.loads(REFERENCE.read_bytes())
    sid = str(uuid.uuid4())
    first, second = "1b2c3d4e-5f60-4000-8000-00000000000a", "1b2c3d4e-5f60-4000-8000-00000000000b"
    doc["id"] = sid
    doc["annotations"][0]["id"], doc["annotations"][1]["id"] = first, second
    exported = tmp_path / "shared-prefix.json"
    exported.write_text(json.dumps(doc))
    _ok(d, "import", str(exported))
    texts = [a["text"] for a in _notes(d, "--session", sid)]
    files = _stored(d)

    for prefix in ("1b2c", "1B2C3D4E", "1b2c3d4e-5f60"):
        err = _fails(d, USAGE, "annotations", "edit", "--session", sid, prefix, "which one?")
        assert "ambiguous" in err and first in err and second in err, err
        _fails(d, USAGE, "annotations", "delete", "--session", sid, prefix)
    reply = d.request("delete_annotation", session=sid, annotation="1b2c")
    assert reply["ok"] is False and reply["error"]["code"] == "ambiguous_id"

    err = _fails(d, NO_SUCH, "annotations", "delete", "--session", sid, "ffff0000")
    assert "no annotation 'ffff0000'" in err and sid in err, err
    _fails(d, NO_SUCH, "annotations", "edit", "--session", sid, "not-an-id", "x")
    assert d.request("edit_annotation", session=sid, annotation="ffff0000", text="x")["error"]["code"] == "no_such_annotation"
    err = _fails(d, USAGE, "annotations", "delete", "--session", sid, "1b2")
    assert "at least 4 characters" in err, err
    assert _stored(d) == files and [a["text"] for a in _notes(d, "--session", sid)] == texts, "nothing changed"

    # The whole id, in any spelling, names one.
    _ok(d, "annotations", "edit", "--session", sid, second.upper().replace("-", ""), "the second, edited")
    _ok(d, "annotations", "delete", "--session", sid, first)
    assert [(a["id"], a["text"]) for a in _notes(d, "--session", sid)] == [(second, "the second, edited")]
    _ok(d, "annotations", "edit", "--session", sid, "1b2c", "now unambiguous")
    assert _notes(d, "--session", sid)[0]["text"] == "now unambiguous"


def test_an_acknowledged_edit_or_delete_survives_kill_9(daemons: DaemonFactory) -> None:
    d = daemons(env=NO_AUTOSAVE)
    sid = _ok(d, "start", "Crash right after").strip()
    _ok(d, "note", "tpyo")
    _ok(d, "warn", "delete me")
    _ok(d, "note", "untouched")
    typo, doomed, _ = _notes(d)
    _ok(d, "annotations", "edit", typo["id"][:8], "typo fixed")
    _ok(d, "annotations", "delete", doomed["id"][:8])
    expected = _json(d, "show")
    on_disk = d.read_session_file(sid)
    assert on_disk["annotations"] == [], "only the journal holds them when the daemon dies"
    d.kill9()
    d.start()
    assert _json(d, "show", "--session", sid) == expected
    assert [(a["id"], a["text"]) for a in expected["annotations"]] == [(typo["id"], "typo fixed"), (_["id"], "untouched")]
    # Once more, the edit acknowledged and the daemon killed at once, on a recovered session.
    _ok(d, "annotations", "edit", typo["id"], "edited after recovery")
    d.kill9()
    d.start()
    assert _notes(d, "--session", sid)[0]["text"] == "edited after recovery"
    assert _json(d, "recovery")["sessions"][0]["problems"] == []


def test_restore_of_an_older_backup_brings_a_deleted_annotation_back(daemon: Daemon) -> None:
    sid = _ok(daemon, "start", "Regrets").strip()
    _ok(daemon, "note", "keep")
    _ok(daemon, "warn", "deleted, then wanted back")
    _ok(daemon, "save")
    wanted = _notes(daemon)[1]
    _ok(daemon, "annotations", "delete", wanted["id"][:8])
    _ok(daemon, "save")
    assert [a["text"] for a in _notes(daemon)] == ["keep"]
    assert "wanted back" not in daemon.session_file(sid).read_text()

    newest = _json(daemon, "backups")["backups"][0]["name"]  # the snapshot the second save replaced
    assert "wanted back" in (daemon.backups_dir / newest).read_text()
    restored = _json(daemon, "restore", newest)
    assert restored["annotations"] == 2 and restored["restored_from"] == newest
    assert _notes(daemon)[1] == wanted, "the same id, time, type and text"
    assert "wanted back" in daemon.session_file(sid).read_text()
    daemon.kill9()
    daemon.start()
    assert _notes(daemon)[1] == wanted


def test_an_edit_is_redacted_like_a_new_annotation(daemon: Daemon) -> None:
    sid = _ok(daemon, "start", "Secrets in notes").strip()
    _ok(daemon, "note", "db user is app")
    note = _notes(daemon)[0]
    edited = _json(daemon, "annotations", "edit", note["id"][:8], "db", "password=hunter2secret")
    assert edited["annotation"]["text"] == "db password=[REDACTED]"
    _ok(daemon, "save")
    for path in daemon.home.rglob("*"):
        if path.is_file():
            assert b"hunter2secret" not in path.read_bytes(), path
    assert _notes(daemon, "--session", sid)[0]["text"] == "db password=[REDACTED]"


def test_edits_and_deletes_arriving_together_each_find_their_annotation_or_a_clear_error(
    daemons: DaemonFactory,
) -> None:
    """Several clients edit one annotation while another deletes it: every reply arrives, each is
    `ok` or no_such_annotation, and the session the daemon serves, and recovers after kill -9,
    holds exactly what was acknowledged."""
    d = daemons(env=NO_AUTOSAVE)
    sid = _ok(d, "start", "Racing edits").strip()
    _ok(d, "note", "contested")
    _ok(d, "note", "bystander")
    target = _notes(d)[0]["id"]
    replies: list[dict[str, Any]] = []
    lock = threading.Lock()

    def send(request: dict[str, Any]) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(20)
            sock.connect(str(d.socket_path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(read_line(sock))
        with lock:
            replies.append(reply)

    requests = [{"op": "edit_annotation", "session": sid, "annotation": target[:8], "text": f"edit {i}"} for i in range(12)]
    requests.insert(6, {"op": "delete_annotation", "session": sid, "annotation": target})
    threads = [threading.Thread(target=send, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(replies) == len(requests), "every request answered"
    for reply in replies:
        assert reply["ok"] or reply["error"]["code"] == "no_such_annotation", reply
    done = sum(1 for r in replies if r["ok"])
    shown = _json(d, "show")
    assert [a["text"] for a in shown["annotations"]] == ["bystander"] and shown["stats"]["total_annotations"] == 1
    assert len(shown["events"]) == 1 + 2 + done, "one event per acknowledged change"
    d.kill9()
    d.start()
    assert _json(d, "show", "--session", sid) == shown


# -- DocPilot's flags ------------------------------------------------------------------------------


def test_annotations_recent_and_filter_type_with_long_and_short_forms(daemon: Daemon) -> None:
    sid = _ok(daemon, "start", "Flags").strip()
    for args in (("note", "n1"), ("warn", "w1"), ("explain", "e1"), ("note", "n2"), ("milestone", "m1"),
                 ("warn", "w2")):
        _ok(daemon, *args)

    def texts(*args: str) -> list[str]:
        return [a["text"] for a in _notes(daemon, *args)]

    assert texts() == ["n1", "w1", "e1", "n2", "m1", "w2"]
    assert texts("-r", "2") == texts("--recent", "2") == ["m1", "w2"]
    assert texts("--recent", "100") == texts()
    for spelling in ("warning", "w", "W", "Warning", "WARNING"):
        assert texts("-f", spelling) == texts("--filter-type", spelling) == ["w1", "w2"], spelling
    assert texts("-f", "n") == ["n1", "n2"] and texts("-f", "e") == ["e1"] and texts("-f", "milestone") == ["m1"]
    assert texts("-f", "n", "-r", "1") == ["n2"], "the most recent of that type"
    filtered = _json(daemon, "annotations", "-f", "w")
    assert filtered["total"] == 6 and filtered["session"] == sid
    assert "total" not in _json(daemon, "annotations"), "left out when nothing was filtered"

    human = _ok(daemon, "annotations", "-f", "w")
    lines = human.splitlines()
    assert len(lines) == 2 and all("Warning" in line for line in lines)
    first_id = _notes(daemon, "-f", "w")[0]["id"]
    assert lines[0].startswith(first_id[:8] + "  "), "the id's start: what edit and delete take"
    _ok(daemon, "annotations", "delete", first_id[:8])
    _ok(daemon, "annotations", "delete", _notes(daemon, "-f", "w")[0]["id"][:8])
    assert _ok(daemon, "annotations", "-f", "w") == "no matching annotations (4 in all)\n"


@pytest.mark.parametrize("flag, spelling, kind", [
    ("-a", "w", "Warning"), ("--annotation-type", "explanation", "Explanation"), ("-a", "M", "Milestone"),
    ("--type", "warning", "Warning"), ("-t", "milestone", "Milestone"), ("-t", "n", "Note"), ("-a", "Note", "Note"),
])
def test_annotate_takes_docpilots_annotation_type_flag_and_short_forms(daemon: Daemon, flag: str, spelling: str,
                                                                       kind: str) -> None:
    _ok(daemon, "start", "Types")
    assert _json(daemon, "annotate", flag, spelling, "typed")["annotation"]["annotation_type"] == kind
    assert _json(daemon, "annotate", "typed", flag, spelling)["annotation"]["annotation_type"] == kind


USAGE_MISTAKES = [
    ("annotate", "-a", "shout", "x"), ("annotate", "-a"), ("annotations", "-r", "0"), ("annotations", "-r", "many"),
    ("annotations", "--recent", "-3"), ("annotations", "-f", "todo"), ("annotations", "edit"),
    ("annotations", "edit", "1b2c"), ("annotations", "delete"), ("annotations", "delete", "1b2c", "extra"),
    ("annotations", "frobnicate"), ("annotations", "edit", "1b2c", "x", "-a", "loud"),
    ("annotations", "edit", "1b2c", "x", "-r", "1"),
]


@pytest.mark.parametrize("args", USAGE_MISTAKES, ids=" ".join)
def test_usage_mistakes_are_one_line_and_exit_2_without_a_daemon(daemons: DaemonFactory, args: tuple[str, ...]) -> None:
    d = daemons(start=False)
    _fails(d, USAGE, *args)


def test_usage_mistakes_against_a_daemon_change_nothing(daemon: Daemon) -> None:
    _ok(daemon, "start", "Mistakes")
    _ok(daemon, "note", "untouched")
    files = _stored(daemon)
    note = _notes(daemon)[0]
    for args in USAGE_MISTAKES:
        _fails(daemon, USAGE, *args)
    _fails(daemon, USAGE, "annotations", "edit", note["id"][:8], "   ")
    _fails(daemon, USAGE, "annotations", "delete", "   ")
    assert _stored(daemon) == files and _notes(daemon) == [note]
    # Help for the actions is there, and is not an error.
    rc, out, _ = _run(daemon, "annotations", "edit", "--help")
    assert rc == OK and "--annotation-type" in out
