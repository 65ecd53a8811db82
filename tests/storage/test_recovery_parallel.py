"""Recovery spread over forked processes finds and does exactly what one process does.

A tree of many sessions mixes the cases recovery meets: finished and live sessions, a session
with journal records after its snapshot, a damaged snapshot with a good backup, a torn journal
tail, a stale temp file, a DocPilot file without our field. It is recovered once in one process
and once in several (on identical copies), with and without repair.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from docpilotd.domain import changes
from docpilotd.paths import Layout
from docpilotd.storage import forked, journal, manifest, recovery, snapshot
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, annotate_change, build_session, tree_bytes

pytestmark = pytest.mark.skipif(not forked.AVAILABLE, reason="forked recovery runs on Linux only")


def _layout(root: Path) -> Layout:
    layout = Layout(root=root, run_dir=root / "run")
    for directory in layout.data_dirs():
        directory.mkdir(parents=True, exist_ok=True)
    return layout


def _tree(root: Path) -> None:
    store = SessionStore(_layout(root))
    clock = Clock()
    for n in range(40):
        session = build_session(commands=n % 4 + 1, clock=clock)
        if n % 3:
            session = changes.apply(session, changes.Stop(at=clock(), event_id=f"{n:08d}-0000-4000-8000-000000000000"))
        store.save(session, 10)
        if n == 1:  # damaged snapshot, good backup
            store.save(session, 10)
            path = store.layout.session_file(session.id)
            path.write_bytes(path.read_bytes()[:100])
        if n == 3:  # records after the snapshot of a live session
            note = annotate_change("after the snapshot", clock())
            (store.layout.journal / journal.segment_name(session.id, 11)).write_bytes(journal.frame(11, note))
        if n == 6:  # a torn journal tail
            (store.layout.journal / journal.segment_name(session.id, 11)).write_bytes(b"DPJ1\x05\x00")
        if n == 9:  # a stale temp file of an interrupted save
            (store.layout.sessions / f".tmp-{session.id}.json.abcdef.tmp").write_bytes(b"{")
        if n == 12:  # DocPilot's own file: no field of ours
            store.layout.session_file(session.id).write_bytes(snapshot.encode_plain(session))
        (store.layout.journal / journal.segment_name(session.id, 11)).touch()


def _run(root: Path, repair: bool, parallel: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    monkeypatch.setattr(recovery, "PARALLEL_MIN", 2 if parallel else 10**9)
    report, found = recovery.recover_all(SessionStore(_layout(root)), repair=repair)
    sessions = {sid: (r.seq, snapshot.encode_body(r.session), snapshot.encode_body(r.outline)) for sid, r in found.items()}
    result = msgspec.to_builtins(report)
    for key in ("root", "started_at_ns", "duration_ms"):
        result.pop(key)
    # Quarantined files are named after the moment they were moved.
    return re.sub(r"\d{4}-\d\d-\d\dT\d{6}\.\d{9}Z", "<time>", msgspec.json.encode(result).decode()), sessions


def _manifest_rows(root: Path) -> list[tuple[str, int, str]]:
    rows, ignored = manifest.load(SessionStore(_layout(root)))
    assert ignored is None
    return sorted((r.session_id, r.seq, r.checksum) for r in rows.values())


def _quarantine_names(root: Path) -> list[str]:
    return sorted(p.name.split(".", 1)[0] for p in (root / "quarantine").iterdir())


@pytest.mark.parametrize("repair", [False, True])
def test_forked_recovery_is_the_same_as_recovery_in_one_process(
    tmp_path: Path, repair: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "many")
    one = _run(tmp_path / "one", repair, parallel=False, monkeypatch=monkeypatch)
    many = _run(tmp_path / "many", repair, parallel=True, monkeypatch=monkeypatch)
    assert many == one
    report = msgspec.json.decode(one[0])
    assert len(one[1]) == 40 and any(s["problems"] for s in report["sessions"])
    assert any(s["replayed"] for s in report["sessions"])
    # The manifest records inodes and times, which differ between the copies: compared by its rows.
    one_tree = {k: v for k, v in tree_bytes(tmp_path / "one").items() if not k.startswith(("quarantine", "manifest"))}
    many_tree = {k: v for k, v in tree_bytes(tmp_path / "many").items() if not k.startswith(("quarantine", "manifest"))}
    assert many_tree == one_tree
    assert _manifest_rows(tmp_path / "many") == _manifest_rows(tmp_path / "one")
    assert _quarantine_names(tmp_path / "many") == _quarantine_names(tmp_path / "one")


def test_a_child_that_fails_leaves_its_share_to_the_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "many")
    expected = _run(tmp_path / "one", False, parallel=False, monkeypatch=monkeypatch)

    def broken(store: SessionStore, scan: Any, share: Any, check_backups: bool) -> bytes:
        raise RuntimeError("a child that dies")

    monkeypatch.setattr(recovery, "_check_share", broken)
    assert _run(tmp_path / "many", False, parallel=True, monkeypatch=monkeypatch) == expected
