"""The scrub (storage/scrubbing.py): every retained generation and journal segment checked, the
damage catalogue of snapshots and journals applied to them, repair from a good copy.

A recorded history is built as the daemon leaves it: a journal segment per checkpoint, a save per
checkpoint with a compressing store (the newest generation plain, the older ones `.json.zst`), so
each generation's state can be rebuilt from an older one and the records after it.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from docpilotd.domain import changes
from docpilotd.domain.model import Session
from docpilotd.paths import Layout
from docpilotd.storage import backups, compression, journal, scrubbing, snapshot
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, command_change, encoded, metadata, new_id
from tests.storage.test_compressed_backups import DAMAGE as COMPRESSED_DAMAGE


def history(layout: Layout, checkpoints: int = 4, per: int = 3) -> tuple[SessionStore, str, dict[int, Session]]:
    """A session recorded through the journal with a checkpoint every `per` records; returns the
    store, the session id and the state at each checkpoint's sequence (what each copy holds)."""
    store = SessionStore(layout, backups_kept=10, compress_backups=True)
    clock = Clock()
    sid = new_id()
    session: Session | None = None
    states: dict[int, Session] = {}
    seq = 0
    for _ in range(checkpoints):
        first = seq + 1
        frames = []
        for _ in range(per):
            seq += 1
            change: changes.Change
            if session is None:
                change = changes.Create(session_id=sid, description="Set up the proxy", at=clock(),
                                        event_id=new_id(), metadata=metadata())
                session = changes.create(change)
            else:
                change = command_change(f"echo step {seq - 1}", clock())
                session = changes.apply(session, change)
            frames.append(journal.frame(seq, change))
        (layout.journal / journal.segment_name(sid, first)).write_bytes(b"".join(frames))
        assert session is not None
        store.save(session, seq)
        states[seq] = snapshot.plain_session(snapshot.decode(snapshot.encode(session, seq)).session)  # type: ignore[arg-type]
    (layout.journal / journal.segment_name(sid, seq + 1)).write_bytes(b"")
    return store, sid, states


def generations(store: SessionStore, sid: str) -> list[backups.Backup]:
    return backups.for_session(store.ops, store.layout.backups, sid)


def scrub(store: SessionStore, repair: bool = False) -> scrubbing.Report:
    return scrubbing.scrub(SessionStore(store.layout), repair_found=repair, processes=1)


def test_an_intact_root_scrubs_clean_and_every_file_is_read(layout: Layout) -> None:
    store, sid, _ = history(layout)
    gens = generations(store, sid)
    assert [g.compressed for g in gens] == [True, True, False]
    report = scrub(store)
    assert report.problems == []
    segments = list(layout.journal.iterdir())
    assert report.files == len(gens) + len(segments)
    assert report.bytes == sum(g.path.stat().st_size for g in gens) + sum(p.stat().st_size for p in segments)


PLAIN_DAMAGE = {
    "zero bytes": lambda data: b"",
    "all NUL bytes": lambda data: b"\0" * len(data),
    "truncated to half": lambda data: data[: len(data) // 2],
    "last bytes missing": lambda data: data[:-40],
    "NUL block": lambda data: data[:100] + b"\0" * 512 + data[612:],
    "bit flip in a command": lambda data: data.replace(b"echo step 2", b"echo stEp 2"),
    "bit flip in the sequence": lambda data: re.sub(rb'"seq": (\d+)', lambda m: b'"seq": %d' % (int(m[1]) ^ 1), data),
    "our field's name damaged": lambda data: data.replace(b'"docpilotd"', b'"docpilotD"'),
    "deep nesting": lambda data: b"[" * 100_000,
    "unknown state": lambda data: data.replace(b'"state": "Active"', b'"state": "Sleeping"'),
    "lone surrogate": lambda data: data.replace(b"Set up the proxy", b"Set up \\ud800 proxy"),
    "another session's file": lambda data: snapshot.encode(history_free_session(), 6),
}


def history_free_session() -> Session:
    return changes.create(changes.Create(session_id=new_id(), description="x", at=Clock()(), event_id=new_id(),
                                         metadata=metadata()))


@pytest.mark.parametrize("case", list(PLAIN_DAMAGE))
def test_every_damage_of_a_plain_generation_is_found(layout: Layout, case: str) -> None:
    store, sid, _ = history(layout)
    newest = generations(store, sid)[-1]
    assert not newest.compressed
    original = newest.path.read_bytes()
    damaged = PLAIN_DAMAGE[case](original)
    assert damaged != original
    newest.path.write_bytes(damaged)
    report = scrub(store)
    assert [p.name for p in report.problems] == [newest.name], report.problems
    assert report.problems[0].kind == "generation"


@pytest.mark.parametrize("case", list(COMPRESSED_DAMAGE))
def test_every_damage_of_a_compressed_generation_is_found(layout: Layout, case: str) -> None:
    store, sid, _ = history(layout)
    oldest = generations(store, sid)[0]
    assert oldest.compressed
    damage, _ = COMPRESSED_DAMAGE[case]
    oldest.path.write_bytes(damage(oldest.path.read_bytes()))
    report = scrub(store)
    assert [p.name for p in report.problems] == [oldest.name], report.problems


def test_every_truncation_and_random_flips_of_a_generation_fail_the_crc_check(layout: Layout) -> None:
    store, sid, _ = history(layout, checkpoints=2)
    data = generations(store, sid)[-1].path.read_bytes()
    assert snapshot.verify(data, sid) == snapshot.Verdict(True, 3, None, "crc")
    for cut in range(len(data) - 1):  # the final newline is the one byte no reader sees
        assert not snapshot.verify(data[:cut], sid).ok, cut
    rng = random.Random(5)
    for _ in range(500):
        damaged = bytearray(data)
        damaged[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        assert not snapshot.verify(bytes(damaged), sid).ok


def test_verify_decodes_files_without_our_field_in_full(example_bytes: bytes, example_session: Session) -> None:
    """DocPilot's files have no CRC: judged by a full decode, as recovery does."""
    verdict = snapshot.verify(example_bytes, example_session.id)
    assert verdict.ok and verdict.how == "decoded"
    assert not snapshot.verify(example_bytes.replace(b'"state"', b'"stat"'), example_session.id).ok


def segment_with_records(layout: Layout, sid: str) -> Path:
    return next(p for p in sorted(layout.journal.iterdir()) if p.stat().st_size and journal.parse_segment_name(p.name))


SEGMENT_DAMAGE = {
    "flipped byte in the middle": lambda data: data[:60] + bytes([data[60] ^ 0xFF]) + data[61:],
    "torn tail (not the last segment)": lambda data: data[:-7],
    "bad magic": lambda data: b"XXXX" + data[4:],
    "NUL block": lambda data: data[:20] + b"\0" * 64 + data[84:],
    "impossible length": lambda data: data[:4] + b"\xff\xff\xff\x7f" + data[8:],
}


@pytest.mark.parametrize("case", list(SEGMENT_DAMAGE))
def test_every_damage_of_a_segment_is_found_and_left_in_place(layout: Layout, case: str) -> None:
    store, sid, _ = history(layout)
    path = segment_with_records(layout, sid)
    damaged = SEGMENT_DAMAGE[case](path.read_bytes())
    path.write_bytes(damaged)
    report = scrub(store, repair=True)
    (problem,) = report.problems
    assert (problem.kind, problem.name) == ("segment", path.name)
    assert "left in place" in problem.action and not problem.repaired
    assert path.read_bytes() == damaged


def test_the_crc_pass_agrees_with_the_full_reader_on_random_damage(layout: Layout) -> None:
    _, sid, _ = history(layout, checkpoints=1, per=12)
    path = segment_with_records(layout, sid)
    whole = path.read_bytes()
    rng = random.Random(9)
    for _ in range(300):
        damaged = bytearray(whole)
        damaged[rng.randrange(len(whole))] ^= 1 << rng.randrange(8)
        count, damage = journal.check_segment(bytes(damaged), path)
        records, full = journal.scan_segment(bytes(damaged), path)
        assert [(d.offset, d.size, d.detail) for d in damage] == [(d.offset, d.size, d.detail) for d in full]
        assert count == len(records)


def test_a_torn_tail_of_the_last_segment_is_an_append_in_progress(layout: Layout) -> None:
    store, _, _ = history(layout)
    last = sorted(p for p in layout.journal.iterdir())[-1]
    last.write_bytes(journal.frame(13, command_change("echo 13", Clock()()))[:-3])
    assert scrub(store).problems == []


@pytest.mark.parametrize("which", ["plain newest", "compressed oldest", "compressed middle"])
@pytest.mark.parametrize("damage", ["bit flip", "NUL block", "truncated"])
def test_repair_rebuilds_a_damaged_generation_to_the_same_session(layout: Layout, which: str, damage: str) -> None:
    store, sid, states = history(layout)
    gens = generations(store, sid)
    target = {"plain newest": gens[-1], "compressed oldest": gens[0], "compressed middle": gens[1]}[which]
    original = target.path.read_bytes()
    plain = compression.decompress(original)[0] if target.compressed else original
    assert plain is not None
    rotted = {"bit flip": plain.replace(b'"Set up the proxy"', b'"Set up the proxz"'),
              "NUL block": plain[:200] + b"\0" * 300 + plain[500:],
              "truncated": plain[: len(plain) * 2 // 3]}[damage]
    # A compressed generation rots inside its content (the frame itself still decompresses), as a
    # rotted file that was compressed: the sequence at its end is still readable.
    target.path.write_bytes(compression.compress(rotted) if target.compressed else rotted)
    report = scrub(store, repair=True)
    (problem,) = report.problems
    assert problem.repaired, problem.action
    assert "replaced" in problem.action
    decoded = SessionStore(layout).read(target.path, sid)
    assert decoded.usable and decoded.session is not None
    expected = snapshot.decode(plain, sid)
    assert decoded.seq == expected.seq
    assert encoded(decoded.session) == encoded(expected.session)  # type: ignore[arg-type]
    assert encoded(decoded.session) == encoded(states[decoded.seq])
    assert target.path.name.endswith(".zst") == target.compressed
    kept = [p for p in layout.quarantine.iterdir() if not p.name.endswith(".reason")]
    assert len(kept) == 1 and kept[0].read_bytes() in (rotted, compression.compress(rotted))
    assert scrub(store).problems == []


def test_without_a_good_source_the_damaged_generation_goes_to_quarantine_never_deleted(layout: Layout) -> None:
    store, sid, _ = history(layout, checkpoints=2)
    (gen,) = generations(store, sid)
    # The journal that would rebuild it is gone, and it is the oldest copy: nothing reaches seq 3.
    for path in layout.journal.iterdir():
        path.unlink()
    damaged = gen.path.read_bytes().replace(b"Set up", b"Set uq")
    gen.path.write_bytes(damaged)
    report = scrub(store, repair=True)
    (problem,) = report.problems
    assert not problem.repaired and "quarantine" in problem.action
    assert not gen.path.exists()
    kept = [p for p in layout.quarantine.iterdir() if p.name.endswith(gen.name)]
    assert [p.read_bytes() for p in kept] == [damaged]
    assert (kept[0].parent / (kept[0].name + ".reason")).exists()


def test_a_frame_that_does_not_decompress_is_rebuilt_from_what_decompresses_before_the_damage(layout: Layout) -> None:
    store, sid, states = history(layout)
    middle = generations(store, sid)[1]
    middle.path.write_bytes(middle.path.read_bytes()[:-1])  # the frame's checksum cut: nothing says its seq
    (problem,) = scrub(store, repair=True).problems
    assert problem.repaired, problem.action
    decoded = SessionStore(layout).read(middle.path, sid)
    assert decoded.usable and encoded(decoded.session) == encoded(states[6])  # type: ignore[arg-type]


def test_an_emptied_generation_is_rebuilt_only_when_its_sequence_is_known(layout: Layout) -> None:
    """Zero bytes match every state between its neighbours: fsck cannot tell which it held and
    moves it to quarantine; the daemon, which knows the sequence of what it wrote, rebuilds it."""
    store, sid, states = history(layout)
    middle = generations(store, sid)[1]
    middle.path.write_bytes(b"")
    (problem,) = scrub(store).problems
    scrubbing.repair(SessionStore(layout), problem)
    assert not problem.repaired and "more than one state" in problem.action
    kept = next(p for p in layout.quarantine.iterdir() if p.name.endswith(middle.name))
    os.replace(kept, middle.path)
    (problem,) = scrub(store).problems
    scrubbing.repair(SessionStore(layout), problem, known_seq=lambda path: 6)
    assert problem.repaired, problem.action
    decoded = SessionStore(layout).read(middle.path, sid)
    assert decoded.usable and encoded(decoded.session) == encoded(states[6])  # type: ignore[arg-type]


def test_check_in_forked_children_gives_what_one_process_gives(layout: Layout) -> None:
    stores = [history(layout, checkpoints=3) for _ in range(80)]
    victim = generations(stores[7][0], stores[7][1])[0]
    victim.path.write_bytes(victim.path.read_bytes()[:50])
    items = scrubbing.listing(stores[0][0].ops, layout)
    alone = scrubbing.check(layout, items)
    forked = scrubbing.check_parallel(layout, items, processes=2)
    assert (forked.files, forked.bytes) == (alone.files, alone.bytes)
    assert [p.name for p in forked.problems] == [p.name for p in alone.problems] == [victim.name]


def test_the_last_scrub_is_kept_in_the_data_root(layout: Layout) -> None:
    store, _, _ = history(layout)
    assert scrubbing.load_last(store.ops, layout) is None
    report = scrub(store)
    scrubbing.save_last(store.ops, layout, scrubbing.summary(report))
    last = scrubbing.load_last(store.ops, layout)
    assert last is not None and (last.files, last.problems) == (report.files, 0)
