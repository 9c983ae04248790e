"""Shared by the Windows time-zone tests: every Windows id of CLDR's mapping (from the pinned library, the
source of truth), the days each one's clocks change, and how Graph answers a dateTimeTimeZone in a zone."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from tzlocal.windows_tz import win_tz

from sync_core.domain.models import AllDayReminder, CrmTask, UserSyncSettings

WINDOWS_NAMES: list[str] = sorted(win_tz)
WALL_TIMES = [time(0, 0), time(0, 30), time(1, 30), time(2, 30), time(3, 0), time(9, 15), time(12, 0),
              time(23, 30)]


def iana(windows: str) -> str:
    return win_tz[windows]


@lru_cache(maxsize=None)
def clock_change_days(windows: str, first: int = 2025, last: int = 2027) -> tuple[date, ...]:
    """Local days (in the zone) on which its UTC offset changes between `first` and `last`: DST and other
    changes. Found by scanning noon to noon and then hour by hour inside a day that changed."""
    tz = ZoneInfo(iana(windows))
    days: list[date] = []
    moment = datetime(first, 1, 1, 12, tzinfo=UTC)
    end = datetime(last, 12, 31, 12, tzinfo=UTC)
    while moment < end:
        following = moment + timedelta(days=1)
        if moment.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            hour = moment
            while hour.astimezone(tz).utcoffset() == moment.astimezone(tz).utcoffset():
                hour += timedelta(minutes=30)
            days.append(hour.astimezone(tz).date())
        moment = following
    return tuple(days)


def exists(day: date, wall: time, tz: ZoneInfo) -> bool:
    """Whether a wall time happens on that day (not skipped by a clock change)."""
    naive = datetime.combine(day, wall)
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


def unambiguous(value: dict[str, str], zone: str) -> bool:
    """Whether a dateTimeTimeZone answered in `zone` names one instant: a wall time in a DST fold names two,
    and Graph's answer format cannot tell them apart (so the product writes such times in UTC)."""
    tz = ZoneInfo(iana(zone)) if zone in win_tz else ZoneInfo(zone)
    local = _instant(value).astimezone(tz).replace(tzinfo=None)
    return local.replace(tzinfo=tz, fold=0).utcoffset() == local.replace(tzinfo=tz, fold=1).utcoffset()


def user(zone: str) -> UserSyncSettings:
    return UserSyncSettings(tenant_id="t", user_id="u", time_zone=zone, tasks_enabled=True,
                            all_day_reminder=AllDayReminder.DAY_BEFORE, timed_reminder_minutes=30)


def crm_task(day: date, wall: time | None, tz: ZoneInfo) -> CrmTask:
    """A CRM task due on a local day (all-day) or at a local wall time on it (the earlier one in a fold)."""
    due_at = None if wall is None else datetime.combine(day, wall, tzinfo=tz)
    return CrmTask(id="task-1", tenant_id="t", account_id="a", assigned_to="u", subject="Call",
                   due_date=day if wall is None else None, due_at=due_at, version="v1")


def _instant(value: dict[str, str]) -> datetime:
    """What we sent: a wall time in an IANA zone (or UTC)."""
    return datetime.fromisoformat(value["dateTime"]).replace(tzinfo=ZoneInfo(value["timeZone"])).astimezone(UTC)


def answer_time(value: dict[str, str], zone: str) -> dict[str, str]:
    """How Graph answers a stored dateTimeTimeZone in `zone` (UTC by default, a Windows id when asked with
    `Prefer: outlook.timezone` or for items made in Outlook): the instant's wall time there, seven digits."""
    tz = ZoneInfo(iana(zone)) if zone in win_tz else ZoneInfo(zone)
    local = _instant(value).astimezone(tz).replace(tzinfo=None)
    return {"dateTime": local.isoformat(timespec="microseconds") + "0", "timeZone": zone}


def todo_answer(body: dict[str, Any], zone: str) -> dict[str, Any]:
    out = {**body, "id": "AQMkADAw", "@odata.etag": 'W/"x"'}
    for name in ("dueDateTime", "reminderDateTime"):
        if body.get(name):
            out[name] = answer_time(body[name], zone)
    return out


def event_answer(body: dict[str, Any], zone: str) -> dict[str, Any]:
    """All-day events come back at midnight of their dates in the zone answered in (floating days)."""
    out = {**body, "id": "AAMkADAw", "changeKey": "ck"}
    for name in ("start", "end"):
        if body["isAllDay"]:
            out[name] = {"dateTime": body[name]["dateTime"][:10] + "T00:00:00.0000000", "timeZone": zone}
        else:
            out[name] = answer_time(body[name], zone)
    return out
