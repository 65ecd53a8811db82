"""A real `docpilotd run` process in a temporary data root, driven through its socket and its client.

Integration suites (runtime, client, reliability, benchmarks) import this module; nothing in it is
mocked. A `Daemon` owns one data root (`DOCPILOT_HOME`) and at most one daemon process at a time:

    d = Daemon(home, config_home, env={"DOCPILOT_AUTOSAVE_INTERVAL": "1"})
    d.start()                       # waits until {"op": "hello"} is answered
    d.call("start", description="x")["id"]     # result, or AssertionError with the error
    d.request("stop")               # the whole reply: {"ok": false, "error": {...}}
    d.raw(b"garbage\\n")            # bytes in, one reply line out (b"" when the daemon closed)
    rc, out, err = d.client("note", "text")    # the real `docpilot` CLI
    d.client_json("sessions")       # `docpilot sessions --json`, parsed
    d.tree()                        # every file under the data root, for before/after checks
    d.kill9(); d.start()            # restart on the same data root
    d.terminate()                   # SIGTERM, returns the exit code

The `daemons` fixture makes as many as a test needs and kills whatever is left when it ends; the
`daemon` fixture is one started daemon with the default environment. A conftest imports both.
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
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "tests" / "data" / "docpilot-example-session.json"
# sun_path is 108 bytes on Linux (docpilotd allows 103): leave room for "/homeN/run/docpilotd.sock".
_MAX_HOME = 64
# Variables of the user's own setup that must not reach a test daemon or client.
_SCRUBBED = ("DOCPILOT_", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "XDG_RUNTIME_DIR")

DAEMON_CMD = (sys.executable, "-m", "docpilotd.admin", "run")
CLIENT_CMD = (sys.executable, "-m", "docpilotd.client.entry")  # what the console script runs (the lean path first)


def base_env(home: Path, config_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a test daemon or client: only this data root, no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    env["DOCPILOT_HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(config_home)
    env["XDG_DATA_HOME"] = str(config_home / "xdg-data")  # where `docpilot init` writes the hook files
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# The search index (derived from the sessions, written by a thread of the daemon in the background,
# its side files changed even by readers): not stored data, so not part of a before/after tree.
DERIVED = ("index",)


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path under `root` with its content; directories, sockets and links by their kind
    (DERIVED directories left out)."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel.split("/")[0] in DERIVED:
            continue
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode):
            found[rel] = path.read_bytes()
        elif stat.S_ISDIR(mode):
            found[rel] = "<dir>"
        elif stat.S_ISSOCK(mode):
            found[rel] = "<socket>"
        elif stat.S_ISLNK(mode):
            found[rel] = "<link " + os.readlink(path) + ">"
        else:
            found[rel] = f"<mode {mode:o}>"
    return found


class Daemon:
    """One data root and the daemon process serving it (see the module docstring)."""

    def __init__(self, home: Path, config_home: Path, env: Mapping[str, str] | None = None) -> None:
        self.home = home
        self.config_home = config_home
        self.config_home.mkdir(parents=True, exist_ok=True)
        self.extra_env: dict[str, str] = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = home.parent / f"{home.name}-daemon.log"
        self._log_offset = 0

    # -- layout -----------------------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self.home / "run" / "docpilotd.sock"

    @property
    def pid_file(self) -> Path:
        return self.home / "run" / "docpilotd.pid"

    @property
    def sessions_dir(self) -> Path:
        return self.home / "sessions"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def journal_dir(self) -> Path:
        return self.home / "journal"

    def session_file(self, session_id: str) -> Path:
        return self.sessions_dir / f"{session_id}.json"

    def read_session_file(self, session_id: str) -> dict[str, Any]:
        return json.loads(self.session_file(session_id).read_bytes())

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return base_env(self.home, self.config_home, {**self.extra_env, **(extra or {})})

    # -- process ----------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the daemon was never started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `docpilotd run ARGS` without waiting for it (its stderr goes to the log file)."""
        assert not self.alive, "a daemon of this harness is still running"
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [*DAEMON_CMD, *args], env=self.env(env), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=str(self.home.parent),
            )
        finally:
            log.close()
        self.starts += 1
        return self.proc

    def start(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 20.0) -> Daemon:
        """Start the daemon and wait until it answers hello; fail with its log if it never does."""
        proc = self.spawn(*args, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"docpilotd exited with {proc.returncode} before serving:\n{self.log()}")
            reply = self._try_hello()
            if reply is not None:
                assert reply.get("ok") and reply["result"]["pid"] == proc.pid, f"wrong daemon answered: {reply}"
                return self
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError(f"docpilotd did not answer within {timeout} s:\n{self.log()}")
            time.sleep(0.03)

    def _try_hello(self) -> dict[str, Any] | None:
        try:
            with self.connect(timeout=2.0) as sock:
                sock.sendall(b'{"op":"hello"}\n')
                line = read_line(sock)
        except OSError:
            return None
        return json.loads(line) if line else None

    def log(self, since_start: bool = False) -> str:
        """What the daemon wrote to stderr (all runs, or the current run only)."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data[self._log_offset if since_start else 0 :].decode("utf-8", "replace")

    def kill9(self) -> None:
        """SIGKILL the daemon and reap it: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def send_signal(self, signum: int) -> None:
        assert self.alive, "the daemon is not running"
        os.kill(self.pid, signum)

    def terminate(self, timeout: float = 20.0, signum: int = signal.SIGTERM) -> int:
        """SIGTERM (or `signum`) the daemon, wait for it and return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"docpilotd did not exit within {timeout} s of signal {signum}:\n{self.log()}") from None

    def close(self) -> None:
        """Finalizer: make sure no daemon process of ours outlives the test."""
        self.kill9()

    # -- talking to it ----------------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        return sock

    def raw(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Send `data` on a fresh connection and return the first reply line (b"" if closed first)."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            return read_line(sock)

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        """One request as the protocol defines it; returns the whole reply object."""
        line = json.dumps({"op": op, **args}).encode() + b"\n"
        reply = self.raw(line)
        assert reply, f"daemon closed the connection on {op}:\n{self.log()}"
        return json.loads(reply)

    def call(self, op: str, **args: Any) -> Any:
        """The result of a request that must succeed."""
        reply = self.request(op, **args)
        assert reply.get("ok") is True, f"{op} {args} failed: {reply}"
        return reply.get("result")

    def client(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 30.0, cwd: Path | None = None
    ) -> tuple[int, str, str]:
        """Run the real `docpilot` client; returns (exit code, stdout, stderr)."""
        done = subprocess.run(
            [*CLIENT_CMD, *args], env=self.env(env), stdin=subprocess.DEVNULL, capture_output=True,
            timeout=timeout, cwd=str(cwd or self.home.parent),
        )
        return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")

    def client_json(self, *args: str, env: Mapping[str, str] | None = None) -> Any:
        """Run `docpilot ARGS --json`, which must succeed, and return the parsed output."""
        rc, out, err = self.client(*args, "--json", env=env)
        assert rc == 0, f"docpilot {' '.join(args)} exited {rc}: {err}"
        return json.loads(out)

    def tree(self) -> dict[str, bytes | str]:
        return tree(self.home)


# -- the DocPilot file format --------------------------------------------------------------------

# Types each field may have, from reference/docpilot-session-format.md (None: JSON null).
_NULLABLE_STR = (str, type(None))
_FIELD_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "session": {
        "id": (str,), "description": (str,), "state": (str, dict), "created_at": (str,), "updated_at": (str,),
        "started_at": _NULLABLE_STR, "stopped_at": _NULLABLE_STR, "output_file": _NULLABLE_STR,
        "commands": (list,), "annotations": (list,), "events": (list,), "metadata": (dict,), "stats": (dict,),
    },
    "command": {
        "command": (str,), "timestamp": (str,), "exit_code": (int, type(None)), "working_directory": (str,),
        "shell": (str,), "output": _NULLABLE_STR, "error": _NULLABLE_STR,
    },
    "annotation": {"id": (str,), "text": (str,), "timestamp": (str,), "annotation_type": (str,)},
    "event": {"id": (str,), "event_type": (str,), "timestamp": (str,), "details": _NULLABLE_STR},
    "metadata": {
        "working_directory": (str,), "shell_type": (str,), "platform": (str,), "hostname": (str,),
        "user": _NULLABLE_STR, "tags": (list,), "llm_provider": _NULLABLE_STR, "settings": (dict,),
    },
    "stats": {
        "total_commands": (int,), "successful_commands": (int,), "failed_commands": (int,),
        "total_annotations": (int,), "duration_seconds": (int, type(None)), "pause_resume_count": (int,),
    },
}
# docpilotd's additions, which DocPilot ignores: a top-level `docpilotd` object and, on a command a
# hook timed, `duration_ms`.
_EXTRA_KEYS = {"session": ("docpilotd",), "command": ("duration_ms",)}


def _check_object(kind: str, obj: Any, reference: dict[str, Any]) -> None:
    assert isinstance(obj, dict), f"{kind}: not an object: {obj!r}"
    keys = [k for k in obj if k not in _EXTRA_KEYS.get(kind, ())]
    assert keys == list(reference), f"{kind}: fields {keys} differ from DocPilot's {list(reference)}"
    for key, value in obj.items():
        allowed = _FIELD_TYPES[kind].get(key)
        if allowed is not None:
            assert isinstance(value, allowed) and not isinstance(value, bool), f"{kind}.{key}: {value!r}"


def assert_docpilot_format(doc: dict[str, Any]) -> None:
    """Fail unless `doc` has the shape of DocPilot's reference session: same fields in the same
    order, at every level, with DocPilot's types and enum spellings (docpilotd's extras allowed)."""
    ref = json.loads(REFERENCE.read_bytes())
    _check_object("session", doc, ref)
    state = doc["state"]
    assert state in ("Active", "Paused", "Stopped") or (
        isinstance(state, dict) and list(state) == ["Error"] and isinstance(state["Error"], str)
    ), f"state: {state!r}"
    for command in doc["commands"]:
        _check_object("command", command, ref["commands"][0])
    for note in doc["annotations"]:
        _check_object("annotation", note, ref["annotations"][0])
        assert note["annotation_type"] in ("Note", "Explanation", "Warning", "Milestone"), note
    known_events = (
        "SessionStarted", "SessionPaused", "SessionResumed", "SessionStopped", "AnnotationAdded",
        "CommandCaptured", "ErrorOccurred", "ConfigurationChanged",
    )
    for event in doc["events"]:
        _check_object("event", event, ref["events"][0])
        assert event["event_type"] in known_events, event
    _check_object("metadata", doc["metadata"], ref["metadata"])
    assert all(isinstance(t, str) for t in doc["metadata"]["tags"])
    assert all(isinstance(v, str) for v in doc["metadata"]["settings"].values())
    _check_object("stats", doc["stats"], ref["stats"])
    stats, commands = doc["stats"], doc["commands"]
    assert stats["total_commands"] == len(commands)
    assert stats["successful_commands"] == sum(1 for c in commands if c["exit_code"] == 0)
    assert stats["failed_commands"] == sum(1 for c in commands if c["exit_code"] not in (0, None))
    assert stats["total_annotations"] == len(doc["annotations"])


def read_lines(sock: socket.socket, count: int, limit: int = 64 * 1024 * 1024) -> list[bytes]:
    """Read `count` reply lines (each with its newline); fewer if the peer closes first."""
    data = b""
    while data.count(b"\n") < count and len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    lines = data.splitlines(keepends=True)[:count]
    return [line for line in lines if line.endswith(b"\n")] or ([lines[0]] if lines else [])


def read_line(sock: socket.socket, limit: int = 64 * 1024 * 1024) -> bytes:
    """Read one reply line (with its newline); what was read if the peer closes first, b"" if
    nothing. Meant for one reply per call: bytes after the first newline are dropped."""
    found = read_lines(sock, 1, limit)
    return found[0] if found else b""


def short_dir(tmp_path: Path) -> Path:
    """`tmp_path`, or a shorter private directory when socket paths under it would be too long."""
    if len(os.fsencode(tmp_path)) <= _MAX_HOME:
        return tmp_path
    return Path(tempfile.mkdtemp(prefix="dpd-", dir="/tmp" if os.path.isdir("/tmp") else None))


DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    """`daemons(env={...}, start=True, name="home", args=())` -> a Daemon; all killed at the end."""
    made: list[Daemon] = []
    base = short_dir(tmp_path)

    def make(
        env: Mapping[str, str] | None = None, start: bool = True, name: str | None = None,
        args: tuple[str, ...] = (), home: Path | None = None,
    ) -> Daemon:
        root = home or base / (name or f"home{len(made)}")
        daemon = Daemon(root, base / "xdg-config", env)
        made.append(daemon)
        if start:
            daemon.start(*args)
        return daemon

    try:
        yield make
    finally:
        for daemon in made:
            daemon.close()
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def daemon(daemons: DaemonFactory) -> Daemon:
    """One running daemon in a fresh data root, default configuration."""
    return daemons()
