"""Files named with another spelling of a session id (upper case, no hyphens): one session, never two."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.daemon_harness import DaemonFactory, daemons  # noqa: F401  (fixture)


def _fsck(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docpilotd.admin", "fsck", *args], env=env, capture_output=True, text=True)


def test_a_copy_under_another_spelling_is_quarantined_and_a_lone_one_adopted(daemons: DaemonFactory) -> None:
    d = daemons()
    first = d.call("start", description="first")["id"]
    d.call("annotate", session=first, text="kept")
    d.call("stop", session=first)
    second = d.call("start", description="second")["id"]
    d.call("stop", session=second)
    d.terminate()
    raw = d.session_file(first).read_bytes()
    # A copy of `first` under its upper-case name (its twin exists) ...
    (d.sessions_dir / f"{first.upper()}.json").write_bytes(raw.replace(first.encode(), first.upper().encode()))
    # ... and `second` present only under a spelling without hyphens.
    lone = second.replace("-", "").upper()
    body = json.loads(d.session_file(second).read_bytes())
    body.pop("docpilotd", None)
    body["id"] = lone
    d.session_file(second).unlink()
    (d.sessions_dir / f"{lone}.json").write_text(json.dumps(body, indent=2))

    check = _fsck(d.env())
    assert check.returncode == 1 and "not spelled canonically" in check.stdout, check.stdout
    assert (d.sessions_dir / f"{lone}.json").exists(), "fsck without --repair changed nothing"

    d.start()
    assert sorted(s["id"] for s in d.call("sessions")) == sorted([first, second])
    assert [a["text"] for a in d.call("show", session=first)["annotations"]] == ["kept"]
    assert sorted(p.name for p in d.sessions_dir.iterdir() if p.suffix == ".json") == sorted([f"{first}.json", f"{second}.json"])
    kept = [p.name for p in Path(d.quarantine_dir).iterdir()]
    assert any(first.upper() in name for name in kept) and any(lone in name for name in kept)
    d.terminate()
    assert _fsck(d.env()).returncode == 0
