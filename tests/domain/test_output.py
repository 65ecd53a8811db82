"""The kept part of a command's output (docpilotd/domain/output.py) and which command lines `docpilot
run` records itself (domain/invocation.py): pure functions, checked on the texts a user would read."""

from __future__ import annotations

import random
import re

import pytest

from docpilotd.domain import output
from docpilotd.domain.invocation import is_own_invocation, runs_itself


def _parts(kept: str) -> tuple[str, int, str]:
    head, _, rest = kept.partition("[... ")
    match = re.match(r"([\d,]+) bytes not kept \.\.\.\]\n", rest)
    assert match, kept
    return head, int(match.group(1).replace(",", "")), rest[match.end():]


def test_output_within_the_limit_is_kept_whole() -> None:
    data = "ünïcödé ✓\r\nprogress 10%\rprogress 100%\n".encode()
    assert output.keep(data, len(data)) == data.decode()
    assert output.keep(b"", 10) == ""
    assert output.keep(b"x", 0) is None, "0 keeps nothing"


def test_over_the_limit_head_and_tail_are_kept_at_line_ends_with_an_exact_count() -> None:
    lines = [f"line {i}\n".encode() for i in range(10_000)]
    data = b"".join(lines)
    head, dropped, tail = _parts(output.keep(data, 1000) or "")
    assert data.startswith(head.encode()) and data.endswith(tail.encode())
    assert head.endswith("\n") and tail.startswith("line ") and tail.endswith("line 9999\n")
    assert len(head.encode()) + len(tail.encode()) <= 1000
    assert dropped == len(data) - len(head.encode()) - len(tail.encode())


def test_streaming_in_any_chunks_keeps_the_same_as_all_at_once() -> None:
    rng = random.Random(15)
    data = b"".join(f"{rng.random()} {'é' * rng.randrange(5)}\n".encode() for _ in range(50_000))
    for limit in (1, 7, 100, 4096, 65536):
        kept = output.Kept(limit)
        at = 0
        while at < len(data):
            size = rng.choice((1, 3, 4096, 65536, 300_000))
            kept.add(data[at : at + size])
            at += size
        assert kept.text() == output.keep(data, limit), limit
        assert kept.total == len(data)


def test_a_cut_never_splits_a_character_and_bad_bytes_become_replacement_characters() -> None:
    data = "é" * 1000  # two bytes each, no line end to cut at
    head, dropped, tail = _parts(output.keep(data.encode(), 101) or "")
    assert set(head.strip()) == {"é"} and set(tail) == {"é"}
    assert dropped == 2000 - len(head.strip().encode()) - len(tail.encode())
    assert output.keep(b"ok \xff\xfe\n", 100) == "ok \ufffd\ufffd\n"


def test_the_daemons_cap_leaves_what_a_client_kept_with_the_same_limit_as_it_is() -> None:
    kept = output.keep(b"x\n" * 100_000, 1000)
    assert output.keep_text(kept, 1000) == kept
    capped = output.keep_text("y\n" * 100_000, 1000)
    assert capped is not None and len(capped.encode()) <= 1000 + output.MARKER_ROOM and "bytes not kept" in capped
    assert output.keep_text(None, 1000) is None and output.keep_text("text", 0) is None


@pytest.mark.parametrize("text, plain", [
    ("\x1b[31mred\x1b[0m plain", "red plain"),
    ("\x1b]0;window title\x07after", "after"),
    ("\x1b[2K\rprogress 50%\x1b[1G", "\rprogress 50%"),
    ("no escapes\r\n", "no escapes\r\n"),
])
def test_escape_sequences_are_removed_and_carriage_returns_kept(text: str, plain: str) -> None:
    assert output.without_escapes(text) == plain


@pytest.mark.parametrize("line, own, itself", [
    ("docpilot run -- make", True, True),
    ("docpilot run --session 5a1c -- make -j4", True, True),
    ("DOCPILOT_SESSION=x command docpilot run -- ls", True, True),
    ("~/.local/bin/docpilot run -- ls", True, True),
    ("docpilot note 'run'", True, False),
    ("docpilot", True, False),
    ("docpilot runner", True, False),
    ("echo docpilot run", False, False),
    ("docpilot run -- make | tee log", False, False),  # a pipeline is the user's own line
])
def test_which_lines_run_records_itself(line: str, own: bool, itself: bool) -> None:
    assert (is_own_invocation(line), runs_itself(line)) == (own, itself)
