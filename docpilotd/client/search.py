"""`docpilot search TEXT`: the verb's arguments, its request and how its hits are shown.

Why apart from verbs.py: the verb has more to read (times like "2d" or "yesterday", directories)
and to show (local times, snippets) than a table entry; verbs.py imports this module only when
the verb is used.

Times are shown local and short by client/human.py (`today 14:03`), as other verbs show them.

What is sent: the words as typed (the daemon matches them: storage/search_index.py), `since` as an
RFC 3339 time in UTC (what the user gave, read in the local time zone when it names none), `dir`
absolute (relative to where the client runs), `session` only when --session is given (search
looks at every session otherwise, whatever $DOCPILOT_SESSION says), `limit`.

Invariants: a bad --since, --dir, --limit or an empty text is a usage error (exit 2) naming the
option; nothing of what a hit holds reaches the terminal unescaped (control and bidi characters
are shown as escapes).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

from .. import results
from ..errors import UsageError
from .human import when

LIMIT_DEFAULT = 20
LIMIT_MAX = 1000
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)", re.ASCII)
# C0 and C1 controls, DEL, and the characters that reorder text on a terminal (bidi controls).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def arguments(p: argparse.ArgumentParser) -> None:
    # Everything from the first word on is the text (`docpilot search nginx -t` looks for nginx -t);
    # options written after the words are taken out of it again by `request`.
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="WORDS",
                   help="what to look for: words close together, the last one may be the start of a word "
                        "(punctuation is ignored: nginx -t finds sudo nginx -t)")
    _options(p)


def _options(p: argparse.ArgumentParser) -> None:
    """Long options only: `-s`, `-n` and the like are what people search for (`ls -s`, `sort -n`)."""
    p.add_argument("--failed", action="store_true", help="only commands that failed")
    p.add_argument("--since", type=since, metavar="WHEN",
                   help="only from then on: 30m, 3h, 2d, 1w, today, yesterday, or a date and time "
                        "(2025-08-01, '2025-08-01 14:00', RFC 3339)")
    p.add_argument("--dir", metavar="DIR", help="only commands run in DIR or below it")
    p.add_argument("--session", metavar="ID", help="only this session (its id or first characters; default: every session)")
    p.add_argument("--limit", type=limit, metavar="N",
                   help=f"at most N hits, newest first (default {LIMIT_DEFAULT}, at most {LIMIT_MAX})")


class _Later(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see 'docpilot search --help')")


def _take_options(args: argparse.Namespace) -> list[str]:
    """The words, with options written after them (`docpilot search nginx -t --failed`) taken out
    and set on `args` as if written before; anything else is a word (`-t`, `--force`)."""
    words = list(args.words)
    if words[:1] == ["--"]:
        return words[1:]
    later = _Later(add_help=False, allow_abbrev=False)
    _options(later)
    later.add_argument("--json", action="store_true")
    found, rest = later.parse_known_args(words)
    for key, value in vars(found).items():
        if value not in (None, False):
            setattr(args, key, value)
    return rest


def request(args: argparse.Namespace) -> tuple[str, dict[str, object], type[results.Search]]:
    text = " ".join(_take_options(args)).strip()
    if not text:
        raise UsageError("search needs the text to look for: docpilot search WORDS")
    directory = None
    if args.dir is not None:
        if not args.dir.strip():
            raise UsageError("--dir needs a directory")
        directory = os.path.abspath(os.path.expanduser(args.dir))
    fields: dict[str, object] = {
        "text": text, "failed": args.failed or None, "since": args.since, "dir": directory,
        "session": args.session or None, "limit": args.limit or LIMIT_DEFAULT,
    }
    return "search", fields, results.Search


def limit(given: str) -> int:
    try:
        count = int(given)
    except ValueError:
        count = 0
    if not 1 <= count <= LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {LIMIT_MAX} expected, got {given!r}")
    return count


def since(given: str, now: float | None = None) -> str:
    """--since as an RFC 3339 time in UTC: a duration back from now (30m, 3h, 2d, 1w), today or
    yesterday (local midnight), or a date and time (local unless it names its offset)."""
    now = time.time() if now is None else now
    text = given.strip().lower()
    found = _RELATIVE.fullmatch(text)
    if found:
        return _utc(now - float(found.group(1)) * _UNITS[found.group(2)])
    if text in ("today", "yesterday"):
        local = time.localtime(now)
        midnight = time.mktime((local.tm_year, local.tm_mon, local.tm_mday - (text == "yesterday"), 0, 0, 0, 0, 0, -1))
        return _utc(midnight)
    from datetime import datetime  # only for a date and time given

    try:
        moment = datetime.fromisoformat(given.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {given!r} (give 30m, 3h, 2d, 1w, today, yesterday, or a date like 2025-08-01 "
            "or '2025-08-01 14:00')") from None
    return _utc(moment.timestamp())  # a time without an offset is local time


def _utc(seconds: float) -> str:
    whole = int(seconds // 1)
    micros = round((seconds - whole) * 1e6)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


# -- showing hits -------------------------------------------------------------------------------------


def shown(text: str) -> str:
    """`text` safe to print on a terminal: control and bidi characters as escapes."""
    return _UNSAFE.sub(lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), text)


def _home(directory: str) -> str:
    home = os.path.expanduser("~")
    if home not in ("", "/") and (directory == home or directory.startswith(home + "/")):
        return "~" + directory[len(home):]
    return directory


def show(result: results.Search) -> None:
    """One block per hit, newest first:

        today 14:03  8a3f2c1e "Renew the TLS certificates"
          /etc/letsencrypt $ certbot renew --dry-run  [exit 1]
          | …Cert not yet due for renewal…
    """
    hits = result["hits"]
    if not hits:
        print("no matches")
    for hit in hits:
        print(f"{shown(when(hit['timestamp']))}  {hit['session'][:8]} \"{shown(hit['description'])}\"")
        if hit["kind"] == "annotation":
            print(f"  # {hit.get('annotation_type', 'Note')}: {shown(hit['text'])}")
            continue
        code = hit.get("exit_code")
        status = "" if code is None else f"  [exit {code}]"
        directory = hit.get("directory") or ""
        print(f"  {shown(_home(directory))} $ {shown(hit['text'])}{status}")
        snippet = hit.get("snippet")
        if snippet:
            print(f"  | {shown(snippet)}")
    if result["more"]:
        print(f"docpilot: more matches than these {len(hits)} (--limit N shows more, --since or --dir fewer)",
              file=sys.stderr)
    if not result["complete"]:
        print(f"docpilot: the search index is still being built ({result['unindexed']} session(s) to go): "
              "matches may be missing", file=sys.stderr)
