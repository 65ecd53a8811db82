"""Times and sizes as a person reads them (`3 min ago`, `today 14:03`, `12.3 KB`), for the
client's output on a terminal; `--json` and pipes keep the exact values the daemon sent.

Pure except for the clock and the local time zone, which callers may pass in (tests do).
"""

from __future__ import annotations

import time


def _epoch(stamp: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 UTC time (`2026-11-30T14:03:05.123456789Z`)."""
    import calendar

    try:
        whole, _, rest = stamp.partition(".")
        seconds = float(calendar.timegm(time.strptime(whole.rstrip("Z"), "%Y-%m-%dT%H:%M:%S")))
        return seconds + (float("0." + rest.rstrip("Z")) if rest.rstrip("Z").isdigit() else 0.0)
    except (ValueError, OverflowError):
        return None


def ago(stamp: str, now: float | None = None) -> str:
    """`just now`, `42 s ago`, `3 min ago`, `5 h ago`, `2 days ago`; the stamp as it is when it
    cannot be read."""
    then = _epoch(stamp)
    if then is None:
        return stamp
    seconds = (time.time() if now is None else now) - then
    if seconds < 0:
        return "in the future"
    if seconds < 5:
        return "just now"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {'day' if unit == 'days' and count == 1 else unit} ago"
    return f"{int(seconds)} s ago"


def when(stamp: str, now: float | None = None) -> str:
    """Local time: `today 14:03`, `yesterday 09:12`, `Mon 25 Nov 18:40`, `2025-08-01 09:00`."""
    then = _epoch(stamp)
    if then is None:
        return stamp
    local, today = time.localtime(then), time.localtime(time.time() if now is None else now)
    days = (time.mktime(today[:3] + (0, 0, 0, 0, 0, -1)) - time.mktime(local[:3] + (0, 0, 0, 0, 0, -1))) / 86400
    clock = time.strftime("%H:%M", local)
    if round(days) == 0:
        return f"today {clock}"
    if round(days) == 1:
        return f"yesterday {clock}"
    if 0 < days < 7:
        return time.strftime("%a %d %b %H:%M", local)
    return time.strftime("%Y-%m-%d %H:%M", local)


def size(count: int) -> str:
    """`512 B`, `12.3 KB`, `4.0 MB` (powers of 1000, as file managers show them)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"
