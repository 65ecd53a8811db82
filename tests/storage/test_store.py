"""The snapshot store: atomic durable saves, backup generations, quarantine, and saves that fail."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from docpilotd.domain import changes
from docpilotd.domain.model import Session
from docpilotd.errors import DiskFull, StorageError
from docpilotd.paths import Layout
from docpilotd.storage import backups, snapshot
from docpilotd.storage import store as store_mod
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, build_session, command_change, encoded
from tests.storage.faults import FAULTABLE, FaultyOps


def grow(session: Session, clock: Clock, n: int = 1) -> Session:
    for i in range(n):
        session = changes.apply(session, command_change(f"step {len(session.commands) + i}", clock()))
    return session


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def usable_bodies(store: SessionStore, session_id: str) -> list[bytes]:
    """The body of every usable copy of a session: main file and every backup."""
    paths = [store.layout.session_file(session_id)]
    paths += [b.path for b in backups.for_session(store.ops, store.layout.backups, session_id)]
    found = []
    for path in paths:
        decoded = store.read(path, session_id)
        if decoded.usable and decoded.session is not None:
            found.append(snapshot.encode_body(decoded.session))
    return found


# -- atomic saves ---------------------------------------------------------------------------------


def test_save_creates_a_0600_file_in_0700_directories(store: SessionStore, layout: Layout) -> None:
    session = build_session()
    result = store.save(session, seq=3)
    assert result.path == layout.session_file(session.id)
    assert mode(result.path) == 0o600
    for directory in layout.data_dirs():
        assert mode(directory) == 0o700, directory
    assert names(layout.sessions) == [f"{session.id}.json"]  # no temp file left behind
    decoded = store.read(result.path, session.id)
    assert decoded.usable and decoded.integrity == "verified" and decoded.seq == 3
    assert store.load(session.id) == session
    assert store.is_own_file(session.id)


def test_layout_tightens_an_existing_loose_directory(home: Path) -> None:
    from docpilotd.paths import layout_for

    (home / "sessions").mkdir(parents=True)
    os.chmod(home / "sessions", 0o755)
    layout = layout_for(home)
    layout.ensure()
    assert mode(layout.sessions) == 0o700


def test_save_works_under_a_permissive_umask(store: SessionStore) -> None:
    old = os.umask(0)
    try:
        session = build_session()
        store.save(session, 1)
        store.save(grow(session, Clock(10**18)), 2)
    finally:
        os.umask(old)
    assert mode(store.layout.session_file(session.id)) == 0o600
    for backup in backups.for_session(store.ops, store.layout.backups, session.id):
        assert mode(backup.path) == 0o600


def test_each_overwrite_first_makes_the_previous_snapshot_a_backup(store: SessionStore) -> None:
    clock = Clock()
    session = build_session(commands=1, clock=clock)
    first = store.save(session, 1)
    assert first.backup is None and names(store.layout.backups) == []
    previous = first.path.read_bytes()
    for n in range(2, 6):
        session = grow(session, clock)
        result = store.save(session, n)
        assert result.backup is not None and result.quarantined is None
        assert result.backup.read_bytes() == previous  # the generation is exactly the old file
        previous = result.path.read_bytes()
    generations = backups.for_session(store.ops, store.layout.backups, session.id)
    assert [snapshot.decode(b.path.read_bytes()).seq for b in generations] == [1, 2, 3, 4]
    assert names(store.layout.sessions) == [f"{session.id}.json"]


def test_backup_names_never_collide_in_a_tight_loop(layout: Layout) -> None:
    store = SessionStore(layout, backups_kept=1000)
    clock = Clock()
    session = build_session(commands=0, annotations=0, clock=clock)
    for n in range(150):
        session = grow(session, clock)
        store.save(session, n)
    generations = backups.for_session(store.ops, layout.backups, session.id)
    assert len(generations) == 149 == len(set(b.name for b in generations))
    # Ordered by name, the generations are in save order.
    assert names(layout.backups) == [b.name for b in generations]
    assert [snapshot.decode(b.path.read_bytes()).seq for b in generations] == list(range(149))


def test_backup_names_stay_unique_when_the_clock_stalls_or_steps_back(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    readings = iter([5_000_000_000_000_000_000] * 10 + [4_000_000_000_000_000_000] * 10)
    monkeypatch.setattr(store_mod.time, "time_ns", lambda: next(readings))
    store = SessionStore(layout, backups_kept=100)
    clock = Clock()
    session = build_session(commands=0, clock=clock)
    for n in range(15):
        session = grow(session, clock)
        store.save(session, n)
    generations = backups.for_session(store.ops, layout.backups, session.id)
    assert [snapshot.decode(b.path.read_bytes()).seq for b in generations] == list(range(14))


def test_new_backups_sort_after_existing_ones_when_the_clock_went_back_since_an_earlier_run(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    session = build_session(clock=clock)
    first_run = SessionStore(layout, backups_kept=3)
    for n in range(1, 5):
        session = grow(session, clock)
        first_run.save(session, n)
    # Restarted with the clock an hour behind (an RTC corrected by NTP, a VM restored...).
    behind = time_ns_before(layout, session.id) - 3600 * 10**9
    readings = iter(range(behind, behind + 100))
    monkeypatch.setattr(store_mod.time, "time_ns", lambda: next(readings))
    second_run = SessionStore(layout, backups_kept=3)
    for n in range(5, 9):
        session = grow(session, clock)
        second_run.save(session, n)
    generations = backups.for_session(second_run.ops, layout.backups, session.id)
    # The newest names hold the newest content, and rotation removed the oldest content.
    assert [snapshot.decode(b.path.read_bytes()).seq for b in generations] == [5, 6, 7]


def time_ns_before(layout: Layout, session_id: str) -> int:
    return backups.for_session(SessionStore(layout).ops, layout.backups, session_id)[-1].ns


def test_a_new_backup_sorts_after_a_docpilot_backup_of_the_same_second(
    layout: Layout, monkeypatch: pytest.MonkeyPatch, example_bytes: bytes
) -> None:
    sid = "6513270e-269e-4d37-b2a7-4de452e6b438"
    (layout.backups / f"{sid}_1754038805.json").write_bytes(example_bytes)
    layout.session_file(sid).write_bytes(example_bytes)
    monkeypatch.setattr(store_mod.time, "time_ns", lambda: 1_754_038_805 * 10**9)
    store = SessionStore(layout)
    session = grow(msgspec.json.decode(example_bytes, type=Session), Clock(1_754_038_900 * 10**9))
    result = store.save(session, 1)
    generations = backups.for_session(store.ops, layout.backups, sid)
    assert [b.path for b in generations] == [layout.backups / f"{sid}_1754038805.json", result.backup]


def test_docpilot_second_names_sort_among_ours_by_time_not_mtime(store: SessionStore, example_bytes: bytes) -> None:
    sid = "6513270e-269e-4d37-b2a7-4de452e6b438"
    d = store.layout.backups
    ours_before = backups.backup_name(sid, 1_754_038_804_999_999_999)
    ours_after = backups.backup_name(sid, 1_754_038_805_000_000_001)
    written = [f"{sid}_1722503702.json", ours_after, f"{sid}_1754038805.json", ours_before, f"{sid}_999.json"]
    for age, name in enumerate(written):
        (d / name).write_bytes(example_bytes)
        os.utime(d / name, ns=(age * 10**9, age * 10**9))  # mtimes in a different order
    order = [b.name for b in backups.for_session(store.ops, d, sid)]
    assert order == [f"{sid}_999.json", f"{sid}_1722503702.json", ours_before, f"{sid}_1754038805.json", ours_after]
    legacy = f"{sid}_1722503702.json"
    assert backups.parse_name(d, legacy) == backups.Backup(1_722_503_702 * 10**9, sid, legacy, d)
    # DocPilot's files still read.
    assert store.read(d / f"{sid}_1722503702.json", sid).usable


@pytest.mark.parametrize(
    "name",
    [
        "notes.txt",
        "x.json",
        "_1722503702.json",
        "a_b_1722503702.json",
        "id_17225.03702.json",
        "id_1722503702.123.json",
        "id_1722503702.json.bak",
    ],
)
def test_names_that_are_not_backups(store: SessionStore, name: str) -> None:
    assert backups.parse_name(store.layout.backups, name) is None


def test_keeps_n_distinct_generations_and_removes_the_oldest(layout: Layout, example_bytes: bytes) -> None:
    sid = "6513270e-269e-4d37-b2a7-4de452e6b438"
    docpilot_backup = layout.backups / f"{sid}_1722503702.json"
    docpilot_backup.write_bytes(example_bytes)
    store = SessionStore(layout, backups_kept=3)
    session = msgspec.json.decode(example_bytes, type=Session)
    clock = Clock(2_000_000_000 * 10**9)
    removed: list[Path] = []
    for n in range(1, 9):
        session = grow(session, clock)
        removed += store.save(session, n).removed_backups
    generations = backups.for_session(store.ops, layout.backups, sid)
    assert len(generations) == 3
    assert [snapshot.decode(b.path.read_bytes()).seq for b in generations] == [5, 6, 7]
    assert docpilot_backup in removed and not docpilot_backup.exists()  # the oldest went first
    assert store.load(sid) == session


def test_hard_linked_duplicates_count_as_one_generation(store: SessionStore) -> None:
    clock = Clock()
    session = build_session(clock=clock)
    store.save(session, 1)
    store.save(grow(session, clock), 2)
    (only,) = backups.for_session(store.ops, store.layout.backups, session.id)
    twin = store.layout.backups / backups.backup_name(session.id, only.ns - 1)
    os.link(only.path, twin)
    store.forget_generations(session.id)  # a backup added behind the store's back: it is told
    store.rotate(session.id)
    assert [b.path for b in backups.for_session(store.ops, store.layout.backups, session.id)] == [only.path]


# -- files that are not ours ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data, other: data[: len(data) // 2], "not valid JSON"),
        (lambda data, other: b"\x00" * len(data), "all NUL bytes"),
        (lambda data, other: b"", "empty file"),
        (lambda data, other: data.replace(b"step 0", b"step X"), "checksum mismatch"),
        (lambda data, other: other, "file is named for"),
    ],
    ids=["truncated", "nul", "empty", "bit-rot", "other-session"],
)
def test_an_untrusted_main_file_is_quarantined_not_backed_up(
    store: SessionStore, damage: Callable[[bytes, bytes], bytes], reason: str
) -> None:
    clock = Clock()
    session = build_session(clock=clock)
    store.save(session, 1)
    main = store.layout.session_file(session.id)
    foreign = damage(main.read_bytes(), snapshot.encode(build_session(), 1))
    main.write_bytes(foreign)
    os.utime(main, ns=(1, 1))  # make sure the identity differs even on a coarse clock
    backups_before = names(store.layout.backups)
    newer = grow(session, clock)
    result = store.save(newer, 2)
    assert result.backup is None and result.quarantined is not None
    assert names(store.layout.backups) == backups_before  # the damaged file never became a backup
    assert result.quarantined.parent == store.layout.quarantine
    assert result.quarantined.read_bytes() == foreign  # kept byte for byte
    why = json.loads(result.quarantined.with_name(result.quarantined.name + ".reason").read_bytes())
    assert reason in why["reason"] and why["original"] == str(main)
    assert store.load(session.id) == newer


def test_a_valid_file_written_by_docpilot_becomes_a_backup(store: SessionStore, example_bytes: bytes) -> None:
    sid = "6513270e-269e-4d37-b2a7-4de452e6b438"
    main = store.layout.session_file(sid)
    main.write_bytes(example_bytes)
    session = grow(msgspec.json.decode(example_bytes, type=Session), Clock(2_000_000_000 * 10**9))
    result = store.save(session, 1)
    assert result.quarantined is None and result.backup is not None
    assert result.backup.read_bytes() == example_bytes
    assert names(store.layout.quarantine) == []


def test_a_new_store_trusts_a_valid_file_from_an_earlier_run(layout: Layout) -> None:
    clock = Clock()
    session = build_session(clock=clock)
    SessionStore(layout).save(session, 1)
    later = SessionStore(layout)
    assert not later.is_own_file(session.id)
    result = later.save(grow(session, clock), 2)
    assert result.backup is not None and result.quarantined is None


# -- fault injection --------------------------------------------------------------------------------


ERRORS = [(errno.EIO, StorageError), (errno.ENOSPC, DiskFull)]


def prepared(layout: Layout, clock: Clock) -> tuple[SessionStore, FaultyOps, Session, Session]:
    """A store (keeping 2 generations) with 3 saves made: the next save also rotates."""
    ops = FaultyOps()
    store = SessionStore(layout, ops=ops, backups_kept=2)
    session = build_session(commands=2, clock=clock)
    for n in range(1, 4):
        session = grow(session, clock)
        store.save(session, n)
    last_saved = msgspec.json.decode(msgspec.json.encode(session), type=Session)
    return store, ops, last_saved, grow(session, clock)


def calls_of_one_save(tmp_path: Path) -> dict[str, int]:
    from docpilotd.paths import layout_for

    layout = layout_for(tmp_path / "probe")
    layout.ensure()
    store, ops, _, nxt = prepared(layout, Clock())
    ops.reset()
    result = store.save(nxt, 4)
    assert result.backup is not None and result.removed_backups  # the probe saw every step
    return dict(ops.calls)


def fresh_layout(tmp_path: Path, name: str) -> Layout:
    from docpilotd.paths import layout_for

    layout = layout_for(tmp_path / name)
    layout.ensure()
    return layout


def check_after_failed_save(store: SessionStore, last_saved: Session, attempted: Session) -> None:
    sid = last_saved.id
    # No temp file is left behind, and the last saved state is still there, valid.
    assert names(store.layout.sessions) == [f"{sid}.json"]
    assert encoded(last_saved) in usable_bodies(store, sid)
    # What recovery (a restart) would serve: the last saved state, or the attempted one when
    # the failure came after the rename.
    report, found = recover_all(SessionStore(store.layout), repair=False, check_backups=True)
    assert [s.session_id for s in report.sessions] == [sid]
    assert report.healthy, report
    assert encoded(found[sid].session) in (encoded(last_saved), encoded(attempted))


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize(("error", "expected"), ERRORS, ids=["EIO", "ENOSPC"])
@pytest.mark.parametrize("method", FAULTABLE)
def test_a_failed_save_keeps_the_last_saved_state(
    tmp_path: Path, method: str, error: int, expected: type[StorageError], persistent: bool
) -> None:
    total = calls_of_one_save(tmp_path).get(method, 0)
    assert total >= 1, f"a save never calls {method}"
    for n in range(1, total + 1):
        layout = fresh_layout(tmp_path, f"{method}-{n}")
        store, ops, last_saved, attempted = prepared(layout, Clock())
        ops.arm(method, at=n, error=error, persistent=persistent)
        with pytest.raises(expected) as info:
            store.save(attempted, 4)
        assert ops.faults >= 1
        if expected is StorageError:
            assert not isinstance(info.value, DiskFull)
            assert info.value.code == "storage_error"
        else:
            assert info.value.code == "disk_full"
        assert "\n" not in info.value.message
        check_after_failed_save(store, last_saved, attempted)
        # Once the disk works again, the same store saves, and everything is consistent.
        ops.disarm()
        store.save(attempted, 4)
        assert store.load(attempted.id) == attempted
        report, _ = recover_all(SessionStore(layout), repair=False, check_backups=True)
        assert report.healthy, (method, n, report)
        assert len(backups.for_session(store.ops, layout.backups, attempted.id)) <= 2 + 1


@pytest.mark.parametrize("method", ["open_exclusive", "write", "fsync", "close", "replace", "fsync_dir"])
def test_a_failed_first_save_leaves_no_half_file(store: SessionStore, method: str) -> None:
    ops = FaultyOps()
    store.ops = ops
    session = build_session()
    ops.arm(method, at=1)
    with pytest.raises(StorageError):
        store.save(session, 1)
    left = names(store.layout.sessions)
    if method == "fsync_dir":  # the rename happened; only its durability is in doubt
        assert left == [f"{session.id}.json"] and store.load(session.id) == session
    else:
        assert left == []
    ops.disarm()
    store.save(session, 1)
    assert store.load(session.id) == session


@pytest.mark.parametrize("method", FAULTABLE)
def test_a_failed_save_over_a_damaged_file_loses_nothing(tmp_path: Path, method: str) -> None:
    """The quarantine move can fail at any step: the damaged bytes stay somewhere under the root."""
    for n in range(1, 8):
        layout = fresh_layout(tmp_path, f"{method}-{n}")
        store, ops, last_saved, attempted = prepared(layout, Clock())
        main = layout.session_file(last_saved.id)
        torn = main.read_bytes()[:100]
        main.write_bytes(torn)
        os.utime(main, ns=(1, 1))
        ops.arm(method, at=n)
        try:
            store.save(attempted, 4)
        except StorageError:
            pass
        else:
            assert ops.faults == 0  # the save made fewer than n such calls: nothing was injected
            continue
        everything = [p.read_bytes() for p in layout.root.rglob("*") if p.is_file()]
        assert torn in everything
        assert not any(name.endswith(".tmp") for name in names(layout.sessions))
        ops.disarm()
        store.save(attempted, 4)
        assert store.load(attempted.id) == attempted
        assert torn in [p.read_bytes() for p in layout.quarantine.iterdir()]


def test_short_writes_still_produce_a_complete_file(store: SessionStore) -> None:
    ops = FaultyOps()
    store.ops = ops
    clock = Clock()
    session = build_session(commands=50, clock=clock)
    for n in range(1, 4):
        session = grow(session, clock)
        ops.arm("write", at=1, short=True)
        store.save(session, n)
        assert ops.faults == 1 and ops.calls["write"] >= 2  # write_all carried on after it
        assert store.load(session.id) == session
        assert store.read(store.layout.session_file(session.id)).integrity == "verified"


def test_every_write_short_still_produces_a_complete_file(store: SessionStore) -> None:
    class Trickle(FaultyOps):
        def write(self, fd: int, data: bytes | memoryview) -> int:
            return super().write(fd, bytes(data[:7]))

    store.ops = Trickle()
    session = build_session(commands=20)
    store.save(session, 1)
    assert store.load(session.id) == session


def test_a_short_write_then_a_full_disk_is_disk_full(store: SessionStore) -> None:
    ops = FaultyOps()
    store.ops = ops
    clock = Clock()
    session = build_session(commands=5, clock=clock)
    store.save(session, 1)
    saved = encoded(session)
    ops.arm("write", at=1, error=errno.ENOSPC, persistent=True, short=True)
    with pytest.raises(DiskFull, match="disk full"):
        store.save(grow(session, clock, 100), 2)  # grow changes `session` in place
    assert ops.faults >= 2
    assert names(store.layout.sessions) == [f"{session.id}.json"]
    assert encoded(store.load(session.id)) == saved


def test_a_write_that_makes_no_progress_is_an_error(store: SessionStore) -> None:
    class ZeroWrite(FaultyOps):
        def write(self, fd: int, data: bytes | memoryview) -> int:
            return 0

    store.ops = ZeroWrite()
    with pytest.raises(StorageError, match="no progress"):
        store.save(build_session(), 1)
    assert names(store.layout.sessions) == []


def test_quarantine_never_overwrites(store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from docpilotd.storage import quarantine

    monkeypatch.setattr(quarantine.time, "time_ns", lambda: 1_754_038_800_000_000_000)
    targets = []
    for n in range(5):
        victim = store.layout.sessions / "junk.bin"
        victim.write_bytes(b"junk %d" % n)
        targets.append(quarantine.move(store.ops, store.layout.quarantine, victim, f"test {n}"))
    assert len(set(targets)) == 5
    assert sorted(t.read_bytes() for t in targets) == [b"junk %d" % n for n in range(5)]
    for target in targets:
        reason = target.with_name(target.name + ".reason")
        assert mode(reason) == 0o600
        assert json.loads(reason.read_bytes())["reason"].startswith("test ")


def test_a_file_is_known_as_ours_from_the_moment_it_takes_its_name(layout: Layout) -> None:
    """The watcher compares a session file with what the daemon wrote. A save renames the new file
    into place and then syncs the directory, which can take long on a busy disk: a check in that
    window must not take the daemon's own file for another program's change (a false warning, and
    a needless rewrite)."""
    import threading

    from docpilotd.storage.fsops import OsFileOps

    syncing, release = threading.Event(), threading.Event()

    class SlowDirectorySync(OsFileOps):
        def fsync_dir(self, path: Path) -> None:
            if path == layout.sessions:  # after the rename of the session file
                syncing.set()
                release.wait(10)
            super().fsync_dir(path)

    store = SessionStore(layout, SlowDirectorySync())
    session = build_session()
    release.set()
    store.save(session, seq=1)
    release.clear()
    syncing.clear()
    saving = threading.Thread(target=store.save, args=(session, 2))
    saving.start()
    try:
        assert syncing.wait(10)
        decoded = store.read(layout.session_file(session.id), session.id)
        assert decoded.seq == 2, "the new file has its name"
        assert store.is_own_file(session.id), "our own new file, mid-save, taken for a foreign one"
    finally:
        release.set()
        saving.join(10)
    assert store.is_own_file(session.id)
    layout.session_file(session.id).write_bytes(layout.session_file(session.id).read_bytes())  # another program
    assert not store.is_own_file(session.id)
