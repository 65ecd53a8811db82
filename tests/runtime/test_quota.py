"""The storage quota through a real daemon, under a flood of changes: backups are pruned down to
each session's policy minimum (never below it, never the newest), every acknowledged change is
kept (kill -9 included), and when the minimums alone are over the quota the user is told (status,
doctor, log) while recording goes on."""

from __future__ import annotations

import shutil
import threading
import time

from docpilotd.storage import backups
from tests.daemon_harness import Daemon, DaemonFactory, wait_for

KEEP = 2
OUTPUT = "x" * 2000  # each command brings some output, so generations weigh something


def _daemon(daemons: DaemonFactory, quota_mb: float) -> Daemon:
    d = daemons(start=False)
    d.home.mkdir(parents=True, exist_ok=True)
    (d.home / "docpilotd.toml").write_text(
        f"autosave_interval = 0.1\nquota_check_interval = 0.1\nmax_storage_mb = {quota_mb}\n"
        f"[retention]\nkeep_last = {KEEP}\n"
    )
    return d.start()


def _flood(d: Daemon, sessions: list[str], each: int) -> dict[str, int]:
    """Records from one thread per session, saving now and then; acknowledged counts."""
    acked = dict.fromkeys(sessions, 0)

    def one(sid: str) -> None:
        for n in range(each):
            d.call("record", session=sid, command=f"build {n}", exit_code=0, cwd="/w", output=OUTPUT)
            acked[sid] += 1
            if n % 25 == 0:
                d.call("save")

    threads = [threading.Thread(target=one, args=(sid,)) for sid in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acked


def _generations(d: Daemon, sid: str) -> list[str]:
    return [b.name for b in backups.scan(_Ops(), d.backups_dir)[0].get(sid, [])]


class _Ops:
    """The real file system, as storage reads it."""

    def __new__(cls):  # type: ignore[no-untyped-def]
        from docpilotd.storage.fsops import OsFileOps

        return OsFileOps()


def test_a_flood_is_pruned_to_the_minimums_and_nothing_acknowledged_is_lost(daemons: DaemonFactory) -> None:
    d = _daemon(daemons, 500)  # first, room enough: a month of history is made
    sessions = [d.call("start", description=f"flood {n}", cwd="/w")["id"] for n in range(3)]
    _flood(d, sessions, 5)
    d.terminate()
    # Thirty days of daily generations before today, as a month of work leaves them (the daily,
    # weekly and monthly rules keep them; keep_last does not).
    now_ns = time.time_ns()
    history: dict[str, list[str]] = {}
    for sid in sessions:
        newest = d.backups_dir / _generations(d, sid)[-1]
        history[sid] = []
        for day in range(30, 0, -1):
            ns = now_ns - day * 86_400 * 10**9
            name = f"{sid}_{ns // 10**9}.{ns % 10**9:09d}.json"
            shutil.copyfile(newest, d.backups_dir / name)
            history[sid].append(name)
    (d.home / "docpilotd.toml").write_text((d.home / "docpilotd.toml").read_text().replace(
        "max_storage_mb = 500", "max_storage_mb = 0.4"))
    d.start()
    acked = _flood(d, sessions, 120)
    d.call("save")
    wait_for(lambda: (d.call("status")["daemon"].get("storage") or {}).get("pruned", 0) > 0
             or _quota_settled(d), 20, what="the quota pruning after the flood")
    for sid in sessions:
        kept = _generations(d, sid)
        assert len(kept) >= KEEP, (sid, kept)  # never below the policy's minimum
        old = [name for name in kept if name in history[sid]]
        # The oldest went first: what is left of the month is its most recent part.
        assert old == history[sid][len(history[sid]) - len(old):], (old, history[sid])
        assert d.call("show", session=sid)["commands"][-1]["command"] == f"build {acked[sid] - 1}"
    assert sum(len(history[sid]) - len([n for n in _generations(d, sid) if n in history[sid]]) for sid in sessions) > 0
    assert "old backup generation" in d.log()
    d.kill9()
    d.start()
    for sid in sessions:
        assert len(d.call("show", session=sid)["commands"]) == acked[sid] + 5


def _quota_settled(d: Daemon) -> bool:
    """Backups are within the minimums: KEEP generations per session (or fewer made)."""
    return all(len(names) <= KEEP for names in backups.scan(_Ops(), d.backups_dir)[0].values())


def test_over_even_at_the_minimums_is_said_and_recording_goes_on(daemons: DaemonFactory) -> None:
    d = _daemon(daemons, 0.01)
    sid = d.call("start", description="too small a quota", cwd="/w")["id"]
    acked = _flood(d, [sid], 60)[sid]
    wait_for(lambda: (d.call("status")["daemon"].get("storage") or {}).get("over") is True, 20,
             what="the quota reported over")
    assert len(_generations(d, sid)) >= 1  # the newest is never removed
    assert len(d.call("show", session=sid)["commands"]) == acked  # nothing refused or dropped
    assert "storage over its quota" in d.log() and "nothing needed for recovery was removed" in d.log()
    rc, out, _ = d.client("status")
    assert rc == 0 and "OVER QUOTA" in out
    rc, out, _ = d.client("doctor")
    assert "max_storage_mb" in out
    d.call("record", session=sid, command="still recording", exit_code=0, cwd="/w")


def test_under_the_quota_nothing_is_pruned(daemons: DaemonFactory) -> None:
    d = _daemon(daemons, 500)
    sid = d.call("start", description="roomy", cwd="/w")["id"]
    _flood(d, [sid], 30)
    wait_for(lambda: "storage" in d.call("status")["daemon"], 20, what="a quota check")
    storage = d.call("status")["daemon"]["storage"]
    assert storage["over"] is False and storage["pruned"] == 0 and storage["used_mb"] > 0
