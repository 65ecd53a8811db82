"""Start-up recovery: time and CPU from `docpilotd run` to its first answer.

    python benchmarks/startup.py [--quick]

Data roots (written with the daemon's own storage code):
- 10,000 sessions of about 50 KB as the daemon leaves them (snapshot, one backup, the journal
  segment that backup needs, the empty segment after the snapshot; see `common.write_data_root`);
  a few are live, the rest stopped;
- 100,000 small finished sessions (snapshot, a backup of it, the empty segment after it).

Measured side by side in the same run, each figure min/median/max over repeated starts:
- start to ready: spawn to the first `hello` answered (the daemon serves nothing before recovery
  has finished), wall time;
- CPU to ready: user + system time of the daemon and of the children it forked and reaped
  (recovery's checkers), read from /proc/PID/stat when the first answer arrives;
- the floor: a separate process that merely reads every session file and decodes it (msgspec,
  typed); its CPU is taken the same way (user + system, its own and its children's, from
  getrusage(RUSAGE_CHILDREN) around it).
Each CPU figure has the same program's CPU on an empty data root taken off (interpreter, imports,
socket: the part no data changes), so the ratio is recovery's work over read+decode's work.

Two recoveries are measured: every file checked (the manifest removed before each start: the
first start after an upgrade, or after the manifest was lost), and the usual start with the
manifest (finished sessions cost a row, see storage/manifest.py). A cold-cache start drops the
page cache first (`echo 3 > /proc/sys/vm/drop_caches`, when this process may) and says so.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from common import (
    REPO,
    Figure,
    build_session,
    new_id,
    python_path,
    start_daemon,
    stop_daemon,
    with_id,
    workdir,
    write_data_root,
    write_file,
)

from docpilotd.storage import journal, snapshot

GOAL_RATIO = 1.5
GOAL_FINISHED_S = 3.0
FLOOR = """
import os, sys
sys.path.insert(0, sys.argv[2])
from docpilotd.storage.snapshot import SessionFile
import msgspec
decoder = msgspec.json.Decoder(SessionFile)
directory = sys.argv[1]
for name in os.listdir(directory):
    with open(os.path.join(directory, name), "rb") as handle:
        decoder.decode(handle.read())
"""
TICK = os.sysconf("SC_CLK_TCK")


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(min(values))} / {fmt(statistics.median(values))} / {fmt(max(values))}"


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def tree_cpu(pid: int) -> float:
    """User + system seconds of process `pid` and of the children it waited for (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / TICK


def start(home: Path) -> tuple[float, float]:
    """One start: (wall seconds to the first answer, CPU seconds of the daemon's tree by then)."""
    daemon, wall = start_daemon(home, env={"DOCPILOT_DURABILITY": "always"})
    try:
        assert daemon.proc is not None
        cpu = tree_cpu(daemon.proc.pid)
    finally:
        stop_daemon(daemon)
    return wall, cpu


def floor(directory: Path) -> float:
    """CPU seconds (user + system) of a process that reads and decodes every file of `directory`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", FLOOR, str(directory), str(REPO)], check=True,
                   env=dict(os.environ, PYTHONPATH=python_path()))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def drop_caches() -> str | None:
    """Empty the page cache; None when done, else why not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
    except OSError as exc:
        return f"page cache not dropped ({exc.strerror or exc}): a warm-cache figure"
    return None


def remove_manifest(home: Path) -> None:
    try:
        (home / "manifest").unlink()
    except FileNotFoundError:
        pass


def write_finished_root(home: Path, count: int) -> int:
    """`count` small stopped sessions as the daemon leaves them: snapshot, a backup of it (a hard
    link, as a checkpoint makes), the empty segment after it. One session is encoded; every other
    one is that file with its own id, sealed again with the snapshot checksum (fast to build)."""
    for name in ("sessions", "backups", "journal", "quarantine", "spool", "run"):
        (home / name).mkdir(parents=True, exist_ok=True, mode=0o700)
    home.chmod(0o700)
    template_id = new_id()
    seq = 12
    template = snapshot.encode(with_id(build_session(3, stop=True), template_id), seq)
    assert template.count(template_id.encode()) == 1
    base_ns = time.time_ns() - 10_000_000_000
    for n in range(count):
        session_id = new_id()
        data = template.replace(template_id.encode(), session_id.encode())
        at = data.rindex(b'"docpilotd"')
        old = snapshot.raw_checksum(zlib.crc32(template[:at]), seq).encode()
        new = snapshot.raw_checksum(zlib.crc32(data[:at]), seq).encode()
        data = data[:at] + data[at:].replace(old, new)
        main = home / "sessions" / f"{session_id}.json"
        write_file(main, data)
        backup_ns = base_ns + n
        os.link(main, home / "backups" / f"{session_id}_{backup_ns // 10**9}.{backup_ns % 10**9:09d}.json")
        write_file(home / "journal" / journal.segment_name(session_id, seq + 1), b"")
    return len(template)


def run(quick: bool) -> list[Figure]:
    count = 1_000 if quick else 10_000
    finished = 5_000 if quick else 100_000
    repeats = 3 if quick else 5
    figures: list[Figure] = []
    with workdir("startup") as tmp:
        empty_home = tmp / "empty"
        (tmp / "empty-sessions").mkdir()
        empty = [start(empty_home) for _ in range(repeats)]
        empty_cpu = statistics.median(cpu for _, cpu in empty)
        floor_empty = statistics.median(floor(tmp / "empty-sessions") for _ in range(repeats))
        figures.append(Figure("start to ready, empty data root", spread([w for w, _ in empty], lambda v: f"{v * 1e3:.0f} ms"),
                              note=f"CPU {spread([c for _, c in empty], seconds)}"))

        t0 = time.perf_counter()
        root = write_data_root(tmp / f"root-{count}", count, commands=80)
        made = time.perf_counter() - t0
        start(root.home)  # the first start may repair or re-save; not timed
        full_ratios, manifest_ratios, floors, full_walls, manifest_walls = [], [], [], [], []
        for _ in range(repeats):
            # Alternated, so that a disturbance of the machine falls on all three alike.
            remove_manifest(root.home)
            wall_full, cpu_full = start(root.home)
            wall_manifest, cpu_manifest = start(root.home)
            work = floor(root.home / "sessions") - floor_empty
            floors.append(work)
            full_ratios.append((cpu_full - empty_cpu) / work)
            manifest_ratios.append((cpu_manifest - empty_cpu) / work)
            full_walls.append(wall_full)
            manifest_walls.append(wall_manifest)
        size = f"{root.bytes_per_session / 1e3:.0f} KB"
        figures.append(Figure(
            f"start to ready, {count:,} sessions of {size}", spread(manifest_walls, seconds),
            note=f"every file checked: {spread(full_walls, seconds)}; fixture written in {made:.0f} s",
        ))
        figures.append(Figure(
            f"recovery of {count:,} sessions vs read+decode, CPU, every file checked",
            spread(full_ratios, lambda v: f"{v:.2f}x"), f"<= {GOAL_RATIO}x", statistics.median(full_ratios) <= GOAL_RATIO,
            note=f"floor {spread(floors, seconds)} CPU; daemon and its forked checkers counted",
        ))
        figures.append(Figure(
            f"recovery of {count:,} sessions vs read+decode, CPU, with the manifest",
            spread(manifest_ratios, lambda v: f"{v:.2f}x"), f"<= {GOAL_RATIO}x",
            statistics.median(manifest_ratios) <= GOAL_RATIO,
            note=f"{count - len(root.live_ids):,} finished sessions taken from the manifest",
        ))
        cold = []
        for manifest in (False, True):
            if not manifest:
                remove_manifest(root.home)
            why_not = drop_caches()
            wall, cpu = start(root.home)
            drop_caches()
            cold.append((wall, cpu - empty_cpu, floor(root.home / "sessions") - floor_empty))
        (full_wall, full_cpu, full_floor), (wall, cpu, cold_floor) = cold
        figures.append(Figure(
            f"start to ready, {count:,} sessions, cold cache", seconds(wall),
            note=f"{why_not or 'page cache dropped before each start and each read+decode'}; with the manifest CPU "
            f"{cpu:.2f} s vs read+decode {cold_floor:.2f} s ({cpu / cold_floor:.2f}x); every file checked "
            f"{full_wall:.2f} s, CPU {full_cpu:.2f} s vs {full_floor:.2f} s ({full_cpu / full_floor:.2f}x)",
        ))

        t0 = time.perf_counter()
        small = write_finished_root(tmp / "finished", finished)
        made = time.perf_counter() - t0
        start(tmp / "finished")  # the first start checks every file and writes the manifest; not timed
        walls = [start(tmp / "finished")[0] for _ in range(repeats)]
        figures.append(Figure(
            f"{finished:,} finished sessions: start to ready", spread(walls, seconds), f"<= {GOAL_FINISHED_S:.0f} s",
            statistics.median(walls) <= GOAL_FINISHED_S,
            note=f"sessions of {small / 1e3:.1f} KB; fixture written in {made:.0f} s",
        ))
    return figures


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
