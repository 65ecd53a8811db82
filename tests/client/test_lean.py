"""The hot verbs' lean path (docpilotd.client.lean): the same requests as the full parser, faster.

What a user would notice if it went wrong: a note sent with the wrong type, session or text, an
option silently ignored, `--help` not shown, an error shown differently. So every command line the
lean reader accepts is read by argparse too and must mean the same; everything it is unsure of goes
to the full parser; and in a fresh interpreter the lean path imports none of argparse, pathlib,
dataclasses or typing (what made `docpilot note` cost 40 ms).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from docpilotd.client import cli, lean
from tests.daemon_harness import Daemon

ACCEPTED = [
    ["note", "the", "proxy", "is", "up"],
    ["n", "x"],
    ["warn", "--json", "careful"],
    ["explain", "--session", "abcd1234", "why", "--json"],
    ["milestone", "-s", "abcd", "done"],
    ["alert", "--session=abcd", "x"],
    ["checkpoint", "--", "-5 degrees", "--json"],
    ["note", "-", "dash"],
    ["run", "--", "make", "-j4"],
    ["run", "make", "--json", "-k"],
    ["run", "-s", "abcd", "--", "sh", "-c", "exit 3"],
    ["run", "--json", "--", "--weird"],
]
REFUSED = [
    ["note"], ["note", "--help"], ["note", "-h"], ["note", "--sesion", "x", "y"], ["note", "-sabcd", "x"],
    ["note", "--session"], ["note", "--session", "--json", "x"], ["run"], ["run", "--"], ["run", "--help"],
    ["run", "-x", "make"], ["status"], ["generate", "-t", "github"], ["note", "-5"],
]


def full_reading(argv: list[str]) -> tuple[str, str | None, bool, list[str]]:
    args = cli.build_parser(cli.BY_NAME[argv[0]]).parse_args(argv)
    if args.verb == "run":
        words = list(args.command[1:] if args.command[:1] == ["--"] else args.command)
        return "run", args.session, args.json, words
    return args.verb, args.session, args.json, list(args.text)


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_what_the_lean_reader_accepts_the_full_parser_reads_the_same_way(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCPILOT_SESSION", raising=False)
    parsed = lean._parse(argv)
    assert parsed is not None
    verb, session, as_json, words = parsed
    full_verb, full_session, full_json, full_words = full_reading(argv)
    assert (cli.BY_NAME[argv[0]].name, session, as_json, words) == (full_verb, full_session, full_json, full_words)
    if verb != "run":
        request = cli.BY_NAME[argv[0]].request
        assert request is not None
        _, fields, _ = request(cli.build_parser(cli.BY_NAME[argv[0]]).parse_args(argv))
        assert fields["type"] == lean.NOTE_VERBS[argv[0]]


@pytest.mark.parametrize("argv", REFUSED, ids=" ".join)
def test_anything_unusual_goes_to_the_full_parser(argv: list[str]) -> None:
    assert lean._parse(argv) is None


def test_the_hot_verbs_and_their_aliases_are_the_full_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("note", "explain", "warn", "milestone"):
        verb = cli.BY_NAME[name]
        for spelled in (verb.name, *verb.aliases):
            assert spelled in lean.NOTE_VERBS, spelled
            assert lean.NOTE_VERBS[spelled] == lean.NOTE_VERBS[name]
    assert set(lean.VERBS) == set(lean.NOTE_VERBS) | {"run"}


def test_the_session_defaults_to_docpilot_session_as_in_the_full_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCPILOT_SESSION", "feedbeef")
    assert lean._parse(["note", "x"]) == ("note", "feedbeef", False, ["x"])
    assert lean._parse(["note", "-s", "abcd", "x"]) == ("note", "abcd", False, ["x"])


def test_the_hot_path_imports_nothing_heavy() -> None:
    # What the interpreter's start-up imported already (site-packages' .pth files may import
    # pathlib or typing) is not the client's doing: only what importing the hot path adds counts.
    code = (
        "import sys; before = set(sys.modules); from docpilotd.client import entry, lean, transport, run; "
        "heavy = {'argparse', 'pathlib', 'dataclasses', 'typing', 'msgspec', 'asyncio'} & (set(sys.modules) - before); "
        "print(sorted(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def _docpilot(daemon: Daemon, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCPILOT_HOME": str(daemon.home)}
    env.pop("DOCPILOT_SESSION", None)
    entry = "import sys; from docpilotd.client.entry import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", entry, *argv], env=env, capture_output=True, text=True, timeout=60)


def test_the_console_entry_sends_notes_and_runs_commands_like_the_full_client(daemon: Daemon, tmp_path: Path) -> None:
    sid = daemon.call("start", description="lean", cwd="/w")["id"]
    done = _docpilot(daemon, "warn", "keep", "--json", "*this*")
    assert done.returncode == 0, done.stderr
    assert '"annotation_type": "Warning"' in done.stdout and '"text": "keep *this*"' in done.stdout
    assert _docpilot(daemon, "note", "plain").stdout == f"Note added to {sid}: plain\n"
    ran = _docpilot(daemon, "run", "--", "sh", "-c", "echo out; exit 3")
    assert ran.returncode == 3 and ran.stdout == "out\n", ran.stderr
    shown = daemon.call("show", session=sid)
    assert [a["text"] for a in shown["annotations"]] == ["keep *this*", "plain"]
    assert shown["commands"][-1]["command"] == "sh -c 'echo out; exit 3'"
    assert shown["commands"][-1]["exit_code"] == 3
    # What the lean path does not read is the full parser's: help, and its usage errors.
    helped = _docpilot(daemon, "note", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: docpilot note")
    wrong = _docpilot(daemon, "note", "--sesion", "x", "y")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr and wrong.stderr.startswith("docpilot:")
    missing = _docpilot(daemon, "note", "-s", "ffffffff", "x")
    assert missing.returncode == 4 and missing.stderr.startswith("docpilot: ") and "Traceback" not in missing.stderr


def test_errors_are_one_line_with_the_full_clients_exit_code_when_the_daemon_is_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCPILOT_")}
    env["DOCPILOT_HOME"] = str(tmp_path / "nowhere")
    entry = "import sys; from docpilotd.client.entry import main; sys.exit(main())"
    lean_run = subprocess.run([sys.executable, "-c", entry, "note", "x"], env=env, capture_output=True, text=True)
    full_run = subprocess.run([sys.executable, "-m", "docpilotd.client.cli", "note", "x"], env=env, capture_output=True, text=True)
    assert (lean_run.returncode, lean_run.stderr) == (full_run.returncode, full_run.stderr)
    assert lean_run.returncode == 3 and lean_run.stderr.count("\n") == 1


def test_a_note_is_echoed_without_control_or_reordering_characters(daemon: Daemon) -> None:
    sid = daemon.call("start", description="echo")["id"]
    done = _docpilot(daemon, "note", "rtl\u202eevil\u202c bell\x07 esc\x1b[2J")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Note added to {sid}: rtl<U+202E>evil<U+202C> bell<U+0007> esc<U+001B>[2J\n"
    # Stored as typed: only the echo is made visible.
    assert daemon.call("show", session=sid)["annotations"][0]["text"] == "rtl\u202eevil\u202c bell\x07 esc\x1b[2J"
