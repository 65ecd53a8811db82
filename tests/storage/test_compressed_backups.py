"""Compressed backup generations: made at rotation, read everywhere, damaged in every way.

A store with `compress_backups` (the daemon's) keeps the newest generation as plain JSON and the
older ones as `{name}.zst`. These tests check the format against the plain bytes, a crash at every
file-system call of a save that compresses, the damage catalogue of snapshots applied to
compressed files, and every reader: listing, recovery, fsck, restore's lookup, scrub, purge.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest
import zstandard

from docpilotd.domain import changes
from docpilotd.domain.model import Session
from docpilotd.domain.redaction import Redactor, literal_rule
from docpilotd.paths import Layout, layout_for
from docpilotd.storage import backups, compression, maintenance, scrub, snapshot
from docpilotd.storage.atomic import temp_path_for
from docpilotd.storage.fsops import OsFileOps
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, build_session, command_change, encoded
from tests.storage.faults import FAULTABLE, FaultyOps


def grow(session: Session, clock: Clock, text: str = "step") -> Session:
    return changes.apply(session, command_change(f"{text} {len(session.commands)}", clock()))


def saved(layout: Layout, saves: int = 4, ops: OsFileOps | None = None, kept: int = 5) -> tuple[SessionStore, list[bytes]]:
    """A compressing store after `saves` saves of one growing session; the bytes of each file
    written, oldest first (the last one is sessions/{id}.json)."""
    store = SessionStore(layout, ops=ops, backups_kept=kept, compress_backups=True)
    clock = Clock()
    session = build_session(commands=2, clock=clock)
    written = []
    for seq in range(1, saves + 1):
        session = grow(session, clock)
        result = store.save(session, seq)
        written.append(result.path.read_bytes())
    return store, written


def only_session(layout: Layout) -> str:
    (name,) = os.listdir(layout.sessions)
    return name[: -len(".json")]


def test_older_generations_are_compressed_and_the_newest_stays_plain(layout: Layout) -> None:
    store, written = saved(layout, saves=5)
    sid = only_session(layout)
    generations = backups.for_session(store.ops, layout.backups, sid)
    assert [g.compressed for g in generations] == [True, True, True, False]
    assert sorted(os.listdir(layout.backups)) == sorted(g.name for g in generations)  # no plain copy left over
    # Each compressed file is one zstd frame of exactly the file it replaced, with its size and
    # content checksum, written 0600.
    for generation, original in zip(generations[:-1], written[:-2]):
        data = generation.path.read_bytes()
        params = zstandard.get_frame_parameters(data)
        assert params.has_checksum and params.content_size == len(original)
        assert zstandard.ZstdDecompressor().decompress(data) == original
        assert generation.path.stat().st_mode & 0o777 == 0o600
    newest = generations[-1]
    assert newest.name == backups.backup_name(sid, newest.ns) and newest.path.read_bytes() == written[-2]
    # Every generation reads back, through the store, as the state it was saved with.
    for generation, original in zip(generations, written[:-1]):
        decoded = store.read(generation.path, sid)
        assert decoded.usable and decoded.integrity == "verified"
        assert snapshot.encode(decoded.session, decoded.seq) == original  # type: ignore[arg-type]
        assert store.read_seq(generation.path) == decoded.seq


def test_the_save_reports_each_compressed_file_with_its_sequence(layout: Layout) -> None:
    store, _ = saved(layout, saves=2)
    sid = only_session(layout)
    session = store.load(sid)
    result = store.save(changes.apply(session, command_change("one more", "2025-08-01T10:00:00.000Z")), 3)
    (compressed,) = [g for g in backups.for_session(store.ops, layout.backups, sid) if g.compressed]
    assert result.compressed == {compressed.path.stat().st_ino: 1}


def test_rotation_removes_compressed_generations_and_keeps_the_count(layout: Layout) -> None:
    store, written = saved(layout, saves=9, kept=3)
    sid = only_session(layout)
    generations = backups.for_session(store.ops, layout.backups, sid)
    assert len(generations) == 3 and [g.compressed for g in generations] == [True, True, False]
    kept = [compression.decompress(g.path.read_bytes())[0] if g.compressed else g.path.read_bytes() for g in generations]
    assert kept == written[-4:-1]


def test_a_store_without_compression_reads_and_rotates_what_one_with_it_wrote(layout: Layout) -> None:
    saved(layout, saves=4)
    sid = only_session(layout)
    plain = SessionStore(layout, backups_kept=3)
    session = plain.load(sid)
    plain.save(grow(session, Clock(10**18)), 5)
    generations = plain.generations(sid)  # the oldest rotated away; nothing compressed by this store
    assert [g.compressed for g in generations] == [True, False, False]
    report, found = recover_all(plain, repair=False, check_backups=True)
    assert report.healthy, report
    assert snapshot.encode(found[sid].session, found[sid].seq) == layout.session_file(sid).read_bytes()


def test_old_plain_generations_and_docpilot_names_are_compressed_at_the_next_save(layout: Layout, example_bytes: bytes) -> None:
    sid = snapshot.decode(example_bytes).session.id  # type: ignore[union-attr]
    docpilot_name = f"{sid}_1722503702.json"
    (layout.backups / docpilot_name).write_bytes(example_bytes)
    layout.session_file(sid).write_bytes(example_bytes)
    store = SessionStore(layout, compress_backups=True)
    session = store.load(sid)
    store.save(changes.apply(session, command_change("later", "2025-08-01T12:00:00.000Z")), 1)
    names = sorted(os.listdir(layout.backups))
    assert docpilot_name + ".zst" in names and docpilot_name not in names
    assert compression.decompress((layout.backups / (docpilot_name + ".zst")).read_bytes())[0] == example_bytes
    newest = backups.for_session(store.ops, layout.backups, sid)[-1]
    assert not newest.compressed and newest.path.read_bytes() == example_bytes  # DocPilot's file, as it was


# -- both forms of one generation (an interrupted compression) ------------------------------------


def test_a_generation_with_both_forms_is_listed_once_as_the_plain_file(layout: Layout) -> None:
    store, written = saved(layout, saves=3)
    sid = only_session(layout)
    first = backups.for_session(store.ops, layout.backups, sid)[0]
    plain_name = first.name[: -len(".zst")]
    (layout.backups / plain_name).write_bytes(written[0])  # as if the unlink never happened
    listed = backups.for_session(store.ops, layout.backups, sid)
    assert [b.name for b in listed] == [plain_name, listed[1].name] and listed[0].twin == first.name
    by_session, ignored = backups.scan(store.ops, layout.backups)
    assert by_session[sid] == listed and ignored == []
    report, _ = recover_all(SessionStore(layout), repair=False, check_backups=True)
    assert report.healthy, report
    info = maintenance.backup_info(SessionStore(layout), sid)
    assert [i.name for i in info] == [b.name for b in reversed(listed)] and all(i.problem is None for i in info)
    # The next save compresses it again: one file per generation from then on.
    compressing = SessionStore(layout, compress_backups=True)
    compressing.save(grow(compressing.load(sid), Clock(10**18)), 4)
    assert plain_name not in os.listdir(layout.backups)
    assert [b.twin for b in backups.for_session(store.ops, layout.backups, sid)] == [None, None, None]


def test_a_damaged_plain_file_falls_back_to_its_compressed_twin(layout: Layout) -> None:
    store, written = saved(layout, saves=3)
    sid = only_session(layout)
    first = backups.for_session(store.ops, layout.backups, sid)[0]
    (layout.backups / first.name[: -len(".zst")]).write_bytes(written[0][:100])  # torn
    layout.session_file(sid).unlink()
    for generation in backups.for_session(store.ops, layout.backups, sid)[1:]:
        generation.path.write_bytes(b"")
    _, found = recover_all(SessionStore(layout), repair=True)
    assert snapshot.encode(found[sid].session, found[sid].seq) == written[0]


def test_compressing_again_never_overwrites_a_good_compressed_copy_with_a_damaged_plain_one(layout: Layout) -> None:
    store, written = saved(layout, saves=3)
    sid = only_session(layout)
    first = backups.for_session(store.ops, layout.backups, sid)[0]
    plain_path = layout.backups / first.name[: -len(".zst")]
    plain_path.write_bytes(written[0].replace(b"step", b"stEp", 1))  # both forms, the plain one rotted
    compressing = SessionStore(layout, compress_backups=True)
    compressing.save(grow(compressing.load(sid), Clock(10**18)), 4)
    assert not plain_path.exists() and compression.decompress(first.path.read_bytes())[0] == written[0]
    assert any(plain_path.name in name for name in os.listdir(layout.quarantine))
    report, _ = recover_all(SessionStore(layout), repair=False, check_backups=True)
    assert report.healthy, report


# -- a crash at every file-system call of a save that compresses -----------------------------------


class Crash(BaseException):
    """The machine stopped: nothing after this call happened."""


class CrashingOps(OsFileOps):
    """The real file system, stopping for good at its `at`-th call of a data-changing method."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.calls = 0

    def _tick(self) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise Crash


for _name in FAULTABLE:
    def _wrapped(self: CrashingOps, *args: object, _name: str = _name) -> object:
        self._tick()
        return getattr(OsFileOps, _name)(self, *args)
    setattr(CrashingOps, _name, _wrapped)


def test_a_crash_at_any_call_of_a_compressing_save_leaves_every_generation_readable(tmp_path: Path) -> None:
    def prepared(name: str) -> tuple[Layout, SessionStore, Session, list[bytes]]:
        layout = layout_for(tmp_path / name)
        layout.ensure()
        store, written = saved(layout, saves=3)
        sid = only_session(layout)
        return layout, store, grow(store.load(sid), Clock(10**18)), written

    layout, store, nxt, _ = prepared("probe")
    probe = CrashingOps(at=0)
    store.ops = probe
    store.save(nxt, 4)
    total = probe.calls
    assert total > 10  # the save, the backup link and the compression of a generation
    for at in range(1, total + 1):
        layout, store, nxt, written = prepared(f"crash-{at}")
        sid = nxt.id
        store.ops = CrashingOps(at)
        with pytest.raises(Crash):
            store.save(nxt, 4)
        states = set(written) | {snapshot.encode(nxt, 4)}
        # Each generation once, in one readable form at least; the plain file when it is there.
        fresh = SessionStore(layout)
        listed = backups.for_session(fresh.ops, layout.backups, sid)
        assert len({b.ns for b in listed}) == len(listed)
        for generation in listed:
            readable = [p for p in generation.paths if fresh.read(p, sid).usable]
            assert readable, (at, generation)
            assert generation.twin is None or not generation.compressed
        # Nothing saved before is lost, and repair leaves a clean root that a compressing store
        # carries on with.
        _, found = recover_all(fresh, repair=True, check_backups=True)
        assert snapshot.encode(found[sid].session, found[sid].seq) in states
        for body in written[:-1]:
            assert any(fresh.read(p, sid).usable and _plain(p) == body for b in backups.for_session(fresh.ops, layout.backups, sid)
                       for p in b.paths), (at, "a generation was lost")
        again, _ = recover_all(SessionStore(layout), repair=True, check_backups=True)
        assert again.healthy, (at, again)
        carry_on = SessionStore(layout, compress_backups=True)
        carry_on.save(grow(carry_on.load(sid), Clock(10**18 + 10**12)), 5)
        final = backups.for_session(carry_on.ops, layout.backups, sid)
        assert [b.compressed for b in final][:-1] == [True] * (len(final) - 1) and not final[-1].compressed


def _plain(path: Path) -> bytes | None:
    data = path.read_bytes()
    return compression.decompress(data)[0] if path.name.endswith(".zst") else data


@pytest.mark.parametrize("method", FAULTABLE)
def test_a_compression_that_fails_keeps_the_plain_generation_and_the_save(layout: Layout, method: str) -> None:
    ops = FaultyOps()
    store, _ = saved(layout, saves=2, ops=ops)
    sid = only_session(layout)
    session = grow(store.load(sid), Clock(10**18))
    # Count the calls of the save itself (no compression: nothing older than the newest yet is
    # plain), then fail each call of the compression that follows.
    before = len(backups.for_session(ops, layout.backups, sid))
    assert before == 1
    ops.arm(method, at=10**9)
    store.save(session, 3)
    calls_with = ops.calls[method]
    for n in range(1, calls_with + 1):
        root = layout_for(layout.root.parent / f"{method}-{n}")
        root.ensure()
        ops = FaultyOps()
        store, _ = saved(root, saves=2, ops=ops)
        session = grow(store.load(sid := only_session(root)), Clock(10**18))
        ops.arm(method, at=n)
        try:
            store.save(session, 3)
        except Exception:
            continue  # a failure of the save itself: test_store covers it
        ops.disarm()
        listed = backups.for_session(ops, root.backups, sid)
        assert len(listed) == 2 and all(store.read(b.path, sid).usable for b in listed)
        assert not [n for n in os.listdir(root.backups) if n.endswith(".tmp")]
        report, _ = recover_all(SessionStore(root), repair=False, check_backups=True)
        assert report.healthy, report
        # The next save compresses what this one could not.
        store.save(grow(store.load(sid), Clock(10**18 + 10**12)), 4)
        assert [b.compressed for b in backups.for_session(ops, root.backups, sid)] == [True, True, False]


# -- the snapshot damage catalogue, applied to compressed generations ------------------------------


def compressed_file(layout: Layout) -> tuple[SessionStore, str, Path, bytes]:
    store, written = saved(layout, saves=3)
    sid = only_session(layout)
    first = backups.for_session(store.ops, layout.backups, sid)[0]
    assert first.compressed
    return store, sid, first.path, written[0]


def lying_size(data: bytes, size: int) -> bytes:
    """`data` (one frame of ours) with the content size its header declares set to `size`."""
    header = bytearray(data)
    descriptor = header[4]
    assert descriptor >> 6 in (1, 2, 3)  # a content size field of 2, 4 or 8 bytes
    at = 5 + (0 if descriptor & 0x20 else 1)  # after the window byte unless single-segment
    width = {1: 2, 2: 4, 3: 8}[descriptor >> 6]
    if width == 2:
        size = max(0, size - 256)
        assert size < 1 << 16
    header[at : at + width] = size.to_bytes(width, "little")
    return bytes(header)


def bomb_without_size(size: int) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=False).compress(b"{" * size)


DAMAGE = {
    "zero bytes": (lambda data: b"", "empty file (zero bytes)"),
    "not zstd at all": (lambda data: b'{"id": "x"}', "not a zstd frame"),
    "all NUL bytes": (lambda data: b"\x00" * 4096, "not a zstd frame"),
    "truncated to half": (lambda data: data[: len(data) // 2], "frame"),
    "last byte missing": (lambda data: data[:-1], "truncated zstd frame"),
    "bytes after the frame": (lambda data: data + b"\n", "bytes after the zstd frame"),
    "two frames": (lambda data: data + data, "bytes after the zstd frame"),
    "bit flip in the content": (lambda data: data[:40] + bytes([data[40] ^ 0x10]) + data[41:], "zstd frame"),
    "checksum flipped": (lambda data: data[:-2] + bytes([data[-2] ^ 1]) + data[-1:], "checksum"),
    "size field lies (smaller)": (lambda data: lying_size(data, 300), "zstd frame"),
    # 4 GB claimed by 100 KB of spaces: refused from the header, nothing decompressed.
    "bomb: declares more than the limit": (
        lambda data: lying_size(compression.compress(b" " * 100_000), 0xFFFF_FFF0), "over the limit"
    ),
    "bomb: declares no size": (lambda data: bomb_without_size(1 << 20), "does not say how large"),
    "no content checksum": (
        lambda data: zstandard.ZstdCompressor(write_checksum=False).compress(compression.decompress(data)[0] or b""),
        "no content checksum",
    ),
    "valid frame of bad JSON": (lambda data: compression.compress(b'{"id": "x", "desc'), "not valid JSON"),
    "valid frame of another session": (
        lambda data: compression.compress(snapshot.encode(build_session(), 3)), "file is named for"
    ),
    "valid frame of a rotted snapshot": (
        lambda data: compression.compress((compression.decompress(data)[0] or b"").replace(b"step 1", b"stEp 1")),
        "checksum mismatch",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_compressed_generation_is_reported_never_used(layout: Layout, case: str) -> None:
    store, sid, path, _ = compressed_file(layout)
    damage, fragment = DAMAGE[case]
    path.write_bytes(damage(path.read_bytes()))
    decoded = store.read(path, sid)  # never raises
    assert not decoded.usable
    problem = decoded.problem or ("checksum mismatch" if decoded.integrity == "mismatch" else "")
    assert fragment in problem, problem
    assert isinstance(store.read_seq(path), int)
    # fsck names it; repair moves it to quarantine and the session is served from its own file.
    report, _ = recover_all(SessionStore(layout), repair=False, check_backups=True)
    (found,) = report.sessions
    assert any(path.name in line for line in found.problems), found.problems
    report, recovered = recover_all(SessionStore(layout), repair=True, check_backups=True)
    assert not path.exists() and any(path.name in q for q in report.sessions[0].quarantined)
    assert encoded(recovered[sid].session) == encoded(store.load(sid))
    again, _ = recover_all(SessionStore(layout), repair=True, check_backups=True)
    assert again.healthy


def test_a_damaged_compressed_generation_is_listed_with_its_problem(layout: Layout) -> None:
    store, sid, path, _ = compressed_file(layout)
    path.write_bytes(path.read_bytes()[:-7])
    info = {i.name: i for i in maintenance.backup_info(store, sid)}
    assert "truncated zstd frame" in (info[path.name].problem or "")
    assert [i.problem for n, i in info.items() if n != path.name] == [None]


def test_truncation_at_every_offset_and_random_flips_never_crash_or_pass(layout: Layout) -> None:
    store, sid, path, original = compressed_file(layout)
    data = path.read_bytes()
    rng = random.Random(5)
    tried: list[bytes] = [data[:cut] for cut in range(len(data))]
    for _ in range(300):
        flipped = bytearray(data)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        tried.append(bytes(flipped))
    for damaged in tried:
        path.write_bytes(damaged)
        decoded = store.read(path, sid)
        if decoded.usable:  # only a flip that changes nothing zstd or our checksum can see
            assert snapshot.encode(decoded.session, decoded.seq) == original  # type: ignore[arg-type]


def test_a_bomb_without_a_declared_size_is_refused_before_it_is_decompressed(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = bomb_without_size(64 << 20)
    assert len(frame) < 64 << 10
    _, problem = compression.decompress(frame)
    assert problem is not None and "does not say how large" in problem
    big = compression.compress(b" " * (3 << 20))
    assert compression.decompress(big, limit=1 << 20) == (None, f"would decompress to {3 << 20} bytes, over the limit of {1 << 20}")
    monkeypatch.setattr(compression, "MAX_DECOMPRESSED_BYTES", 1 << 20)
    assert compression.decompress(big)[1] is not None
    assert len(compression.readable_part(frame, limit=1 << 20)) < 16 << 20  # bounded, whatever it holds


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_special_files_named_like_compressed_backups_are_strays(layout: Layout, kind: str) -> None:
    store, sid, path, _ = compressed_file(layout)
    odd = layout.backups / f"{sid}_1.000000001.json.zst"
    if kind == "fifo":
        os.mkfifo(odd)
    elif kind == "directory":
        odd.mkdir()
    else:
        odd.symlink_to(path)
    assert odd.name not in [b.name for b in backups.for_session(store.ops, layout.backups, sid)]
    assert backups.locate(store.ops, layout.backups, odd.name) is None
    report, _ = recover_all(SessionStore(layout), repair=False, check_backups=True)
    assert any(odd.name in line and "not a regular file" in line for line in report.other), report.other
    recover_all(SessionStore(layout), repair=True, check_backups=True)
    assert not os.path.lexists(odd) and path.exists()


def test_a_temp_file_of_an_interrupted_compression_goes_to_quarantine(layout: Layout) -> None:
    path = compressed_file(layout)[2]
    temp = temp_path_for(path)
    temp.write_bytes(path.read_bytes()[:20])
    report, _ = recover_all(SessionStore(layout), repair=False, check_backups=True)
    assert not report.healthy
    recover_all(SessionStore(layout), repair=True, check_backups=True)
    assert not temp.exists() and any(temp.name in n for n in os.listdir(layout.quarantine))
    again, _ = recover_all(SessionStore(layout), repair=True, check_backups=True)
    assert again.healthy


def test_locate_finds_a_generation_by_either_name(layout: Layout) -> None:
    store, sid, path, _ = compressed_file(layout)
    plain_name = path.name[: -len(".zst")]
    for asked in (path.name, plain_name):
        found = backups.locate(store.ops, layout.backups, asked)
        assert found is not None and found.path == path
    newest = backups.for_session(store.ops, layout.backups, sid)[-1]
    assert backups.locate(store.ops, layout.backups, newest.name + ".zst") == newest
    assert backups.locate(store.ops, layout.backups, f"{sid}_9.000000000.json") is None


# -- scrub (redact) and purge ------------------------------------------------------------------------


def test_redacting_a_compressed_generation_keeps_it_compressed_and_valid(layout: Layout) -> None:
    store = SessionStore(layout, compress_backups=True)
    clock = Clock()
    session = build_session(commands=1, clock=clock)
    session = grow(session, clock, text="export TOKEN=hunter2-secret")
    for seq in range(1, 4):
        session = grow(session, clock)
        store.save(session, seq)
    sid = session.id
    generations = backups.for_session(store.ops, layout.backups, sid)
    assert [g.compressed for g in generations] == [True, False]
    # A quarantined copy of a compressed generation holds it too.
    quarantined = layout.quarantine / f"20250801T090000Z_{generations[0].name}"
    quarantined.write_bytes(generations[0].path.read_bytes())
    secret = "hunter2-secret"
    scrubber = scrub.Scrubber(Redactor([literal_rule(secret, "literal")]), secret)
    report = scrub.scrub_files(store, sid, scrubber, skip=[layout.session_file(sid)])
    assert f"backups/{generations[0].name}" in report.rewritten and f"quarantine/{quarantined.name}" in report.rewritten
    assert report.remaining == [f"sessions/{sid}.json"]
    for path in (generations[0].path, quarantined):
        plain, problem = compression.decompress(path.read_bytes())
        assert plain is not None and secret.encode() not in plain, problem
    decoded = store.read(generations[0].path, sid)
    assert decoded.usable and decoded.integrity == "verified" and decoded.seq == 1


def test_a_damaged_compressed_file_holding_the_secret_is_reported_remaining(layout: Layout) -> None:
    store = SessionStore(layout, compress_backups=True)
    clock = Clock()
    session = grow(build_session(commands=1, clock=clock), clock, text="curl -u ada:hunter2-secret")
    for seq in range(1, 4):
        session = grow(session, clock)
        store.save(session, seq)
    first = backups.for_session(store.ops, layout.backups, session.id)[0]
    first.path.write_bytes(first.path.read_bytes()[:-4])  # its content is all there, its checksum is not
    scrubber = scrub.Scrubber(Redactor([literal_rule("hunter2-secret", "literal")]), "hunter2-secret")
    report = scrub.scrub_files(store, session.id, scrubber)
    assert f"backups/{first.name}" in report.remaining


def test_purge_removes_both_forms_and_compression_temp_files(layout: Layout) -> None:
    store, sid, path, original = compressed_file(layout)
    (layout.backups / path.name[: -len(".zst")]).write_bytes(original)
    temp_path_for(path).write_bytes(b"partial")
    assert len(scrub.purge_listing(store, sid)) == len(os.listdir(layout.backups)) + 1
    scrub.purge_files(store, sid)
    assert os.listdir(layout.backups) == [] and os.listdir(layout.sessions) == []


def test_cleanup_and_stats_count_compressed_generations(layout: Layout) -> None:
    store, _, path, _ = compressed_file(layout)
    stats = maintenance.storage_stats(store)
    on_disk = [p for p in layout.backups.iterdir()]
    assert stats.backup_count == len(on_disk) == 2
    assert stats.backup_size == sum(p.stat().st_size for p in on_disk)
    # No session is live: every backup older than the cutoff goes, in either form.
    done = maintenance.cleanup(store, [], max_age_days=0, now_ns=2**62)
    assert path.name in done.removed_backups and os.listdir(layout.backups) == []


def test_frame_layout_assumed_by_the_damage_tests() -> None:
    frame = compression.compress(b"x" * 5000)
    assert compression.decompress(lying_size(frame, 5000))[0] == b"x" * 5000  # the size field is where we write it
    assert struct.unpack("<I", frame[:4])[0] == 0xFD2FB528  # zstd's magic number


def test_only_the_compression_module_imports_zstandard() -> None:
    from tests.test_architecture import _graph

    importers = {m for m, targets in _graph().items() if any(t.split(".")[0] == "zstandard" for t in targets)}
    assert importers == {"docpilotd.storage.compression"}, importers


def test_the_check_before_a_plain_generation_is_removed() -> None:
    data = snapshot.encode(build_session(commands=300), 7)
    frame = compression.compress(data)
    assert compression.holds(frame, data)
    flipped = frame[:60] + bytes([frame[60] ^ 4]) + frame[61:]
    for wrong_frame, wrong_data in [
        (frame[:-1], data), (frame + b"\0", data), (flipped, data), (b"", data), (data, data),
        (frame, data[:-1]), (frame, data[:-1] + b"!"), (compression.compress(data[:-1]), data),
    ]:
        assert not compression.holds(wrong_frame, wrong_data)
