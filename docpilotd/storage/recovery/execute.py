"""Carrying out a recovery plan (fsck --repair, daemon start-up): the only part that writes.

Why apart: deciding (plan.py) reads and never changes anything, so fsck can print a plan exactly
as repair would carry it out; this module changes the data root, in the plan's order, and says
what it did in the same report fields fsck's dry run fills.

Invariants: nothing is ever deleted (what goes away goes to quarantine with its reason); a healthy
main file is never rewritten (a plan only rewrites what is not its own verified snapshot); the
session's file is replaced atomically after a copy of what was there is kept, and not written at
all when what is there cannot be moved away ("unresolved", the session then still needs repair);
an entry that is not a regular file is moved as it is, never opened; what could not be moved is
reported "unresolved" and left alone.
"""

from __future__ import annotations

import stat
from pathlib import Path

from ...errors import StorageError
from .. import journal, quarantine, snapshot
from ..atomic import write_atomic
from ..store import Identity, SessionStore
from .plan import (
    CutTornTail,
    Finding,
    KeepCopy,
    MoveAside,
    Quarantine,
    QuarantineTemp,
    Rewrite,
    RootPlan,
    SessionPlan,
    describe,
)
from .report import SessionReport
from .scan import relative


def execute(store: SessionStore, plan: SessionPlan) -> SessionReport:
    """Carry out `plan`; the report says what was done (and what could not be)."""
    report = describe(plan, with_actions=False)
    ops, quarantine_dir = store.ops, store.layout.quarantine
    unresolved: list[Finding] = []
    blocked = False  # something the plan moves to quarantine is still where it was
    for action in plan.actions:
        if isinstance(action, MoveAside):
            moved, error = move_aside(store, action.path, action.reason)
            if moved is not None:
                report.quarantined.append(relative(store, moved))
            elif error is not None:
                unresolved.append(_unresolved(action.name, error))
        elif isinstance(action, CutTornTail):
            kept = journal.cut_tail(ops, quarantine_dir, action.damage)
            report.quarantined.append(relative(store, kept))
            report.actions.append(f"cut the torn tail of {action.name}")
        elif isinstance(action, KeepCopy):
            kept = quarantine.keep_copy(
                ops, quarantine_dir, action.segment.name, ops.read_bytes(action.segment), action.segment,
                f"damaged record at byte {action.offset}",
            )
            report.quarantined.append(relative(store, kept))
        elif isinstance(action, Rewrite):
            written = True
            if action.displaced is not None:
                try:
                    content: bytes | None = ops.read_bytes(action.path)
                except OSError:
                    content = None  # not a regular file (or unreadable): the entry itself goes
                kept_at: Path | None
                if content is not None:
                    # Copy, then replace atomically: there is never a moment without a main file.
                    kept_at = quarantine.keep_copy(ops, quarantine_dir, action.path.name, content, action.path, action.displaced)
                else:
                    kept_at, error = move_aside(store, action.path, action.displaced)
                    if error is not None:
                        blocked = True
                        written = False
                        unresolved.append(_unresolved(action.name, error, "; the session is not written there"))
                if kept_at is not None:
                    report.quarantined.append(relative(store, kept_at))
            if written:
                # Replay already applied the journal to this session: record the sequence it now contains.
                data = snapshot.encode(snapshot.plain_session(action.session), action.seq)
                store.remember(plan.session_id, Identity.of(write_atomic(ops, action.path, data)))
                report.actions.append(f"restored {action.name} from {action.source}")
        elif isinstance(action, Quarantine):
            if not ops.exists(action.path):
                continue
            try:
                mode = ops.stat(action.path).st_mode
            except OSError:
                mode = 0
            if stat.S_ISREG(mode):
                target = quarantine.move(ops, quarantine_dir, action.path, action.reason)
            else:
                moved, error = move_aside(store, action.path, action.reason)
                if moved is None:
                    if error is not None:
                        blocked = True
                        unresolved.append(_unresolved(action.name, error))
                    continue
                target = moved
            report.quarantined.append(relative(store, target))
    report.problems.extend(f.message for f in unresolved)
    if report.quarantined:
        report.actions.append("quarantined " + ", ".join(report.quarantined))
    if plan.session is not None:
        report.status = "needs_repair" if blocked else "repaired" if report.problems else "ok"
    return report


def execute_root(store: SessionStore, plan: RootPlan) -> list[str]:
    """Carry out what belongs to no session; the lines for the report's `other`."""
    lines = list(plan.ignored)
    for action in plan.actions:
        if isinstance(action, QuarantineTemp):
            quarantine.move(store.ops, store.layout.quarantine, action.path, "stale temp file")
            lines.append(f"quarantined: {action.name} (stale temp file)")
            continue
        moved, error = move_aside(store, action.path, action.reason)
        if moved is not None:
            lines.append(f"quarantined: {action.name} ({action.reason})")
        elif error is not None:
            lines.append(
                f"unresolved: {action.name} ({action.reason}): could not move it to quarantine ({error}); left alone, never read"
            )
    return lines


def _unresolved(name: str, error: str, after: str = "") -> Finding:
    return Finding("unresolved", f"unresolved: {name} could not be moved to quarantine ({error}){after}")


def move_aside(store: SessionStore, path: Path, why: str) -> tuple[Path | None, str | None]:
    """Move an entry that is not docpilotd's file (a FIFO, a directory...) to quarantine as it is:
    (where it went, None), (None, None) when it is gone already, (None, why not) when it could not
    be moved (it is then left where it is, and never read)."""
    try:
        return quarantine.move(store.ops, store.layout.quarantine, path, why), None
    except StorageError as exc:
        if not store.ops.exists(path):
            return None, None
        return None, exc.message
