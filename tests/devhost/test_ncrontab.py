from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from devhost.ncrontab import CronError, CronSchedule

UTC = timezone.utc


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def occurrences(expression: str, start: datetime, count: int) -> list[datetime]:
    schedule = CronSchedule.parse(expression)
    found: list[datetime] = []
    moment = start
    for _ in range(count):
        following = schedule.next_after(moment)
        assert following is not None
        found.append(following)
        moment = following
    return found


def brute_force_next(schedule: CronSchedule, start: datetime, horizon: timedelta) -> datetime | None:
    """The definition itself: test every field of every second (skipping whole minutes whose other fields fail)."""
    moment = start.replace(microsecond=0) + timedelta(seconds=1)
    end = start + horizon
    while moment <= end:
        if not (moment.minute in schedule.minutes and moment.hour in schedule.hours and moment.day in schedule.days
                and moment.month in schedule.months and (moment.weekday() + 1) % 7 in schedule.weekdays):
            moment = moment.replace(second=0) + timedelta(minutes=1)
            continue
        if moment.second in schedule.seconds:
            return moment
        moment += timedelta(seconds=1)
    return None


def test_every_five_minutes_on_the_minute() -> None:
    assert occurrences("0 */5 * * * *", at(2024, 3, 1, 10, 3, 7), 3) == [
        at(2024, 3, 1, 10, 5, 0), at(2024, 3, 1, 10, 10, 0), at(2024, 3, 1, 10, 15, 0)]


def test_next_is_strictly_after_an_occurrence() -> None:
    assert occurrences("0 */5 * * * *", at(2024, 3, 1, 10, 5, 0), 1) == [at(2024, 3, 1, 10, 10, 0)]
    # Sub-second parts of the start do not make the same second count again.
    assert CronSchedule.parse("* * * * * *").next_after(at(2024, 1, 1, 0, 0, 0).replace(microsecond=900)) == \
        at(2024, 1, 1, 0, 0, 1)


def test_seconds_step_crosses_minute_hour_day_and_year() -> None:
    assert occurrences("*/20 * * * * *", at(2023, 12, 31, 23, 59, 41), 3) == [
        at(2024, 1, 1, 0, 0, 0), at(2024, 1, 1, 0, 0, 20), at(2024, 1, 1, 0, 0, 40)]


def test_lists_ranges_and_stepped_ranges() -> None:
    schedule = CronSchedule.parse("5,10 0-2 9-17/4 * * *")
    assert schedule.seconds == {5, 10}
    assert schedule.minutes == {0, 1, 2}
    assert schedule.hours == {9, 13, 17}


def test_value_with_step_runs_to_the_field_maximum() -> None:
    assert CronSchedule.parse("0 5/20 * * * *").minutes == {5, 25, 45}
    # ...but only for the list item that has the step.
    assert CronSchedule.parse("0 1,50/5 * * * *").minutes == {1, 50, 55}


def test_weekday_and_month_names() -> None:
    schedule = CronSchedule.parse("0 30 9 * jan,Mar MON-fri")
    assert schedule.months == {1, 3}
    assert schedule.weekdays == {1, 2, 3, 4, 5}
    assert CronSchedule.parse("0 0 0 * * Sunday").weekdays == {0}
    # 2024-01-06 is a Saturday: the next weekday occurrence is Monday the 8th.
    assert schedule.next_after(at(2024, 1, 6, 12, 0, 0)) == at(2024, 1, 8, 9, 30, 0)
    # After the last weekday of March comes January of the next year.
    assert schedule.next_after(at(2024, 3, 29, 10, 0, 0)) == at(2025, 1, 1, 9, 30, 0)


def test_weekday_numbers_start_at_sunday_zero() -> None:
    # 2024-06-02 is a Sunday.
    assert occurrences("0 0 12 * * 0", at(2024, 6, 1, 0, 0, 0), 2) == [at(2024, 6, 2, 12, 0, 0), at(2024, 6, 9, 12, 0, 0)]


def test_day_and_weekday_must_both_match() -> None:
    # Friday the 13th: NCrontab ANDs the two day fields (Vixie cron would OR them).
    assert occurrences("0 0 0 13 * FRI", at(2024, 1, 1, 0, 0, 0), 2) == [at(2024, 9, 13), at(2024, 12, 13)]


def test_months_without_the_day_are_skipped() -> None:
    assert occurrences("0 0 0 31 * *", at(2024, 1, 31, 0, 0, 0), 2) == [at(2024, 3, 31), at(2024, 5, 31)]
    assert CronSchedule.parse("0 0 0 29 2 *").next_after(at(2024, 3, 1)) == at(2028, 2, 29)


def test_a_date_that_never_exists_has_no_next() -> None:
    assert CronSchedule.parse("0 0 0 30 2 *").next_after(at(2024, 1, 1)) is None


@pytest.mark.parametrize("expression", [
    "0 */5 * * * *", "*/7 * * * * *", "0 0 */6 * * *", "30 15 10 * * MON-FRI", "0 0 0 * * SAT,SUN",
    "10-20/5 */3 1-3 * * *", "0 0 0 1,28-31 * *",
])
def test_next_after_agrees_with_brute_force(expression: str) -> None:
    schedule = CronSchedule.parse(expression)
    for start in (at(2024, 2, 28, 23, 58, 59), at(2024, 12, 31, 23, 59, 59), at(2025, 3, 30, 1, 2, 3)):
        assert schedule.next_after(start) == brute_force_next(schedule, start, timedelta(days=8))


@pytest.mark.parametrize(("expression", "problem"), [
    ("*/5 * * * *", "must have 6 fields"),
    ("0 60 * * * *", "minute value 60 is outside 0-59"),
    ("0 0 24 * * *", "hour value 24 is outside 0-23"),
    ("0 0 0 0 * *", "day value 0 is outside 1-31"),
    ("0 0 0 * 13 *", "month value 13 is outside 1-12"),
    ("0 0 0 * * 7", "day-of-week value 7 is outside 0-6"),
    ("0 0 0 * * XYZ", "'XYZ' is not a valid day-of-week value"),
    ("*/0 * * * * *", "step '0' in the second field"),
    ("0 10-5 * * * *", "runs backwards"),
    ("0 1,,2 * * * *", "empty value in the minute field"),
])
def test_invalid_expressions_say_why(expression: str, problem: str) -> None:
    with pytest.raises(CronError) as info:
        CronSchedule.parse(expression)
    assert problem in str(info.value)
    assert "\n" not in str(info.value)
