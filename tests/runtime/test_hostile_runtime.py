"""What other programs do to the data root while the daemon runs: a journal segment deleted or
replaced, data directories removed, the wall clock stepped. Real daemons, real files."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docpilotd.domain import timestamps
from docpilotd.paths import layout_for
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore
from tests.daemon_harness import Daemon, DaemonFactory, wait_for


def _segments(d: Daemon, session: str) -> list[str]:
    return sorted(n for n in os.listdir(d.journal_dir) if n.startswith(session))


def _notes(d: Daemon, session: str) -> list[str]:
    return [a["text"] for a in d.call("show", session=session)["annotations"]]


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_journal_segment_removed_under_the_writer_loses_nothing_acknowledged(daemons: DaemonFactory, how: str) -> None:
    d = daemons()
    sid = d.call("start", description="journal under attack")["id"]
    acknowledged = []
    for i in range(3):
        d.call("annotate", session=sid, text=f"before {i}")
        acknowledged.append(f"before {i}")
    # The live segment: the one with the highest first sequence number.
    segment = max(_segments(d, sid), key=lambda n: int(n.split(".")[1]))
    path = d.journal_dir / segment
    path.unlink()
    if how == "replaced":
        path.write_bytes(b"not a journal")
    # The next change is refused (its record would only be in an unlinked file) or saved anew:
    # either way nothing is acknowledged that a restart cannot find.
    for i in range(5):
        reply = d.request("annotate", session=sid, text=f"after {i}")
        if reply["ok"]:
            acknowledged.append(f"after {i}")
        else:
            assert reply["error"]["code"] == "storage_error", reply
    assert any(t.startswith("after") for t in acknowledged), "the session never continued"
    d.kill9()
    d.start()
    assert _notes(d, sid) == acknowledged


def test_a_deleted_sessions_directory_is_recreated_and_watched_again(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="directories removed")["id"]
    d.call("annotate", session=sid, text="one")
    shutil.rmtree(d.sessions_dir)
    d.call("annotate", session=sid, text="two")
    rc, _out, err = d.client("save")
    assert rc == 0, err
    assert d.session_file(sid).exists(), "sessions/ was not recreated by the save"
    assert [a["text"] for a in d.read_session_file(sid)["annotations"]] == ["one", "two"]
    # The watcher sees the new directory again: a torn file is rewritten from memory.
    d.session_file(sid).write_bytes(b'{"id": "torn')
    # Rewritten in place (atomically): the file is never missing meanwhile.
    wait_for(lambda: d.session_file(sid).read_bytes().startswith(b"{\n"), what="the torn file to be rewritten")


def test_save_exits_non_zero_when_a_session_could_not_be_saved(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="unsavable")["id"]
    d.call("annotate", session=sid, text="one")
    # A directory where the snapshot's temporary file must go: the save fails, whoever we are.
    shutil.rmtree(d.sessions_dir)
    d.sessions_dir.write_bytes(b"a file where a directory should be")
    try:
        rc, out, err = d.client("save")
        assert rc == 10 and "Traceback" not in err and "could not be saved" in err, (rc, out, err)
    finally:
        d.sessions_dir.unlink()
    rc, out, err = d.client("save")
    assert rc == 0, err
    assert [a["text"] for a in d.read_session_file(sid)["annotations"]] == ["one"]


FAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))


@pytest.mark.skipif(not FAKETIME, reason="libfaketime is not installed (.ci/run installs it)")
def test_a_clock_stepped_back_never_gives_a_stop_before_the_start(daemons: DaemonFactory, tmp_path: Path) -> None:
    lib = FAKETIME[0]
    control = tmp_path / "faketime.rc"
    control.write_text("+0\n")
    env = {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(control), "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    d = daemons(env=env)
    sid = d.call("start", description="clock steps")["id"]
    d.call("annotate", session=sid, text="at the real time")
    control.write_text("-1d\n")  # the wall clock steps back a day
    time.sleep(0.2)
    d.call("annotate", session=sid, text="after the step back")
    d.call("stop", session=sid)
    shown = d.call("show", session=sid)
    started, stopped = timestamps.parse_ns(shown["started_at"]), timestamps.parse_ns(shown["stopped_at"])
    assert stopped >= started
    stamps = [timestamps.parse_ns(e["timestamp"]) for e in shown["events"]]
    assert stamps == sorted(stamps)
    assert "clock" in d.log().lower()
    d.terminate()
    # The files it wrote pass its own validator: fsck is healthy, and stays so after a restart.
    done = subprocess.run([sys.executable, "-m", "docpilotd.admin", "fsck"], env=d.env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    _, recovered = recover_all(SessionStore(layout_for(d.home)), repair=False)
    assert sid in recovered


def test_a_session_id_in_any_spelling_names_the_same_session(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="spellings")["id"]
    for spelling in (sid.upper(), sid.replace("-", ""), sid.replace("-", "").upper()[:10]):
        rc, _out, err = d.client("note", "--session", spelling, f"via {spelling}")
        assert rc == 0, err
    assert len(_notes(d, sid)) == 3
    assert [s["id"] for s in d.call("sessions")] == [sid]


def test_an_import_in_another_spelling_of_the_id_is_the_same_session(daemons: DaemonFactory, tmp_path: Path) -> None:
    import json

    d = daemons()
    sid = d.call("start", description="exported")["id"]
    d.call("stop", session=sid)
    exported = d.call("export", session=sid)
    for n, spelling in enumerate((sid.upper(), sid.replace("-", ""))):
        copy = tmp_path / f"copy-{n}.json"
        copy.write_text(json.dumps(dict(exported, id=spelling)))
        reply = d.request("import", path=str(copy))
        assert not reply["ok"] and reply["error"]["code"] == "session_exists", reply
    assert [s["id"] for s in d.call("sessions")] == [sid]
    assert sorted(os.listdir(d.sessions_dir)) == [f"{sid}.json"]
