"""Maintenance: backup info, storage statistics, cleanup, export and import."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import msgspec
import pytest

from docpilotd.domain import changes
from docpilotd.domain.model import Session
from docpilotd.domain.timestamps import parse_ns
from docpilotd.errors import InvalidSession, UsageError
from docpilotd.paths import Layout
from docpilotd.storage import backups, journal, maintenance, snapshot
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, build_session, command_change, encoded, new_id, tree_bytes

DAY_NS = 86400 * 1_000_000_000


def saved(store: SessionStore, session: Session, times: int = 3) -> Session:
    """Save `session` `times` times (a new command each time): `times - 1` backups."""
    clock = Clock(parse_ns(session.updated_at))
    for seq in range(times):
        if seq:
            session = changes.apply(session, command_change(f"save {seq}", clock()))
        store.save(session, seq)
    return session


def stopped(session: Session, at_ns: int) -> Session:
    from docpilotd.domain.timestamps import format_ns

    return changes.apply(session, changes.Stop(at=format_ns(at_ns), event_id=new_id()))


def test_backup_info_lists_generations_newest_first(store: SessionStore) -> None:
    session = saved(store, build_session(), times=4)
    info = maintenance.backup_info(store, session.id)
    assert len(info) == 3
    generations = backups.for_session(store.ops, store.layout.backups, session.id)
    assert [i.name for i in info] == [b.name for b in reversed(generations)]
    assert [i.size for i in info] == [b.path.stat().st_size for b in reversed(generations)]
    assert [parse_ns(i.time) for i in info] == [b.ns for b in reversed(generations)]
    assert maintenance.backup_info(store, new_id()) == []


def test_backup_info_reads_docpilot_second_names(store: SessionStore, example_bytes: bytes) -> None:
    sid = "6513270e-269e-4d37-b2a7-4de452e6b438"
    (store.layout.backups / f"{sid}_1722503702.json").write_bytes(example_bytes)
    (info,) = maintenance.backup_info(store, sid)
    assert (info.name, info.time, info.size) == (f"{sid}_1722503702.json", "2024-08-01T09:15:02.000000000Z", len(example_bytes))


def test_storage_stats_counts_and_sizes(store: SessionStore, layout: Layout) -> None:
    a = saved(store, build_session(commands=5), times=3)
    saved(store, build_session(commands=1), times=1)
    (layout.journal / journal.segment_name(a.id, 1)).write_bytes(b"j" * 123)
    (layout.quarantine / "2025-x_junk.json").write_bytes(b"q" * 10)
    (layout.quarantine / "2025-x_junk.json.reason").write_bytes(b"r" * 7)
    stats = maintenance.storage_stats(store)

    def size(directory: Path) -> int:
        return sum(p.stat().st_size for p in directory.iterdir())

    assert (stats.session_count, stats.backup_count, stats.quarantine_count) == (2, 2, 1)
    assert stats.backup_size == size(layout.backups)
    assert stats.journal_size == 123
    assert stats.total_size == size(layout.sessions) + size(layout.backups) + 123 + 17


def test_storage_stats_of_an_empty_root(tmp_path: Path) -> None:
    from docpilotd.paths import layout_for

    stats = maintenance.storage_stats(SessionStore(layout_for(tmp_path / "nothing")))
    assert msgspec.structs.asdict(stats) == dict.fromkeys(msgspec.structs.asdict(stats), 0)


def test_cleanup_removes_old_stopped_sessions_and_never_live_ones(store: SessionStore, layout: Layout) -> None:
    old = Clock(1_600_000_000 * 10**9)  # 2020
    recent_ns = 1_754_038_800 * 10**9  # 2025-08-01
    now = recent_ns + 1 * DAY_NS
    old_stopped = stopped(saved(store, build_session(clock=old), 3), old.ns + 10**9)
    store.save(old_stopped, 9)
    old_active = saved(store, build_session(clock=Clock(old.ns)), 3)
    old_paused = changes.apply(
        saved(store, build_session(clock=Clock(old.ns)), 2), changes.Pause(at="2020-09-13T12:30:00Z", event_id=new_id())
    )
    store.save(old_paused, 9)
    old_failed = changes.apply(
        saved(store, build_session(clock=Clock(old.ns)), 2),
        changes.Fail(at="2020-09-13T12:30:00Z", event_id=new_id(), message="x"),
    )
    store.save(old_failed, 9)
    fresh_stopped = stopped(saved(store, build_session(clock=Clock(recent_ns)), 2), recent_ns + 100 * 10**9)
    store.save(fresh_stopped, 9)
    segment = layout.journal / journal.segment_name(old_stopped.id, 10)
    segment.write_bytes(b"records")
    def files_of(s: Session) -> tuple[bytes | None, list[str]]:
        generations = backups.for_session(store.ops, layout.backups, s.id)
        return tree_bytes(layout.sessions).get(f"{s.id}.json"), [b.name for b in generations]

    live_before = {s.id: files_of(s) for s in (old_active, old_paused)}
    everyone = [old_stopped, old_active, old_paused, old_failed, fresh_stopped]

    result = maintenance.cleanup(store, everyone, max_age_days=30, now_ns=now)

    assert sorted(result.removed_sessions) == sorted([old_stopped.id, old_failed.id])
    for gone in (old_stopped, old_failed):
        assert not layout.session_file(gone.id).exists()
        assert backups.for_session(store.ops, layout.backups, gone.id) == []
    assert not segment.exists()
    # Live sessions: untouched, however old.
    for s in (old_active, old_paused):
        assert live_before[s.id] == files_of(s)
        assert store.load(s.id) == s
    # A recently stopped session stays, with its backups (all newer than the cutoff).
    assert store.load(fresh_stopped.id) == fresh_stopped
    assert len(backups.for_session(store.ops, layout.backups, fresh_stopped.id)) == 2
    assert all(not name.startswith((fresh_stopped.id, old_active.id, old_paused.id)) for name in result.removed_backups)


def test_cleanup_removes_old_backups_of_a_kept_stopped_session(store: SessionStore, layout: Layout) -> None:
    recent_ns = 1_754_038_800 * 10**9
    session = stopped(saved(store, build_session(clock=Clock(recent_ns)), 2), recent_ns + 10**9)
    store.save(session, 5)
    ancient = layout.backups / f"{session.id}_1600000000.json"
    ancient.write_bytes(snapshot.encode(session, 1))
    result = maintenance.cleanup(store, [session], max_age_days=30, now_ns=recent_ns + DAY_NS)
    assert result.removed_sessions == [] and result.removed_backups == [ancient.name]
    assert not ancient.exists() and store.load(session.id) == session


def test_export_then_import_round_trips(store: SessionStore, tmp_path: Path) -> None:
    session = saved(store, build_session(commands=7, annotations=2), 2)
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    path = maintenance.export_session(session, out_dir)
    assert path == out_dir / f"{session.id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert b"docpilotd" not in data  # plain DocPilot JSON
    assert data == snapshot.encode_plain(session)
    imported = maintenance.parse_import(maintenance.read_import_file(path), str(path))
    assert type(imported) is Session and imported == session
    # To a named file as well, replacing an earlier export.
    named = maintenance.export_session(session, tmp_path / "mine.json")
    assert maintenance.parse_import(named.read_bytes(), "mine.json") == session
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_import_accepts_docpilot_files_and_our_snapshots(store: SessionStore, example_bytes: bytes) -> None:
    assert maintenance.parse_import(example_bytes, "x").id == "6513270e-269e-4d37-b2a7-4de452e6b438"
    session = build_session()
    assert maintenance.parse_import(snapshot.encode(session, 4), "snap") == session


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty file"),
        (b"{", "not valid JSON"),
        (b'{"id": 1}', "invalid session data"),
        (b"\x00" * 10, "NUL"),
    ],
)
def test_import_of_an_invalid_file_raises_and_changes_nothing(
    store: SessionStore, layout: Layout, tmp_path: Path, content: bytes, fragment: str
) -> None:
    saved(store, build_session(), 2)
    before = tree_bytes(layout.root)
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(InvalidSession) as info:
        maintenance.parse_import(maintenance.read_import_file(bad), str(bad))
    assert fragment in info.value.message and str(bad) in info.value.message
    assert info.value.problems and info.value.code == "invalid_session"
    assert tree_bytes(layout.root) == before


def test_import_refuses_invalid_or_tampered_sessions(example_bytes: bytes) -> None:
    bad = example_bytes.replace(b'"total_commands": 3', b'"total_commands": 4')
    with pytest.raises(InvalidSession, match="stats.total_commands: 4 but 3 commands"):
        maintenance.parse_import(bad, "bad.json")
    snap = snapshot.encode(build_session(commands=3), 1)
    tampered = snap.replace(b"echo step 1", b"echo step 9")
    with pytest.raises(InvalidSession, match="checksum mismatch"):
        maintenance.parse_import(tampered, "t.json")


def test_read_import_file_of_a_missing_file(tmp_path: Path) -> None:
    # The user named a file that is not there: a usage mistake (exit 2), not a storage failure.
    with pytest.raises(UsageError, match="cannot import .*No such file"):
        maintenance.read_import_file(tmp_path / "absent.json")


def test_remove_session_files_leaves_other_sessions(store: SessionStore, layout: Layout) -> None:
    a = saved(store, build_session(), 3)
    b = saved(store, build_session(), 3)
    segments = [journal.segment_name(a.id, 1), journal.segment_name(a.id, 4)]
    for name in segments:
        (layout.journal / name).write_bytes(b"a")
    (layout.journal / journal.segment_name(b.id, 1)).write_bytes(b"b")
    a_backups = [f"backups/{g.name}" for g in backups.for_session(store.ops, layout.backups, a.id)]
    assert len(a_backups) == 2
    before_b = {n: d for n, d in tree_bytes(layout.root).items() if b.id in n}
    removed = maintenance.remove_session_files(store, a.id)
    assert sorted(removed) == sorted([f"sessions/{a.id}.json", *(f"journal/{n}" for n in segments), *a_backups])
    assert not any(a.id in n for n in tree_bytes(layout.root))
    assert {n: d for n, d in tree_bytes(layout.root).items() if b.id in n} == before_b
    assert encoded(store.load(b.id)) == encoded(b)


def test_a_cleaned_up_session_does_not_come_back_at_the_next_recovery(store: SessionStore, layout: Layout) -> None:
    clock = Clock(1_600_000_000 * 10**9)
    from tests.conftest import metadata

    create = changes.Create(session_id=new_id(), description="old work", at=clock(), event_id=new_id(), metadata=metadata())
    stop = changes.Stop(at=clock(), event_id=new_id())
    session = changes.apply(changes.create(create), stop)
    (layout.journal / journal.segment_name(session.id, 1)).write_bytes(journal.frame(1, create) + journal.frame(2, stop))
    store.save(session, 2)
    report, found = recover_all(SessionStore(layout), repair=False)
    assert list(found) == [session.id]

    result = maintenance.cleanup(store, [session], max_age_days=30, now_ns=1_754_038_800 * 10**9)
    assert result.removed_sessions == [session.id]
    report, found = recover_all(SessionStore(layout), repair=False)
    assert report.sessions == [] and found == {}
    assert os.listdir(layout.journal) == []
