"""Recovery preferences through a real daemon: `recovery_prefer = "most_complete"` serves the
fuller copy, `recovery_damage = "offline"` keeps a damaged session offline (files untouched,
requests refused with session_offline, shown by `sessions`, `status` and `recovery`) until
`docpilotd fsck --repair` brings it back at the next start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from docpilotd.paths import layout_for
from tests.conftest import build_session, encoded
from tests.daemon_harness import Daemon, DaemonFactory
from tests.storage.test_recovery_preferences import restored_generation_root, state

DATA = ("sessions", "backups", "journal", "quarantine")


def files_of(home: Path, sid: str) -> dict[str, bytes]:
    """Every file of session `sid` in the data directories, with its bytes."""
    found = {}
    for top in DATA:
        for path in sorted((home / top).rglob("*")):
            if sid in path.name and path.is_file():
                found[str(path.relative_to(home))] = path.read_bytes()
    return found


def prepared(daemons: DaemonFactory, config: str, **env: str) -> tuple[Daemon, str, str]:
    """A data root (not started) holding the damaged session of restored_generation_root and a
    healthy one, with `config` as its configuration file."""
    d = daemons(start=False, env=env)
    layout = layout_for(d.home)
    layout.ensure()
    store, damaged = restored_generation_root(layout)
    healthy = build_session(commands=2)
    store.save(healthy, 1)
    (d.home / "docpilotd.toml").write_text(config)
    return d, damaged, healthy.id


def test_most_complete_serves_the_fuller_copy_and_the_report_names_it(daemons: DaemonFactory) -> None:
    newest, sid, _ = prepared(daemons, "")
    fullest, _, _ = prepared(daemons, 'recovery_prefer = "most_complete"\n')
    newest.start()
    fullest.start()
    assert len(newest.call("show", session=sid)["commands"]) == 4
    assert len(fullest.call("show", session=sid)["commands"]) == 6
    assert newest.client_json("recovery")["prefer"] == "newest_valid"
    report = fullest.client_json("recovery")
    assert report["prefer"] == "most_complete" and report["damage"] == "quarantine"
    (entry,) = [s for s in report["sessions"] if s["session_id"] == sid]
    assert entry["commands"] == 6 and any("most_complete" in p for p in entry["problems"])
    rc, out, _ = fullest.client("recovery")
    assert rc == 0 and "recovery_prefer = most_complete" in out


def test_offline_keeps_files_refuses_requests_and_fsck_repair_brings_it_back(daemons: DaemonFactory) -> None:
    d, sid, healthy = prepared(daemons, 'recovery_damage = "offline"\n', DOCPILOT_RESCAN_INTERVAL="0.3")
    before = files_of(d.home, sid)
    d.start()
    assert len(d.call("show", session=healthy)["commands"]) == 2  # the others are served
    assert files_of(d.home, sid) == before
    # Any request naming it, by id or by prefix: the new error, with what to do.
    for name in (sid, sid[:8], sid.upper()):
        reply = d.request("show", session=name)
        assert not reply["ok"] and reply["error"]["code"] == "session_offline", reply
    rc, out, err = d.client("note", "--session", sid, "hello")
    assert rc == 7 and err.count("\n") == 1 and "docpilotd fsck --repair" in err, (rc, err)
    # Shown as offline.
    listed = {s["id"]: s for s in d.client_json("sessions")}
    assert listed[sid]["state"] == "Offline" and "not valid JSON" in listed[sid]["offline"]
    assert listed[healthy]["state"] == "Active" and "offline" not in listed[healthy]
    assert sid in d.client_json("status")["daemon"]["offline"]
    rc, out, _ = d.client("status")
    assert rc == 0 and f"OFFLINE {sid}" in out
    report = d.client_json("recovery")
    assert report["damage"] == "offline" and [o["session_id"] for o in report["offline"]] == [sid]
    # The watcher neither adopts nor repairs it behind recovery's back: a change event on its file
    # and several rescans later, nothing moved.
    os.utime(d.session_file(sid))
    time.sleep(1.2)
    assert d.request("show", session=sid)["error"]["code"] == "session_offline"
    assert files_of(d.home, sid) == before
    # A session with its id cannot be imported over it either.
    copy = d.home.parent / f"{d.home.name}-import.json"
    copy.write_bytes(encoded(state(3)))
    reply = d.request("import", path=str(copy))
    assert not reply["ok"] and reply["error"]["code"] == "session_offline", reply
    assert files_of(d.home, sid) == before
    d.terminate()
    assert files_of(d.home, sid) == before  # nor by the final save
    done = subprocess.run([sys.executable, "-m", "docpilotd.admin", "fsck", "--repair"], env=d.env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    d.start()
    assert len(d.call("show", session=sid)["commands"]) == 4
    assert d.client_json("recovery")["offline"] == []
    assert any(sid in p.name for p in d.quarantine_dir.iterdir())  # the torn file, kept
