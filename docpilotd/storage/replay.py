"""Replay of journal records on top of a snapshot: how recovery reaches the last acknowledged change.

Rules: records apply in sequence order, each at most once (a record at or below the last applied
sequence is skipped); a jump in sequence numbers is a lost window and is reported, and the records
after it still apply when the state machine allows them (each record is self-contained); a record
the state machine refuses is reported, never forced. The result is what the daemon serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..domain import changes
from ..domain.model import Session
from ..errors import InvalidTransition
from .journal import Record


@dataclass
class Replayed:
    session: Session | None
    last_seq: int
    applied: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def replay(session: Session | None, base_seq: int, records: list[Record]) -> Replayed:
    result = Replayed(session=session, last_seq=base_seq)
    for record in sorted(records, key=lambda r: r.seq):
        if record.seq <= result.last_seq:
            continue  # already in the snapshot, or a duplicate: never applied twice
        if record.seq != result.last_seq + 1 and not (result.session is None and result.last_seq == 0):
            result.gaps.append((result.last_seq + 1, record.seq - 1))
        try:
            if result.session is None:
                if not isinstance(record.change, (changes.Create, changes.Replace)):
                    raise InvalidTransition("a change for a session that does not exist yet")
                result.session = (
                    changes.create(record.change)
                    if isinstance(record.change, changes.Create)
                    else record.change.session
                )
            else:
                result.session = changes.apply(result.session, record.change)
        except InvalidTransition as exc:
            result.refused.append(f"record {record.seq}: {exc}")
        else:
            result.applied += 1
        result.last_seq = record.seq
    return result
