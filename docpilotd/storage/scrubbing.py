"""The scrub: every retained backup generation and journal segment read and checked, so that bit
rot is found before a restore or a recovery needs the file.

What is checked, as cheaply as it can be told (`check`):
- a generation, plain: `snapshot.verify` (our schema-2 field: the CRC over the raw bytes and the
  id in the first bytes, no JSON decoded; any other file is decoded in full);
- a generation, compressed (`.json.zst`): decompressed (the frame carries a content checksum),
  then the same check of the plain bytes;
- a journal segment: every record's framing and CRC (`journal.check_segment`), no payload decoded.
  A torn tail of a session's last segment is not reported: it is an append in progress (the daemon
  is writing it) or an interrupted one, which start-up recovery cuts off; anywhere else it is.
The snapshot in sessions/ is not scrubbed: recovery, fsck and the watcher check it whenever it
matters, and the daemon rewrites it from memory.

Reading is pure (`listing`, `check`: nothing written; the kernel is asked to read a window of
files ahead, so the disk is never idle while a file is checked). `fsck --scrub` spreads it over
forked children (`check_parallel`, see `forked`: the checking holds the interpreter lock for its
bookkeeping, processes run side by side); the daemon runs it in one thread (runtime/scrubber.py).
Only the parent repairs (`repair`).

Repair of a damaged generation: which state it held is found from what is left of it. Each
candidate sequence (every checkpoint's, as the journal's segment names give them, between the
sequences of the good copies named before and after it, and the one its own last bytes or the
daemon's memory name) is rebuilt from the newest good copy at or before it, or from the journal
alone when it still starts at the session's creation, plus the journal records after it (applied
as replay does), and compared with the damaged bytes (`_consistent`: of the same length, differing
only within one stretch of LOCAL_DAMAGE_BYTES; shorter, exactly its start). One that fits (or,
among several, the one named) is written crash-safely under the same name (compressed if it was),
after a copy of the damaged file went to quarantine with the reason. Otherwise (no source, or no
telling which state: zero bytes match them all) the damaged file is moved to quarantine with the
reason: moved, never deleted; nothing here removes the last copy of anything. A file that holds
an intact snapshot of another session is misplaced, not rotted: moved to quarantine. A damaged
journal segment is reported and left in place: start-up recovery decides what of it is replayed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from ..domain import changes
from ..domain.model import Session
from ..errors import DocpilotError, InvalidTransition
from ..paths import Layout
from . import backups, compression, forked, journal, quarantine, snapshot
from .atomic import write_atomic
from .fsops import REGULAR, FileOps, OsFileOps, is_text_name
from .store import SessionStore

Kind = Literal["generation", "segment"]
# Files per forked child below which forking costs more than it saves.
FORK_MIN_FILES = 256
# A rebuilt generation replaces a damaged one of the same length only if every byte they differ
# in lies within one stretch this long: bit rot, a zeroed block, not a different state.
LOCAL_DAMAGE_BYTES = 4096
READAHEAD_FILES = 32  # files the kernel is asked to read ahead of the one being checked
STATE_FILE = "scrub.json"  # in the data root: the last scrub's totals (the daemon's schedule)


class Item(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One file to check: what it is, whose, its name in backups/ or journal/, and (segments)
    whether it is the session's last segment. Not tracked by the cyclic collector (it holds only
    strings): a listing of 50,000 files in the daemon would otherwise set off full collections,
    each holding the interpreter lock, and so the event loop, for 10-60 ms."""

    kind: Kind
    session_id: str
    name: str
    last: bool = False


class Problem(msgspec.Struct, kw_only=True):
    """A file that did not check: where, why, the journal sequence it claims (-1: unknown) and,
    after `repair`, what was done."""

    kind: Kind
    session_id: str
    name: str
    detail: str
    seq: int = -1
    action: str = ""
    repaired: bool = False

    @property
    def where(self) -> str:
        return ("backups/" if self.kind == "generation" else "journal/") + self.name


class Checked(msgspec.Struct):
    files: int = 0
    bytes: int = 0
    problems: list[Problem] = msgspec.field(default_factory=list)


@dataclass
class Report:
    """A whole scrub: what was read, how long it took, what was found and done."""

    started_at: str
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    @property
    def repaired(self) -> int:
        return sum(1 for p in self.problems if p.repaired)

    def line(self, problem: Problem) -> str:
        text = f"{problem.where}: {problem.detail}"
        return text + (f" -> {problem.action}" if problem.action else "")

    def totals(self) -> str:
        return (f"{self.files} files, {self.bytes / 1e6:.1f} MB in {self.seconds:.2f} s ({self.mb_per_s:.0f} MB/s); "
                f"{len(self.problems)} problem(s), {self.repaired} repaired")


def listing(ops: FileOps, layout: Layout) -> list[Item]:
    """Every retained generation (both files of a generation left in two forms) and every journal
    segment, by name (regular files with text names: strays are fsck's); nothing opened. Only
    strings and untracked Items survive it (see Item)."""
    items: list[Item] = []
    try:
        kinds = ops.list_kinds(layout.backups)
    except FileNotFoundError:
        kinds = {}
    for name, kind in kinds.items():
        backup = backups.parse_name(layout.backups, name)
        if backup is not None and kind == REGULAR and is_text_name(name):
            items.append(Item("generation", backup.session_id, name))
    try:
        kinds = ops.list_kinds(layout.journal)
    except FileNotFoundError:
        kinds = {}
    last: dict[str, int] = {}  # per session, where its last segment starts
    segments: list[str] = []
    for name, kind in kinds.items():
        parsed = journal.parse_segment_name(name)
        if parsed is not None and kind == REGULAR and is_text_name(name):
            segments.append(name)
            last[parsed[0]] = max(last.get(parsed[0], -1), parsed[1])
    for name in segments:
        session_id, first = journal.parse_segment_name(name) or ("", 0)
        items.append(Item("segment", session_id, name, last=first == last[session_id]))
    items.sort(key=lambda item: item.name)  # a session's files side by side, as on disk
    return items


def verdict_of(name: str, data: bytes, session_id: str) -> snapshot.Verdict:
    """A generation's bytes (compressed or not, by its name) checked."""
    if name.endswith(backups.COMPRESSED_SUFFIX):
        plain, why = compression.decompress(data)
        if plain is None:
            return snapshot.Verdict(False, -1, f"compressed backup: {why}", "crc")
        data = plain
    return snapshot.verify(data, session_id)


def check_one(ops: FileOps, layout: Layout, item: Item) -> tuple[int, Problem | None] | None:
    """(bytes read, the problem or None); None when the file is gone (rotated or trimmed since
    the listing: not a retained file any more)."""
    directory = layout.backups if item.kind == "generation" else layout.journal
    try:
        data = ops.read_bytes(directory / item.name)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return 0, Problem(kind=item.kind, session_id=item.session_id, name=item.name,
                          detail=f"cannot be read: {exc.strerror or exc}")
    if item.kind == "generation":
        verdict = verdict_of(item.name, data, item.session_id)
        if verdict.ok:
            return len(data), None
        return len(data), Problem(kind="generation", session_id=item.session_id, name=item.name,
                                  detail=verdict.problem or "checksum mismatch", seq=verdict.seq)
    _, damage = journal.check_segment(data, directory / item.name)
    if item.last:
        damage = [d for d in damage if not d.torn_tail]
    if not damage:
        return len(data), None
    first = damage[0]
    more = f" (and {len(damage) - 1} more damaged place(s))" if len(damage) > 1 else ""
    what = "torn last record" if first.torn_tail else "damaged record"
    return len(data), Problem(kind="segment", session_id=item.session_id, name=item.name,
                              detail=f"{what} at byte {first.offset}, {first.size} bytes: {first.detail}{more}")


def _readahead(layout: Layout, items: Sequence[Item]) -> None:
    """Ask the kernel to start reading these files now (POSIX_FADV_WILLNEED), so the disk works
    while the files before them are checked: one file at a time, a read waits for the disk and
    the disk waits for the check. Advice only: any failure is ignored."""
    for item in items:
        path = (layout.backups if item.kind == "generation" else layout.journal) / item.name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def check(layout: Layout, items: Sequence[Item], ops: FileOps | None = None) -> Checked:
    """Read and check `items` (see the module docstring); writes nothing."""
    ops = ops or OsFileOps()
    result = Checked()
    ahead = hasattr(os, "posix_fadvise") and isinstance(ops, OsFileOps)
    for n, item in enumerate(items):
        if ahead and n % READAHEAD_FILES == 0:  # the next window (the first two at the start)
            _readahead(layout, items[n + READAHEAD_FILES if n else 0 : n + 2 * READAHEAD_FILES])
        found = check_one(ops, layout, item)
        if found is None:
            continue
        size, problem = found
        result.files += 1
        result.bytes += size
        if problem is not None:
            result.problems.append(problem)
    return result


_checked_decoder = msgspec.msgpack.Decoder(Checked)


def check_parallel(layout: Layout, items: Sequence[Item], processes: int | None = None) -> Checked:
    """`check` spread over forked children (one per CPU this process may use) when there are
    enough files; a share whose child failed is checked here. Same result as `check`."""
    processes = forked.workers() if processes is None else processes
    if not forked.AVAILABLE or processes < 2 or len(items) < FORK_MIN_FILES * 2:
        return check(layout, items)
    # Interleaved shares: a session's files are side by side in the listing, large ones with them.
    shares = [list(items[n::processes]) for n in range(processes)]
    children = forked.start(shares, lambda share: msgspec.msgpack.encode(check(layout, share)))
    result = Checked()
    for share, data in zip(shares, forked.collect(children)):
        part = _checked_decoder.decode(data) if data is not None else check(layout, share)
        result.files += part.files
        result.bytes += part.bytes
        result.problems.extend(part.problems)
    return result


# -- repair (the parent alone) -----------------------------------------------------------------


def _seq_from_bytes(name: str, data: bytes) -> int | None:
    """The journal sequence a damaged generation's own last bytes still name, if they do."""
    if name.endswith(backups.COMPRESSED_SUFFIX):
        plain, _ = compression.decompress(data)
        end = plain[-snapshot.TAIL_BYTES :] if plain is not None else compression.tail(data, snapshot.TAIL_BYTES)
        if end is None:
            return None
    else:
        end = data[-snapshot.TAIL_BYTES :]
    seq = snapshot.seq_from_tail(end)
    return seq if seq else None  # 0: no field of ours there (a DocPilot file, or its name rotted)


@dataclass
class Rebuilt:
    data: bytes  # the plain snapshot file
    base: str
    applied: int


def rebuild_at(store: SessionStore, session_id: str, seq: int, exclude: set[str]) -> Rebuilt | None:
    """The snapshot file of the session's state at `seq`: from the newest good copy at or before it
    (the snapshot, a generation, either form; not those in `exclude`), or from nothing when the
    journal still starts at the session's creation, and the journal records after it, applied as
    replay does; None when no good copy and unbroken records reach `seq`."""
    by_seq = sorted(((store.read_seq(p), p) for p in _copies(store, session_id) if p.name not in exclude),
                    key=lambda pair: pair[0], reverse=True)
    bases: list[tuple[int, Path | None]] = [*by_seq, (0, None)]
    for claimed, path in bases:
        if claimed > seq:
            continue
        session: Session | None = None
        at = 0
        if path is not None:
            decoded = store.read(path, session_id)
            if not decoded.usable or decoded.session is None or decoded.seq > seq:
                continue
            session, at = snapshot.plain_session(decoded.session), decoded.seq
        applied = 0
        if at < seq:
            read = journal.read_segments(store.ops, store.layout.journal, session_id, after_seq=at,
                                         owner=store.owner_uid)
            for record in read.records:
                if record.seq <= at:
                    continue
                if record.seq != at + 1 or record.seq > seq:
                    break
                if session is None:
                    if not isinstance(record.change, changes.Create):
                        break
                    session = changes.create(record.change)
                else:
                    try:
                        session = changes.apply(session, record.change)
                    except InvalidTransition:
                        pass  # refused by the state machine: replay skips it too
                at = record.seq
                applied += 1
        if at != seq or session is None:
            continue
        base = "the journal alone" if path is None else (
            path.name if path.parent == store.layout.backups else f"sessions/{path.name}")
        return Rebuilt(snapshot.encode(session, seq), base, applied)
    return None


def _copies(store: SessionStore, session_id: str) -> list[Path]:
    """The snapshot and every file of every generation of the session that is there."""
    paths = [store.layout.session_file(session_id)]
    for backup in store.generations(session_id):
        paths += backup.paths
    return [p for p in paths if store.ops.exists(p)]


def _candidates(store: SessionStore, session_id: str, name: str, claimed: set[int]) -> list[int]:
    """The sequences a damaged generation can hold: those its own bytes or someone claims, and
    every checkpoint's (a segment starts after each), between the sequences of the good copies
    named before and after it (generations are ordered by name; the snapshot is the newest)."""
    lo, hi = 0, None
    mine = backups.parse_name(store.layout.backups, name)
    for path in _copies(store, session_id):
        other = backups.parse_name(store.layout.backups, path.name) if path.parent == store.layout.backups else None
        if path.name == name or (other is not None and mine is not None and other.ns == mine.ns):
            continue
        if not store.read(path, session_id).usable:
            continue
        seq = store.read_seq(path)
        if other is not None and mine is not None and other.ns < mine.ns:
            lo = max(lo, seq)
        else:
            hi = seq if hi is None else min(hi, seq)
    found = set(claimed)
    for first, _ in journal.segments_of(store.ops, store.layout.journal, session_id):
        found.add(first - 1)
    return sorted(s for s in found if s >= max(1, lo) and (hi is None or s <= hi))


def _consistent(damaged: bytes, rebuilt: bytes) -> bool:
    """Whether `rebuilt` can be what the damaged file held, judged from what is left of it: of the
    same length, differing only within one stretch of LOCAL_DAMAGE_BYTES (flipped bits, a zeroed
    block); shorter, exactly its start (a truncation). Two states of a session differ in length
    (every change appends an event) or in bytes far apart (`updated_at` near the start, the lists
    further on), so another state does not pass."""
    n = len(damaged)
    if n < len(rebuilt):
        return rebuilt.startswith(damaged)
    if n > len(rebuilt):
        return False
    return damaged == rebuilt or _one_block(damaged, rebuilt)


def _one_block(a: bytes, b: bytes) -> bool:
    """The bytes in which `a` and `b` (of one length) differ all lie within one stretch of
    LOCAL_DAMAGE_BYTES."""
    first = _first_difference(a, b, range(0, len(a), _STEP))
    last = _first_difference(a, b, range(len(a) - _STEP, -_STEP, -_STEP), backwards=True)
    return first is None or last is None or last - first < LOCAL_DAMAGE_BYTES


_STEP = 1 << 16  # compared a block at a time (one memcmp each), then byte by byte within one


def _first_difference(a: bytes, b: bytes, starts: range, backwards: bool = False) -> int | None:
    """The offset of the first (or, `backwards`, the last) byte where `a` and `b` differ, looking
    at blocks in the order `starts` gives."""
    for start in starts:
        lo = max(0, start)
        hi = start + _STEP
        if a[lo:hi] == b[lo:hi]:
            continue
        offsets = range(min(hi, len(a)) - 1, lo - 1, -1) if backwards else range(lo, min(hi, len(a)))
        return next(i for i in offsets if a[i] != b[i])
    return None


def _identify(store: SessionStore, problem: Problem, data: bytes,
              known_seq: Callable[[Path], int | None] | None) -> tuple[Rebuilt | None, str]:
    """The state the damaged generation held, rebuilt, or why it cannot be told: every candidate
    sequence is rebuilt and compared with what is left of the file; one consistent candidate (or,
    among several, the one its own bytes or `known_seq` name) is the answer."""
    compressed = problem.name.endswith(backups.COMPRESSED_SUFFIX)
    plain = compression.decompress(data)[0] if compressed else data
    if plain is not None and snapshot.verify(plain).ok:
        return None, "it holds an intact file of another session"  # misplaced, not rotted
    # Of a frame that does not decompress, what decompresses before the damage.
    left = plain if plain is not None else compression.readable_part(data)
    named = {s for s in (_seq_from_bytes(problem.name, data),
                         known_seq(store.layout.backups / problem.name) if known_seq is not None else None) if s}
    fits: list[tuple[int, Rebuilt]] = []
    for seq in _candidates(store, problem.session_id, problem.name, named):
        rebuilt = rebuild_at(store, problem.session_id, seq, exclude={problem.name})
        if rebuilt is not None and _consistent(left, rebuilt.data) and snapshot.verify(rebuilt.data, problem.session_id).ok:
            fits.append((seq, rebuilt))
    if not fits:
        return None, "no good copy and unbroken journal rebuild a state that matches what is left of it"
    if len(fits) > 1:
        fits = [(seq, rebuilt) for seq, rebuilt in fits if seq in named]
    if len(fits) != 1:
        return None, "what is left of it matches more than one state"
    return fits[0][1], ""


def repair(store: SessionStore, problem: Problem, known_seq: Callable[[Path], int | None] | None = None) -> None:
    """Carry out what a problem calls for (see the module docstring), setting its `action` and
    `repaired`. `known_seq`: the sequence a generation holds as someone knows it without reading
    it (the daemon's engine), for a file whose own bytes no longer say it."""
    if problem.kind == "segment":
        problem.action = "left in place (start-up recovery decides what of it is replayed)"
        return
    ops = store.ops
    path = store.layout.backups / problem.name
    try:
        data = ops.read_bytes(path)
    except FileNotFoundError:
        problem.action = "gone since it was read (rotated away)"
        return
    except OSError as exc:
        problem.action = f"not repaired: cannot be read ({exc.strerror or exc})"
        return
    sid = problem.session_id
    if verdict_of(problem.name, data, sid).ok:
        problem.action, problem.repaired = "verifies now (rewritten since it was read)", True
        return
    compressed = problem.name.endswith(backups.COMPRESSED_SUFFIX)
    rebuilt, why = _identify(store, problem, data, known_seq)
    try:
        if rebuilt is None:
            quarantine.move(ops, store.layout.quarantine, path, f"scrub: {problem.detail}; {why}")
            problem.action = f"moved to quarantine ({why})"
        else:
            quarantine.keep_copy(ops, store.layout.quarantine, problem.name, data, path,
                                 f"scrub: {problem.detail}; replaced by the state rebuilt from {rebuilt.base}")
            write_atomic(ops, path, compression.compress(rebuilt.data) if compressed else rebuilt.data)
            problem.action = (f"replaced: rebuilt from {rebuilt.base} and {rebuilt.applied} journal record(s); "
                              "the damaged file is in quarantine")
            problem.repaired = True
    except DocpilotError as exc:
        problem.action = f"not repaired: {exc.message}"
    except OSError as exc:
        problem.action = f"not repaired: {exc.strerror or exc}"
    finally:
        store.forget_generations(sid)


def scrub(store: SessionStore, repair_found: bool = False, processes: int | None = None) -> Report:
    """The whole scrub of the store's data root (the daemon not running, or `fsck --scrub`)."""
    from ..domain import timestamps

    report = Report(started_at=timestamps.format_ns(time.time_ns()))
    started = time.perf_counter()
    checked = check_parallel(store.layout, listing(store.ops, store.layout), processes)
    report.seconds = time.perf_counter() - started
    report.files, report.bytes, report.problems = checked.files, checked.bytes, checked.problems
    if repair_found:
        for problem in report.problems:
            repair(store, problem)
    return report


class Last(msgspec.Struct):
    """What `docpilot status` shows of the last scrub (kept in the data root's STATE_FILE)."""

    at: str
    files: int
    bytes: int
    seconds: float
    problems: int
    repaired: int


def summary(report: Report) -> Last:
    return Last(at=report.started_at, files=report.files, bytes=report.bytes, seconds=round(report.seconds, 3),
                problems=len(report.problems), repaired=report.repaired)


def save_last(ops: FileOps, layout: Layout, last: Last) -> None:
    write_atomic(ops, layout.root / STATE_FILE, msgspec.json.encode(last) + b"\n")


def load_last(ops: FileOps, layout: Layout) -> Last | None:
    """The last scrub's summary, None when there is none or it cannot be read (it only dates the
    next scrub)."""
    try:
        return msgspec.json.decode(ops.read_bytes(layout.root / STATE_FILE), type=Last)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
