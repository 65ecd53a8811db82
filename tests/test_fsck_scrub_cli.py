"""`docpilotd fsck --scrub` as a person runs it: a real process on a real data root, one line per
problem, the totals, exit 1 when something is wrong, `--repair` replacing a damaged generation."""

from __future__ import annotations

import json
import os
import re

from docpilotd.paths import Layout
from docpilotd.storage import backups, compression, snapshot
from docpilotd.storage.lock import DataLock
from docpilotd.storage.store import SessionStore
from tests.conftest import tree_bytes
from tests.storage.test_scrubbing import history
from tests.test_fsck_cli import fsck, one_line

TOTALS = re.compile(r"^(\d+) files, [\d.]+ MB in [\d.]+ s \(\d+ MB/s\); (\d+) problem\(s\), (\d+) repaired; (.*)$")


def totals(out: str) -> tuple[int, int, int, str]:
    match = TOTALS.match(out.strip().splitlines()[-1])
    assert match, out
    return int(match[1]), int(match[2]), int(match[3]), match[4]


def test_a_clean_root_scrubs_clean(layout: Layout) -> None:
    history(layout)
    done = fsck("fsck", "--scrub")
    assert done.returncode == 0, done
    assert done.stdout.splitlines()[0] == f"docpilotd fsck --scrub: {layout.root} (check only, nothing changed)"
    files, problems, repaired, verdict = totals(done.stdout)
    assert files == len(os.listdir(layout.backups)) + len(os.listdir(layout.journal))
    assert (problems, repaired, verdict) == (0, 0, "no bit rot found")


def test_check_names_every_problem_changes_nothing_and_repair_replaces_the_generation(layout: Layout) -> None:
    store, sid, _ = history(layout)
    gens = backups.for_session(store.ops, layout.backups, sid)
    victim = gens[1]  # compressed, between two good copies
    original = compression.decompress(victim.path.read_bytes())[0]
    assert original is not None
    victim.path.write_bytes(compression.compress(original.replace(b"echo step 3", b"echo step 8")))
    segment = layout.journal / sorted(os.listdir(layout.journal))[0]
    segment.write_bytes(segment.read_bytes()[:-5])  # a torn tail, not in the session's last segment
    before = tree_bytes(layout.root)

    check = fsck("fsck", "--scrub")
    assert check.returncode == 1, check
    lines = check.stdout.splitlines()
    assert f"  backups/{victim.name}: checksum mismatch (the bytes changed since they were written)" in lines
    assert any(line.startswith(f"  journal/{segment.name}: torn last record at byte ") for line in lines), lines
    assert totals(check.stdout)[1:] == (2, 0, "problems found (run 'docpilotd fsck --scrub --repair')")
    assert tree_bytes(layout.root) == before

    repair = fsck("fsck", "--scrub", "--repair")
    assert repair.returncode == 1, repair  # the segment is left to recovery
    line = next(line for line in repair.stdout.splitlines() if victim.name in line)
    assert "-> replaced: rebuilt from " in line and "the damaged file is in quarantine" in line
    assert totals(repair.stdout)[1:] == (2, 1, "problems remain")
    repaired = compression.decompress(victim.path.read_bytes())[0]
    assert repaired == original  # byte for byte the generation it was

    as_json = json.loads(fsck("fsck", "--scrub", "--json").stdout)
    assert [p["name"] for p in as_json["problems"]] == [segment.name]
    assert as_json["healthy"] is False and as_json["files"] > 0 and as_json["bytes"] > 0


def test_repair_with_nothing_but_a_damaged_generation_exits_0(layout: Layout) -> None:
    store, sid, states = history(layout)
    newest = backups.for_session(store.ops, layout.backups, sid)[-1]
    data = newest.path.read_bytes()
    newest.path.write_bytes(data[:100] + b"\0" * 256 + data[356:])
    done = fsck("fsck", "--scrub", "--repair")
    assert done.returncode == 0, done
    assert totals(done.stdout)[1:] == (1, 1, "every problem repaired")
    decoded = SessionStore(layout).read(newest.path, sid)
    assert decoded.usable and snapshot.encode_body(decoded.session) == snapshot.encode_body(states[decoded.seq])  # type: ignore[arg-type]
    assert fsck("fsck", "--scrub").returncode == 0


def test_repair_refuses_while_the_daemon_holds_the_data_root(layout: Layout) -> None:
    history(layout)
    lock = DataLock(layout.lock)
    lock.acquire()
    try:
        refused = fsck("fsck", "--scrub", "--repair")
        check = fsck("fsck", "--scrub")  # reading only: allowed
    finally:
        lock.release()
    assert refused.returncode == 3 and "stop the daemon first" in one_line(refused.stderr)
    assert refused.stdout == ""
    assert check.returncode == 0
