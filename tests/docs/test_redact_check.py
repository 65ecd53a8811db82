"""`docpilot redact --check`: what the rules in force would replace in a text, as a user tuning
`redact_patterns` and `redact_allow` sees it, through the real client and a real daemon (and typed
in real hooked bash, zsh and fish). Nothing is stored or changed by a check; a bad pattern is one
clear line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.daemon_harness import CLIENT_CMD, Daemon, DaemonFactory
from tests.docs.test_shell_secrets import request_save, shell_daemon, shell_home  # noqa: F401  (fixtures)
from tests.reliability.kill9 import DaemonProcess
from tests.shell.ptyshell import run_shell
from tests.shell.test_hooks import LOAD, SHELLS, assert_quiet, commands_of, shell_env, start_session

TOKEN = "ghp_" + "R8aZ3kQ9mW2xV7nB4cT6yH1jL5pD0fG8sK3e"
USAGE = 2  # errors.UsageError's exit code


def _client(d: Daemon, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    done = subprocess.run([*CLIENT_CMD, *args], env=d.env(), input=(stdin or "").encode(), capture_output=True,
                          timeout=60, cwd=str(d.home.parent))
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _configured(daemons: DaemonFactory, config: str) -> Daemon:
    d = daemons(start=False)
    d.home.mkdir(parents=True, exist_ok=True)
    (d.home / "docpilotd.toml").write_text(config)
    d.start()
    return d


@pytest.fixture
def tuned(daemons: DaemonFactory) -> Daemon:
    return _configured(daemons, "redact_patterns = ['internal-[0-9]{4}']\nredact_allow = ['AKIAIOSFODNN7EXAMPLE']\n")


def test_check_shows_what_would_be_replaced_and_by_which_rule(tuned: Daemon) -> None:
    sid = tuned.call("start", description="tuning")["id"]
    tuned.call("save")
    before = tuned.tree()
    text = f"export GITHUB_TOKEN={TOKEN} && aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE; echo internal-4242"
    rc, out, err = _client(tuned, "redact", "--check", text)
    assert rc == 0, err
    assert out == "export GITHUB_TOKEN=[REDACTED] && aws configure set aws_access_key_id AKIAIOSFODNN7EXAMPLE; " \
                  "echo [REDACTED]\n"
    lines = err.splitlines()
    # Two rules would have taken the allowed key (its shape, and `set NAME VALUE`): both are named.
    assert lines[0] == "2 would be replaced, 2 kept by redact_allow"
    assert lines[1].split() == ["replaced", "github_token", TOKEN]
    assert lines[2].split() == ["replaced", "pattern", "0", "internal-4242"]
    assert sorted(line.split()[1] for line in lines[3:]) == ["aws_access_key_id", "secret_set"]
    assert all(line.split()[::2] == ["allowed", "AKIAIOSFODNN7EXAMPLE"] for line in lines[3:])
    # A check stores nothing: no command, no file changed.
    assert tuned.call("status", session=sid)["session"]["commands"] == 0
    tuned.call("save")
    assert tuned.tree() == before


def test_check_reads_standard_input_whole_and_answers_json(tuned: Daemon) -> None:
    given = "line one\nPGPASSWORD=s3cr3t-pass psql -h db\nnothing here\n"
    rc, out, err = _client(tuned, "redact", "--check", "-", "--json", stdin=given)
    assert rc == 0, err
    result = json.loads(out)
    assert result == {
        "text": "line one\nPGPASSWORD=[REDACTED] psql -h db\nnothing here\n",
        "replaced": [{"rule": "secret_assignment", "secret": "s3cr3t-pass"}],
        "allowed": [],
    }
    rc, out, err = _client(tuned, "redact", "--check", "ls -la /srv")
    assert (rc, out) == (0, "ls -la /srv\n")
    assert err == "0 would be replaced\n"


def test_a_tried_pattern_counts_for_the_check_only(tuned: Daemon) -> None:
    sid = tuned.call("start", description="trying a pattern")["id"]
    rc, out, err = _client(tuned, "redact", "--check", "--pattern", "zebra-[a-z]+", "deploy zebra-cobalt now")
    assert (rc, out) == (0, "deploy [REDACTED] now\n"), err
    assert "replaced  --pattern 0  zebra-cobalt" in err
    tuned.call("record", session=sid, command="deploy zebra-cobalt now", exit_code=0, cwd="/srv")
    assert [c["command"] for c in tuned.call("show", session=sid)["commands"]] == ["deploy zebra-cobalt now"]


@pytest.mark.parametrize(("args", "says"), [
    (("--pattern", "(?<=password=)\\S+", "x"), "lookarounds"),
    (("--pattern", "(a)\\1", "x"), "backreferences"),
    (("--pattern", "(unclosed", "x"), "missing )"),
    (("--regex", "x"), "--pattern REGEX"),
])
def test_a_bad_check_is_one_line_and_changes_nothing(tuned: Daemon, args: tuple[str, ...], says: str) -> None:
    tuned.call("save")
    before = tuned.tree()
    rc, out, err = _client(tuned, "redact", "--check", *args)
    assert rc == USAGE and out == ""
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
    assert tuned.tree() == before


def test_pattern_without_check_is_refused(tuned: Daemon) -> None:
    tuned.call("start", description="s")
    rc, _, err = _client(tuned, "redact", "--pattern", "x+", "secret")
    assert rc == USAGE and "--regex" in err and len(err.strip().splitlines()) == 1


def test_a_config_pattern_re2_cannot_run_stops_the_daemon_with_a_reason(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    d.home.mkdir(parents=True, exist_ok=True)
    (d.home / "docpilotd.toml").write_text("redact_patterns = ['(?<=token=)\\\\w+']\n")
    done = subprocess.run(["docpilotd", "config"], env=d.env(), capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode != 0
    assert "redact_patterns[0]" in err and "lookarounds" in err and "Traceback" not in err


@pytest.mark.parametrize("shell", SHELLS)
def test_check_typed_in_a_hooked_shell(shell: str, shell_home, shell_daemon: DaemonProcess) -> None:
    session = start_session(shell_daemon)
    lines = [
        LOAD[shell],
        "true",
        f"docpilot redact --check 'curl -H \"Authorization: Bearer {TOKEN}\" https://api.example.com'",
        "echo done",
    ]
    output, _ = run_shell(shell, lines, shell_env(shell_home), cwd=str(shell_home))
    assert_quiet(output)
    assert 'curl -H "Authorization: Bearer [REDACTED]" https://api.example.com' in output
    assert "1 would be replaced" in output
    deadline = time.monotonic() + 20
    while len(commands_of(shell_daemon, session)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    request_save(shell_daemon)
    # The check itself is the tool's own command line: not recorded (record_own_commands is off).
    assert [c["command"] for c in commands_of(shell_daemon, session)] == ["true", "echo done"]
