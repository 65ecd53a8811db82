"""`docpilot search` against a real daemon: what a person finds, and what the index never keeps.

Each test runs a real `docpilotd run` in a temporary DOCPILOT_HOME and asks through the real
client (or the protocol, for what a client cannot type). The index is read back as bytes where a
test is about what it must not hold, and damaged, deleted or interrupted where a test is about its
being derived: whatever happens to it, search answers from the sessions.
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from docpilotd.domain import changes, timestamps
from docpilotd.domain.model import Annotation, CommandEntry, SessionMetadata
from docpilotd.storage import snapshot
from tests.daemon_harness import Daemon, DaemonFactory, wait_for

NOW_NS = time.time_ns()


def _ago(days: float) -> str:
    return timestamps.format_ns(NOW_NS - int(days * 86400 * 1e9))


def _search(d: Daemon, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    rc, out, err = d.client("search", "--json", *args, env=env)
    assert rc == 0 and "Traceback" not in err, f"docpilot search {args}: exit {rc}: {err}"
    result: dict[str, Any] = json.loads(out)
    return result


def _texts(result: dict[str, Any]) -> list[str]:
    return [hit["text"] for hit in result["hits"]]


def _complete(d: Daemon, timeout: float = 30.0) -> None:
    wait_for(lambda: d.call("search", text="anything")["complete"], timeout=timeout, what="a complete search index")


def _index_bytes(d: Daemon) -> bytes:
    directory = d.home / "index"
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


def _record(d: Daemon, sid: str, command: str, **fields: Any) -> None:
    d.call("record", session=sid, command=command, **{"cwd": "/home/ada", "exit_code": 0, **fields})


# -- what a person finds ---------------------------------------------------------------------------


def test_finds_a_command_across_sessions_newest_first_with_the_session_named(daemon: Daemon) -> None:
    old = daemon.call("start", description="Renew the TLS certificates", cwd="/etc/letsencrypt")["id"]
    _record(daemon, old, "certbot renew --dry-run", cwd="/etc/letsencrypt", exit_code=1, started_at=_ago(3))
    _record(daemon, old, "systemctl reload nginx", cwd="/etc/nginx")
    daemon.call("stop", session=old)
    new = daemon.call("start", description="Move the blog", cwd="/srv")["id"]
    _record(daemon, new, "certbot renew", cwd="/srv/blog")
    _record(daemon, new, "ls -la", cwd="/srv/blog")

    found = _search(daemon, "certbot", "renew")
    assert _texts(found) == ["certbot renew", "certbot renew --dry-run"], "newest first, both sessions"
    assert [h["session"] for h in found["hits"]] == [new, old]
    assert [h["description"] for h in found["hits"]] == ["Move the blog", "Renew the TLS certificates"]
    first = found["hits"][0]
    assert first["directory"] == "/srv/blog" and first["exit_code"] == 0 and first["match"] == "command"
    assert found["complete"] is True and found["more"] is False

    # A partial last word is the start of one; punctuation is not part of a word; case does not matter.
    assert _texts(_search(daemon, "certb")) == ["certbot renew", "certbot renew --dry-run"]
    assert _texts(_search(daemon, "CERTBOT renew --dry")) == ["certbot renew --dry-run"]
    assert _texts(_search(daemon, "ls")) == ["ls -la"], "a two-letter command is a word of its own"
    assert _search(daemon, "zebra")["hits"] == []

    rc, out, err = daemon.client("search", "certbot", "renew")
    assert rc == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0].startswith("today ") and f'{new[:8]} "Move the blog"' in lines[0], out
    assert lines[1] == "  /srv/blog $ certbot renew  [exit 0]", out
    assert "/etc/letsencrypt $ certbot renew --dry-run  [exit 1]" in out
    assert f'{old[:8]} "Renew the TLS certificates"' in out


def test_the_filters_failed_since_dir_session_limit(daemon: Daemon) -> None:
    a = daemon.call("start", description="web", cwd="/etc/nginx")["id"]
    b = daemon.call("start", description="other", cwd="/srv")["id"]
    _record(daemon, a, "nginx -t", cwd="/etc/nginx", exit_code=1, started_at=_ago(10))
    _record(daemon, a, "nginx -t", cwd="/etc/nginx/sites-enabled", exit_code=0, started_at=_ago(1))
    _record(daemon, b, "nginx -t", cwd="/etc/nginx2", exit_code=2, started_at=_ago(0.5))
    _record(daemon, b, "nginx -t", cwd="/srv", exit_code=None, started_at=_ago(0.1))
    daemon.call("annotate", session=b, text="nginx -t passes now")

    every = _search(daemon, "nginx -t")
    assert len(every["hits"]) == 5 and every["hits"][0]["kind"] == "annotation"

    failed = _search(daemon, "--failed", "nginx", "-t")
    assert [h["exit_code"] for h in failed["hits"]] == [2, 1], "failed commands only, no annotation, no unknown exit"

    recent = _search(daemon, "--since", "2d", "nginx -t")
    assert len(recent["hits"]) == 4 and all(h.get("exit_code") != 1 for h in recent["hits"])
    assert len(_search(daemon, "--since", _ago(0.3), "nginx")["hits"]) == 2  # an RFC 3339 time as it is

    under = _search(daemon, "--dir", "/etc/nginx", "nginx")
    assert sorted(h["directory"] for h in under["hits"]) == ["/etc/nginx", "/etc/nginx/sites-enabled"], \
        "the directory and below it, not /etc/nginx2"
    assert len(_search(daemon, "--dir", "/", "nginx")["hits"]) == 4, "every command, no annotation"

    only_b = _search(daemon, "--session", b[:6], "nginx")
    assert {h["session"] for h in only_b["hits"]} == {b} and len(only_b["hits"]) == 3

    limited = _search(daemon, "--limit", "2", "nginx")
    assert len(limited["hits"]) == 2 and limited["more"] is True
    rc, _, err = daemon.client("search", "--limit", "2", "nginx")
    assert rc == 0 and "more matches" in err

    # $DOCPILOT_SESSION does not narrow a search: only --session does.
    assert len(_search(daemon, "nginx", env={"DOCPILOT_SESSION": a})["hits"]) == 5


def test_a_relative_dir_is_where_the_client_runs(daemon: Daemon) -> None:
    work = daemon.home.parent / "work"
    (work / "site").mkdir(parents=True)
    sid = daemon.call("start", description="site")["id"]
    _record(daemon, sid, "hugo build", cwd=str(work / "site" / "public"))
    _record(daemon, sid, "hugo build", cwd=str(work))
    rc, out, err = daemon.client("search", "--json", "--dir", "site", "hugo", cwd=work)
    assert rc == 0, err
    assert [h["directory"] for h in json.loads(out)["hits"]] == [str(work / "site" / "public")]


def test_output_snippets_when_the_words_are_in_the_output(daemon: Daemon) -> None:
    sid = daemon.call("start", description="certs")["id"]
    output = "Processing /etc/letsencrypt/renewal/example.org.conf\n" + "x " * 200 + "\nCert not yet due for renewal\n"
    _record(daemon, sid, "certbot renew", exit_code=0, output=output)

    hit = _search(daemon, "due for renewal")["hits"][0]
    assert hit["text"] == "certbot renew" and hit["match"] == "output"
    assert "not yet due for renewal" in hit["snippet"] and len(hit["snippet"]) < 200
    in_command = _search(daemon, "certbot")["hits"][0]
    assert in_command["match"] == "command" and "snippet" not in in_command

    rc, out, _ = daemon.client("search", "due", "for", "renewal")
    assert rc == 0 and "  | " in out and "due for renewal" in out.splitlines()[2]


def test_annotations_are_found_with_their_type_and_follow_edits_and_deletes(daemon: Daemon) -> None:
    sid = daemon.call("start", description="db")["id"]
    note = daemon.call("annotate", session=sid, text="the replica lags behind", type="warning")["annotation"]
    daemon.call("annotate", session=sid, text="replica caught up", type="milestone")

    hits = _search(daemon, "replica")["hits"]
    assert [(h["kind"], h["annotation_type"], h["text"]) for h in hits] == [
        ("annotation", "Milestone", "replica caught up"), ("annotation", "Warning", "the replica lags behind")]
    assert hits[1]["annotation_id"] == note["id"] and "directory" not in hits[1]
    rc, out, _ = daemon.client("search", "lags")
    assert rc == 0 and "  # Warning: the replica lags behind" in out

    daemon.call("edit_annotation", session=sid, annotation=note["id"], text="the standby is fine")
    assert _search(daemon, "lags")["hits"] == [], "the old text is not found after an edit"
    edited = _search(daemon, "standby")["hits"]
    assert [(h["text"], h["timestamp"]) for h in edited] == [("the standby is fine", note["timestamp"])]

    daemon.call("delete_annotation", session=sid, annotation=note["id"])
    assert _search(daemon, "standby")["hits"] == []
    assert _texts(_search(daemon, "replica")) == ["replica caught up"]


def test_restore_and_import_are_reflected(daemons: DaemonFactory, tmp_path: Path) -> None:
    d = daemons(env={"DOCPILOT_BACKUPS_KEPT": "5"})
    sid = d.call("start", description="restore me")["id"]
    _record(d, sid, "apt install postgresql")
    d.call("save")
    _record(d, sid, "apt remove postgresql")
    d.call("save")
    newest = d.call("backups", session=sid)["backups"][0]["name"]  # the snapshot of the first save
    exported = tmp_path / "exported.json"
    exported.write_text(json.dumps(d.call("export", session=sid)))
    d.call("restore", session=sid, backup=newest)
    assert _texts(_search(d, "postgresql")) == ["apt install postgresql"], "the restored session, not the one before"

    d.call("purge", session=sid, force=True)
    assert _search(d, "postgresql")["hits"] == []
    d.call("import", path=str(exported))
    assert _texts(_search(d, "postgresql")) == ["apt remove postgresql", "apt install postgresql"]


# -- what the index never keeps --------------------------------------------------------------------


def test_after_redact_the_secret_is_found_nowhere_not_even_in_the_index_files(daemon: Daemon) -> None:
    secret = "zq9hunter2xyzzy"
    sid = daemon.call("start", description="hooks")["id"]
    _record(daemon, sid, f"curl -X POST https://example.org/hooks/{secret}", output=f"posted to {secret}\nok")
    daemon.call("annotate", session=sid, text=f"the hook id is {secret}")
    other = daemon.call("start", description="unrelated")["id"]
    _record(daemon, other, "curl https://example.org/status")

    assert len(_search(daemon, secret)["hits"]) == 2
    assert secret.encode() in _index_bytes(daemon), "the index holds what the session holds (the test can fail)"

    rc, _, err = daemon.client("redact", "--session", sid, secret)
    assert rc == 0, err
    assert _search(daemon, secret)["hits"] == []
    assert _search(daemon, "zq9hun")["hits"] == [], "nor by a prefix of it"
    assert secret.encode() not in _index_bytes(daemon), "no page, segment or WAL frame of the index keeps it"
    assert _texts(_search(daemon, "curl")) == ["curl https://example.org/status",
                                               "curl -X POST https://example.org/hooks/[REDACTED]"]


def test_after_purge_the_sessions_hits_are_gone_and_its_text_with_them(daemon: Daemon) -> None:
    word = "qx7purgedword"
    sid = daemon.call("start", description="to purge")["id"]
    _record(daemon, sid, f"echo {word}")
    kept = daemon.call("start", description="kept")["id"]
    _record(daemon, kept, "echo kept")
    assert len(_search(daemon, word)["hits"]) == 1
    daemon.call("stop", session=sid)
    rc, _, err = daemon.client("purge", "--session", sid)
    assert rc == 0, err
    assert _search(daemon, word)["hits"] == [] and _texts(_search(daemon, "echo")) == ["echo kept"]
    assert word.encode() not in _index_bytes(daemon)


def test_the_index_is_private_to_its_owner(daemon: Daemon) -> None:
    sid = daemon.call("start", description="perm")["id"]
    _record(daemon, sid, "whoami")
    _search(daemon, "whoami")
    directory = daemon.home / "index"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = [p for p in directory.iterdir()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), \
        [(p.name, oct(p.stat().st_mode)) for p in files]


# -- derived: rebuilt whatever happens to it ---------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "garbage", "other schema"])
def test_an_index_damaged_while_the_daemon_is_down_is_rebuilt_at_start(daemons: DaemonFactory, damage: str) -> None:
    d = daemons()
    sid = d.call("start", description="kept")["id"]
    _record(d, sid, "terraform apply")
    d.call("stop", session=sid)
    assert _texts(_search(d, "terraform")) == ["terraform apply"]
    assert d.terminate() == 0
    index = d.home / "index" / "search.sqlite3"
    if damage == "deleted":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(os.urandom(64 * 1024))
    else:
        import sqlite3

        conn = sqlite3.connect(index)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
    d.start()
    _complete(d)
    assert _texts(_search(d, "terraform")) == ["terraform apply"]
    log = d.log(since_start=True)
    assert "search index" in log and "Traceback" not in log


def test_an_index_deleted_while_running_is_rebuilt(daemon: Daemon) -> None:
    sid = daemon.call("start", description="kept")["id"]
    _record(daemon, sid, "kubectl rollout restart deploy/web")
    assert len(_search(daemon, "rollout")["hits"]) == 1
    for path in (daemon.home / "index").iterdir():
        path.unlink()
    # At once, a search says it is incomplete rather than failing; within seconds it is whole again.
    early = daemon.call("search", text="rollout")
    assert early["complete"] is False or len(early["hits"]) == 1
    wait_for(lambda: (r := daemon.call("search", text="rollout"))["complete"] and len(r["hits"]) == 1,
             timeout=20, what="the index made again")
    _record(daemon, sid, "kubectl get pods")
    assert _texts(_search(daemon, "kubectl")) == ["kubectl get pods", "kubectl rollout restart deploy/web"]


def _uuid() -> str:
    return str(uuid.uuid4())


def _write_sessions(home: Path, count: int, commands: int) -> list[str]:
    """Stopped sessions as snapshot files (what a data root holds after many days)."""
    metadata = SessionMetadata("/home/ada", "zsh", "linux", "host", "ada", [], None, {})
    ids = []
    start = NOW_NS - count * 3_600_000_000_000
    for n in range(count):
        at = start + n * 3_600_000_000_000
        sid = f"{n:08x}-0000-4000-8000-{n:012x}"
        session = changes.create(changes.Create(session_id=sid, description=f"session {n}", at=timestamps.format_ns(at),
                                                event_id=_uuid(), metadata=metadata))
        for i in range(commands):
            entry = CommandEntry(command=f"make target-{i} unique{n}x", timestamp=timestamps.format_ns(at + (i + 1) * 10**9),
                                 exit_code=0, working_directory="/home/ada", shell="zsh", output=None, error=None)
            session = changes.apply(session, changes.RecordCommand(entry=entry, event_id=_uuid()))
        note = Annotation(id=_uuid(), text=f"note {n}", timestamp=timestamps.format_ns(at + (commands + 1) * 10**9),
                          annotation_type="Note")
        session = changes.apply(session, changes.Annotate(annotation=note, event_id=_uuid()))
        session = changes.apply(session, changes.Stop(at=timestamps.format_ns(at + (commands + 2) * 10**9), event_id=_uuid()))
        path = home / "sessions" / f"{sid}.json"
        path.write_bytes(snapshot.encode(session, commands + 3))
        path.chmod(0o600)
        ids.append(sid)
    return ids


def test_kill9_while_the_index_is_built_leaves_it_consistent_after_restart(daemons: DaemonFactory) -> None:
    d = daemons()
    assert d.terminate() == 0
    count, commands = 900, 60
    ids = _write_sessions(d.home, count, commands)
    for path in (d.home / "index").iterdir():
        path.unlink()
    d.start()
    partial = wait_for(lambda: (r := d.call("search", text="target-7", limit=1000))["hits"] and r, timeout=30,
                       what="the first sessions indexed")
    d.kill9()
    assert partial["complete"] is False, "killed while building (the test builds too little otherwise)"
    d.start()
    _complete(d, timeout=120)
    found = d.call("search", text="make target-7", limit=1000)
    sessions = [h["session"] for h in found["hits"]]
    assert len(sessions) == count and set(sessions) == set(ids), "every session once, none twice"
    assert found["more"] is False
    assert len(d.call("search", text="unique123x", limit=1000)["hits"]) == commands


def test_kill9_while_changes_are_indexed_loses_none_and_doubles_none(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="busy")["id"]
    for i in range(300):
        _record(d, sid, f"step {i} of the migration")
    d.kill9()
    d.start()
    _complete(d)
    hits = d.call("search", text="migration", limit=1000)["hits"]
    assert len(hits) == 300 and len({h["text"] for h in hits}) == 300


def test_a_session_file_copied_in_while_running_is_found(daemons: DaemonFactory, tmp_path: Path) -> None:
    d = daemons()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sessions").mkdir(parents=True)
    [sid] = _write_sessions(elsewhere, 1, 3)
    os.replace(elsewhere / "sessions" / f"{sid}.json", d.sessions_dir / f"{sid}.json")
    wait_for(lambda: len(d.call("search", text="unique0x")["hits"]) == 3, timeout=20,
             what="the adopted session in the index")


# -- what a person may type ------------------------------------------------------------------------

BAD = ['"', "AND", "OR", "NOT", "*", "NEAR(", "NEAR(a b", "a\"b", "(", ")", "^x", "-", "col:x", "{text}: x", "a AND",
       "x*", "'", ":", "\\", "NEAR(\"a\" \"b\", 0)", "text:certbot", "é", "日本", "\u202e", "🙂"]


@pytest.mark.parametrize("text", BAD)
def test_query_syntax_is_plain_text_never_an_error(daemon: Daemon, text: str) -> None:
    rc, out, err = daemon.client("search", "--json", text)
    assert "Traceback" not in err and "Traceback" not in out
    if rc == 2:  # a usage error: one line, or (--json) one JSON object
        assert (err.startswith("docpilot: ") and len(err.strip().splitlines()) == 1) or \
            json.loads(out)["error"]["code"] == "bad_usage", (out, err)
    else:
        assert rc == 0, (rc, err)
        result = json.loads(out)
        assert result["hits"] == [] and result["complete"] in (True, False)


def test_what_no_client_would_send_is_refused_cleanly(daemon: Daemon) -> None:
    sid = daemon.call("start", description="x")["id"]
    _record(daemon, sid, "echo hello")
    for text in ["", "   ", "\x00", "\ud800", "a\x00b", "x" * 4096, "hello\x00"]:
        reply = daemon.request("search", text=text)
        assert reply["ok"] or reply["error"]["code"] in ("bad_usage", "bad_request"), (text[:10], reply)
    for fields in [{"since": "yesterday"}, {"dir": "relative/dir"}, {"session": "zz"}, {"limit": 0}, {"limit": 100000}]:
        reply = daemon.request("search", text="hello", **fields)
        assert not reply["ok"] and reply["error"]["code"] in ("bad_usage", "bad_request", "no_such_session"), reply
    assert daemon.call("search", text="hello")["hits"][0]["text"] == "echo hello"
    assert "Traceback" not in daemon.log()
    for argv in (["search"], ["search", ""], ["search", "--since", "soon", "x"], ["search", "--limit", "0", "x"],
                 ["search", "--dir", "", "x"]):
        rc, _, err = daemon.client(*argv)
        assert rc == 2 and "Traceback" not in err and err.startswith("docpilot: "), (argv, rc, err)


def test_what_a_hit_holds_reaches_the_terminal_escaped(daemon: Daemon) -> None:
    sid = daemon.call("start", description="evil \x1b]0;title\x07 \u202e")["id"]
    _record(daemon, sid, "printf 'x\x1b[2J' \u202eevil")
    rc, out, _ = daemon.client("search", "printf")
    assert rc == 0 and "\x1b" not in out and "\u202e" not in out and "\\u202e" in out, out


# -- fsck ------------------------------------------------------------------------------------------


def _fsck(d: Daemon, *args: str) -> tuple[int, str]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "docpilotd.admin", "fsck", *args], env=d.env(), capture_output=True,
                          text=True, timeout=120)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done.returncode, done.stdout


def test_fsck_checks_the_index_and_repair_or_reindex_builds_it(daemons: DaemonFactory) -> None:
    d = daemons()
    sid = d.call("start", description="fsck")["id"]
    _record(d, sid, "zpool scrub tank")
    d.call("stop", session=sid)
    _search(d, "zpool")
    assert d.terminate() == 0
    index = d.home / "index" / "search.sqlite3"

    rc, out = _fsck(d)
    assert rc == 0 and "search index: ok (1 session(s))" in out, out
    index.write_bytes(b"not a database at all" * 100)
    before = index.read_bytes()
    rc, out = _fsck(d)
    assert rc == 0, "the index is derived: its state never fails fsck"
    assert "search index: damaged" in out and "would be made anew" in out, out
    assert index.read_bytes() == before and sorted(p.name for p in index.parent.iterdir()) == ["search.sqlite3"], \
        "a check changes nothing"
    rc, out = _fsck(d, "--json")
    assert json.loads(out)["search_index"]["state"] == "damaged"

    rc, out = _fsck(d, "--repair")
    assert rc == 0 and "search index: made anew" in out and "1 session(s) indexed" in out, out
    assert "search index: ok" in _fsck(d)[1]
    rc, out = _fsck(d, "--reindex")
    assert rc == 0 and "made anew (rebuilt on request)" in out, out

    d.start()
    _complete(d)
    assert _texts(_search(d, "zpool scrub")) == ["zpool scrub tank"]
    assert "to index" not in d.log(since_start=True), "fsck left nothing for the daemon to index"
