"""One listing of the data root for recovery: which sessions there are and which files each has.

Why apart: listing each directory once for every session (not once per session, which would cost
sessions x files) is what keeps start-up linear; planning then reads only what the listing names.

Per session, the listing makes no path object (a root of 100,000 sessions would make hundreds of
thousands): names are kept, and `files_of` makes the paths of one session when it is planned.
With `with_stats` (start-up), the session files' lstat comes from the directory listing itself
(scandir), for the manifest's identity check (see storage.manifest).

Backups are listed in both forms (`backups.scan_entries`: a plain generation and its compressed
twin are one). A temp file that an interrupted compression of a generation left in `backups/`
(`.tmp-{backup name}.zst.{random}.tmp`) is a loose temp (quarantined by repair): the plain
generation it was made from is still there, since that is removed only after the rename.

Invariants: nothing is opened here, only listed (lstat kinds from the directory itself); a name
that is not docpilotd's is "ignored" (reported, left alone); an entry with one of our names that
cannot be one of our files (not a regular file, a name that is not UTF-8 text) is a stray, except
a session's own main entry, which is handled with the session; every name given back for a report
is readable text (fsops.display_name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import backups, journal
from ..atomic import TEMP_PREFIX, is_temp_name
from ..fsops import REGULAR, a_kind, display_name, display_path, is_text_name, kind_of
from ..store import SessionStore


@dataclass
class SessionFiles:
    """What a listing found of one session. None: not listed, planning looks itself."""

    temps: list[Path] = field(default_factory=list)
    generations: list[backups.Backup] | None = None  # oldest first
    segments: list[tuple[int, Path]] | None = None
    main_exists: bool | None = None
    # Paths the listing made already (planning makes them itself otherwise).
    main_path: Path | None = None
    journal_dir: Path | None = None


@dataclass
class Listing:
    """One listing of each directory, for every session."""

    ids: list[str]
    mains: set[str]  # ids whose sessions/{id}.json was listed
    temps: dict[str, list[Path]]
    loose_temps: list[Path]
    other: list[str]  # "ignored: ..." findings, in listing order
    backups: dict[str, list[backups.Backup]]
    segments: dict[str, list[tuple[int, str]]]  # per session: (first sequence, name), in order
    journal_dir: Path
    sessions_dir: Path
    # What has the name of one of our files but cannot be one, and why (see the module docstring).
    strays: list[tuple[Path, str]] = field(default_factory=list)
    # With `with_stats`: the lstat of each regular sessions/{id}.json, as listed, by id, and of
    # each journal segment, by name.
    main_stats: dict[str, os.stat_result] = field(default_factory=dict)
    segment_stats: dict[str, os.stat_result] = field(default_factory=dict)

    def files_of(self, session_id: str) -> SessionFiles:
        journal_dir = self.journal_dir
        return SessionFiles(
            self.temps.get(session_id, []), self.backups.get(session_id, []),
            [(first, journal_dir / name) for first, name in self.segments.get(session_id, [])],
            session_id in self.mains, self.sessions_dir / f"{session_id}.json", journal_dir,
        )


def relative(store: SessionStore, path: Path) -> str:
    """`path` relative to the data root, as readable text (see fsops.display_name)."""
    root, text = str(store.layout.root), str(path)
    if text.startswith(root + "/"):  # the usual case, without pathlib's parsing
        return display_path(text[len(root) + 1 :])
    try:
        return display_path(str(path.relative_to(store.layout.root)))
    except ValueError:
        return display_path(text)


def scan(store: SessionStore, with_stats: bool = False) -> Listing:
    ops, layout = store.ops, store.layout
    ids: set[str] = set()
    mains: set[str] = set()
    temps: dict[str, list[Path]] = {}
    loose_temps: list[Path] = []
    other: list[str] = []
    strays: list[tuple[Path, str]] = []
    special_mains: dict[str, tuple[Path, str]] = {}  # id -> (path, why) of a main that is no file
    stats: dict[str, os.stat_result] = {}
    try:
        if with_stats:
            stats = ops.list_stats(layout.sessions)
            listed = {name: kind_of(st.st_mode) for name, st in stats.items()}
        else:
            listed = ops.list_kinds(layout.sessions)
    except FileNotFoundError:
        listed = {}
    main_stats: dict[str, os.stat_result] = {}
    sessions_dir = layout.sessions
    for name in sorted(listed):
        kind = listed[name]
        ours = name.endswith(".json") or is_temp_name(name)
        if not ours:
            why = "is not a regular file" if kind != REGULAR else "is not a session file"
            other.append(f"ignored: sessions/{display_name(name)} {why}")
        elif not is_text_name(name):
            strays.append((sessions_dir / name, "a name that is not UTF-8 text, which docpilotd never writes"))
        elif kind != REGULAR:
            if is_temp_name(name):
                strays.append((sessions_dir / name, f"not a regular file: {a_kind(kind)}"))
            else:
                special_mains[name[: -len(".json")]] = (sessions_dir / name, f"not a regular file: {a_kind(kind)}")
        elif is_temp_name(name):
            session_id = temp_owner(name)
            if session_id:
                temps.setdefault(session_id, []).append(sessions_dir / name)
            else:
                loose_temps.append(sessions_dir / name)
        else:
            session_id = name[: -len(".json")]
            ids.add(session_id)
            mains.add(session_id)
            if with_stats:
                main_stats[session_id] = stats[name]
    by_session, junk, backup_strays = backups.scan_entries(ops, layout.backups)
    ids.update(by_session)
    for name in junk:
        if backup_temp(name):
            loose_temps.append(layout.backups / name)
        else:
            other.append(f"ignored: backups/{display_name(name)} is not a backup file")
    strays.extend((layout.backups / name, why) for name, why in backup_strays)
    ids.update(temps)
    segment_stats: dict[str, os.stat_result] = {}
    if with_stats:
        try:
            segment_stats = ops.list_stats(layout.journal)
        except FileNotFoundError:
            pass
        segment_kinds = {name: kind_of(st.st_mode) for name, st in segment_stats.items()}
        segments, segment_strays = journal.index_names(ops, layout.journal, segment_kinds)
    else:
        segments, segment_strays = journal.index_names(ops, layout.journal)
    strays.extend((layout.journal / name, why) for name, why in segment_strays)
    ids.update(segments)
    for session_id, (path, why) in special_mains.items():
        if session_id in ids:
            mains.add(session_id)  # in the way of the session's own file: handled with the session
        else:
            strays.append((path, why))
    return Listing(sorted(ids), mains, temps, loose_temps, other, by_session, segments, layout.journal, sessions_dir, sorted(strays),
                   main_stats, segment_stats)


def backup_temp(name: str) -> bool:
    """Whether a name in backups/ is the temp file of a compressed generation being written
    (`atomic.temp_path_for` of a `.json.zst` backup name). Moved to quarantine as it is, like
    the temp files of sessions/ that no session owns."""
    if not (name.startswith(TEMP_PREFIX) and is_temp_name(name) and is_text_name(name)):
        return False
    inner, _, _ = name[len(TEMP_PREFIX) :].rpartition(".")  # without ".tmp"
    inner, _, _ = inner.rpartition(".")  # without the random part
    return inner.endswith(backups.COMPRESSED_SUFFIX) and backups.parse_name(Path("."), inner) is not None


def temp_owner(name: str) -> str | None:
    if name.startswith(TEMP_PREFIX):  # ours: .tmp-{id}.json.{random}.tmp
        inner = name[len(TEMP_PREFIX) :]
        head, sep, _ = inner.partition(".json.")
        return head if sep else None
    if name.endswith(".tmp") and "." not in name[: -len(".tmp")]:  # DocPilot's: {id}.tmp
        return name[: -len(".tmp")]
    return None
