"""The write-ahead journal: per-session segments of framed, checksummed change records.

Layout: `journal/{session_id}.{first_seq:016d}.wal`. A new segment starts at every checkpoint
(snapshot write), so a segment holds the changes between two snapshots. A record is

    magic b"DPJ1" | length u32 | seq u64 | crc32 u32 | payload (msgspec JSON of a Change)

little-endian, the CRC covering length, seq and payload. Sequence numbers of a session increase by
one per acknowledged change; a snapshot records the last one it contains.

Reading (`read_segments`) never raises on content: it returns the good records in order and
describes any damage. A bad record with nothing valid after it is a torn tail (an interrupted
append): it is cut off, after a copy goes to quarantine. A bad record followed by valid ones is
damage in the middle: reported with the missing sequence window, never silently skipped.

Only regular files with text names are segments (`index_entries` lists anything else that has a
segment's name as a stray, never opened); a segment owned by another user than the data root's
owner is not trusted: `read_segments` reports it as a whole-segment problem and replays nothing of
it, and recovery moves it to quarantine. A segment that cannot be read at all is reported the same
way (`Damage.whole`).

Writing (`SegmentWriter`) appends bytes and fsyncs on request; it is driven from one thread at a
time (the runtime's group commit). After a failed write or fsync the writer is dead: the kernel may
have dropped the pages, so the caller starts a new segment from memory instead of retrying.
"""

from __future__ import annotations

import errno
import re
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ..domain.changes import Change
from ..errors import DocpilotError
from .atomic import storage_error
from .fsops import REGULAR, FileOps, NotRegularFile, a_kind, is_text_name, kind_of

MAGIC = b"DPJ1"
HEADER = struct.Struct("<4sIQI")
MAX_RECORD = 256 * 1024 * 1024
_SEGMENT = re.compile(r"(?P<id>[^.]+)\.(?P<first>\d{16})\.wal\Z")

_change_encoder = msgspec.json.Encoder()
_change_decoder = msgspec.json.Decoder(Change)


def segment_name(session_id: str, first_seq: int) -> str:
    return f"{session_id}.{first_seq:016d}.wal"


def parse_segment_name(name: str) -> tuple[str, int] | None:
    match = _SEGMENT.match(name)
    return (match["id"], int(match["first"])) if match else None


def frame(seq: int, change: Change) -> bytes:
    payload = _change_encoder.encode(change)
    head = struct.pack("<IQ", len(payload), seq)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return HEADER.pack(MAGIC, len(payload), seq, crc) + payload


@dataclass
class Record:
    seq: int
    change: Change
    segment: Path
    offset: int


@dataclass
class Damage:
    segment: Path
    offset: int
    size: int
    torn_tail: bool
    detail: str
    whole: bool = False  # the segment as a whole was not read (not trusted, or unreadable)


@dataclass
class JournalRead:
    records: list[Record] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    segments: list[Path] = field(default_factory=list)


def _parse_at(data: bytes, offset: int) -> tuple[int, bytes, int] | str:
    """(seq, payload, end) of a well-formed record at `offset`, or why it is not one."""
    end = _checked_end(data, memoryview(data), offset)
    if isinstance(end, str):
        return end
    seq = HEADER.unpack_from(data, offset)[2]
    return seq, data[offset + HEADER.size : end], end


def _next_valid(data: bytes, start: int) -> int | None:
    """Offset of the next well-formed record after damage at `start`, if any."""
    position = data.find(MAGIC, start + 1)
    while position != -1:
        if not isinstance(_parse_at(data, position), str):
            return position
        position = data.find(MAGIC, position + 1)
    return None


def scan_segment(data: bytes, path: Path, after_seq: int = 0) -> tuple[list[Record], list[Damage]]:
    """Records and damage of one segment. Records at or below `after_seq` (already in the copy
    replay starts from) are checked (framing, CRC) but not decoded nor returned."""
    records: list[Record] = []
    damage: list[Damage] = []
    offset = 0
    while offset < len(data):
        parsed = _parse_at(data, offset)
        if isinstance(parsed, str):
            found, resume = _damage_at(data, path, offset, parsed)
            damage.append(found)
            if resume is None:
                break
            offset = resume
            continue
        seq, payload, end = parsed
        if seq <= after_seq:
            offset = end
            continue
        try:
            change = _change_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            # The CRC matched, so these bytes are what was written: a record of a newer format.
            damage.append(Damage(path, offset, end - offset, torn_tail=False, detail=f"undecodable: {exc}"))
        else:
            records.append(Record(seq, change, path, offset))
        offset = end
    return records, damage


def check_segment(data: bytes, path: Path) -> tuple[int, list[Damage]]:
    """The records of a segment counted and their framing and CRC checked, without decoding any
    payload (the scrub reads every retained segment: this is a CRC pass over the bytes), and the
    damage found, as `scan_segment` describes it (a record whose payload a newer daemon wrote is
    not damage here: its CRC matches)."""
    view = memoryview(data)
    count = 0
    damage: list[Damage] = []
    offset = 0
    while offset < len(data):
        end = _checked_end(data, view, offset)
        if isinstance(end, str):
            found, resume = _damage_at(data, path, offset, end)
            damage.append(found)
            if resume is None:
                break
            offset = resume
            continue
        count += 1
        offset = end
    return count, damage


def _checked_end(data: bytes, view: memoryview, offset: int) -> int | str:
    """The end of a well-formed record at `offset` (framing and CRC checked, the payload not
    copied), or why it is not one."""
    if offset + HEADER.size > len(data):
        return "truncated header"
    magic, length, _, crc = HEADER.unpack_from(data, offset)
    length = int(length)
    if magic != MAGIC:
        return "bad magic"
    if length > MAX_RECORD:
        return "impossible length"
    end = offset + HEADER.size + length
    if end > len(data):
        return "truncated record"
    # The CRC covers length and seq (the header after the magic), then the payload.
    if zlib.crc32(view[offset + HEADER.size : end], zlib.crc32(view[offset + 4 : offset + HEADER.size - 4])) != crc:
        return "checksum mismatch"
    return end


def _damage_at(data: bytes, path: Path, offset: int, detail: str) -> tuple[Damage, int | None]:
    """The damage that starts at `offset` and where reading resumes (None: a torn tail)."""
    resume = _next_valid(data, offset)
    size = (resume if resume is not None else len(data)) - offset
    return Damage(path, offset, size, torn_tail=resume is None, detail=detail), resume


def segments_of(ops: FileOps, journal_dir: Path, session_id: str) -> list[tuple[int, Path]]:
    """(first_seq, path) of a session's segments, in order."""
    return index(ops, journal_dir).get(session_id, [])


def index(ops: FileOps, journal_dir: Path) -> dict[str, list[tuple[int, Path]]]:
    """(first_seq, path) of every session's segments, in order: one listing for all sessions."""
    return index_entries(ops, journal_dir)[0]


def index_entries(
    ops: FileOps, journal_dir: Path
) -> tuple[dict[str, list[tuple[int, Path]]], list[tuple[str, str]]]:
    """Every session's segments (see `index`), and strays: (name, why) of what has a segment's
    name but cannot be one (not a regular file, or a name that is not text). Nothing is opened."""
    named, strays = index_names(ops, journal_dir)
    found = {sid: [(first, journal_dir / name) for first, name in segments] for sid, segments in named.items()}
    return found, strays


def index_names(
    ops: FileOps, journal_dir: Path, kinds: dict[str, str] | None = None
) -> tuple[dict[str, list[tuple[int, str]]], list[tuple[str, str]]]:
    """`index_entries` with names instead of paths (start-up recovery lists every session's
    segments and makes a path only for those it reads); `kinds`: the directory's listing
    (`FileOps.list_kinds`), when the caller made it already."""
    if kinds is None:
        try:
            kinds = ops.list_kinds(journal_dir)
        except FileNotFoundError:
            return {}, []
    found: dict[str, list[tuple[int, str]]] = {}
    strays: list[tuple[str, str]] = []
    for name, kind in kinds.items():
        parsed = parse_segment_name(name)
        if not parsed:
            continue
        if not is_text_name(name):
            strays.append((name, "a name that is not UTF-8 text, which docpilotd never writes"))
        elif kind != REGULAR:
            strays.append((name, f"not a regular file: {a_kind(kind)}"))
        else:
            found.setdefault(parsed[0], []).append((parsed[1], name))
    for segments in found.values():
        segments.sort()
    return found, sorted(strays)


def session_ids(ops: FileOps, journal_dir: Path) -> set[str]:
    return set(index(ops, journal_dir))


def read_segments(
    ops: FileOps,
    journal_dir: Path,
    session_id: str,
    segments: list[tuple[int, Path]] | None = None,
    after_seq: int = 0,
    owner: int | None = None,
) -> JournalRead:
    """Every record after `after_seq` in a session's segments (`segments` when the caller listed
    them already), and any damage. A segment followed by one starting at or below after_seq + 1
    holds only records at or below after_seq: it is not read at all (with after_seq 0, every
    segment is read). Anything but a regular file is not opened, nor (with `owner`) a segment
    another user owns: whole-segment damage."""
    result = JournalRead()
    listed = segments_of(ops, journal_dir, session_id) if segments is None else segments
    for (_, path), following in zip(listed, [first for first, _ in listed[1:]] + [None]):
        if following is not None and following - 1 <= after_seq:
            continue
        result.segments.append(path)
        try:
            st = ops.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise NotRegularFile(path, kind_of(st.st_mode))
            if owner is not None and st.st_uid != owner:
                detail = f"owned by another user (uid {st.st_uid}, the data root's owner is uid {owner}): not trusted"
                result.damage.append(Damage(path, 0, st.st_size, torn_tail=False, detail=detail, whole=True))
                continue
            if st.st_size == 0:
                continue  # the usual last segment: nothing was written after the last checkpoint
            data = ops.read_bytes(path)
        except OSError as exc:
            detail = f"unreadable: {exc.strerror or exc}"
            result.damage.append(Damage(path, 0, 0, torn_tail=False, detail=detail, whole=True))
            continue
        records, damage = scan_segment(data, path, after_seq)
        result.records.extend(records)
        result.damage.extend(damage)
    return result


class SegmentWriter:
    """Appends framed records to one segment file; dead after any write or fsync error.

    Something else at the segment's name when it is opened -- not a regular file, or a file another
    user owns, which recovery would not trust and so would not replay -- is moved to quarantine
    (`quarantine_dir`, by default the data root's) first: acknowledged records only ever go into a
    file of the daemon's own."""

    def __init__(self, ops: FileOps, path: Path, quarantine_dir: Path | None = None) -> None:
        self.ops = ops
        self.path = path
        self.quarantine_dir = quarantine_dir or path.parent.parent / "quarantine"
        self._fd: int | None = None
        self.dead = False
        self.size = 0
        self._inode: int | None = None

    def open(self, sync_dir: bool = True) -> None:
        try:
            try:
                self._fd = self.ops.open_append(self.path)
            except NotRegularFile as exc:
                self._set_aside(f"not a regular file: {a_kind(exc.kind)}")
                self._fd = self.ops.open_append(self.path)
            opened = self.ops.stat(self.path)
            owner = self.ops.stat(self.path.parent).st_uid
            if opened.st_uid != owner:
                fd, self._fd = self._fd, None
                self.ops.close(fd)
                self._set_aside(f"owned by another user (uid {opened.st_uid}; journal/ is uid {owner}'s): not trusted")
                self._fd = self.ops.open_append(self.path)
                opened = self.ops.stat(self.path)
            self.size, self._inode = opened.st_size, opened.st_ino
            if sync_dir:
                self.ops.fsync_dir(self.path.parent)
        except OSError as exc:
            self.dead = True
            raise storage_error(exc, f"opening journal {self.path.name}") from exc
        except DocpilotError:
            self.dead = True
            raise

    def _set_aside(self, why: str) -> None:
        from . import quarantine

        quarantine.move(self.ops, self.quarantine_dir, self.path, f"{why}, where a journal segment was to be written")

    def write(self, data: bytes) -> None:
        if self.dead or self._fd is None:
            raise storage_error(OSError(5, "journal segment is closed after an error"), "appending to the journal")
        try:
            self.ops.write_all(self._fd, data)
            self.size += len(data)
        except OSError as exc:
            self.dead = True
            raise storage_error(exc, "appending to the journal") from exc

    def sync(self) -> None:
        if self.dead or self._fd is None:
            raise storage_error(OSError(5, "journal segment is closed after an error"), "syncing the journal")
        try:
            self.ops.fsync(self._fd)
        except OSError as exc:
            self.dead = True  # never fsync the same file again: its failed pages may be gone
            raise storage_error(exc, "syncing the journal") from exc
        self._check_linked()

    def _check_linked(self) -> None:
        """The records just synced are durable only if the segment is still the file at its path:
        another program (a cleaner, an `rm` by mistake) may have deleted or replaced it, and
        appending to an unlinked file would acknowledge changes that no restart can find."""
        try:
            current = self.ops.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        except OSError as exc:
            self.dead = True
            raise storage_error(exc, "checking the journal segment") from exc
        if current != self._inode:
            self.dead = True
            gone = "deleted" if current is None else "replaced"
            raise storage_error(OSError(errno.ESTALE, f"journal segment {self.path.name} was {gone} by another program"),
                                "syncing the journal")

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                self.ops.close(fd)
            except OSError:
                pass


def cut_tail(ops: FileOps, quarantine_dir: Path, damage: Damage) -> Path:
    """Keep a copy of a torn tail in quarantine, then truncate the segment before it."""
    from . import quarantine

    data = ops.read_bytes(damage.segment)
    kept = quarantine.keep_copy(
        ops, quarantine_dir, damage.segment.name + ".tail", data[damage.offset :], damage.segment,
        f"torn last record at byte {damage.offset} ({damage.detail})",
    )
    try:
        fd = ops.open_append(damage.segment)
        try:
            ops.ftruncate(fd, damage.offset)
            ops.fsync(fd)
        finally:
            ops.close(fd)
    except OSError as exc:
        raise storage_error(exc, f"cutting the torn tail of {damage.segment.name}") from exc
    return kept
