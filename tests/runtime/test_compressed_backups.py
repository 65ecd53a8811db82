"""Compressed backup generations through a real daemon: made by saves, listed, restored, and safe
against kill -9 around the rotation that compresses them."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import zstandard

from docpilotd.paths import layout_for
from docpilotd.storage import backups, compression, snapshot
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore
from tests.daemon_harness import Daemon, DaemonFactory, assert_docpilot_format


def _record(d: Daemon, sid: str, commands: list[str]) -> None:
    with d.connect(timeout=20) as sock:
        for command in commands:
            sock.sendall(json.dumps({"op": "record", "session": sid, "command": command, "exit_code": 0}).encode() + b"\n")
        reader = sock.makefile("rb")
        for _ in commands:
            reply = json.loads(reader.readline())
            assert reply["ok"], reply


def _generations(d: Daemon, sid: str) -> list[backups.Backup]:
    return backups.for_session(SessionStore(layout_for(d.home)).ops, d.backups_dir, sid)


def _saved_several_times(d: Daemon, saves: int = 4) -> str:
    sid = d.call("start", description="Compressed history")["id"]
    for n in range(saves):
        _record(d, sid, [f"make step-{n}-{i}" for i in range(5)])
        assert d.call("save")["saved"] == 1
    return sid


def test_saves_compress_older_generations_and_the_listing_shows_them(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = _saved_several_times(d)
    generations = _generations(d, sid)
    # One generation per save but the first (start's own snapshot is the first backed up).
    assert len(generations) >= 3
    assert [g.compressed for g in generations] == [True] * (len(generations) - 1) + [False]
    for g in generations[:-1]:
        assert zstandard.get_frame_parameters(g.path.read_bytes()).has_checksum
    # The newest generation is plain DocPilot JSON under DocPilot's name pattern.
    newest = generations[-1]
    assert newest.name == backups.backup_name(sid, newest.ns)
    assert_docpilot_format(json.loads(newest.path.read_bytes()))
    assert_docpilot_format(d.read_session_file(sid))

    listed = d.client_json("backups", "--session", sid)["backups"]
    assert [b["name"] for b in listed] == [g.name for g in reversed(generations)]
    assert all("problem" not in b for b in listed), listed
    counts = [b["commands"] for b in listed]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts)  # each save added 5
    assert [b["size"] for b in listed] == [g.path.stat().st_size for g in reversed(generations)]
    rc, out, _ = d.client("backups", "--session", sid)
    assert rc == 0 and generations[0].name in out


def test_restoring_a_compressed_generation_writes_a_plain_snapshot(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = _saved_several_times(d)
    oldest = _generations(d, sid)[0]
    assert oldest.compressed
    held = snapshot.decode(compression.decompress(oldest.path.read_bytes())[0] or b"")
    assert held.usable and held.session is not None
    would = d.client_json("restore", "--dry-run", oldest.name)
    assert would["commands"] == len(held.session.commands) and would["dry_run"]

    restored = d.client_json("restore", oldest.name)
    assert restored["restored_from"] == oldest.name and restored["commands"] == len(held.session.commands)
    doc = d.read_session_file(sid)  # the restore's checkpoint: plain, verified, DocPilot's format
    assert_docpilot_format(doc)
    assert [c["command"] for c in doc["commands"]] == [c.command for c in held.session.commands]
    main = snapshot.decode(d.session_file(sid).read_bytes(), sid)
    assert main.usable and main.integrity == "verified"
    # Reversible: the version before the restore is a generation (the newest, plain); the one
    # before it was compressed by the same save.
    generations = _generations(d, sid)
    assert not generations[-1].compressed and generations[-2].compressed
    before = snapshot.decode(generations[-1].path.read_bytes())
    assert before.session is not None and len(before.session.commands) == 20

    # A name listed before a save compressed it still names the same generation.
    plain_name = generations[-1].name
    _record(d, sid, ["one more"])
    d.call("save")
    assert backups.locate(SessionStore(layout_for(d.home)).ops, d.backups_dir, plain_name).compressed  # type: ignore[union-attr]
    again = d.client_json("restore", plain_name)
    assert again["commands"] == 20


def test_a_damaged_compressed_generation_is_listed_refused_and_quarantined_at_start(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = _saved_several_times(d)
    oldest = _generations(d, sid)[0]
    data = oldest.path.read_bytes()
    oldest.path.write_bytes(data[: len(data) // 2])
    listed = {b["name"]: b for b in d.client_json("backups", "--session", sid)["backups"]}
    assert "zstd" in listed[oldest.name]["problem"]
    rc, _, err = d.client("restore", oldest.name)
    assert rc != 0 and "cannot be restored" in err
    # The session's own file is fine: served as it is; fsck names the damaged generation.
    d.terminate()
    report, _ = recover_all(SessionStore(layout_for(d.home)), repair=False, check_backups=True)
    assert any(oldest.name in line for s in report.sessions for line in s.problems)


def test_kill9_around_rotation_always_leaves_a_valid_set(daemons: DaemonFactory) -> None:
    """Saves of a growing session while the daemon is killed at random moments: after each kill,
    every acknowledged command is recovered, each generation is listed once and reads back in one
    form at least, and the daemon carries on compressing."""
    d = daemons()
    sid = d.call("start", description="Killed while compressing")["id"]
    rng = random.Random(19)
    acked: list[str] = []
    for round_ in range(8):
        batch = [f"cmd {round_}-{i} " + "x" * rng.randrange(50, 400) for i in range(400)]
        _record(d, sid, batch)
        acked += batch

        def saver(label: str) -> None:
            try:
                for _ in range(6):
                    _record(d, sid, [f"filler {label}"])
                    d.request("save")
            except (OSError, ValueError, AssertionError):
                pass  # the daemon was killed under it

        thread = threading.Thread(target=saver, args=(str(round_),))
        thread.start()
        time.sleep(rng.uniform(0.0, 0.25))
        d.kill9()
        thread.join(timeout=20)
        layout = layout_for(d.home)
        store = SessionStore(layout)
        for generation in _generations(d, sid):
            assert any(store.read(p, sid).usable for p in generation.paths), (round_, generation)
        listed = [g.ns for g in _generations(d, sid)]
        assert len(listed) == len(set(listed))
        d.start()
        shown = d.call("show", session=sid)
        commands = {c["command"] for c in shown["commands"]}
        missing = [c for c in acked if c not in commands]
        assert not missing, (round_, len(missing))
        assert not [n for n in Path(d.backups_dir).iterdir() if n.name.endswith(".tmp")], "a temp file left after recovery"
    d.call("save")
    generations = _generations(d, sid)
    assert generations and all(g.compressed for g in generations[:-1]) and not generations[-1].compressed
    assert_docpilot_format(json.loads(generations[-1].path.read_bytes()))
