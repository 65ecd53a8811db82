"""The daemon's scheduled scrub, through a real daemon: it runs on its interval (tiny here, by the
environment variable of `scrub_interval_days`), finds the damage, repairs a damaged generation from
a good copy, logs each problem and reports the last scrub in `docpilot status`."""

from __future__ import annotations

import time
from typing import Any

from docpilotd.storage import backups, compression, journal, snapshot
from docpilotd.storage.fsops import OsFileOps
from tests.daemon_harness import Daemon, DaemonFactory

INTERVAL_DAYS = "0.00003"  # about 2.6 s


def recorded(d: Daemon) -> str:
    sid = d.call("start", description="Set up the proxy")["id"]
    for n in range(4):
        d.call("annotate", text=f"step {n}")
        d.call("save")
    for n in range(2):  # in the live segment
        d.call("annotate", text=f"after {n}")
    return str(sid)


def wait_for_scrub(d: Daemon, after: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scrub = d.call("status")["daemon"].get("scrub")
        if scrub is not None and scrub["at"] != after:
            return scrub
        time.sleep(0.2)
    raise AssertionError(f"no scrub reported:\n{d.log()[-3000:]}")


def test_the_scheduled_scrub_repairs_a_damaged_generation_and_reports(daemons: DaemonFactory) -> None:
    d = daemons(env={"DOCPILOT_SCRUB_INTERVAL_DAYS": INTERVAL_DAYS})
    sid = recorded(d)
    first = wait_for_scrub(d)
    assert first["problems"] == 0 and first["files"] >= 4
    gens = backups.for_session(OsFileOps(), d.home / "backups", sid)
    # The newest compressed one: the generation before it and the journal after that rebuild it
    # (the oldest has nothing older: the journal before it was trimmed).
    victim = [g for g in gens if g.compressed][-1]
    original = compression.decompress(victim.path.read_bytes())[0]
    assert original is not None
    # Rot inside the content, in place (same inode: the daemon knows what it holds).
    rotted = compression.compress(original.replace(b"Set up the proxy", b"Set up the prozy"))
    with open(victim.path, "r+b") as f:
        f.write(rotted)
        f.truncate()
    segment = max((p for p in (d.home / "journal").iterdir()), key=lambda p: p.name)  # the live one
    data = bytearray(segment.read_bytes())
    data[30] ^= 0xFF  # the first of its two records
    segment.write_bytes(bytes(data))

    second = wait_for_scrub(d, after=first["at"])
    assert second["problems"] == 2 and second["repaired"] == 1, (second, d.log()[-3000:])
    repaired = compression.decompress(victim.path.read_bytes())[0]
    assert repaired is not None
    assert snapshot.decode(repaired, sid).usable
    assert snapshot.encode_body(snapshot.decode(repaired).session) == snapshot.encode_body(snapshot.decode(original).session)  # type: ignore[arg-type]
    assert any(p.name.endswith(victim.name) for p in (d.home / "quarantine").iterdir())
    assert segment.read_bytes() == bytes(data)  # reported, left to recovery
    log = d.log()
    assert f"scrub: backups/{victim.name}" in log and "replaced" in log
    assert f"scrub: journal/{segment.name}" in log and "left in place" in log
    rc, out, _ = d.client("status")
    assert rc == 0 and "scrub: " in out and "2 problem(s), 1 repaired" in out, out
    # The next scrub finds the generation good; the segment is still reported.
    third = wait_for_scrub(d, after=second["at"])
    assert (third["problems"], third["repaired"]) == (1, 0)
    assert journal.parse_segment_name(segment.name) is not None


def test_the_last_scrub_survives_a_restart_and_zero_turns_it_off(daemons: DaemonFactory) -> None:
    d = daemons(env={"DOCPILOT_SCRUB_INTERVAL_DAYS": INTERVAL_DAYS})
    recorded(d)
    first = wait_for_scrub(d)
    d.terminate()
    d.start(env={"DOCPILOT_SCRUB_INTERVAL_DAYS": "0"})
    assert d.call("status")["daemon"]["scrub"] == first  # shown from the data root's record
    time.sleep(4)
    assert d.call("status")["daemon"]["scrub"] == first  # and none ran since
