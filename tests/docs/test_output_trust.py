"""Which output file a bare `docpilot generate` writes: only one `docpilot start --output-file`
chose in this data root. One that came with an imported (shared) session, or with a session file
another program put in `sessions/`, is ignored (the document goes to standard output, with a note)
until the user names it with -o."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec

from docpilotd.domain.model import Session
from docpilotd.storage import snapshot
from tests.conftest import build_session
from tests.daemon_harness import Daemon, DaemonFactory, wait_for

OK, USAGE = 0, 2
VICTIM = "export PATH=$HOME/bin:$PATH\n"


def _work(d: Daemon) -> Path:
    work = d.home.parent / f"{d.home.name}-work"
    work.mkdir(exist_ok=True)
    return work


def _victim(work: Path) -> Path:
    """Stands for ~/.bashrc: a file of the user's that no document may replace unasked."""
    victim = work / "bashrc"
    victim.write_text(VICTIM)
    return victim


def _ok(d: Daemon, *args: str, cwd: Path | None = None) -> tuple[str, str]:
    rc, out, err = d.client(*args, cwd=cwd)
    assert rc == OK and "Traceback" not in err, f"docpilot {' '.join(args)} exited {rc}: {err}"
    return out, err


def test_start_stores_the_output_file_as_an_absolute_path(daemon: Daemon) -> None:
    work = _work(daemon)
    (work / "docs").mkdir()
    out, _ = _ok(daemon, "start", "Relative output", "--output-file", "docs/proxy.md", cwd=work)
    sid = out.strip()
    shown = daemon.client_json("show", "--session", sid)
    assert shown["output_file"] == str(work / "docs" / "proxy.md")
    assert daemon.read_session_file(sid)["output_file"] == str(work / "docs" / "proxy.md")
    # Written there from anywhere, also after a restart (the mark is checked against the data root's key).
    daemon.kill9()
    daemon.start()
    _ok(daemon, "generate", "--session", sid, cwd=daemon.home.parent)
    assert (work / "docs" / "proxy.md").read_text().startswith("# Relative output\n")


def test_an_imported_sessions_output_file_is_never_written_unasked(daemons: DaemonFactory) -> None:
    sharer = daemons(name="sharer")
    mine = daemons(name="mine")
    work = _work(mine)
    victim = _victim(work)
    # Somebody else's session whose output file names our ~/.bashrc, marked by their daemon.
    out, _ = _ok(sharer, "start", "Shared runbook", "--output-file", str(victim))
    sid = out.strip()
    _ok(sharer, "note", "see the attached steps")
    _ok(sharer, "stop")
    shared = work / "shared.json"
    _ok(sharer, "export", "--session", sid, "-o", str(shared))
    assert json.loads(shared.read_text())["output_file"] == str(victim)

    assert mine.client_json("import", str(shared))["id"] == sid
    rc, out, err = mine.client("generate", cwd=work)
    assert rc == OK and "Traceback" not in err, err
    assert victim.read_text() == VICTIM, "an imported session's output file was replaced"
    assert out.startswith("# Shared runbook\n"), "the document goes to standard output instead"
    assert f"not written to {victim}" in err and "-o" in err
    result = mine.client_json("generate")
    assert result["output_file"] == str(victim) and result["output_file_trusted"] is False
    # Named with -o, it is written: the user asked.
    _ok(mine, "generate", "-o", str(victim))
    assert victim.read_text().startswith("# Shared runbook\n")


def test_a_reimported_export_of_our_own_session_is_not_trusted_either(daemon: Daemon) -> None:
    work = _work(daemon)
    target = work / "doc.md"
    out, _ = _ok(daemon, "start", "Round trip", "--output-file", str(target))
    sid = out.strip()
    _ok(daemon, "stop")
    exported = work / "s.json"
    _ok(daemon, "export", "-o", str(exported))
    assert daemon.client_json("cleanup", "--max-age-days", "0")["removed_sessions"] == [sid]
    daemon.client_json("import", str(exported))
    rc, out, err = daemon.client("generate")
    assert rc == OK and out.startswith("# Round trip\n") and not target.exists(), err


def _foreign(session_id: str, output_file: str, mark: str) -> bytes:
    base: Session = build_session(session_id=session_id, description="Dropped in by another program")
    meta = msgspec.structs.replace(base.metadata, settings={"docpilotd.output_file": mark})
    return snapshot.encode_plain(msgspec.structs.replace(base, output_file=output_file, metadata=meta))


def test_a_session_file_from_elsewhere_is_not_trusted(daemons: DaemonFactory) -> None:
    d = daemons()
    work = _work(d)
    victim = _victim(work)
    # A session of ours with a trusted output file: its mark, copied, proves nothing for another.
    out, _ = _ok(d, "start", "Ours", "--output-file", str(work / "ours.md"))
    ours = d.read_session_file(out.strip())
    copied = ours["metadata"]["settings"].get("docpilotd.output_file", "v1:" + "1" * 64)
    _ok(d, "stop")
    assert d.terminate() == 0
    forged = "00000000-0000-4000-8000-00000000f00d"
    d.session_file(forged).write_bytes(_foreign(forged, str(victim), copied))
    d.start()
    # And one that appears while the daemon runs (the watcher adopts it).
    late = "00000000-0000-4000-8000-00000000beef"
    d.session_file(late).write_bytes(_foreign(late, str(victim), "v1:" + "0" * 64))
    wait_for(lambda: late in [s["id"] for s in d.client_json("sessions")], what="the dropped-in session adopted")
    for sid in (forged, late):
        rc, out, err = d.client("generate", "--session", sid)
        assert rc == OK and out.startswith("# Dropped in by another program\n"), err
        assert victim.read_text() == VICTIM
        assert d.client_json("generate", "--session", sid)["output_file_trusted"] is False
    # Ours still is trusted.
    _ok(d, "generate", "--session", ours["id"])
    assert (work / "ours.md").read_text().startswith("# Ours\n")


def test_start_output_file_from_an_older_client_is_made_absolute(daemon: Daemon) -> None:
    """The protocol's `start` with a relative output_file (an older client): taken from `cwd`."""
    work = _work(daemon)
    result = daemon.call("start", description="Older client", output_file="old.md", cwd=str(work))
    assert daemon.client_json("show", "--session", result["id"])["output_file"] == str(work / "old.md")
    reply = daemon.request("start", description="No directory", output_file="old.md")
    assert reply["ok"] is False and reply["error"]["code"] == "bad_usage"
    _ok(daemon, "generate", "--session", result["id"])
    assert (work / "old.md").is_file()
    assert os.stat(daemon.home / "docpilotd.key").st_mode & 0o777 == 0o600
