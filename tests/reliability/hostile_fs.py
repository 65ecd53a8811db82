"""A hostile file system: whatever other programs (or root) leave in the data root, at start-up and
while the real daemon runs, with figures.

Kinds: FIFO, socket, character device node (null-like, 1:3, made with mknod: root only), directory
(with a file in it), symbolic link to a file outside the data root, a regular file whose name is
not UTF-8, and a regular file owned by another user (uid 65534: root only) holding plausible content
(a valid session, a valid journal record) that must never be served.

Places, in every data directory: sessions/ (in place of a stopped session's file, of a live
session's file while the daemon runs, under an unknown id, a temp file's name), backups/ (a newer
generation's name), journal/ (a later segment of a live session, the very segment the next
checkpoint opens, a segment of an unknown id), quarantine/, spool/ (a spool file, a claimed one)
and spool/active/ (`current` and its temporary name).

Each kind gets its own data root: sessions with acknowledged changes, then the daemon stopped,
entries placed, `docpilotd fsck` (text and --json) run, the daemon started; then, while it runs and
a client keeps sending changes, entries placed again (live files replaced, a state change, a
checkpoint onto the taken segment name); then SIGTERM, a restart, and the checker: every
acknowledged change served exactly as acknowledged, nothing planted served, the file outside the
data root unchanged.

Figures: special files placed; hangs (a start not serving within 20 s, a request not answered
within 5 s, a SIGTERM not answered within 20 s, an fsck not done within 60 s); crashes (an exit
nobody asked for, a SIGTERM answered with anything but 0, a traceback in a log or from fsck);
starts that served; acknowledged changes lost; planted content served; files outside the data root
changed. Only temporary directories are used; nothing touches a system path.
"""

from __future__ import annotations

import hashlib
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
from dataclasses import dataclass, field
from pathlib import Path

from docpilotd.storage import journal, snapshot
from tests.conftest import Clock, annotate_change, build_session
from tests.daemon_harness import Daemon, base_env, read_line

ROOT = os.geteuid() == 0
NOBODY = 65534
KINDS = ("fifo", "socket", "device", "directory", "symlink", "name not UTF-8", "other user")
NEEDS_ROOT = ("device", "other user")
UNKNOWN = "0a1b2c3d-0000-4000-8000-00000000beef"
UNKNOWN_LATER = "0a1b2c3d-0000-4000-8000-00000000cafe"
PLANTED = "planted by another program"
START_S, REQUEST_S, STOP_S, FSCK_S = 20.0, 5.0, 20.0, 60.0


@dataclass
class FsFigures:
    kinds: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    placed: int = 0
    hangs: int = 0
    crashes: int = 0
    starts: int = 0
    starts_served: int = 0
    acknowledged: int = 0
    lost: int = 0
    planted_served: int = 0
    outside_changed: int = 0
    fsck_runs: int = 0
    fsck_returned: int = 0
    saves_refused: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 12:
            self.examples.append(text)


class _Problem(Exception):
    """A round cannot go on (the daemon hung or died); already counted."""


# -- placing entries ------------------------------------------------------------------------------


def _place(path: Path, kind: str, outside: Path, content: bytes = b"") -> bool:
    """Make an entry of `kind` at `path` (a name that is not UTF-8: beside it). False when the
    place was taken meanwhile (the daemon wrote there first)."""
    try:
        if kind == "fifo":
            os.mkfifo(path, 0o600)
        elif kind == "socket":
            short = Path(tempfile.mkdtemp(prefix="dpfs-sock-", dir="/tmp"))
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.bind(str(short / "s"))  # sun_path is short: bind there, then move it
                if os.path.lexists(path):
                    return False
                os.rename(short / "s", path)
            finally:
                shutil.rmtree(short, ignore_errors=True)
        elif kind == "device":
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        elif kind == "directory":
            path.mkdir()
            (path / "inside").write_bytes(b"a file inside a directory")
        elif kind == "symlink":
            path.symlink_to(outside)
        elif kind == "name not UTF-8":
            raw = os.fsencode(path)
            dot = raw.rfind(b".")
            mangled = raw[:dot] + b"\xff\xfe" + raw[dot:] if dot > raw.rfind(b"/") else raw + b"\xff"
            with open(mangled, "xb") as handle:
                handle.write(content or b"junk\n")
        elif kind == "other user":
            with open(path, "xb") as handle:
                handle.write(content or b"junk\n")
            os.chown(path, NOBODY, NOBODY)
        else:  # pragma: no cover
            raise ValueError(kind)
    except FileExistsError:
        return False
    return True


def _replace(path: Path, kind: str, outside: Path, content: bytes = b"") -> bool:
    """Put an entry of `kind` where the daemon's file is (a name that is not UTF-8 only beside it)."""
    if kind != "name not UTF-8":
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # one placed earlier, that the daemon left alone
            else:
                path.unlink()
        except FileNotFoundError:
            pass
    return _place(path, kind, outside, content)


def _outside_state(outside_dir: Path) -> dict[str, tuple[int, int, int, str]]:
    found = {}
    for path in sorted(outside_dir.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
        found[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return found


# -- the daemon, with deadlines --------------------------------------------------------------------


def _start(d: Daemon, f: FsFigures, what: str) -> None:
    proc = d.spawn()
    f.starts += 1
    deadline = time.monotonic() + START_S
    while True:
        if proc.poll() is not None:
            f.crashes += 1
            f.note(f"{what}: exited {proc.returncode} before serving: {d.log(since_start=True)[-300:]}")
            raise _Problem
        if d._try_hello() is not None:
            f.starts_served += 1
            return
        if time.monotonic() > deadline:
            f.hangs += 1
            f.note(f"{what}: no answer within {START_S:.0f} s")
            d.kill9()
            raise _Problem
        time.sleep(0.03)


def _stop(d: Daemon, f: FsFigures, what: str) -> None:
    if not d.alive:
        f.crashes += 1
        f.note(f"{what}: the daemon was gone before SIGTERM (exit {d.proc.returncode if d.proc else '?'})")
        raise _Problem
    d.send_signal(signal.SIGTERM)
    assert d.proc is not None
    try:
        code = d.proc.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        f.hangs += 1
        f.note(f"{what}: SIGTERM not answered within {STOP_S:.0f} s")
        d.kill9()
        raise _Problem from None
    if code != 0:
        f.crashes += 1
        f.note(f"{what}: SIGTERM answered with exit {code}")


def _request(d: Daemon, f: FsFigures, op: str, **args: object) -> dict[str, object]:
    started = time.monotonic()
    try:
        with d.connect(timeout=REQUEST_S) as sock:
            sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            line = read_line(sock)
    except OSError as exc:
        if not d.alive:
            f.crashes += 1
            f.note(f"{op}: the daemon died ({exc})")
        else:
            f.hangs += 1
            f.note(f"{op}: no answer within {REQUEST_S:.0f} s ({exc})")
        raise _Problem from None
    if not line:
        f.crashes += 1
        f.note(f"{op}: connection closed without an answer")
        raise _Problem
    if time.monotonic() - started > REQUEST_S:
        f.hangs += 1
        f.note(f"{op}: answered after {time.monotonic() - started:.1f} s")
    reply: dict[str, object] = json.loads(line)
    return reply


def _call(d: Daemon, f: FsFigures, op: str, **args: object) -> object:
    reply = _request(d, f, op, **args)
    if reply.get("ok") is not True:
        f.note(f"{op} {args}: {reply}")
        raise _Problem
    return reply.get("result")


def _fsck(d: Daemon, f: FsFigures, *args: str) -> None:
    f.fsck_runs += 1
    try:
        done = subprocess.run(
            [sys.executable, "-m", "docpilotd.admin", "fsck", *args], env=base_env(d.home, d.config_home),
            capture_output=True, text=True, errors="replace", timeout=FSCK_S,
        )
    except subprocess.TimeoutExpired:
        f.hangs += 1
        f.note(f"fsck {' '.join(args)}: not done within {FSCK_S:.0f} s")
        return
    if "Traceback" in done.stderr or done.returncode not in (0, 1):
        f.crashes += 1
        f.note(f"fsck {' '.join(args)}: exit {done.returncode}: {done.stderr[-300:]}")
        return
    if "--json" in args:
        json.loads(done.stdout)
    f.fsck_returned += 1


# -- one kind ---------------------------------------------------------------------------------------


class _Client(threading.Thread):
    """Sends annotations to live sessions until stopped; keeps what was acknowledged."""

    def __init__(self, d: Daemon, sessions: list[str], prefix: str, acked: dict[str, list[str]]) -> None:
        super().__init__(daemon=True)
        self.d, self.sessions, self.prefix, self.acked = d, sessions, prefix, acked
        self.stop = threading.Event()
        self.problem: str | None = None
        self.slowest = 0.0

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            session = self.sessions[n % len(self.sessions)]
            text = f"{self.prefix}-{n}"
            n += 1
            started = time.monotonic()
            try:
                with self.d.connect(timeout=REQUEST_S) as sock:
                    sock.sendall(json.dumps({"op": "annotate", "session": session, "text": text}).encode() + b"\n")
                    line = read_line(sock)
            except OSError as exc:
                self.problem = f"annotate: {exc}"
                return
            self.slowest = max(self.slowest, time.monotonic() - started)
            if line and json.loads(line).get("ok"):
                self.acked[session].append(text)  # a refused change is fine: it was not acknowledged
            time.sleep(0.005)


def _next_segment_path(d: Daemon, session: str) -> Path:
    """The segment the next checkpoint of `session` opens (no change may be in flight)."""
    ours = []
    for name in os.listdir(d.journal_dir):
        parsed = journal.parse_segment_name(name)
        st = (d.journal_dir / name).lstat()
        if parsed and parsed[0] == session and stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            ours.append((parsed[1], d.journal_dir / name))
    first, path = max(ours)
    records, _ = journal.scan_segment(path.read_bytes(), path)
    last = records[-1].seq if records else first - 1
    return d.journal_dir / journal.segment_name(session, last + 1)


def _check_served(d: Daemon, f: FsFigures, acked: dict[str, list[str]], what: str) -> None:
    for session, texts in acked.items():
        served = [a["text"] for a in _call(d, f, "show", session=session)["annotations"]]  # type: ignore[index]
        missing = [t for t in texts if t not in served]
        f.lost += len(missing)
        if missing:
            f.note(f"{what}: {session[:8]} lost {missing[:3]}")
        planted = [t for t in served if t == PLANTED]
        f.planted_served += len(planted)
    listed = json.dumps(_call(d, f, "sessions"))
    if UNKNOWN in listed or UNKNOWN_LATER in listed or PLANTED in listed:
        f.planted_served += 1
        f.note(f"{what}: a planted session is served")


def _round(base: Path, index: int, kind: str, outside: Path, quick: bool, f: FsFigures) -> None:
    d = Daemon(base / f"h{index}", base / "xdg")
    clock = Clock(3_000_000_000 * 10**9)
    try:
        # Sessions with acknowledged changes: one stopped (its file is replaced at start-up), two live.
        _start(d, f, f"{kind}: first start")
        acked: dict[str, list[str]] = {}
        ids = []
        for n in range(3):
            sid = str(_call(d, f, "start", description=f"hostile fs {kind} {n}")["id"])  # type: ignore[index]
            ids.append(sid)
            acked[sid] = []
            for i in range(3):
                _call(d, f, "annotate", session=sid, text=f"{n}-{i}")
                acked[sid].append(f"{n}-{i}")
            _call(d, f, "save")
            _call(d, f, "annotate", session=sid, text=f"{n}-in the journal only")
            acked[sid].append(f"{n}-in the journal only")
        stopped, live1, live2 = ids
        _call(d, f, "stop", session=stopped)
        _stop(d, f, f"{kind}: first stop")

        # At start-up: an entry at every place.
        planted_session = snapshot.encode(build_session(session_id=UNKNOWN, description=PLANTED), 1)
        planted_stopped = snapshot.encode(build_session(session_id=stopped, description=PLANTED), 1)
        planted_record = journal.frame(10_000, annotate_change(PLANTED, clock()))
        active = d.home / "spool" / "active"
        at_start = [
            (d.session_file(stopped), planted_stopped, True), (d.session_file(UNKNOWN), planted_session, False),
            (d.sessions_dir / f".tmp-{live1}.json.0123456789ab.tmp", planted_stopped, False),
            (d.backups_dir / f"{stopped}_1999999999.000000000.json", planted_stopped, False),
            (d.journal_dir / journal.segment_name(live2, 10_000), planted_record, False),
            (d.journal_dir / journal.segment_name(UNKNOWN, 1), planted_record, False),
            (d.quarantine_dir / f"2000-01-01T000000Z_{stopped}.json", b"", False),
            (d.home / "spool" / "0123abcd.jsonl", b"", False), (d.home / "spool" / "4567cdef.jsonl.claimed", b"", False),
            (active / "current", b"", True), (active / ".current.tmp", b"", False),
        ]
        for path, content, replace in at_start:
            f.placed += (_replace if replace else _place)(path, kind, outside, content)
        _fsck(d, f)
        _fsck(d, f, "--json")
        _start(d, f, f"{kind}: start with entries in place")
        _check_served(d, f, acked, f"{kind}: after start-up")
        if not json.dumps(_call(d, f, "recovery")):
            f.crashes += 1

        # While it runs: a client sends changes; entries appear, live files are replaced.
        client = _Client(d, [live1, live2], f"{kind}-run", acked)
        client.start()
        time.sleep(0.2)
        planted_live = snapshot.encode(build_session(session_id=live1, description=PLANTED), 1)
        at_run = [
            (d.session_file(live1), planted_live, True), (d.session_file(stopped), planted_stopped, True),
            (d.session_file(UNKNOWN_LATER), planted_session, False),
            (d.backups_dir / f"{live2}_1999999999.000000000.json", planted_live, False),
            (d.journal_dir / journal.segment_name(live1, 20_000), planted_record, False),
            (d.quarantine_dir / f"2000-01-01T000001Z_{live1}.json", b"", False),
            (d.home / "spool" / "89abcdef.jsonl", b"", False), (active / ".current.tmp", b"", True),
        ]
        for path, content, replace in at_run:
            f.placed += (_replace if replace else _place)(path, kind, outside, content)
        _call(d, f, "pause", session=live2)  # the capture markers are rewritten
        _call(d, f, "resume", session=live2)
        time.sleep(0.6 if quick else 3.0)
        client.stop.set()
        client.join(timeout=REQUEST_S + 1)
        if client.problem is not None or client.is_alive():
            f.hangs += 1
            f.note(f"{kind}: client: {client.problem or 'stuck'}")
            raise _Problem
        if client.slowest > REQUEST_S:
            f.hangs += 1
        # The live file is rewritten from memory, the stopped one restored (within seconds).
        deadline = time.monotonic() + 10
        while not all(_is_file(d.session_file(s)) for s in (live1, stopped)):
            if time.monotonic() > deadline:
                f.hangs += 1
                f.note(f"{kind}: session files not rewritten within 10 s")
                break
            time.sleep(0.05)
        # The next checkpoint's segment name taken: the save must still succeed.
        f.placed += _place(_next_segment_path(d, live1), kind, outside, planted_record)
        _call(d, f, "annotate", session=live1, text=f"{kind}-before the save")
        acked[live1].append(f"{kind}-before the save")
        reply = _request(d, f, "save")
        if not reply.get("ok"):
            f.saves_refused += 1
            f.note(f"{kind}: save refused: {reply}")
        _call(d, f, "annotate", session=live1, text=f"{kind}-after the save")
        acked[live1].append(f"{kind}-after the save")
        _check_served(d, f, acked, f"{kind}: while running")
        _stop(d, f, f"{kind}: stop after the run")

        # Restart: everything acknowledged is there, nothing planted is.
        _start(d, f, f"{kind}: restart")
        _check_served(d, f, acked, f"{kind}: after the restart")
        _stop(d, f, f"{kind}: last stop")
        _fsck(d, f)
    except _Problem:
        pass
    finally:
        d.close()
        f.acknowledged += sum(len(v) for v in locals().get("acked", {}).values())
        log = d.log()
        if "Traceback" in log:
            f.crashes += log.count("Traceback")
            f.note(f"{kind}: traceback in the daemon's log: {log[log.index('Traceback'):][:300]}")


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def run(quick: bool = True) -> FsFigures:
    f = FsFigures()
    kinds = [k for k in KINDS if ROOT or k not in NEEDS_ROOT]
    f.kinds = kinds
    f.skipped = [k for k in KINDS if k not in kinds]
    rounds = 1 if quick else 3
    base = Path(tempfile.mkdtemp(prefix="dpfs-", dir="/tmp"))
    try:
        outside_dir = base / "outside"
        outside_dir.mkdir()
        outside = outside_dir / "precious.txt"
        outside.write_bytes(b"a file outside the data root: links point here, nothing may change it\n")
        before = _outside_state(outside_dir)
        index = 0
        for _ in range(rounds):
            for kind in kinds:
                _round(base, index, kind, outside, quick, f)
                index += 1
        after = _outside_state(outside_dir)
        f.outside_changed = sum(1 for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return f


if __name__ == "__main__":  # pragma: no cover
    figures = run(quick="--long" not in sys.argv)
    print(figures)
