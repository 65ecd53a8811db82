"""The retention policy of backup generations (docpilotd/domain/retention.py): a month of
checkpoints pruned as a daemon would, the damaged and the misdated, local time, and the invariants
over random input. What is expected is worked out here with datetime and a dictionary (the
newest generation of each hour, day, ISO week, month), never with the module's own calendar."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docpilotd.domain.retention import (
    Generation,
    RetentionPlan,
    RetentionPolicy,
    covering,
    minimum_plan,
    plan,
)
from docpilotd.errors import ConfigError

NS = 1_000_000_000
HOUR = 3600 * NS
DAY = 24 * HOUR
NOTHING = {"keep_last": 0, "keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}


def at(text: str, offset_minutes: int = 0) -> int:
    """Nanoseconds of a local time written 'YYYY-MM-DD HH:MM' in a zone `offset_minutes` east of UTC."""
    zone = timezone(timedelta(minutes=offset_minutes))
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=zone).timestamp()) * NS


def gen(ns: int, valid: bool = True) -> Generation:
    seconds, fraction = divmod(ns, NS)
    return Generation(ns=ns, valid=valid, name=f"s_{seconds}.{fraction:09d}.json")


def policy(**counts: int) -> RetentionPolicy:
    return RetentionPolicy(**{**NOTHING, **counts})


def reasons(result: RetentionPlan) -> dict[Generation, tuple[str, ...]]:
    return {k.generation: k.reasons for k in result.keep}


# ---------------------------------------------------------------------------------------------
# What a policy keeps, worked out the plain way


def expected(gens: Iterable[Generation], pol: RetentionPolicy, now_ns: int, tz_seconds: int = 0) -> dict[Generation, set[str]]:
    """Each generation a policy should keep, with its reasons, from the definitions: the newest
    valid generation up to now; the `keep_last` newest; the newest of each of the `keep_hourly`
    most recent hours holding a valid generation (and so on for days, ISO weeks and months);
    every valid one after now."""
    zone = timezone(timedelta(seconds=tz_seconds))
    valid = sorted({g for g in gens if g.valid}, key=lambda g: (g.ns, g.name), reverse=True)
    past = [g for g in valid if g.ns <= now_ns]
    kept: dict[Generation, set[str]] = {g: {"future"} for g in valid if g.ns > now_ns}
    if past:
        kept.setdefault(past[0], set()).add("newest")
    for g in past[: pol.keep_last]:
        kept.setdefault(g, set()).add("last")

    def local(g: Generation) -> datetime:
        return datetime.fromtimestamp(g.ns // NS, zone)

    def week(g: Generation) -> str:
        iso = local(g).isocalendar()
        return f"weekly {iso.year:04d}-W{iso.week:02d}"

    for count, bucket in (
        (pol.keep_hourly, lambda g: local(g).strftime("hourly %Y-%m-%d %Hh")),
        (pol.keep_daily, lambda g: local(g).strftime("daily %Y-%m-%d")),
        (pol.keep_weekly, week),
        (pol.keep_monthly, lambda g: local(g).strftime("monthly %Y-%m")),
    ):
        newest_of: dict[str, Generation] = {}
        for g in past:  # newest first: the first seen of a bucket is its newest
            newest_of.setdefault(bucket(g), g)
        for label, g in list(newest_of.items())[:count]:
            kept.setdefault(g, set()).add(label)
    return kept


def assert_invariants(gens: Iterable[Generation], result: RetentionPlan, now_ns: int) -> None:
    """What every plan promises, whatever the policy."""
    given_ = set(gens)
    kept = set(result.kept())
    removed = set(result.remove)
    damaged = set(result.damaged)
    # Each generation given is in exactly one place, once, and every list is oldest first.
    assert len(kept) + len(removed) + len(damaged) == len(result.keep) + len(result.remove) + len(result.damaged)
    assert kept | removed | damaged == given_ and not (kept & removed or kept & damaged or removed & damaged)
    for part in (result.kept(), result.remove, result.damaged):
        assert list(part) == sorted(part, key=lambda g: (g.ns, g.name, g.valid))
    # A damaged generation is neither kept for the policy nor removed: the caller quarantines it.
    assert damaged == {g for g in given_ if not g.valid}
    assert all(k.reasons for k in result.keep)
    valid = [g for g in given_ if g.valid]
    if not valid:
        assert not result.remove, "nothing is removed while no copy is valid"
        return
    # The newest valid generation is kept, and so is the newest valid one up to now.
    assert max(valid, key=lambda g: (g.ns, g.name)) in kept
    past = [g for g in valid if g.ns <= now_ns]
    if past:
        newest = max(past, key=lambda g: (g.ns, g.name))
        assert "newest" in reasons(result)[newest]
    # A generation after now (the clock went back) is kept, never removed.
    for g in valid:
        if g.ns > now_ns:
            assert reasons(result)[g] == ("future",)
    # Nothing is removed unless a newer valid generation up to now is kept.
    for g in result.remove:
        assert g.valid and g.ns <= now_ns
        assert any(k.valid and k.ns <= now_ns and (k.ns, k.name) > (g.ns, g.name) for k in kept), g


# ---------------------------------------------------------------------------------------------
# A month of work, pruned after every checkpoint as the daemon does


def working_month(rng: random.Random, start: str, tz_minutes: int, days: int = 31) -> Iterable[int]:
    """Checkpoint times: every 10 to 40 minutes from 09:00 to 18:00 local time on weekdays, and
    on one Saturday in three; an integer clock, no sleeping."""
    day0 = at(start + " 00:00", tz_minutes)
    for day in range(days):
        midnight = day0 + day * DAY
        weekday = datetime.fromtimestamp(midnight // NS, timezone(timedelta(minutes=tz_minutes))).weekday()
        if weekday == 6 or (weekday == 5 and rng.random() > 1 / 3):
            continue
        t = midnight + 9 * HOUR + rng.randrange(0, 30 * 60) * NS
        while t < midnight + 18 * HOUR:
            yield t + rng.randrange(NS)
            t += rng.randrange(10 * 60, 40 * 60 + 1) * NS


@pytest.mark.parametrize("tz_minutes", [0, 330, -480])
def test_a_month_of_checkpoints_keeps_a_days_work_and_a_month_of_history(tz_minutes: int) -> None:
    rng = random.Random(19 + tz_minutes)
    pol = RetentionPolicy()
    tz = tz_minutes * 60
    stored: set[Generation] = set()
    made: list[Generation] = []
    now = 0
    for now in working_month(rng, "2026-11-09", tz_minutes):
        g = gen(now)
        made.append(g)
        stored.add(g)
        result = plan(stored, pol, now, tz_offset_seconds=tz)
        assert_invariants(stored, result, now)
        assert g in result.kept()
        stored -= set(result.remove)
    assert len(made) > 400, "a month of work makes hundreds of checkpoints"

    zone = timezone(timedelta(seconds=tz))
    newest_first = sorted(made, reverse=True)

    def last_of_each(key: str) -> list[Generation]:
        """The last checkpoint of each period that saw work, most recent period first."""
        last: dict[str, Generation] = {}
        for g in newest_first:
            last.setdefault(datetime.fromtimestamp(g.ns // NS, zone).strftime(key), g)
        return list(last.values())

    hours = last_of_each("%Y-%m-%d %H")[:24]
    days = last_of_each("%Y-%m-%d")[:7]
    weeks = last_of_each("%G-W%V")[:5]
    months = last_of_each("%Y-%m")[:2]
    # The shape a user expects: the five latest, the last of each of the 24 latest working hours,
    # of the 7 latest working days, of this week and the four before it, of this month and the
    # last; nothing else.
    assert stored == set(newest_first[:5]) | set(hours) | set(days) | set(weeks) | set(months)
    assert len(hours) == 24 and len(days) == 7 and len(weeks) == 5 and len(months) == 2
    assert len(stored) < 5 + 24 + 7 + 5 + 2
    oldest = min(stored)
    assert oldest == weeks[-1] and now - oldest.ns > 3 * 7 * DAY, "the end of the first week is still there"
    assert datetime.fromtimestamp(months[1].ns // NS, zone).month == 11 and months[1] in stored
    # The kept hours are a day's work and more: the last 24 working hours span about three days.
    assert hours[-1].ns < now - 2 * DAY
    # Pruning after each checkpoint ends where one prune of everything ever made would, with the
    # reasons the definitions give.
    once = plan(made, pol, now, tz_offset_seconds=tz)
    assert set(once.kept()) == stored
    assert {g: set(r) for g, r in reasons(once).items()} == expected(made, pol, now, tz)


def test_a_month_with_damage_bit_rot_and_a_clock_stepped_back_keeps_every_promise_at_every_step() -> None:
    rng = random.Random(1919)
    pol = RetentionPolicy()
    stored: set[Generation] = set()
    quarantined: list[Generation] = []
    stepped_back = False
    for now in working_month(rng, "2026-10-26", 0):
        if not stepped_back and now > at("2026-11-12 12:00"):
            # The clock is set back three hours: the next checkpoints are older than the last ones.
            stepped_back = True
        if stepped_back and now < at("2026-11-12 23:00"):
            now -= 3 * HOUR
        # One checkpoint in twelve fails verification when it is read back.
        stored.add(gen(now, valid=rng.random() > 1 / 12))
        if rng.random() < 0.05 and stored:
            # A kept generation rots on disk: the next scrub finds it damaged.
            victim = rng.choice(sorted(stored))
            stored = (stored - {victim}) | {victim._replace(valid=False)}
        result = plan(stored, pol, now)
        assert_invariants(stored, result, now)
        assert {g: set(r) for g, r in reasons(result).items()} == expected(stored, pol, now)
        stored -= set(result.remove) | set(result.damaged)
        quarantined += result.damaged
    assert quarantined, "damage was found and handed over"
    assert stored, "a valid copy is left"


# ---------------------------------------------------------------------------------------------
# Cases a user meets


def test_nothing_given_nothing_planned_and_one_generation_is_kept_for_every_rule() -> None:
    assert plan([], RetentionPolicy(), at("2026-11-30 14:00")) == RetentionPlan((), (), ())
    assert minimum_plan([], RetentionPolicy(), 0) == RetentionPlan((), (), ())
    assert covering([], 0) is None
    one = gen(at("2026-11-30 14:05"))
    result = plan([one], RetentionPolicy(), at("2026-11-30 14:06"))
    assert reasons(result) == {
        one: ("newest", "last", "hourly 2026-11-30 14h", "daily 2026-11-30", "weekly 2026-W49", "monthly 2026-11")
    }
    assert result.remove == () and result.damaged == ()


def test_damaged_generations_are_handed_over_and_take_no_place_in_the_policy() -> None:
    v10, v11, d12, d13 = gen(at("2026-11-30 10:10")), gen(at("2026-11-30 11:10")), gen(at("2026-11-30 12:10"), False), gen(at("2026-11-30 13:10"), False)
    v9 = gen(at("2026-11-30 09:10"))
    result = plan([d13, v9, v11, d12, v10], policy(keep_hourly=2), at("2026-11-30 13:30"))
    # The two damaged newer ones count for nothing: the two newest valid hours are kept.
    assert reasons(result) == {v10: ("hourly 2026-11-30 10h",), v11: ("newest", "hourly 2026-11-30 11h")}
    assert result.remove == (v9,) and result.damaged == (d12, d13)
    # When the newest generations are damaged, the last good one stays, whatever the policy.
    only_last = plan([v9, d12, d13], policy(keep_last=1), at("2026-11-30 14:00"))
    assert only_last.kept() == (v9,) and only_last.remove == ()


def test_when_every_generation_is_damaged_nothing_is_removed() -> None:
    gens = [gen(at(f"2026-11-{day:02d} 10:00"), False) for day in range(1, 29)]
    result = plan(gens, RetentionPolicy(), at("2026-11-30 00:00"))
    assert result.keep == () and result.remove == () and result.damaged == tuple(gens)
    assert minimum_plan(gens, RetentionPolicy(), at("2026-11-30 00:00")).remove == ()
    assert covering(gens, at("2026-11-30 00:00")) is None


def test_generations_after_now_are_kept_and_do_not_take_a_bucket() -> None:
    early, before, ahead, far = (gen(at(t)) for t in ("2026-11-30 12:10", "2026-11-30 13:10", "2026-11-30 15:10", "2100-01-01 00:00"))
    now = at("2026-11-30 14:00")  # the clock was set back to before `ahead` was made
    result = plan([far, ahead, before, early], policy(keep_last=1), now)
    assert reasons(result) == {before: ("newest", "last"), ahead: ("future",), far: ("future",)}
    assert result.remove == (early,)
    # A generation dated far ahead does not take this month's or this hour's bucket.
    monthly = plan([gen(at("2026-10-20 10:00")), early, before, far], policy(keep_monthly=2, keep_hourly=2), now)
    assert reasons(monthly) == {
        gen(at("2026-10-20 10:00")): ("monthly 2026-10",),
        early: ("hourly 2026-11-30 12h",),
        before: ("newest", "hourly 2026-11-30 13h", "monthly 2026-11"),
        far: ("future",),
    }
    # Once the clock passes it again, it is an ordinary generation.
    later = plan([far, ahead, before, early], policy(keep_last=1), at("2026-11-30 16:00"))
    assert reasons(later) == {ahead: ("newest", "last"), far: ("future",)}


def test_buckets_are_local_days_and_months_at_a_half_hour_offset_and_west_of_utc() -> None:
    utc = [gen(at(t)) for t in ("2026-11-30 17:00", "2026-11-30 18:00", "2026-11-30 19:00")]
    now = at("2026-11-30 20:00")
    in_utc = plan(utc, policy(keep_monthly=2), now)
    assert reasons(in_utc) == {utc[2]: ("newest", "monthly 2026-11")}
    # At +05:30, 19:00 UTC is 00:30 on the first of December: two months, two generations.
    india = plan(utc, policy(keep_monthly=2, keep_hourly=1), now, tz_offset_seconds=5 * 3600 + 1800)
    assert reasons(india) == {utc[1]: ("monthly 2026-11",), utc[2]: ("newest", "hourly 2026-12-01 00h", "monthly 2026-12")}
    # At -08:00, 05:00 UTC on the first of December is still the 30th of November, 21h.
    december = [gen(at("2026-11-30 23:00")), gen(at("2026-12-01 05:00"))]
    pacific = plan(december, policy(keep_daily=2), at("2026-12-01 06:00"), tz_offset_seconds=-8 * 3600)
    assert reasons(pacific) == {december[1]: ("newest", "daily 2026-11-30")}
    assert pacific.remove == (december[0],)


def test_iso_weeks_cross_the_new_year_as_iso_8601_counts_them() -> None:
    monday, sunday, next_monday = (gen(at(t)) for t in ("2026-12-28 10:00", "2027-01-03 10:00", "2027-01-04 10:00"))
    result = plan([monday, sunday, next_monday], policy(keep_weekly=2), at("2027-01-04 11:00"))
    assert reasons(result) == {sunday: ("weekly 2026-W53",), next_monday: ("newest", "weekly 2027-W01")}
    assert result.remove == (monday,)


def test_two_generations_of_the_same_second_are_told_apart_by_name() -> None:
    ns = at("2026-11-30 14:00")
    docpilot, ours = Generation(ns, True, "s_1796047200.json"), Generation(ns, True, "s_1796047200.000000000.json")
    result = plan([docpilot, ours], policy(keep_last=1), ns)
    assert result.kept() == (docpilot,) and result.remove == (ours,), "by name: the plan is the same every time"
    assert covering([ours, docpilot], ns) == docpilot


def test_the_quota_minimum_keeps_the_last_few_and_removes_the_rest_oldest_first() -> None:
    times = [at("2026-10-15 10:00")] + [at(f"2026-11-{d:02d} {h:02d}:00") for d in range(20, 31) for h in (9, 12, 17)]
    gens = [gen(t) for t in times] + [gen(at("2026-11-29 11:00"), False), gen(at("2026-12-24 00:00"))]
    now = at("2026-11-30 18:00")
    pol = RetentionPolicy(keep_last=3)
    full = plan(gens, pol, now)
    least = minimum_plan(gens, pol, now)
    valid_past = sorted(g for g in gens if g.valid and g.ns <= now)
    assert least.kept() == (*valid_past[-3:], gen(at("2026-12-24 00:00")))
    assert least.remove == tuple(valid_past[:-3]), "oldest first, so a caller stops once under quota"
    assert set(full.remove) < set(least.remove) and set(least.kept()) < set(full.kept())
    assert least.damaged == full.damaged == (gen(at("2026-11-29 11:00"), False),)
    # keep_last 0 still keeps the newest.
    assert minimum_plan(gens, policy(keep_daily=3), now).kept() == (valid_past[-1], gen(at("2026-12-24 00:00")))


def test_covering_names_the_newest_valid_generation_at_or_before_a_moment() -> None:
    a, b, c = gen(at("2026-11-30 09:00")), gen(at("2026-11-30 10:00"), False), gen(at("2026-11-30 11:00"))
    assert covering([c, b, a], at("2026-11-30 08:59")) is None
    assert covering([c, b, a], at("2026-11-30 09:00")) == a
    assert covering([c, b, a], at("2026-11-30 10:30")) == a, "a damaged copy is no point to restore from"
    assert covering([c, b, a], at("2026-11-30 11:00")) == c


def test_the_default_policy_is_valid_and_a_bad_one_is_refused_with_a_message_naming_the_key() -> None:
    assert RetentionPolicy().validate() is None
    assert RetentionPolicy(keep_last=0, keep_hourly=0, keep_daily=1, keep_weekly=0, keep_monthly=0).validate() is None
    nothing = policy()
    message = nothing.validate()
    assert message is not None and "keeps nothing" in message and "keep_last" in message
    negative = RetentionPolicy(keep_daily=-3).validate()
    assert negative == "keep_daily must be a whole number from 0 to 10000, not -3"
    both = RetentionPolicy(keep_weekly=True, schedule_seconds=30).validate()  # type: ignore[arg-type]
    assert both is not None and "keep_weekly" in both and "not True" in both and "schedule_seconds" in both and "not 30" in both
    assert RetentionPolicy(schedule_seconds=0).validate() is None, "0: generations at checkpoints only"
    with pytest.raises(ConfigError, match=r"^policies\.important: a policy that keeps nothing"):
        nothing.check("policies.important")
    RetentionPolicy().check("policy")
    # A policy whatever its values still keeps the newest copy.
    g = gen(at("2026-11-30 10:00"))
    assert plan([g, gen(at("2026-11-30 09:00"))], RetentionPolicy(keep_last=-1, keep_hourly=-5), at("2026-11-30 11:00")).kept() == (g,)


def test_a_policy_decodes_from_the_config_with_its_bounds_and_no_unknown_key() -> None:
    decoded = msgspec.convert({"keep_daily": 30, "schedule_seconds": 0}, RetentionPolicy)
    assert decoded == RetentionPolicy(keep_daily=30, schedule_seconds=0)
    with pytest.raises(msgspec.ValidationError, match="keep_hourly"):
        msgspec.convert({"keep_hourly": -1}, RetentionPolicy)
    with pytest.raises(msgspec.ValidationError, match="keep_yearly"):
        msgspec.convert({"keep_yearly": 1}, RetentionPolicy)
    with pytest.raises(AttributeError):
        decoded.keep_last = 1  # type: ignore[misc]


def test_any_number_of_seconds_in_a_name_is_planned_without_error() -> None:
    huge = Generation(9_999_999_999_999_999_999 * NS, True, "s_9999999999999999999.json")
    old = Generation(0, True, "s_0.json")
    result = plan([huge, old], RetentionPolicy(), huge.ns, tz_offset_seconds=-14 * 3600)
    assert result.remove == () and "newest" in reasons(result)[huge]
    assert any(r.startswith("monthly 1969-12") for r in reasons(result)[old])


# ---------------------------------------------------------------------------------------------
# The invariants over random input

BASE = at("2026-09-01 00:00")

generations = st.lists(
    st.builds(
        lambda minute, extra, valid, twin: Generation(BASE + minute * 60 * NS + extra, valid, f"s_{minute}_{extra}{twin}.json"),
        st.integers(0, 100 * 24 * 60),
        st.integers(0, 3),
        st.booleans(),
        st.sampled_from(["", "b"]),
    ),
    max_size=60,
)
policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 6),
    keep_hourly=st.integers(0, 30),
    keep_daily=st.integers(0, 10),
    keep_weekly=st.integers(0, 6),
    keep_monthly=st.integers(0, 4),
)
nows = st.integers(BASE - DAY, BASE + 110 * DAY)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: minutes * 60)


@settings(max_examples=300, deadline=None)
@given(generations, policies, nows, offsets, st.randoms(use_true_random=False))
def test_every_plan_keeps_the_promises_and_matches_the_definitions(
    gens: list[Generation], pol: RetentionPolicy, now: int, tz: int, rnd: random.Random
) -> None:
    result = plan(gens, pol, now, tz_offset_seconds=tz)
    assert_invariants(gens, result, now)
    assert {g: set(r) for g, r in reasons(result).items()} == expected(gens, pol, now, tz)
    shuffled = list(gens)
    rnd.shuffle(shuffled)
    assert plan(shuffled, pol, now, tz_offset_seconds=tz) == result, "the order given changes nothing"
    # Carrying a plan out leaves nothing more to remove.
    again = plan(list(result.kept()) + list(result.damaged), pol, now, tz_offset_seconds=tz)
    assert again.keep == result.keep and again.remove == ()


@settings(max_examples=300, deadline=None)
@given(generations, policies, nows)
def test_the_quota_minimum_is_below_every_plan_and_removes_oldest_first(gens: list[Generation], pol: RetentionPolicy, now: int) -> None:
    full = plan(gens, pol, now)
    least = minimum_plan(gens, pol, now)
    assert_invariants(gens, least, now)
    assert set(least.kept()) <= set(full.kept()) and set(full.remove) <= set(least.remove)
    past = sorted({g for g in gens if g.valid and g.ns <= now}, key=lambda g: (g.ns, g.name))
    future = {g for g in gens if g.valid and g.ns > now}
    cut = max(0, len(past) - max(1, pol.keep_last))  # the keep_last newest stay, and the newest at least
    assert set(least.kept()) == set(past[cut:]) | future
    assert list(least.remove) == past[:cut]


@settings(max_examples=300, deadline=None)
@given(generations, nows)
def test_covering_is_the_newest_valid_generation_not_after_the_moment(gens: list[Generation], moment: int) -> None:
    found = covering(gens, moment)
    candidates = [g for g in gens if g.valid and g.ns <= moment]
    if not candidates:
        assert found is None
    else:
        assert found == max(candidates, key=lambda g: (g.ns, g.name))


@settings(max_examples=500, deadline=None)
@given(st.integers(at("0002-01-01 00:00") // NS, at("9998-12-31 00:00") // NS), offsets)
def test_bucket_names_agree_with_the_calendar_across_the_years(seconds: int, tz: int) -> None:
    g = Generation(seconds * NS, True, "s.json")
    local = datetime(1970, 1, 1) + timedelta(seconds=seconds + tz)
    iso = local.isocalendar()
    pol = RetentionPolicy(keep_last=0, keep_hourly=1, keep_daily=1, keep_weekly=1, keep_monthly=1)
    day = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"  # strftime pads no year below 1000
    assert reasons(plan([g], pol, g.ns, tz_offset_seconds=tz))[g] == (
        "newest",
        f"hourly {day} {local.hour:02d}h",
        f"daily {day}",
        f"weekly {iso.year:04d}-W{iso.week:02d}",
        f"monthly {day[:-3]}",
    )
