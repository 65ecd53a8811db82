"""The search index: every session's commands, outputs and annotations in one SQLite FTS5 file.

Why: `docpilot search` must answer in well under 100 ms with 10,000 sessions, and reading them is
seconds. So the daemon keeps `index/search.sqlite3` (0600, in a 0700 directory of the data root):
derived from the sessions, never a source of truth. Nothing reads a session from it; it can be
deleted at any time and is built again from the sessions (at start-up, in the background, when it
is missing, damaged, of another schema or behind them; by `docpilotd fsck --repair`).

What is in it (schema `SCHEMA_VERSION`, `application_id` APPLICATION_ID):
  - `items`: one row per command (its text, output and error output, directory, exit code) and per
    annotation (its text, type and id), with its session and timestamp; the same text as the
    session holds, after redaction (the handlers redact before a change exists);
  - `items_fts`: an FTS5 index over `items` (external content: the text is stored once), with the
    unicode61 tokenizer (case and diacritics folded);
  - `terms`: every word of the index, so that a prefix is turned into the words it starts (see
    `_starting`: FTS5's own prefix query merges every matching list before the first row comes);
  - `sessions`: per session, its number in `items` and its mark: the journal sequence and a
    fingerprint of the state the rows reflect, so that a session changed while the daemon was away
    (or by a change the index never saw) is found at start-up and indexed again.

Row ids are time keys: the item's time in milliseconds, shifted left by 20 bits, plus a counter for
items of the same millisecond (a running one, checked by the primary key: a batch that meets a
taken key goes again row by row after the newest key of each millisecond). "Newest first" is then the FTS5 doclist read backwards (ORDER BY
rowid DESC), and a LIMIT stops the scan after the newest matches, whatever their number; `--since`
is a lower bound on the rowid, and `--session` the session's range of rowids.

Why unicode61 and not trigram: trigram finds any substring but cannot use its index for fewer than
three characters (`ls`, `cd`, `df`, `rm`, `ip` are exactly what people search for) and makes the
file about four times the size of the text (twice unicode61's) and its building twice as slow
(measured on the benchmark's commands: 52 MB against 25 MB for 80,000 of them).
unicode61 with a prefix query on the last word gives what a person types: whole words and the start
of the last one (`certb` finds `certbot`), punctuation ignored (`nginx -t` finds `sudo nginx -t`).
A query is the words of the text (`words`), each quoted, so FTS5's query syntax can never be
reached: `"`, `AND`, `*`, `NEAR(` are plain text (and text with no word in it is refused).

What never leaks through it: it holds only what the sessions hold (after redaction), in files only
the owner can open (and SQLite's temporary data stays in memory, never in a file of /tmp); `secure_delete` overwrites deleted rows; `scrub` (after `redact` and `purge`)
merges the FTS5 segments, so that no old segment keeps a deleted word, makes `terms` again from
the words left, and truncates the WAL, so that no old page survives there. A damaged index is deleted, never quarantined (a copy would keep
text that was since redacted or purged).

Invariants: every row of `items` belongs to a session of `sessions`; a session's mark is written in
the same transaction as its rows; the file is opened only after lstat says it is a regular file
of ours (a FIFO there would block the opener); a query never raises on what a person typed.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..domain import timestamps
from ..domain.model import Annotation, CommandEntry, Session, state_name
from ..errors import SearchUnavailable
from ..paths import Layout, ensure_private_dir

SCHEMA_VERSION = 1
APPLICATION_ID = 0x44505358  # "DPSX"
DIRECTORY = "index"
FILE_NAME = "search.sqlite3"
SIDE_FILES = ("-wal", "-shm", "-journal")
TOKENIZER = "unicode61 remove_diacritics 2"
COUNTER_BITS = 20  # items of one millisecond before the key runs into the next one
MAX_MS = (1 << (63 - COUNTER_BITS)) - 1
NEAR = 5  # the words of a query must be within this many words of each other
PREFIX_MIN = 3  # a last word shorter than this is a whole word (`-t` is not every word starting with t)
SNIPPET_WORDS = 16
FLUSH_ROWS = 2000  # rows written by one statement at most (see Writer._add)
EXPAND_MAX = 16  # a last word that starts more words than this is left to FTS5's prefix query
_START, _END = "\ue000", "\ue001"  # around matched words in snippets (private use: never typed)
COMMAND, ANNOTATION = 0, 1

# Sessions are numbered (`sessions.n`) and times kept as nanoseconds (`ns`; `ts` only when the
# session wrote its time in another form than format_ns gives back): a row is about half the size.
_SCHEMA = f"""
CREATE TABLE sessions(n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL, fingerprint TEXT NOT NULL);
CREATE TABLE items(
    id INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    ns INTEGER NOT NULL,
    ts TEXT,
    cwd TEXT,
    exit_code INTEGER,
    ref TEXT,
    atype TEXT,
    text TEXT NOT NULL,
    output TEXT
);
CREATE INDEX items_session ON items(session, id);
CREATE TABLE terms(term TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE INDEX items_ref ON items(ref) WHERE ref IS NOT NULL;
CREATE VIRTUAL TABLE items_fts USING fts5(text, output, content='items', content_rowid='id', tokenize='{TOKENIZER}',
                                          columnsize=0);
CREATE TRIGGER items_added AFTER INSERT ON items BEGIN
    INSERT INTO items_fts(rowid, text, output) VALUES (new.id, new.text, new.output);
END;
CREATE TRIGGER items_removed AFTER DELETE ON items BEGIN
    INSERT INTO items_fts(items_fts, rowid, text, output) VALUES ('delete', old.id, old.text, old.output);
END;
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""
_TABLES = {"items", "items_fts", "sessions", "terms"}

# The key of a new item: after the newest one of its millisecond. OR IGNORE: a millisecond that
# already holds 2**20 items (only a crafted file could) leaves the rest out rather than failing.
_COUNTER_MASK = (1 << COUNTER_BITS) - 1
# Rows as one JSON array (see Writer._flush): [key, ns, ts, session, kind, cwd, exit_code, ref, atype, text, output].
_INSERT_JSON = """
INSERT INTO items(id, ns, ts, session, kind, cwd, exit_code, ref, atype, text, output)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
       json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'),
       json_extract(value, '$[8]'), json_extract(value, '$[9]'), json_extract(value, '$[10]')
FROM json_each(?)
"""
_INSERT = f"""
INSERT OR IGNORE INTO items(id, ns, ts, session, kind, cwd, exit_code, ref, atype, text, output)
VALUES (coalesce((SELECT id + 1 FROM items WHERE id >= ?1 AND id < ?1 + {1 << COUNTER_BITS} ORDER BY id DESC LIMIT 1), ?1),
        ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
"""


def path_of(layout: Layout) -> Path:
    return layout.root / DIRECTORY / FILE_NAME


def fts5_problem() -> str | None:
    """Why this Python's SQLite cannot hold the index (no FTS5, or a tokenizer option it lacks),
    or None."""
    try:
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute(f"CREATE VIRTUAL TABLE probe USING fts5(text, tokenize='{TOKENIZER}')")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return (f"search needs SQLite with FTS5 (3.27 or later); this Python's sqlite3 module has SQLite "
                f"{sqlite3.sqlite_version}: {exc}")
    return None


# -- what a session looks like to the index --------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """The state of a session the rows reflect: its last journal record and a fingerprint."""

    seq: int
    fingerprint: str


def fingerprint(updated_at: str, state: str, commands: int, annotations: int) -> str:
    return f"{updated_at}|{state}|{commands}|{annotations}"


def session_mark(session: Session, seq: int) -> Mark:
    return Mark(seq, fingerprint(session.updated_at, state_name(session.state), session.stats.total_commands,
                                 session.stats.total_annotations))


def summary_mark(summary: Mapping[str, Any], seq: int) -> Mark:
    """The mark of a session from its summary (runtime.engine.summarize): the same as session_mark."""
    return Mark(seq, fingerprint(summary["updated_at"], summary["state"], summary["commands"], summary["annotations"]))


def time_key(ns: int) -> int:
    """The smallest row id of an item at `ns` nanoseconds since the epoch."""
    return min(max(ns // 1_000_000, 0), MAX_MS) << COUNTER_BITS


_second: tuple[str, int] = ("", 0)  # the last "YYYY-MM-DDTHH:MM:SS" read, and its epoch second


def _when(timestamp: str) -> tuple[int, int, str | None]:
    """An item's key, its time in nanoseconds (0 when it cannot be read) and its text when
    format_ns would not give it back. The form format_ns writes (what the daemon stamps) is read
    without parsing but its second, once per second (the indexer thread calls this per row)."""
    global _second
    if len(timestamp) == 30 and timestamp[19] == "." and timestamp[29] == "Z" and timestamp[20:29].isdigit():
        head, cached = timestamp[:19], _second
        if cached[0] != head:
            try:
                cached = (head, timestamps.parse_ns(head + "Z") // 1_000_000_000)
            except timestamps.TimestampError:
                return 0, 0, timestamp
            _second = cached
        ns = cached[1] * 1_000_000_000 + int(timestamp[20:29])
        return time_key(ns), ns, None
    try:
        ns = timestamps.parse_ns(timestamp)
    except timestamps.TimestampError:
        return 0, 0, timestamp
    return time_key(ns), ns, None if timestamps.format_ns(ns) == timestamp else timestamp


def _command_row(number: int, entry: CommandEntry) -> tuple[Any, ...]:
    output = entry.output
    if entry.error:
        output = f"{output}\n{entry.error}" if output else entry.error
    return (*_when(entry.timestamp), number, COMMAND, entry.working_directory, entry.exit_code, None, None,
            entry.command, output)


def _annotation_row(number: int, note: Annotation) -> tuple[Any, ...]:
    return (*_when(note.timestamp), number, ANNOTATION, None, None, note.id, note.annotation_type, note.text, None)


# -- the file ---------------------------------------------------------------------------------------


def _kind_problem(path: Path) -> str | None:
    """Why `path` is not to be opened as our index (None: a regular file of ours, or nothing)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != os.geteuid():
        return f"owned by another user (uid {st.st_uid})"
    return None


def remove_files(path: Path) -> None:
    """Delete the index and its side files (whatever they are: they are only ever ours)."""
    for name in ("", *SIDE_FILES):
        target = Path(f"{path}{name}")
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            import shutil

            shutil.rmtree(target, ignore_errors=True)


def _create(path: Path) -> None:
    """A new, empty index at `path`, made beside it and renamed into place: a reader never finds
    a file without the schema."""
    ensure_private_dir(path.parent)
    temp = path.with_name(f".{path.name}.new")
    remove_files(temp)
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
    conn = sqlite3.connect(temp, isolation_level=None)
    try:
        conn.executescript(_SCHEMA)
    finally:
        conn.close()
    remove_files(path)
    os.replace(temp, path)


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # a lost last transaction is found by the marks
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA cache_size = -2000")  # SQLite's default, 2 MB: the daemon's memory matters more
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA temp_store = MEMORY")  # no temporary file of text outside the data root


def _schema_problem(conn: sqlite3.Connection) -> str | None:
    application = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if application != APPLICATION_ID:
        return "not a docpilotd search index"
    if version != SCHEMA_VERSION:
        return f"schema version {version}, this docpilotd uses {SCHEMA_VERSION}"
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    if not _TABLES <= names:
        return "tables missing"
    conn.execute("SELECT count(*) FROM sessions").fetchone()
    conn.execute("SELECT id FROM items ORDER BY id DESC LIMIT 1").fetchone()
    return None


class Writer:
    """The one connection that writes the index: the daemon's indexer thread, or fsck --repair.
    Used from one thread only."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self._numbers: dict[str, int] = {}
        self._pending: list[tuple[Any, ...]] = []  # rows added, written together (see `_flush`)
        self._counter = int.from_bytes(os.urandom(3)) & _COUNTER_MASK
        st = os.stat(path)
        self.identity = (st.st_dev, st.st_ino)

    @classmethod
    def open(cls, path: Path, verify: bool = False) -> tuple[Writer, str | None]:
        """Open the index at `path`, made anew (empty) when it is missing, damaged or of another
        schema; returns it and why it was made anew (None: the existing one was kept). `verify`
        (fsck): also read every page and check the FTS5 index against its rows."""
        ensure_private_dir(path.parent)  # 0700 (tightened if it was not), ours, a directory
        why = _kind_problem(path)
        if why is None and path.exists():
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=True)
                _configure(conn)
                why = _schema_problem(conn)
                if why is None and verify:
                    why = _quick_check(conn)
                    if why is None:
                        conn.execute("INSERT INTO items_fts(items_fts, rank) VALUES ('integrity-check', 1)")
                if why is None:
                    return cls(path, conn), None
            except sqlite3.Error as exc:
                why = f"damaged ({exc})"
            if conn is not None:
                conn.close()
        elif why is None:
            why = "missing"
        _create(path)
        conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        _configure(conn)
        return cls(path, conn), why

    def in_place(self) -> bool:
        """Whether the file at our path is still the one we opened (not removed or replaced)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.conn.close()

    # -- transactions ------------------------------------------------------------------------------

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._flush()
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self._pending.clear()
        self._numbers.clear()  # numbers given in the transaction are gone with it
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # -- reading the marks -------------------------------------------------------------------------

    def marks(self) -> dict[str, Mark]:
        return {sid: Mark(seq, fp) for sid, seq, fp in self.conn.execute("SELECT id, seq, fingerprint FROM sessions")
                if seq >= 0}

    # -- changing rows (inside a transaction) ----------------------------------------------------------

    def _number(self, session_id: str) -> int:
        """The session's number in `items` (given now when it has none: its mark comes later in
        the same transaction)."""
        number = self._numbers.get(session_id)
        if number is None:
            found = self.conn.execute("SELECT n FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if found is None:
                found = self.conn.execute(
                    "INSERT INTO sessions(id, seq, fingerprint) VALUES (?, -1, '') RETURNING n", (session_id,)
                ).fetchone()
            number = self._numbers[session_id] = int(found[0])
        return number

    def put_session(self, session_id: str, mark: Mark, commands: Iterable[CommandEntry],
                    annotations: Iterable[Annotation]) -> None:
        """The session's rows replaced by these, and its mark."""
        self.drop_session(session_id)
        number = self._number(session_id)
        self._add(_command_row(number, c) for c in commands)
        self._add(_annotation_row(number, a) for a in annotations)
        self.set_mark(session_id, mark)

    def drop_session(self, session_id: str) -> None:
        self._flush()
        self._numbers.pop(session_id, None)
        found = self.conn.execute("SELECT n FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if found is not None:
            self.conn.execute("DELETE FROM items WHERE session = ?", (found[0],))
            self.conn.execute("DELETE FROM sessions WHERE n = ?", (found[0],))

    def add_commands(self, session_id: str, entries: Sequence[CommandEntry]) -> None:
        number = self._number(session_id)
        self._add(_command_row(number, c) for c in entries)

    def add_annotation(self, session_id: str, note: Annotation) -> None:
        self._add([_annotation_row(self._number(session_id), note)])

    def _add(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Rows to write; written FLUSH_ROWS at a time, so a session of 100,000 commands never
        holds its rows (and their JSON) in memory all at once."""
        pending = self._pending
        for row in rows:
            pending.append(row)
            if len(pending) >= FLUSH_ROWS:
                self._flush()
                pending = self._pending

    def edit_annotation(self, session_id: str, annotation_id: str, text: str, kind: str) -> None:
        """New text and type for an annotation; its row keeps its place (id and time)."""
        self._flush()
        number = self._number(session_id)
        found = self.conn.execute(
            "SELECT id, ns, ts FROM items WHERE ref = ? AND session = ? AND kind = ?", (annotation_id, number, ANNOTATION)
        ).fetchone()
        if found is None:
            return
        self.conn.execute("DELETE FROM items WHERE id = ?", (found[0],))
        self.conn.execute(
            "INSERT INTO items(id, ns, ts, session, kind, cwd, exit_code, ref, atype, text, output) "
            "VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, NULL)",
            (*found, number, ANNOTATION, annotation_id, kind, text),
        )
        self._add_terms([text])

    def delete_annotation(self, session_id: str, annotation_id: str) -> None:
        self._flush()
        self.conn.execute("DELETE FROM items WHERE ref = ? AND session = ? AND kind = ?",
                          (annotation_id, self._number(session_id), ANNOTATION))

    def set_mark(self, session_id: str, mark: Mark) -> None:
        self.set_marks({session_id: mark})

    def set_marks(self, marks: Mapping[str, Mark]) -> None:
        self.conn.executemany(
            "INSERT INTO sessions(id, seq, fingerprint) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, fingerprint = excluded.fingerprint",
            [(session_id, mark.seq, mark.fingerprint) for session_id, mark in marks.items()],
        )

    def _flush(self) -> None:
        """Write the rows added since the last flush.

        Why one statement: the indexer thread shares the GIL with the event loop, and executemany
        gives it up and takes it back once per row; each time, the loop may have to wait up to the
        interpreter's switch interval (5 ms) to get it back. So the rows go as one JSON array that
        SQLite reads itself (json_each), each with a key of its millisecond and a counter. A key
        that is taken already (another item of the same millisecond from an earlier batch) makes
        the statement fail as a whole, and the rows then go one by one, each after the newest key
        of its millisecond."""
        rows, self._pending = self._pending, []
        if not rows:
            return
        keyed = []
        for row in rows:
            self._counter = (self._counter + 1) & _COUNTER_MASK
            keyed.append((row[0] | self._counter, *row[1:]))
        try:
            self.conn.execute(_INSERT_JSON, (json.dumps(keyed),))
        except sqlite3.IntegrityError:
            self.conn.executemany(_INSERT, rows)
        self._add_terms(text for row in rows for text in (row[9], row[10]))

    def _add_terms(self, texts: Iterable[str | None]) -> None:
        self.conn.execute("INSERT OR IGNORE INTO terms(term) SELECT value FROM json_each(?)",
                          (json.dumps(sorted(vocabulary(texts))),))

    # -- after redact and purge ----------------------------------------------------------------------

    def scrub(self) -> None:
        """No trace of deleted rows left in the file: the FTS5 segments merged into one (deleted
        words are dropped; secure_delete zeroes the pages they leave), the WAL checkpointed and
        truncated; `terms` made again from the words the index still holds. Outside a transaction."""
        self.conn.execute("INSERT INTO items_fts(items_fts) VALUES ('optimize')")
        self.conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocabulary USING fts5vocab(main, items_fts, 'row')")
        self.begin()
        try:
            self.conn.execute("DELETE FROM terms")
            self.conn.execute("INSERT INTO terms(term) SELECT term FROM temp.vocabulary")
            self.commit()
        finally:
            self.rollback()
        for _ in range(50):
            busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                return
            time.sleep(0.02)  # a reader holds an old snapshot: a query ends within milliseconds


# -- queries -------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")  # letters and digits, as unicode61 reads a word


def words(text: str) -> list[str]:
    """The words of what a person typed, as the index splits text (everything else separates)."""
    return _WORD.findall(text)


def _fold(word: str) -> str:
    """A word as unicode61 (remove_diacritics) keeps it, near enough: lower case, no accents."""
    word = word.lower()
    if word.isascii():
        return word
    return "".join(ch for ch in unicodedata.normalize("NFKD", word) if not unicodedata.combining(ch))


def vocabulary(texts: Iterable[str | None]) -> set[str]:
    """The words of `texts` that a prefix of plain letters and digits can start (see `terms`)."""
    found: set[str] = set()
    for text in texts:
        if not text:
            continue
        if text.isascii():
            found.update(_WORD.findall(text.lower()))
        else:
            found.update(w for w in map(_fold, _WORD.findall(text)) if w.isascii())
    return found


def match_expression(found: Sequence[str], last: Sequence[str] | None = None) -> str:
    """The FTS5 query for these words: each quoted (so nothing is query syntax), all within NEAR
    words of each other; the last one a prefix when it has PREFIX_MIN characters or more: either
    the words it starts (`last`, from `terms`) or, without them, FTS5's own prefix query."""
    phrases = [f'"{w}"' for w in found]
    if last is not None:
        return " OR ".join(_near([*phrases[:-1], f'"{w}"']) for w in last)
    if len(found[-1]) >= PREFIX_MIN:
        phrases[-1] += " *"
    return _near(phrases)


def _near(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else f"NEAR({' '.join(phrases)}, {NEAR})"


def _starting(conn: sqlite3.Connection, prefix: str) -> list[str] | None:
    """The words of the index that start with `prefix` (EXPAND_MAX at most), or None when FTS5's
    own prefix query is to be used: a prefix of other characters, or one that starts too many.

    Why: FTS5 answers a prefix query by merging the lists of every word it starts, across the
    whole index, before the first row comes out (25 ms for a word in 800,000 rows, whatever the
    LIMIT); the same words named one by one are read lazily, newest first, and a LIMIT stops them."""
    if not prefix.isascii() or len(prefix) < PREFIX_MIN:
        return None
    low = prefix.lower()
    high = low[:-1] + chr(ord(low[-1]) + 1)
    found = [row[0] for row in conn.execute(
        "SELECT term FROM terms WHERE term >= ? AND term < ? LIMIT ?", (low, high, EXPAND_MAX + 1))]
    return None if len(found) > EXPAND_MAX else found


@dataclass
class Query:
    words: list[str]
    failed: bool = False
    since_ns: int | None = None
    directory: str | None = None  # absolute, without a trailing slash (but "/")
    session: str | None = None
    limit: int = 20


@dataclass
class Row:
    session: str
    kind: Literal["command", "annotation"]
    timestamp: str
    text: str
    match: Literal["command", "output", "annotation"]
    directory: str | None = None
    exit_code: int | None = None
    annotation_id: str | None = None
    annotation_type: str | None = None
    snippet: str | None = None


@dataclass
class Found:
    rows: list[Row] = field(default_factory=list)
    more: bool = False
    usable: bool = True  # False: no index file to read (missing, being made, damaged)
    problem: str | None = None


def search(path: Path, query: Query, keep: Callable[[str], bool]) -> Found:
    """The newest `query.limit` items that match, of sessions `keep` accepts; `more` when there are
    others. Opens its own connection (any thread). A file that is missing or damaged gives no rows
    and `usable` False; nothing a person typed can raise here."""
    if not query.words:
        return Found()
    why = _kind_problem(path)
    if why is not None or not path.exists():
        return Found(usable=False, problem=why or "missing")
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=2.0, isolation_level=None)
    except sqlite3.Error as exc:
        return Found(usable=False, problem=str(exc))
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA temp_store = MEMORY")  # no temporary file of text outside the data root
        return _search(conn, query, keep)
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc).lower() and "syntax" in str(exc).lower():  # pragma: no cover - words are quoted
            return Found()
        return Found(usable=False, problem=str(exc))
    except sqlite3.Error as exc:
        return Found(usable=False, problem=str(exc))
    finally:
        conn.close()


def _search(conn: sqlite3.Connection, query: Query, keep: Callable[[str], bool]) -> Found:
    last = _starting(conn, query.words[-1])
    if last == []:
        return Found()  # no word of the index starts with it
    where = ["items_fts MATCH :match"]
    args: dict[str, Any] = {"match": match_expression(query.words, last)}
    low = time_key(query.since_ns) if query.since_ns is not None else 0
    high: int | None = None
    if query.session is not None:
        number = conn.execute("SELECT n FROM sessions WHERE id = ?", (query.session,)).fetchone()
        bounds = None if number is None else conn.execute(
            "SELECT min(id), max(id) FROM items WHERE session = ?", (number[0],)).fetchone()
        if bounds is None or bounds[0] is None:
            return Found()
        low, high = max(low, bounds[0]), bounds[1]
        where.append("i.session = :session")
        args["session"] = number[0]
    if low:
        where.append("f.rowid >= :low")
        args["low"] = low
    if high is not None:
        where.append("f.rowid <= :high")
        args["high"] = high
    if query.since_ns is not None:
        where.append("i.ns >= :since")  # the same millisecond as --since, a moment before it
        args["since"] = query.since_ns
    if query.failed:
        where.append(f"i.kind = {COMMAND} AND i.exit_code IS NOT NULL AND i.exit_code <> 0")
    if query.directory is not None:
        where.append(f"i.kind = {COMMAND}")
        if query.directory != "/":
            where.append("(i.cwd = :dir OR substr(i.cwd, 1, :dirlen) = :dirslash)")
            args.update(dir=query.directory, dirlen=len(query.directory) + 1, dirslash=query.directory + "/")
    sql = (
        "SELECT s.id, i.kind, i.ns, i.ts, i.text, i.cwd, i.exit_code, i.ref, i.atype, "
        f"snippet(items_fts, 0, '{_START}', '{_END}', '', 1), "
        f"snippet(items_fts, 1, '{_START}', '{_END}', '…', {SNIPPET_WORDS}) "
        "FROM items_fts f JOIN items i ON i.id = f.rowid JOIN sessions s ON s.n = i.session "
        f"WHERE {' AND '.join(where)} ORDER BY f.rowid DESC"
    )
    found = Found()
    for session, kind, ns, ts, text, cwd, exit_code, ref, atype, in_text, in_output in conn.execute(sql, args):
        if not keep(session):
            continue
        if len(found.rows) == query.limit:
            found.more = True
            break
        stamp = ts if ts is not None else timestamps.format_ns(ns)
        found.rows.append(_row(session, kind, stamp, text, cwd, exit_code, ref, atype, in_text, in_output))
    return found


def _row(session: str, kind: int, ts: str, text: str, cwd: str | None, exit_code: int | None, ref: str | None,
         atype: str | None, in_text: str | None, in_output: str | None) -> Row:
    if kind == ANNOTATION:
        return Row(session, "annotation", ts, text, "annotation", annotation_id=ref, annotation_type=atype)
    if (in_text is not None and _START in in_text) or not (in_output and _START in in_output):
        return Row(session, "command", ts, text, "command", directory=cwd or "", exit_code=exit_code)
    snippet = " ".join(in_output.replace(_START, "").replace(_END, "").split())
    return Row(session, "command", ts, text, "output", directory=cwd or "", exit_code=exit_code, snippet=snippet)


# -- fsck --------------------------------------------------------------------------------------------------


@dataclass
class Check:
    """What fsck found of the index: `state` "ok", "missing", "damaged" or "behind"."""

    state: str
    detail: str = ""
    stale: list[str] = field(default_factory=list)  # sessions whose rows do not reflect them
    unknown: list[str] = field(default_factory=list)  # sessions indexed that no longer exist


def check(path: Path, expected: Mapping[str, Mark]) -> Check:
    """Compare the index with the sessions (their marks) without changing anything: read-only,
    and without the side files a reader would create when no daemon has them open."""
    why = _kind_problem(path)
    if why is not None:
        return Check("damaged", why)
    if not path.exists():
        return Check("missing")
    live = Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?{'mode=ro' if live else 'immutable=1'}", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return Check("damaged", str(exc))
    try:
        problem = _schema_problem(conn) or _quick_check(conn)
        if problem is not None:
            return Check("damaged", problem)
        indexed = {sid: Mark(seq, fp) for sid, seq, fp in conn.execute("SELECT id, seq, fingerprint FROM sessions")
                   if seq >= 0}
    except sqlite3.Error as exc:
        return Check("damaged", str(exc))
    finally:
        conn.close()
    stale = sorted(sid for sid, mark in expected.items() if indexed.get(sid) != mark)
    unknown = sorted(set(indexed) - set(expected))
    if stale or unknown:
        return Check("behind", stale=stale, unknown=unknown)
    return Check("ok")


def _quick_check(conn: sqlite3.Connection) -> str | None:
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    return None if result == "ok" else f"damaged ({result})"


def rebuild(path: Path, sessions: Iterable[tuple[str, Mark, Callable[[], tuple[Session, int] | None]]],
            from_scratch: bool = False) -> tuple[str | None, int, int]:
    """fsck --repair: make the index reflect `sessions` (id, mark, a loader of the session and its
    seq that gives None when it cannot be read), checking the file thoroughly first. Only the
    sessions whose mark differs are indexed again (all of them `from_scratch`). Returns why the
    file was made anew (None: kept), how many sessions were indexed and how many dropped."""
    problem = fts5_problem()
    if problem is not None:
        raise SearchUnavailable(problem)
    if from_scratch:
        remove_files(path)
    writer, why = Writer.open(path, verify=True)
    if from_scratch:
        why = "rebuilt on request"
    indexed = dropped = 0
    try:
        marks = writer.marks()
        listed = list(sessions)
        wanted = {sid for sid, _, _ in listed}
        writer.begin()
        for sid in set(marks) - wanted:
            writer.drop_session(sid)
            dropped += 1
        pending = 0
        replaced = False
        for sid, mark, load in listed:
            if marks.get(sid) == mark:
                continue
            loaded = load()
            if loaded is None:
                continue
            session, seq = loaded
            replaced = replaced or sid in marks
            writer.put_session(sid, session_mark(session, seq), session.commands, session.annotations)
            indexed += 1
            pending += 1
            if pending >= 200:
                writer.commit()
                writer.begin()
                pending = 0
        writer.commit()
        if dropped or replaced:  # no word of what was removed or rewritten stays in the file
            writer.scrub()
    finally:
        writer.rollback()
        writer.close()
    return why, indexed, dropped
