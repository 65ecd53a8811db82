"""Point-in-time restore against a recorded history, through a real daemon: after every change the
session is read back and kept with its moment; then `restore --at` each of those moments (dry
runs, and real restores) gives exactly the state acknowledged then, from generations written by
checkpoints and the journal between them; a restore is reversible the same way; nothing before
the oldest copy is invented; the client's `--at`/`--list-points` say it in a person's words."""

from __future__ import annotations

import random
from typing import Any

import pytest

from docpilotd.domain.timestamps import parse_ns
from tests.daemon_harness import Daemon, DaemonFactory

NOT_FOUND = 4
USAGE = 2


def _ns(stamp: str) -> int:
    return parse_ns(stamp)


def _state(d: Daemon, sid: str) -> dict[str, Any]:
    shown = d.call("show", session=sid)
    return {"state": shown["state"], "commands": [c["command"] for c in shown["commands"]],
            "annotations": [(a["text"], a["annotation_type"]) for a in shown["annotations"]],
            "updated_at": shown["updated_at"]}


def _history(d: Daemon, sid: str, rng: random.Random, steps: int) -> list[dict[str, Any]]:
    """Random changes, a checkpoint now and then; the state after each one."""
    seen = [_state(d, sid)]
    paused = False
    for step in range(steps):
        roll = rng.random()
        if paused or roll < 0.08:
            d.call("resume" if paused else "pause", session=sid)
            paused = not paused
        elif roll < 0.6:
            d.call("record", session=sid, command=f"step {step}", exit_code=rng.choice([0, 1]), cwd="/w")
        else:
            d.call("annotate", session=sid, text=f"note {step}", type=rng.choice(["note", "warning", "milestone"]))
        if rng.random() < 0.2:
            d.call("save")  # a checkpoint: a new generation
        seen.append(_state(d, sid))
    return seen


@pytest.mark.parametrize("keep_last", [5, 100])
def test_each_moment_of_a_recorded_history_is_restored_exactly(daemons: DaemonFactory, keep_last: int) -> None:
    d = daemons(start=False)
    d.home.mkdir(parents=True, exist_ok=True)
    (d.home / "docpilotd.toml").write_text(f"[retention]\nkeep_last = {keep_last}\n")
    d.start()
    sid = d.call("start", description="point in time", cwd="/w")["id"]
    history = _history(d, sid, random.Random(1919), 60)
    assert len({h["updated_at"] for h in history}) == len(history), "every change has its own moment"
    # The window: from the oldest generation kept to the last change; with 100 kept, all of it.
    earliest = d.call("points", session=sid)["earliest"]
    reachable = [i for i, point in enumerate(history) if _ns(point["updated_at"]) >= _ns(earliest)]
    assert reachable == list(range(reachable[0], len(history))) and len(reachable) >= 15, reachable
    assert keep_last == 5 or reachable[0] == 0
    for index, point in enumerate(history):
        reply = d.request("restore", session=sid, at=point["updated_at"], dry_run=True)
        if index not in reachable:
            assert reply["error"]["code"] == "no_such_point", (index, reply)
            continue
        would = reply["result"]
        assert would["dry_run"] is True and would["as_of"] == point["updated_at"]
        assert (would["commands"], would["annotations"], would["state"]) == (
            len(point["commands"]), len(point["annotations"]), point["state"])
    assert _state(d, sid) == history[-1], "dry runs change nothing"

    if keep_last == 5:
        return  # each restore below is a checkpoint, and so a new generation: 5 kept cannot cover it
    # Real restores, in an order that goes back and forth; each is the state acknowledged then.
    latest = history[-1]
    for index in (40, 10, 55, 0, 25):
        done = d.call("restore", session=sid, at=history[index]["updated_at"])
        assert done["restored_from"] and done["as_of"] == history[index]["updated_at"], (index, done)
        now = _state(d, sid)
        assert {k: now[k] for k in ("state", "commands", "annotations")} == {
            k: history[index][k] for k in ("state", "commands", "annotations")}
    # Reversible: the state before the first restore is itself a moment of the session's history.
    d.call("restore", session=sid, at=latest["updated_at"])
    assert {k: _state(d, sid)[k] for k in ("commands", "annotations")} == {
        k: latest[k] for k in ("commands", "annotations")}


def test_a_restored_moment_survives_kill9(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="kill after restore", cwd="/w")["id"]
    history = _history(d, sid, random.Random(7), 20)
    d.call("restore", session=sid, at=history[8]["updated_at"])
    d.kill9()
    d.start()
    assert _state(d, sid)["commands"] == history[8]["commands"]


def test_nothing_before_the_oldest_copy_is_invented(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="early", cwd="/w")["id"]
    d.call("record", session=sid, command="ls", exit_code=0, cwd="/w")
    created = d.call("show", session=sid)["created_at"]
    before = created[:4] + "-01-01T00:00:00Z" if not created.startswith("2000") else "1999-01-01T00:00:00Z"
    reply = d.request("restore", session=sid, at=before)
    assert reply["ok"] is False and reply["error"]["code"] == "no_such_point"
    assert "nothing earlier can be rebuilt" in reply["error"]["message"]
    assert _state(d, sid)["commands"] == ["ls"]


def test_the_client_lists_points_and_restores_a_moment(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="by hand", cwd="/w")["id"]
    for n in range(3):
        d.call("record", session=sid, command=f"cmd {n}", exit_code=0, cwd="/w")
        d.call("save")
    rc, out, err = d.client("restore", "--list-points", "--session", sid)
    assert rc == 0, err
    assert f"session {sid}: any moment from" in out and "3 changes in between" in out
    points = d.client_json("restore", "--list-points", "--session", sid)
    assert points["changes"] == 3 and points["copies"][0] == f"{sid}.json"
    # A moment a minute from now holds everything; 1d ago holds nothing (before the session).
    rc, out, err = d.client("restore", "--at", "0m", "--session", sid, "--yes")
    assert rc == 0, err
    assert "restored from" in out and "changes of the journal, as of" in out
    assert _state(d, sid)["commands"] == ["cmd 0", "cmd 1", "cmd 2"]
    rc, out, err = d.client("restore", "--at", "1d", "--session", sid, "--yes")
    assert rc == NOT_FOUND and out == "" and "nothing earlier can be rebuilt" in err


@pytest.mark.parametrize(("args", "says"), [
    (("--at", "not a time"), "--at: not a time"),
    (("some_backup.json", "--at", "1h"), "not both"),
    ((), "restore --list-points"),
])
def test_a_bad_restore_is_one_line(daemons: DaemonFactory, args: tuple[str, ...], says: str) -> None:
    d = daemons()
    sid = d.call("start", description="s", cwd="/w")["id"]
    rc, out, err = d.client("restore", *args, "--session", sid, "--yes")
    assert rc == USAGE and out == "" and says in err and err.count("\n") == 1
