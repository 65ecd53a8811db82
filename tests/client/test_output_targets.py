"""Where `docpilot generate -o` and `docpilot export -o` write, against a real daemon: the client
writes on the user's side, and never replaces anything but a regular file the user named.

Every target is made inside the test's temporary directory: FIFOs with os.mkfifo, character
devices with os.mknod (a /dev/null-like and a /dev/full-like node), never a real system path.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon

OK, USAGE, STORAGE = 0, 2, 10

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making device nodes needs root (CAP_MKNOD)")


def _work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return work


def _session(d: Daemon, cwd: Path, *extra: str) -> str:
    rc, out, err = d.client("start", "Set up the staging proxy", *extra, cwd=cwd)
    assert rc == OK, err
    assert d.client("record", "--exit-code", "0", "--cwd", "/etc/nginx", "--", "sudo", "nginx", "-t")[0] == OK
    assert d.client("milestone", "Proxy is up")[0] == OK
    return out.strip()


def _run(d: Daemon, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    rc, out, err = d.client(*args, cwd=cwd)
    assert "Traceback" not in err and "Traceback" not in out, err
    return rc, out, err


def _fails(d: Daemon, code: int, *args: str, cwd: Path | None = None) -> str:
    rc, _, err = _run(d, *args, cwd=cwd)
    assert rc == code, f"docpilot {' '.join(args)}: expected exit {code}, got {rc}: {err}"
    assert err.startswith("docpilot: ") and len(err.strip().splitlines()) == 1, f"one error line: {err!r}"
    return err


def _document(d: Daemon) -> str:
    """The session's document (the session has no output file: it goes to standard output)."""
    rc, out, err = _run(d, "generate")
    assert rc == OK, err
    return out


class FifoReader:
    """Reads a FIFO until its writer closes it (the FIFO is open for reading before any writer)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if chunk:
                self.data += chunk
            elif self.data:
                break  # the writer closed it
            else:
                time.sleep(0.01)  # no writer yet

    def result(self) -> bytes:
        self.thread.join(timeout=30)
        os.close(self.fd)
        return self.data


def test_dash_is_standard_output(daemon: Daemon, tmp_path: Path) -> None:
    work = _work(tmp_path)
    sid = _session(daemon, work, "--output-file", "proxy.md")
    rc, out, err = _run(daemon, "generate", "-o", "-", cwd=work)
    assert rc == OK and out.startswith("# Set up the staging proxy\n"), err
    rc, exported, _ = _run(daemon, "export", "-o", "-", cwd=work)
    assert rc == OK and json.loads(exported)["id"] == sid
    rc, markdown, _ = _run(daemon, "export", "-f", "markdown", "-o", "-", cwd=work)
    assert rc == OK and markdown == out
    # Nothing named "-", and `-o -` wins over the session's output file.
    assert sorted(p.name for p in work.iterdir()) == []


def test_a_fifo_with_a_reader_is_written_into_and_stays_a_fifo(daemon: Daemon, tmp_path: Path) -> None:
    work = _work(tmp_path)
    sid = _session(daemon, work)
    expected = _document(daemon)
    fifo = work / "doc.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    rc, out, err = _run(daemon, "generate", "-o", str(fifo))
    assert rc == OK, err
    assert reader.result().decode() == expected
    assert stat.S_ISFIFO(fifo.lstat().st_mode), "the FIFO was replaced"
    assert out.startswith(f"wrote {fifo} ")
    # An export goes into a FIFO the same way.
    reader = FifoReader(fifo)
    assert _run(daemon, "export", "-o", str(fifo))[0] == OK
    assert json.loads(reader.result())["id"] == sid
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and sorted(p.name for p in work.iterdir()) == ["doc.fifo"]


def test_a_fifo_nobody_reads_is_refused_at_once(daemon: Daemon, tmp_path: Path) -> None:
    work = _work(tmp_path)
    _session(daemon, work)
    fifo = work / "doc.fifo"
    os.mkfifo(fifo, 0o600)
    for args in (("generate", "-o", str(fifo)), ("export", "-o", str(fifo)), ("export", "-f", "markdown", "-o", str(fifo))):
        started = time.monotonic()
        err = _fails(daemon, USAGE, *args)
        assert "nothing is reading" in err and time.monotonic() - started < 15, err
        assert stat.S_ISFIFO(fifo.lstat().st_mode), f"{args}: the FIFO was replaced"
    assert sorted(p.name for p in work.iterdir()) == ["doc.fifo"]


@needs_root
def test_a_character_device_is_written_into_never_replaced(daemon: Daemon, tmp_path: Path) -> None:
    work = _work(tmp_path)
    _session(daemon, work)
    null = work / "null"
    os.mknod(null, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    for args in (("generate", "-o", str(null)), ("export", "-o", str(null)), ("gen", "--json", "-o", str(null))):
        rc, _, err = _run(daemon, *args)
        assert rc == OK, (args, err)
        st = null.lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3), f"{args}: the device was replaced"
    assert sorted(p.name for p in work.iterdir()) == ["null"]


@needs_root
def test_a_full_device_is_a_disk_full_error_and_stays_a_device(daemon: Daemon, tmp_path: Path) -> None:
    work = _work(tmp_path)
    _session(daemon, work)
    full = work / "full"
    os.mknod(full, stat.S_IFCHR | 0o600, os.makedev(1, 7))  # like /dev/full: every write is ENOSPC
    for args in (("generate", "-o", str(full)), ("export", "-o", str(full))):
        err = _fails(daemon, STORAGE, *args)
        assert os.strerror(errno.ENOSPC) in err, err
        st = full.lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 7), f"{args}: the device was replaced"
    assert sorted(p.name for p in work.iterdir()) == ["full"]


@needs_root
def test_sockets_and_block_devices_are_refused_untouched(daemon: Daemon, tmp_path: Path) -> None:
    work = _work(tmp_path)
    _session(daemon, work)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path = work / "s.sock"
    listener.bind(str(sock_path))
    block = work / "blk"
    os.mknod(block, stat.S_IFBLK | 0o600, os.makedev(0, 0))  # no such device: nothing could be written
    try:
        for target, kind in ((sock_path, "a socket"), (block, "a block device")):
            for verb in ("generate", "export"):
                err = _fails(daemon, USAGE, verb, "-o", str(target))
                assert kind in err, err
        assert stat.S_ISSOCK(sock_path.lstat().st_mode) and stat.S_ISBLK(block.lstat().st_mode)
    finally:
        listener.close()
    assert sorted(p.name for p in work.iterdir()) == ["blk", "s.sock"]


def test_a_symlink_is_followed_and_its_target_replaced_atomically(daemon: Daemon, tmp_path: Path) -> None:
    work = _work(tmp_path)
    sid = _session(daemon, work)
    expected = _document(daemon)
    docs = work / "docs"
    docs.mkdir()
    target = docs / "real.md"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    inode = target.stat().st_ino
    link = work / "link.md"
    link.symlink_to("docs/real.md")
    rc, _out, err = _run(daemon, "generate", "-o", "link.md", cwd=work)
    assert rc == OK, err
    assert link.is_symlink() and os.readlink(link) == "docs/real.md", "the link itself was replaced"
    assert target.read_text() == expected and target.stat().st_ino != inode and target.stat().st_mode & 0o777 == 0o640
    # A link to a link, and an export: the same.
    second = work / "second.json"
    second.symlink_to(link)
    assert _run(daemon, "export", "-o", str(second))[0] == OK
    assert second.is_symlink() and link.is_symlink() and json.loads(target.read_text())["id"] == sid
    # A dangling link: its target is created.
    dangling = work / "dangling.md"
    dangling.symlink_to(docs / "new.md")
    assert _run(daemon, "generate", "-o", str(dangling))[0] == OK
    assert dangling.is_symlink() and (docs / "new.md").read_text() == expected
    # No temp file left anywhere (beside the link or beside the target).
    assert sorted(p.name for p in work.iterdir()) == ["dangling.md", "docs", "link.md", "second.json"]
    assert sorted(p.name for p in docs.iterdir()) == ["new.md", "real.md"]
    # A loop is an error, not a traceback.
    (work / "loop").symlink_to("loop")
    _fails(daemon, USAGE, "generate", "-o", str(work / "loop"))


def test_a_directory_gets_the_session_file_inside(daemon: Daemon, tmp_path: Path) -> None:
    work = _work(tmp_path)
    sid = _session(daemon, work)
    out_dir = work / "out"
    out_dir.mkdir()
    assert _run(daemon, "export", "-o", str(out_dir))[0] == OK
    assert json.loads((out_dir / f"{sid}.json").read_text())["id"] == sid
    assert _run(daemon, "export", "-f", "markdown", "-o", str(out_dir))[0] == OK
    assert _run(daemon, "generate", "--json", "-o", "out/", cwd=work)[0] == OK
    assert (out_dir / f"{sid}.md").read_text() == _document(daemon)
    _fails(daemon, USAGE, "generate", "-o", str(work / "missing") + "/")
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{sid}.json", f"{sid}.md"]


def test_nothing_inside_the_data_root_is_ever_a_target(daemon: Daemon, tmp_path: Path) -> None:
    work = _work(tmp_path)
    sid = _session(daemon, work)
    home = daemon.home
    config = home / "docpilotd.toml"
    config.write_text("# docpilotd configuration\ndurability = \"always\"\n")
    xdg_config = daemon.config_home / "docpilot" / "docpilotd.toml"
    xdg_config.parent.mkdir(parents=True, exist_ok=True)
    xdg_config.write_text("# the user's configuration\n")
    (work / "to-sessions").symlink_to(home / "sessions")
    (work / "to-config").symlink_to(config)
    (work / "to-home").symlink_to(home)
    session_file = home / "sessions" / f"{sid}.json"
    before = {p: p.read_bytes() for p in (config, xdg_config, session_file)}
    targets = [
        config, home, home / "notes.md", home / "sessions", home / "sessions" / "x.md", session_file,
        home / "run" / "x.md", home / "journal", home / "spool" / "x.md", home / "quarantine" / "x.json",
        work / "to-sessions" / "x.md", work / "to-config", work / "to-home", work / "to-home" / "x.md", xdg_config,
    ]
    for target in targets:
        for args in (("generate", "-o"), ("export", "-o"), ("export", "-f", "markdown", "-o")):
            err = _fails(daemon, USAGE, *args, str(target))
            assert "data directory" in err or "configuration file" in err, (target, err)
    # The older protocol's daemon-side write refuses them too.
    for target in (config, home / "notes.md", home / "sessions" / "x.md"):
        reply = daemon.request("generate", output=str(target))
        assert reply["ok"] is False and reply["error"]["code"] == "bad_usage", (target, reply)
    # start refuses an output file there.
    _fails(daemon, USAGE, "start", "Bad place", "--output-file", str(config))
    assert {p: p.read_bytes() for p in before} == before
    assert not [p for p in home.rglob("*") if p.name in ("notes.md", "x.md", "x.json", f"{sid}.md")]
    assert (work / "to-config").is_symlink()
    # The configuration still loads: the daemon starts again.
    assert daemon.terminate() == 0
    daemon.start()
    assert _run(daemon, "status")[0] == OK


def test_the_daemon_side_write_never_touches_a_fifo(daemon: Daemon, tmp_path: Path) -> None:
    """The older protocol (`generate` with an absolute `output`): the daemon writes regular files
    only; a FIFO or a device is refused, untouched."""
    work = _work(tmp_path)
    _session(daemon, work)
    fifo = work / "doc.fifo"
    os.mkfifo(fifo)
    reply = daemon.request("generate", output=str(fifo))
    assert reply["ok"] is False and reply["error"]["code"] == "bad_usage" and "FIFO" in reply["error"]["message"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    result = daemon.call("generate", output=str(work / "doc.md"))
    assert result["path"] == str(work / "doc.md") and (work / "doc.md").stat().st_size == result["bytes"]
