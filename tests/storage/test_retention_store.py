"""Retention through the store, over a simulated month (an injected clock, no sleeps): a session
saved at the rhythm of a person's working days, its generations rotated by the default policy at
every save, compressed when no longer the newest. At the end the generations kept are exactly what
the policy says of all those ever made (computed here with datetime, independently of
domain/retention.py), every one of them reads back (plain or compressed), the newest is plain JSON
under DocPilot's name, and at every step nothing was removed without a newer one kept."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from docpilotd.domain.retention import RetentionPolicy
from docpilotd.paths import Layout
from docpilotd.storage import backups, snapshot
from docpilotd.storage import store as store_mod
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, build_session
from tests.storage.test_store import grow

DAY_NS = 86_400 * 10**9
START_NS = 1_790_000_000 * 10**9  # a Monday of 2026, 00:00 UTC (checked below)


def _expected(made_ns: list[int], policy: RetentionPolicy, offset: int) -> set[int]:
    """What the policy keeps of everything ever made, read with datetime."""
    zone = timezone(timedelta(seconds=offset))
    ordered = sorted(made_ns, reverse=True)
    keep = set(ordered[: policy.keep_last])
    keep.add(ordered[0])
    for fmt, count in (("%Y-%m-%d %H", policy.keep_hourly), ("%Y-%m-%d", policy.keep_daily),
                       ("%G-W%V", policy.keep_weekly), ("%Y-%m", policy.keep_monthly)):
        labels: list[str] = []
        for ns in ordered:
            label = datetime.fromtimestamp(ns / 1e9, zone).strftime(fmt)
            if label in labels:
                continue
            if len(labels) == count:
                break
            labels.append(label)
            keep.add(ns)
    return keep


@pytest.mark.parametrize("offset", [0, 19_800, -28_800])  # UTC, India, California (no DST here)
def test_a_month_of_work_keeps_what_the_policy_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offset: int) -> None:
    assert datetime.fromtimestamp(START_NS / 1e9, UTC).weekday() == 0
    monkeypatch.setattr(store_mod, "local_offset", lambda ns: offset)
    now = [START_NS]
    layout = Layout(root=tmp_path / "home", run_dir=tmp_path / "home" / "run")
    layout.ensure()
    store = SessionStore(layout, compress_backups=True, clock=lambda: now[0])
    policy = RetentionPolicy()
    session = build_session()
    stamps = Clock()
    rng = random.Random(offset)
    made: list[int] = []
    seq = 3
    store.save(session, seq)
    for day in range(31):
        if day % 7 in (5, 6) and rng.random() < 0.7:
            continue  # most weekends are off
        at = START_NS + day * DAY_NS + (9 * 3600 - offset) * 10**9  # 09:00 local
        end = at + 9 * 3600 * 10**9
        while at < end:
            now[0] = at
            session = grow(session, stamps)
            seq += 1
            before = {b.ns for b in store.generations(session.id)}
            result = store.save_encoded(session.id, snapshot.encode(session, seq), policy)
            assert result.backup is not None
            made.append(backups.parse_name(layout.backups, result.backup.name).ns)  # type: ignore[union-attr]
            after = {b.ns for b in store.generations(session.id)}
            removed = before - after
            # Nothing removed without a newer generation kept; the newest is the one just made.
            assert max(after) == made[-1]
            assert all(any(kept > gone for kept in after) for gone in removed)
            at += rng.randint(10, 40) * 60 * 10**9
    kept = {b.ns for b in backups.for_session(store.ops, layout.backups, session.id)}
    assert kept == _expected(made, policy, offset)
    assert len(kept) <= 5 + 24 + 7 + 5 + 2
    # Every generation kept reads back; only the newest is plain, under DocPilot's name pattern.
    listed = backups.for_session(store.ops, layout.backups, session.id)
    for generation in listed:
        decoded = store.read(generation.path, session.id)
        assert decoded.usable, (generation.name, decoded.problem)
    assert [g.name.endswith(".json") for g in listed] == [False] * (len(listed) - 1) + [True]
    # The month shows in what is kept: some generation of the first week is still there.
    assert min(kept) < START_NS + 7 * DAY_NS

