"""Per-session backup policies as a user meets them, through the real client and a real daemon:
`docpilot start --policy NAME`, a policy given by a tag, `docpilot policy` to see and change it
(also on a stopped session), a name the config lacks refused in one line; the choice survives
kill -9 and is in the session file in DocPilot's format; a config reloaded on SIGHUP takes effect."""

from __future__ import annotations

import signal

import pytest

from tests.daemon_harness import Daemon, DaemonFactory, wait_for

USAGE = 2
CONFIG = """
[retention]
keep_last = 4

[policies.important]
keep_last = 20
keep_daily = 30
keep_monthly = 12
tags = ["release"]

[policies.scratch]
keep_last = 1
keep_hourly = 0
keep_daily = 0
keep_weekly = 0
keep_monthly = 0
schedule_seconds = 0
"""


@pytest.fixture
def d(daemons: DaemonFactory) -> Daemon:
    daemon = daemons(start=False)
    daemon.home.mkdir(parents=True, exist_ok=True)
    (daemon.home / "docpilotd.toml").write_text(CONFIG)
    return daemon.start()


def _policy(d: Daemon, *args: str) -> dict:
    return d.client_json("policy", *args)  # type: ignore[no-any-return]


def test_a_session_chooses_its_policy_and_changes_it(d: Daemon) -> None:
    rc, out, err = d.client("start", "Release 1.4", "--policy", "important")
    assert rc == 0, err
    sid = out.strip()
    shown = _policy(d, "--session", sid)
    assert (shown["policy"], shown["chosen"]) == ("important", True)
    assert shown["rules"] == {"keep_last": 20, "keep_hourly": 24, "keep_daily": 30, "keep_weekly": 5,
                              "keep_monthly": 12, "schedule_seconds": 3600}
    assert shown["available"] == ["default", "important", "scratch"]
    rc, out, _ = d.client("policy", "--session", sid)
    assert rc == 0 and f"session {sid}: policy important (chosen)" in out and "last 20" in out

    assert _policy(d, "scratch", "--session", sid)["policy"] == "scratch"
    cleared = _policy(d, "--clear", "--session", sid)
    assert (cleared["policy"], cleared["chosen"]) == ("default", False)
    assert cleared["rules"]["keep_last"] == 4
    # Each change is an event of the session, as DocPilot records configuration changes.
    events = [e for e in d.call("show", session=sid)["events"] if e["event_type"] == "ConfigurationChanged"]
    assert [e["details"] for e in events] == ["docpilotd.policy: scratch", "docpilotd.policy: removed"]


def test_a_tag_gives_a_policy_unless_one_is_chosen(d: Daemon) -> None:
    tagged = d.call("start", description="tagged", tags=["release"])["id"]
    assert (_policy(d, "--session", tagged)["policy"], _policy(d, "--session", tagged)["chosen"]) == ("important", False)
    chosen = d.call("start", description="chosen", tags=["release"], policy="default")["id"]
    assert (_policy(d, "--session", chosen)["policy"], _policy(d, "--session", chosen)["chosen"]) == ("default", True)


def test_a_policy_the_config_lacks_is_refused_in_one_line(d: Daemon) -> None:
    before = d.call("sessions")
    rc, out, err = d.client("start", "x", "--policy", "nope")
    assert rc == USAGE and out == ""
    assert err.count("\n") == 1 and "no backup policy 'nope'" in err and "default, important, scratch" in err
    assert d.call("sessions") == before  # no session was made
    sid = d.call("start", description="s")["id"]
    rc, _, err = d.client("policy", "nope", "--session", sid)
    assert rc == USAGE and "no backup policy 'nope'" in err
    rc, _, err = d.client("policy", "scratch", "--clear", "--session", sid)
    assert rc == USAGE and "not both" in err
    assert _policy(d, "--session", sid)["chosen"] is False


def test_the_choice_survives_kill9_and_is_in_the_session_file(d: Daemon) -> None:
    sid = d.call("start", description="durable choice")["id"]
    d.call("record", session=sid, command="make", exit_code=0, cwd="/w")
    d.call("stop", session=sid)
    assert _policy(d, "important", "--session", sid)["policy"] == "important"  # a stopped session too
    d.kill9()
    d.start()
    shown = _policy(d, "--session", sid)
    assert (shown["policy"], shown["chosen"]) == ("important", True)
    d.call("save")
    on_disk = d.read_session_file(sid)
    assert on_disk["metadata"]["settings"]["docpilotd.policy"] == "important"
    assert on_disk["state"] == "Stopped"


def test_a_policy_added_on_sighup_can_be_chosen(d: Daemon) -> None:
    sid = d.call("start", description="s")["id"]
    rc, _, _ = d.client("policy", "nightly", "--session", sid)
    assert rc == USAGE
    (d.home / "docpilotd.toml").write_text(CONFIG + "\n[policies.nightly]\nkeep_daily = 60\n")
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: "nightly" in _policy(d, "--session", sid)["available"], what="the reloaded config")
    assert _policy(d, "nightly", "--session", sid)["rules"]["keep_daily"] == 60


def test_backups_say_why_each_generation_is_kept(d: Daemon) -> None:
    sid = d.call("start", description="why kept", policy="scratch")["id"]
    for n in range(4):
        d.call("record", session=sid, command=f"c{n}", exit_code=0, cwd="/w")
        d.call("save")
    listed = d.client_json("backups", "--session", sid)["backups"]
    assert len(listed) == 1  # scratch keeps the last one only
    assert listed[0]["kept_for"][:2] == ["newest", "last"]
    _policy(d, "important", "--session", sid)
    for n in range(3):
        d.call("record", session=sid, command=f"d{n}", exit_code=0, cwd="/w")
        d.call("save")
    listed = d.client_json("backups", "--session", sid)["backups"]
    assert len(listed) == 4 and all("last" in b["kept_for"] for b in listed)
    assert listed[0]["name"].endswith(".json") and all(b["name"].endswith(".json.zst") for b in listed[1:])
    rc, out, _ = d.client("backups", "--session", sid)
    assert rc == 0 and "kept: newest, last, hourly" in out
