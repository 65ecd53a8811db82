"""Another program damages a session file while the daemon runs.

A live session's file that is truncated, torn, overwritten with garbage or deleted is rewritten
from memory within seconds, and the damaged bytes are kept in quarantine/. The daemon's own writes
are never taken for foreign ones. The periodic rescan finds damage that the kernel never reported.
A valid edit to a stopped session's file is accepted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import REFERENCE, Daemon, DaemonFactory, assert_docpilot_format, wait_for

REPAIR_TIMEOUT = 10.0


def _live_session(d: Daemon) -> tuple[str, bytes]:
    """A live session with some content, saved; returns its id and its file's bytes."""
    sid = d.call("start", description="Watched while live")["id"]
    for i in range(5):
        d.call("record", session=sid, command=f"make step{i}", exit_code=0)
    d.call("annotate", session=sid, text="halfway", type="milestone")
    d.call("save")
    return sid, d.session_file(sid).read_bytes()


def _repaired(d: Daemon, sid: str, damaged: bytes | None) -> dict[str, Any] | None:
    """The session file's content once it is whole again (not the damaged bytes), else None."""
    try:
        data = d.session_file(sid).read_bytes()
    except FileNotFoundError:
        return None
    if damaged is not None and data == damaged:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and len(doc.get("commands", ())) == 5 else None


def _settle() -> None:
    """Let the watcher's debounced look at the daemon's own last write pass (DEBOUNCE_S is 0.2 s),
    so that nothing but the rescan can notice what a test does next. Generous: on a loaded machine
    that look came after 0.6 s, saw the test's damage and repaired it."""
    time.sleep(1.5)


def _quarantined(d: Daemon) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.quarantine_dir.iterdir() if not p.name.endswith(".reason")}


def _damage(path: Path, how: str, good: bytes) -> bytes | None:
    """Damage `path` in place the way another program might; returns the bytes left there."""
    if how == "delete":
        path.unlink()
        return None
    if how == "truncate":
        damaged = b""
    elif how == "torn":
        damaged = good[: len(good) // 2]
    elif how == "garbage":
        damaged = b"\x00\xffnot json at all {{{\n" * 3
    elif how == "valid_json_wrong_shape":
        damaged = b'{"id": "x", "hello": "world"}\n'
    else:  # pragma: no cover
        raise ValueError(how)
    with open(path, "r+b") as handle:  # same inode: the way an editor or a stray `>` does it
        handle.truncate(0)
        handle.write(damaged)
    return damaged


@pytest.mark.parametrize("how", ["truncate", "torn", "garbage", "valid_json_wrong_shape", "delete"])
def test_damaged_live_file_is_rewritten_from_memory(daemon: Daemon, how: str) -> None:
    sid, good = _live_session(daemon)
    damaged = _damage(daemon.session_file(sid), how, good)

    doc = wait_for(lambda: _repaired(daemon, sid, damaged), REPAIR_TIMEOUT, what=f"repair after {how}")
    assert_docpilot_format(doc)
    assert [c["command"] for c in doc["commands"]] == [f"make step{i}" for i in range(5)]
    assert [a["text"] for a in doc["annotations"]] == ["halfway"]
    if damaged is not None:
        kept = _quarantined(daemon)
        assert list(kept.values()) == [damaged], f"the damaged copy must be kept in quarantine/: {kept}"
        (name,) = kept
        assert (daemon.quarantine_dir / f"{name}.reason").exists()
    # Still live and still taking changes, which land in the rewritten file.
    daemon.call("annotate", session=sid, text="after the repair")
    daemon.call("save")
    assert daemon.read_session_file(sid)["annotations"][-1]["text"] == "after the repair"
    assert daemon.alive


def test_rescan_finds_damage_the_kernel_never_reported(daemons: DaemonFactory, tmp_path: Path) -> None:
    # A write through a hard link outside sessions/ produces no inotify event on sessions/, exactly
    # like an event lost to a queue overflow: only the periodic rescan can notice it.
    d = daemons(env={"DOCPILOT_RESCAN_INTERVAL": "1"})
    sid, _good = _live_session(d)
    _settle()
    elsewhere = tmp_path / "elsewhere.json"
    os.link(d.session_file(sid), elsewhere)
    with open(elsewhere, "r+b") as handle:
        handle.truncate(0)
        handle.write(b"garbage written through another name")
    doc = wait_for(lambda: _repaired(d, sid, b"garbage written through another name"), REPAIR_TIMEOUT, what="rescan")
    assert len(doc["annotations"]) == 1
    assert list(_quarantined(d).values()) == [b"garbage written through another name"]


def test_without_rescan_unreported_damage_goes_unnoticed(daemons: DaemonFactory, tmp_path: Path) -> None:
    # The control of the test above: with the rescan an hour away, the same damage stays, so the
    # repair there is the rescan's doing.
    d = daemons(env={"DOCPILOT_RESCAN_INTERVAL": "3600"})
    sid, _good = _live_session(d)
    _settle()
    elsewhere = tmp_path / "elsewhere.json"
    os.link(d.session_file(sid), elsewhere)
    with open(elsewhere, "r+b") as handle:
        handle.truncate(0)
        handle.write(b"unreported")
    time.sleep(1.5)
    assert d.session_file(sid).read_bytes() == b"unreported"


def test_own_writes_are_not_taken_for_foreign_ones(daemons: DaemonFactory) -> None:
    d = daemons(env={"DOCPILOT_AUTOSAVE_INTERVAL": "0.2", "DOCPILOT_RESCAN_INTERVAL": "0.5"})
    sid = d.call("start", description="Saved over and over")["id"]
    for i in range(30):
        d.call("record", session=sid, command=f"step {i}", exit_code=0)
        if i % 5 == 0:
            d.call("save")
    wait_for(lambda: len(list(d.backups_dir.iterdir())) >= 3, 10, what="several autosaves")
    time.sleep(1.2)  # past two rescans
    assert list(d.quarantine_dir.iterdir()) == []
    assert "another program" not in d.log() and "WARNING" not in d.log(), d.log()
    doc = d.read_session_file(sid)
    assert len(doc["commands"]) == 30


def test_valid_edit_of_stopped_session_file_is_accepted(daemons: DaemonFactory) -> None:
    d = daemons(env={"DOCPILOT_RESCAN_INTERVAL": "2"})
    sid = d.call("start", description="Written before the edit")["id"]
    d.call("record", session=sid, command="terraform apply", exit_code=0)
    d.call("stop", session=sid)
    d.call("save")

    # Edit as DocPilot or a person would: plain Session JSON (no docpilotd field), temp + rename.
    doc = d.read_session_file(sid)
    doc.pop("docpilotd")
    doc["description"] = "Corrected by hand"
    doc["commands"][0]["output"] = "Apply complete! Resources: 3 added."
    tmp = d.sessions_dir / f"{sid}.tmp"
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, d.session_file(sid))

    shown = wait_for(
        lambda: (s := d.client_json("show", "--session", sid))["description"] == "Corrected by hand" and s,
        REPAIR_TIMEOUT, what="the edit to be accepted",
    )
    assert shown["commands"][0]["output"] == "Apply complete! Resources: 3 added."
    assert shown["state"] == "Stopped"
    # Re-saved as the daemon's own file (checksummed), the edit intact.
    saved = wait_for(lambda: "docpilotd" in (f := d.read_session_file(sid)) and f, REPAIR_TIMEOUT, what="re-save")
    assert saved["description"] == "Corrected by hand"
    assert list(d.quarantine_dir.iterdir()) == []
    # The edit survives a restart.
    assert d.terminate() == 0
    d.start()
    assert d.call("show", session=sid)["description"] == "Corrected by hand"


def test_damaged_stopped_session_file_is_restored(daemons: DaemonFactory) -> None:
    d = daemons(env={"DOCPILOT_RESCAN_INTERVAL": "2"})
    sid = d.call("start", description="Stopped, then damaged")["id"]
    d.call("save")
    d.call("record", session=sid, command="systemctl restart app", exit_code=0)
    d.call("stop", session=sid)
    d.call("save")
    d.session_file(sid).write_bytes(b"\x00" * 100)

    doc = wait_for(
        lambda: _stopped_copy(d, sid), REPAIR_TIMEOUT, what="the stopped session's file to be restored"
    )
    assert [c["command"] for c in doc["commands"]] == ["systemctl restart app"]
    assert list(_quarantined(d).values()) == [b"\x00" * 100]
    assert d.call("show", session=sid)["state"] == "Stopped"


def _stopped_copy(d: Daemon, sid: str) -> dict[str, Any] | None:
    try:
        doc = d.read_session_file(sid)
    except (FileNotFoundError, ValueError):
        return None
    return doc if doc.get("state") == "Stopped" else None


def test_docpilot_file_copied_in_while_running_is_adopted(daemon: Daemon) -> None:
    ref_bytes = REFERENCE.read_bytes()
    sid = json.loads(ref_bytes)["id"]
    tmp = daemon.sessions_dir / f"{sid}.tmp"  # the way DocPilot itself writes: temp, then rename
    tmp.write_bytes(ref_bytes)
    os.replace(tmp, daemon.session_file(sid))

    listed = wait_for(
        lambda: [s for s in daemon.call("sessions") if s["id"] == sid], REPAIR_TIMEOUT, what="adoption"
    )
    assert (listed[0]["state"], listed[0]["commands"], listed[0]["annotations"]) == ("Active", 3, 2)
    daemon.call("annotate", session=sid, text="noted after adoption")
    daemon.call("save")
    doc = daemon.read_session_file(sid)
    assert_docpilot_format(doc)
    assert len(doc["annotations"]) == 3
    kept = [p.read_bytes() for p in daemon.backups_dir.iterdir()]
    assert ref_bytes in kept, "the copied-in file is kept as a backup generation"
    assert list(daemon.quarantine_dir.iterdir()) == []
