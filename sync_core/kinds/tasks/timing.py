"""Time as task sync handles it (the rules are in mapping.py): the user's zone, due instants to the minute,
Graph's dateTimeTimeZone read and written, and when a reminder fires."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sync_core.domain.errors import InvalidRecordError
from sync_core.domain.models import AllDayReminder, TaskFields, UserSyncSettings
from sync_core.kinds.tasks.time_zones import zone_named

_REMINDER_DAYS = {AllDayReminder.SAME_DAY: 0, AllDayReminder.DAY_BEFORE: 1, AllDayReminder.WEEK_BEFORE: 7}


def user_zone(settings: UserSyncSettings) -> ZoneInfo:
    return ZoneInfo(settings.time_zone)


def normalise_instant(value: datetime) -> datetime:
    """A due instant as compared and stored: UTC, to the minute (Outlook keeps no seconds)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(second=0, microsecond=0)


def at_local(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The instant of a wall time on a day in a zone (the earlier one in a DST fold)."""
    return datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)


_GRAPH_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_graph_time(value: object, what: str) -> tuple[datetime, ZoneInfo, bool]:
    """A dateTimeTimeZone → (aware instant, the zone it was expressed in, whether it is midnight there)."""
    if not isinstance(value, Mapping) or not isinstance(value.get("dateTime"), str):
        raise InvalidRecordError(f"{what} is not a dateTimeTimeZone")
    match = _GRAPH_TIME.match(value["dateTime"].strip())
    if match is None:
        raise InvalidRecordError(f"{what} is not a date and time")
    day, hour, minute, second, offset = match.groups()
    tz_name = value.get("timeZone")
    tz = zone_named(tz_name if isinstance(tz_name, str) and tz_name.strip() else "UTC")
    try:
        wall = datetime.fromisoformat(f"{day}T{hour}:{minute}:{second or '00'}")
    except ValueError:
        raise InvalidRecordError(f"{what} is not a date and time") from None
    if offset:  # an explicit offset fixes the instant whatever the zone says
        instant = datetime.fromisoformat(f"{wall.isoformat()}{'+00:00' if offset == 'Z' else offset}")
        return instant.astimezone(UTC), tz, False
    return wall.replace(tzinfo=tz).astimezone(UTC), tz, wall.time() == time()


def wall_time_json(instant: datetime, tz: ZoneInfo, tz_name: str) -> dict[str, str]:
    """The instant as the user's wall time in their zone, or in UTC when that wall time does not name the
    instant unambiguously (a DST fold or gap): what Graph stores must be exactly our instant."""
    local = instant.astimezone(tz)
    naive = local.replace(tzinfo=None)
    if naive.replace(tzinfo=tz).astimezone(UTC) == instant.astimezone(UTC) and not _in_fold(naive, tz):
        return {"dateTime": naive.isoformat(timespec="seconds"), "timeZone": tz_name}
    return {"dateTime": instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds"), "timeZone": "UTC"}


def _in_fold(naive: datetime, tz: ZoneInfo) -> bool:
    return naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset()


def midnight_json(day: date, tz_name: str) -> dict[str, str]:
    return {"dateTime": f"{day.isoformat()}T00:00:00", "timeZone": tz_name}


def reminder_instant(fields: TaskFields, settings: UserSyncSettings) -> datetime | None:
    """When the user's settings say this item reminds them (None: no reminder)."""
    if fields.due_at is not None:
        minutes = settings.timed_reminder_minutes
        return None if minutes is None else fields.due_at - timedelta(minutes=minutes)
    if fields.due_date is None or settings.all_day_reminder is AllDayReminder.OFF:
        return None
    hour, minute = (int(part) for part in settings.all_day_reminder_time.split(":"))
    day = fields.due_date - timedelta(days=_REMINDER_DAYS[settings.all_day_reminder])
    return at_local(day, time(hour, minute), user_zone(settings))


def event_reminder(fields: TaskFields, settings: UserSyncSettings) -> tuple[bool, int]:
    """(isReminderOn, reminderMinutesBeforeStart) of the event for `fields`. Outlook counts reminders before
    the start only, so an all-day reminder "on the day" at a time after midnight fires at the day's start."""
    fires = reminder_instant(fields, settings)
    if fires is None:
        return False, 0
    if fields.due_at is not None:
        return True, int(settings.timed_reminder_minutes or 0)
    assert fields.due_date is not None
    start = at_local(fields.due_date, time(), user_zone(settings))
    return True, max(0, int((start - fires).total_seconds() // 60))
