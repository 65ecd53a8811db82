"""The reliability suite: crashes, faults and hostile input, with figures.

    python tests/reliability/run.py            # the long mode (tens of minutes)
    python tests/reliability/run.py --quick    # a few minutes; CI runs this
    python tests/reliability/run.py --only kill9,powerloss

Each part prints one line as it ends, then a table of every figure with its target. The exit
status is 0 only when every figure meets its target. Parts: kill -9 of the real daemon under
concurrent clients (Jepsen-style checker), a crash at chosen system calls of the real daemon
(strace fault injection), simulated power loss over a model file system (with the fsync mutation
check), injected I/O errors at every storage call and a real full disk, a catalogue of damaged
files, fuzzing of the protocol parser and the loaders (with the regression corpus), hostile
clients, and a hostile file system (special files of every kind, names that are not UTF-8 and files
of another user in every data directory, at start-up and while the daemon runs; data directories
and the live journal removed, clock steps, id spellings); after each part
the runner's own descriptors are compared with the baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import logging

logging.getLogger("docpilotd").setLevel(logging.CRITICAL)  # injected faults are the point here

Row = tuple[str, str, str, bool]  # figure, measured, target, met


def part_kill9(quick: bool) -> list[Row]:
    from tests.reliability import kill9

    kills = 30 if quick else 300
    with tempfile.TemporaryDirectory(prefix="dpk-", dir="/tmp") as tmp:
        f = kill9.run(Path(tmp) / "h", kills=kills, clients=6)
    return [
        ("kill -9: kills / acknowledged changes", f"{f.kills} / {f.acknowledged}", f"{kills} / >0", f.kills == kills and f.acknowledged > 0),
        ("kill -9: acknowledged lost, duplicated, unexpected", f"{f.lost}, {f.duplicated}, {f.unexpected}", "0, 0, 0", f.violations == 0),
    ]


def part_syscalls(quick: bool) -> list[Row]:
    from tests.reliability import syscall_crash

    if not syscall_crash.available():
        return [("crash at system calls (strace)", "skipped: strace not installed", "runs", False)]
    f = syscall_crash.run(syscall_crash.default_points(quick))
    return [
        ("crash at fsync/rename/link/unlink/ftruncate/write: points, killed there", f"{f.points_tried}, {f.crashes}", ">0 killed", f.crashes > 0),
        ("crash at system calls: lost, duplicated, unexpected", f"{f.lost}, {f.duplicated}, {f.unexpected}", "0, 0, 0", f.violations == 0),
    ]


def part_powerloss(quick: bool) -> list[Row]:
    from tests.reliability import powerloss

    states = 8 if quick else 640
    e = powerloss.explore(states_per_point=states)
    caught = powerloss.mutation_check(states_per_point=8 if quick else 32, stride=1)
    missed = [site for site, n in caught.items() if n == 0]
    target = ">=1,000" if quick else ">=100,000"
    return [
        ("power loss: crash points, disk states explored", f"{e.crash_points}, {e.states:,}", target, e.states >= (1000 if quick else 100_000)),
        ("power loss: acknowledged lost (also with snapshots destroyed)", str(e.violations.total), "0", e.violations.total == 0),
        ("power loss: fsync lines removed one at a time, caught", f"{len(caught)}, {len(caught) - len(missed)}", "all caught", not missed and len(caught) >= 5),
    ]


def part_faults(quick: bool) -> list[Row]:
    from tests.reliability import io_faults

    f = io_faults.run_injected(max_at=4 if quick else 12)
    disk = io_faults.run_full_disk()
    rows = [
        ("I/O errors (EIO, ENOSPC, EROFS, short) once and persistent: runs, faults hit", f"{f.runs}, {f.faults_hit}", ">0 hit", f.faults_hit > 0),
        ("I/O errors: daemon crashes, acks of unsaved changes, stuck after", f"{f.crashes}, {f.acked_unsaved}, {f.not_recovered}", "0, 0, 0", f.crashes + f.acked_unsaved + f.not_recovered == 0),
    ]
    if disk.ran:
        ok = disk.refused_while_full > 0 and disk.accepted_after > 0 and disk.daemon_alive and disk.lost == 0
        rows.append(("real full tmpfs: refused while full, accepted after, lost", f"{disk.refused_while_full}, {disk.accepted_after}, {disk.lost}", ">0, >0, 0", ok))
    else:
        rows.append(("real full tmpfs", f"skipped: {disk.reason}", "runs where mount is allowed", True))
    return rows


def part_damage(quick: bool) -> list[Row]:
    from tests.reliability import damage

    f = damage.run_snapshots(flips=2000 if quick else 50_000)
    damage.run_journals(f)
    return [
        ("damaged snapshots (every truncation, flips, NUL, invariants): tried", f"{f.files_tried:,}", ">0", f.files_tried > 0),
        ("damaged snapshots: loader crashes, damage accepted silently", f"{f.loader_crashes}, {f.accepted_silently}", "0, 0", f.loader_crashes + f.accepted_silently == 0),
        ("damaged journals (torn tails, middle damage): tried, wrong results", f"{f.journals_tried}, {f.journal_problems}", ">0, 0", f.journal_problems == 0),
    ]


def part_fuzz(quick: bool) -> list[Row]:
    from tests.reliability import fuzz

    f = fuzz.run(examples=300 if quick else 10_000)
    return [
        ("fuzzing (parser, loaders) + corpus: executions, corpus inputs", f"{f.executions:,}, {f.corpus_replayed}", ">0", f.executions > 0 and f.corpus_replayed > 0),
        ("fuzzing: crashes", str(f.crashes), "0", f.crashes == 0),
    ]


def part_hostile(quick: bool) -> list[Row]:
    from tests.reliability import hostile

    f = hostile.run(flood=300 if quick else 3000, slow=50 if quick else 200)
    return [
        ("hostile clients: attacks, daemon up, good requests failed", f"{f.attacks}, {'yes' if f.daemon_up else 'NO'}, {f.good_failures}/{f.good_requests}", "up, 0 failed", f.daemon_up and f.good_failures == 0),
        ("hostile clients: stored files changed, slowest good answer", f"{f.files_changed}, {f.slowest_good_ms:.0f} ms", "0, <1000 ms", f.files_changed == 0 and f.slowest_good_ms < 1000),
        ("hostile clients: daemon RSS growth, descriptors before/after", f"{f.rss_growth_kb} KB, {f.fds_before}/{f.fds_after}", "<20 MB, back to baseline", f.rss_growth_kb < 20_000 and f.fds_after <= f.fds_before),
        ("another uid", f.other_uid, "refused", "served" not in f.other_uid),
    ]


def part_hostile_fs(quick: bool) -> list[Row]:
    from tests.reliability import hostile_fs

    f = hostile_fs.run(quick=quick)
    kinds = f"{len(f.kinds)} kinds" + (f"; {', '.join(f.skipped)} skipped: need root" if f.skipped else "")
    return [
        ("hostile file system: special files placed (every data directory)", f"{f.placed} ({kinds})", ">0", f.placed > 0),
        ("hostile file system: hangs, crashes", f"{f.hangs}, {f.crashes}", "0, 0", f.hangs == 0 and f.crashes == 0),
        ("hostile file system: starts that served, fsck runs that returned", f"{f.starts_served}/{f.starts}, {f.fsck_returned}/{f.fsck_runs}",
         "all, all", f.starts > 0 and f.starts_served == f.starts and f.fsck_runs > 0 and f.fsck_returned == f.fsck_runs),
        ("hostile file system: acknowledged changes lost, planted content served", f"{f.lost} of {f.acknowledged}, {f.planted_served}",
         "0, 0", f.acknowledged > 0 and f.lost == 0 and f.planted_served == 0),
        ("hostile file system: files outside the data root changed, saves refused", f"{f.outside_changed}, {f.saves_refused}",
         "0, 0", f.outside_changed == 0 and f.saves_refused == 0),
    ]


def part_hostile_runtime(quick: bool) -> list[Row]:
    from tests.reliability import hostile_runtime

    f = hostile_runtime.run(quick=quick)
    return [
        ("data directories removed, live journal segment deleted or replaced: scenarios, acknowledged",
         f"{f.scenarios}, {f.acknowledged}", "7, >0", f.scenarios == 7 and f.acknowledged > 0),
        ("... acknowledged changes lost, daemons crashed, saves that wrote nothing yet said ok",
         f"{f.lost}, {f.crashed}, {f.false_saves}", "0, 0, 0", f.lost == 0 and f.crashed == 0 and f.false_saves == 0),
        ("clock stepped back and forward (libfaketime): steps, files its own validator rejects",
         f"{f.clock_steps}, {f.invalid_after_step}" if f.clock_steps else "skipped: libfaketime not installed",
         "2, 0", f.clock_steps == 2 and f.invalid_after_step == 0),
        ("session id spellings (case, hyphens, prefixes, imports): uses, extra sessions",
         f"{f.spellings}, {f.extra_sessions}", ">0, 0", f.spellings > 0 and f.extra_sessions == 0),
    ]


PARTS: dict[str, Callable[[bool], list[Row]]] = {
    "kill9": part_kill9, "syscalls": part_syscalls, "powerloss": part_powerloss, "faults": part_faults,
    "damage": part_damage, "fuzz": part_fuzz, "hostile": part_hostile, "hostile_fs": part_hostile_fs,
    "hostile_runtime": part_hostile_runtime,
}


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> int:
    parser = argparse.ArgumentParser(description="docpilotd reliability suite")
    parser.add_argument("--quick", action="store_true", help="a few minutes (what CI runs)")
    parser.add_argument("--only", help="comma-separated parts: " + ",".join(PARTS))
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(PARTS)
    unknown = [name for name in chosen if name not in PARTS]
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)}")
    rows: list[Row] = []
    baseline = _open_fds()
    started = time.monotonic()
    for name in chosen:
        part_started = time.monotonic()
        try:
            part_rows = PARTS[name](args.quick)
        except Exception as exc:  # a part that breaks is a failed figure, and the rest still run
            part_rows = [(f"{name}: the part itself failed", f"{type(exc).__name__}: {exc}", "runs", False)]
        leaked = _open_fds() - baseline
        part_rows.append((f"{name}: runner descriptors after the part", f"{leaked:+d}", "+0", leaked <= 0))
        rows.extend(part_rows)
        met = all(r[3] for r in part_rows)
        print(f"[{name}] {'ok' if met else 'FAILED'} in {time.monotonic() - part_started:.0f} s", flush=True)
    width = max(len(r[0]) for r in rows)
    mwidth = max(len(r[1]) for r in rows)
    print(f"\n{'figure':<{width}}  {'measured':<{mwidth}}  {'target':<26} met")
    for figure, measured, target, met in rows:
        print(f"{figure:<{width}}  {measured:<{mwidth}}  {target:<26} {'yes' if met else 'NO'}")
    failed = sum(1 for r in rows if not r[3])
    mode = "quick" if args.quick else "long"
    print(f"\nreliability ({mode}): {len(rows) - failed} passed, {failed} failed in {time.monotonic() - started:.0f} s")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
