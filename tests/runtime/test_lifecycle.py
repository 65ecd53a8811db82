"""A session's whole life through the real client, and what lands on disk.

Each test runs a real `docpilotd run` in a temporary DOCPILOT_HOME. The files are read back as
plain JSON and compared with the shape of DocPilot's reference session, so a file docpilotd writes
is one DocPilot can load.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from typing import Any

from tests.daemon_harness import REFERENCE, Daemon, DaemonFactory, assert_docpilot_format, read_line, wait_for


def _ok(d: Daemon, *args: str, env: dict[str, str] | None = None) -> str:
    rc, out, err = d.client(*args, env=env)
    assert rc == 0, f"docpilot {' '.join(args)} exited {rc}: {err}"
    assert "Traceback" not in err
    return out


def _events(doc: dict[str, Any]) -> list[str]:
    return [e["event_type"] for e in doc["events"]]


def test_life_cycle_with_aliases_lands_on_disk_in_docpilot_format(daemon: Daemon) -> None:
    out = _ok(daemon, "begin", "Set", "up", "the", "staging", "proxy", "--tag", "infra")
    sid = out.strip()
    assert str(uuid.UUID(sid)) == sid, f"start must print the new id, printed {out!r}"

    _ok(daemon, "n", "first a note")
    _ok(daemon, "exp", "nginx proxies to the app")
    _ok(daemon, "warning", "port 80 needs root")
    _ok(daemon, "mile", "proxy answers")
    _ok(daemon, "comment", "--type", "explanation", "typed by --type")
    _ok(daemon, "add", "plain add is a note")
    _ok(daemon, "record", "--exit-code", "0", "--cwd", "/srv", "--shell", "zsh", "--", "nginx", "-t")
    _ok(daemon, "record", "--exit-code", "2", "--", "curl", "-f", "http://localhost")
    _ok(daemon, "record", "--", "echo", "no exit code")
    _ok(daemon, "hold")
    rc, _, err = daemon.client("record", "--exit-code", "0", "--", "ls")
    assert rc == 5 and "Traceback" not in err, "a paused session records no commands"
    _ok(daemon, "continue")
    _ok(daemon, "hold")
    _ok(daemon, "unpause")
    listed = json.loads(_ok(daemon, "list", "--json"))
    assert [a["text"] for a in listed["annotations"]][:2] == ["first a note", "nginx proxies to the app"]
    for verb in ("info", "stat"):
        status = json.loads(_ok(daemon, verb, "--json"))
        assert status["session"]["id"] == sid and status["session"]["state"] == "Active"
    _ok(daemon, "end")
    # `end` (stop) wrote the final snapshot before it answered: nothing is left to save.
    assert json.loads(_ok(daemon, "save", "--json")) == {"saved": 0}

    raw = daemon.session_file(sid).read_bytes()
    assert raw.startswith(b'{\n  "id": '), "DocPilot writes (and reads) pretty JSON, 2-space indent"
    doc = json.loads(raw)
    assert_docpilot_format(doc)
    assert doc["id"] == sid and doc["description"] == "Set up the staging proxy"
    assert doc["state"] == "Stopped" and doc["stopped_at"] is not None
    assert doc["metadata"]["tags"] == ["infra"]
    assert [a["annotation_type"] for a in doc["annotations"]] == [
        "Note", "Explanation", "Warning", "Milestone", "Explanation", "Note",
    ]
    assert [(c["command"], c["exit_code"]) for c in doc["commands"]] == [
        ("nginx -t", 0), ("curl -f http://localhost", 2), ("echo no exit code", None),
    ]
    assert doc["commands"][0]["working_directory"] == "/srv" and doc["commands"][0]["shell"] == "zsh"
    assert _events(doc) == (
        ["SessionStarted"] + ["AnnotationAdded"] * 6 + ["CommandCaptured"] * 3
        + ["SessionPaused", "SessionResumed"] * 2 + ["SessionStopped"]
    )
    assert doc["stats"]["pause_resume_count"] == 2
    assert doc["stats"]["successful_commands"] == 1 and doc["stats"]["failed_commands"] == 1
    assert isinstance(doc["stats"]["duration_seconds"], int) and doc["stats"]["duration_seconds"] >= 0
    stamps = [doc["created_at"]] + [e["timestamp"] for e in doc["events"]]
    assert stamps == sorted(stamps) and doc["updated_at"] == stamps[-1]


def test_canonical_verbs_and_remaining_aliases(daemon: Daemon) -> None:
    sid = _ok(daemon, "new", "Rotate the TLS certificates").strip()
    _ok(daemon, "note", "n1")
    _ok(daemon, "explain", "e1")
    _ok(daemon, "warn", "w1")
    _ok(daemon, "alert", "w2")
    _ok(daemon, "milestone", "m1")
    _ok(daemon, "checkpoint", "m2")
    _ok(daemon, "annotate", "--type", "milestone", "m3")
    _ok(daemon, "pause")
    _ok(daemon, "resume")
    kinds = [a["annotation_type"] for a in json.loads(_ok(daemon, "annotations", "--json"))["annotations"]]
    assert kinds == ["Note", "Explanation", "Warning", "Warning", "Milestone", "Milestone", "Milestone"]
    assert json.loads(_ok(daemon, "status", "--json"))["session"]["id"] == sid
    assert json.loads(_ok(daemon, "stop", "--json"))["state"] == "Stopped"

    other = _ok(daemon, "start", "Short one").strip()
    assert json.loads(_ok(daemon, "finish", "--json"))["id"] == other
    states = {s["id"]: s["state"] for s in json.loads(_ok(daemon, "sessions", "--json"))}
    assert states == {sid: "Stopped", other: "Stopped"}
    # A stopped session cannot change; the most recent live session is gone too.
    rc, _, err = daemon.client("note", "--session", sid, "too late")
    assert rc == 5, err


def test_sigterm_saves_everything_and_releases_the_lock(daemons: DaemonFactory) -> None:
    d = daemons()  # default autosave interval (30 s): only the shutdown can have written the file
    sid = d.call("start", description="Upgrade postgres")["id"]
    d.call("record", session=sid, command="pg_upgrade --check", exit_code=0)
    d.call("annotate", session=sid, text="check passed", type="milestone")
    d.call("pause", session=sid)
    # `start` wrote the session's first snapshot; nothing since (autosave is 30 s).
    early = d.read_session_file(sid)
    assert early["state"] == "Active" and early["commands"] == [] and early["annotations"] == []

    assert d.terminate() == 0
    assert "Traceback" not in d.log()
    doc = d.read_session_file(sid)
    assert_docpilot_format(doc)
    assert doc["state"] == "Paused"
    assert [c["command"] for c in doc["commands"]] == ["pg_upgrade --check"]
    assert [a["text"] for a in doc["annotations"]] == ["check passed"]
    assert doc["docpilotd"]["seq"] == 4, "the snapshot holds every journal record"
    assert not d.socket_path.exists(), "a clean shutdown removes its socket"

    d.start()  # the lock was released: the same data root starts again
    assert d.call("resume", session=sid)["state"] == "Active"


def test_sigint_also_saves_and_exits_zero(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="Interrupted by ^C")["id"]
    d.call("annotate", session=sid, text="saved on SIGINT")
    assert d.terminate(signum=signal.SIGINT) == 0
    assert [a["text"] for a in d.read_session_file(sid)["annotations"]] == ["saved on SIGINT"]


def test_kill9_then_restart_loses_nothing_acknowledged(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="Acknowledged means durable")["id"]
    d.call("save")
    acknowledged: list[str] = []
    for i in range(40):
        if i % 4 == 3:
            d.call("annotate", session=sid, text=f"note {i}")
        else:
            d.call("record", session=sid, command=f"step {i}", exit_code=i % 3)
        acknowledged.append(f"{i}")
    _ok(d, "warn", "--session", sid, "via the client")
    second = d.call("start", description="Started after the last save")["id"]
    d.call("pause", session=second)

    d.kill9()
    assert d.socket_path.exists(), "kill -9 leaves the socket file behind"
    rc, _, err = d.client("status")
    assert rc == 3 and "docpilotd run" in err, "a stale socket means 'not running', with the hint"

    d.start()  # a stale socket file is no obstacle
    shown = d.call("show", session=sid)
    assert [c["command"] for c in shown["commands"]] == [f"step {i}" for i in range(40) if i % 4 != 3]
    assert [a["text"] for a in shown["annotations"]] == [f"note {i}" for i in range(40) if i % 4 == 3] + [
        "via the client"
    ]
    assert d.call("show", session=second)["state"] == "Paused"
    report = {s["session_id"]: s for s in d.call("recovery")["sessions"]}
    assert report[sid]["replayed"] >= 41 and report[second]["replayed"] == 1  # start wrote its snapshot; the pause is replayed

    d.call("save")
    doc = d.read_session_file(sid)
    assert_docpilot_format(doc)
    assert len(doc["commands"]) == 30 and len(doc["annotations"]) == 11
    assert d.call("resume", session=second)["state"] == "Active"


def test_autosave_writes_changed_sessions_only(daemons: DaemonFactory) -> None:
    d = daemons(env={"DOCPILOT_AUTOSAVE_INTERVAL": "0.3"})
    busy = d.call("start", description="Changes all the time")["id"]
    quiet = d.call("start", description="Changes once")["id"]
    wait_for(lambda: d.session_file(busy).exists() and d.session_file(quiet).exists(), 10, what="first autosave")
    wait_for(lambda: not d.call("status", session=quiet)["session"]["unsaved"], 10, what="quiet saved")
    quiet_stat = os.stat(d.session_file(quiet))

    d.call("annotate", session=busy, text="written by autosave, no save request")
    wait_for(
        lambda: [a["text"] for a in d.read_session_file(busy)["annotations"]]
        == ["written by autosave, no save request"],
        10, what="autosave of the changed session",
    )
    later = os.stat(d.session_file(quiet))
    assert (later.st_ino, later.st_mtime_ns) == (quiet_stat.st_ino, quiet_stat.st_mtime_ns), (
        "an unchanged session must not be rewritten"
    )


def _reference() -> dict[str, Any]:
    return json.loads(REFERENCE.read_bytes())


def _earlier_version(doc: dict[str, Any]) -> dict[str, Any]:
    """The reference session as it was after its second command (a plausible older backup)."""
    old = json.loads(json.dumps(doc))
    old["commands"] = old["commands"][:2]
    old["annotations"] = []
    old["events"] = old["events"][:3]
    old["updated_at"] = old["commands"][-1]["timestamp"]
    old["stats"].update(total_commands=2, successful_commands=2, failed_commands=0, total_annotations=0)
    return old


def _paused_session() -> dict[str, Any]:
    """A second DocPilot session, paused, that exists only as a second-named backup."""
    doc = _reference()
    doc["id"] = str(uuid.uuid4())
    doc["description"] = "Only a backup is left of this one"
    doc["state"] = "Paused"
    pause_at = "2025-08-01T09:00:40.5Z"
    doc["updated_at"] = pause_at
    doc["events"].append(
        {"id": str(uuid.uuid4()), "event_type": "SessionPaused", "timestamp": pause_at, "details": None}
    )
    doc["stats"]["pause_resume_count"] = 1
    return doc


def test_docpilot_files_and_second_named_backups_load_and_resume(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    ref_bytes = REFERENCE.read_bytes()
    ref = json.loads(ref_bytes)
    sid = ref["id"]
    for sub in ("sessions", "backups"):
        (d.home / sub).mkdir(parents=True)
    d.session_file(sid).write_bytes(ref_bytes)
    old_name = f"{sid}_1722503702.json"
    (d.backups_dir / old_name).write_text(json.dumps(_earlier_version(ref), indent=2))
    orphan = _paused_session()
    orphan_backup = f"{orphan['id']}_1722503702.json"
    (d.backups_dir / orphan_backup).write_text(json.dumps(orphan, indent=2))

    d.start()
    assert d.session_file(sid).read_bytes() == ref_bytes, "a healthy DocPilot file is never rewritten at start"
    listed = {s["id"]: s for s in d.client_json("sessions")}
    assert set(listed) == {sid, orphan["id"]}
    assert (listed[sid]["state"], listed[sid]["commands"], listed[sid]["annotations"]) == ("Active", 3, 2)
    assert (listed[orphan["id"]]["state"], listed[orphan["id"]]["commands"]) == ("Paused", 3)
    names = [b["name"] for b in d.client_json("backups", "--session", sid)["backups"]]
    assert names == [old_name]

    _ok(d, "note", "--session", sid, "picked up by docpilotd")
    _ok(d, "pause", "--session", sid)
    _ok(d, "resume", "--session", sid)
    _ok(d, "record", "--session", sid, "--exit-code", "0", "--", "npm", "test")
    assert d.client_json("resume", "--session", orphan["id"])["state"] == "Active"
    _ok(d, "milestone", "--session", orphan["id"], "back in business")
    d.call("save")

    doc = d.read_session_file(sid)
    assert_docpilot_format(doc)
    assert [a["text"] for a in doc["annotations"]][-1] == "picked up by docpilotd"
    assert [c["command"] for c in doc["commands"]][-1] == "npm test" and doc["state"] == "Active"
    assert doc["annotations"][:2] == ref["annotations"] and doc["commands"][:3] == ref["commands"]
    kept = [p.read_bytes() for p in d.backups_dir.iterdir()]
    assert ref_bytes in kept, "the DocPilot file became a backup generation before it was replaced"
    orphan_doc = d.read_session_file(orphan["id"])
    assert_docpilot_format(orphan_doc)
    assert orphan_doc["state"] == "Active" and orphan_doc["stats"]["pause_resume_count"] == 1

    restored = d.client_json("restore", "--session", sid, old_name)
    assert (restored["commands"], restored["annotations"], restored["restored_from"]) == (2, 0, old_name)
    shown = d.client_json("show", "--session", sid)
    assert shown["commands"] == ref["commands"][:2] and shown["annotations"] == []


def test_sigterm_under_load_keeps_every_acknowledged_change(daemons: DaemonFactory) -> None:
    d = daemons()
    sids = [d.call("start", description=f"Writer {i}")["id"] for i in range(4)]
    acked: dict[str, list[str]] = {sid: [] for sid in sids}
    go = threading.Event()

    def writer(sid: str) -> None:
        try:
            with d.connect(timeout=20) as sock:
                go.wait()
                for n in range(100_000):
                    command = f"cmd {n}"
                    sock.sendall(json.dumps({"op": "record", "session": sid, "command": command}).encode() + b"\n")
                    line = read_line(sock)
                    if not line:
                        return
                    reply = json.loads(line)
                    if not reply["ok"]:
                        return
                    acked[sid].append(command)
        except OSError:
            return

    threads = [threading.Thread(target=writer, args=(sid,)) for sid in sids]
    for t in threads:
        t.start()
    go.set()
    wait_for(lambda: all(len(v) >= 20 for v in acked.values()), 20, what="some acknowledged records")
    d.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=30)
    assert d.terminate() == 0
    for sid in sids:
        saved = [c["command"] for c in d.read_session_file(sid)["commands"]]
        assert saved[: len(acked[sid])] == acked[sid], f"{sid}: an acknowledged record is missing from the final save"
        assert len(saved) <= len(acked[sid]) + 1, "at most the one unanswered request may have been applied"
