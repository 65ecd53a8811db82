"""Autosave writes a large session's snapshot only when its journal is worth compacting, a small
one at every autosave, and nothing recorded in between is lost (kill -9), through a real daemon.

The sizes are scaled down by the configuration (`autosave_small_mb` of a few kilobytes) so that a
"large" session takes a few hundred notes, not a million commands."""

from __future__ import annotations

import time

import msgspec

from docpilotd.storage import snapshot
from tests.daemon_harness import Daemon, DaemonFactory, wait_for

SMALL_MB = 0.02  # 20 KB: below it a session is written at every autosave
GROWTH = 0.5
INTERVAL = 0.2


def _snapshot_seq(d: Daemon, session_id: str) -> int:
    decoded = snapshot.decode(d.session_file(session_id).read_bytes())
    assert decoded.usable, decoded.problem
    return decoded.seq


def _journal_since_snapshot(d: Daemon, session_id: str) -> int:
    """Bytes of the session's newest journal segment (the one after its snapshot)."""
    newest = max(d.journal_dir.glob(f"{session_id}.*.wal"))
    return newest.stat().st_size


def _notes(d: Daemon, session_id: str, count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        d.call("annotate", session=session_id, text=f"note {n} " + "x" * 150)


def test_large_sessions_are_checkpointed_when_their_journal_is_worth_it(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    d.home.mkdir(parents=True)
    (d.home / "docpilotd.toml").write_text(
        f"autosave_interval = {INTERVAL}\nautosave_small_mb = {SMALL_MB}\nautosave_growth = {GROWTH}\n"
        "autosave_max_age = 3600.0\n"
    )
    d.start()
    large = d.call("start", description="large")["id"]
    small = d.call("start", description="small")["id"]
    _notes(d, large, 200)  # about 40 KB of snapshot: above the small size
    d.call("save")
    size = d.session_file(large).stat().st_size
    assert size > SMALL_MB * 1024 * 1024, size
    saved_seq = _snapshot_seq(d, large)

    # A few notes: far less journal than GROWTH x the snapshot. The small session is written at
    # the next autosave; the large one is not, autosave after autosave.
    _notes(d, large, 10, start=200)
    d.call("annotate", session=small, text="small one")
    small_seq = d.call("status", session=small)["session"]["seq"]
    wait_for(lambda: _snapshot_seq(d, small) == small_seq, 10, what="the small session's autosave")
    time.sleep(INTERVAL * 5)
    assert _snapshot_seq(d, large) == saved_seq, "a large session was rewritten for a few notes"
    assert d.call("status", session=large)["session"]["unsaved"] is True

    # Enough journal to be worth compacting: the next autosave writes it.
    added = 10
    while _journal_since_snapshot(d, large) < GROWTH * size:
        _notes(d, large, 10, start=200 + added)
        added += 10
    last = d.call("status", session=large)["session"]["seq"]
    wait_for(lambda: _snapshot_seq(d, large) == last, 10, what="the large session's autosave")

    # Notes after that stay in the journal only, and survive kill -9.
    _notes(d, large, 5, start=10_000)
    d.kill9()
    d.start()
    shown = d.call("show", session=large)
    texts = [a["text"] for a in shown["annotations"]]
    assert texts[-1].startswith("note 10004 ") and len(texts) == 200 + added + 5


def test_save_stop_and_shutdown_write_large_sessions_at_once(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    d.home.mkdir(parents=True)
    (d.home / "docpilotd.toml").write_text(f"autosave_interval = 3600\nautosave_small_mb = {SMALL_MB}\n")
    d.start()
    large = d.call("start", description="large")["id"]
    _notes(d, large, 200)
    d.call("save")
    _notes(d, large, 3, start=200)
    last = d.call("status", session=large)["session"]["seq"]
    assert _snapshot_seq(d, large) < last
    assert d.terminate() == 0
    assert _snapshot_seq(d, large) == last, "shutdown leaves sessions/ complete for DocPilot"


def test_a_policy_schedule_makes_generations_of_a_large_session_sooner(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A large changed session waits for `autosave_max_age` (its journal not worth compacting
    yet), unless its backup policy's `schedule_seconds` asks for a generation sooner."""
    from docpilotd.config import POLICY_SETTING, Config, NamedPolicy
    from docpilotd.paths import Layout
    from docpilotd.runtime.engine import Engine
    from docpilotd.storage.store import SessionStore
    from tests.conftest import build_session

    layout = Layout(root=tmp_path / "home", run_dir=tmp_path / "home" / "run")
    layout.ensure()
    config = Config(autosave_small_mb=0.0, autosave_max_age=3600.0,
                    policies={"hourly": NamedPolicy(schedule_seconds=3600), "often": NamedPolicy(schedule_seconds=120)})
    engine = Engine(config, SessionStore(layout))
    entry = engine.new_entry("s")
    session = build_session()
    entry.snapshot_bytes, entry.journal_bytes = 10_000_000, 1000  # large, little journal
    now = 1000.0
    for chosen, age, due in (("hourly", 200, False), ("often", 119, False), ("often", 121, True),
                             ("hourly", 3601, True)):
        meta = msgspec.structs.replace(session.metadata, settings={POLICY_SETTING: chosen})
        entry.session = msgspec.structs.replace(session, metadata=meta)
        entry.snapshot_mono = now - age
        assert engine.due(entry, now) is due, (chosen, age)
