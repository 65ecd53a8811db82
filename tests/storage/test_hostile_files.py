"""Hostile entries in the data root: special files of every kind where docpilotd's files should be,
names that are not UTF-8, and files of another user -- at start-up, in fsck and while the daemon
runs.

Everything here is made under temporary directories: FIFOs (os.mkfifo), sockets (bound in a short
temporary directory, then renamed into place), a null-like character device node (1:3, made with
mknod, when root; block nodes are left out: merely opening one can make the kernel create a
device, which the code before this change did), directories, symbolic links to a
temporary file outside the data root (checked unchanged afterwards), names given as bytes, and
files chowned to uid 65534 (root only). Nothing touches a system path.

Before the storage layer took care, each of these tests failed: a read of a FIFO blocked forever (a
thread of the I/O pool, start-up recovery or fsck), a directory in a session's place stopped the
daemon (exit 10: link of a directory), a name that is not UTF-8 crashed every start writing the
quarantine reason, the lock file was followed through a symbolic link. A call that could block runs
in a thread with a deadline (`within`), so such a failure is reported, never a hung test suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from docpilotd.domain import changes
from docpilotd.errors import StorageError
from docpilotd.paths import Layout
from docpilotd.storage import journal, quarantine, snapshot
from docpilotd.storage.fsops import NotRegularFile, OsFileOps, display_name, safe_name
from docpilotd.storage.journal import SegmentWriter
from docpilotd.storage.lock import DataLock
from docpilotd.storage.recovery import recover_all
from docpilotd.storage.store import SessionStore
from tests.conftest import Clock, annotate_change, build_session, encoded
from tests.daemon_harness import Daemon, DaemonFactory, daemon, daemons, wait_for  # noqa: F401  (fixtures)

T = TypeVar("T")
ROOT = os.geteuid() == 0
NOBODY = 65534
# Every kind of entry that is not a regular file of the daemon's user. "device" is a null-like
# character node (1:3); "foreign" a regular file with plausible content, owned by uid 65534. Those
# two need root.
KINDS = ["fifo", "socket", "directory", "symlink", "device", "foreign"]
NEEDS_ROOT = {"device", "foreign"}
kinds = [pytest.param(k, marks=pytest.mark.skipif(not ROOT, reason="mknod and chown need root")) if k in NEEDS_ROOT else k for k in KINDS]


# -- helpers ------------------------------------------------------------------------------------


def within(seconds: float, call: Callable[[], T], unblock: Path | None = None) -> T:
    """`call()` in a thread; fail if it has not returned after `seconds` (it was waiting on
    something: a FIFO...). FIFOs under `unblock` are then opened for writing, so that a reader
    stuck on one returns and the thread ends."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(("ok", call()))
        except BaseException as exc:
            result.append(("error", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            _unblock(unblock)
        pytest.fail(f"blocked: did not return within {seconds} s")
    kind, value = result[0]
    if kind == "error":
        raise value
    return value  # type: ignore[no-any-return]


def _unblock(root: Path) -> None:
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A file outside the data root that symbolic links point to; must never change."""
    target = tmp_path / "outside" / "precious.txt"
    target.parent.mkdir()
    target.write_bytes(b"not the daemon's\n")
    before = (target.read_bytes(), target.stat().st_mtime_ns, target.stat().st_ino)
    yield target
    assert (target.read_bytes(), target.stat().st_mtime_ns, target.stat().st_ino) == before, "a file outside the data root changed"


def place(path: Path, kind: str, outside: Path, content: bytes = b"") -> None:
    """Make an entry of `kind` at `path` (see KINDS)."""
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "socket":
        short = Path(tempfile.mkdtemp(prefix="dpfs-sock-", dir="/tmp"))
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.bind(str(short / "s"))  # sun_path is short: bind there, then move it into place
            os.rename(short / "s", path)
        finally:
            shutil.rmtree(short, ignore_errors=True)
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_bytes(b"a file inside")
    elif kind == "symlink":
        path.symlink_to(outside)
    elif kind == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    elif kind == "foreign":
        path.write_bytes(content or b'{"planted": true}')
        os.chown(path, NOBODY, NOBODY)
    else:  # pragma: no cover
        raise ValueError(kind)


def describe(kind: str) -> str:
    """What reports call it."""
    return {
        "fifo": "a FIFO", "socket": "a socket", "directory": "a directory", "symlink": "a symbolic link",
        "device": "a character device",
    }.get(kind, "owned by another user")


def entries(root: Path) -> dict[str, tuple[str, bytes | None]]:
    """Every entry under `root` by lstat, regular files with content; nothing else is opened."""
    found: dict[str, tuple[str, bytes | None]] = {}
    for dirpath, dirnames, names in os.walk(os.fsencode(root)):
        for name in dirnames + names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.fsdecode(os.path.relpath(path, os.fsencode(root)))
            content = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
            found[rel] = (f"{stat.S_IFMT(st.st_mode):o}:{st.st_uid}", content)
    return found


def quarantined(layout: Layout) -> dict[str, os.stat_result]:
    """What is in quarantine (reasons aside), by original name, with its lstat."""
    return {
        p.name.split("_", 1)[1]: p.lstat() for p in layout.quarantine.iterdir() if not p.name.endswith(".reason")
    }


def saved(layout: Layout) -> tuple[str, bytes]:
    """A session as the daemon leaves it: snapshot and backup at seq 2, two later changes only in
    the journal. Returns its id and the encoded body recovery must give."""
    store = SessionStore(layout)
    clock = Clock()
    session = build_session(commands=2, clock=clock)
    store.save(session, 2)
    store.save(session, 2)  # the first becomes a backup
    writer = SegmentWriter(store.ops, layout.journal / journal.segment_name(session.id, 3))
    writer.open()
    for seq in (3, 4):
        change = annotate_change(f"after the snapshot {seq}", clock())
        writer.write(journal.frame(seq, change))
        session = changes.apply(session, change)
    writer.sync()
    writer.close()
    return session.id, encoded(session)


UNKNOWN = "0a1b2c3d-0000-4000-8000-00000000beef"
PLACES = ["main", "unknown", "backup", "segment", "temp"]


def where(layout: Layout, place_name: str, sid: str) -> Path:
    """Where a file of docpilotd's would be: the session's own snapshot, the snapshot of an id that
    has no other file, a newer backup, a later journal segment, a temp file of a save."""
    return {
        "main": layout.session_file(sid),
        "unknown": layout.session_file(UNKNOWN),
        "backup": layout.backups / f"{sid}_1999999999.000000000.json",
        "segment": layout.journal / journal.segment_name(sid, 5),
        "temp": layout.sessions / f".tmp-{sid}.json.0123456789ab.tmp",
    }[place_name]


# -- the FileOps seam ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in kinds if (k.values[0] if hasattr(k, "values") else k) != "foreign"])
def test_reads_refuse_what_is_not_a_regular_file_without_waiting(tmp_path: Path, outside: Path, kind: str) -> None:
    path = tmp_path / "entry"
    place(path, kind, outside)
    ops = OsFileOps()
    for read in (lambda: ops.read_bytes(path), lambda: ops.read_tail(path, 10)):
        with pytest.raises(NotRegularFile) as caught:
            within(5, read, unblock=tmp_path)
        assert f"not a regular file ({describe(kind)})" in str(caught.value)
    assert ops.list_kinds(tmp_path)["entry"] == describe(kind)[2:]


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_an_append_never_waits_on_or_writes_through_what_is_not_a_file(tmp_path: Path, outside: Path, kind: str) -> None:
    """A FIFO without a reader: opening it for writing used to wait for one, forever."""
    path = tmp_path / "segment.wal"
    place(path, kind, outside)
    with pytest.raises(NotRegularFile):
        within(5, lambda: OsFileOps().open_append(path), unblock=tmp_path)


def test_names_that_are_not_utf8_are_readable_in_reports_and_safe_in_quarantine(layout: Layout) -> None:
    raw = b"caf\xe9\n.json"
    assert display_name(raw) == "caf\ufffd\\x0a.json (not UTF-8: b'caf\\xe9\\n.json')"
    assert display_name(os.fsdecode(raw)) == display_name(raw)
    assert safe_name(os.fsdecode(raw)) == "caf%E9%0A.json"
    path = Path(os.fsdecode(bytes(layout.sessions) + b"/" + raw))
    path.write_bytes(b"x")
    target = quarantine.move(OsFileOps(), layout.quarantine, path, "testing")
    assert target.name.endswith("_caf%E9%0A.json") and target.read_bytes() == b"x"
    reason = json.loads(target.with_name(target.name + ".reason").read_bytes())
    assert reason["original"].endswith("/sessions/caf\ufffd\\x0a.json (not UTF-8: b'caf\\xe9\\n.json')")


# -- recovery and fsck, in process --------------------------------------------------------------


@pytest.mark.parametrize("place_name", PLACES)
@pytest.mark.parametrize("kind", kinds)
def test_fsck_reports_and_repair_moves_aside_whatever_is_where_a_file_should_be(
    layout: Layout, outside: Path, kind: str, place_name: str
) -> None:
    sid, body = saved(layout)
    path = where(layout, place_name, sid)
    if place_name == "main":
        path.unlink()
    content = snapshot.encode(build_session(commands=9, session_id=sid if place_name != "unknown" else UNKNOWN), 9)
    place(path, kind, outside, content)
    before = entries(layout.root)

    # fsck: finishes, names it, changes nothing.
    report, found = within(10, lambda: recover_all(SessionStore(layout), repair=False, check_backups=True), layout.root)
    assert encoded(found[sid].session) == body
    assert UNKNOWN not in found
    text = msgspec.json.encode(report).decode()  # always encodable
    assert path.name in text and describe(kind) in text, text
    assert not report.healthy
    assert entries(layout.root) == before

    # repair (fsck --repair; start-up the same, though it reads backups only when it needs them):
    # moved to quarantine as it is, the session as it was.
    report, found = within(10, lambda: recover_all(SessionStore(layout), repair=True, check_backups=True), layout.root)
    assert encoded(found[sid].session) == body
    assert UNKNOWN not in found
    if place_name == "main":  # the session's file, restored
        assert stat.S_ISREG(path.lstat().st_mode) and path.lstat().st_uid == os.geteuid()
    else:
        assert not os.path.lexists(path)
    kept = quarantined(layout)[path.name]
    expected_type = {"directory": stat.S_IFDIR, "symlink": stat.S_IFLNK, "fifo": stat.S_IFIFO, "socket": stat.S_IFSOCK,
                     "device": stat.S_IFCHR, "foreign": stat.S_IFREG}[kind]
    assert stat.S_IFMT(kept.st_mode) == expected_type
    main = SessionStore(layout).read(layout.session_file(sid), sid)
    assert main.usable
    if place_name == "main":  # restored with the journal replayed
        assert encoded(main.session) == body  # type: ignore[arg-type]
    again, _ = recover_all(SessionStore(layout), repair=False, check_backups=True)
    assert all(s.status == "ok" for s in again.sessions if s.session_id == sid), again
    assert not [line for line in again.other if not line.startswith("ignored")], again.other


def test_names_that_are_not_utf8_never_stop_recovery(layout: Layout) -> None:
    """Every start used to crash (UnicodeEncodeError writing the quarantine reason)."""
    sid, body = saved(layout)
    root = bytes(layout.root)
    planted = [
        b"/sessions/\xff\xfe.json", b"/sessions/" + sid.encode() + b"\xff.json", b"/sessions/.tmp-\xff.json.0123456789ab.tmp",
        b"/backups/" + sid.encode() + b"\xe9_1999999999.json", b"/journal/\xe9." + b"0" * 15 + b"9.wal",
        b"/sessions/notes-\xff.txt", b"/quarantine/\xff",
    ]
    for name in planted:
        with open(root + name, "wb") as handle:
            handle.write(b"junk")
    report, found = within(10, lambda: recover_all(SessionStore(layout), repair=False, check_backups=True))
    text = msgspec.json.encode(report).decode()
    assert "(not UTF-8: b'" in text and list(found) == [sid]
    report, found = within(10, lambda: recover_all(SessionStore(layout), repair=True))
    assert encoded(found[sid].session) == body and report.clean_after_repair, report
    msgspec.json.encode(report)
    # The five with our names went to quarantine, under safe names, with readable reasons.
    reasons = [json.loads(p.read_bytes()) for p in layout.quarantine.iterdir() if p.name.endswith(".reason")]
    assert len(reasons) == 5 and all("(not UTF-8: b'" in r["original"] for r in reasons), reasons
    assert all(name.isprintable() for name in os.listdir(layout.quarantine) if name != "\udcff")
    assert os.path.exists(root + b"/sessions/notes-\xff.txt")  # not docpilotd's name: left alone


@pytest.mark.skipif(not ROOT, reason="chown needs root")
def test_files_of_another_user_are_never_trusted(layout: Layout) -> None:
    """Only root can put them there; docpilotd's own files are the only ones read as sessions."""
    sid, body = saved(layout)
    clock = Clock(2_000_000_000 * 10**9)
    # A newer backup, valid and verified, of another user, with a damaged snapshot: not a source.
    planted = build_session(commands=7, session_id=sid, clock=clock)
    newer = layout.backups / f"{sid}_1999999999.000000000.json"
    newer.write_bytes(snapshot.encode(planted, 2))
    # A later journal segment of another user holding a valid record: never replayed.
    segment = layout.journal / journal.segment_name(sid, 5)
    segment.write_bytes(journal.frame(5, annotate_change("planted", clock())))
    # A whole valid session of another user: never adopted.
    stranger = layout.session_file(UNKNOWN)
    stranger.write_bytes(snapshot.encode(build_session(session_id=UNKNOWN), 1))
    layout.session_file(sid).write_bytes(b"{torn")
    for path in (newer, segment, stranger):
        os.chown(path, NOBODY, NOBODY)

    report, found = recover_all(SessionStore(layout), repair=False, check_backups=True)
    text = msgspec.json.encode(report).decode()
    assert text.count(f"owned by another user (uid {NOBODY}") >= 3, text
    report, found = recover_all(SessionStore(layout), repair=True)
    assert encoded(found[sid].session) == body  # from our own backup and journal only
    assert UNKNOWN not in found
    assert not newer.exists() and not segment.exists() and not stranger.exists()
    assert {newer.name, segment.name, stranger.name} <= set(quarantined(layout))
    assert all(st.st_uid == NOBODY for name, st in quarantined(layout).items() if name in (newer.name, segment.name))


@pytest.mark.parametrize("kind", kinds)
def test_a_save_moves_aside_whatever_took_the_place_of_the_session_file(layout: Layout, outside: Path, kind: str) -> None:
    """What the daemon does when, while it runs, a FIFO (or anything) replaces a live session's
    file: the save must neither wait on it nor fail (it used to read it first)."""
    store = SessionStore(layout)
    session = build_session(commands=3)
    store.save(session, 1)
    path = layout.session_file(session.id)
    path.unlink()
    place(path, kind, outside, snapshot.encode(session, 1))
    result = within(10, lambda: store.save(session, 2), layout.root)
    assert result.quarantined is not None and result.backup is None
    assert stat.S_ISREG(path.lstat().st_mode) and store.read(path, session.id).usable
    assert path.name in quarantined(layout)
    reason = json.loads(result.quarantined.with_name(result.quarantined.name + ".reason").read_bytes())
    assert describe(kind) in reason["reason"], reason  # what it was, not what reading it gave


@pytest.mark.parametrize("kind", kinds)
def test_a_journal_segment_name_taken_by_something_else_is_set_aside(layout: Layout, outside: Path, kind: str) -> None:
    path = layout.journal / journal.segment_name(UNKNOWN, 1)
    place(path, kind, outside)
    writer = SegmentWriter(OsFileOps(), path)
    within(10, writer.open, layout.root)
    writer.write(b"record")
    writer.sync()
    writer.close()
    assert path.read_bytes() == b"record" and path.lstat().st_uid == os.geteuid()
    assert path.name in quarantined(layout)


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_the_lock_file_is_never_followed_or_waited_on(layout: Layout, outside: Path, kind: str) -> None:
    place(layout.lock, kind, outside)
    with pytest.raises(StorageError, match="not the lock file"):
        within(5, DataLock(layout.lock).acquire, layout.root)


# -- real daemons and the real fsck -------------------------------------------------------------


def _fill(d: Daemon) -> tuple[dict[str, list[str]], str]:
    """Sessions with acknowledged changes: two stopped, one live. Returns notes per session and
    the id of a stopped one whose file will be replaced."""
    notes: dict[str, list[str]] = {}
    for n in range(3):
        sid = d.call("start", description=f"hostile {n}")["id"]
        notes[sid] = []
        for i in range(3):
            d.call("annotate", session=sid, text=f"{n}-{i}")
            notes[sid].append(f"{n}-{i}")
        d.call("save")
        d.call("annotate", session=sid, text=f"{n}-journal-only")
        notes[sid].append(f"{n}-journal-only")
        if n < 2:
            d.call("stop", session=sid)
    return notes, next(iter(notes))


def _served(d: Daemon, notes: dict[str, list[str]]) -> None:
    for sid, texts in notes.items():
        assert [a["text"] for a in d.call("show", session=sid)["annotations"]] == texts


@pytest.mark.parametrize("kind", kinds)
def test_the_daemon_starts_serves_and_stops_whatever_is_in_its_data_root(daemons: DaemonFactory, outside: Path, kind: str) -> None:
    """One entry of `kind` in place of a stopped session's file and under docpilotd's names in
    every data directory; the daemon used to hang (FIFO), or exit 10 (directory), and took files
    of another user for its own (adopting a session, replaying a record)."""
    d = daemons()
    notes, victim = _fill(d)
    live = list(notes)[2]
    assert d.terminate() == 0
    d.session_file(victim).unlink()
    (d.home / "spool" / "active" / "current").unlink()
    planted_session = snapshot.encode(build_session(session_id=UNKNOWN), 1)
    planted_record = journal.frame(99, annotate_change("planted", Clock(4_000_000_000 * 10**9)()))
    spots = [
        (d.session_file(victim), planted_session), (d.session_file(UNKNOWN), planted_session),
        (d.backups_dir / f"{victim}_1999999999.000000000.json", planted_session),
        (d.journal_dir / journal.segment_name(live, 99), planted_record),
        (d.quarantine_dir / f"x_{victim}.json", b""), (d.home / "spool" / "0123abcd.jsonl", b""),
        (d.home / "spool" / "active" / "current", b""),
    ]
    for spot, content in spots:
        place(spot, kind, outside, content)
    d.start(timeout=20)
    _served(d, notes)
    assert d.request("show", session=UNKNOWN)["ok"] is False  # never adopted
    report = json.dumps(d.call("recovery"))
    assert describe(kind) in report, report  # says what was there
    d.call("annotate", session=live, text="after the restart")
    notes[live].append("after the restart")
    assert d.terminate() == 0
    d.start()
    _served(d, notes)
    assert d.terminate() == 0


def test_the_daemon_starts_with_names_that_are_not_utf8_everywhere(daemons: DaemonFactory) -> None:
    d = daemons()
    notes, victim = _fill(d)
    assert d.terminate() == 0
    for directory in ("sessions", "backups", "journal", "quarantine", "spool"):
        for name in (b"\xff\xfe.json", victim.encode() + b"\xe9_1999999999.json", b"\xe9." + b"0" * 15 + b"9.wal", b"x\xff.jsonl"):
            with open(bytes(d.home / directory) + b"/" + name, "wb") as handle:
                handle.write(b"junk\n")
    d.start(timeout=20)
    _served(d, notes)
    assert "(not UTF-8: b'" in json.dumps(d.call("recovery"))
    assert d.terminate() == 0


def test_fifos_in_place_of_live_session_files_never_block_the_daemon(daemons: DaemonFactory) -> None:
    """More FIFOs than the I/O pool has threads (4): each used to block one for good."""
    d = daemons()
    ids = [d.call("start", description=f"live {n}")["id"] for n in range(6)]
    for sid in ids:
        d.call("annotate", session=sid, text="before")
    d.call("save")
    for sid in ids:
        d.session_file(sid).unlink()
        os.mkfifo(d.session_file(sid))
    time.sleep(1.0)  # the watcher's turn
    for sid in ids:
        started = time.monotonic()
        d.call("annotate", session=sid, text="after")
        assert time.monotonic() - started < 2.0
    wait_for(lambda: all(stat.S_ISREG(d.session_file(s).lstat().st_mode) for s in ids), timeout=10, what="files rewritten")
    for sid in ids:
        assert [a["text"] for a in json.loads(d.session_file(sid).read_bytes())["annotations"]][:1] == ["before"]
    assert sum(1 for n in os.listdir(d.quarantine_dir) if not n.endswith(".reason")) == len(ids)
    assert d.terminate() == 0
    assert d.proc is not None and d.proc.returncode == 0


def _fsck(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCPILOT_")}
    env["DOCPILOT_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "docpilotd.admin", "fsck", *args], capture_output=True, text=True,
                          timeout=60, env=env)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


@pytest.mark.parametrize("kind", kinds)
def test_fsck_returns_and_reports_whatever_is_in_the_data_root(layout: Layout, outside: Path, kind: str) -> None:
    sid, _ = saved(layout)
    layout.session_file(sid).unlink()
    place(layout.session_file(sid), kind, outside)
    place(layout.journal / journal.segment_name(UNKNOWN, 1), kind if kind != "foreign" else "fifo", outside)
    Path(os.fsdecode(bytes(layout.backups) + b"/" + sid.encode() + b"\xff_1.json")).write_bytes(b"x")
    check = _fsck(layout.root)
    assert check.returncode == 1 and describe(kind) in check.stdout and "(not UTF-8: b'" in check.stdout, check.stdout
    payload = json.loads(_fsck(layout.root, "--json").stdout)
    assert payload["healthy"] is False
    repair = _fsck(layout.root, "--repair")
    assert repair.returncode == 0, repair.stdout
    assert _fsck(layout.root).returncode == 0


def test_sigterm_is_answered_while_entries_are_set_aside(daemons: DaemonFactory, outside: Path) -> None:
    """The hung daemon used to ignore SIGTERM: recovery never ended, so neither did the loop."""
    d = daemons()
    _notes, victim = _fill(d)
    assert d.terminate() == 0
    d.session_file(victim).unlink()
    os.mkfifo(d.session_file(victim))
    proc = d.spawn()
    wait_for(lambda: d.socket_path.exists() or proc.poll() is not None, timeout=20, what="the daemon to serve")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


class _Unmovable(OsFileOps):
    """The real file system, where nothing can be renamed (a mount point, an immutable entry...)
    and links are refused as for a directory: what made the daemon exit 10 (EPERM)."""

    def rename(self, src: Path, dst: Path) -> None:
        raise PermissionError(1, "Operation not permitted", str(src))


def test_what_cannot_be_moved_aside_is_reported_and_left_alone(layout: Layout, outside: Path) -> None:
    sid, body = saved(layout)
    layout.session_file(sid).unlink()
    place(layout.session_file(sid), "directory", outside)
    stray = layout.backups / f"{sid}_1999999999.000000000.json"
    place(stray, "directory", outside)
    report, found = within(10, lambda: recover_all(SessionStore(layout, ops=_Unmovable()), repair=True), layout.root)
    assert encoded(found[sid].session) == body  # served from memory all the same
    (s,) = report.sessions
    assert s.status == "needs_repair" and any(p.startswith("unresolved: sessions/") for p in s.problems), s
    assert any(line.startswith(f"unresolved: backups/{stray.name}") for line in report.other), report.other
    assert not report.clean_after_repair
    assert layout.session_file(sid).is_dir() and stray.is_dir()
    assert not [p for p in layout.quarantine.iterdir()], "no reason left for a move that did not happen"


def test_redact_and_purge_skip_what_is_not_a_file(layout: Layout, outside: Path) -> None:
    """Special entries with a session's name in quarantine (set aside by recovery) and in
    sessions/: scrubbing used to read them (a FIFO blocked it), purging to unlink them (a directory
    failed it)."""
    from docpilotd.domain.redaction import Redactor, literal_rule
    from docpilotd.storage import scrub

    store = SessionStore(layout)
    session = build_session(commands=2, description="password hunter2")
    store.save(session, 1)
    store.save(session, 1)
    for kind, name in (("fifo", f"2000-01-01T000000Z_{session.id}.json"), ("directory", f"2000-01-01T000001Z_{session.id}.json")):
        place(layout.quarantine / name, kind, outside)
    place(layout.sessions / f".tmp-{session.id}.json.0123456789ab.tmp", "fifo", outside)
    scrubber = scrub.Scrubber(Redactor([literal_rule("hunter2")]), "hunter2")
    report = within(10, lambda: scrub.scrub_files(store, session.id, scrubber), layout.root)
    assert report.rewritten  # the backup
    removed = within(10, lambda: scrub.purge_files(store, session.id), layout.root)
    assert f"sessions/{session.id}.json" in removed
    assert (layout.quarantine / f"2000-01-01T000001Z_{session.id}.json").is_dir()  # not docpilotd's to delete
