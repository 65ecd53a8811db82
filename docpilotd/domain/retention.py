"""Which backup generations to keep: a retention policy and the plan it makes, as restic and borg
`prune` do. Pure: the caller lists the generations (their time, whether they verified, their
name) and reads the clock; this module decides and changes nothing.

A policy keeps, among the valid generations:

- `keep_last`: the N newest;
- `keep_hourly`, `keep_daily`, `keep_weekly`, `keep_monthly`: for each, walking newest to oldest,
  the newest generation of each distinct hour / day / ISO week / month, until N such buckets are
  kept. Buckets count only periods that hold generations: `keep_daily = 7` keeps the last seven
  days with work, which span more than a calendar week when the weekend is idle. Buckets are read
  in local time (`tz_offset_seconds` east of UTC; a fixed offset, so a plan never depends on the
  machine's zone database).

Every kept generation carries its reasons (`last`, `hourly 2026-11-30 14h`, `daily 2026-11-30`,
`weekly 2026-W48`, `monthly 2026-11`, and `newest` and `future` below); what no rule keeps is to
be removed. The defaults keep a day's work and a month of history:

- `keep_last = 5`: the five latest generations, as many as `backups_kept` kept before there were
  policies, so the recent past is kept as finely as before;
- `keep_hourly = 24`: one per hour for the last 24 hours with work: a whole working day (about
  three, at eight hours a day) can be returned to hour by hour;
- `keep_daily = 7`: one per day, the end of each of the last seven days worked;
- `keep_weekly = 5`: one per ISO week, this week and the four before it: the end of every week
  of the past month;
- `keep_monthly = 2`: the end of last month too, so a month of history survives the turn of the
  month (a count of 1 would add nothing: this month's newest is the newest of all);
- `schedule_seconds = 3600`: a generation at least every hour a session changes, so the hourly
  buckets fill even when nobody saves; 0 makes generations at checkpoints only.

At most 43 generations per session (5 + 24 + 7 + 5 + 2, plus any dated after now); most are kept
for several reasons at once.

`minimum_plan` is what a storage quota may prune down to: the `keep_last` newest (at least the
newest) and those dated after now; it removes the rest oldest first, so its caller stops as soon as
it is under quota. `covering` names the generation a restore to a moment starts from.

Invariants (tests/domain/test_retention.py checks each over a simulated month and random input):

- only valid generations count; a damaged one is never kept for the policy nor removed: it is in
  `damaged`, for the caller to quarantine;
- a generation is removed only when a newer valid generation is kept: the newest valid one (up
  to now) is always kept, reason `newest`, whatever the policy; with no valid generation nothing
  is removed;
- a generation newer than `now_ns` (the clock was stepped back) is kept (`future`), never
  removed, and takes no bucket: the policy is applied to the generations up to now;
- the plan depends on the set of generations only, not on their order; nothing here raises,
  whatever the generations and counts (a negative count in a hand-built policy counts as 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, NamedTuple

import msgspec

from ..errors import ConfigError

MAX_KEEP = 10_000
MIN_SCHEDULE_SECONDS = 60  # autosave runs every 30 s: a finer schedule would make no other copy
MAX_SCHEDULE_SECONDS = 31 * 86_400

Keep = Annotated[int, msgspec.Meta(ge=0, le=MAX_KEEP)]
ScheduleSeconds = Annotated[int, msgspec.Meta(ge=0, le=MAX_SCHEDULE_SECONDS)]

_NS = 1_000_000_000
_RULES = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")


class RetentionPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How many generations to keep by each rule, and how often a scheduled one is made. The
    types' bounds apply when decoded (the config); `validate` also checks a policy built by hand
    and the rules that involve several fields."""

    keep_last: Keep = 5
    keep_hourly: Keep = 24
    keep_daily: Keep = 7
    keep_weekly: Keep = 5
    keep_monthly: Keep = 2
    schedule_seconds: ScheduleSeconds = 3600

    def validate(self) -> str | None:
        """None for a usable policy, else one line naming every field that is wrong."""
        problems = []
        for name in _RULES:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_KEEP:
                problems.append(f"{name} must be a whole number from 0 to {MAX_KEEP}, not {value!r}")
        seconds = self.schedule_seconds
        if (
            not isinstance(seconds, int)
            or isinstance(seconds, bool)
            or not (seconds == 0 or MIN_SCHEDULE_SECONDS <= seconds <= MAX_SCHEDULE_SECONDS)
        ):
            problems.append(
                f"schedule_seconds must be 0 (generations at checkpoints only) or from "
                f"{MIN_SCHEDULE_SECONDS} to {MAX_SCHEDULE_SECONDS}, not {seconds!r}"
            )
        if not problems and not any(getattr(self, name) for name in _RULES):
            problems.append(
                "a policy that keeps nothing: set at least one of " + ", ".join(_RULES) + " above 0"
            )
        return "; ".join(problems) or None

    def check(self, where: str) -> None:
        """Raise ConfigError, prefixed by `where` (the policy's key), for a policy `validate` refuses."""
        problem = self.validate()
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")


class Generation(NamedTuple):
    """One backup generation as the policy sees it. Ordered by time, then name (two files may
    carry the same second: DocPilot's names have no nanoseconds)."""

    ns: int  # nanoseconds since the epoch, from its name
    valid: bool  # it was read and verified
    name: str


class Kept(NamedTuple):
    generation: Generation
    reasons: tuple[str, ...]  # in the order: future, newest, last, hourly, daily, weekly, monthly


class RetentionPlan(NamedTuple):
    """What to do with each generation given: every one is in exactly one of the three, each
    tuple oldest first (removing `remove` in order frees the oldest first)."""

    keep: tuple[Kept, ...]
    remove: tuple[Generation, ...]
    damaged: tuple[Generation, ...]

    def kept(self) -> tuple[Generation, ...]:
        return tuple(k.generation for k in self.keep)


def plan(
    generations: Iterable[Generation], policy: RetentionPolicy, now_ns: int, *, tz_offset_seconds: int = 0
) -> RetentionPlan:
    """Which generations `policy` keeps at `now_ns`, with its reasons, and which it removes."""
    ordered, damaged, newest_first, reasons = _kept_always(generations, policy, now_ns)
    offset = int(tz_offset_seconds)
    for count, label in (
        (policy.keep_hourly, _hour),
        (policy.keep_daily, _day),
        (policy.keep_weekly, _week),
        (policy.keep_monthly, _month),
    ):
        for g, bucket in _newest_per_bucket(newest_first, _count(count), offset, label):
            reasons.setdefault(g, []).append(bucket)
    return _plan(ordered, damaged, reasons)


def minimum_plan(generations: Iterable[Generation], policy: RetentionPolicy, now_ns: int) -> RetentionPlan:
    """The least a storage quota may prune down to: the `keep_last` newest valid generations (at
    least the newest), and the future ones; the periodic rules' generations are what a quota may
    take. `remove` is oldest first, so a caller removes in order and stops once under its quota;
    it holds every generation `plan` removes, and the periodic ones after them."""
    ordered, damaged, _, reasons = _kept_always(generations, policy, now_ns)
    return _plan(ordered, damaged, reasons)


def _kept_always(
    generations: Iterable[Generation], policy: RetentionPolicy, now_ns: int
) -> tuple[list[Generation], list[Generation], list[Generation], dict[Generation, list[str]]]:
    """What both plans keep: the future ones, the newest (the policy never lets the last copy go,
    even one that keeps nothing: all counts 0) and the `keep_last` newest; with the generations
    in order, the damaged ones, and the valid ones up to now, newest first."""
    ordered, damaged, future, past = _split(generations, now_ns)
    newest_first = past[::-1]
    reasons: dict[Generation, list[str]] = {g: ["future"] for g in future}
    if newest_first:
        reasons.setdefault(newest_first[0], []).append("newest")
    for g in newest_first[: max(0, _count(policy.keep_last))]:
        reasons.setdefault(g, []).append("last")
    return ordered, damaged, newest_first, reasons


def covering(generations: Iterable[Generation], at_ns: int) -> Generation | None:
    """The newest valid generation made at or before `at_ns`: the state a restore to that moment
    starts from. None when no valid generation is that old."""
    best: Generation | None = None
    for g in generations:
        if g.valid and g.ns <= at_ns and (best is None or _key(g) > _key(best)):
            best = g
    return best


def _key(g: Generation) -> tuple[int, str, bool]:
    return (g.ns, g.name, g.valid)


def _count(value: int) -> int:
    return value if isinstance(value, int) else 0


def _split(
    generations: Iterable[Generation], now_ns: int
) -> tuple[list[Generation], list[Generation], list[Generation], list[Generation]]:
    """All (oldest first, each once), the damaged, the valid ones after `now_ns`, the valid ones up to it."""
    ordered = sorted(set(generations), key=_key)
    damaged = [g for g in ordered if not g.valid]
    future = [g for g in ordered if g.valid and g.ns > now_ns]
    past = [g for g in ordered if g.valid and g.ns <= now_ns]
    return ordered, damaged, future, past


def _plan(ordered: list[Generation], damaged: list[Generation], reasons: dict[Generation, list[str]]) -> RetentionPlan:
    keep = tuple(Kept(g, tuple(reasons[g])) for g in ordered if g in reasons)
    remove = tuple(g for g in ordered if g.valid and g not in reasons)
    return RetentionPlan(keep=keep, remove=remove, damaged=tuple(damaged))


def _newest_per_bucket(
    newest_first: list[Generation], count: int, offset: int, label: Callable[[int], str]
) -> list[tuple[Generation, str]]:
    """The newest generation of each of the first `count` distinct buckets, walking newest first.
    Local time only grows with `ns` (a fixed offset), so a bucket's generations are consecutive
    and a new bucket is one that differs from the previous generation's."""
    chosen: list[tuple[Generation, str]] = []
    previous = None
    for g in newest_first:
        if len(chosen) >= count:
            break
        bucket = label(g.ns // _NS + offset)
        if bucket != previous:
            chosen.append((g, bucket))
            previous = bucket
    return chosen


# Calendar arithmetic on whole integers (days since 1970-01-01), not datetime: a name may carry
# any number of seconds (up to 19 digits), which datetime cannot represent past the year 9999.


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number, proleptic Gregorian (H. Hinnant's days -> civil)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _days(year: int, month: int, day: int) -> int:
    """The day number of a date (H. Hinnant's civil -> days)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _hour(local: int) -> str:
    year, month, day = _civil(local // 86_400)
    return f"hourly {year:04d}-{month:02d}-{day:02d} {local % 86_400 // 3600:02d}h"


def _day(local: int) -> str:
    year, month, day = _civil(local // 86_400)
    return f"daily {year:04d}-{month:02d}-{day:02d}"


def _week(local: int) -> str:
    days = local // 86_400
    thursday = days - (days + 3) % 7 + 3  # 1970-01-01 was a Thursday; ISO weeks start on Monday
    year = _civil(thursday)[0]  # an ISO week belongs to the year that holds its Thursday
    return f"weekly {year:04d}-W{(thursday - _days(year, 1, 1)) // 7 + 1:02d}"


def _month(local: int) -> str:
    year, month, _ = _civil(local // 86_400)
    return f"monthly {year:04d}-{month:02d}"
