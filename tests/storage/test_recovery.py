"""Recovery over a catalogue of damaged trees: report without touching, repair without deleting."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from docpilotd.domain import changes
from docpilotd.domain.model import Session
from docpilotd.paths import Layout
from docpilotd.storage import backups, snapshot
from docpilotd.storage.recovery import RecoveryReport, load_one, recover_all
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, build_session, command_change, encoded, tree_bytes

DOCPILOT_ID = "6513270e-269e-4d37-b2a7-4de452e6b438"


@dataclass
class Tree:
    """A data root with one session saved three times: S3 in sessions/, S1 and S2 as backups."""

    layout: Layout
    sid: str
    states: list[bytes]  # encoded bodies of S1, S2, S3

    @property
    def main(self) -> Path:
        return self.layout.session_file(self.sid)

    def generations(self) -> list[Path]:
        return [b.path for b in backups.for_session(SessionStore(self.layout).ops, self.layout.backups, self.sid)]


def saved_tree(layout: Layout) -> Tree:
    store = SessionStore(layout)
    clock = Clock()
    session = build_session(commands=2, clock=clock)
    states = []
    for seq in (1, 2, 3):
        session = changes.apply(session, command_change(f"save {seq}", clock()))
        store.save(session, seq)
        states.append(encoded(session))
    return Tree(layout, session.id, states)


@dataclass
class Case:
    damage: Callable[[Tree], None]
    recovered: int | None  # index into Tree.states, None: unrecoverable, -1: see `expected_body`
    problem: str
    quarantined: int = 1  # files that repair moves or copies to quarantine
    check_backups_only: bool = False
    expected_body: Callable[[Tree], bytes] | None = field(default=None)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_in_command(path: Path) -> None:
    data = path.read_bytes()
    at = data.index(b"save ") + 1
    path.write_bytes(data[:at] + b"A" + data[at + 1 :])  # "save" -> "sAve": still valid JSON


def newest_backup(t: Tree) -> Path:
    return t.generations()[-1]


def junk_backups_dir(t: Tree) -> None:
    rng = random.Random(7)
    d = t.layout.backups
    (d / "lost+found").mkdir()
    (d / "lost+found" / "x").write_bytes(b"x")
    (d / ".DS_Store").write_bytes(bytes(rng.randrange(256) for _ in range(300)))
    for n in range(12):
        name = "".join(rng.choice("abcdefghij.-~ ") for _ in range(rng.randint(1, 20))) + f"{n}"
        (d / name).write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(0, 500))))
    (d / "notes.json").write_bytes(b'{"not": "a backup"}')


def stale_temps(t: Tree) -> None:
    (t.layout.sessions / f".tmp-{t.sid}.json.0123456789ab.tmp").write_bytes(t.main.read_bytes()[:50])
    (t.layout.sessions / f"{t.sid}.tmp").write_bytes(t.main.read_bytes())


def everything_junk(t: Tree) -> None:
    t.main.write_bytes(b"\x00" * 100)
    for path in t.generations():
        path.write_bytes(b"garbage " + path.name.encode())


def mismatch_without_backups(t: Tree) -> None:
    for path in t.generations():
        path.unlink()
    flip_in_command(t.main)


def flipped_main_body(t: Tree) -> bytes:
    decoded = snapshot.decode(t.main.read_bytes())
    assert decoded.session is not None
    return encoded(decoded.session)


CATALOGUE: dict[str, Case] = {
    "main truncated": Case(lambda t: truncate(t.main), 1, "not valid JSON"),
    "main torn after 1 byte": Case(lambda t: t.main.write_bytes(t.main.read_bytes()[:1]), 1, "not valid JSON"),
    "main NUL-filled": Case(lambda t: t.main.write_bytes(b"\x00" * 4096), 1, "all NUL bytes"),
    "main zero bytes": Case(lambda t: t.main.write_bytes(b""), 1, "empty file (zero bytes)"),
    "main checksum mismatch": Case(lambda t: flip_in_command(t.main), 1, "checksum mismatch"),
    "main deleted, backups present": Case(lambda t: t.main.unlink(), 1, "missing", quarantined=0),
    "main holds another session": Case(
        lambda t: t.main.write_bytes(snapshot.encode(build_session(), 9)), 1, "file is named for"
    ),
    "main and newest backup truncated": Case(
        lambda t: (truncate(t.main), truncate(newest_backup(t))), 0, "not valid JSON", quarantined=2
    ),
    "main and every backup junk": Case(everything_junk, None, "all NUL bytes", quarantined=3),
    "main checksum mismatch, no backup": Case(
        mismatch_without_backups, -1, "used despite a checksum mismatch", expected_body=flipped_main_body
    ),
    "every backup junk, main fine": Case(
        lambda t: [p.write_bytes(b"\xff" * 10) for p in t.generations()], 2, "not valid JSON",
        quarantined=2, check_backups_only=True,
    ),
    "backup with bit rot, main fine": Case(
        lambda t: flip_in_command(newest_backup(t)), 2, "checksum mismatch", check_backups_only=True
    ),
    "stale temp files": Case(stale_temps, 2, "stale temp file of an interrupted save", quarantined=2),
    "only a DocPilot temp file left": Case(
        lambda t: (
            t.main.rename(t.layout.sessions / f"{t.sid}.tmp"),
            [p.unlink() for p in t.generations()],
        ),
        2, "stale temp file of an interrupted save",
    ),
}


def snapshot_tree(root: Path) -> dict[str, bytes | None]:
    return tree_bytes(root)


def contents_under(root: Path) -> set[bytes]:
    return {p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def session_report(report: RecoveryReport, sid: str):  # type: ignore[no-untyped-def]
    (found,) = [s for s in report.sessions if s.session_id == sid]
    return found


def expected_body(case: Case, tree: Tree) -> bytes | None:
    if case.recovered is None:
        return None
    if case.expected_body is not None:
        return case.expected_body(tree)
    return tree.states[case.recovered]


# Startup recovery reads backups only when the main file is unusable; fsck reads them all.
RUNS = [
    pytest.param(name, check, id=f"{name}-{'fsck' if check else 'startup'}")
    for name, case in CATALOGUE.items()
    for check in (False, True)
    if check or not case.check_backups_only
]


@pytest.mark.parametrize(("name", "check_backups"), RUNS)
def test_catalogue(layout: Layout, name: str, check_backups: bool) -> None:
    case = CATALOGUE[name]
    tree = saved_tree(layout)
    case.damage(tree)
    want = expected_body(case, tree)
    damaged_contents = contents_under(layout.root)
    before = snapshot_tree(layout.root)

    # Check only: the report names the problem, and not one byte changes.
    report, found = recover_all(SessionStore(layout), repair=False, check_backups=check_backups)
    assert snapshot_tree(layout.root) == before
    assert not report.healthy
    s = session_report(report, tree.sid)
    assert any(case.problem in line for line in s.problems), s.problems
    if want is None:
        assert s.status == "unrecoverable" and s.lost_window and tree.sid not in found
    else:
        assert s.status == "needs_repair"
        assert encoded(found[tree.sid].session) == want
        assert s.actions, "a check should say what repair would do"

    # Repair: restored, quarantined with reasons, nothing deleted.
    report, found = recover_all(SessionStore(layout), repair=True, check_backups=check_backups)
    s = session_report(report, tree.sid)
    assert len(s.quarantined) == case.quarantined, s.quarantined
    for rel in s.quarantined:
        kept = layout.root / rel
        assert kept.parent == layout.quarantine and kept.is_file()
        reason = json.loads(kept.with_name(kept.name + ".reason").read_bytes())
        assert reason["reason"] and reason["original"].startswith(str(layout.root))
    assert damaged_contents <= contents_under(layout.root), "a byte string was lost"
    if want is None:
        assert s.status == "unrecoverable" and tree.sid not in found
        assert not tree.main.exists()
        assert report.clean_after_repair is False
    else:
        assert s.status == "repaired"
        assert report.clean_after_repair
        assert encoded(found[tree.sid].session) == want
        main = snapshot.decode(tree.main.read_bytes(), tree.sid)
        assert main.usable and main.integrity == "verified"
        assert encoded(main.session) == want  # type: ignore[arg-type]
    assert not [n for n in os.listdir(layout.sessions) if n.endswith(".tmp")]

    # A second pass finds nothing left to do.
    before = snapshot_tree(layout.root)
    again, _ = recover_all(SessionStore(layout), repair=True, check_backups=check_backups)
    assert again.healthy, again
    assert snapshot_tree(layout.root) == before


def test_junk_in_backups_is_named_and_left_alone(layout: Layout) -> None:
    tree = saved_tree(layout)
    junk_backups_dir(tree)
    before = snapshot_tree(layout.root)
    for repair in (False, True):
        report, found = recover_all(SessionStore(layout), repair=repair, check_backups=True)
        assert snapshot_tree(layout.root) == before  # not session files: nobody's to move
        assert [s.session_id for s in report.sessions] == [tree.sid]
        assert encoded(found[tree.sid].session) == tree.states[2]
        assert "ignored: backups/notes.json is not a backup file" in report.other
        assert "ignored: backups/lost+found is not a backup file" in report.other
        assert len(report.other) == 15
        assert report.healthy


def test_binary_junk_with_a_backup_name_is_a_damaged_backup(layout: Layout) -> None:
    tree = saved_tree(layout)
    rng = random.Random(3)
    junk = layout.backups / backups.backup_name(tree.sid, 1_900_000_000 * 10**9)
    noise = bytes(rng.randrange(256) for _ in range(2000))
    junk.write_bytes(noise)
    stranger = layout.backups / "deadbeef_1722503702.json"
    stranger.write_bytes(b"\x89PNG\r\n")
    report, _ = recover_all(SessionStore(layout), repair=False, check_backups=True)
    statuses = {s.session_id: s.status for s in report.sessions}
    assert statuses == {tree.sid: "needs_repair", "deadbeef": "unrecoverable"}
    report, _ = recover_all(SessionStore(layout), repair=True, check_backups=True)
    statuses = {s.session_id: s.status for s in report.sessions}
    assert statuses == {tree.sid: "repaired", "deadbeef": "unrecoverable"}
    assert not junk.exists() and not stranger.exists()
    assert {noise, b"\x89PNG\r\n"} <= contents_under(layout.quarantine)
    assert store_main_is(layout, tree.sid, tree.states[2])


def test_directories_and_symlinks_with_session_names_are_moved_aside(layout: Layout) -> None:
    """Not regular files: never read; fsck reports them and changes nothing, repair moves each one
    (the entry itself: a link is not followed, a directory goes whole) to quarantine, and they
    never stop recovery (or a save). See tests/storage/test_hostile_files.py for every kind."""
    tree = saved_tree(layout)
    backup_dir = layout.backups / backups.backup_name(tree.sid, 1_000_000_000 * 10**9)  # the "oldest"
    backup_dir.mkdir()
    (backup_dir / "inside").write_bytes(b"kept")
    session_dir = layout.sessions / "1b4e28ba-2fa1-41d2-883f-0016d3cca427.json"
    session_dir.mkdir()
    link = layout.sessions / "2c4e28ba-2fa1-41d2-883f-0016d3cca427.json"
    link.symlink_to("/etc/hostname")
    entries = {
        f"backups/{backup_dir.name}": "a directory", f"sessions/{session_dir.name}": "a directory",
        f"sessions/{link.name}": "a symbolic link",
    }
    before = snapshot_tree(layout.root)
    report, found = recover_all(SessionStore(layout), repair=False, check_backups=True)
    assert [s.session_id for s in report.sessions] == [tree.sid]
    assert encoded(found[tree.sid].session) == tree.states[2]
    for name, kind in entries.items():
        assert f"not a docpilotd file: {name} (not a regular file: {kind}); would move it to quarantine" in report.other
    assert not report.healthy
    assert snapshot_tree(layout.root) == before

    report, found = recover_all(SessionStore(layout), repair=True, check_backups=True)
    assert encoded(found[tree.sid].session) == tree.states[2]
    for name, kind in entries.items():
        assert f"quarantined: {name} (not a regular file: {kind})" in report.other
    assert report.clean_after_repair
    moved = {p.name.split("_", 1)[1]: p for p in layout.quarantine.iterdir() if not p.name.endswith(".reason")}
    assert os.readlink(moved[link.name]) == "/etc/hostname"
    assert moved[session_dir.name].is_dir() and (moved[backup_dir.name] / "inside").read_bytes() == b"kept"
    assert not session_dir.exists() and not backup_dir.exists() and not link.is_symlink()
    assert recover_all(SessionStore(layout), repair=False, check_backups=True)[0].healthy

    # Rotation never counts (or tries to remove) a directory with a backup's name.
    backup_dir.mkdir()
    store = SessionStore(layout, backups_kept=1)
    decoded = store.read(tree.main)
    assert decoded.session is not None
    for seq in (4, 5, 6):
        store.save(decoded.session, seq)
    assert backup_dir.is_dir()
    assert len(backups.for_session(store.ops, layout.backups, tree.sid)) == 1


def store_main_is(layout: Layout, sid: str, body: bytes) -> bool:
    decoded = snapshot.decode(layout.session_file(sid).read_bytes(), sid)
    return decoded.usable and encoded(decoded.session) == body  # type: ignore[arg-type]


def test_docpilot_legacy_files_are_healthy_and_never_rewritten(layout: Layout, example_bytes: bytes) -> None:
    main = layout.session_file(DOCPILOT_ID)
    main.write_bytes(example_bytes)
    older = msgspec.json.decode(example_bytes, type=Session)
    older.commands.pop()
    older.stats.total_commands -= 1
    older.stats.failed_commands -= 1
    legacy_backup = layout.backups / f"{DOCPILOT_ID}_1722503702.json"
    legacy_backup.write_bytes(snapshot.encode_plain(older))
    os.utime(main, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    stats_before = {p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in (main, legacy_backup)}
    before = snapshot_tree(layout.root)
    for repair in (False, True):
        report, found = recover_all(SessionStore(layout), repair=repair, check_backups=True)
        assert report.healthy, report
        (s,) = report.sessions
        assert (s.session_id, s.status, s.source, s.commands) == (DOCPILOT_ID, "ok", f"sessions/{DOCPILOT_ID}.json", 3)
        assert encoded(found[DOCPILOT_ID].session) == encoded(msgspec.json.decode(example_bytes, type=Session))
        assert snapshot_tree(layout.root) == before
        assert {p: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in stats_before} == stats_before


def test_docpilot_main_broken_restores_from_a_second_named_backup(layout: Layout, example_bytes: bytes) -> None:
    (layout.backups / f"{DOCPILOT_ID}_1722503702.json").write_bytes(example_bytes)
    layout.session_file(DOCPILOT_ID).write_bytes(example_bytes[:700])  # DocPilot's torn write
    report, _found = recover_all(SessionStore(layout), repair=True)
    (s,) = report.sessions
    assert s.status == "repaired" and s.source == f"backups/{DOCPILOT_ID}_1722503702.json"
    assert store_main_is(layout, DOCPILOT_ID, encoded(msgspec.json.decode(example_bytes, type=Session)))


def test_loose_temp_and_stray_files(layout: Layout) -> None:
    tree = saved_tree(layout)
    loose = layout.sessions / "weird.name.tmp"
    loose.write_bytes(b"half a session")
    notes = layout.sessions / "notes.txt"
    notes.write_bytes(b"mine")
    report, _ = recover_all(SessionStore(layout), repair=False)
    assert "stale temp file: sessions/weird.name.tmp" in report.other
    assert "ignored: sessions/notes.txt is not a session file" in report.other
    assert not report.healthy
    report, _ = recover_all(SessionStore(layout), repair=True)
    assert not loose.exists() and notes.read_bytes() == b"mine"
    assert b"half a session" in contents_under(layout.quarantine)
    again, found = recover_all(SessionStore(layout), repair=False)
    assert again.healthy and encoded(found[tree.sid].session) == tree.states[2]


def test_several_sessions_are_recovered_independently(layout: Layout) -> None:
    trees = []
    store = SessionStore(layout)
    for n in range(4):
        session = build_session(commands=n + 1)
        store.save(session, 1)
        store.save(session, 2)
        trees.append((session.id, encoded(session)))
    truncate(layout.session_file(trees[1][0]))
    layout.session_file(trees[2][0]).unlink()
    report, found = recover_all(SessionStore(layout), repair=True)
    assert {s.session_id: s.status for s in report.sessions} == {
        trees[0][0]: "ok", trees[1][0]: "repaired", trees[2][0]: "repaired", trees[3][0]: "ok"
    }
    assert {sid: encoded(found[sid].session) for sid, _ in trees} == dict(trees)


def test_load_one_changes_nothing(layout: Layout) -> None:
    tree = saved_tree(layout)
    truncate(tree.main)
    before = snapshot_tree(layout.root)
    assert encoded(load_one(SessionStore(layout), tree.sid)) == tree.states[1]
    assert snapshot_tree(layout.root) == before


def test_an_empty_or_missing_root_is_healthy(tmp_path: Path, layout: Layout) -> None:
    from docpilotd.paths import layout_for

    for root in (layout, layout_for(tmp_path / "does-not-exist")):
        report, found = recover_all(SessionStore(root), repair=False)
        assert report.healthy and report.sessions == [] and found == {}
    assert not (tmp_path / "does-not-exist").exists()
