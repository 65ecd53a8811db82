"""Fuzzing of the protocol parser and the file loaders, and replay of the regression corpus.

Hypothesis generates request lines (arbitrary bytes, and JSON objects built from the protocol's
own field names and odd values) for `server.parse`, and arbitrary or mutated bytes for
`snapshot.decode` and `journal.scan_segment`. A crash is any exception other than the
documented one (`ProtocolError` from the parser; nothing at all from the loaders). Inputs worth
keeping live in `corpus/` and are replayed by every run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docpilotd import protocol
from docpilotd.errors import ProtocolError
from docpilotd.runtime.server import parse
from docpilotd.storage import journal, snapshot

CORPUS = Path(__file__).parent / "corpus"
FIELDS = ["op", "id", "v", "session", "text", "type", "command", "exit_code", "cwd", "shell", "duration_ms",
          "started_at", "started_us", "capture_id", "pipestatus", "description", "tags", "backup", "path", "max_age_days"]
ODD = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
    st.text(max_size=40), st.sampled_from(list(protocol.OPS) + ["", "OP", "hello\u0000"]),
    st.lists(st.integers(), max_size=4), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@dataclass
class FuzzFigures:
    executions: int = 0
    crashes: int = 0
    corpus_replayed: int = 0
    examples: list[str] = field(default_factory=list)


def _parse(figures: FuzzFigures, line: bytes) -> None:
    figures.executions += 1
    try:
        parse(line)
    except ProtocolError:
        pass
    except BaseException as exc:
        figures.crashes += 1
        if len(figures.examples) < 5:
            figures.examples.append(f"parse {line[:80]!r}: {type(exc).__name__}: {exc}")


def _load(figures: FuzzFigures, data: bytes) -> None:
    figures.executions += 1
    try:
        snapshot.decode(data)
        journal.scan_segment(data, Path("fuzz.wal"))
    except BaseException as exc:
        figures.crashes += 1
        if len(figures.examples) < 5:
            figures.examples.append(f"load {data[:80]!r}: {type(exc).__name__}: {exc}")


def run(examples: int) -> FuzzFigures:
    figures = FuzzFigures()
    fuzz_settings = settings(max_examples=examples, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))

    @fuzz_settings
    @given(st.binary(max_size=300))
    def raw_lines(data: bytes) -> None:
        _parse(figures, data)

    @fuzz_settings
    @given(st.dictionaries(st.sampled_from(FIELDS), ODD, max_size=6))
    def structured(fields: dict) -> None:  # type: ignore[type-arg]
        try:
            line = json.dumps(fields).encode()
        except ValueError:
            return
        _parse(figures, line)

    base = snapshot.encode(__import__("tests.reliability.damage", fromlist=["x"]).sample_session(3), 5)

    @fuzz_settings
    @given(st.binary(max_size=400))
    def raw_files(data: bytes) -> None:
        _load(figures, data)

    @fuzz_settings
    @given(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), max_size=8))
    def mutated_files(edits: list[tuple[int, int]]) -> None:
        data = bytearray(base)
        for position, value in edits:
            data[position] = value
        _load(figures, bytes(data))

    for case in (raw_lines, structured, raw_files, mutated_files):
        case()
    replay_corpus(figures)
    return figures


def replay_corpus(figures: FuzzFigures) -> FuzzFigures:
    for path in sorted(CORPUS.iterdir()):
        data = path.read_bytes()
        figures.corpus_replayed += 1
        if path.name.startswith("protocol-"):
            _parse(figures, data)
        else:
            _load(figures, data)
    return figures
