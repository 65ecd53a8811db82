"""Redaction: passwords, tokens and keys replaced by a marker before a session reaches any file.

A `Redactor` is an ordered list of compiled rules. `text(s)` applies every rule once, in order,
and returns the text with each secret replaced by `MARKER` (`[REDACTED]`). A rule whose regex has
named groups starting with `secret` (`secret`, `secret2`, ...) replaces only those groups, so the
reader keeps the context (`--password=[REDACTED]`, `Authorization: Bearer [REDACTED]`,
`postgres://app:[REDACTED]@db`); a rule without such a group replaces its whole match (a token
recognised by its shape, `ghp_...`, `AKIA...`). The defaults cover the common forms; the config
file adds regexes of the same kind (`redact_patterns`), and `docpilot redact` adds one for the rest
of the daemon's run.

Pure: no files, clocks or sockets. Invariants: a redactor never raises on any text (its regexes
compile once, here, and a `PatternError` names the bad one); `session()` and `change()` touch only
free text (descriptions, commands, output, annotations, event details, metadata values), never
ids, timestamps, types or numbers, so a redacted session is still valid and replays the same way;
they return the input object itself when nothing matched, and a new object otherwise (the input
is never mutated: the daemon may be reading it in another thread); redacting a redacted text
changes nothing and counts nothing. Cost: every built-in rule runs in linear time on any input and
only on text containing one of its trigger substrings, so an ordinary command costs a few
microseconds and a megabyte of output about 0.2 s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from . import changes
from .model import Annotation, CommandEntry, ErrorState, Session, SessionEvent, SessionMetadata

MARKER = "[REDACTED]"
_T = TypeVar("_T")

# A value as a shell or a config file writes it: quoted, or up to whitespace or a shell operator.
_VALUE = r"""(?:"(?P<secret_dq>[^"\n]*+)"|'(?P<secret_sq>[^'\n]*+)'|(?P<secret>(?![-=]|\[REDACTED\]|\[redacted\])[^\s'";&|]++))"""
# A name that says "this is a secret" (PGPASSWORD, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, db_password):
# the match starts at the keyword (a literal, found fast) and takes the rest of the name possessively.
_KEYWORD = (
    r"(?:(?:passw(?:or)?d|passphrase|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|credential)s?"
    r"|(?<![a-z0-9])pass|mysql_pwd)(?![a-z0-9])"  # a whole part of the name: not TOKENIZERS, BYPASS
)
_NAME_REST = r"[a-z0-9_.\-]{0,64}+(?<!file)(?<!path)(?<!dir)"  # not PASSWORD_FILE=/path
_NAME_TRIGGERS = ("pass", "secret", "token", "key", "credential", "pwd")
_DB_CLIENTS = r"(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mysqlcheck|mysqlpump|mysqlsh|mariadb(?:-[a-z]+)?)"


def _args(program: str) -> str:
    """Between a program's name and one of its options: the rest of that command, within reason
    (never past the program's next mention, so every character is looked at once)."""
    return rf"(?:(?!{program})[^\n;|&]){{0,300}}?[ \t]"


# (name, triggers, lowercase, regex). A rule runs only on text that contains one of its triggers
# (lowercase substrings: a cheap test that spares the regexes on most commands). A `lowercase` rule
# is written for, and run on, the lowercased text (case-insensitive at the speed of a literal
# search); its spans are then replaced in the original text. Every regex runs in linear time on
# any input (bounded or possessive repetitions, literal first). Order matters only where rules
# overlap: the more specific ones come first.
DEFAULT_RULES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    # -----BEGIN OPENSSH PRIVATE KEY----- ... -----END ...----- (also a block cut off by the end).
    ("private_key_block", ("private key",), False,
     r"-----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----(?P<secret>(?:(?!-----END )[\s\S])*+)"),
    # scheme://user:password@host (the password; an empty user too: redis://:pw@host).
    ("url_credentials", ("://",), False, r"://[^\s/?#@:'\"]{0,256}:(?P<secret>[^\s/?#@'\"]{1,1024})@"),
    # Authorization: Bearer xyz / Proxy-Authorization: Basic xyz (header lines, curl -H, JSON).
    ("authorization_header", ("authorization",), True,
     r"authorization[\"']?[ \t]*+:[ \t]*+[\"']?"
     r"(?:(?:bearer|basic|token|digest|negotiate|bot|apikey|aws4-hmac-sha256)[ \t]++)?(?P<secret>[^\r\n'\"\\]++)"),
    ("secret_header", ("api-key", "token", "cookie"), True,
     r"(?:api-key|-auth-token|-access-token|private-token|-vault-token|-security-token|cookie)"
     r"[\"']?[ \t]*+:[ \t]*+[\"']?(?P<secret>[^\r\n'\"\\]++)"),
    ("bearer_token", ("bearer",), True, r"bearer[ \t]++(?P<secret>[a-z0-9._~+/=\-]{16,})"),
    # --password=x, --password x, --db-password 'x', --token=x, --api-key x, --client-secret x
    # (not --no-password, --password-file or a following option).
    ("secret_option", ("--",), True,
     r"(?<![\w-])--(?!no-)(?>(?:[a-z0-9]++-)*?(?:passw(?:or)?d|pass|passphrase|token|secret|api-?key|"
     r"access-?key|secret-?key|auth-?token|client-?secret))(?:=|[ \t]++)" + _VALUE),
    # mysql -psecret, mysqldump -u root -p'secret' (database clients take the password glued to -p).
    ("db_client_password", ("mysql", "mariadb"), False,
     rf"(?<![\w/-]){_DB_CLIENTS}\b{_args('mysql|mariadb')}-p(?:\"(?P<secret_dq>[^\"\n]*+)\"|'(?P<secret_sq>[^'\n]*+)'|"
     r"(?P<secret>[^\s;|&'\"]++))"),
    ("sshpass", ("sshpass",), False, rf"sshpass\b{_args('sshpass')}-p[ \t]*+" + _VALUE),
    ("redis_cli_password", ("redis-cli",), False, rf"redis-cli\b{_args('redis-cli')}-a[ \t]++" + _VALUE),
    # curl -u user:password, curl --user=user:password
    ("curl_user", ("curl",), False,
     rf"curl(?<![\w/-]curl)\b{_args('curl')}(?:-u|--user|--proxy-user|-U)[ \t]*+=?[ \t]*+[\"']?[^\s:'\"]{{0,256}}:"
     r"(?P<secret>[^\s'\"]++)"),
    # export SECRET=x, PGPASSWORD=x psql, -e DB_PASSWORD=x, password = "x" (config files),
    # "api_key": "x" (JSON), token: x (YAML).
    ("secret_assignment", _NAME_TRIGGERS, True,
     rf"{_KEYWORD}{_NAME_REST}(?:[ \t]*+=|[\"']?[ \t]*+:)[ \t]*+" + _VALUE),
    # fish: set -gx GITHUB_TOKEN x; csh: setenv API_KEY x
    ("secret_set", ("set",), True,
     rf"\b(?:set(?:[ \t]++-[a-z]++){{0,4}}+|setenv)[ \t]++[a-z0-9_.\-]{{0,64}}?{_KEYWORD}[a-z0-9_.\-]{{0,64}}+[ \t]++" + _VALUE),
    # Tokens recognised by their shape (the literal first, then "not inside a longer word").
    ("aws_access_key_id", ("akia", "asia", "abia", "acca", "agpa", "aida", "aroa", "aipa", "anpa", "anva", "apka"),
     False, r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|NVA|PKA)(?<![A-Za-z0-9]....)[A-Z0-9]{16}\b"),
    ("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), False,
     r"gh[pousr]_(?<![A-Za-z0-9_]....)[A-Za-z0-9]{36,255}\b|github_pat_(?<![A-Za-z0-9_]github_pat_)[A-Za-z0-9_]{22,255}\b"),
    ("gitlab_token", ("glpat-",), False, r"glpat-(?<![A-Za-z0-9_]glpat-)[A-Za-z0-9_\-]{20,}"),
    ("slack_token", ("xox", "xapp-"), False,
     r"xox[abposre]-(?<![A-Za-z0-9_]....-)[A-Za-z0-9\-]{10,}|xapp-(?<![A-Za-z0-9_]xapp-)\d-[A-Za-z0-9\-]{10,}"),
    ("slack_webhook", ("hooks.slack.com",), False, r"hooks\.slack\.com/services/(?P<secret>[A-Za-z0-9/_\-]++)"),
    ("openai_style_key", ("sk-",), False, r"sk-(?<![A-Za-z0-9_]sk-)(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_\-]{20,}"),
    ("stripe_key", ("_live_", "_test_"), False, r"[sr]k_(?<![A-Za-z0-9_]...)(?:live|test)_[A-Za-z0-9]{16,}"),
    ("google_api_key", ("aiza",), False, r"AIza(?<![A-Za-z0-9_]AIza)[0-9A-Za-z_\-]{35}"),
    ("npm_token", ("npm_",), False, r"npm_(?<![A-Za-z0-9_]npm_)[A-Za-z0-9]{36}\b"),
    ("pypi_token", ("pypi-",), False, r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}"),
    ("jwt", ("eyj",), False, r"eyJ(?<![A-Za-z0-9_\-]eyJ)[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
)


class PatternError(ValueError):
    """A pattern that does not compile; `index` is its position in the list it came from."""

    def __init__(self, index: int, pattern: str, reason: str) -> None:
        super().__init__(f"pattern {index} ({pattern[:60]!r}) is not a valid regular expression: {reason}")
        self.index = index
        self.reason = reason


@dataclass(frozen=True)
class Rule:
    """One compiled pattern. `regex` matches the text itself; `lower_regex`, when set, is the same
    pattern for the lowercased text (used whenever lowercasing keeps the length)."""

    name: str
    regex: re.Pattern[str]
    triggers: tuple[str, ...] = ()  # lowercase substrings, one of which the text must contain; () = always
    lower_regex: re.Pattern[str] | None = None

    @property
    def secret_groups(self) -> tuple[str, ...]:
        return tuple(g for g in self.regex.groupindex if g.startswith("secret"))


def compile_rule(
    name: str, pattern: str, index: int = 0, triggers: tuple[str, ...] = (), lowercase: bool = False
) -> Rule:
    try:
        if lowercase:
            return Rule(name, re.compile(pattern, re.IGNORECASE), triggers, re.compile(pattern))
        return Rule(name, re.compile(pattern), triggers)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise PatternError(index, pattern, str(exc)) from None


def literal_rule(text: str, name: str = "literal") -> Rule:
    """A rule that removes exactly `text` (what `docpilot redact` does by default)."""
    return Rule(name, re.compile(re.escape(text)))


_DEFAULTS: tuple[Rule, ...] = tuple(
    compile_rule(name, pattern, 0, triggers, lowercase) for name, triggers, lowercase, pattern in DEFAULT_RULES
)


class Redactor:
    """Compiled rules applied in order; see the module docstring."""

    def __init__(self, rules: Iterable[Rule], marker: str = MARKER) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.marker = marker
        self._plans = tuple(
            (rule.regex, rule.lower_regex, rule.secret_groups, frozenset(rule.triggers)) for rule in self.rules
        )
        self._triggers = tuple(sorted({t for rule in self.rules for t in rule.triggers}))

    @classmethod
    def from_patterns(cls, patterns: Sequence[str] = (), defaults: bool = True) -> Redactor:
        """The default rules (unless `defaults` is false) followed by `patterns`; PatternError if one
        does not compile."""
        extra = [compile_rule(f"pattern {i}", p, i) for i, p in enumerate(patterns)]
        return cls([*(_DEFAULTS if defaults else ()), *extra])

    def plus(self, rules: Iterable[Rule]) -> Redactor:
        return Redactor([*self.rules, *rules], self.marker)

    def __bool__(self) -> bool:
        return bool(self.rules)

    # -- text ---------------------------------------------------------------------------------------

    def count(self, text: str) -> tuple[str, int]:
        """The redacted text and how many secrets were replaced."""
        total = 0
        lower: str | None = None
        present: set[str] | None = None
        for regex, lower_regex, groups, triggers in self._plans:
            if triggers:
                if present is None:
                    lower = text.lower()
                    present = {t for t in self._triggers if t in lower}
                if not (triggers & present):
                    continue
            if lower_regex is not None:
                if lower is None:
                    lower = text.lower()
                target, pattern = (lower, lower_regex) if len(lower) == len(text) else (text, regex)
            else:
                target, pattern = text, regex
            # A secret already replaced is not counted again (redacting twice changes nothing).
            spans = [span for span in self._spans(pattern, groups, target) if text[span[0] : span[1]] != self.marker]
            if spans:
                text = self._replace(text, spans)
                total += len(spans)
                lower = None  # the text changed: lowercase it again when needed
        return text, total

    @staticmethod
    def _spans(pattern: re.Pattern[str], groups: tuple[str, ...], target: str) -> list[tuple[int, int]]:
        """What to replace: each match's secret groups (the outermost, in order), or the match."""
        spans: list[tuple[int, int]] = []
        for match in pattern.finditer(target):
            if not groups:
                if match.end() > match.start():
                    spans.append(match.span())
                continue
            found = sorted(match.span(g) for g in groups if match.start(g) != -1)
            end = -1
            for first, last in found:
                if first >= end:
                    spans.append((first, last))
                    end = last
        return spans

    def _replace(self, text: str, spans: list[tuple[int, int]]) -> str:
        pieces: list[str] = []
        position = 0
        for first, last in spans:
            pieces.append(text[position:first])
            pieces.append(self.marker)
            position = last
        pieces.append(text[position:])
        return "".join(pieces)

    def text(self, text: str) -> str:
        return self.count(text)[0]

    def optional(self, text: str | None) -> tuple[str | None, int]:
        return (None, 0) if text is None else self.count(text)

    # -- model objects ------------------------------------------------------------------------------

    def command(self, entry: CommandEntry, everything: bool = False) -> tuple[CommandEntry, int]:
        """The command with its text, output and error redacted (and, with `everything`, its
        working directory and shell)."""
        command, a = self.count(entry.command)
        output, b = self.optional(entry.output)
        error, c = self.optional(entry.error)
        cwd, d = self.count(entry.working_directory) if everything else (entry.working_directory, 0)
        shell, e = self.count(entry.shell) if everything else (entry.shell, 0)
        if not (a or b or c or d or e):
            return entry, 0
        return msgspec.structs.replace(
            entry, command=command, output=output, error=error, working_directory=cwd, shell=shell
        ), a + b + c + d + e

    def annotation(self, note: Annotation) -> tuple[Annotation, int]:
        text, n = self.count(note.text)
        return (msgspec.structs.replace(note, text=text), n) if n else (note, 0)

    def session(self, session: Session) -> tuple[Session, int]:
        """The whole session with every free-text field redacted; the same object when clean."""
        total = 0

        def each(items: list[_T], fn: Callable[[_T], tuple[_T, int]]) -> list[_T]:
            """A new list when an item changed (items are never changed in place), else `items`."""
            nonlocal total
            out: list[_T] = []
            changed = False
            for item in items:
                new, n = fn(item)
                total += n
                changed = changed or n > 0
                out.append(new)
            return out if changed else items

        description, n = self.count(session.description)
        total += n
        output_file, n = self.optional(session.output_file)
        total += n
        state = session.state
        if isinstance(state, ErrorState):
            message, n = self.count(state.Error)
            total += n
            state = ErrorState(message) if n else state
        commands = each(session.commands, lambda c: self.command(c, everything=True))
        annotations = each(session.annotations, self.annotation)
        events = each(session.events, self._event)
        metadata, n = self._metadata(session.metadata)
        total += n
        if not total:
            return session, 0
        return Session(
            id=session.id, description=description, state=state, created_at=session.created_at,
            updated_at=session.updated_at, started_at=session.started_at, stopped_at=session.stopped_at,
            output_file=output_file, commands=commands, annotations=annotations, events=events,
            metadata=metadata, stats=session.stats,
        ), total

    def _event(self, event: SessionEvent) -> tuple[SessionEvent, int]:
        details, n = self.optional(event.details)
        return (msgspec.structs.replace(event, details=details), n) if n else (event, 0)

    def _metadata(self, meta: SessionMetadata) -> tuple[SessionMetadata, int]:
        total = 0
        values: dict[str, object] = {}
        for name in ("working_directory", "shell_type", "platform", "hostname"):
            values[name], n = self.count(getattr(meta, name))
            total += n
        for name in ("user", "llm_provider"):
            values[name], n = self.optional(getattr(meta, name))
            total += n
        tags = []
        for tag in meta.tags:
            tag, n = self.count(tag)
            tags.append(tag)
            total += n
        settings: dict[str, str] = {}
        for key, value in meta.settings.items():
            key, n = self.count(key)
            value, m = self.count(value)
            settings[key] = value
            total += n + m
        if not total:
            return meta, 0
        return SessionMetadata(tags=tags, settings=settings, **values), total  # type: ignore[arg-type]

    def change(self, change: changes.Change) -> tuple[changes.Change, int]:
        """A journal record's change with its free text redacted (the same object when clean)."""
        if isinstance(change, changes.RecordCommand):
            entry, n = self.command(change.entry, everything=True)
            return (msgspec.structs.replace(change, entry=entry), n) if n else (change, 0)
        if isinstance(change, changes.Annotate):
            note, n = self.annotation(change.annotation)
            return (msgspec.structs.replace(change, annotation=note), n) if n else (change, 0)
        if isinstance(change, changes.EditAnnotation):
            text, n = self.count(change.text)
            return (msgspec.structs.replace(change, text=text), n) if n else (change, 0)
        if isinstance(change, changes.Replace):
            session, n = self.session(change.session)
            reason, m = self.count(change.reason)
            return (changes.Replace(session=session, reason=reason), n + m) if n + m else (change, 0)
        if isinstance(change, changes.Create):
            description, n = self.count(change.description)
            output_file, m = self.optional(change.output_file)
            metadata, k = self._metadata(change.metadata)
            if not n + m + k:
                return change, 0
            return msgspec.structs.replace(
                change, description=description, output_file=output_file, metadata=metadata
            ), n + m + k
        if isinstance(change, changes.Fail):
            message, n = self.count(change.message)
            return (msgspec.structs.replace(change, message=message), n) if n else (change, 0)
        return change, 0  # Pause, Resume, Stop, DeleteAnnotation: no text


def json_escaped(text: str) -> str:
    """`text` as it appears inside a JSON string written by msgspec (non-ASCII kept as is)."""
    return msgspec.json.encode(text).decode("utf-8")[1:-1]
