"""Typed results, shared by the daemon and the client (docpilotd/results.py, client/verbs.py).

What a user would check: every verb's reply from a real daemon decodes into the type its request
names, and is shown from it; the types say what the daemon really sends (its structs, field for
field); a reply that does not fit is one line and exit 8, never a traceback; a session whose
creation is not applied yet is never reported as one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from docpilotd import destination, results
from docpilotd import protocol as p
from docpilotd.client import verbs
from docpilotd.client.cli import BY_NAME, build_parser
from docpilotd.config import Config
from docpilotd.domain import model
from docpilotd.errors import ProtocolError, SessionNotFound
from docpilotd.paths import Layout
from docpilotd.runtime.engine import Engine, summarize
from docpilotd.runtime.handlers import Context, sessions, start, status
from docpilotd.storage import maintenance, recovery
from docpilotd.storage.store import SessionStore
from tests.daemon_harness import REFERENCE, Daemon, DaemonFactory

PROTOCOL_ERROR = 8


# -- decode ---------------------------------------------------------------------------------------


def _problem(shape: Any, value: Any) -> str:
    with pytest.raises(ProtocolError) as caught:
        results.decode(shape, value, "the reply to 'x'")
    assert caught.value.exit_code == PROTOCOL_ERROR
    return caught.value.message


def _command(**changes: Any) -> dict[str, Any]:
    command = {"command": "ls", "timestamp": "2025-01-01T00:00:00Z", "exit_code": 0, "working_directory": "/",
               "shell": "bash", "output": None, "error": None}
    command.update(changes)
    return command


def test_decode_returns_what_fits_unchanged_and_says_where_it_does_not() -> None:
    recorded = {"session": "s", "seq": 3, "commands": 1, "from_a_newer_daemon": [1]}
    assert results.decode(results.Recorded, recorded) is recorded, "unknown keys are accepted, nothing is copied"
    assert results.decode(results.Recorded, dict(recorded, duplicate=True, redacted=2, skipped="why"))
    assert "result: missing 'commands'" in _problem(results.Recorded, {"session": "s", "seq": 3})
    assert "result.skipped: a string expected, got null" in _problem(results.Recorded, dict(recorded, skipped=None))
    assert "result.saved: an integer expected, got true" in _problem(results.Saved, {"saved": True})
    assert "result: an object expected, got a list" in _problem(results.Saved, [])
    daemon = {"pid": 1, "version": "1", "uptime_s": 3, "durability": "always", "root": "/r", "degraded": {},
              "live_sessions": 0, "sessions": 0}
    assert results.decode(results.Status, {"daemon": daemon, "session": None}), "an integer is a number"
    message = _problem(results.Status, {"daemon": dict(daemon, degraded={"a": 1}), "session": None})
    assert "result.daemon.degraded['a']: a string expected, got 1" in message
    assert message.startswith("the reply to 'x' does not fit this client (") and "same version" in message
    backups = {"session": "s", "backups": [{"name": "a", "time": "t", "size": 1}, {"name": "b", "time": "t"}]}
    assert "result.backups[1]: missing 'size'" in _problem(results.Backups, backups)
    note = {"session": "s", "annotation": {"id": "i", "text": "t", "timestamp": "t", "annotation_type": "Shout"}}
    assert "result.annotation.annotation_type: one of 'Note'" in _problem(results.Annotated, note)


def test_a_long_list_is_checked_item_by_item_in_effect() -> None:
    document = json.loads(REFERENCE.read_bytes())
    document["commands"] = [_command(duration_ms=5) if i % 2 else _command() for i in range(2000)]
    document["state"] = {"Error": "disk on fire"}
    assert results.decode(results.SessionDocument, document) is document
    for field, value, expected in (
        ("exit_code", "0", "result.commands[700].exit_code: an integer or null expected, got '0'"),
        ("exit_code", False, "result.commands[700].exit_code: an integer or null expected, got false"),
        ("duration_ms", None, "result.commands[700].duration_ms: an integer expected, got null"),
        ("pipestatus", [0, "x"], "result.commands[700].pipestatus[1]: an integer expected, got 'x'"),
        ("timestamp", None, "result.commands[700].timestamp: a string expected, got null"),
    ):
        broken = json.loads(json.dumps(document))
        broken["commands"][700][field] = value
        assert expected in _problem(results.SessionDocument, broken)
    broken = json.loads(json.dumps(document))
    del broken["commands"][1999]["working_directory"]
    assert "result.commands[1999]: missing 'working_directory'" in _problem(results.SessionDocument, broken)


# -- the types say what the daemon sends ----------------------------------------------------------


def _fields(shape: Any) -> list[str]:
    return list(shape.__annotations__)


@pytest.mark.parametrize("shape, struct", [
    (results.SessionDocument, model.Session), (results.Command, model.CommandEntry),
    (results.Annotation, model.Annotation), (results.Event, model.SessionEvent),
    (results.Metadata, model.SessionMetadata), (results.SessionStats, model.SessionStats),
    (results.Recovery, recovery.RecoveryReport), (results.SessionRecovery, recovery.SessionReport),
    (results.Cleanup, maintenance.CleanupResult), (results.StorageStats, maintenance.StorageStats),
    (results.Backup, maintenance.BackupInfo),
], ids=lambda x: x.__name__)
def test_a_type_names_its_structs_fields_in_their_order(shape: Any, struct: Any) -> None:
    assert _fields(shape) == list(struct.__struct_fields__)
    # A field the struct leaves out when it is None (omit_defaults) is NotRequired, and only those.
    omitted = set()
    if struct.__struct_config__.omit_defaults:
        defaults = struct.__struct_defaults__
        omitted = {name for name, default in zip(struct.__struct_fields__[-len(defaults):], defaults) if default is None}
    assert shape.__optional_keys__ == omitted


def test_the_summary_the_engine_keeps_is_the_summary_type() -> None:
    session = msgspec.json.decode(REFERENCE.read_bytes(), type=model.Session)
    summary = summarize(session)
    assert list(summary) == _fields(results.SessionSummary)
    assert results.decode(results.SessionSummary, json.loads(msgspec.json.encode(summary))) == summary


# -- a real daemon --------------------------------------------------------------------------------

# Every request type, and the result type of its reply (variants that leave keys out included).
EXPECTED: dict[str, Any] = {
    "hello": results.Hello, "start": results.Started, "stop": results.SessionSummary,
    "pause": results.SessionSummary, "resume": results.SessionSummary, "annotate": results.Annotated,
    "record": results.Recorded, "status": results.Status, "sessions": list[results.SessionSummary],
    "show": results.SessionDocument, "annotations": results.Annotations, "save": results.Saved,
    "edit_annotation": results.AnnotationEdited, "delete_annotation": results.AnnotationDeleted,
    "backups": results.Backups, "restore": results.Restored, "recovery": results.Recovery,
    "cleanup": results.Cleanup, "stats": results.StorageStats,
    "export": results.SessionDocument | results.MarkdownExport, "import": results.SessionSummary,
    "generate": results.Generated | results.Written, "templates": results.Templates, "redact": results.Redacted, "purge": results.Purged,
    "search": results.Search, "redact_check": results.RedactChecked, "policy": results.PolicyShown,
    "points": results.PointsAvailable,
}


def test_every_request_types_reply_from_a_real_daemon_decodes(daemon: Daemon, tmp_path: Path) -> None:
    assert set(EXPECTED) == set(p.OPS), "a request type without its result type here"
    seen: dict[str, list[str]] = {}

    def call(op: str, *keys: str, **args: Any) -> Any:
        result = daemon.call(op, **args)
        assert results.decode(EXPECTED[op], result, op) is not None
        for key in keys:  # the variant this call is about is there
            assert key in result, (op, key, result)
        seen.setdefault(op, []).append(json.dumps(result)[:60])
        return result

    call("hello")
    assert call("status")["session"] is None and call("sessions") == []
    made = call("start", description="first", cwd="/w")
    first = made["id"]
    assert "also_live" not in made, "left out when no other session is live"
    second = call("start", "also_live", description="second", cwd="/w", output_file=str(tmp_path / "doc.md"))["id"]
    call("status", session=first)
    call("annotate", session=first, text="why", type="warning")
    call("record", session=first, command="ls", cwd="/w", exit_code=0, duration_ms=3, capture_id="i:1")
    call("record", "duplicate", session=first, command="ls", cwd="/w", capture_id="i:1")
    call("record", "skipped", session=first, command=" private", cwd="/w")
    call("record", "redacted", session=first, cwd="/w", command="curl -H 'Authorization: Bearer abcdefabcdef0123456789'")
    call("pause", session=first)
    call("resume", session=first)
    call("annotations", session=first)
    call("annotations", "total", session=first, type="warning", recent=1)
    noted = call("annotate", session=first, text="typo", type="note")["annotation"]["id"]
    call("edit_annotation", session=first, annotation=noted[:8], text="fixed", type="milestone")
    call("delete_annotation", session=first, annotation=noted)
    call("save")
    call("backups", session=first)
    call("show", session=first)
    call("export", "commands", session=first)
    call("export", "markdown", session=first, format="markdown")
    call("generate", "markdown", session=second)
    call("generate", "markdown", session=first, template="github", relative_to="", slow_seconds=0.5)
    call("templates", "templates", "default", "directory")
    call("generate", "path", session=first, output=str(tmp_path / "older-client.md"))
    call("search", "hits", text="ls")
    call("search", "more", text="ls", limit=1, failed=False, since="2000-01-01T00:00:00Z", dir="/w", session=first)
    call("redact_check", "replaced", "allowed", text="PGPASSWORD=hunter22 psql", patterns=["psql"])
    call("policy", "available", session=first)
    call("points", "earliest", "latest", session=first)
    call("policy", "chosen", session=first, policy="default")
    call("redact", session=first, pattern="why")
    call("restore", "restored_from", session=first, backup=daemon.call("backups", session=first)["backups"][-1]["name"])
    call("restore", "as_of", "journal_records", session=first, at=daemon.call("points", session=first)["latest"],
         dry_run=True)
    call("stop", session=first)
    call("sessions")
    call("recovery")
    call("stats")
    exported = tmp_path / "exported.json"
    exported.write_text(json.dumps(daemon.call("export", session=first)))
    call("cleanup", max_age_days=0)
    call("import", path=str(exported))
    call("purge", session=second, force=True)
    assert set(seen) == set(p.OPS)


def _json_args(verb: verbs.Verb[Any], tmp_path: Path, sid: str) -> list[str]:
    """A command line of `verb` that succeeds in the walk below."""
    given: dict[str, list[str]] = {
        "start": ["start", "walk", "--tag", "t"], "annotate": ["annotate", "--type", "warning", "a"],
        "note": ["note", "n"], "explain": ["explain", "e"], "warn": ["warn", "w"], "milestone": ["milestone", "m"],
        "record": ["record", "--exit-code", "1", "--", "make"], "cleanup": ["cleanup", "--max-age-days", "0"],
        "export": ["export", "--format", "markdown"], "import": ["import", str(tmp_path / "exported.json")],
        "redact": ["redact", "hunter2"], "purge": ["purge", "--session", sid, "--force"],
        "restore": ["restore", "BACKUP"], "search": ["search", "hunter2"], "policy": ["policy", "default"],
    }
    return given.get(verb.name, [verb.name])


def test_every_verb_shows_what_it_decoded_from_a_real_daemon(daemon: Daemon, tmp_path: Path) -> None:
    """Each verb with --json and without: exit 0, no traceback, and the --json line is the reply
    as the daemon sent it, decoding into the type the verb's request names."""
    order = ["start", "note", "explain", "warn", "milestone", "annotate", "record", "status", "sessions", "show",
             "annotations", "save", "backups", "restore", "pause", "resume", "recovery", "stats", "export",
             "generate", "templates", "search", "redact", "policy", "stop", "cleanup", "import", "purge"]
    daemon_verbs = [v for v in verbs.VERBS if v.request is not None]
    assert sorted(order) == sorted(v.name for v in daemon_verbs), "a verb this walk does not try"
    sid = daemon.call("start", description="before the walk", cwd="/w")["id"]
    daemon.call("annotate", session=sid, text="hunter2")
    for name in order:
        verb = BY_NAME[name]
        argv = _json_args(verb, tmp_path, sid)
        if name == "restore":
            argv = ["restore", daemon.call("backups", session=sid)["backups"][-1]["name"]]
        if name == "cleanup":  # `import` brings it back
            (tmp_path / "exported.json").write_text(json.dumps(daemon.call("export", session=sid)))
        env = {"DOCPILOT_SESSION": sid} if verb.session is not None else None
        for as_json in (True, False):
            if name in ("start", "import", "purge", "cleanup", "stop", "pause", "resume", "restore") and not as_json:
                continue  # changes the walk; its human output is checked in test_cli
            rc, out, err = daemon.client(argv[0], *(["--json"] if as_json else []), *argv[1:], env=env)
            assert rc == 0 and "Traceback" not in err, f"docpilot {argv}: exit {rc}: {err}"
            assert out, f"docpilot {argv} printed nothing"
            if as_json:
                _, _, expect = verb.request(build_parser(verb).parse_args(argv))  # type: ignore[misc]
                assert results.decode(expect, json.loads(out), name) is not None
        if name == "start":
            daemon.call("stop", session=json.loads(out)["id"])


# -- replies that do not fit ----------------------------------------------------------------------


class FakeDaemon:
    """A listener of our own uid where the daemon would be, answering each request line with
    `answer(request)` (a reply object, or raw bytes)."""

    def __init__(self, path: Path, answer: Callable[[dict[str, Any]], Any]) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.answer = answer
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                buffer = b""
                try:
                    while chunk := conn.recv(65536):
                        buffer += chunk
                        while b"\n" in buffer:
                            line, _, buffer = buffer.partition(b"\n")
                            reply = self.answer(json.loads(line))
                            conn.sendall(reply if isinstance(reply, bytes) else json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def fake(daemons: DaemonFactory) -> Iterator[Callable[[Callable[[dict[str, Any]], Any]], Daemon]]:
    made: list[FakeDaemon] = []

    def listen(answer: Callable[[dict[str, Any]], Any]) -> Daemon:
        d = daemons(start=False)
        made.append(FakeDaemon(d.socket_path, answer))
        return d

    yield listen
    for f in made:
        f.close()


SUMMARY = {"id": "5a1c0de5-0000-4000-8000-000000000000", "description": "d", "state": "Active",
           "created_at": "t", "updated_at": "t", "started_at": "t", "stopped_at": None, "commands": 0,
           "annotations": 0, "successful_commands": 0, "failed_commands": 0}


@pytest.mark.parametrize("args, result, says", [
    (("stop",), {k: v for k, v in SUMMARY.items() if k != "state"}, "result: missing 'state'"),
    (("stop", "--json"), {k: v for k, v in SUMMARY.items() if k != "state"}, "result: missing 'state'"),
    (("pause",), dict(SUMMARY, commands="0"), "result.commands: an integer expected"),
    (("note", "x"), {"session": SUMMARY["id"]}, "result: missing 'annotation'"),
    (("status",), {"daemon": {"pid": 1}, "session": None}, "result.daemon: missing 'version'"),
    (("sessions",), [SUMMARY, {"id": "x"}], "result[1]: missing 'description'"),
    (("start", "x"), dict(SUMMARY, also_live=[{"id": "y"}]), "result.also_live[0]: missing 'description'"),
    (("record", "--", "ls"), None, "result: an object expected, got null"),
], ids=lambda x: " ".join(x) if isinstance(x, tuple) else None)
def test_a_reply_that_does_not_fit_is_exit_8_and_one_line(fake: Callable[..., Daemon], args: tuple[str, ...],
                                                           result: Any, says: str) -> None:
    d = fake(lambda request: {"id": request.get("id"), "ok": True, "result": result})
    rc, out, err = d.client(*args)
    assert rc == PROTOCOL_ERROR, (rc, out, err)
    if "--json" in args:  # the error as a JSON object on standard output
        error = json.loads(out)["error"]
        assert error["code"] == "bad_request" and says in error["message"] and err == "", (out, err)
        return
    assert err.startswith("docpilot: the daemon's reply to '") and len(err.strip().splitlines()) == 1, err
    assert says in err and "Traceback" not in err and out == "", err


def test_a_reply_without_its_result_or_not_json_is_exit_8(fake: Callable[..., Daemon]) -> None:
    d = fake(lambda request: {"id": request.get("id"), "ok": True})
    rc, _, err = d.client("show")
    assert rc == PROTOCOL_ERROR and "'show' does not fit" in err and "got null" in err, err
    d = fake(lambda request: b"{not json\n")
    rc, _, err = d.client("save")
    assert rc == PROTOCOL_ERROR and "not JSON" in err and "Traceback" not in err, err


def test_join_decodes_status_too(fake: Callable[..., Daemon]) -> None:
    d = fake(lambda request: {"id": request.get("id"), "ok": True, "result": {"daemon": {}, "session": {"id": 1}}})
    rc, out, err = d.client("join")
    assert rc == PROTOCOL_ERROR and out == "" and "Traceback" not in err, err


# -- the verb table -------------------------------------------------------------------------------


def test_the_verb_table() -> None:
    names = [name for verb in verbs.VERBS for name in (verb.name, *verb.aliases)]
    assert len(names) == len(set(names)), "a name or alias used twice"
    for verb in verbs.VERBS:
        # A verb is answered by the daemon or by the client, or by the client only for some of its
        # invocations (`local_when`: redact --check).
        assert (verb.request is None) == (verb.local is not None and verb.local_when is None), verb.name
        if verb.request is not None:
            assert (verb.show is None) != (verb.deliver is None), verb.name
            assert (verb.target is None) == (verb.deliver is None), verb.name
    assert verbs.STDOUT == destination.STDOUT


def test_the_client_still_imports_neither_msgspec_nor_asyncio() -> None:
    code = "import sys, docpilotd.client.cli; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=True)
    modules = {m.split(".")[0] for m in done.stdout.decode().split()}
    assert not {"msgspec", "asyncio"} & modules


# -- a session not created yet --------------------------------------------------------------------


def test_a_session_not_created_yet_is_not_reported(tmp_path: Path) -> None:
    """A `start` whose change is not applied yet (waiting for its fsync) has no summary: it is not
    listed, not picked as the latest, not found by name; the status answers as a moment earlier."""
    root = tmp_path / "home"
    layout = Layout(root=root, run_dir=root / "run")
    for directory in layout.data_dirs():
        directory.mkdir(parents=True, exist_ok=True)
    engine = Engine(Config(durability="always"), SessionStore(layout))
    ctx = Context(engine, None, 0)

    async def scenario() -> None:
        made = (await start(p.Start(description="made", cwd="/w"), ctx))["id"]
        pending = engine.new_entry("0badc0de-0000-4000-8000-000000000000")
        pending.pending_state = "Active"  # as commit leaves it before the flush applies the Create
        engine._track(pending)  # (commit keeps the engine's set of live sessions up to date so)
        assert pending.summary is None
        assert [s["id"] for s in await sessions(p.Sessions(), ctx)] == [made]
        assert engine.resolve_latest(None).session_id == made
        answer = await status(p.Status(), ctx)
        assert answer["session"] is not None and answer["session"]["id"] == made
        assert results.decode(results.Status, json.loads(msgspec.json.encode(answer)))
        with pytest.raises(SessionNotFound):
            await status(p.Status(session=pending.session_id), ctx)
        started = await start(p.Start(description="third", cwd="/w"), ctx)
        assert [(o["id"], o["description"]) for o in started["also_live"]] == [(made, "made"), (pending.session_id, "")]
        await engine.close()

    asyncio.run(scenario())
