"""A catalogue of damaged files, with figures: the loader never crashes and never accepts damage.

Snapshots: every truncation offset of a real snapshot, random byte flips, NUL fill, zero bytes,
and invalid invariants. "Accepted silently" means a damaged file that the loader calls usable
although its content differs from the original (a flip inside JSON whitespace, for example, is
harmless and is not counted). Journals: a torn tail at every offset of the last record and a
flipped byte in the middle: every complete record before the damage must be kept, nothing after a
torn tail invented, and the damage reported.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from docpilotd.domain import changes
from docpilotd.domain.model import Annotation, CommandEntry, SessionMetadata
from docpilotd.domain.timestamps import format_ns
from docpilotd.storage import journal, snapshot

BASE = 1_754_038_800 * 1_000_000_000


@dataclass
class DamageFigures:
    files_tried: int = 0
    loader_crashes: int = 0
    accepted_silently: int = 0
    journals_tried: int = 0
    journal_problems: int = 0
    examples: list[str] = field(default_factory=list)


def sample_session(commands: int = 12) -> changes.Session:  # type: ignore[name-defined]
    meta = SessionMetadata("/home/ada", "zsh", "linux", "host", "ada", ["demo"], None, {"k": "v"})
    session = changes.create(
        changes.Create(session_id=str(uuid.uuid4()), description="Set up the proxy ✓", at=format_ns(BASE), event_id=str(uuid.uuid4()), metadata=meta)
    )
    for i in range(commands):
        entry = CommandEntry(f"echo 'step {i}' | tee -a log", format_ns(BASE + (i + 1) * 10**9), i % 3 and 0, "/srv", "zsh", None, None)
        changes.apply(session, changes.RecordCommand(entry=entry, event_id=str(uuid.uuid4())))
        if i % 4 == 0:
            note = Annotation(str(uuid.uuid4()), f"note {i}", format_ns(BASE + (i + 1) * 10**9 + 5), "Warning")
            changes.apply(session, changes.Annotate(annotation=note, event_id=str(uuid.uuid4())))
    return session


def _judge(data: bytes, original: bytes, figures: DamageFigures, what: str) -> None:
    figures.files_tried += 1
    try:
        decoded = snapshot.decode(data)
    except BaseException as exc:
        figures.loader_crashes += 1
        figures.examples.append(f"{what}: {type(exc).__name__}: {exc}")
        return
    if decoded.usable and decoded.session is not None:
        if snapshot.encode_body(decoded.session) != original:
            figures.accepted_silently += 1
            if len(figures.examples) < 8:
                figures.examples.append(f"{what}: damaged content accepted")


def run_snapshots(flips: int, seed: int = 3) -> DamageFigures:
    rng = random.Random(seed)
    figures = DamageFigures()
    session = sample_session()
    data = snapshot.encode(session, 17)
    original = snapshot.encode_body(session)
    for cut in range(len(data)):
        _judge(data[:cut], original, figures, f"truncated at {cut}")
    for i in range(flips):
        damaged = bytearray(data)
        position = rng.randrange(len(damaged))
        damaged[position] ^= 1 << rng.randrange(8)
        _judge(bytes(damaged), original, figures, f"bit flip at {position}")
    for what, damaged_bytes in (
        ("zero bytes", b""),
        ("all NUL", b"\0" * len(data)),
        ("NUL block", data[:100] + b"\0" * 512 + data[612:]),
        ("deep nesting", b"[" * 100_000),
        ("huge number", data.replace(b'"total_commands": 12', b'"total_commands": 123456789012345678901234567890')),
        ("lone surrogate", data.replace(b"Set up the proxy", b"Set up \\ud800 proxy")),
        ("unknown state", data.replace(b'"state": "Active"', b'"state": "Sleeping"')),
    ):
        _judge(damaged_bytes, original, figures, what)
    # Invariants broken but checksum recomputed (a buggy writer, not rot): must be refused.
    value = msgspec.json.decode(snapshot.encode_body(session))
    for mutate in (
        lambda v: v["stats"].__setitem__("total_commands", 99),
        lambda v: v.__setitem__("description", "  "),
        lambda v: v.__setitem__("stopped_at", format_ns(BASE - 10**9)),
        lambda v: v["annotations"][0].__setitem__("id", "not-a-uuid"),
        lambda v: v.__setitem__("started_at", format_ns(BASE - 10**9)),
    ):
        broken = msgspec.json.decode(msgspec.json.encode(value))
        mutate(broken)
        bogus = msgspec.convert(broken, snapshot.Session)
        _judge(snapshot.encode(bogus, 17), original, figures, "invalid invariants")
    return figures


def run_journals(figures: DamageFigures, seed: int = 4) -> DamageFigures:
    rng = random.Random(seed)
    session_id = str(uuid.uuid4())
    meta = SessionMetadata("/w", "zsh", "linux", "h", None, [], None, {})
    frames = [journal.frame(1, changes.Create(session_id=session_id, description="j", at=format_ns(BASE), event_id=str(uuid.uuid4()), metadata=meta))]
    for i in range(2, 9):
        note = Annotation(str(uuid.uuid4()), f"n{i}", format_ns(BASE + i), "Note")
        frames.append(journal.frame(i, changes.Annotate(annotation=note, event_id=str(uuid.uuid4()))))
    whole = b"".join(frames)
    last = len(whole) - len(frames[-1])
    path = Path("segment.wal")
    for cut in range(last + 1, len(whole)):
        figures.journals_tried += 1
        records, damage = journal.scan_segment(whole[:cut], path)
        if [r.seq for r in records] != list(range(1, 8)) or not (damage and damage[-1].torn_tail):
            figures.journal_problems += 1
    for _ in range(200):
        figures.journals_tried += 1
        damaged = bytearray(whole)
        index = rng.randrange(1, len(frames) - 1)
        start = sum(len(f) for f in frames[:index])
        damaged[start + rng.randrange(len(frames[index]))] ^= 0xFF
        records, damage = journal.scan_segment(bytes(damaged), path)
        seqs = [r.seq for r in records]
        if index + 1 in seqs or not damage or any(s not in range(1, 9) for s in seqs) or seqs[-1] != 8:
            figures.journal_problems += 1
    return figures
