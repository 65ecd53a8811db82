"""The search verb's own reading and showing (client/search.py), without a daemon: --since in
every form it takes, --limit, options after the words, and escaped text (its local times are
client/human.py's)."""

from __future__ import annotations

import argparse
import time

import pytest

from docpilotd.client import cli
from docpilotd.client import search as verb
from docpilotd.domain import timestamps
from docpilotd.errors import UsageError

NOW = 1_754_038_800.0  # 2025-08-01T09:00:00Z


def _ns(text: str) -> int:
    return timestamps.parse_ns(text)


@pytest.mark.parametrize("given, seconds_back", [("30m", 1800), ("3h", 3 * 3600), ("2d", 2 * 86400), ("1w", 7 * 86400),
                                                 ("90s", 90), ("1.5h", 5400), (" 2D ", 2 * 86400), ("10 min", 600)])
def test_since_a_duration_back_from_now(given: str, seconds_back: int) -> None:
    assert _ns(verb.since(given, now=NOW)) == int((NOW - seconds_back) * 1e9)


def test_since_today_yesterday_and_dates_are_local() -> None:
    local = time.localtime(NOW)
    midnight = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
    assert _ns(verb.since("today", now=NOW)) == int(midnight * 1e9)
    yesterday = _ns(verb.since("yesterday", now=NOW)) / 1e9
    assert 23 * 3600 <= midnight - yesterday <= 25 * 3600  # a day, whatever the clocks did that night
    assert _ns(verb.since("2025-08-01")) == int(time.mktime((2025, 8, 1, 0, 0, 0, 0, 0, -1)) * 1e9)
    assert _ns(verb.since("2025-08-01 14:30")) == int(time.mktime((2025, 8, 1, 14, 30, 0, 0, 0, -1)) * 1e9)
    assert verb.since("2025-08-01T09:15:00Z") == "2025-08-01T09:15:00.000000Z"
    assert verb.since("2025-08-01T11:15:00+02:00") == "2025-08-01T09:15:00.000000Z"


@pytest.mark.parametrize("given", ["soon", "", "2 days", "-2d", "2025-13-01", "d", "1y"])
def test_since_refuses_what_it_cannot_read(given: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a time"):
        verb.since(given, now=NOW)


def _request(*argv: str) -> tuple[dict[str, object], argparse.Namespace]:
    found = cli.BY_NAME["search"]
    args = cli.build_parser(found).parse_args(["search", *argv])
    assert found.request is not None
    _, fields, _ = found.request(args)
    return fields, args


def test_everything_from_the_first_word_is_text_but_options_after_it_still_count() -> None:
    fields, args = _request("nginx", "-t")
    assert fields["text"] == "nginx -t" and fields["limit"] == 20 and fields["failed"] is None
    fields, args = _request("ls", "-s", "--failed", "--limit", "3", "--json", "--since", "2d")
    assert fields["text"] == "ls -s" and fields["failed"] is True and fields["limit"] == 3 and args.json is True
    assert isinstance(fields["since"], str) and fields["since"].endswith("Z")
    fields, _ = _request("--", "--failed", "-n")
    assert fields["text"] == "--failed -n" and fields["failed"] is None
    fields, _ = _request("--session", "abcd", "--dir", "rel", "x")
    assert fields["session"] == "abcd" and str(fields["dir"]).startswith("/") and str(fields["dir"]).endswith("/rel")
    assert "session" in fields and fields["text"] == "x"


@pytest.mark.parametrize("argv", [[], ["  "], ["--limit", "0", "x"], ["x", "--limit", "1001"], ["x", "--since", "soon"],
                                  ["--dir", "", "x"], ["x", "--dir"]])
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        _request(*argv)


def test_what_is_shown_is_escaped() -> None:
    assert verb.shown("a\x1b[2Jb\u202ec\nd\te") == "a\\u001b[2Jb\\u202ec\\nd\\te"
    assert verb.shown("plain: ünïcödé 🙂") == "plain: ünïcödé 🙂"
