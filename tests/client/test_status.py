"""`docpilot status`: the daemon and where it logs, every live session (not only the current one),
and this shell's state (hooked or not, which shell, joined to which session); through the real
client against a real daemon."""

from __future__ import annotations

from tests.daemon_harness import Daemon


def _status(d: Daemon, env: dict[str, str] | None = None) -> str:
    rc, out, err = d.client("status", env=env)
    assert rc == 0 and "Traceback" not in err, err
    return out


def test_three_live_sessions_are_all_shown_with_the_log_and_this_shell(daemon: Daemon) -> None:
    first = daemon.client("start", "first of three")[1].strip()
    second = daemon.client("start", "second of three")[1].strip()
    third = daemon.client("start", "third of three")[1].strip()
    daemon.client("pause", "--session", second)
    daemon.client("note", "--session", first, "a note on the first")
    stopped = daemon.call("start", description="stopped, not live", cwd="/w")["id"]
    daemon.call("stop", session=stopped)

    out = _status(daemon)
    assert f"log: {daemon.log_path}" in out, "the daemon's stderr is that file"
    assert "3 live session(s)" in out and "stopped, not live" not in out
    for sid, state in ((first, "Active"), (second, "Paused"), (third, "Active")):
        assert f"session {sid}  {state}" in out, out
    assert f"* session {third}" in out, "the latest live session is the one verbs use"
    assert out.index(first) < out.index(second) < out.index(third), "oldest first"
    assert "1 annotations" in out
    assert "this shell: no docpilot hooks" in out and "docpilot init" in out

    out = _status(daemon, {"DOCPILOT_SHELL": "zsh", "DOCPILOT_SESSION": first})
    assert f"* session {first}" in out and f"* session {third}" not in out
    assert f"this shell: zsh with docpilot's hooks; joined to {first} (Active)" in out, out

    out = _status(daemon, {"DOCPILOT_SHELL": "fish"})
    assert "this shell: fish with docpilot's hooks; its commands go to the current session" in out

    out = _status(daemon, {"DOCPILOT_SHELL": "bash", "DOCPILOT_SESSION": stopped})
    assert f"session {stopped}  Stopped" in out and "3 live session(s)" in out
    assert f"joined to {stopped}, which is Stopped: 'docpilot leave'" in out

    shown = daemon.client_json("status")
    assert [s["id"] for s in shown["live"]] == [first, second, third]
    assert shown["daemon"]["log"] == str(daemon.log_path)
    assert shown["daemon"]["spool"] == {"files": 0, "bytes": 0}


def test_no_live_session(daemon: Daemon) -> None:
    out = _status(daemon)
    assert "no live session" in out and "live session(s)" not in out
    assert daemon.client_json("status")["live"] == []
