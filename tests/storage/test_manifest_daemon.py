"""A real daemon restarted over many finished sessions takes them from the manifest: its recovery
report says how many, the sessions are all there and load whole, and a session edited behind its
back while it was down is noticed."""

from __future__ import annotations

import os
import stat

from tests.daemon_harness import DaemonFactory, daemons  # noqa: F401  (fixture)

FINISHED = 40


def test_a_restart_takes_finished_sessions_from_the_manifest(daemons: DaemonFactory) -> None:
    d = daemons()
    ids = []
    for n in range(FINISHED):
        sid = d.call("start", description=f"finished session {n}")["id"]
        d.call("annotate", session=sid, text=f"note {n}")
        d.call("stop", session=sid)
        ids.append(sid)
    live = d.call("start", description="still running")["id"]
    assert d.terminate() == 0

    # First restart: the sessions finished during the last run are checked in full, and the
    # manifest is written after recovery.
    d.start()
    assert d.call("recovery")["from_manifest"] == 0
    manifest = d.home / "manifest"
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600
    assert d.terminate() == 0

    # Second restart: every finished session is a row; the live one is read.
    d.start()
    report = d.call("recovery")
    assert report["from_manifest"] == FINISHED
    assert {s["session_id"] for s in report["sessions"]} == {*ids, live}
    assert all(s["status"] == "ok" and not s["problems"] for s in report["sessions"])
    shown = d.call("show", session=ids[7])
    assert shown["state"] == "Stopped" and [a["text"] for a in shown["annotations"]] == ["note 7"]

    # Edited behind the daemon's back while it is down, at the same size and mtime.
    assert d.terminate() == 0
    path = d.session_file(ids[3])
    st = path.stat()
    data = path.read_bytes()
    edited = data.replace(b"note 3", b"note X")
    assert len(edited) == len(data) and edited != data
    with open(path, "r+b") as handle:
        handle.write(edited)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    d.start()
    report = d.call("recovery")
    assert report["from_manifest"] == FINISHED - 1
    [seen] = [s for s in report["sessions"] if s["session_id"] == ids[3]]
    assert any("checksum mismatch" in p for p in seen["problems"])
    assert [a["text"] for a in d.call("show", session=ids[3])["annotations"]] == ["note 3"]  # from its backup
