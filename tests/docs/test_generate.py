"""`docpilot generate` (gen, doc) and `docpilot export --format markdown` against a real daemon:
where the document goes, that it is written atomically, and that generating a large session
never holds up the daemon's other clients."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import msgspec

from docpilotd.storage import snapshot
from tests.conftest import build_session
from tests.daemon_harness import Daemon, DaemonFactory

USAGE, NO_SESSION = 2, 4


def _work(tmp_path: Path) -> Path:
    """A directory of the test's own (tmp_path also holds the daemon's data root)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return work


def _session(d: Daemon, cwd: Path, *extra: str) -> str:
    rc, out, err = d.client("start", "Set up the staging proxy", *extra, cwd=cwd)
    assert rc == 0, err
    sid = out.strip()
    assert d.client("record", "--exit-code", "0", "--cwd", "/etc/nginx", "--", "sudo", "nginx", "-t")[0] == 0
    assert d.client("record", "--exit-code", "1", "--cwd", "/etc/nginx", "--", "sudo", "systemctl", "restart", "ngnix")[0] == 0
    assert d.client("warn", "reload, never restart")[0] == 0
    assert d.client("milestone", "Proxy is up")[0] == 0
    return sid


def test_generate_writes_the_file_given(daemon: Daemon, tmp_path: Path) -> None:
    tmp_path = _work(tmp_path)
    sid = _session(daemon, tmp_path)
    rc, out, err = daemon.client("generate", "-o", "proxy.md", cwd=tmp_path)
    assert rc == 0, err
    target = tmp_path / "proxy.md"
    assert out.strip() == f"wrote {target} (2 commands, 2 annotations)"
    text = target.read_text()
    assert text.startswith("# Set up the staging proxy\n")
    assert "In `/etc/nginx`:" in text and "**Failed** (exit code 1)" in text
    assert "> **Warning:** reload, never restart" in text and "## Proxy is up" in text
    assert text.index("sudo nginx -t") < text.index("systemctl restart ngnix") < text.index("## Proxy is up")
    assert f"`{sid}`" in text
    # The aliases, and --json.
    for alias in ("gen", "doc"):
        result = daemon.client_json(alias, "--session", sid, "-o", str(tmp_path / f"{alias}.md"))
        assert result["path"] == str(tmp_path / f"{alias}.md") and result["commands"] == 2
        assert (tmp_path / f"{alias}.md").read_text() == text


def test_generate_uses_the_sessions_output_file(daemon: Daemon, tmp_path: Path) -> None:
    tmp_path = _work(tmp_path)
    (tmp_path / "docs").mkdir()
    sid = _session(daemon, tmp_path, "--output-file", "docs/proxy.md")  # relative to where it started
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rc, _out, err = daemon.client("doc", "--session", sid, cwd=elsewhere)
    assert rc == 0, err
    assert (tmp_path / "docs" / "proxy.md").read_text().startswith("# Set up the staging proxy\n")
    assert not list(elsewhere.iterdir())
    # -o wins over the output file; a directory gets the session's id as the file name.
    assert daemon.client("gen", "--session", sid, "-o", str(elsewhere))[0] == 0
    assert (elsewhere / f"{sid}.md").is_file()


def test_without_a_file_the_document_goes_to_standard_output(daemon: Daemon, tmp_path: Path) -> None:
    tmp_path = _work(tmp_path)
    sid = _session(daemon, tmp_path)
    rc, out, err = daemon.client("generate", cwd=tmp_path)
    assert rc == 0, err
    assert out.startswith("# Set up the staging proxy\n") and "## Proxy is up" in out
    assert json.loads(daemon.client("generate", "--json")[1])["markdown"] == out
    # export --format markdown: the same document, to standard output or to a file.
    rc, exported, _ = daemon.client("export", "--format", "markdown", "--session", sid)
    assert rc == 0 and exported == out
    assert daemon.client("export", "-f", "markdown", "-o", str(tmp_path / "e.md"))[0] == 0
    assert (tmp_path / "e.md").read_text() == out
    assert not list(tmp_path.glob(".*tmp*"))


def test_the_file_is_replaced_atomically_and_keeps_its_mode(daemon: Daemon, tmp_path: Path) -> None:
    tmp_path = _work(tmp_path)
    _session(daemon, tmp_path)
    target = tmp_path / "proxy.md"
    target.write_text("old content\n")
    os.chmod(target, 0o640)
    inode = target.stat().st_ino
    assert daemon.client("generate", "-o", str(target))[0] == 0
    assert target.read_text().startswith("# Set up the staging proxy")
    assert target.stat().st_ino != inode, "a new file renamed over the old one, not rewritten in place"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proxy.md"]


def test_bad_destinations_are_refused(daemon: Daemon, tmp_path: Path) -> None:
    tmp_path = _work(tmp_path)
    _session(daemon, tmp_path)
    rc, _, err = daemon.client("generate", "-o", str(daemon.home / "sessions" / "doc.md"))
    assert rc == USAGE and "data directory" in err
    rc, _, err = daemon.client("generate", "-o", str(tmp_path / "missing" / "doc.md"))
    # A directory that does not exist is the command line's fault (as for export): exit 2.
    assert rc == USAGE and "not a directory" in err
    assert daemon.client("generate", "--session", "ffffffff")[0] == NO_SESSION
    assert not (daemon.home / "sessions" / "doc.md").exists()


def test_generating_a_large_session_never_holds_up_other_clients(daemon: Daemon, tmp_path: Path) -> None:
    tmp_path = _work(tmp_path)
    big = build_session(commands=60_000, annotations=600)
    source = tmp_path / "big.json"
    source.write_bytes(snapshot.encode_plain(big))
    sid = daemon.call("import", path=str(source))["id"]
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            daemon.call("status")
            latencies.append(time.monotonic() - started)
            time.sleep(0.005)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        started = time.monotonic()
        result = daemon.call("generate", session=sid, output=str(tmp_path / "big.md"))
        took = time.monotonic() - started
    finally:
        done.set()
        prober.join()
    assert result["commands"] == 60_000
    assert (tmp_path / "big.md").stat().st_size == result["bytes"] > 1_000_000
    # The document took a while; meanwhile every other request was answered promptly.
    assert took > 0.3, f"too small a session to show anything ({took:.2f} s)"
    assert len(latencies) >= 5 and max(latencies) < max(0.25, took / 4), (took, max(latencies))
    assert msgspec.json.decode((daemon.home / "sessions" / f"{sid}.json").read_bytes())["id"] == sid


def test_the_new_verbs_say_when_the_daemon_is_not_running(daemons: DaemonFactory) -> None:
    d = daemons(start=False)
    for args in (("generate",), ("gen", "-o", "x.md"), ("doc",), ("redact", "--session", "abcd", "s3cret"),
                 ("purge", "--session", "abcd"), ("export", "--format", "markdown")):
        rc, _, err = d.client(*args)
        assert rc == 3 and "docpilotd run" in err, (args, rc, err)
    rc, _, err = d.client("redact", "--session", "abcd")  # no secret given (standard input is empty)
    assert rc == USAGE and "no secret" in err


def test_export_markdown_as_json(daemon: Daemon, tmp_path: Path) -> None:
    sid = _session(daemon, _work(tmp_path))
    result = daemon.client_json("export", "--format", "markdown", "--session", sid)
    assert result["session"] == sid and result["markdown"].startswith("# Set up the staging proxy\n")
