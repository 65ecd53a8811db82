"""What a newcomer meets first: grouped help, "did you mean", one clear line per mistake, prefixes
that say what is wrong with them, --json anywhere and errors as JSON (issue 16), through the real
client (`python -m docpilotd.client.entry`, what the console script runs) and a real daemon."""

from __future__ import annotations

import json
from pathlib import Path

from docpilotd.client import cli, verbs
from tests.daemon_harness import Daemon


def one_line(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("docpilot: ") and "Traceback" not in err, err


def test_help_lists_every_verb_once_grouped_by_topic(daemon: Daemon) -> None:
    code, out, err = daemon.client("--help")
    assert code == 0, err
    headings = [line[:-1] for line in out.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert headings == ["Sessions", "Notes", "Commands", "Documents", "Keeping it safe"], out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert sorted(listed) == sorted(v.name for v in verbs.VERBS), "each verb once"
    assert "  note (n)" in out and "  start (begin, new)" in out
    grouped = {name for _, names in cli.GROUPS for name in names}
    assert {v.name for v in verbs.VERBS} <= grouped, "a verb in no group"


def test_a_mistyped_verb_gets_a_suggestion_not_a_wall_of_verbs(daemon: Daemon) -> None:
    code, _, err = daemon.client("strat")
    assert code == 2
    one_line(err)
    assert "did you mean 'start'" in err and "annotations" not in err
    code, _, err = daemon.client("qqqqqq")
    assert code == 2 and "unknown verb 'qqqqqq'" in err
    one_line(err)


def test_json_anywhere_and_errors_as_json_objects(daemon: Daemon) -> None:
    sid = daemon.call("start", description="json")["id"]
    code, out, _ = daemon.client("--json", "status")
    assert code == 0 and json.loads(out)["session"]["id"] == sid
    for argv in (["show", "-s", "ffffffff", "--json"], ["--json", "show", "-s", "ffffffff"],
                 ["note", "--json", "-s", "ffffffff", "x"]):
        code, out, err = daemon.client(*argv)
        assert code == 4 and err == "", (argv, err)
        assert json.loads(out)["error"] == {"code": "no_such_session", "message": json.loads(out)["error"]["message"],
                                            "exit_code": 4}
    code, out, err = daemon.client("strat", "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "bad_usage"


def test_prefixes_say_what_is_wrong_with_them(daemon: Daemon, tmp_path: Path) -> None:
    sid = daemon.call("start", description="template")["id"]
    daemon.call("stop", session=sid)
    exported = daemon.call("export", session=sid)
    for n, suffix in enumerate(("1111-4111-8111-111111111111", "2222-4222-8222-222222222222")):
        exported["id"] = f"abcd{n}000-{suffix}"
        exported["description"] = f"twin {n}"
        path = tmp_path / f"twin{n}.json"
        path.write_text(json.dumps(exported))
        daemon.call("import", path=str(path))
    code, _, err = daemon.client("show", "-s", "ab")
    assert code == 2 and "too short" in err and "at least 4" in err
    one_line(err)
    code, _, err = daemon.client("show", "-s", "ABCD")
    assert code == 2 and "matches 2 sessions" in err and "abcd0000-" in err and "abcd1000-" in err and "twin" in err
    one_line(err)
    code, out, err = daemon.client("show", "-s", "ABCD1")
    assert code == 0 and "twin 1" in out, err
    code, _, err = daemon.client("show", "-s", "ffff0000")
    assert code == 4 and "no session 'ffff0000'" in err
    one_line(err)


def test_usage_mistakes_are_one_line_naming_the_argument(daemon: Daemon, tmp_path: Path) -> None:
    code, _, err = daemon.client("cleanup", "--max-age-days", "-1")
    assert code == 2 and "--max-age-days" in err and "$." not in err
    one_line(err)
    code, _, err = daemon.client("import", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot import" in err and "No such file" in err
    one_line(err)


def test_fsck_of_a_data_root_that_is_not_there_says_so(daemon: Daemon, tmp_path: Path) -> None:
    import subprocess
    import sys

    env = daemon.env({"DOCPILOT_HOME": str(tmp_path / "nowhere")})
    done = subprocess.run([sys.executable, "-m", "docpilotd.admin", "fsck"], env=env, capture_output=True, text=True)
    assert done.returncode == 4 and "no data root" in done.stderr and "healthy" not in done.stdout
    assert not (tmp_path / "nowhere").exists()


def test_show_goes_through_a_pager_on_a_terminal_and_straight_out_otherwise(daemon: Daemon, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess

    from tests.daemon_harness import CLIENT_CMD

    sid = daemon.call("start", description="paged")["id"]
    for i in range(30):
        daemon.call("record", session=sid, command=f"step {i}", exit_code=0)
    paged = tmp_path / "paged.txt"
    master, slave = pty.openpty()
    env = daemon.env({"DOCPILOT_PAGER": f"sh -c 'cat > {paged}'"})
    done = subprocess.run([*CLIENT_CMD, "show", "-s", sid], stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                          env=env, timeout=30)
    os.close(slave)
    os.close(master)
    assert done.returncode == 0, done.stderr
    text = paged.read_text()
    assert text.startswith(sid) and "Active" in text.splitlines()[0] and "step 29" in text, "the pager got the listing"
    code, out, _ = daemon.client("show", "-s", sid, env={"DOCPILOT_PAGER": f"sh -c 'echo pager > {tmp_path / 'no'}'"})
    assert code == 0 and "step 29" in out and not (tmp_path / "no").exists(), "a pipe gets the text, no pager"


def on_a_terminal(daemon: Daemon, *argv: str, env: dict[str, str] | None = None) -> str:
    """What the client shows when its standard output is a terminal."""
    import os
    import pty
    import subprocess

    from tests.daemon_harness import CLIENT_CMD

    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLIENT_CMD, *argv], stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                            env=daemon.env({"DOCPILOT_PAGER": "cat", "TERM": "xterm", **(env or {})}))
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(30)
    os.close(master)
    return shown.decode("utf-8", "replace")


def test_a_terminal_gets_colour_and_human_times_a_pipe_the_plain_form(daemon: Daemon) -> None:
    sid = daemon.call("start", description="styled")["id"]
    shown = on_a_terminal(daemon, "sessions")
    assert "\x1b[32mActive\x1b[0m" in shown and "today " in shown, shown
    plain = on_a_terminal(daemon, "sessions", env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain and "today " in plain, plain
    never = on_a_terminal(daemon, "sessions", "--color=never")
    assert "\x1b[" not in never
    code, piped, _ = daemon.client("sessions", "--color=always")
    assert code == 0 and "\x1b[32mActive" in piped
    code, piped, _ = daemon.client("sessions")
    started = daemon.call("show", session=sid)["started_at"]
    assert "\x1b[" not in piped and started in piped, "a pipe gets the daemon's own times, no colour"


def test_every_echo_shows_control_and_reordering_characters_as_codes(daemon: Daemon) -> None:
    hostile = "rtl\u202eevil\u202c bell\x07 esc\x1b[2J"
    sid = daemon.call("start", description=f"desc {hostile}")["id"]
    daemon.call("record", session=sid, command=f"echo {hostile}", exit_code=1)
    daemon.call("annotate", session=sid, text=f"note {hostile}", type="warning")
    for argv in (["show", "-s", sid], ["sessions"], ["status"], ["annotations", "-s", sid], ["stop", "-s", sid]):
        code, out, err = daemon.client(*argv, "--color=never")
        assert code == 0, (argv, err)
        assert "\u202e" not in out and "\x07" not in out and "\x1b" not in out, (argv, out)
        assert "<U+202E>" in out, (argv, out)
