"""Removing a secret, or a whole session, from every file of the data root that holds it.

What `docpilot redact` and `docpilot purge` need from storage; the runtime (runtime/privacy.py)
takes care of the session in memory, its snapshot and the shell spool.

A session's data can be in: `sessions/{id}.json` (and stale temp files of an interrupted save),
`backups/{id}_*.json` and `backups/{id}_*.json.zst` (compressed generations, and temp files of an
interrupted compression), `journal/{id}.*.wal`, and in quarantine under any of those names (the
quarantine keeps `{time}_{original name}` and a `.reason` beside it).

A compressed file is scrubbed through its content: decompressed, redacted as its plain form would
be, and compressed again (a compressed backup stays a valid compressed backup). One that does not
decompress is only searched, in the part that does, and reported as remaining if the secret is
there: it cannot be rewritten without losing what it still holds.

`scrub_files` rewrites each file of one session that contains the secret, atomically
(`write_atomic`: a reader or a crash sees the old file or the new one), and leaves every other
file alone. Structured files are rewritten through their structure, so they stay valid and keep
what recovery relies on: a backup is decoded, redacted and encoded again with the same journal
sequence (a fresh checksum); a journal segment keeps every record, in order, with the same
sequence numbers, each record that held the secret framed again with its redacted change (so its
CRC is right); damaged bytes that cannot be decoded are redacted as raw text. A backup whose
checksum disagreed, and anything in quarantine that is not a journal segment, is redacted as raw
text (quarantine keeps evidence; it is never laundered into a file that looks verified). A file
that still holds the secret afterwards (the pattern matched an id or a timestamp, which
redaction never changes) is reported as remaining, never silently passed over.

Only regular files are read, rewritten or deleted: anything else with a session's name (a FIFO, a
directory... that recovery set aside in quarantine) holds nothing docpilotd wrote, and is left
where it is.

`purge_files` deletes every file of one session: quarantine copies first, then journal and
backups, the snapshot last (so that a look at the data root during a purge never finds a backup
without its session). Both are explicit requests: promise 2 ("nothing good is ever destroyed")
allows exactly these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..domain.redaction import Redactor, json_escaped, literal_rule
from . import backups, compression
from .atomic import TEMP_PREFIX, storage_error, write_atomic
from .fsops import REGULAR, NotRegularFile
from .journal import HEADER, frame, scan_segment, segments_of
from .maintenance import remove_session_files, sync_dir, unlink_file
from .snapshot import decode, encode, plain_session
from .store import SessionStore


@dataclass
class ScrubReport:
    rewritten: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    examined: int = 0


class Scrubber:
    """One secret, as a redactor for structured text and one for the raw bytes of files."""

    def __init__(self, redactor: Redactor, literal: str | None = None) -> None:
        self.redactor = redactor
        raw_rules = list(redactor.rules)
        if literal is not None:
            escaped = json_escaped(literal)
            if escaped != literal:
                raw_rules.append(literal_rule(escaped, "literal (as JSON)"))
        self.raw_redactor = Redactor(raw_rules, redactor.marker)

    def raw(self, data: bytes) -> tuple[bytes, int]:
        """Bytes with the secret replaced as text; bytes that are not UTF-8 are kept as they are."""
        text, count = self.raw_redactor.count(data.decode("utf-8", "surrogateescape"))
        return (text.encode("utf-8", "surrogateescape"), count) if count else (data, 0)

    def raw_bytes(self, data: bytes) -> bytes:
        return self.raw(data)[0]

    def found_in(self, data: bytes) -> bool:
        return self.raw(data)[1] > 0

    def snapshot_file(self, data: bytes) -> bytes:
        """A snapshot or backup file, redacted through its structure when it can be trusted."""
        decoded = decode(data)
        if decoded.session is not None and decoded.integrity != "mismatch":
            session, count = self.redactor.session(plain_session(decoded.session))
            if count:
                return encode(session, decoded.seq)
            # Found only outside what redaction reads: replaced as raw text, but never so that the
            # file stops being a valid session (a pattern that also matches JSON keys, "n" or "id",
            # would break it). What stays is reported as remaining by scrub_files.
            redacted = decode(self.raw(data)[0])
            if redacted.session is None or redacted.problem is not None:
                return data
            return encode(plain_session(redacted.session), decoded.seq)  # with a fresh checksum
        return self.raw(data)[0]

    def segment(self, data: bytes) -> bytes:
        """A journal segment (or a torn tail of one) with every record that held the secret
        framed again, redacted; bytes between records that do not decode are redacted raw."""
        records, damage = scan_segment(data, Path("scrub.wal"))
        pieces: list[tuple[int, bytes]] = []
        for record in records:
            _, length, _, _ = HEADER.unpack_from(data, record.offset)
            original = data[record.offset : record.offset + HEADER.size + length]
            change, count = self.redactor.change(record.change)
            pieces.append((record.offset, frame(record.seq, change) if count else original))
        for bad in damage:
            pieces.append((bad.offset, self.raw(data[bad.offset : bad.offset + bad.size])[0]))
        # Records whose CRC matched but whose payload is of a newer format are reported as damage
        # too (with their full extent), so the pieces cover the segment exactly once, in order.
        pieces.sort(key=lambda piece: piece[0])
        return b"".join(piece for _, piece in pieces)


def _relative(store: SessionStore, path: Path) -> str:
    try:
        return str(path.relative_to(store.layout.root))
    except ValueError:  # pragma: no cover - every path here is under the root
        return str(path)


def belongs_to(name: str, session_id: str) -> bool:
    """Whether a file name in sessions/, backups/, journal/ or (without its quarantine time
    prefix) quarantine/ is one of `session_id`'s: snapshot, backup, segment, temp file or copy."""
    if name.endswith(".reason"):
        name = name[: -len(".reason")]
    if name.startswith(TEMP_PREFIX):
        name = name[len(TEMP_PREFIX) :]
    return name.startswith((f"{session_id}.", f"{session_id}_"))


def quarantined_files(store: SessionStore, session_id: str) -> list[Path]:
    """Files in quarantine that came from this session (with their .reason files); only regular
    files (and the reasons of those)."""
    try:
        kinds = store.ops.list_kinds(store.layout.quarantine)
    except FileNotFoundError:
        return []
    found = []
    for name in sorted(kinds):
        _, sep, original = name.partition("_")
        if not sep or not belongs_to(original, session_id) or kinds[name] != REGULAR:
            continue
        if name.endswith(".reason") and kinds.get(name[: -len(".reason")], REGULAR) != REGULAR:
            continue  # the reason of something that is not a file: they stay together
        found.append(store.layout.quarantine / name)
    return found


def stale_temp_files(store: SessionStore, session_id: str) -> list[Path]:
    """Leftover temp files of interrupted saves of this session in sessions/ (ours and DocPilot's),
    and of interrupted compressions of its generations in backups/."""
    found = []
    for directory in (store.layout.sessions, store.layout.backups):
        try:
            kinds = store.ops.list_kinds(directory)
        except FileNotFoundError:
            continue
        found += [
            directory / name for name in sorted(kinds)
            if name.endswith(".tmp") and belongs_to(name, session_id) and kinds[name] == REGULAR
        ]
    return found


def is_compressed(name: str) -> bool:
    """A compressed generation, a quarantined copy of one, or a temp file of one."""
    return name.endswith(backups.COMPRESSED_SUFFIX) or (name.endswith(".tmp") and backups.COMPRESSED_SUFFIX + "." in name)


def scrub_files(
    store: SessionStore, session_id: str, scrubber: Scrubber, skip: Iterable[Path] = (),
) -> ScrubReport:
    """Rewrite every file of the session that holds the secret (see the module docstring).

    `skip`: files the caller owns at this moment (the journal segment being appended to, the
    snapshot it rewrites itself); they are only checked, and reported as remaining if they hold
    the secret."""
    report = ScrubReport()
    skipped = set(skip)
    layout = store.layout
    work: list[tuple[Path, Callable[[bytes], bytes]]] = []
    work.extend((path, scrubber.snapshot_file)
                for b in backups.for_session(store.ops, layout.backups, session_id) for path in b.paths)
    work.extend((path, scrubber.segment) for _, path in segments_of(store.ops, layout.journal, session_id))
    for path in quarantined_files(store, session_id):
        if path.name.endswith(".reason"):
            continue
        work.append((path, scrubber.segment if path.name.endswith((".wal", ".wal.tail")) else scrubber.raw_bytes))
    work.extend((path, scrubber.raw_bytes) for path in stale_temp_files(store, session_id))
    main = layout.session_file(session_id)
    for path, rewrite in [(main, scrubber.snapshot_file), *work]:
        try:
            stored = store.ops.read_bytes(path)
        except (FileNotFoundError, NotRegularFile):
            continue  # gone, or not a file docpilotd wrote (a FIFO, a directory...): nothing to scrub
        except OSError as exc:
            raise storage_error(exc, f"reading {path.name}") from exc
        report.examined += 1
        packed = is_compressed(path.name)
        data, _ = compression.decompress(stored) if packed else (stored, None)
        if data is None:  # damaged: see the module docstring
            if scrubber.found_in(compression.readable_part(stored)):
                report.remaining.append(_relative(store, path))
            continue
        if not scrubber.found_in(data):
            continue
        if path in skipped or path == main:
            report.remaining.append(_relative(store, path))
            continue
        new = rewrite(data)
        if new != data:
            write_atomic(store.ops, path, compression.compress(new) if packed else new)
            report.rewritten.append(_relative(store, path))
        if scrubber.found_in(new):
            report.remaining.append(_relative(store, path))
    return report


def purge_listing(store: SessionStore, session_id: str) -> list[str]:
    """What `purge_files` would remove (relative to the root), removing nothing."""
    from .maintenance import session_files

    found = [_relative(store, path) for path in [*quarantined_files(store, session_id), *stale_temp_files(store, session_id)]]
    return found + session_files(store, session_id)


def purge_files(store: SessionStore, session_id: str) -> list[str]:
    """Delete every file of the session; returns what was removed (relative to the root)."""
    removed: list[str] = []
    for path in [*quarantined_files(store, session_id), *stale_temp_files(store, session_id)]:
        if unlink_file(store, path):
            removed.append(_relative(store, path))
    for directory in (store.layout.quarantine, store.layout.sessions):
        sync_dir(store, directory)
    removed.extend(remove_session_files(store, session_id))
    return removed
