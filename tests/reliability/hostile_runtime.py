"""Hostile file system at run time: what other programs (and the clock) do while the daemon runs.

    figures = hostile_runtime.run(quick=True)

Scenarios, each on a real daemon in its own temporary data root, with acknowledged changes
counted and checked after a kill -9 and a restart:

- each data directory (sessions/, backups/, journal/, quarantine/, spool/) removed with `rm -rf`
  while changes keep coming, then `docpilot save`;
- the live journal segment deleted, and replaced by another file, under the writer;
- the wall clock stepped back a day and forward a day (libfaketime), then stop and fsck;
- a session id typed in upper case, without hyphens, as a short upper-case prefix, and imported
  in those spellings.

Figures: acknowledged changes lost (0), daemons that crashed or stopped answering (0), saves that
claimed success without writing (0), files written that the daemon's own validator rejects after a
clock step (0), extra sessions made by another spelling of an id (0).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from docpilotd.domain import timestamps
from tests.daemon_harness import Daemon

DIRECTORIES = ("sessions", "backups", "journal", "quarantine", "spool")
FAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))


@dataclass
class Figures:
    scenarios: int = 0
    acknowledged: int = 0
    lost: int = 0
    crashed: int = 0
    false_saves: int = 0
    clock_steps: int = 0
    invalid_after_step: int = 0
    spellings: int = 0
    extra_sessions: int = 0
    examples: list[str] = field(default_factory=list)


def _notes(d: Daemon, sid: str) -> list[str]:
    return [a["text"] for a in d.call("show", session=sid)["annotations"]]


def _annotate(d: Daemon, sid: str, text: str, acked: list[str]) -> None:
    reply = d.request("annotate", session=sid, text=text)
    if reply.get("ok"):
        acked.append(text)


def _survives(d: Daemon, sid: str, acked: list[str], f: Figures, what: str) -> None:
    if not d.alive:
        f.crashed += 1
        f.examples.append(f"{what}: the daemon died")
        d.start()
    d.kill9()
    d.start()
    have = _notes(d, sid)
    missing = [t for t in acked if t not in have]
    f.lost += len(missing)
    f.acknowledged += len(acked)
    if missing:
        f.examples.append(f"{what}: lost {missing[:3]}")


def _directory_removed(base: Path, name: str, f: Figures) -> None:
    d = Daemon(base / f"dir-{name}", base / "xdg")
    try:
        d.start()
        sid = d.call("start", description=f"{name} removed")["id"]
        acked: list[str] = []
        for i in range(5):
            _annotate(d, sid, f"before {i}", acked)
        d.call("save")
        shutil.rmtree(d.home / name)
        for i in range(5):
            _annotate(d, sid, f"after {i}", acked)
        rc, _, _ = d.client("save")
        if rc == 0 and not d.session_file(sid).exists():
            f.false_saves += 1
            f.examples.append(f"{name} removed: save exited 0 without writing the session")
        _survives(d, sid, acked, f, f"{name} removed")
        f.scenarios += 1
    finally:
        d.close()


def _segment_attacked(base: Path, how: str, f: Figures) -> None:
    d = Daemon(base / f"seg-{how}", base / "xdg")
    try:
        d.start()
        sid = d.call("start", description=f"segment {how}")["id"]
        acked: list[str] = []
        for i in range(5):
            _annotate(d, sid, f"before {i}", acked)
        segments = [n for n in os.listdir(d.journal_dir) if n.startswith(sid)]
        live = d.journal_dir / max(segments, key=lambda n: int(n.split(".")[1]))
        live.unlink()
        if how == "replaced":
            live.write_bytes(b"somebody else's file")
        for i in range(10):
            _annotate(d, sid, f"after {i}", acked)
        _survives(d, sid, acked, f, f"live journal segment {how}")
        f.scenarios += 1
    finally:
        d.close()


def _clock_stepped(base: Path, step: str, f: Figures) -> None:
    control = base / f"faketime-{step}.rc"
    control.write_text("+0\n")
    env = {"LD_PRELOAD": FAKETIME[0], "FAKETIME_TIMESTAMP_FILE": str(control), "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    d = Daemon(base / f"clock{step}", base / "xdg", env)
    try:
        d.start()
        sid = d.call("start", description=f"clock {step}")["id"]
        d.call("annotate", session=sid, text="before the step")
        control.write_text(f"{step}\n")
        time.sleep(0.1)
        d.call("annotate", session=sid, text="after the step")
        control.write_text("+0\n")  # and back again
        time.sleep(0.1)
        d.call("annotate", session=sid, text="after the step back")
        d.call("stop", session=sid)
        shown = d.call("show", session=sid)
        if timestamps.parse_ns(shown["stopped_at"]) < timestamps.parse_ns(shown["started_at"]):
            f.invalid_after_step += 1
            f.examples.append(f"clock {step}: stopped_at before started_at")
        d.terminate()
        env_check = d.env()
        for _ in range(2):  # fsck healthy, and still after a restart (nothing quarantined on start)
            done = subprocess.run([sys.executable, "-m", "docpilotd.admin", "fsck"], env=env_check, capture_output=True, text=True)
            if done.returncode != 0:
                f.invalid_after_step += 1
                f.examples.append(f"clock {step}: fsck: {done.stdout[-300:]}")
                break
            d.start()
            d.terminate()
        f.clock_steps += 1
    finally:
        d.close()


def _spellings(base: Path, f: Figures) -> None:
    d = Daemon(base / "spellings", base / "xdg")
    try:
        d.start()
        sid = d.call("start", description="spellings")["id"]
        variants = [sid.upper(), sid.replace("-", ""), sid.replace("-", "").upper(), sid[:8].upper()]
        for variant in variants:
            d.client("note", "--session", variant, f"via {variant}")
        d.call("stop", session=sid)
        exported = d.call("export", session=sid)
        for n, variant in enumerate(variants[:3]):
            path = base / f"import-{n}.json"
            path.write_text(json.dumps(dict(exported, id=variant)))
            d.request("import", path=str(path))
        f.spellings += len(variants) * 2 - 1
        f.extra_sessions += len(d.call("sessions")) - 1
        if len(_notes(d, sid)) != len(variants):
            f.extra_sessions += 1
            f.examples.append("a note sent with another spelling of the id did not reach the session")
    finally:
        d.close()


def run(quick: bool = True) -> Figures:
    f = Figures()
    base = Path(tempfile.mkdtemp(prefix="dph-", dir="/tmp"))
    try:
        for name in DIRECTORIES:
            _directory_removed(base, name, f)
        for how in ("deleted", "replaced"):
            _segment_attacked(base, how, f)
        if FAKETIME:
            for step in ("-1d", "+1d"):
                _clock_stepped(base, step, f)
        _spellings(base, f)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return f


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
