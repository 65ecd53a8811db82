"""Linear-time matching for redaction, through RE2 (google-re2): the user's patterns, and the gate.

Python's `re` backtracks: a pattern like `(a+)+$` takes exponential time on `aaaa...b`, so a
pattern from a config file or a `docpilot redact --regex` could stall the daemon on one line. RE2
matches in time linear in the text whatever the pattern, at the price of lookarounds and
backreferences. Two uses here:

- `LinearPattern`: a user's pattern compiled by RE2. It offers the part of `re.Pattern` redaction
  uses (`pattern`, `groupindex`, `finditer`, `search`, `fullmatch`) with character offsets, so a
  rule runs the same whichever engine compiled it. A pattern RE2 cannot compile raises
  `LinearPatternError` with RE2's reason and what to write instead.
- `Gate`: one RE2 set of patterns run over a text in one pass; it says which of them match
  somewhere. Redaction gives each rule such a pattern (`shadow`: the rule's own Python regex with
  what RE2 lacks widened away) and runs a rule's real regex only when its pattern matched, so
  hundreds of rules cost one scan of the text.

`shadow` over-approximates: every text the Python regex matches somewhere, its shadow matches
there too (lookarounds and word boundaries are dropped, possessive and atomic parts become plain
ones, a backreference becomes "anything", long counted repeats are shortened, categories are taken
in their Unicode extent, and a negated class holding a negated category becomes "any character").
So a gate can make a rule run for nothing, never keep it from running. When RE2 cannot answer (it
reports no match of the always-matching sentinel), `Gate.which` says None and the caller runs
every rule. Texts holding lone surrogates (a non-UTF-8 byte kept by `surrogateescape`) are matched
with each such character read as `?`: same length, so offsets stay true.

Pure: no files or clocks. RE2's own error log is silenced (`log_errors = False`): a bad pattern is
reported once, through our exception, not on the daemon's stderr.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence

# Internal of CPython's `re` (stable across 3.11-3.13): the parse tree of a pattern. `shadow`
# returns None for anything it does not know, and the caller then runs the rule ungated.
from re import _constants as _sre  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Any

import re2

# A counted repeat longer than this is shortened in a shadow (`[a-f0-9]{64}` -> `[a-f0-9]{12,}`):
# RE2 compiles a count into copies, and a set of a hundred patterns should stay small and fast.
_LONGEST_COUNT = 12


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 64 << 20  # a set's DFA never runs out of room on any text
    return options


class LinearPatternError(ValueError):
    """A pattern RE2 does not compile; `reason` says why, in words a user can act on."""

    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(reason)
        self.pattern = pattern
        self.reason = reason


def _reason(error: Exception) -> str:
    detail = error.args[0] if error.args else error
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    if "perl operator" in text or ("escape sequence: \\" in text and any(c.isdigit() for c in text[-3:])):
        return (f"{text} (patterns run in linear time, so lookarounds such as (?=...) and (?<!...) and "
                "backreferences such as \\1 are not available: write the secret's own shape instead)")
    return text


def _matchable(text: str) -> str:
    """`text` with each lone surrogate read as `?` (RE2 takes UTF-8; offsets keep their place)."""
    return text.encode("utf-8", "replace").decode("utf-8")


class _Match:
    """What redaction reads of a match: spans in characters, by group number."""

    __slots__ = ("_spans",)

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        self._spans = spans

    def span(self, group: int = 0) -> tuple[int, int]:
        return self._spans[group]

    def start(self, group: int = 0) -> int:
        return self._spans[group][0]

    def end(self, group: int = 0) -> int:
        return self._spans[group][1]


class LinearPattern:
    """A pattern compiled by RE2 (see the module docstring)."""

    def __init__(self, pattern: str) -> None:
        try:
            self._regex = re2.compile(pattern, _options())
        except re2.error as exc:
            raise LinearPatternError(pattern, _reason(exc)) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise LinearPatternError(pattern, str(exc)) from None
        self.pattern = pattern
        self.groupindex: dict[str, int] = dict(self._regex.groupindex)
        self.groups: int = self._regex.groups

    def finditer(self, text: str) -> Iterator[_Match]:
        """Every match, leftmost first, as RE2 finds them on the UTF-8 text; offsets in characters."""
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError:
            encoded = _matchable(text).encode("utf-8")
        ascii_only = len(encoded) == len(text)
        # Byte offsets grow along the matches: convert each by decoding only what lies between it and
        # the previous one, so the whole conversion reads the text once.
        last_byte = last_char = 0
        for match in self._regex.finditer(encoded):
            byte_spans = [match.span(group) for group in range(self.groups + 1)]
            if ascii_only:
                yield _Match(byte_spans)
                continue
            spans: list[tuple[int, int]] = []
            for first, last in byte_spans:
                if first < 0:
                    spans.append((-1, -1))
                    continue
                pair = []
                for offset in (first, last):
                    if offset >= last_byte:
                        last_char += len(encoded[last_byte:offset].decode("utf-8", "replace"))
                    else:  # a group that starts before the previous offset: count from the start
                        last_char = len(encoded[:offset].decode("utf-8", "replace"))
                    last_byte = offset
                    pair.append(last_char)
                spans.append((pair[0], pair[1]))
            yield _Match(spans)

    def search(self, text: str) -> _Match | None:
        return next(self.finditer(text), None)

    def fullmatch(self, text: str) -> object | None:
        """RE2's match of the whole text, or None."""
        try:
            found: object | None = self._regex.fullmatch(text)
        except UnicodeEncodeError:
            found = self._regex.fullmatch(_matchable(text))
        return found


class Gate:
    """One RE2 set over many patterns (None: that one always counts as matching)."""

    def __init__(self, patterns: Sequence[str | None]) -> None:
        self._set = re2.Set.SearchSet(_options())
        self._always = frozenset(index for index, pattern in enumerate(patterns) if pattern is None)
        self._index: dict[int, int] = {}  # set entry -> position in `patterns`
        for index, pattern in enumerate(patterns):
            if pattern is not None:
                self._index[self._set.Add(pattern)] = index
        # Matches every text: when RE2 gives up (no room for its automaton), the sentinel is missing
        # from the answer and the caller looks at everything instead of trusting an empty answer.
        self._sentinel = self._set.Add("")
        self._set.Compile()
        self.size = len(patterns)

    def which(self, text: str) -> set[int] | None:
        """The positions of the patterns that match somewhere in `text`, or None if RE2 could not
        tell (then every pattern must be taken as matching)."""
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError:
            encoded = _matchable(text).encode("utf-8")
        found = self._set.Match(encoded)
        if not found or self._sentinel not in found:
            return None
        chosen = set(self._always)
        index = self._index
        for entry in found:
            if entry != self._sentinel:
                chosen.add(index[entry])
        return chosen


# -- shadows: a Python regex widened into one RE2 reads -------------------------------------------

# Each Python category (Unicode, in str patterns) as a superset RE2 reads fast: its ASCII members
# and every non-ASCII character (Unicode classes such as \p{L} make RE2's automata large and slow).
_NON_ASCII = r"\x{80}-\x{10ffff}"
_CATEGORY_WIDE = {
    _sre.CATEGORY_DIGIT: "0-9" + _NON_ASCII,
    _sre.CATEGORY_WORD: "0-9A-Za-z_" + _NON_ASCII,
    _sre.CATEGORY_SPACE: r"\t\n\x{0b}\f\r \x{1c}-\x{1f}" + _NON_ASCII,
}
_CATEGORY_NARROW = {  # ... and as a subset (what a negated class may safely leave out)
    _sre.CATEGORY_DIGIT: "0-9",
    _sre.CATEGORY_WORD: "0-9A-Za-z_",
    _sre.CATEGORY_SPACE: r"\t\n\f\r ",
}
_NEGATED_CATEGORY = frozenset({_sre.CATEGORY_NOT_DIGIT, _sre.CATEGORY_NOT_WORD, _sre.CATEGORY_NOT_SPACE})
_ANY = r"(?s:.)"


class _Untranslatable(Exception):
    pass


def _char(code: int) -> str:
    if 0xD800 <= code <= 0xDFFF:
        raise _Untranslatable("surrogate")
    if chr(code).isascii() and chr(code).isalnum():
        return chr(code)
    return f"\\x{{{code:x}}}"


def _class(items: list[tuple[Any, Any]]) -> str:
    negated = bool(items) and items[0][0] is _sre.NEGATE
    if negated:
        items = items[1:]
    parts: list[str] = []
    for op, value in items:
        if op is _sre.LITERAL:
            parts.append(_char(value))
        elif op is _sre.RANGE:
            parts.append(f"{_char(value[0])}-{_char(value[1])}")
        elif op is _sre.CATEGORY:
            if value in _NEGATED_CATEGORY:
                return _ANY  # \S, \W or \D in a class: any character is a safe widening
            table = _CATEGORY_NARROW if negated else _CATEGORY_WIDE
            if value not in table:
                raise _Untranslatable(str(value))
            parts.append(table[value])
        else:
            raise _Untranslatable(str(op))
    if not parts:
        raise _Untranslatable("empty class")
    return ("[^" if negated else "[") + "".join(parts) + "]"


def _repeat(low: int, high: int, body: str) -> str:
    low = min(low, _LONGEST_COUNT)
    if high is _sre.MAXREPEAT or high > _LONGEST_COUNT:
        return f"(?:{body}){{{low},}}" if low else f"(?:{body})*"
    return f"(?:{body}){{{low},{high}}}"


def _emit(tree: Any) -> str:
    out: list[str] = []
    for op, value in tree:
        if op is _sre.LITERAL:
            out.append(_char(value))
        elif op is _sre.NOT_LITERAL:
            out.append(f"[^{_char(value)}]")
        elif op is _sre.ANY:
            out.append(_ANY)
        elif op is _sre.IN:
            out.append(_class(list(value)))
        elif op is _sre.BRANCH:
            out.append("(?:" + "|".join(_emit(branch) for branch in value[1]) + ")")
        elif op is _sre.SUBPATTERN:
            out.append("(?:" + _emit(value[3]) + ")")
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT):
            out.append(_repeat(value[0], value[1], _emit(value[2])))
        elif op is _sre.ATOMIC_GROUP:
            out.append("(?:" + _emit(value) + ")")
        elif op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT):
            continue  # an assertion only narrows: dropped
        elif op is _sre.GROUPREF:
            out.append(_ANY + "*")
        elif op is _sre.GROUPREF_EXISTS:
            out.append("(?:" + _emit(value[1]) + "|" + (_emit(value[2]) if value[2] is not None else "") + ")")
        else:
            raise _Untranslatable(str(op))
    return "".join(out)


def _uses_ignorecase(tree: Any) -> bool:
    for op, value in tree:
        if op is _sre.SUBPATTERN and (value[1] & re.IGNORECASE or _uses_ignorecase(value[3])):
            return True
        if op is _sre.BRANCH and any(_uses_ignorecase(branch) for branch in value[1]):
            return True
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT) and _uses_ignorecase(value[2]):
            return True
        if op is _sre.ATOMIC_GROUP and _uses_ignorecase(value):
            return True
        if op is _sre.GROUPREF_EXISTS and (
            _uses_ignorecase(value[1]) or (value[2] is not None and _uses_ignorecase(value[2]))
        ):
            return True
    return False


@functools.lru_cache(maxsize=1024)
def shadow(pattern: str, flags: int = 0) -> str | None:
    """An RE2 pattern that matches wherever the Python `pattern` (with `flags`) matches, or None
    when it cannot say (see the module docstring). With IGNORECASE anywhere in the pattern, the
    whole shadow ignores case."""
    try:
        tree = _sre_parse.parse(pattern, flags)
        body = _emit(tree)
        folded = bool(tree.state.flags & re.IGNORECASE) or _uses_ignorecase(tree)
    except (_Untranslatable, re.error, AttributeError, TypeError, ValueError, IndexError, RecursionError):
        return None
    candidate = ("(?i)" if folded else "") + body
    try:
        re2.compile(candidate, _options())
    except Exception:  # RE2 refuses what we wrote (a limit): the rule runs ungated, never missed
        return None
    return candidate
