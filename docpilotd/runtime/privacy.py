"""Secrets in the daemon: redaction of what comes in, `redact` and `purge` of what is stored.

Incoming text (a recorded command and its output, an annotation, a session's description) is
redacted by the handlers, before the change is built: the journal, the snapshot and every backup
only ever see the redacted text. The rules are the defaults and the config file's
`redact_patterns` (re-read on SIGHUP), plus every pattern `docpilot redact` was given since the
daemon started (kept in memory only: writing them down would write the secret), so that the
`docpilot redact ... SECRET` command line itself, captured by a shell hook a moment later, is
redacted too.

`redact` (one session): the session in memory is replaced by its redacted copy through a
`Replace` change (the journal record holds the redacted session only), a checkpoint writes a
clean snapshot and starts a new journal segment, then every other file of the session that still
holds the secret is rewritten (storage/scrub.py: backups, older journal segments, quarantine
copies) and the shell spool files holding it are removed once ingested. Changes keep flowing
meanwhile: the Replace is built from the session once every queued change is applied and is
queued at once, so nothing acknowledged is lost; files are rewritten under the session's
snapshot_lock (no backup, trim or segment switch meanwhile), never the segment being appended to.

`purge` (one session): refused for a live session unless forced. The session stops accepting
changes at once (as if it no longer existed), its files are deleted under both of its locks, it
leaves the registry, and the spool files holding its lines are removed once ingested.

Both run their file work in the I/O pool; the loop only waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .. import results
from ..config import Config
from ..domain import changes
from ..domain.model import Session
from ..domain.redaction import Finding, PatternError, Redactor, Rule, literal_rule, user_rule
from ..errors import DocpilotError, InvalidTransition, UsageError
from ..protocol import decode_spooled_record
from ..storage import scrub
from ..storage.fsops import NotRegularFile, read_regular
from ..storage.store import SessionStore
from .engine import Engine, Entry


class SpoolFiles(Protocol):
    """What redact and purge need of the shell spool (capture.spool.Spool provides it): read what
    is complete, then delete the files whose content matches. Defined here so that privacy does
    not depend on capture (capture depends on privacy for redaction)."""

    async def discard(
        self, lines_match: Callable[[bytes], bool], scratch_match: Callable[[bytes], bool]
    ) -> list[str]: ...

ROUNDS = 3


class Privacy:
    """The redaction rules in force: configured ones, plus the patterns given to `redact`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._key: tuple[tuple[str, ...], bool, tuple[str, ...]] | None = None
        self._base = Redactor(())
        self._extra: list[Rule] = []
        self._current: Redactor | None = None

    @property
    def redactor(self) -> Redactor:
        key = (tuple(self.config.redact_patterns), self.config.redact_defaults, tuple(self.config.redact_allow))
        if key != self._key:
            # The config was validated when it was loaded (config.load compiles every pattern).
            self._base = Redactor.from_patterns(key[0], key[1], key[2])
            self._key = key
            self._current = None
        if self._current is None:
            self._current = self._base.plus(self._extra)
        return self._current

    def remember(self, rule: Rule) -> None:
        if all(rule.regex.pattern != r.regex.pattern for r in self._extra):
            self._extra.append(rule)
            self._current = None


def request_rule(pattern: str, regex: bool) -> Rule:
    """The rule a `redact` request asks for; UsageError when it cannot be one."""
    if not pattern:
        raise UsageError("redact needs the text (or, with --regex, the pattern) to remove")
    if not regex:
        return literal_rule(pattern, "redact")
    try:
        rule = user_rule("redact", pattern)
    except PatternError as exc:
        raise UsageError(f"not a valid regular expression: {exc.reason}") from None
    if rule.regex.fullmatch("") is not None:
        raise UsageError("that pattern matches empty text; give one that matches the secret only")
    return rule


def check(privacy: Privacy, text: str, patterns: Sequence[str]) -> results.RedactChecked:
    """`docpilot redact --check`: the rules in force, plus `patterns` for this text only, on `text`;
    UsageError when one of `patterns` is not a pattern RE2 compiles."""
    try:
        tried = [user_rule(f"--pattern {index}", pattern, index) for index, pattern in enumerate(patterns)]
    except PatternError as exc:
        raise UsageError(f"--pattern {exc.index}: not a valid regular expression: {exc.reason}") from None
    redactor = privacy.redactor.plus(tried) if tried else privacy.redactor
    findings: list[Finding] = []
    redacted, _ = redactor.count(text, findings)
    return {
        "text": redacted,
        "replaced": [{"rule": f.rule, "secret": f.secret} for f in findings if f.replaced],
        "allowed": [{"rule": f.rule, "secret": f.secret} for f in findings if not f.replaced],
    }


async def _io(engine: Engine, fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(engine.pool, fn, *args)


async def redact(
    engine: Engine, privacy: Privacy, spool: SpoolFiles | None, entry: Entry, pattern: str, regex: bool
) -> results.Redacted:
    rule = request_rule(pattern, regex)
    privacy.remember(rule)  # first: whatever arrives from now on is redacted on the way in
    scrubber = scrub.Scrubber(Redactor([rule]), None if regex else pattern)
    store: SessionStore = engine.store
    replaced = 0
    rewritten: list[str] = []
    remaining: list[str] = []
    examined = 0
    snapshot_name = f"sessions/{entry.session_id}.json"
    for _ in range(ROUNDS):
        main_dirty = await _io(engine, _file_holds, scrubber, store.layout.session_file(entry.session_id))
        # No pause from here to the commit: the Replace is queued right behind every applied change.
        session = await engine.settled(entry)
        clean, count = scrubber.redactor.session(session)
        if count or main_dirty:
            # Also when only the snapshot holds it (memory came from a restore): rewrite it from memory.
            await engine.commit(entry, changes.Replace(session=clean, reason="redact", at=engine.stamp(entry)))
            replaced += count
            if await engine.checkpoint(entry) and snapshot_name not in rewritten:
                rewritten.append(snapshot_name)
        async with engine.files_held(entry) as live:
            report = await _io(engine, scrub.scrub_files, store, entry.session_id, scrubber, [live] if live else [])
        examined = max(examined, report.examined)
        rewritten.extend(name for name in report.rewritten if name not in rewritten)
        remaining = report.remaining
        if not remaining:
            break
        # A change that was on its way while the pattern was registered may have brought the
        # secret into memory and the live segment: replace and checkpoint again, then rewrite.
    spooled = await spool.discard(scrubber.found_in, scrubber.found_in) if spool is not None else []
    return {
        "session": entry.session_id, "replaced": replaced, "rewritten": rewritten,
        "spool_removed": spooled, "remaining": remaining, "files_examined": examined,
    }


def _file_holds(scrubber: scrub.Scrubber, path: Any) -> bool:
    try:
        return scrubber.found_in(read_regular(path))  # never waits on a FIFO in its place
    except (FileNotFoundError, NotRegularFile):
        return False


def _may_purge(entry: Entry, force: bool) -> None:
    state = entry.pending_state or (entry.summary["state"] if entry.summary is not None else "")
    if state in ("Active", "Paused") and not force:
        raise InvalidTransition(
            f"session {entry.session_id} is {state}: stop it first, or purge it anyway with --force"
        )


async def purge_listing(engine: Engine, entry: Entry, force: bool) -> results.Purged:
    """`purge --dry-run`: the files purge would remove (spool lines are found only when purging)."""
    _may_purge(entry, force)
    loop = asyncio.get_running_loop()
    files = await loop.run_in_executor(engine.pool, scrub.purge_listing, engine.store, entry.session_id)
    return {"session": entry.session_id, "removed": files, "spool_removed": [], "dry_run": True}


async def purge(engine: Engine, spool: SpoolFiles | None, entry: Entry, force: bool) -> results.Purged:
    _may_purge(entry, force)
    try:
        session: Session | None = await engine.full_session(entry)
    except DocpilotError:
        session = None  # no usable copy left: its files go all the same
    capture_ids = {c.capture_id for c in session.commands if c.capture_id} if session else set()
    texts = {c.command.strip() for c in session.commands} if session else set()
    # From now on the session refuses every change, as if it no longer existed.
    removed = await engine.remove(entry, lambda: scrub.purge_files(engine.store, entry.session_id))
    spooled: list[str] = []
    if spool is not None:
        spooled = await spool.discard(
            lambda data: _names_session(data, entry.session_id, capture_ids),
            lambda data: data.decode("utf-8", "replace").strip() in texts,
        )
    return {"session": entry.session_id, "removed": removed, "spool_removed": spooled}


def _names_session(data: bytes, session_id: str, capture_ids: set[str]) -> bool:
    """Whether spool lines name the session (by id or a prefix of it) or carry one of its
    commands' capture ids."""
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        record = decode_spooled_record(line)
        if record is None:
            continue
        if record.session and len(record.session) >= 4 and session_id.startswith(record.session):
            return True
        if record.capture_id and record.capture_id in capture_ids:
            return True
    return False
