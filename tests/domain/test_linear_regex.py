"""Linear-time matching (docpilotd/domain/linear_regex.py): the gate never hides a match, the user's
patterns run through RE2 with true character offsets, and what RE2 cannot do is refused with a
reason a user can act on.

The gate's promise is checked the strong way: the same texts redacted with the gate and without it
(every rule run on every text) must give the same text and the same count, over the corpora, over
seeded random texts and over hypothesis' texts made of the fragments that start, half-finish and
overlap rules, non-ASCII and lone surrogates included.
"""

from __future__ import annotations

import dataclasses
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docpilotd.domain.linear_regex import Gate, LinearPattern, LinearPatternError, shadow
from docpilotd.domain.redaction import _DEFAULTS, MARKER, PatternError, Redactor
from tests.domain.test_redaction_corpus import POSITIVES, case, random_text, read_corpus

GATED = Redactor.from_patterns(["sekrit-[0-9]+", r"(?i)internal-[a-z]{6}"])
UNGATED = Redactor.from_patterns(["sekrit-[0-9]+", r"(?i)internal-[a-z]{6}"], gated=False)


def same(text: str) -> None:
    assert GATED.count(text) == UNGATED.count(text), text


def test_every_built_in_rule_has_a_gate_that_re2_reads() -> None:
    """A rule without a gate would run on every text (correct, but slow): none of the built-ins."""
    for rule in _DEFAULTS:
        assert None not in rule.gate_patterns(), rule.name


def test_the_gate_changes_nothing_on_the_corpora() -> None:
    lines = [case(line)[0] for lines in POSITIVES.values() for line in lines]
    lines += [line for family in read_corpus("lookalikes.txt").values() for line in family]
    for line in lines:
        same(line)
        same(line.upper())
        same(line + " sekrit-42 INTERNAL-abcdef")


def test_the_gate_changes_nothing_on_random_texts() -> None:
    rng = random.Random(1820)
    for _ in range(1500):
        same(random_text(rng, secrets=rng.random() < 0.5))


FRAGMENTS = st.sampled_from([
    *"abcdefgpstokenPASSWORD_=:-\"' $(){}`%<>/.@\n\t1234567890éΣ€\u00a0\u2028\udcff", "password=", "--token ",
    "docker login -p ", "ssh-keygen -P ", "://u:", "ghp_" + "a" * 36, "token: ", "AUTH=", "X_TOKEN ::= ", "AKIA",
    "xoxb-", "sk-", "Q~", "htpasswd -b ", "7z a -p", "smbclient -U u%", "vault login ", MARKER, "Authorization: ",
    "Bearer ", "mysql -p", "curl -u a:", "<password>", "</password>", "eyJ", "sekrit-", "INTERNAL-", "ß", "K",
])


@settings(max_examples=600, deadline=None)
@given(st.lists(FRAGMENTS, max_size=40).map("".join))
def test_the_gate_never_hides_a_match(text: str) -> None:
    same(text)


SPLIT = [rule for rule in _DEFAULTS if rule.parts]


def test_rules_split_into_literal_first_parts_find_what_the_whole_regex_finds() -> None:
    """secret_assignment and secret_by_entropy run keyword by keyword (Rule.parts) for speed: the
    same texts give the same result as the one regex they were split from."""
    assert {rule.name for rule in SPLIT} == {"secret_assignment", "secret_by_entropy"}
    rng = random.Random(1821)
    texts = [case(line)[0] for lines in POSITIVES.values() for line in lines]
    texts += [random_text(rng, secrets=True) for _ in range(1000)]
    for rule in SPLIT:
        split, whole = Redactor([rule]), Redactor([dataclasses.replace(rule, parts=())])
        for text in texts:
            assert split.count(text) == whole.count(text), (rule.name, text)


@settings(max_examples=400, deadline=None)
@given(st.lists(FRAGMENTS | st.sampled_from(["token_password=", "db_pass: ", "signing_key=", "Creds=", "mysql_pwd="]),
                max_size=30).map("".join))
def test_split_rules_agree_with_the_whole_regex_on_any_text(text: str) -> None:
    for rule in SPLIT:
        assert Redactor([rule]).count(text) == Redactor([dataclasses.replace(rule, parts=())]).count(text), rule.name


@pytest.mark.parametrize(("pattern", "flags", "texts"), [
    (r"(?<![\w])ab\d{2,40}+(?!x)", 0, ["ab12", "-ab1234567890123456789", "ab٣٣"]),
    (r"<(?P<t>[a-z]+)>(?P<secret>[^<]+)</(?P=t)>", 0, ["<a>x</a>", "<pw>é</pw>"]),
    (r"tok(?i:EN)[\s\S]*?end", 0, ["tokEN\n\u2028end", "token end"]),
    (r"pass[^\S\n]+(\w+)", re.IGNORECASE, ["PASS\u00a0wörd", "pass \t x"]),
    (r"\bkey\b(?>[=:])\s*(?:\w|-)+", 0, ["key= a-b", "key:Σ"]),
])
def test_a_shadow_matches_wherever_the_python_regex_does(pattern: str, flags: int, texts: list[str]) -> None:
    widened = shadow(pattern, flags)
    assert widened is not None
    python = re.compile(pattern, flags)
    for text in texts:
        assert python.search(text) is not None, text  # the example itself is a match
        assert Gate((widened,)).which(text) == {0}, (pattern, text)


def test_a_shadow_is_still_selective() -> None:
    """Widening must not make every rule run everywhere: ordinary commands pass no gate."""
    ordinary = "kubectl -n payments logs deploy/api --since=10m --tail=200 | grep -E 'timeout|refused' | sort"
    assert GATED._gate is not None and GATED._gate.which(ordinary) == set()


def test_a_gate_answers_none_when_re2_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(("abc",))

    class Failing:
        def Match(self, text: bytes) -> None:  # what RE2's set returns when its automaton runs out of room
            return None

    monkeypatch.setattr(gate, "_set", Failing())
    assert gate.which("abc") is None
    redactor = Redactor.from_patterns(["abc"])
    monkeypatch.setattr(redactor, "_gate", gate)
    assert redactor.count("x abc") == (f"x {MARKER}", 1)  # every rule ran


# -- the user's patterns -------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "plain ascii pw=abc and pw=zz",
    "héllo wörld pw=abc€ and then pw=zz 😀 pw=q",
    "lone \udcff surrogate pw=abc \ud800 pw=zz",
    "😀" * 50 + "pw=x" + "é" * 10 + "pw=y",
])
def test_a_user_pattern_finds_the_spans_python_finds(text: str) -> None:
    mine = LinearPattern(r"pw=(?P<secret>\w+)")
    python = re.compile(r"pw=(?P<secret>\w+)", re.ASCII)
    assert [m.span(1) for m in mine.finditer(text)] == [m.span(1) for m in python.finditer(text)]
    assert [m.span() for m in mine.finditer(text)] == [m.span() for m in python.finditer(text)]


def test_a_user_pattern_that_backtracks_in_python_is_linear_here() -> None:
    """`(a+)+$` takes Python's re exponential time on `aaa...b`; RE2 answers at once. Checked by
    what is found, not by a clock: the benchmark measures the time."""
    redactor = Redactor.from_patterns([r"(a+)+$"], defaults=False)
    text = "a" * 100_000 + "b"
    assert redactor.count(text) == (text, 0)
    assert redactor.count("aaaa") == (MARKER, 1)


@pytest.mark.parametrize(("pattern", "says"), [
    (r"(?<=password=)\S+", "lookarounds"),
    (r"(?!x)token", "lookarounds"),
    (r"(a)\1", "backreferences"),
    (r"(unclosed", "missing )"),
])
def test_what_re2_cannot_do_is_refused_with_a_reason(pattern: str, says: str) -> None:
    with pytest.raises(PatternError) as caught:
        Redactor.from_patterns(["fine", pattern])
    assert caught.value.index == 1
    assert says in caught.value.reason
    with pytest.raises(LinearPatternError):
        LinearPattern(pattern)


def test_allow_patterns_run_through_re2_too() -> None:
    redactor = Redactor.from_patterns(allow=[r"hunter\d"])
    assert isinstance(redactor.allow[0], LinearPattern)
    assert redactor.count("password=hunter2") == ("password=hunter2", 0)


def test_re2_reports_errors_through_our_exception_only(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(LinearPatternError):
        LinearPattern(r"(?<=x)y")
    assert capfd.readouterr().err == ""  # RE2's own log stays quiet

