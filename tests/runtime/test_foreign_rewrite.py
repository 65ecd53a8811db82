"""DocPilot rewrites a session file while docpilotd is down: nothing comes back twice.

DocPilot (its background monitor) loads `sessions/{id}.json` and saves it again in its own format:
the plain session JSON, without docpilotd's top-level `docpilotd` field (so without the journal
sequence the file contains) and without docpilotd's additions to a command (`capture_id`,
`duration_ms`, `pipestatus`: its structs do not have them). The journal, meanwhile, still holds
records the rewritten file already contains. At the next start, replay must recognize them by
identity (annotation, event and capture ids) and apply none of them twice; `fsck` must find the
data root healthy.

Each test runs a real `docpilotd run` in a temporary DOCPILOT_HOME, driven through its socket and
the real `docpilot` client (see tests/daemon_harness.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from tests.daemon_harness import Daemon, DaemonFactory, assert_docpilot_format

# docpilotd's additions to a command, which DocPilot's CommandEntry does not have.
_DOCPILOTD_COMMAND_FIELDS = ("duration_ms", "capture_id", "pipestatus")
_INSTANCE = "1754038800000000-4242"  # a shell instance, as the hooks name one


def _export(d: Daemon, sid: str) -> dict[str, Any]:
    rc, out, err = d.client("export", "--session", sid)
    assert rc == 0 and "Traceback" not in err, f"export exited {rc}: {err}"
    doc: dict[str, Any] = json.loads(out)
    return doc


def _fsck(d: Daemon) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "docpilotd.admin", "fsck", "--json"],
        env=d.env(), capture_output=True, text=True, timeout=60,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def _rewrite_as_docpilot(d: Daemon, sid: str, session: dict[str, Any]) -> None:
    """What DocPilot's save does: `{id}.tmp`, then a rename over `{id}.json`; pretty JSON with a
    2-space indent, DocPilot's fields only."""
    plain = {key: value for key, value in session.items() if key != "docpilotd"}
    plain["commands"] = [
        {key: value for key, value in command.items() if key not in _DOCPILOTD_COMMAND_FIELDS}
        for command in session["commands"]
    ]
    tmp = d.sessions_dir / f"{sid}.tmp"
    tmp.write_text(json.dumps(plain, indent=2, ensure_ascii=False))
    os.replace(tmp, d.session_file(sid))


def _journal_bytes(d: Daemon) -> int:
    return sum(p.stat().st_size for p in d.journal_dir.glob("*.wal"))


def _only_once(doc: dict[str, Any]) -> None:
    """No annotation, event or captured command appears twice; stats agree with the lists."""
    for kind in ("annotations", "events"):
        ids = Counter(item["id"] for item in doc[kind])
        assert not [i for i, n in ids.items() if n > 1], f"{kind} repeated: {ids.most_common(3)}"
    captured = Counter(c.get("capture_id") for c in doc["commands"] if c.get("capture_id"))
    assert not [i for i, n in captured.items() if n > 1], f"commands captured twice: {captured.most_common(3)}"
    assert doc["stats"]["total_commands"] == len(doc["commands"])
    assert doc["stats"]["total_annotations"] == len(doc["annotations"])


@pytest.mark.parametrize("stop", ["kill9", "sigterm"])
def test_a_docpilot_rewrite_while_down_is_not_replayed_twice(daemons: DaemonFactory, stop: str) -> None:
    d = daemons()  # default autosave interval (30 s): only `save` and the shutdown write the file
    sid = d.call("start", description="Rewritten by DocPilot while docpilotd is down")["id"]
    d.call("annotate", session=sid, text="before the checkpoint")
    d.call("record", session=sid, command="make build", exit_code=0, capture_id=f"{_INSTANCE}:1", duration_ms=1200)
    d.call("record", session=sid, command="make test", exit_code=1, capture_id=f"{_INSTANCE}:2")
    rc, out, err = d.client("save", "--json")
    assert rc == 0 and json.loads(out) == {"saved": 1}, err
    checkpointed = d.read_session_file(sid)
    assert checkpointed["docpilotd"]["seq"] == 4 and len(checkpointed["commands"]) == 2

    # Only in the journal from here on.
    d.call("annotate", session=sid, text="after the checkpoint", type="warning")
    d.call("record", session=sid, command="make test", exit_code=0, capture_id=f"{_INSTANCE}:3")
    d.call("pause", session=sid)
    d.call("annotate", session=sid, text="while paused", type="explanation")
    d.call("resume", session=sid)
    d.call("record", session=sid, command="make install", exit_code=0, capture_id=f"{_INSTANCE}:4", duration_ms=80)
    d.call("annotate", session=sid, text="installed", type="milestone")
    everything = _export(d, sid)
    assert [a["text"] for a in everything["annotations"]] == [
        "before the checkpoint", "after the checkpoint", "while paused", "installed",
    ]
    assert [c["command"] for c in everything["commands"]] == ["make build", "make test", "make test", "make install"]

    if stop == "kill9":
        d.kill9()
        assert d.read_session_file(sid)["docpilotd"]["seq"] == 4, "the snapshot holds the checkpoint only"
    else:
        assert d.terminate() == 0
        assert d.read_session_file(sid)["docpilotd"]["seq"] == 11, "the final save holds everything"
    assert _journal_bytes(d) > 0, "the journal still holds records the rewritten file contains"

    # DocPilot loads the session (everything: what the checkpoint held and what only the journal
    # held, which docpilotd's final save or DocPilot itself put there) and saves it its own way.
    _rewrite_as_docpilot(d, sid, everything)
    assert "docpilotd" not in d.read_session_file(sid)

    d.start()
    after = _export(d, sid)
    _only_once(after)
    assert_docpilot_format(after)
    assert [a["text"] for a in after["annotations"]] == [a["text"] for a in everything["annotations"]]
    assert [a["id"] for a in after["annotations"]] == [a["id"] for a in everything["annotations"]]
    assert [c["command"] for c in after["commands"]] == [c["command"] for c in everything["commands"]]
    assert [e["id"] for e in after["events"]] == [e["id"] for e in everything["events"]]
    assert after["state"] == "Active" and after["stats"]["pause_resume_count"] == 1

    report = {s["session_id"]: s for s in d.call("recovery")["sessions"]}[sid]
    assert report["problems"] == [] and report["lost_window"] is None, report
    assert report["status"] == "ok" and report["replayed"] == 0, report

    rc, fsck_report = _fsck(d)
    assert rc == 0 and fsck_report["healthy"], fsck_report

    # The session goes on after the sequence it had reached: a change made now and found only in
    # the journal (kill -9 again) comes back once, after everything else.
    d.call("annotate", session=sid, text="after the restart")
    d.call("record", session=sid, command="make clean", exit_code=0, capture_id=f"{_INSTANCE}:5")
    d.kill9()
    d.start()
    again = _export(d, sid)
    _only_once(again)
    assert [a["text"] for a in again["annotations"]] == [a["text"] for a in everything["annotations"]] + [
        "after the restart"
    ]
    assert [c["command"] for c in again["commands"]] == [c["command"] for c in everything["commands"]] + ["make clean"]
    assert d.terminate() == 0
    rc, fsck_report = _fsck(d)
    assert rc == 0 and fsck_report["healthy"], fsck_report
    _only_once(d.read_session_file(sid))
