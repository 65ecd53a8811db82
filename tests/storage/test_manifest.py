"""The manifest of finished sessions: start-up takes a finished session from its row only while
the row is sound (same file, nothing in the journal after it, no temp file), and a missing,
damaged or foreign manifest only costs time. Real files in a temporary data root."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import msgspec
import pytest

from docpilotd.domain import changes
from docpilotd.domain.model import Session
from docpilotd.paths import Layout
from docpilotd.storage import journal, manifest, snapshot
from docpilotd.storage.recovery import Recovered, RecoveryReport, recover_all
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, build_session

COUNT = 6


def _layout(root: Path) -> Layout:
    layout = Layout(root=root, run_dir=root / "run")
    for directory in layout.data_dirs():
        directory.mkdir(parents=True, exist_ok=True)
    return layout


def _root(root: Path, count: int = COUNT, live: int = 1) -> list[Session]:
    """`count` sessions saved as a checkpoint leaves them (snapshot at seq 10, the empty segment
    after it); the first `live` are Active, the others stopped."""
    store = SessionStore(_layout(root))
    clock = Clock()
    made = []
    for n in range(count):
        session = build_session(commands=n % 3 + 2, description=f"session {n} of the same size", clock=clock)
        if n >= live:
            session = changes.apply(session, changes.Stop(at=clock(), event_id=f"{n:08d}-0000-4000-8000-000000000000"))
        store.save(session, 10)
        (store.layout.journal / journal.segment_name(session.id, 11)).touch()
        made.append(session)
    return made


def _start(root: Path) -> tuple[RecoveryReport, dict[str, Recovered]]:
    """What the daemon's start-up does (repair, no backups checked)."""
    return recover_all(SessionStore(_layout(root)), repair=True)


def _outcome(report: RecoveryReport, found: dict[str, Recovered]) -> tuple[object, dict[str, tuple[int, bytes]]]:
    reports = sorted((msgspec.to_builtins(s) for s in report.sessions), key=lambda s: s["session_id"])
    sessions = {sid: (r.seq, snapshot.encode_body(r.outline)) for sid, r in found.items()}
    return reports, sessions


def test_the_second_start_takes_finished_sessions_from_the_manifest(tmp_path: Path) -> None:
    made = _root(tmp_path)
    first = _start(tmp_path)
    assert first[0].from_manifest == 0
    path = tmp_path / "manifest"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_bytes()
    second = _start(tmp_path)
    assert second[0].from_manifest == COUNT - 1  # every finished one; the live one is read
    assert _outcome(*second) == _outcome(*first)  # the same reports and outlines
    assert path.read_bytes() == written  # nothing changed: not written again
    # A session taken from its row still loads whole, from its file, on first use.
    finished = made[-1]
    assert snapshot.encode_body(second[1][finished.id].session) == snapshot.encode_body(finished)


def _touch_back(path: Path, st: os.stat_result) -> None:
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_file_edited_in_place_at_the_same_size_and_mtime_is_checked_again(tmp_path: Path) -> None:
    made = _root(tmp_path)
    _start(tmp_path)
    victim = made[-1]
    path = tmp_path / "sessions" / f"{victim.id}.json"
    st = path.stat()
    data = path.read_bytes()
    edited = data.replace(b"echo step 1", b"echo step 9")
    assert edited != data and len(edited) == len(data)
    # The kernel stamps ctime from a clock that ticks every few milliseconds: a person's edit
    # comes later than that after the daemon's own write.
    time.sleep(0.05)
    with open(path, "r+b") as handle:  # in place: the same inode
        handle.write(edited)
    _touch_back(path, st)
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    report, _ = _start(tmp_path)
    assert report.from_manifest == COUNT - 2
    [seen] = [s for s in report.sessions if s.session_id == victim.id]
    assert any("checksum mismatch" in p for p in seen.problems), seen
    assert path.read_bytes() == data or snapshot.decode(path.read_bytes(), victim.id).usable


def test_a_file_replaced_by_another_of_the_same_size_is_checked_again(tmp_path: Path) -> None:
    made = _root(tmp_path)
    _start(tmp_path)
    victim = made[-1]
    path = tmp_path / "sessions" / f"{victim.id}.json"
    st = path.stat()
    other = tmp_path / "other.json"
    other.write_bytes(path.read_bytes().replace(b"echo step 0", b"echo step 8"))
    os.replace(other, path)  # a new inode, mtime set back
    _touch_back(path, st)
    report, _ = _start(tmp_path)
    assert report.from_manifest == COUNT - 2
    [seen] = [s for s in report.sessions if s.session_id == victim.id]
    assert seen.problems


def test_journal_records_after_the_row_are_replayed(tmp_path: Path) -> None:
    made = _root(tmp_path, live=0)
    _start(tmp_path)
    victim = made[0]
    # A session made live again by a restore whose change reached only the journal.
    live = build_session(commands=4, session_id=victim.id)
    replace = changes.Replace(session=live, reason="restore")
    (tmp_path / "journal" / journal.segment_name(victim.id, 11)).write_bytes(journal.frame(11, replace))
    report, found = _start(tmp_path)
    assert report.from_manifest == COUNT - 1
    [seen] = [s for s in report.sessions if s.session_id == victim.id]
    assert seen.replayed == 1 and found[victim.id].seq == 11
    assert found[victim.id].session.stats.total_commands == 4


def test_a_segment_starting_elsewhere_or_a_temp_file_is_a_miss(tmp_path: Path) -> None:
    made = _root(tmp_path, live=0)
    _start(tmp_path)
    a, b = made[0], made[1]
    (tmp_path / "journal" / journal.segment_name(a.id, 11)).unlink()
    (tmp_path / "journal" / journal.segment_name(a.id, 14)).touch()  # not what the row says follows
    (tmp_path / "sessions" / f".tmp-{b.id}.json.abcdef.tmp").write_bytes(b"{")
    report, _ = _start(tmp_path)
    assert report.from_manifest == COUNT - 2
    [seen] = [s for s in report.sessions if s.session_id == b.id]
    assert any("stale temp file" in p for p in seen.problems)


def test_a_purged_session_is_simply_gone(tmp_path: Path) -> None:
    made = _root(tmp_path, live=0)
    _start(tmp_path)
    gone = made[2]
    for directory in ("sessions", "backups", "journal"):
        for name in os.listdir(tmp_path / directory):
            if name.startswith(gone.id):
                os.unlink(tmp_path / directory / name)
    report, found = _start(tmp_path)
    assert gone.id not in found and report.from_manifest == COUNT - 1
    rows, ignored = manifest.load(SessionStore(_layout(tmp_path)))
    assert ignored is None and gone.id not in rows and len(rows) == COUNT - 1


def _damaged_manifests(path: Path) -> list[tuple[str, bytes | None]]:
    good = path.read_bytes()
    middle = len(good) // 2
    return [
        ("a flipped byte", good[:middle] + bytes([good[middle] ^ 0x10]) + good[middle + 1 :]),
        ("truncated", good[: len(good) - 7]),
        ("empty", b""),
        ("garbage", b"\x00" * 64),
        ("only the magic", manifest.MAGIC),
        ("a directory in its place", None),
    ]


@pytest.mark.parametrize("case", range(6))
def test_a_damaged_manifest_is_ignored_and_written_anew(tmp_path: Path, case: int) -> None:
    _root(tmp_path)
    expected = _outcome(*_start(tmp_path))
    path = tmp_path / "manifest"
    what, content = _damaged_manifests(path)[case]
    path.unlink()
    if content is None:
        path.mkdir()
        (path / "inside").write_bytes(b"x")
    else:
        path.write_bytes(content)
    report, found = _start(tmp_path)
    assert report.from_manifest == 0, what
    assert _outcome(report, found) == expected, what  # the same recovery
    assert report.healthy and not os.listdir(tmp_path / "quarantine"), what  # never quarantined
    if content is not None:  # written anew, and used by the next start
        assert _start(tmp_path)[0].from_manifest == COUNT - 1, what
    else:
        assert (path / "inside").read_bytes() == b"x"  # left alone (not ours to remove)


def test_a_removed_manifest_costs_one_full_check(tmp_path: Path) -> None:
    _root(tmp_path)
    expected = _outcome(*_start(tmp_path))
    (tmp_path / "manifest").unlink()
    report, found = _start(tmp_path)
    assert report.from_manifest == 0 and _outcome(report, found) == expected
    assert _start(tmp_path)[0].from_manifest == COUNT - 1


def test_a_manifest_copied_from_another_data_root_is_ignored(tmp_path: Path) -> None:
    _root(tmp_path / "one")
    _start(tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "two")  # the same names, another directory
    report, _ = _start(tmp_path / "two")
    assert report.from_manifest == 0
    assert _start(tmp_path / "two")[0].from_manifest == COUNT - 1


def test_fsck_never_uses_the_manifest(tmp_path: Path) -> None:
    _root(tmp_path)
    _start(tmp_path)
    written = (tmp_path / "manifest").read_bytes()
    for repair in (False, True):
        report, _ = recover_all(SessionStore(_layout(tmp_path)), repair=repair, check_backups=True)
        assert report.from_manifest == 0
    assert (tmp_path / "manifest").read_bytes() == written


def test_a_session_saved_again_is_read_again(tmp_path: Path) -> None:
    """A restore made a finished session live again and saved it: its row no longer holds."""
    made = _root(tmp_path, live=0)
    _start(tmp_path)
    victim = made[0]
    SessionStore(_layout(tmp_path)).save(build_session(commands=2, session_id=victim.id), 10)
    report, found = _start(tmp_path)
    assert report.from_manifest == COUNT - 1
    assert found[victim.id].held and found[victim.id].session.state == "Active"
