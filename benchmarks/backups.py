"""Compressed backup generations: the bytes of a session's backups with compression and without,
and what compressing one generation costs a checkpoint.

    python benchmarks/backups.py [--quick]

Sessions of 1,000 and 100,000 commands (1,000 and 10,000 with --quick), three kinds each: the
benchmark template (`common.build_changes`: one command shape, a note every 25), commands drawn
from a mix of everyday shell work with varied arguments, exit codes and durations, and the same
with captured output on every fourth command. Each session grows through the domain's own state
machine and is saved with docpilotd's own store at the last six points of its growth, 2% of its
commands apart (autosave writes a changed session every 30 s, so the generations kept are the
latest ones, each close to the session's final size), twice side by side from the same encoded
bytes: a store that keeps its generations plain and the daemon's compressing store. With
`backups_kept` at its default (5), both then hold five generations, the newest plain in both;
the figure is the bytes of all of them, per session, min / median / max, and the ratio
compressed / plain (the note gives, per kind, that ratio and what one generation compresses to).
Goal: <= 0.35x.

The cost of compressing one generation (read it, compress, write it atomically with fsync, read
it back and check it, unlink the plain file: `SessionStore.compress`) is timed on each session's
newest plain generation and set beside the save of the snapshot it follows (encode and write,
with fsync): the ratio says how much longer a checkpoint takes with compression. Goal: the
compression of a generation of the 100,000-command session takes <= 1 s (it happens in the I/O
pool, off the event loop, after the snapshot is durable).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

from common import Figure, apply_all, build_changes, ms, new_id, workdir

from docpilotd.domain import changes, timestamps
from docpilotd.domain.model import Annotation, CommandEntry
from docpilotd.paths import layout_for
from docpilotd.storage import backups, snapshot
from docpilotd.storage.store import SessionStore

RATIO_GOAL = 0.35
COMPRESS_GOAL_S = 1.0
SAVES = 6

_TOOLS = [
    "git status", "git diff --stat", "git commit -m 'fix {w} handling in {f}'", "git push origin feature/{w}",
    "cd {d}", "ls -la {d}", "grep -rn '{w}' {d}", "vim {f}", "python -m pytest tests/test_{w}.py -x",
    "kubectl get pods -n {w}", "kubectl logs deploy/{w} --since=10m", "docker build -t {w}:{n} .",
    "curl -sS https://api.example.org/v1/{w}?page={n}", "make -j8 {w}", "cat {f} | jq '.{w}'",
    "ssh deploy@{w}-{n}.internal 'systemctl restart {w}'", "terraform plan -target=module.{w}",
]
_WORDS = ["proxy", "auth", "billing", "cache", "ingest", "search", "metrics", "gateway", "users", "queue"]
_DIRS = ["/srv/app", "/etc/nginx", "~/src/api", "/var/log", "build/release", "deploy/k8s"]


def _varied_changes(commands: int, seed: int, output_every: int) -> list[changes.Change]:
    rng = random.Random(seed)
    at = time.time_ns() - (commands + 10) * 10**9
    result: list[changes.Change] = [
        changes.Create(session_id=new_id(), description="Deploy the billing service", at=timestamps.format_ns(at),
                       event_id=new_id(), metadata=build_changes(0)[0].metadata)  # type: ignore[attr-defined]
    ]
    cwd = rng.choice(_DIRS)
    for i in range(commands):
        at += rng.randrange(1, 90) * 10**9
        word, n = rng.choice(_WORDS), rng.randrange(1, 500)
        text = rng.choice(_TOOLS).format(w=word, n=n, d=rng.choice(_DIRS), f=f"src/{word}/{rng.choice(_WORDS)}.py")
        if text.startswith("cd "):
            cwd = text[3:]
        output = None
        if output_every and i % output_every == 0:
            lines = [f"{word}-{rng.randrange(10**6):06d}  {rng.choice(['Running', 'Pending', 'OK', 'FAILED'])}  "
                     f"{rng.randrange(100)}s  {rng.choice(_DIRS)}/{rng.choice(_WORDS)}.log" for _ in range(rng.randrange(2, 12))]
            output = "\n".join(lines)
        entry = CommandEntry(command=text, timestamp=timestamps.format_ns(at), exit_code=rng.choice([0, 0, 0, 0, 1, 2, 127]),
                             working_directory=cwd, shell="zsh", output=output, error=None,
                             duration_ms=rng.randrange(5, 60_000))
        result.append(changes.RecordCommand(entry=entry, event_id=new_id()))
        if rng.random() < 0.03:
            note = Annotation(id=new_id(), text=f"{word}: {rng.choice(['works now', 'needs a restart', 'check the logs'])}",
                              timestamp=timestamps.format_ns(at + 1000), annotation_type="Note")
            result.append(changes.Annotate(annotation=note, event_id=new_id()))
    return result


def _kinds(commands: int) -> list[tuple[str, list[changes.Change]]]:
    return [
        ("template", build_changes(commands)),
        ("varied", _varied_changes(commands, seed=commands + 1, output_every=0)),
        ("varied with output", _varied_changes(commands, seed=commands + 2, output_every=4)),
    ]


def _backup_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def _measure(tmp: Path, items: list[changes.Change]) -> tuple[int, int, float, float, float]:
    """Bytes of the backups, plain and compressed; seconds to save the last snapshot and to
    compress one generation; the size of that generation compressed / plain."""
    plain_root, packed_root = layout_for(tmp / "plain"), layout_for(tmp / "packed")
    plain_root.ensure()
    packed_root.ensure()
    plain = SessionStore(plain_root)
    packed = SessionStore(packed_root, compress_backups=True)
    step = max(1, len(items) // 50)
    stops = [len(items) - step * k for k in reversed(range(SAVES))]
    session = apply_all(items[:1])
    done = 1
    save_s = 0.0
    for seq in stops:
        for change in items[done:seq]:
            session = changes.apply(session, change)
        done = seq
        started = time.perf_counter()
        data = snapshot.encode(session, seq)
        plain.save_encoded(session.id, data)
        save_s = time.perf_counter() - started
        packed.save_encoded(session.id, data)
    plain_bytes, packed_bytes = _backup_bytes(plain_root.backups), _backup_bytes(packed_root.backups)
    generations = backups.for_session(plain.ops, plain_root.backups, session.id)
    assert len(generations) == SAVES - 1, generations
    compressing = SessionStore(plain_root, compress_backups=True)
    started = time.perf_counter()
    done_compress = compressing.compress(generations[-1])
    compress_s = time.perf_counter() - started
    assert done_compress is not None and compressing.read(done_compress[0].path, session.id).usable
    one = done_compress[0].path.stat().st_size / len(snapshot.encode(
        compressing.read(done_compress[0].path, session.id).session, 0))  # type: ignore[arg-type]
    return plain_bytes, packed_bytes, save_s, compress_s, one


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def _spread(values: list[float], unit: str = "bytes") -> str:
    show = _mb if unit == "bytes" else ms
    return f"min {show(min(values))}, median {show(statistics.median(values))}, max {show(max(values))}"


def run(quick: bool) -> list[Figure]:
    sizes = (1_000, 10_000) if quick else (1_000, 100_000)
    figures: list[Figure] = []
    for commands in sizes:
        plain_sizes, packed_sizes, ratios, saves, compressions, per_kind = [], [], [], [], [], []
        for kind, items in _kinds(commands):
            with workdir("backups") as tmp:
                plain_bytes, packed_bytes, save_s, compress_s, one = _measure(tmp, items)
            plain_sizes.append(plain_bytes)
            packed_sizes.append(packed_bytes)
            ratios.append(packed_bytes / plain_bytes)
            saves.append(save_s)
            compressions.append(compress_s)
            per_kind.append(f"{kind} {packed_bytes / plain_bytes:.2f}x (one generation {one:.2f}x)")
        worst = max(ratios)
        figures.append(Figure(
            f"backup bytes per session, {commands:,} commands, {SAVES - 1} generations: compressed vs plain",
            f"plain {_spread(plain_sizes)}; compressed {_spread(packed_sizes)}; "
            f"ratio min {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x, max {worst:.2f}x",
            f"<= {RATIO_GOAL:.2f}x", worst <= RATIO_GOAL, note=", ".join(per_kind),
        ))
        slowest = max(compressions)
        overhead = [c / s for c, s in zip(compressions, saves)]
        figures.append(Figure(
            f"compressing one generation, {commands:,} commands (read, compress, write + fsync, verify)",
            f"{_spread(compressions, 'time')}; the snapshot save it follows {_spread(saves, 'time')}; "
            f"compress / save median {statistics.median(overhead):.2f}x",
            f"<= {COMPRESS_GOAL_S:.0f} s", slowest <= COMPRESS_GOAL_S,
        ))
    return figures


if __name__ == "__main__":
    from run import print_table

    print_table(run("--quick" in sys.argv), quick="--quick" in sys.argv)
