"""Graph's patternedRecurrence: checking a client's value, answering it in Outlook's full form, and expanding a
series into the dates of its occurrences.

Outlook answers a recurrence with every member filled in (Microsoft's recurring-event example):
pattern {type, interval, month 0, dayOfMonth 0, daysOfWeek lower-case, firstDayOfWeek "sunday", index "first"},
range {type, startDate, endDate "0001-01-01" unless the range ends on a date, recurrenceTimeZone,
numberOfOccurrences 0 unless numbered}. Occurrence dates are computed on the calendar of the recurrence time
zone, so a 9:00 weekly meeting stays at 9:00 local across DST changes.
"""
from __future__ import annotations

import calendar as _calendar
import datetime as dt
from collections.abc import Iterator
from typing import Any

from m365_emulator.kernel.graph import GraphError

PATTERN_TYPES = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly")
RANGE_TYPES = ("endDate", "noEnd", "numbered")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")  # date.weekday() order
INDEXES = ("first", "second", "third", "fourth", "last")
NO_DATE = "0001-01-01"
# A series without an end is expanded at most this far; Outlook's own expansion is bounded too.
MAX_YEARS = 30


def invalid(detail: str) -> GraphError:
    """Outlook reports a recurrence it cannot use with its generic validation error; the detail is ours."""
    return GraphError(400, "ErrorPropertyValidationFailure", f"At least one property failed validation. ({detail})")


def _enum(value: Any, allowed: tuple[str, ...], name: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{name} is required")
    for candidate in allowed:
        if candidate.lower() == value.lower():
            return candidate
    raise GraphError(400, "RequestBodyRead", f"Requested value '{value}' was not found.")


def _int(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphError(400, "RequestBodyRead",
                         f"Cannot convert the literal value of property '{name}' to the expected type 'Edm.Int32'.")
    return value


def _date(value: Any, name: str) -> dt.date:
    if not isinstance(value, str):
        raise invalid(f"{name} is required")
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise GraphError(400, "RequestBodyRead",
                         f"Cannot convert the literal '{value}' to the expected type 'Edm.Date'.") from None


def normalise(value: Any, default_zone: str) -> dict[str, Any] | None:
    """A client's recurrence (or null) as Outlook stores and answers it; 400 for what Outlook refuses."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(value.get(k), dict) for k in ("pattern", "range")):
        raise invalid("recurrence needs a pattern and a range")
    raw_p, raw_r = value["pattern"], value["range"]
    ptype = _enum(raw_p.get("type"), PATTERN_TYPES, "pattern.type")
    interval = _int(raw_p.get("interval"), "interval", 1)
    if interval < 1 or interval > 99:
        raise invalid("pattern.interval must be between 1 and 99")
    days = raw_p.get("daysOfWeek") or []
    if not isinstance(days, list):
        raise invalid("pattern.daysOfWeek must be a collection")
    days = [_enum(d, DAYS, "daysOfWeek") for d in days]
    pattern: dict[str, Any] = {
        "type": ptype, "interval": interval, "month": _int(raw_p.get("month"), "month", 0),
        "dayOfMonth": _int(raw_p.get("dayOfMonth"), "dayOfMonth", 0), "daysOfWeek": days,
        "firstDayOfWeek": _enum(raw_p.get("firstDayOfWeek") or "sunday", DAYS, "firstDayOfWeek"),
        "index": _enum(raw_p.get("index") or "first", INDEXES, "index"),
    }
    if ptype in ("weekly", "relativeMonthly", "relativeYearly") and not days:
        raise invalid(f"a {ptype} pattern needs daysOfWeek")
    if ptype in ("absoluteMonthly", "absoluteYearly") and not 1 <= pattern["dayOfMonth"] <= 31:
        raise invalid(f"an {ptype} pattern needs dayOfMonth 1-31")
    if ptype in ("absoluteYearly", "relativeYearly") and not 1 <= pattern["month"] <= 12:
        raise invalid(f"a {ptype} pattern needs month 1-12")

    rtype = _enum(raw_r.get("type"), RANGE_TYPES, "range.type")
    start = _date(raw_r.get("startDate"), "range.startDate")
    rng: dict[str, Any] = {"type": rtype, "startDate": start.isoformat(), "endDate": NO_DATE,
                           "recurrenceTimeZone": raw_r.get("recurrenceTimeZone") or default_zone,
                           "numberOfOccurrences": 0}
    if rtype == "endDate":
        end = _date(raw_r.get("endDate"), "range.endDate")
        if end < start:
            raise invalid("range.endDate is before range.startDate")
        rng["endDate"] = end.isoformat()
    elif rtype == "numbered":
        count = _int(raw_r.get("numberOfOccurrences"), "numberOfOccurrences", 0)
        if count < 1:
            raise invalid("a numbered range needs numberOfOccurrences of at least 1")
        rng["numberOfOccurrences"] = count
    return {"pattern": pattern, "range": rng}


def _months_between(a: dt.date, b: dt.date) -> int:
    return (b.year - a.year) * 12 + (b.month - a.month)


def _relative_match(day: dt.date, days: list[str], index: str) -> bool:
    """Is `day` the index-th (or last) day of its month whose weekday is one of `days`?"""
    wanted = {DAYS.index(d) for d in days}
    if day.weekday() not in wanted:
        return False
    last = _calendar.monthrange(day.year, day.month)[1]
    matching = [d for d in range(1, last + 1) if dt.date(day.year, day.month, d).weekday() in wanted]
    position = INDEXES.index(index)
    chosen = matching[-1] if index == "last" else (matching[position] if position < len(matching) else None)
    return chosen == day.day


def _absolute_match(day: dt.date, day_of_month: int) -> bool:
    # Outlook moves "day 31" to the last day of shorter months.
    return day.day == min(day_of_month, _calendar.monthrange(day.year, day.month)[1])


def matches(pattern: dict[str, Any], first: dt.date, day: dt.date) -> bool:
    ptype, interval = pattern["type"], pattern["interval"]
    if day < first:
        return False
    if ptype == "daily":
        return (day - first).days % interval == 0
    if ptype == "weekly":
        if DAYS[day.weekday()] not in pattern["daysOfWeek"]:
            return False
        week_start = DAYS.index(pattern["firstDayOfWeek"])

        def week_of(d: dt.date) -> dt.date:
            return d - dt.timedelta(days=(d.weekday() - week_start) % 7)
        return ((week_of(day) - week_of(first)).days // 7) % interval == 0
    if ptype in ("absoluteMonthly", "relativeMonthly"):
        if _months_between(first, day) % interval != 0:
            return False
        if ptype == "absoluteMonthly":
            return _absolute_match(day, pattern["dayOfMonth"])
        return _relative_match(day, pattern["daysOfWeek"], pattern["index"])
    if (day.year - first.year) % interval != 0 or day.month != pattern["month"]:
        return False
    if ptype == "absoluteYearly":
        return _absolute_match(day, pattern["dayOfMonth"])
    return _relative_match(day, pattern["daysOfWeek"], pattern["index"])


def occurrence_dates(recurrence: dict[str, Any], until: dt.date | None = None) -> Iterator[dt.date]:
    """The dates of a series' occurrences in order, from the range's start to its end, its count, or `until`
    (inclusive; callers pass the last date a window can touch), whichever comes first."""
    pattern, rng = recurrence["pattern"], recurrence["range"]
    first = dt.date.fromisoformat(rng["startDate"])
    last = first.replace(year=min(first.year + MAX_YEARS, dt.MAXYEAR)) if not (first.month == 2 and first.day == 29) \
        else dt.date(min(first.year + MAX_YEARS, dt.MAXYEAR), 2, 28)
    if rng["type"] == "endDate":
        last = min(last, dt.date.fromisoformat(rng["endDate"]))
    if until is not None and rng["type"] != "numbered":
        last = min(last, until)
    remaining = rng["numberOfOccurrences"] if rng["type"] == "numbered" else None
    day = first
    while day <= last:
        if matches(pattern, first, day):
            if until is not None and day > until:
                return
            yield day
            if remaining is not None:
                remaining -= 1
                if remaining == 0:
                    return
        day += dt.timedelta(days=1)
