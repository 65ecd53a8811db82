"""What every benchmark shares: result rows, fixtures, a real daemon, the disk's fsync cost.

A benchmark module exposes `run(quick: bool) -> list[Figure]`; `benchmarks/run.py` prints the rows of
all of them as one table. A Figure is one measured figure beside its goal: `met` is None when the
figure has no goal (it is context, such as the fsync cost), and in `--quick` mode (CI) goals are
printed but a miss is not an error: quick sizes are smaller than the goals speak of.

Fixtures are written with docpilotd's own storage code (`snapshot.encode`, `journal.frame`), so the
daemon reads exactly what it writes itself; they are written without fsync (a benchmark's set-up
is not what is measured). Everything lives in a temporary directory on the same disk as the user's
data would, removed at the end.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from docpilotd.domain import changes, timestamps  # noqa: E402
from docpilotd.domain.model import Annotation, CommandEntry, Session, SessionMetadata  # noqa: E402
from docpilotd.storage import journal, snapshot  # noqa: E402
from tests.reliability.kill9 import DaemonProcess, request  # noqa: E402,F401  (re-exported)


@dataclass
class Figure:
    """One row of the table: what was measured, the value, the goal and whether it is met."""

    name: str
    measured: str
    goal: str = ""
    met: bool | None = None
    note: str = ""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def new_id() -> str:
    h = bytearray(os.urandom(16))
    h[6] = (h[6] & 0x0F) | 0x40
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A private temporary directory, short enough for a Unix socket path under it."""
    with tempfile.TemporaryDirectory(prefix=f"dpb-{prefix}-", dir="/tmp" if os.path.isdir("/tmp") else None) as tmp:
        yield Path(tmp)


# -- the machine ----------------------------------------------------------------------------------


def fsync_cost(directory: Path, count: int = 500) -> float:
    """Seconds per small append + fsync on the disk of `directory` (what one journal commit costs)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        record = b"x" * 200
        for _ in range(20):  # warm up: allocate the file's first blocks
            os.write(fd, record)
            os.fsync(fd)
        started = time.perf_counter()
        for _ in range(count):
            os.write(fd, record)
            os.fsync(fd)
        return (time.perf_counter() - started) / count
    finally:
        os.close(fd)
        path.unlink()


def machine() -> str:
    """One line naming the machine: cores, CPU model, Python."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {sys.version.split()[0]}, {sys.platform}"


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- sessions -------------------------------------------------------------------------------------

METADATA = SessionMetadata("/home/ada/project", "zsh", "linux", "bench", "ada", ["bench"], None, {})


def command_change(i: int, at_ns: int) -> changes.RecordCommand:
    """The i-th command of a benchmark session: realistic length, a mix of exit codes."""
    entry = CommandEntry(
        command=f"make -C build/{i % 97} target-{i} && ./run --flag {i} | tee log/{i % 13}.txt",
        timestamp=timestamps.format_ns(at_ns), exit_code=0 if i % 5 else 2,
        working_directory="/home/ada/project/build", shell="zsh", output=None, error=None,
        duration_ms=(i * 37) % 5000,
    )
    return changes.RecordCommand(entry=entry, event_id=new_id())


def build_changes(commands: int, notes_every: int = 25, stop: bool = False, start_ns: int | None = None) -> list[changes.Change]:
    """The changes that make a session of `commands` commands (a note every `notes_every`)."""
    at = start_ns if start_ns is not None else time.time_ns() - (commands + 10) * 1_000_000_000
    result: list[changes.Change] = [
        changes.Create(session_id=new_id(), description=f"benchmark session of {commands} commands",
                       at=timestamps.format_ns(at), event_id=new_id(), metadata=METADATA)
    ]
    for i in range(commands):
        at += 1_000_000_000
        result.append(command_change(i, at))
        if notes_every and i % notes_every == notes_every - 1:
            note = Annotation(id=new_id(), text=f"note after command {i}: the build works now",
                                      timestamp=timestamps.format_ns(at + 1000), annotation_type="Note")
            result.append(changes.Annotate(annotation=note, event_id=new_id()))
    if stop:
        result.append(changes.Stop(at=timestamps.format_ns(at + 2_000_000_000), event_id=new_id()))
    return result


def apply_all(items: list[changes.Change]) -> Session:
    first = items[0]
    assert isinstance(first, changes.Create)
    session = changes.create(first)
    for change in items[1:]:
        session = changes.apply(session, change)
    return session


def build_session(commands: int, stop: bool = False) -> Session:
    return apply_all(build_changes(commands, stop=stop))


def with_id(session: Session, session_id: str) -> Session:
    import msgspec

    return msgspec.structs.replace(session, id=session_id)


def write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass
class DataRoot:
    home: Path
    sessions: int
    bytes_per_session: int
    live_ids: list[str]


def write_data_root(home: Path, count: int, commands: int, live: int = 10, tail: int = 20) -> DataRoot:
    """`count` sessions as the daemon leaves them after checkpoints: per session a snapshot at seq N,
    one backup generation at seq N-`tail`, the journal segment the backup still needs (records
    N-tail+1..N) and the empty segment after the snapshot. `live` of them are Active, the rest
    Stopped. The content is the same template for every session, with its own id."""
    for name in ("sessions", "backups", "journal", "quarantine", "spool", "run"):
        (home / name).mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    templates = {}
    for stopped in (True, False):
        items = build_changes(commands, stop=stopped)
        full = apply_all(items)
        seq = len(items)
        before = apply_all(items[: seq - tail])
        frames = b"".join(journal.frame(s, c) for s, c in zip(range(seq - tail + 1, seq + 1), items[seq - tail :]))
        templates[stopped] = (full, before, seq, frames)
    live_ids: list[str] = []
    size = 0
    base_ns = time.time_ns() - 10_000_000_000
    for n in range(count):
        session_id = new_id()
        stopped = n >= live
        if not stopped:
            live_ids.append(session_id)
        full, before, seq, frames = templates[stopped]
        data = snapshot.encode(with_id(full, session_id), seq)
        size += len(data)
        write_file(home / "sessions" / f"{session_id}.json", data)
        backup_ns = base_ns + n
        write_file(home / "backups" / f"{session_id}_{backup_ns // 10**9}.{backup_ns % 10**9:09d}.json",
                   snapshot.encode(with_id(before, session_id), seq - tail))
        write_file(home / "journal" / journal.segment_name(session_id, seq - tail + 1), frames)
        write_file(home / "journal" / journal.segment_name(session_id, seq + 1), b"")
    return DataRoot(home, count, size // max(count, 1), live_ids)


# -- talking to a daemon -----------------------------------------------------------------------------


class Conn:
    """One persistent connection; `call` sends a request line and returns the parsed reply."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def call(self, message: dict[str, Any]) -> Any:
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        reply = json.loads(self.file.readline())
        if not reply.get("ok"):
            raise RuntimeError(f"{message.get('op')} failed: {reply}")
        return reply.get("result")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def python_path() -> str:
    """PYTHONPATH for child processes: this checkout first, so a daemon runs the code being
    measured even when another copy of docpilotd is installed."""
    return os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


def start_daemon(home: Path, env: dict[str, str] | None = None, timeout: float = 120.0) -> tuple[DaemonProcess, float]:
    """Start `docpilotd run` on `home`; returns it and the seconds from spawn to its first answer.

    Polls every 2 ms (DaemonProcess.start polls every 20 ms, too coarse to time a start-up)."""
    daemon = DaemonProcess(home, env={"DOCPILOT_LOG_LEVEL": "warning", "PYTHONPATH": python_path(), **(env or {})})
    started = time.perf_counter()
    daemon.proc = subprocess.Popen(
        [sys.executable, "-m", "docpilotd.admin", "run"], env=daemon.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if daemon.proc.poll() is not None:
            err = daemon.proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            raise RuntimeError(f"daemon exited {daemon.proc.returncode}: {err}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(daemon.socket_path))
                sock.sendall(b'{"op":"hello"}\n')
                if sock.recv(4096).endswith(b"\n"):
                    return daemon, time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.002)
    daemon.kill9()
    raise RuntimeError("daemon did not come up")


def stop_daemon(daemon: DaemonProcess) -> None:
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.terminate()


def summary(values: list[float]) -> str:
    return f"mean {ms(statistics.mean(values))}, p50 {ms(percentile(values, 0.5))}, p99 {ms(percentile(values, 0.99))}"
