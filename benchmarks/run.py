"""Run docpilotd's benchmarks and print one table: figure, measured, goal, met?

    python benchmarks/run.py [--quick] [--only NAME ...] [--json FILE]

Each benchmark is a module of this directory with `run(quick) -> list[Figure]`; they run one after
the other, each in a fresh temporary data root with its own daemon, and every ratio in the table is
measured side by side in the same run (these machines are shared and noisy). `--quick` uses small
sizes and few repetitions: it checks that everything runs (CI), and a goal it misses is printed but
not an error. Without `--quick`, the exit code is 1 when a goal is not met. A benchmark that fails
with an exception is reported in the table and makes the exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Figure, machine

# name: module; the order of the table.
BENCHMARKS: dict[str, str] = {
    "prompt": "prompt",
    "shell_startup": "shell_startup",
    "client": "client",
    "per_change": "per_change",
    "throughput": "throughput",
    "defaults": "defaults",
    "stall": "stall",
    "startup": "startup",
    "memory": "memory",
    "capture_latency": "capture_latency",
    "spool_ingest": "spool_ingest",
    "run_passthrough": "run_passthrough",
    "generate": "generate",
    "search": "search",
    "redaction": "redaction",
    "backups": "backups",
    "point_in_time": "point_in_time",
    "scrub": "scrub",
}


def print_table(figures: list[Figure], quick: bool = False, title: str | None = None) -> None:
    rows = [("figure", "measured", "goal", "met?")]
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else ("(quick)" if quick else "NO"))
        measured = f.measured + (f"; {f.note}" if f.note else "")
        rows.append((f.name, measured, f.goal, met))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    if title:
        print(title)
    for n, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="docpilotd benchmarks: one table of figures and goals")
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI: goals are shown, not enforced")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only this benchmark (repeatable)")
    parser.add_argument("--json", help="also write the figures to this file as JSON")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    figures: list[Figure] = []
    failed = False
    started = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        print(f"running {name}...", file=sys.stderr, flush=True)
        try:
            module = __import__(BENCHMARKS[name])
            figures.extend(module.run(args.quick))
        except Exception as exc:  # a broken benchmark is a row, and the others still run
            traceback.print_exc()
            figures.append(Figure(f"{name}: FAILED", f"{type(exc).__name__}: {exc}"[:200], met=False))
            failed = True
        print(f"  {name}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    mode = "quick mode (small sizes; goals not enforced)" if args.quick else "full mode"
    print_table(figures, args.quick, title=f"docpilotd benchmarks, {mode}, {time.monotonic() - started:.0f} s\n"
                f"machine: {machine()}, load average at the end {os.getloadavg()[0]:.2f}\n")
    if args.json:
        Path(args.json).write_text(json.dumps([f.__dict__ for f in figures], indent=2) + "\n")
    if failed:
        return 2
    if not args.quick and any(f.met is False for f in figures):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
