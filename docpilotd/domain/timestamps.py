"""RFC 3339 timestamps as DocPilot writes them (chrono: `2025-08-01T09:15:02.123456789Z`).

Timestamps stay strings in the model so that a file round-trips byte for byte (Python's datetime
would drop the nanoseconds). This module parses them to integer nanoseconds since the epoch for
ordering checks, and formats nanoseconds back. Pure: the caller supplies the clock reading.
"""

from __future__ import annotations

import calendar
import re

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,  # chrono reads ASCII digits only; `\d` alone would also match other scripts' digits
)


class TimestampError(ValueError):
    """A string that is not an RFC 3339 timestamp."""


def parse_ns(text: str) -> int:
    """Nanoseconds since the Unix epoch (UTC) of an RFC 3339 timestamp."""
    match = _RFC3339.match(text)
    if match is None:
        raise TimestampError(f"not an RFC 3339 timestamp: {text[:60]!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    # Year 0 exists in RFC 3339 but not in Python's calendar (datetime starts at year 1).
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise TimestampError(f"no such date: {text[:60]!r}")
    if hour > 23 or minute > 59 or second > 60:
        raise TimestampError(f"no such time: {text[:60]!r}")
    fraction = (match.group(7) or "").ljust(9, "0")
    seconds = calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0))
    if match.group(9):
        if int(match.group(10)) > 23 or int(match.group(11)) > 59:
            raise TimestampError(f"no such UTC offset: {text[:60]!r}")
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == "+" else -offset
    return seconds * 1_000_000_000 + int(fraction)


def format_ns(ns: int) -> str:
    """The chrono-style UTC form of nanoseconds since the epoch, always with nine digits."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    global _last_prefix
    cached = _last_prefix  # read once: another thread may replace it meanwhile
    if cached[0] != seconds:  # one gmtime per second, not per change
        year, month, day, hour, minute, second = _gmtime(seconds)
        cached = (seconds, f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.")
        _last_prefix = cached
    return f"{cached[1]}{fraction:09d}Z"


_last_prefix: tuple[int, str] = (0, "1970-01-01T00:00:00.")  # a true entry: any second may be asked for


def _gmtime(seconds: int) -> tuple[int, int, int, int, int, int]:
    import time

    t = time.gmtime(seconds)
    return t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec


def not_before(a: str, b: str) -> bool:
    """a >= b in time. Two timestamps in the canonical form (`format_ns`: UTC, nine digits) order
    like their text, which spares parsing on every change."""
    if len(a) == len(b) == 30 and a[-1] == b[-1] == "Z" and a[10] == b[10] == "T":
        return a >= b
    return parse_ns(a) >= parse_ns(b)


def is_valid(text: str) -> bool:
    try:
        parse_ns(text)
    except TimestampError:
        return False
    return True
