"""Session ids have one spelling on disk too: lower case, hyphenated (`domain.validate.canonical_uuid`).

Why: DocPilot and docpilotd write ids that way, but a file copied in by hand may be named
`3D65A113-....json` or `3d65a1135fa1....json`. Left alone it became a second session with the
"same" id (and on a case-insensitive file system it would overwrite the first). So before recovery
reads sessions/ and backups/, every file named with another spelling of a UUID is dealt with:

- a session file whose canonical twin does not exist is adopted: its content, with the id spelled
  canonically, is written under the canonical name (plain DocPilot JSON; recovery validates it like
  any other file), and the original goes to quarantine;
- one whose canonical twin exists, and any backup or journal segment with such a name, goes to
  quarantine with a reason that names the session (`docpilot import` adds it back if wanted).

Invariants: nothing is deleted (originals go to quarantine); an unreadable or invalid file is only
moved aside, never rewritten; `repair=False` changes nothing and only reports.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from ..domain.model import Session
from ..domain.validate import canonical_uuid, is_uuid
from ..errors import DocpilotError
from . import quarantine, snapshot
from .atomic import write_atomic
from .fsops import display_name, read_regular
from .store import SessionStore

_BACKUP = re.compile(r"(?P<id>[0-9A-Fa-f-]{32,36})_")
_SEGMENT = re.compile(r"(?P<id>[0-9A-Fa-f-]{32,36})\.")
# A name that starts with a canonically spelled id and then `.` or `_` carries no other spelling,
# whatever follows: the one check most names need (a root of 100,000 sessions has 300,000 names).
_CANONICAL_START = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}[._]")


def _misspelled(name: str, pattern: re.Pattern[str] | None) -> str | None:
    """The canonical id when `name` carries another spelling of one, else None."""
    if pattern is None:
        stem = name[: -len(".json")] if name.endswith(".json") else None
    else:
        match = pattern.match(name)
        stem = match.group("id") if match else None
    if stem is None or not is_uuid(stem):
        return None
    canonical = canonical_uuid(stem)
    return canonical if canonical != stem else None


def normalize(store: SessionStore, repair: bool) -> list[str]:
    """Deal with files named with another spelling of an id; returns one line per file."""
    layout, ops = store.layout, store.ops
    lines: list[str] = []
    for directory, pattern in ((layout.sessions, None), (layout.backups, _BACKUP), (layout.journal, _SEGMENT)):
        try:
            kinds = ops.list_kinds(directory)
        except OSError:
            continue
        canonical_start = _CANONICAL_START.match
        found = [(name, kind) for name, kind in kinds.items() if not canonical_start(name)]
        for name, kind in sorted(found):
            canonical = _misspelled(name, pattern)
            if canonical is None:
                continue
            path = directory / name
            shown = f"{directory.name}/{display_name(name)}"
            twin = layout.session_file(canonical)
            adopt = pattern is None and kind == "file" and not ops.exists(twin)
            if not repair:
                what = f"would be adopted as {canonical}" if adopt else "would be moved to quarantine"
                lines.append(f"{shown}: the id is not spelled canonically (lower case, hyphenated); {what}")
                continue
            try:
                if adopt and _adopt(store, path, canonical):
                    lines.append(f"{shown}: adopted as session {canonical} (the original is in quarantine)")
                    continue
                quarantine.move(ops, layout.quarantine, path,
                                f"another spelling of session id {canonical}; `docpilot import` adds it back if wanted")
                lines.append(f"{shown}: another spelling of session id {canonical}; moved to quarantine")
            except DocpilotError as exc:
                lines.append(f"{shown}: another spelling of session id {canonical}; could not be moved: {exc.message}")
    return lines


def _adopt(store: SessionStore, path: Path, canonical: str) -> bool:
    """Write the file's session under the canonical name; False when it is not a valid session."""
    try:
        data = read_regular(path)
    except OSError:
        return False
    decoded = snapshot.decode(data)
    if decoded.session is None or canonical_uuid(decoded.session.id) != canonical:
        return False
    session = msgspec.structs.replace(snapshot.plain_session(decoded.session), id=canonical)
    assert isinstance(session, Session)
    try:
        write_atomic(store.ops, store.layout.session_file(canonical), snapshot.encode_plain(session))
    except DocpilotError:
        return False
    quarantine.move(store.ops, store.layout.quarantine, path, f"adopted as session {canonical} (id spelled canonically)")
    return True
