"""Replay is idempotent by identity: a record the snapshot already holds is not applied twice.

The pure rule (storage.replay) for each kind of change, for mixed sequences, and for a snapshot
DocPilot rewrote (no `docpilotd` field, so its journal sequence is unknown: 0) that holds some of
the journal's records; then the same through recovery, on disk.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from docpilotd.domain import changes, validate
from docpilotd.domain.model import Annotation, CommandEntry, Session, SessionMetadata
from docpilotd.paths import Layout
from docpilotd.storage import journal, snapshot
from docpilotd.storage import replay as replay_mod
from docpilotd.storage.journal import Record
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.replay import Replayed, replay
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, new_id

SID = "3f1c2a9e-5b7d-4e21-8c3a-9d0e1f2a3b4c"
INSTANCE = "1754038800000000-4242"

_wire = msgspec.json.Encoder()
_changes = msgspec.json.Decoder(list[changes.Change])


# -- building journals ------------------------------------------------------------------------------


def _create(clock: Clock, session_id: str = SID) -> changes.Create:
    meta = SessionMetadata("/srv", "zsh", "linux", "host", "ada", [], None, {})
    return changes.Create(session_id=session_id, description="replay by identity", at=clock(), event_id=new_id(), metadata=meta)


def _command(clock: Clock, text: str, counter: int | None = None, exit_code: int | None = 0) -> changes.RecordCommand:
    entry = CommandEntry(
        command=text, timestamp=clock(), exit_code=exit_code, working_directory="/srv", shell="zsh",
        output=None, error=None, capture_id=f"{INSTANCE}:{counter}" if counter is not None else None,
    )
    return changes.RecordCommand(entry=entry, event_id=new_id())


def _note(clock: Clock, text: str, kind: str = "Note") -> changes.Annotate:
    note = Annotation(id=new_id(), text=text, timestamp=clock(), annotation_type=kind)  # type: ignore[arg-type]
    return changes.Annotate(annotation=note, event_id=new_id())


def _pause(clock: Clock) -> changes.Pause:
    return changes.Pause(at=clock(), event_id=new_id())


def _resume(clock: Clock) -> changes.Resume:
    return changes.Resume(at=clock(), event_id=new_id())


def _stop(clock: Clock) -> changes.Stop:
    return changes.Stop(at=clock(), event_id=new_id())


def _fail(clock: Clock) -> changes.Fail:
    return changes.Fail(at=clock(), event_id=new_id(), message="disk full")


class Journal:
    """Changes 1..n as the journal stores them: each read gives fresh objects, as decoding a
    segment does (apply keeps a Replace's session and the items of a change)."""

    def __init__(self, recorded: list[changes.Change]) -> None:
        self.wire = _wire.encode(recorded)
        self.count = len(recorded)

    def changes(self) -> list[changes.Change]:
        return _changes.decode(self.wire)

    def records(self, first: int = 1, last: int | None = None) -> list[Record]:
        found = self.changes()
        return [
            Record(seq=seq, change=found[seq - 1], segment=Path("journal.wal"), offset=0)
            for seq in range(first, (last if last is not None else self.count) + 1)
        ]

    def state(self, upto: int) -> Session:
        """The session after records 1..upto, through the state machine."""
        session: Session | None = None
        for change in self.changes()[:upto]:
            if session is None:
                assert isinstance(change, (changes.Create, changes.Replace))
                session = changes.create(change) if isinstance(change, changes.Create) else change.session
            else:
                session = changes.apply(session, change)
        assert session is not None
        return session


def foreign(session: Session) -> Session:
    """The session as recovery reads a foreign rewrite of it: decoded from plain DocPilot JSON,
    without the `docpilotd` field (so its sequence is 0)."""
    decoded = snapshot.decode(snapshot.encode_plain(session))
    assert decoded.session is not None and decoded.problem is None and decoded.seq == 0
    return decoded.session


def docpilot_rewrite(session: Session) -> Session:
    """As DocPilot saves it: its CommandEntry has no capture_id, duration_ms or pipestatus."""
    plain = msgspec.structs.replace(
        session,
        commands=[msgspec.structs.replace(c, capture_id=None, duration_ms=None, pipestatus=None) for c in session.commands],
    )
    return foreign(plain)


def body(session: Session | None) -> bytes:
    assert session is not None
    return snapshot.encode_body(snapshot.plain_session(session))


def clean(result: Replayed) -> None:
    """No gap, nothing refused, and a session that validates (no duplicate id)."""
    assert result.gaps == [] and result.refused == [], (result.gaps, result.refused)
    assert result.session is not None and validate.problems(result.session) == []


def mixed() -> Journal:
    clock = Clock()
    return Journal([
        _create(clock),                                   # 1
        _note(clock, "before the checkpoint"),            # 2
        _command(clock, "make build", 1),                 # 3
        _command(clock, "make test", 2, exit_code=1),     # 4
        _pause(clock),                                    # 5
        _note(clock, "while paused", "Explanation"),      # 6
        _resume(clock),                                   # 7
        _command(clock, "make test", 3),                  # 8
        _command(clock, "echo no capture id"),            # 9
        _note(clock, "installed", "Milestone"),           # 10
        _stop(clock),                                     # 11
        _fail(clock),                                     # 12
    ])


# -- the sequence rule is unchanged ---------------------------------------------------------------


def test_our_snapshot_replays_after_its_sequence_as_before() -> None:
    j = mixed()
    snap = j.state(4)
    result = replay(snap, 4, j.records())  # the journal still holds 1..4 too (fsck reads all)
    clean(result)
    assert result.applied == 8 and result.already_present == 0 and result.last_seq == 12
    assert body(result.session) == body(j.state(12))


def test_a_journal_only_session_is_built_from_its_create() -> None:
    j = mixed()
    result = replay(None, 0, j.records())
    clean(result)
    assert result.applied == 12 and result.already_present == 0
    assert body(result.session) == body(j.state(12))


def test_a_gap_after_what_the_snapshot_holds_is_still_a_lost_window() -> None:
    j = mixed()
    records = [r for r in j.records() if r.seq not in (7, 8)]
    result = replay(j.state(4), 4, records)
    assert result.gaps == [(7, 8)] and result.already_present == 0
    assert result.refused == ["record 9: cannot record a command: session " + SID + " is Paused"]


# -- each kind of change, held by identity --------------------------------------------------------


@pytest.mark.parametrize("seq", range(1, 13), ids=lambda s: f"record{s}")
def test_each_kind_of_change_the_snapshot_holds_is_skipped(seq: int) -> None:
    """The snapshot holds everything; one record of each kind is in the journal after sequence 0."""
    j = mixed()
    snap = foreign(j.state(12))
    before = body(snap)
    (record,) = j.records(seq, seq)
    result = replay(snap, 0, [record])
    assert result.applied == 0 and result.already_present == 1 and result.last_seq == seq
    assert result.refused == [] and result.gaps == [], "held: neither refused nor a gap"
    assert body(result.session) == before


def test_a_command_held_by_its_capture_id_alone_is_skipped() -> None:
    """The same spooled line journaled under another event id (its capture id names it)."""
    clock = Clock()
    j = Journal([_create(clock), _command(clock, "make", 7)])
    snap = foreign(j.state(2))
    again = _command(clock, "make", 7)
    result = replay(snap, 0, [*j.records(), Record(3, again, Path("j"), 0)])
    clean(result)
    assert result.applied == 0 and result.already_present == 3
    assert [c.command for c in result.session.commands] == ["make"]  # type: ignore[union-attr]


def test_a_command_without_capture_id_is_not_matched_by_other_commands_without_one() -> None:
    clock = Clock()
    j = Journal([_create(clock), _command(clock, "ls"), _command(clock, "ls")])
    result = replay(foreign(j.state(2)), 0, j.records())
    clean(result)
    assert result.applied == 1 and result.already_present == 2
    assert [c.command for c in result.session.commands] == ["ls", "ls"]  # type: ignore[union-attr]


def test_an_annotation_held_by_its_id_or_by_its_event_alone_is_skipped() -> None:
    clock = Clock()
    j = Journal([_create(clock), _note(clock, "one")])
    snap = foreign(j.state(2))
    held_note = snap.annotations[0]
    same_note = changes.Annotate(annotation=held_note, event_id=new_id())  # another event id
    same_event = changes.Annotate(annotation=msgspec.structs.replace(held_note, id=new_id()), event_id=snap.events[1].id)
    result = replay(snap, 2, [Record(3, same_note, Path("j"), 0), Record(4, same_event, Path("j"), 0)])
    clean(result)
    assert result.applied == 0 and result.already_present == 2 and result.last_seq == 4
    assert len(result.session.annotations) == 1  # type: ignore[union-attr]


def test_a_create_for_the_session_that_exists_is_held_not_refused() -> None:
    j = mixed()
    result = replay(foreign(j.state(1)), 0, j.records(1, 1))
    clean(result)
    assert result.already_present == 1 and result.applied == 0


def test_a_create_for_another_session_is_still_refused() -> None:
    clock = Clock()
    j = Journal([_create(clock)])
    other = Record(2, _create(clock, session_id=new_id()), Path("j"), 0)
    result = replay(j.state(1), 1, [other])
    assert result.refused and "already exists" in result.refused[0] and result.already_present == 0


# -- Replace: held only when it changes nothing ---------------------------------------------------


def _restore_journal() -> tuple[Journal, Session]:
    """1 Create, 2 note A, 3 note B, 4 Replace (a restore of the state after 2), 5 note C."""
    clock = Clock()
    first = Journal([_create(clock), _note(clock, "A")])
    backup = first.state(2)
    j = Journal([*first.changes(), _note(clock, "B"), changes.Replace(session=backup, reason="restore"), _note(clock, "C")])
    return j, backup


def test_a_restore_not_yet_in_our_snapshot_applies_although_its_ids_are_all_there() -> None:
    """A crash between a restore's journal record and its checkpoint: the snapshot descends from
    the backup (it holds every id of it), and the restore must still apply."""
    j, _ = _restore_journal()
    result = replay(j.state(3), 3, j.records())
    clean(result)
    assert result.applied == 2 and result.already_present == 0
    assert [a.text for a in result.session.annotations] == ["A", "C"]  # type: ignore[union-attr]


def test_a_redaction_not_yet_in_the_snapshot_applies_although_it_holds_the_same_ids() -> None:
    clock = Clock()
    first = Journal([_create(clock), _note(clock, "password=hunter2")])
    dirty = first.state(2)
    redacted = msgspec.structs.replace(
        dirty, annotations=[msgspec.structs.replace(dirty.annotations[0], text="password=[REDACTED]")]
    )
    j = Journal([*first.changes(), changes.Replace(session=redacted, reason="redact")])
    for snap, base_seq in ((j.state(2), 2), (foreign(j.state(2)), 0)):
        result = replay(snap, base_seq, j.records())
        clean(result)
        assert [a.text for a in result.session.annotations] == ["password=[REDACTED]"]  # type: ignore[union-attr]


def test_a_replace_equal_to_the_session_is_held() -> None:
    j, _ = _restore_journal()
    result = replay(foreign(j.state(4)), 0, j.records(1, 4))
    clean(result)
    assert result.applied == 0 and result.already_present == 4
    assert body(result.session) == body(j.state(4))


def test_a_foreign_snapshot_after_a_restore_gets_neither_the_restore_undone_nor_anything_twice() -> None:
    """Record 3 (note B) is in no later state: the restore erased it. The snapshot holds record 5,
    so it holds everything before it, the restore included; B does not come back."""
    j, _ = _restore_journal()
    result = replay(docpilot_rewrite(j.state(5)), 0, j.records())
    clean(result)
    assert result.applied == 0 and result.already_present == 5
    assert [a.text for a in result.session.annotations] == ["A", "C"]  # type: ignore[union-attr]


@pytest.mark.parametrize(("held", "present"), [(1, 1), (2, 4), (3, 3)])
def test_a_foreign_snapshot_from_before_a_restore_gets_the_restore(held: int, present: int) -> None:
    """Holding records 1..2, the snapshot equals what the restore restores: B and the restore
    change nothing, so they count as held too."""
    j, _ = _restore_journal()
    result = replay(docpilot_rewrite(j.state(held)), 0, j.records())
    clean(result)
    assert result.already_present == present and result.applied == 5 - present
    assert [a.text for a in result.session.annotations] == ["A", "C"]  # type: ignore[union-attr]


# -- mixed sequences: a foreign snapshot holding some of the records -----------------------------


@pytest.mark.parametrize("held", range(1, 13), ids=lambda k: f"holds1to{k}")
@pytest.mark.parametrize("rewrite", [foreign, docpilot_rewrite], ids=["plain", "docpilot"])
def test_a_foreign_snapshot_holding_a_prefix_gets_exactly_the_rest(held: int, rewrite: object) -> None:
    j = mixed()
    snap = rewrite(j.state(held))  # type: ignore[operator]
    result = replay(snap, 0, j.records())
    clean(result)
    assert result.already_present == held and result.applied == 12 - held and result.last_seq == 12
    expected = j.state(12)
    got = result.session
    assert got is not None
    assert [e.id for e in got.events] == [e.id for e in expected.events]
    assert [a.id for a in got.annotations] == [a.id for a in expected.annotations]
    assert [c.command for c in got.commands] == [c.command for c in expected.commands]
    assert got.stats == expected.stats and got.state == expected.state


@pytest.mark.parametrize("first", [2, 3, 5])
def test_a_trimmed_journal_under_a_foreign_snapshot_is_no_lost_window(first: int) -> None:
    """Checkpoints trimmed records 1..first-1; the snapshot holds up to 6: nothing is missing."""
    j = mixed()
    result = replay(foreign(j.state(6)), 0, j.records(first))
    clean(result)
    assert result.already_present == 6 - first + 1 and result.applied == 6
    assert body(result.session) == body(j.state(12))


def test_a_window_missing_after_what_a_foreign_snapshot_holds_is_reported() -> None:
    j = mixed()
    records = [r for r in j.records() if r.seq not in (8, 9)]
    result = replay(foreign(j.state(6)), 0, records)
    assert result.gaps == [(8, 9)] and result.already_present == 6 and result.refused == []
    assert result.session is not None and validate.problems(result.session) == []


def test_a_window_missing_inside_what_a_foreign_snapshot_holds_costs_nothing() -> None:
    j = mixed()
    records = [r for r in j.records() if r.seq not in (3, 4)]
    result = replay(foreign(j.state(6)), 0, records)
    clean(result)
    assert result.already_present == 4 and result.applied == 6
    assert body(result.session) == body(j.state(12))


def test_a_change_journaled_twice_after_the_snapshot_applies_once() -> None:
    """Whatever brought it there, a record repeating an applied change's ids is not applied."""
    clock = Clock()
    note = _note(clock, "once")
    command = _command(clock, "make", 9)
    j = Journal([_create(clock), note, command, note, command])
    result = replay(j.state(1), 1, j.records())
    clean(result)
    assert result.applied == 2 and result.already_present == 2 and result.last_seq == 5
    assert [a.text for a in result.session.annotations] == ["once"]  # type: ignore[union-attr]


def test_the_sequence_goes_on_after_records_that_were_all_held() -> None:
    j = mixed()
    result = replay(foreign(j.state(12)), 0, j.records())
    clean(result)
    assert result.applied == 0 and result.already_present == 12 and result.last_seq == 12


def test_ids_are_gathered_once_per_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    original = replay_mod._Held.__init__

    def counting(self: replay_mod._Held, session: Session) -> None:
        built.append(len(session.events))
        original(self, session)

    monkeypatch.setattr(replay_mod._Held, "__init__", counting)
    j = mixed()
    replay(foreign(j.state(3)), 0, j.records())
    assert len(built) == 1
    built.clear()
    replay(j.state(12), 12, j.records())
    assert built == [], "nothing after the snapshot: no ids gathered"
    built.clear()
    replay(None, 0, j.records())
    assert len(built) == 1, "after the Create, once"


# -- through recovery, on disk --------------------------------------------------------------------


def _write_journal(layout: Layout, j: Journal, first: int = 1) -> None:
    frames = [journal.frame(r.seq, r.change) for r in j.records(first)]
    (layout.journal / journal.segment_name(SID, first)).write_bytes(b"".join(frames))


@pytest.mark.parametrize("check_backups", [False, True], ids=["startup", "fsck"])
def test_recovery_from_a_docpilot_rewrite_is_healthy_and_replays_nothing_twice(layout: Layout, check_backups: bool) -> None:
    j = mixed()
    store = SessionStore(layout)
    store.save(j.state(4), 4)  # our checkpoint, which becomes a backup
    store.save(j.state(9), 9)
    _write_journal(layout, j)
    # DocPilot rewrites the file with everything up to record 10, in its own format.
    layout.session_file(SID).write_bytes(snapshot.encode_plain(docpilot_rewrite(j.state(10))))
    main_before = layout.session_file(SID).read_bytes()

    report, recovered = recover_all(store, repair=False, check_backups=check_backups)
    (s,) = report.sessions
    assert report.healthy and s.problems == [] and s.lost_window is None, s
    assert s.status == "ok" and s.source == f"sessions/{SID}.json" and s.seq == 12
    assert s.replayed == 2 and s.annotations == 3 and s.commands == 4
    session = recovered[SID].session
    assert validate.problems(session) == []
    assert [e.id for e in session.events] == [e.id for e in j.state(12).events]
    assert recovered[SID].seq == 12

    repaired, _ = recover_all(store, repair=True, check_backups=check_backups)
    assert repaired.sessions[0].status == "ok" and repaired.sessions[0].problems == []
    assert layout.session_file(SID).read_bytes() == main_before, "a healthy main file is never rewritten"


# -- edits and deletes of annotations -------------------------------------------------------------


def _edited() -> Journal:
    """1 Create, 2 note "typo", 3 warning "regret", 4 edit of 2 (new text and type), 5 delete of 3,
    6 note "after"."""
    clock = Clock()
    typo, regret = _note(clock, "a tpyo"), _note(clock, "I regret this", "Warning")
    return Journal([
        _create(clock), typo, regret,
        changes.EditAnnotation(annotation_id=typo.annotation.id, text="a typo", annotation_type="Milestone",
                               at=clock(), event_id=new_id()),
        changes.DeleteAnnotation(annotation_id=regret.annotation.id, at=clock(), event_id=new_id()),
        _note(clock, "after"),
    ])


def _notes(session: Session | None) -> list[tuple[str, str]]:
    assert session is not None
    return [(a.text, a.annotation_type) for a in session.annotations]


def test_edits_and_deletes_replay_from_any_of_our_snapshots() -> None:
    j = _edited()
    for base_seq in range(0, 7):
        result = replay(j.state(base_seq) if base_seq else None, base_seq, j.records())
        clean(result)
        assert result.applied == 6 - base_seq and result.already_present == 0
        assert _notes(result.session) == [("a typo", "Milestone"), ("after", "Note")]
        assert body(result.session) == body(j.state(6))


@pytest.mark.parametrize("held", range(1, 7), ids=lambda k: f"holds1to{k}")
@pytest.mark.parametrize("rewrite", [foreign, docpilot_rewrite], ids=["plain", "docpilot"])
def test_a_foreign_snapshot_gets_an_edit_or_a_delete_once(held: int, rewrite: object) -> None:
    """Held by their event ids: a foreign snapshot after the delete still holds the deleted note's
    Annotate (by its event), so the note does not come back; an edit is not applied twice."""
    j = _edited()
    result = replay(rewrite(j.state(held)), 0, j.records())  # type: ignore[operator]
    clean(result)
    assert result.already_present == held and result.applied == 6 - held
    assert _notes(result.session) == [("a typo", "Milestone"), ("after", "Note")]
    assert [e.id for e in result.session.events] == [e.id for e in j.state(6).events]  # type: ignore[union-attr]


def test_an_edit_or_delete_of_an_annotation_the_session_lacks_is_refused_not_forced() -> None:
    j = _edited()
    records = [r for r in j.records() if r.seq not in (2, 3)]  # the notes never reached this copy
    result = replay(j.state(1), 1, records)
    assert result.gaps == [(2, 3)]
    assert [line.split(":")[0] for line in result.refused] == ["record 4", "record 5"]
    assert "has no annotation" in result.refused[0] and result.applied == 1
    assert result.session is not None and validate.problems(result.session) == []


@pytest.mark.parametrize("check_backups", [False, True], ids=["startup", "fsck"])
def test_recovery_and_fsck_replay_edits_and_deletes_from_the_journal(layout: Layout, check_backups: bool) -> None:
    """The journal's records of the new kinds decode (the Change union) and replay, on disk."""
    j = _edited()
    store = SessionStore(layout)
    store.save(j.state(3), 3)
    _write_journal(layout, j)
    report, recovered = recover_all(store, repair=False, check_backups=check_backups)
    (s,) = report.sessions
    assert s.problems == [] and s.replayed == 3 and s.seq == 6 and s.annotations == 2, s
    assert _notes(recovered[SID].session) == [("a typo", "Milestone"), ("after", "Note")]
    assert validate.problems(recovered[SID].session) == []
