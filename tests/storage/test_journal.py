"""The journal on disk: framing, torn tails, damage in the middle, and replay on top of snapshots."""

from __future__ import annotations

import struct
import uuid
import zlib
from pathlib import Path

from docpilotd.domain import changes
from docpilotd.domain.model import Annotation, SessionMetadata
from docpilotd.domain.timestamps import format_ns
from docpilotd.paths import Layout
from docpilotd.storage import journal, snapshot
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore

BASE = 1_754_038_800 * 1_000_000_000
SID = "0c9a7f3e-7d0f-4a53-9a5e-6f1a2b3c4d5e"


def _create() -> changes.Create:
    meta = SessionMetadata("/w", "zsh", "linux", "host", "ada", [], None, {})
    return changes.Create(session_id=SID, description="journal test", at=format_ns(BASE), event_id=str(uuid.uuid4()), metadata=meta)


def _note(i: int) -> changes.Annotate:
    note = Annotation(id=str(uuid.uuid4()), text=f"note {i}", timestamp=format_ns(BASE + i * 1_000_000), annotation_type="Note")
    return changes.Annotate(annotation=note, event_id=str(uuid.uuid4()))


def _records(count: int) -> list[bytes]:
    """Framed records 1..count: a Create, then notes."""
    return [journal.frame(1, _create())] + [journal.frame(i, _note(i)) for i in range(2, count + 1)]


def _write_segment(layout: Layout, first: int, frames: list[bytes]) -> Path:
    path = layout.journal / journal.segment_name(SID, first)
    path.write_bytes(b"".join(frames))
    return path


def _notes(recovered: dict) -> list[str]:  # type: ignore[type-arg]
    return [a.text for a in recovered[SID].session.annotations] if SID in recovered else []


def test_a_session_that_exists_only_in_the_journal_is_recovered(layout: Layout) -> None:
    _write_segment(layout, 1, _records(6))
    report, recovered = recover_all(SessionStore(layout), repair=False)
    assert _notes(recovered) == [f"note {i}" for i in range(2, 7)]
    (session_report,) = report.sessions
    assert session_report.replayed == 6 and session_report.source == "journal"
    assert report.healthy


def test_torn_tail_at_every_offset_is_cut_after_a_copy_goes_to_quarantine(layout: Layout, tmp_path: Path) -> None:
    frames = _records(5)
    whole = b"".join(frames)
    last_start = len(whole) - len(frames[-1])
    for cut in range(last_start + 1, len(whole)):
        for leftover in (*layout.journal.iterdir(), *layout.quarantine.iterdir()):
            leftover.unlink()
        segment = _write_segment(layout, 1, [])
        segment.write_bytes(whole[:cut])
        check, recovered = recover_all(SessionStore(layout), repair=False)
        assert _notes(recovered) == ["note 2", "note 3", "note 4"], cut
        assert any("torn last record" in line for line in check.sessions[0].problems), cut
        assert segment.read_bytes() == whole[:cut], "check mode must not change anything"
        _repair, _ = recover_all(SessionStore(layout), repair=True)
        assert segment.read_bytes() == whole[:last_start], cut
        kept = [q for q in layout.quarantine.iterdir() if not q.name.endswith(".reason")]
        assert [k.read_bytes() for k in kept] == [whole[last_start:cut]], cut
        again, _ = recover_all(SessionStore(layout), repair=False)
        assert again.healthy, cut


def test_damage_in_the_middle_is_reported_with_its_window_and_later_records_still_apply(layout: Layout) -> None:
    frames = _records(8)
    damaged = bytearray(frames[4])  # record 5
    damaged[-3] ^= 0xFF
    frames[4] = bytes(damaged)
    _write_segment(layout, 1, frames)
    report, recovered = recover_all(SessionStore(layout), repair=True)
    (s,) = report.sessions
    assert _notes(recovered) == ["note 2", "note 3", "note 4", "note 6", "note 7", "note 8"]
    assert s.lost_window is not None and "5..5" in s.lost_window
    assert any("damaged record in the middle" in line for line in s.problems)
    assert any(q.name.endswith(".wal") for q in layout.quarantine.iterdir()), "the damaged segment is kept"


def test_replay_starts_after_the_snapshot_and_never_applies_a_record_twice(layout: Layout) -> None:
    store = SessionStore(layout)
    frames = _records(6)
    # A snapshot containing records 1..4, and a journal that still holds all of 1..6 (an old
    # segment a crash brought back, or one not trimmed yet).
    session = changes.create(_create())
    for i in range(2, 5):
        changes.apply(session, _note(i))
    store.save(session, seq=4)
    _write_segment(layout, 1, frames)
    report, recovered = recover_all(store, repair=False)
    notes = _notes(recovered)
    assert notes[:3] == ["note 2", "note 3", "note 4"]
    assert notes[3:] == ["note 5", "note 6"]
    assert report.sessions[0].replayed == 2


def test_records_out_of_order_across_segments_apply_in_sequence_order(layout: Layout) -> None:
    frames = _records(6)
    _write_segment(layout, 1, frames[:3])
    _write_segment(layout, 4, frames[3:])
    _, recovered = recover_all(SessionStore(layout), repair=False)
    assert _notes(recovered) == [f"note {i}" for i in range(2, 7)]


def test_junk_between_records_and_garbage_segments_never_crash_the_reader(layout: Layout) -> None:
    frames = _records(4)
    _write_segment(layout, 1, [frames[0], b"\x00" * 64, frames[1], b"DPJ1garbage", frames[2], frames[3]])
    (layout.journal / journal.segment_name(SID, 9)).write_bytes(b"DPJ1" + b"\xff" * 100)
    report, recovered = recover_all(SessionStore(layout), repair=True)
    assert _notes(recovered) == ["note 2", "note 3", "note 4"]
    assert report.sessions[0].problems


def test_snapshot_records_the_sequence_it_contains(layout: Layout) -> None:
    session = changes.create(_create())
    data = snapshot.encode(session, 41)
    assert snapshot.decode(data).seq == 41


def _raw_frame(seq: int, payload: bytes) -> bytes:
    """A well-framed record (right length and CRC) of any payload."""
    head = struct.pack("<IQ", len(payload), seq)
    return journal.HEADER.pack(journal.MAGIC, len(payload), seq, zlib.crc32(payload, zlib.crc32(head))) + payload


def test_edits_and_deletes_of_annotations_are_journaled_and_replayed(layout: Layout) -> None:
    notes = [_note(2), _note(3)]
    edit = changes.EditAnnotation(annotation_id=notes[0].annotation.id, text="note 2, edited", annotation_type="Warning",
                                  at=format_ns(BASE + 10_000_000), event_id=str(uuid.uuid4()))
    delete = changes.DeleteAnnotation(annotation_id=notes[1].annotation.id, at=format_ns(BASE + 11_000_000),
                                      event_id=str(uuid.uuid4()))
    frames = [journal.frame(1, _create()), journal.frame(2, notes[0]), journal.frame(3, notes[1]),
              journal.frame(4, edit), journal.frame(5, delete)]
    path = _write_segment(layout, 1, frames)
    records, damage = journal.scan_segment(path.read_bytes(), path)
    assert damage == [] and [type(r.change) for r in records][-2:] == [changes.EditAnnotation, changes.DeleteAnnotation]
    for repair in (False, True):  # fsck, then start-up
        report, recovered = recover_all(SessionStore(layout), repair=repair)
        (s,) = report.sessions
        assert s.problems == [] and s.replayed == 5 and s.annotations == 1
        assert [(a.text, a.annotation_type) for a in recovered[SID].session.annotations] == [("note 2, edited", "Warning")]


def test_a_record_of_a_kind_this_daemon_does_not_know_is_reported_and_later_records_apply(layout: Layout) -> None:
    """What an older daemon meets in a newer daemon's journal (an annotation edit, say): a record
    whose CRC is right but whose change does not decode is reported, never replayed, never fatal."""
    frames = _records(5)
    newer = b'{"type":"annotation_rename","annotation_id":"x","at":"2025-08-01T09:00:00Z","event_id":"y"}'
    frames[2] = _raw_frame(3, newer)
    path = _write_segment(layout, 1, frames)
    records, damage = journal.scan_segment(path.read_bytes(), path)
    assert [r.seq for r in records] == [1, 2, 4, 5]
    (bad,) = damage
    assert not bad.torn_tail and bad.detail.startswith("undecodable")
    report, recovered = recover_all(SessionStore(layout), repair=False)
    (s,) = report.sessions
    assert _notes(recovered) == ["note 2", "note 4", "note 5"]
    assert s.problems and s.lost_window is not None and "3..3" in s.lost_window
