"""Recovery preferences at the planning level: which copy `most_complete` picks, and what
`damage="offline"` leaves alone.

Data roots are built by hand with storage's own encoders (store saves, journal frames), then
damaged or changed the way a crash or another program would.
"""

from __future__ import annotations

import json

import msgspec

from docpilotd.domain import changes
from docpilotd.domain.model import Session
from docpilotd.paths import Layout
from docpilotd.storage import backups, journal
from docpilotd.storage.recovery import plan_session, recover_all
from docpilotd.storage.recovery.scan import scan
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, build_session, command_change, tree_bytes

SID = "6e492016-be4e-4eb6-a595-9c9ee5a92a59"


def state(commands: int, annotations: int = 1) -> Session:
    """The session after `commands` commands and then `annotations` notes, made anew each time
    (the state machine appends to the lists of the session it is given)."""
    return build_session(commands=commands, annotations=annotations, clock=Clock(), session_id=SID)


def restored_generation_root(layout: Layout) -> tuple[SessionStore, str]:
    """Generations of 4, 5, 6 commands (+1 annotation), then the session restored to its
    4-command state and saved twice more (4 and 5 commands); the main file is then torn. So the
    newest valid copy (the newest generation, 4 commands) holds less than an older one (6)."""
    store = SessionStore(layout, backups_kept=10, compress_backups=True)
    for seq, commands in enumerate((4, 5, 6, 4, 5), start=1):
        store.save(state(commands), seq)
    main = layout.session_file(SID)
    data = main.read_bytes()
    main.write_bytes(data[: len(data) // 2])  # torn
    return store, SID


def counts(store: SessionStore, sid: str, prefer: str) -> tuple[int, int, str | None]:
    plan = plan_session(store, sid, scan(store).files_of(sid), prefer=prefer)  # type: ignore[arg-type]
    assert plan.session is not None
    return len(plan.session.commands), len(plan.session.annotations), plan.source


def test_most_complete_picks_the_fuller_generation_when_the_newest_holds_less(layout: Layout) -> None:
    store, sid = restored_generation_root(layout)
    newest = counts(store, sid, "newest_valid")
    fullest = counts(store, sid, "most_complete")
    assert newest[:2] == (4, 1)
    assert fullest[:2] == (6, 1)
    generations = backups.for_session(store.ops, layout.backups, sid)
    assert newest[2] == f"backups/{generations[-1].name}"
    assert fullest[2] is not None and fullest[2] != newest[2]
    # Carried out: the fuller session is written as the main file, the torn one kept in quarantine,
    # every generation left where it was.
    before = {g.name: g.path.read_bytes() for g in generations}
    report, found = recover_all(store, repair=True, prefer="most_complete")
    assert report.prefer == "most_complete" and report.damage == "quarantine"
    assert len(found[sid].session.commands) == 6
    assert len(store.load(sid).commands) == 6
    (entry,) = report.sessions
    assert entry.status == "repaired" and any("holds less than" in p for p in entry.problems)
    assert {g.name: g.path.read_bytes() for g in backups.for_session(store.ops, layout.backups, sid)} == before
    assert entry.quarantined


def test_a_foreign_program_truncating_the_snapshot_to_a_valid_shorter_session(layout: Layout) -> None:
    store = SessionStore(layout, backups_kept=5)
    session = state(5, 2)
    store.save(session, 1)
    store.save(state(6, 2), 2)
    # Another program rewrites the file as DocPilot would: valid JSON, no docpilotd field, and
    # only the first two commands and no annotations.
    main = layout.session_file(session.id)
    shorter = json.loads(main.read_bytes())
    shorter.pop("docpilotd", None)
    shorter["commands"] = shorter["commands"][:2]
    shorter["annotations"] = []
    exits = [c["exit_code"] for c in shorter["commands"]]
    shorter["stats"].update(total_commands=len(exits), successful_commands=exits.count(0),
                            failed_commands=sum(1 for e in exits if e not in (0, None)), total_annotations=0)
    foreign = json.dumps(shorter).encode()
    main.write_bytes(foreign)
    assert counts(store, session.id, "newest_valid")[:2] == (2, 0)  # today: the newest valid copy
    assert counts(store, session.id, "most_complete")[:2] == (5, 2)  # the generation the foreign write did not touch
    _, found = recover_all(store, repair=True, prefer="most_complete")
    assert len(found[session.id].session.commands) == 5
    # Nothing good is destroyed: the foreign file is kept in quarantine as it was.
    assert any(p.read_bytes() == foreign for p in layout.quarantine.iterdir() if p.is_file())


def test_an_acknowledged_restore_in_the_journal_is_not_undone(layout: Layout) -> None:
    """After replay every copy reaches the state the journal records: fuller old generations
    followed by a restore in the journal give the restored (smaller) session, as newest_valid."""
    store = SessionStore(layout, backups_kept=5)
    for seq, commands in ((1, 6), (2, 7), (3, 8)):
        store.save(state(commands, 0), seq)  # generations of 6 and 7 commands, the main file 8
    at = iter(f"2025-08-02T10:00:0{n}.000Z" for n in range(10))
    records = b"".join((
        journal.frame(2, command_change("seventh", next(at))),
        journal.frame(3, command_change("eighth", next(at))),
        journal.frame(4, changes.Replace(session=state(3, 0), reason="restore")),  # acknowledged
        journal.frame(5, command_change("after restore", next(at))),
    ))
    layout.journal.mkdir(parents=True, exist_ok=True)
    (layout.journal / journal.segment_name(SID, 2)).write_bytes(records)
    layout.session_file(SID).write_bytes(b"\0" * 100)  # damaged: the generations are the candidates
    assert counts(store, SID, "newest_valid")[:1] == (4,)
    assert counts(store, SID, "most_complete")[:1] == (4,)
    report, found = recover_all(store, repair=True, prefer="most_complete")
    assert len(found[SID].session.commands) == 4
    assert not any("holds less" in p for p in report.sessions[0].problems)  # a tie: the newest


def test_a_settled_main_file_is_taken_as_it_is(layout: Layout) -> None:
    """Our own verified snapshot with nothing after it in the journal is the last acknowledged
    state: an older, fuller generation (annotations deleted since, say) does not replace it."""
    store = SessionStore(layout, backups_kept=5)
    session = state(6, 3)
    store.save(session, 1)
    store.save(state(2, 0), 2)
    before = tree_bytes(layout.root)
    assert counts(store, session.id, "most_complete")[:2] == (2, 0)
    report, found = recover_all(store, repair=True, prefer="most_complete")
    assert report.sessions[0].status == "ok" and not report.sessions[0].problems
    assert len(found[session.id].session.commands) == 2
    after = tree_bytes(layout.root)
    assert {k: v for k, v in after.items() if k.startswith(("sessions", "backups"))} == {
        k: v for k, v in before.items() if k.startswith(("sessions", "backups"))}


def test_offline_leaves_every_file_as_it_is_and_lists_the_session(layout: Layout) -> None:
    store, sid = restored_generation_root(layout)
    healthy = build_session(commands=2)  # another id
    store.save(healthy, 1)
    before = tree_bytes(layout.root)
    report, found = recover_all(store, repair=True, damage="offline")
    assert tree_bytes(layout.root) == before  # nothing moved, cut or rewritten (not even the manifest)
    assert sid not in found and healthy.id in found
    assert report.damage == "offline"
    (kept,) = report.offline
    assert kept.session_id == sid and "sessions/" in kept.why and kept.commands == 4
    by_id = {s.session_id: s for s in report.sessions}
    assert by_id[sid].status == "offline" and by_id[sid].problems and not by_id[sid].quarantined
    assert any("would restore" in line for line in by_id[sid].actions)
    # fsck --repair (quarantine) then repairs it as it always did.
    report, found = recover_all(store, repair=True, check_backups=True)
    assert sid in found and not report.offline
    assert report.clean_after_repair
    report, found = recover_all(store, repair=True, damage="offline")
    assert sid in found and not report.offline


def test_offline_does_not_take_crash_leftovers_for_damage(layout: Layout) -> None:
    """A torn last journal record and a stale temp file are what a crash leaves of writes never
    acknowledged: the session is recovered as usual, not kept offline."""
    store = SessionStore(layout, backups_kept=5)
    session = state(2, 0)
    store.save(session, 1)
    layout.journal.mkdir(parents=True, exist_ok=True)
    record = journal.frame(2, command_change("acknowledged", "2025-08-02T10:00:00.000Z"))
    torn = journal.frame(3, command_change("never acknowledged", "2025-08-02T10:00:01.000Z"))
    (layout.journal / journal.segment_name(session.id, 2)).write_bytes(record + torn[: len(torn) // 2])
    report, found = recover_all(store, repair=True, damage="offline")
    assert not report.offline and len(found[session.id].session.commands) == 3


def test_the_report_says_which_preference_was_used(layout: Layout) -> None:
    store, _ = restored_generation_root(layout)
    report, _ = recover_all(store, repair=False, check_backups=True, prefer="most_complete")
    encoded = msgspec.json.decode(msgspec.json.encode(report))
    assert encoded["prefer"] == "most_complete" and encoded["damage"] == "quarantine" and encoded["offline"] == []
