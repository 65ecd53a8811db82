"""The hot verbs' lean path (docpilotd.client.lean): the same requests as the full parser, faster.

What a user would notice if it went wrong: a note sent with the wrong type, session or text, an
option silently ignored, `--help` not shown, an error shown differently. So every command line the
lean reader accepts is read by argparse too and must mean the same; everything it is unsure of goes
to the full parser; and in a fresh interpreter the lean path imports none of argparse, pathlib,
dataclasses or typing (what made `docpilot note` cost 40 ms).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NotRequired, Required, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from docpilotd import results
from docpilotd.client import cli, lean, transport, verbs
from docpilotd.errors import ProtocolError
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
    ["note", "a", "-", "b"],
    ["note", "--session=", "x"],
    ["run", "--", "make", "-j4"],
    ["run", "make", "--json", "-k"],
    ["run", "-s", "abcd", "--", "sh", "-c", "exit 3"],
    ["run", "--json", "--", "--weird"],
    ["run", "make", "--", "x"],
    ["annotate", "plain", "text"],
    ["annotate", "--type", "W", "x"],
    ["annotate", "-t", "warning", "x", "y"],
    ["add", "--type=e", "why", "--json"],
    ["comment", "x", "-a", "m"],
    ["annotate", "--annotation-type", " Milestone ", "-s", "abcd", "done"],
    ["annotate", "-t", "n", "-t", "w", "last", "wins"],
    ["status"],
    ["status", "--json"],
    ["info", "-s", "abcd"],
    ["stat", "--session=abcd", "--json"],
    ["record", "ls", "-l"],
    ["record", "--json", "ls", "-l"],
    ["record", "ls", "--json"],
    ["record", "--exit-code", "3", "--", "--x"],
    ["record", "--exit-code", "-1", "--shell", "bash", "ls"],
    ["record", "--exit-code=0", "--duration-ms=12", "--cwd=/tmp", "--shell=zsh", "make"],
    ["record", "--started-at", "2026-01-01T00:00:00Z", "--duration-ms", "5", "ls"],
    ["record", "--cwd", "", "ls"],
    ["record", "ls", "--", "x"],
    ["record", "-", "x"],
    ["record", "-s", "ab", "--", "ls"],
    ["record", "-s", "ab", "ls", "-s", "x"],
]
REFUSED = [
    ["note"], ["note", "--help"], ["note", "-h"], ["note", "--sesion", "x", "y"], ["note", "-sabcd", "x"],
    ["note", "--session"], ["note", "--session", "--json", "x"], ["run"], ["run", "--"], ["run", "--help"],
    ["run", "-x", "make"], ["generate", "-t", "github"], ["note", "-5"],
    ["note", "a", "--json", "b"], ["note", "a", "--", "b"], ["note", "--sess", "x", "y"], ["note", "--color", "never", "x"],
    ["annotate"], ["annotate", "--type", "bogus", "x"], ["annotate", "--type"], ["annotate", "x", "-a", "m", "y"],
    ["annotate", "--ty", "w", "x"], ["annotate", "-tw", "x"], ["annotate", "--help"],
    ["status", "extra"], ["status", "--help"], ["status", "--"], ["info", "--color=always"],
    ["record"], ["record", "--"], ["record", "--json"], ["record", "--output-file", "out.txt", "ls"],
    ["record", "--exit-code", "x", "ls"], ["record", "--exit-code", "+3", "ls"], ["record", "--exit-code"],
    ["record", "--cwd", "-x", "ls"], ["record", "--exit", "3", "ls"], ["record", "--help"],
]


def full_reading(argv: list[str]) -> tuple[str, str | None, bool, list[str], dict[str, object]]:
    """What the full parser makes of `argv`: the verb, --session, --json, the words, and the
    request's other fields (the session defaulting as cli.main does it)."""
    verb = cli.BY_NAME[argv[0]]
    args = cli.build_parser(verb).parse_args(argv)
    session = args.session or os.environ.get("DOCPILOT_SESSION") or None
    if args.verb == "run":
        words = list(args.command[1:] if args.command[:1] == ["--"] else args.command)
        return "run", session, args.json, words, {}
    assert verb.request is not None
    _, fields, _ = verb.request(args)
    if args.verb == "record":
        words = list(args.command[1:] if args.command[:1] == ["--"] else args.command)
        return "record", session, args.json, words, fields
    return args.verb, session, args.json, list(getattr(args, "text", [])), fields


def lean_request(verb: str, words: list[str], options: dict[str, object]) -> dict[str, object]:
    """The fields the lean path sends for what it read (lean._record's and lean._annotate's)."""
    if verb == "record":
        return {"command": " ".join(words), "exit_code": options.get("exit_code"), "cwd": options.get("cwd") or os.getcwd(),
                "shell": options.get("shell", ""), "duration_ms": options.get("duration_ms"),
                "started_at": options.get("started_at"), "output": None}
    if verb in lean.STATUS_VERBS:
        return {}
    kind = lean.NOTE_VERBS.get(verb) or options.get("type", "note")
    return {"text": " ".join(words), "type": kind}


@pytest.mark.parametrize("argv", ACCEPTED, ids=" ".join)
def test_what_the_lean_reader_accepts_the_full_parser_reads_the_same_way(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCPILOT_SESSION", raising=False)
    parsed = lean._parse(argv)
    assert parsed is not None
    verb, session, as_json, words, options = parsed
    full_verb, full_session, full_json, full_words, full_fields = full_reading(argv)
    assert (cli.BY_NAME[argv[0]].name, session, as_json, words) == (full_verb, full_session, full_json, full_words)
    if verb != "run":
        assert lean_request(verb, words, options) == full_fields


@pytest.mark.parametrize("argv", REFUSED, ids=" ".join)
def test_anything_unusual_goes_to_the_full_parser(argv: list[str]) -> None:
    assert lean._parse(argv) is None


def test_the_hot_verbs_and_their_aliases_are_the_full_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("note", "explain", "warn", "milestone"):
        verb = cli.BY_NAME[name]
        for spelled in (verb.name, *verb.aliases):
            assert spelled in lean.NOTE_VERBS, spelled
            assert lean.NOTE_VERBS[spelled] == lean.NOTE_VERBS[name]
    for name, family in (("annotate", lean.ANNOTATE_VERBS), ("status", lean.STATUS_VERBS)):
        verb = cli.BY_NAME[name]
        assert {verb.name, *verb.aliases} == set(family)
    assert set(lean.VERBS) == set(lean.NOTE_VERBS) | lean.ANNOTATE_VERBS | lean.STATUS_VERBS | {"record", "run"}
    assert lean.KINDS == verbs._KINDS
    assert list(lean.SHELLS) == verbs.SHELLS


def test_the_session_defaults_to_docpilot_session_as_in_the_full_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCPILOT_SESSION", "feedbeef")
    assert lean._parse(["note", "x"]) == ("note", "feedbeef", False, ["x"], {})
    assert lean._parse(["note", "-s", "abcd", "x"]) == ("note", "abcd", False, ["x"], {})
    assert lean._parse(["status"]) == ("status", "feedbeef", False, [], {})


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
    done = _docpilot(daemon, "warn", "--json", "keep", "*this*")
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


def _full(daemon: Daemon, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The same command line through the full parser (cli.main), as before the lean path."""
    env = env or {**{k: v for k, v in os.environ.items() if k != "DOCPILOT_SESSION"}, "DOCPILOT_HOME": str(daemon.home)}
    return subprocess.run([sys.executable, "-m", "docpilotd.client.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=60)


def _uptime_blurred(text: str) -> str:
    return re.sub(r'"uptime_s": [0-9.e+-]+', '"uptime_s": N', re.sub(r", up \d+ s,", ", up N s,", text))


def test_annotate_status_and_record_print_what_the_full_client_prints(daemon: Daemon, tmp_path: Path) -> None:
    sid = daemon.call("start", description="same \u202e output")["id"]
    for argv in (["annotate", "-t", "w", "watch", "out"], ["add", "--json", "--type=m", "done"]):
        lean_run, full_run = _docpilot(daemon, *argv), _full(daemon, *argv)
        assert lean_run.returncode == full_run.returncode == 0, (lean_run.stderr, full_run.stderr)
        # The reply carries the new annotation's id and time: the same line with its own values.
        lean_line = re.sub(r'"(id|timestamp)": "[^"]*"', "", lean_run.stdout)
        assert lean_line == re.sub(r'"(id|timestamp)": "[^"]*"', "", full_run.stdout)
    notes = daemon.call("show", session=sid)["annotations"]
    assert [(a["annotation_type"], a["text"]) for a in notes] == [
        ("Warning", "watch out"), ("Warning", "watch out"), ("Milestone", "done"), ("Milestone", "done")]
    for argv in (["status"], ["status", "--json"], ["info", "-s", sid[:8]]):
        lean_run, full_run = _docpilot(daemon, *argv), _full(daemon, *argv)
        assert lean_run.returncode == full_run.returncode == 0, (lean_run.stderr, full_run.stderr)
        assert _uptime_blurred(lean_run.stdout) == _uptime_blurred(full_run.stdout)
        assert "<U+202E>" in lean_run.stdout or argv[1:] == ["--json"]
    argv = ["record", "--exit-code", "2", "--duration-ms", "7", "--shell", "bash", "--cwd", str(tmp_path), "--", "ls", "-l"]
    lean_run, full_run = _docpilot(daemon, *argv), _full(daemon, *argv)
    assert (lean_run.returncode, full_run.returncode) == (0, 0), (lean_run.stderr, full_run.stderr)
    assert lean_run.stdout == f"recorded in {sid} (1 commands)\n" and full_run.stdout == f"recorded in {sid} (2 commands)\n"
    stored = daemon.call("show", session=sid)["commands"]
    keep = ("command", "exit_code", "working_directory", "shell", "duration_ms")
    assert [{k: c[k] for k in keep} for c in stored] == 2 * [
        {"command": "ls -l", "exit_code": 2, "working_directory": str(tmp_path), "shell": "bash", "duration_ms": 7}]
    # Errors too: a session that is not there, under --json and not.
    for argv in (["status", "-s", "ffffffff"], ["annotate", "--json", "-s", "ffffffff", "x"], ["record", "-s", "ffffffff", "ls"]):
        lean_run, full_run = _docpilot(daemon, *argv), _full(daemon, *argv)
        assert (lean_run.returncode, lean_run.stdout, lean_run.stderr) == (full_run.returncode, full_run.stdout, full_run.stderr)
        assert lean_run.returncode == 4


def test_the_light_json_is_the_json_modules(tmp_path: Path) -> None:
    values = [
        {"a": 1, "b": [1, 2.5, None, True, False, "x\u202e\n\"\\ é \x07 \ud800"], "c": {}, "d": []},
        1e100, -0.0, 3, "s", [], float("inf"), {"k": {"n": [{"x": 1}]}}, 12345678901234567890, (1, 2),
    ]
    for value in values:
        assert transport.dumps(value) == json.dumps(value, ensure_ascii=False)
    with pytest.raises(TypeError):
        transport.dumps({"x": object()})
    for raw in (b'{"ok": true, "result": {"x": [1, 2.5, "\\u00e9", null, -1e5]}}', b"  [1] \n", b"NaN", b'"\\ud800"',
                b'{"a":1}{', b"", b"x", b"[1,]", b"\xff", b'{"a": "\xc3\xa9"}'):
        try:
            expected: object = json.loads(raw)
        except ValueError:
            expected = ValueError
        try:
            got: object = transport.loads(raw)
        except ValueError:
            got = ValueError
        assert repr(got) == repr(expected), raw


def test_a_note_imports_neither_json_socket_re_nor_typing(daemon: Daemon) -> None:
    # The fast start as the hooks run it: no site, and only what the note needs.
    sid = daemon.call("start", description="imports")["id"]
    entry = Path(lean.__file__).with_name("entry.py")
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[1:] = ['note', 'counted']; "
            "from docpilotd.client import entry; code = entry.main(); "
            "print(sorted({'re', 'json', 'socket', 'typing', 'argparse', 'pathlib', 'enum', 'site'} & set(sys.modules)))")
    env = {**os.environ, "DOCPILOT_HOME": str(daemon.home)}
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(entry.parent.parent.parent)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("[]\n"), done.stdout
    assert daemon.call("show", session=sid)["annotations"][-1]["text"] == "counted"


def test_the_fast_start_runs_the_hot_verbs_and_the_rest_with_site(daemon: Daemon, tmp_path: Path) -> None:
    # `python -I -S .../entry.py`, what a hooked shell's `docpilot` runs: the note without site,
    # `init` (shtab, from site-packages) with it, and both as the console script would.
    sid = daemon.call("start", description="fast")["id"]
    entry = str(Path(lean.__file__).with_name("entry.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCPILOT_")}
    env.update(DOCPILOT_HOME=str(daemon.home), XDG_DATA_HOME=str(tmp_path / "data"))
    noted = subprocess.run([sys.executable, "-I", "-S", entry, "note", "quick"], env=env, capture_output=True, text=True, timeout=60)
    assert (noted.returncode, noted.stdout) == (0, f"Note added to {sid}: quick\n"), noted.stderr
    init = subprocess.run([sys.executable, "-I", "-S", entry, "init", "bash"], env=env, capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    assert init.stdout == f"source {tmp_path / 'data' / 'docpilot' / 'docpilot.bash'}\n"
    assert (tmp_path / "data" / "docpilot" / "completions" / "docpilot.bash").stat().st_size > 0
    helped = subprocess.run([sys.executable, "-I", "-S", entry, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: docpilot")
    wrong = subprocess.run([sys.executable, "-I", "-S", entry, "strat"], env=env, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "did you mean 'start'" in wrong.stderr


def _shape_of(annotation: Any) -> Any:
    """results.py's type as lean's plain tables spell it."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (NotRequired, Required):
        return _shape_of(args[0])
    if is_typeddict(annotation):
        hints = get_type_hints(annotation, include_extras=True)
        return {key: (key in annotation.__required_keys__, _shape_of(hint)) for key, hint in hints.items()}
    if origin in (Union, types.UnionType):
        return tuple(None if a is type(None) else _shape_of(a) for a in args)
    if origin is list:
        return ("list", _shape_of(args[0]))
    if origin is dict:
        return ("map", _shape_of(args[1]))
    return annotation


def test_the_status_tables_are_results_status() -> None:
    assert lean._STATUS == _shape_of(results.Status)


def _variants(value: Any) -> Iterator[Any]:
    """`value` with one thing changed: a key left out, or a value of another kind (anywhere)."""
    others: list[Any] = [None, True, 7, 2.5, "text", [], {}]
    for other in others:
        if other != value or type(other) is not type(value):
            yield other
    if isinstance(value, dict):
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for changed in _variants(value[key]):
                yield {**value, key: changed}
    if isinstance(value, list) and value:
        for changed in _variants(value[0]):
            yield [changed, *value[1:]]


def test_status_accepts_exactly_the_replies_results_decode_accepts(daemon: Daemon) -> None:
    daemon.call("start", description="one")
    daemon.call("start", description="two")
    reply = daemon.call("status")
    assert lean.fits(reply, lean._STATUS)
    checked = 0
    for variant in _variants(reply):
        try:
            results.decode(results.Status, variant)
            decodes = True
        except ProtocolError:
            decodes = False
        assert lean.fits(variant, lean._STATUS) == decodes, variant
        checked += 1
    assert checked > 100


def test_a_status_reply_that_does_not_fit_is_the_full_clients_error(daemon: Daemon, tmp_path: Path) -> None:
    # A daemon of another version: its reply lacks a field. The lean path says what the full one says.
    sock = tmp_path / "run" / "docpilotd.sock"
    sock.parent.mkdir(mode=0o700)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock))
    server.listen(4)
    reply = daemon.call("status")
    del reply["daemon"]["pid"]

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                line = conn.makefile("rb").readline()
                answer = {"ok": True, "id": json.loads(line)["id"], "result": reply}
                conn.sendall(json.dumps(answer).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCPILOT_")}
    env["DOCPILOT_HOME"] = str(tmp_path)
    entry = "import sys; from docpilotd.client.entry import main; sys.exit(main())"
    lean_run = subprocess.run([sys.executable, "-c", entry, "status"], env=env, capture_output=True, text=True, timeout=60)
    full_run = subprocess.run([sys.executable, "-m", "docpilotd.client.cli", "status"], env=env, capture_output=True,
                              text=True, timeout=60)
    thread.join(10)
    server.close()
    assert (lean_run.returncode, lean_run.stdout, lean_run.stderr) == (full_run.returncode, full_run.stdout, full_run.stderr)
    assert lean_run.returncode == 8 and "result.daemon: missing 'pid'" in lean_run.stderr
