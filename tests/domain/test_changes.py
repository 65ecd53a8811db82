"""The state machine: each transition, the event it appends, and every refused transition."""

from __future__ import annotations

import copy
from collections.abc import Callable

import msgspec
import pytest

from docpilotd.domain import changes, validate
from docpilotd.domain.model import ErrorState, Session, is_live, state_name
from docpilotd.errors import InvalidTransition
from tests.conftest import Clock, annotate_change, build_session, command_change, metadata, new_id


def pause(clock: Clock) -> changes.Pause:
    return changes.Pause(at=clock(), event_id=new_id())


def resume(clock: Clock) -> changes.Resume:
    return changes.Resume(at=clock(), event_id=new_id())


def stop(clock: Clock) -> changes.Stop:
    return changes.Stop(at=clock(), event_id=new_id())


def fail(clock: Clock, message: str = "shell hook crashed") -> changes.Fail:
    return changes.Fail(at=clock(), event_id=new_id(), message=message)


def edit(clock: Clock, session: Session, text: str = "new text", kind: str | None = None) -> changes.EditAnnotation:
    """An edit of the session's first annotation (of an id it does not hold when it has none)."""
    note = session.annotations[0] if session.annotations else None
    return changes.EditAnnotation(
        annotation_id=note.id if note else new_id(), text=text,
        annotation_type=kind or (note.annotation_type if note else "Note"),  # type: ignore[arg-type]
        at=clock(), event_id=new_id(),
    )


def delete(clock: Clock, session: Session) -> changes.DeleteAnnotation:
    note = session.annotations[0] if session.annotations else None
    return changes.DeleteAnnotation(annotation_id=note.id if note else new_id(), at=clock(), event_id=new_id())


def in_state(state: str, clock: Clock) -> Session:
    session = build_session(commands=2, annotations=1, clock=clock)
    if state == "Paused":
        session = changes.apply(session, pause(clock))
    elif state == "Stopped":
        session = changes.apply(session, stop(clock))
    elif state == "Error":
        session = changes.apply(session, fail(clock))
    assert state_name(session.state) == state
    return session


def test_create_gives_an_active_session_with_one_started_event() -> None:
    clock = Clock()
    change = changes.Create(
        session_id=new_id(), description="Set up the staging proxy", at=clock(), event_id=new_id(), metadata=metadata()
    )
    session = changes.create(change)
    assert session.id == change.session_id
    assert session.state == "Active"
    assert session.created_at == session.started_at == session.updated_at == change.at
    assert session.stopped_at is None
    assert [(e.id, e.event_type, e.timestamp) for e in session.events] == [(change.event_id, "SessionStarted", change.at)]
    assert session.events[0].details == "Session created: Set up the staging proxy"
    assert validate.problems(session) == []


def test_record_command_appends_the_entry_an_event_and_counts_it() -> None:
    clock = Clock()
    session = build_session(commands=0, annotations=0, clock=clock)
    for exit_code in (0, 2, None, 0, 130):
        change = command_change(f"exit {exit_code}", clock(), exit_code)
        session = changes.apply(session, change)
        assert session.commands[-1] is change.entry
        last = session.events[-1]
        assert (last.id, last.event_type, last.timestamp, last.details) == (
            change.event_id, "CommandCaptured", change.entry.timestamp, change.entry.command
        )
        assert session.updated_at == change.entry.timestamp
    assert (session.stats.total_commands, session.stats.successful_commands, session.stats.failed_commands) == (5, 2, 2)
    assert len(session.events) == 1 + 5
    assert validate.problems(session) == []


@pytest.mark.parametrize("state", ["Active", "Paused"])
def test_annotate_works_on_active_and_paused_sessions(state: str) -> None:
    clock = Clock()
    session = in_state(state, clock)
    before_events = len(session.events)
    change = annotate_change("Dev server is up on port 5173", clock(), "Milestone")
    session = changes.apply(session, change)
    assert state_name(session.state) == state
    assert session.annotations[-1] is change.annotation
    assert session.stats.total_annotations == len(session.annotations) == 2
    assert len(session.events) == before_events + 1
    assert session.events[-1].event_type == "AnnotationAdded"
    assert session.events[-1].details == f"Annotation added: {change.annotation.id}"
    assert validate.problems(session) == []


@pytest.mark.parametrize("state", ["Active", "Paused"])
def test_edit_keeps_id_and_time_replaces_the_text_and_appends_one_event(state: str) -> None:
    clock = Clock()
    session = in_state(state, clock)
    session = changes.apply(session, annotate_change("secodn note", clock(), "Warning"))
    old = session.annotations[1]
    events, count = len(session.events), len(session.annotations)
    change = changes.EditAnnotation(annotation_id=old.id, text="second note", annotation_type="Warning",
                                    at=clock(), event_id=new_id())
    session = changes.apply(session, change)
    new = session.annotations[1]
    assert (new.id, new.timestamp, new.annotation_type, new.text) == (old.id, old.timestamp, "Warning", "second note")
    assert new is not old and old.text == "secodn note", "a new item in its place: captured lists stay true"
    assert len(session.annotations) == count == session.stats.total_annotations
    assert len(session.events) == events + 1
    last = session.events[-1]
    assert (last.id, last.event_type, last.timestamp) == (change.event_id, "AnnotationAdded", change.at)
    assert last.details == f"Annotation edited: {old.id}", "the action and the id, never the text"
    assert session.updated_at == change.at and state_name(session.state) == state
    assert validate.problems(session) == []
    # A new type is said in the details too.
    session = changes.apply(session, changes.EditAnnotation(
        annotation_id=old.id, text="second note", annotation_type="Milestone", at=clock(), event_id=new_id()))
    assert session.annotations[1].annotation_type == "Milestone"
    assert session.events[-1].details == f"Annotation edited: {old.id} (Warning -> Milestone)"


@pytest.mark.parametrize("state", ["Active", "Paused"])
def test_delete_removes_the_annotation_counts_it_and_appends_one_event(state: str) -> None:
    clock = Clock()
    session = in_state(state, clock)
    session = changes.apply(session, annotate_change("I regret this note", clock(), "Warning"))
    session = changes.apply(session, annotate_change("keep me", clock()))
    gone = session.annotations[1]
    events = len(session.events)
    change = changes.DeleteAnnotation(annotation_id=gone.id, at=clock(), event_id=new_id())
    session = changes.apply(session, change)
    assert [a.text for a in session.annotations] == ["note 0", "keep me"]
    assert session.stats.total_annotations == 2
    assert len(session.events) == events + 1
    last = session.events[-1]
    assert (last.id, last.event_type, last.timestamp) == (change.event_id, "AnnotationAdded", change.at)
    assert last.details == f"Annotation deleted: {gone.id} (Warning)"
    assert "regret" not in msgspec.json.encode(session).decode(), "the deleted text is nowhere in the session"
    assert validate.problems(session) == []


@pytest.mark.parametrize("make_change", [edit, delete], ids=["edit", "delete"])
def test_an_annotation_the_session_does_not_hold_is_refused_and_changes_nothing(
    make_change: Callable[[Clock, Session], changes.Change],
) -> None:
    clock = Clock()
    session = build_session(annotations=0, clock=clock)
    before = msgspec.json.encode(session)
    change = make_change(clock, session)
    with pytest.raises(InvalidTransition, match=f"session {session.id} has no annotation "):
        changes.apply(session, change)
    assert msgspec.json.encode(session) == before
    # A deleted annotation can be neither edited nor deleted again.
    session = changes.apply(session, annotate_change("once", clock()))
    session = changes.apply(session, delete(clock, session))
    with pytest.raises(InvalidTransition, match="has no annotation"):
        changes.apply(session, changes.DeleteAnnotation(annotation_id=change.annotation_id, at=clock(), event_id=new_id()))  # type: ignore[union-attr]


def test_pause_resume_cycle_counts_and_appends_events() -> None:
    clock = Clock()
    session = build_session(commands=1, annotations=0, clock=clock)
    for round_number in (1, 2, 3):
        p = pause(clock)
        session = changes.apply(session, p)
        assert session.state == "Paused" and is_live(session)
        assert session.stats.pause_resume_count == round_number
        assert (session.events[-1].event_type, session.events[-1].id) == ("SessionPaused", p.event_id)
        r = resume(clock)
        session = changes.apply(session, r)
        assert session.state == "Active"
        assert (session.events[-1].event_type, session.events[-1].id) == ("SessionResumed", r.event_id)
        assert session.updated_at == r.at
    assert [e.event_type for e in session.events[-6:]] == ["SessionPaused", "SessionResumed"] * 3
    assert validate.problems(session) == []


@pytest.mark.parametrize("state", ["Active", "Paused"])
def test_stop_sets_stopped_at_and_duration(state: str) -> None:
    clock = Clock()
    session = in_state(state, clock)
    clock.ns += 3600 * 1_000_000_000  # an hour of work
    s = stop(clock)
    session = changes.apply(session, s)
    assert session.state == "Stopped" and not is_live(session)
    assert session.stopped_at == s.at == session.updated_at
    # build_session: create at +1 s, then 2 commands, 1 annotation (and a pause): stopped an hour later.
    expected = (clock.ns - (Clock().ns + 1_000_000_000)) // 1_000_000_000
    assert session.stats.duration_seconds == expected
    assert session.events[-1].event_type == "SessionStopped"
    assert validate.problems(session) == []


@pytest.mark.parametrize("state", ["Active", "Paused", "Stopped", "Error"])
def test_fail_is_allowed_from_any_state(state: str) -> None:
    clock = Clock()
    session = in_state(state, clock)
    f = fail(clock, "the disk went away")
    session = changes.apply(session, f)
    assert session.state == ErrorState("the disk went away")
    assert (session.events[-1].event_type, session.events[-1].details) == ("ErrorOccurred", "the disk went away")


REFUSED = [
    ("Stopped", lambda c: annotate_change("too late", c()), "add an annotation"),
    ("Stopped", lambda c: command_change("ls", c()), "record a command"),
    ("Stopped", pause, "pause"),
    ("Stopped", resume, "resume"),
    ("Stopped", stop, "stop"),
    ("Paused", lambda c: command_change("ls", c()), "record a command"),
    ("Paused", pause, "pause"),
    ("Active", resume, "resume"),
    ("Error", lambda c: annotate_change("note", c()), "add an annotation"),
    ("Error", lambda c: command_change("ls", c()), "record a command"),
    ("Error", pause, "pause"),
    ("Error", resume, "resume"),
    ("Error", stop, "stop"),
]
# Edits and deletes need the session (they name one of its annotations).
REFUSED_ON_SESSION = [
    ("Stopped", edit, "edit an annotation"),
    ("Stopped", delete, "delete an annotation"),
    ("Error", edit, "edit an annotation"),
    ("Error", delete, "delete an annotation"),
]


@pytest.mark.parametrize(("state", "make_change", "action"), REFUSED)
def test_refused_transition_raises_and_leaves_the_session_unchanged(
    state: str, make_change: Callable[[Clock], changes.Change], action: str
) -> None:
    clock = Clock()
    session = in_state(state, clock)
    before = msgspec.json.encode(session)
    change = make_change(clock)
    with pytest.raises(InvalidTransition, match=f"cannot {action}: session {session.id} is {state}") as info:
        changes.apply(session, change)
    assert info.value.code == "invalid_transition" and info.value.exit_code == 5
    assert msgspec.json.encode(session) == before


@pytest.mark.parametrize(("state", "make_change", "action"), REFUSED_ON_SESSION)
def test_edit_and_delete_are_refused_unless_live_and_change_nothing(
    state: str, make_change: Callable[[Clock, Session], changes.Change], action: str
) -> None:
    clock = Clock()
    session = in_state(state, clock)
    before = msgspec.json.encode(session)
    with pytest.raises(InvalidTransition, match=f"cannot {action}: session {session.id} is {state}"):
        changes.apply(session, make_change(clock, session))
    with pytest.raises(InvalidTransition):
        changes.state_after(state, make_change(clock, session))
    assert msgspec.json.encode(session) == before


def test_create_on_an_existing_session_is_refused_and_changes_nothing() -> None:
    clock = Clock()
    session = build_session(clock=clock)
    before = msgspec.json.encode(session)
    again = changes.Create(
        session_id=session.id, description="again", at=clock(), event_id=new_id(), metadata=metadata()
    )
    with pytest.raises(InvalidTransition, match="already exists"):
        changes.apply(session, again)
    assert msgspec.json.encode(session) == before


def test_replace_returns_the_given_session_whatever_the_state() -> None:
    clock = Clock()
    stopped = in_state("Stopped", clock)
    other = build_session(commands=5, clock=clock)
    assert changes.apply(stopped, changes.Replace(session=other, reason="restore")) is other


def test_updated_at_never_moves_backwards() -> None:
    clock = Clock()
    session = build_session(commands=1, clock=clock)
    latest = session.updated_at
    old = command_change("late hook report", "2025-08-01T08:00:00Z")
    session = changes.apply(session, old)
    assert session.updated_at == latest
    assert session.commands[-1].timestamp == "2025-08-01T08:00:00Z"


def test_stats_stay_consistent_through_a_long_mixed_history() -> None:
    clock = Clock()
    session = build_session(commands=0, annotations=0, clock=clock)
    for step in range(300):
        kind = step % 7
        try:
            if kind in (0, 1, 2):
                session = changes.apply(session, command_change(f"c{step}", clock(), (0, 1, None)[step % 3]))
            elif kind == 3:
                session = changes.apply(session, annotate_change(f"a{step}", clock()))
            elif kind == 4:
                session = changes.apply(session, pause(clock))
            elif kind == 5:
                session = changes.apply(session, annotate_change(f"a{step}", clock(), "Warning"))
            else:
                session = changes.apply(session, resume(clock))
        except InvalidTransition:
            pass
        assert validate.problems(session) == [], step
    assert session.stats.total_commands == len(session.commands) > 0
    assert session.stats.successful_commands + session.stats.failed_commands <= session.stats.total_commands
    assert session.stats.pause_resume_count == sum(e.event_type == "SessionPaused" for e in session.events)
    # One event per applied change, plus SessionStarted.
    assert len(session.events) == 1 + len(session.commands) + len(session.annotations) + sum(
        e.event_type in ("SessionPaused", "SessionResumed") for e in session.events
    )


def test_applying_the_same_changes_twice_gives_the_same_bytes() -> None:
    """What journal replay relies on: changes carry their ids and times, apply is deterministic."""
    clock = Clock()
    start = build_session(commands=0, annotations=0, clock=clock)
    recorded: list[changes.Change] = [
        command_change("make", clock(), 0),
        annotate_change("why", clock(), "Explanation"),
        pause(clock),
        annotate_change("paused note", clock()),
        resume(clock),
        annotate_change("typo", clock()),
    ]
    typo = recorded[-1].annotation.id  # type: ignore[union-attr]
    recorded += [
        changes.EditAnnotation(annotation_id=typo, text="fixed", annotation_type="Milestone", at=clock(), event_id=new_id()),
        changes.DeleteAnnotation(annotation_id=recorded[1].annotation.id, at=clock(), event_id=new_id()),  # type: ignore[union-attr]
        command_change("make test", clock(), 2),
        stop(clock),
    ]
    # The changes survive the journal's encoding (a tagged union).
    wire = msgspec.json.encode(recorded)
    replayed_changes = msgspec.json.decode(wire, type=list[changes.Change])
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    for change in recorded:
        a = changes.apply(a, change)
    for change in replayed_changes:
        b = changes.apply(b, change)
    assert msgspec.json.encode(a) == msgspec.json.encode(b)
    assert a.state == "Stopped" and a.stats.failed_commands == 1
    assert [(n.text, n.annotation_type) for n in a.annotations] == [("paused note", "Note"), ("fixed", "Milestone")]


KINDS = ("command", "annotate", "edit", "delete", "pause", "resume", "stop", "fail", "create", "replace")


def _change_of(kind: str, clock: Clock, session: Session) -> changes.Change:
    if kind == "command":
        return command_change("make", clock())
    if kind == "annotate":
        return annotate_change("a note", clock())
    if kind == "edit":
        return edit(clock, session, "edited", "Warning")
    if kind == "delete":
        return delete(clock, session)
    if kind == "pause":
        return pause(clock)
    if kind == "resume":
        return resume(clock)
    if kind == "stop":
        return stop(clock)
    if kind == "fail":
        return fail(clock)
    if kind == "create":
        return changes.Create(session_id=session.id, description="again", at=clock(), event_id=new_id(), metadata=metadata())
    return changes.Replace(session=build_session(commands=1, annotations=2, clock=clock), reason="restore")


def test_state_after_and_apply_agree_on_every_sequence() -> None:
    """The runtime checks a change with `state_after` before journaling it and recovery applies
    it with `apply`: for any history, one refuses exactly what the other refuses, and both lead
    to the same state."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from(KINDS), max_size=25))
    def check(kinds: list[str]) -> None:
        clock = Clock()
        session = build_session(commands=1, annotations=0, clock=clock)
        for kind in kinds:
            if kind in ("edit", "delete") and not session.annotations:
                # The runtime looks the annotation up before it journals an edit or a delete; one
                # the session does not hold is refused by `apply` alone (tested apart).
                kind = "annotate"
            change = _change_of(kind, clock, session)
            before = state_name(session.state)
            try:
                predicted = changes.state_after(before, change)
            except InvalidTransition:
                predicted = None
            try:
                session = changes.apply(session, change)
            except InvalidTransition:
                assert predicted is None, f"state_after allowed {kind} in {before}; apply refused it"
                assert state_name(session.state) == before
                continue
            assert predicted == state_name(session.state), f"{kind} from {before}"
            assert validate.problems(session) == [], f"after {kind}"

    check()
