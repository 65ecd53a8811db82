"""Redaction: recall per family over the test suite's corpora, lookalikes changed, cost per change.

    python benchmarks/run.py --only redaction
    python benchmarks/redaction.py [--quick] [--against OTHER/redaction.py]

Pure in-process (the `Redactor` with the default rules, no daemon). The corpora are the ones
tests/domain/test_redaction_corpus.py checks (tests/data/redaction/): a secret counts as found only
when exactly its span became the marker, nothing around it changed and the count is right. Costs
are measured per call on typical 200-character command lines (with and without a secret) and on
one 1 MB line, ordinary and trigger-dense; each figure is min/median/max over repeats. `--against`
prints the same rows for another version of the module, measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Figure, percentile

from docpilotd.domain import redaction
from tests.domain.test_redaction_corpus import case, read_corpus

RECALL_GOAL = 0.95
LOOKALIKE_GOAL = 0.02

# Typical command lines of about 200 characters: most hold no secret, some do.
_STEP = " && echo \"step done $(date +%s)\" >> /var/log/deploy/steps.log"
LINES = tuple(line + _STEP for line in (
    "kubectl --context prod -n payments logs deploy/api --since=10m --tail=200 | grep -E 'timeout|refused' | "
    "sort | uniq -c | sort -rn | head -20 && echo done >> /tmp/triage.log",
    "docker run --rm -it -v \"$PWD\":/src -w /src -e HOME=/tmp -e CI=true python:3.11-slim bash -lc "
    "'pip install -e .[test] && pytest -q -x tests/unit'",
    "git log --pretty=format:'%h %an %s' --since='2 weeks ago' -- docpilotd/ | grep -v Merge | awk '{print $2}' | "
    "sort | uniq -c | sort -rn > authors.txt",
    "curl -sS -H 'Accept: application/json' -H \"Authorization: Bearer $TOKEN\" https://api.example.com/v1/items"
    "?limit=100&page=2 | jq '.items[] | {id, name, updated_at}'",
    "export DATABASE_URL=postgres://app:s3cr3tPassw0rd@db.internal:5432/app && ./manage.py migrate --noinput && "
    "./manage.py collectstatic --noinput --clear",
    "docker login -u deploy -p Tr0ub4dor3x registry.example.com && docker push registry.example.com/team/api:1.4.2"
    " && docker logout registry.example.com",
))


def load(path: str) -> ModuleType:
    """Another version of docpilotd/domain/redaction.py, imported as a sibling of this one."""
    spec = importlib.util.spec_from_file_location("docpilotd.domain._redaction_other", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def recall(module: ModuleType, label: str = "") -> list[Figure]:
    """Rows: recall of each corpus family (token shapes summarised: the lowest families named),
    and the share of lookalikes changed."""
    redactor = module.Redactor.from_patterns()
    figures = []
    for corpus, title in (("tokens.txt", "token shapes"), ("shell_lines.txt", "shell lines")):
        scores: dict[str, float] = {}
        found = total = 0
        for family, lines in read_corpus(corpus).items():
            hits = 0
            for line in lines:
                given, expected, secrets = case(line)
                hits += redactor.count(given) == (expected, secrets)
            scores[family] = hits / len(lines)
            found, total = found + hits, total + len(lines)
        lowest = sorted(scores.items(), key=lambda item: item[1])
        below = [f"{name} {score:.2f}" for name, score in lowest if score < RECALL_GOAL]
        figures.append(Figure(
            f"redaction recall{label}, {title} ({len(scores)} families, {total} secrets)",
            f"{found / total:.2f} overall, lowest family {lowest[0][1]:.2f} ({lowest[0][0]})",
            f">= {RECALL_GOAL} every family", lowest[0][1] >= RECALL_GOAL,
            note=("below the goal: " + ", ".join(below[:12]) + (" ..." if len(below) > 12 else "")) if below else "",
        ))
        if corpus == "shell_lines.txt":
            figures.append(Figure(
                f"redaction recall{label}, shell lines per family",
                ", ".join(f"{name} {score:.2f}" for name, score in scores.items()),
                f">= {RECALL_GOAL} every family", lowest[0][1] >= RECALL_GOAL,
            ))
    lines = [line for family in read_corpus("lookalikes.txt").values() for line in family]
    changed = [line for line in lines if redactor.count(line) != (line, 0)]
    figures.append(Figure(
        f"redaction lookalikes changed{label} ({len(lines)} lines)",
        f"{len(changed) / len(lines):.1%} ({len(changed)})", f"<= {LOOKALIKE_GOAL:.0%}",
        len(changed) / len(lines) <= LOOKALIKE_GOAL, note="; ".join(changed[:5]),
    ))
    return figures


def per_call(redactor: redaction.Redactor, lines: tuple[str, ...], calls: int) -> list[float]:
    """Seconds of each of `calls` calls of `count`, cycling through `lines`."""
    times = []
    clock = time.perf_counter
    for i in range(calls):
        line = lines[i % len(lines)]
        t0 = clock()
        redactor.count(line)
        times.append(clock() - t0)
    return times


def spread(values: list[float], unit: float, suffix: str) -> str:
    return (f"{min(values) / unit:.1f} / {statistics.median(values) / unit:.1f} / {max(values) / unit:.1f} {suffix}"
            " (min/median/max)")


def big_line(rng: random.Random, size: int, dense: bool) -> str:
    """One line of `size` characters: command output, or (dense) text full of what the rules look
    for (names, assignments, options, headers, prefixes, tool commands) but holding nothing they
    take (references, short prefixes, commands without their secret)."""
    words = (["password=$X", "token: ${T}", "--password \"$PW\"", "secret = os.getenv(x)", "docker login -u me",
              "-p", "ghp_short", "sk-1", "AKIA12", "eyJhbGc", "http://host/", "curl -s", "mysql -u root", "vault status",
              "ssh-keygen -t ed25519", "Authorization: Bearer $TOKEN", "bearer", "key", "$X", "Q~"]
             if dense else ["GET", "/api/v1/items", "200", "12ms", "user=42", "ok", "INFO", "worker", "queue", "done"])
    separator = "; " if dense else " "
    parts: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(words)
        parts.append(word)
        length += len(word) + len(separator)
    return separator.join(parts)[:size]


def run(quick: bool) -> list[Figure]:
    return recall(redaction) + costs(redaction, quick)


def costs(module: ModuleType, quick: bool, label: str = "", hostile: bool = True) -> list[Figure]:
    """Rows: cost per call on the typical lines (p50, p99) and on one 1 MB line: ordinary output,
    text dense in what the rules look for, and (with `hostile`) the user's patterns at their worst."""
    figures: list[Figure] = []
    redactor = module.Redactor.from_patterns()
    repeats, calls = (3, 2_000) if quick else (7, 20_000)
    per_change(redactor, figures, repeats, calls, label)
    rng = random.Random(18)
    size = 1_000_000
    lines = [("ordinary output", redactor, big_line(rng, size, False)),
             ("trigger-dense", redactor, big_line(rng, size, True))]
    if hostile:
        # Patterns that take Python's backtracking `re` exponential or quadratic time on these texts
        # (nested and overlapping repeats, a test at the very end); the user's patterns run on RE2.
        patterns = [r"(a+)+$", r"(\w+\s?)*$", r"(x|x|xx)*y", r"(?:a|aa)+b", r"(.*a){12}z"]
        mine = module.Redactor.from_patterns(patterns)
        lines.append(("hostile user patterns", mine, "a" * (size // 2) + " ".join(["x"] * (size // 4)) + "!"))
    for kind, chosen, text in lines:
        # The text holds no secret, so each call does the whole work (a replacement early in a
        # line would leave the rules less to read).
        assert chosen.count(text)[1] == 0, kind
        seconds = []
        for _ in range(2 if quick else 5):
            t0 = time.perf_counter()
            chosen.count(text)
            seconds.append(time.perf_counter() - t0)
        figures.append(Figure(
            f"redaction of a 1 MB line{label}, {kind}", spread(seconds, 1e-3, "ms"), "<= 50 ms",
            statistics.median(seconds) <= 0.05,
        ))
    return figures


def per_change(redactor: redaction.Redactor, figures: list[Figure], repeats: int, calls: int, label: str) -> None:
    per_call(redactor, LINES, 200)  # warm up
    p50s, p99s = [], []
    for _ in range(repeats):
        times = per_call(redactor, LINES, calls)
        p50s.append(percentile(times, 0.5))
        p99s.append(percentile(times, 0.99))
    figures.append(Figure(
        f"redaction cost per change{label}, 200-char command line, p50", spread(p50s, 1e-6, "us"), "<= 10 us",
        statistics.median(p50s) <= 10e-6, note=f"lines of {min(map(len, LINES))}-{max(map(len, LINES))} characters",
    ))
    figures.append(Figure(
        f"redaction cost per change{label}, 200-char command line, p99", spread(p99s, 1e-6, "us"), "<= 100 us",
        statistics.median(p99s) <= 100e-6,
    ))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--against", help="another version of docpilotd/domain/redaction.py, measured beside this one")
    args = parser.parse_args()
    from run import print_table

    rows = run(args.quick)
    if args.against:
        other = load(args.against)
        # (Not the hostile patterns: an older version compiled them with Python's re, which may
        # not finish.)
        rows += recall(other, " (other version)") + costs(other, args.quick, " (other version)", hostile=False)
    print_table(rows, args.quick)
