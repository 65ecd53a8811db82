"""Per-change cost versus session size, measured side by side on a real daemon.

    python benchmarks/per_change.py [--commands 50000] [--changes 2000] [--quick]

Starts `docpilotd run` (durability "always") in a temporary DOCPILOT_HOME, imports a session of
`--commands` commands and starts a new empty one, then sends notes alternately to the two over one
persistent connection, so both see the same machine at the same moment. Prints the latency of each
(mean, p50, p99) and the ratio large/new; the journal makes a change O(1), so the ratio should stay
near 1 (the goal is at most 1.3). For comparison it also times DocPilot's approach on the same
large session: rewrite the whole file plus a backup copy on every change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from docpilotd.domain import changes, timestamps  # noqa: E402
from docpilotd.domain.model import CommandEntry, SessionMetadata  # noqa: E402
from docpilotd.storage import snapshot  # noqa: E402
from tests.reliability.kill9 import DaemonProcess, request  # noqa: E402


def build_session(commands: int) -> bytes:
    now = time.time_ns() - commands * 1_000_000_000
    session = changes.create(
        changes.Create(
            session_id=str(uuid.uuid4()), description=f"{commands} commands", at=timestamps.format_ns(now),
            event_id=str(uuid.uuid4()),
            metadata=SessionMetadata("/home/ada", "zsh", "linux", "bench", "ada", [], None, {}),
        )
    )
    for i in range(commands):
        entry = CommandEntry(
            command=f"make -C build/{i % 97} target-{i} && ./run --flag {i}", timestamp=timestamps.format_ns(now + i * 1_000_000_000),
            exit_code=i % 3 and 0, working_directory="/home/ada/project", shell="zsh", output=None, error=None,
        )
        changes.apply(session, changes.RecordCommand(entry=entry, event_id=str(uuid.uuid4())))
    return snapshot.encode_plain(session)


class Conn:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def call(self, message: dict[str, object]) -> dict[str, object]:
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        reply = json.loads(self.file.readline())
        assert reply.get("ok"), reply
        return reply


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def docpilot_style(data: bytes, changes_count: int, directory: Path) -> list[float]:
    """DocPilot's save: copy the current file to a backup, write the whole session, rename."""
    target = directory / "session.json"
    target.write_bytes(data)
    timings = []
    for i in range(changes_count):
        start = time.perf_counter()
        shutil.copyfile(target, directory / f"backup_{i % 5}.json")
        tmp = directory / "session.tmp"
        tmp.write_bytes(data)
        tmp.replace(target)
        timings.append(time.perf_counter() - start)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI (no goals checked)")
    args = parser.parse_args()
    if args.quick:
        args.commands, args.changes = 5000, 300
    with tempfile.TemporaryDirectory(prefix="docpilot-bench-") as tmp:
        home = Path(tmp) / "home"
        big_file = Path(tmp) / "big.json"
        big_data = build_session(args.commands)
        big_file.write_bytes(big_data)
        daemon = DaemonProcess(home, env={"DOCPILOT_DURABILITY": "always"})
        daemon.start()
        try:
            conn = Conn(daemon.socket_path)
            big = conn.call({"op": "import", "path": str(big_file)})["result"]["id"]  # type: ignore[index]
            new = conn.call({"op": "start", "description": "new session"})["result"]["id"]  # type: ignore[index]
            timings: dict[str, list[float]] = {big: [], new: []}
            for i in range(args.changes):
                for target in (new, big) if i % 2 else (big, new):
                    start = time.perf_counter()
                    conn.call({"op": "annotate", "session": target, "text": f"note {i}"})
                    timings[target].append(time.perf_counter() - start)
            fsync_docpilot = docpilot_style(big_data, max(20, args.changes // 20), Path(tmp))
        finally:
            daemon.terminate()
    rows = [("new session", timings[new]), (f"{args.commands}-command session", timings[big])]
    print(f"per-change latency, durability always, {args.changes} notes each, alternating on one connection")
    print(f"{'session':<28}{'mean ms':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, values in rows:
        print(f"{name:<28}{statistics.mean(values) * 1e3:>10.3f}{percentile(values, 0.5) * 1e3:>10.3f}{percentile(values, 0.99) * 1e3:>10.3f}")
    ratio_p50 = percentile(timings[big], 0.5) / percentile(timings[new], 0.5)
    ratio_mean = statistics.mean(timings[big]) / statistics.mean(timings[new])
    print(f"ratio large/new: p50 {ratio_p50:.2f}x, mean {ratio_mean:.2f}x (goal: at most 1.3x)")
    docpilot_p50 = percentile(fsync_docpilot, 0.5)
    print(
        f"DocPilot's approach on the large session (whole file + backup copy per change, no fsync): "
        f"p50 {docpilot_p50 * 1e3:.2f} ms, {docpilot_p50 / percentile(timings[big], 0.5):.1f}x the journal's"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
