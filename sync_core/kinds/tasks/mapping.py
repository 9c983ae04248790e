"""The one mapping between a CRM task, our normalised TaskFields and the Graph JSON of both task targets.

Time is where task sync goes wrong in peer products (lessons.md #6), so every rule is explicit here:
- An all-day task is due on a *day*. In To Do it is sent as midnight of that day in the user's zone; in the
  calendar as an all-day event spanning [day, day+1), both ends at midnight in that named zone. Read back, a
  due time that is midnight in the zone it is expressed in is a floating day (how Graph answers all-day events
  and the To Do apps' own tasks); any other time is an instant whose day is taken in the user's zone (how Graph
  answers our own To Do due dates, in UTC).
- A timed task is due at an *instant* (kept in UTC, to the minute). The calendar shows it as an event of
  `event_duration_minutes` starting then, written as the user's wall time in the user's zone — or in UTC when
  that wall time is ambiguous or skipped by a DST change, so the instant survives. To Do cannot hold a due time
  (its API keeps the date only), so a timed task shows there on its day and its time is kept by the CRM.
- Reminders follow the user's settings, never a per-task value: they are written on create and whenever the
  due changes, and not compared (a reminder edited in Outlook is the user's business).

What each target can represent is listed in REPRESENTED; the planner treats a field a target cannot hold as
unchanged on that side. The link of a task remembers a hash per field (not the values), so a three-way merge
can tell which side changed which field (`encode_synced` / `decode_synced`).
"""
from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

from sync_core.domain.errors import InvalidRecordError
from sync_core.kinds.contacts.mapping import clean_block, clean_line
from sync_core.domain.models import (
    FOLDER_NAME,
    AllDayReminder,
    CrmTask,
    MsTask,
    TaskFields,
    TaskStatus,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.kinds.tasks.time_zones import zone_named

SUBJECT_MAX = 255
BODY_MAX = 8000
# The To Do linkedResource that carries our CRM id (To Do shows it as a link to the app).
APP_NAME = FOLDER_NAME
# Our CRM id on the events we create: a single-value extended property (found by $filter on doubt) and the
# event's transactionId, which Graph uses to refuse a repeated POST and which shows in calendarView delta.
TASK_ID_PROPERTY = "String {8a3c5e1f-2b4d-4f6a-9c7e-1d2f3a4b5c6d} Name CrmTaskId"
TRANSACTION_PREFIX = "rss-task:"

FIELD_NAMES = ("subject", "body", "due_date", "due_at", "done")
REPRESENTED: dict[TaskTarget, frozenset[str]] = {
    TaskTarget.TO_DO: frozenset({"subject", "body", "due_date", "done"}),  # no due time in To Do
    TaskTarget.CALENDAR: frozenset({"subject", "body", "due_date", "due_at"}),  # no completion in a calendar
}
TIMING = frozenset({"due_date", "due_at"})
_REMINDER_DAYS = {AllDayReminder.SAME_DAY: 0, AllDayReminder.DAY_BEFORE: 1, AllDayReminder.WEEK_BEFORE: 7}


# --- zones and instants -------------------------------------------------------------------------------

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


def _wall_time_json(instant: datetime, tz: ZoneInfo, tz_name: str) -> dict[str, str]:
    """The instant as the user's wall time in their zone, or in UTC when that wall time does not name the
    instant unambiguously (a DST fold or gap): what Graph stores must be exactly our instant."""
    local = instant.astimezone(tz)
    naive = local.replace(tzinfo=None)
    if naive.replace(tzinfo=tz).astimezone(UTC) == instant.astimezone(UTC) and not _in_fold(naive, tz):
        return {"dateTime": naive.isoformat(timespec="seconds"), "timeZone": tz_name}
    return {"dateTime": instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds"), "timeZone": "UTC"}


def _in_fold(naive: datetime, tz: ZoneInfo) -> bool:
    return naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset()


def _midnight_json(day: date, tz_name: str) -> dict[str, str]:
    return {"dateTime": f"{day.isoformat()}T00:00:00", "timeZone": tz_name}


# --- normal form --------------------------------------------------------------------------------------

def normalise_task(fields: TaskFields, tz: ZoneInfo) -> TaskFields:
    """The one normal form (idempotent): cleaned text; a timed task's day is the day of its instant in `tz`."""
    due_at = normalise_instant(fields.due_at) if fields.due_at is not None else None
    due_date = due_at.astimezone(tz).date() if due_at is not None else fields.due_date
    return TaskFields(subject=clean_line(fields.subject, SUBJECT_MAX), body=clean_block(fields.body, BODY_MAX),
                      due_date=due_date, due_at=due_at, done=fields.done)


def move_to_day(fields: TaskFields, tz: ZoneInfo) -> TaskFields:
    """After a merge the day may come from a side that cannot hold a time (To Do) and the instant from the
    CRM: a timed task then keeps its wall time on the new day; no day at all means no due."""
    if fields.due_at is None:
        return fields
    if fields.due_date is None:
        return fields.model_copy(update={"due_at": None})
    local = fields.due_at.astimezone(tz)
    if local.date() == fields.due_date:
        return fields
    return fields.model_copy(update={"due_at": at_local(fields.due_date, local.time().replace(tzinfo=None), tz)})


def project(fields: TaskFields, target: TaskTarget) -> TaskFields:
    """What `target` can hold of `fields` (the rest at its default)."""
    shown = REPRESENTED[target]
    return TaskFields(**{name: getattr(fields, name) for name in FIELD_NAMES if name in shown})


# --- per-field hashes in the link ---------------------------------------------------------------------

def _value_hash(value: object) -> str:
    payload = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def field_hashes(fields: TaskFields) -> dict[str, str]:
    dumped = fields.model_dump(mode="json")
    return {name: _value_hash(dumped[name]) for name in FIELD_NAMES}


@dataclass(frozen=True)
class SyncedTask:
    """What a task link remembers of the content both sides agreed on: a hash per field, the due day (the
    calendar target decides with it whether an item reported gone may just have left the window), and whether
    the item is a meeting (which the sync never changes or deletes)."""

    hashes: dict[str, str]
    due_date: date | None
    meeting: bool = False

    def same(self, fields: TaskFields, names: frozenset[str] | tuple[str, ...] = FIELD_NAMES) -> bool:
        current = field_hashes(fields)
        return all(current[name] == self.hashes.get(name) for name in names)

    def changed_fields(self, fields: TaskFields, names: frozenset[str] | tuple[str, ...] = FIELD_NAMES) -> set[str]:
        current = field_hashes(fields)
        return {name for name in names if current[name] != self.hashes.get(name)}


_SYNCED_TAG = "t1"


def encode_synced(fields: TaskFields, meeting: bool = False) -> str:
    hashes = field_hashes(fields)
    day = fields.due_date.isoformat() if fields.due_date else ""
    parts = [_SYNCED_TAG, day, ".".join(hashes[name] for name in FIELD_NAMES)]
    return "|".join(parts + (["meeting"] if meeting else []))


def decode_synced(text: str) -> SyncedTask | None:
    parts = text.split("|")
    if len(parts) not in (3, 4) or parts[0] != _SYNCED_TAG:
        return None
    hashes = parts[2].split(".")
    if len(hashes) != len(FIELD_NAMES):
        return None
    try:
        day = date.fromisoformat(parts[1]) if parts[1] else None
    except ValueError:
        return None
    return SyncedTask(dict(zip(FIELD_NAMES, hashes)), day, meeting=len(parts) == 4 and parts[3] == "meeting")


# --- CRM ⇄ fields -------------------------------------------------------------------------------------

def crm_to_task_fields(task: CrmTask, tz: ZoneInfo) -> TaskFields:
    return normalise_task(TaskFields(subject=task.subject, body=task.description, due_date=task.due_date,
                                     due_at=task.due_at, done=task.status is TaskStatus.DONE), tz)


def task_fields_to_crm(fields: TaskFields, base: CrmTask | None, tz: ZoneInfo, *, tenant_id: str = "",
                       task_id: str = "", account_id: str = "", assigned_to: str = "") -> CrmTask:
    """The CRM task holding `fields`, built on `base`: a raw base value that already normalises to the wanted
    one is kept (the CRM's formatting, a description beyond Outlook's cap, an instant's zone and seconds)."""
    fields = normalise_task(fields, tz)
    if base is None:
        if not tenant_id or not account_id or not assigned_to:
            raise ValueError("task_fields_to_crm needs tenant, account and assignee when there is no base task")
        base = CrmTask(id=task_id, tenant_id=tenant_id, account_id=account_id, assigned_to=assigned_to)
    subject = base.subject if clean_line(base.subject, SUBJECT_MAX) == fields.subject else fields.subject
    description = base.description if clean_block(base.description, BODY_MAX) == fields.body else fields.body
    due_at: datetime | None = None
    due_date: date | None = None
    if fields.due_at is not None:
        same = base.due_at is not None and normalise_instant(base.due_at) == fields.due_at
        due_at = base.due_at if same else fields.due_at
    else:
        due_date = fields.due_date
    status = TaskStatus.DONE if fields.done else TaskStatus.OPEN
    return base.model_copy(update={"subject": subject, "description": description, "due_date": due_date,
                                   "due_at": due_at, "status": status})


# --- HTML bodies --------------------------------------------------------------------------------------

class _Text(HTMLParser):
    """Text of an HTML body: no markup, no scripts/styles/head, block elements on their own lines."""

    _SKIP = {"script", "style", "head", "title", "template", "noscript"}
    _BLOCKS = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote",
               "pre", "section", "article", "header", "footer"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag == "br" or tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            # Markup whitespace is not text: runs of it are one space, as a browser shows them.
            self.parts.append(re.sub(r"[ \t\r\n\f]+", " ", data))


def html_to_text(markup: str) -> str:
    """Plain text of an Outlook HTML body (safe: nothing of the markup survives as markup)."""
    parser = _Text()
    try:
        parser.feed(markup)
        parser.close()
    except (AssertionError, ValueError):  # malformed beyond what the parser recovers from: drop all tags
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = [line.strip() for line in "".join(parser.parts).replace("\xa0", " ").split("\n")]
    # Block ends and starts both break the line: one line break between blocks, no blank lines.
    return re.sub(r"\n{2,}", "\n", "\n".join(lines)).strip()


def _body_text(item: Mapping[str, Any]) -> str:
    body = item.get("body")
    if body is None:
        return ""
    if not isinstance(body, Mapping):
        raise InvalidRecordError("body is not an itemBody")
    content = body.get("content") or ""
    if not isinstance(content, str):
        raise InvalidRecordError("body content is not text")
    kind = str(body.get("contentType") or "text").lower()
    return html_to_text(content) if kind == "html" else content


def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRecordError(f"{key} is not text")
    return value


def _graph_id(item: object) -> tuple[Mapping[str, Any], str]:
    if not isinstance(item, Mapping):
        raise InvalidRecordError("item is not a JSON object")
    if "@removed" in item:
        raise InvalidRecordError("item is a removal marker, not a task")
    ms_id = item.get("id")
    if not isinstance(ms_id, str) or not ms_id.strip():
        raise InvalidRecordError("item has no id")
    return item, ms_id


# --- reminders ----------------------------------------------------------------------------------------

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


# --- To Do JSON ---------------------------------------------------------------------------------------

def todo_timing(fields: TaskFields, settings: UserSyncSettings) -> dict[str, Any]:
    fires = reminder_instant(fields, settings)
    return {
        "dueDateTime": _midnight_json(fields.due_date, settings.time_zone) if fields.due_date else None,
        "isReminderOn": fires is not None,
        "reminderDateTime": ({"dateTime": fires.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
                              "timeZone": "UTC"} if fires is not None else None),
    }


def todo_create_body(fields: TaskFields, settings: UserSyncSettings, crm_id: str) -> dict[str, Any]:
    """A To Do POST: tagged with our CRM id in a linkedResource (how a lost create is found again)."""
    return {
        "title": fields.subject,
        "body": {"content": fields.body, "contentType": "text"},
        "status": "completed" if fields.done else "notStarted",
        **todo_timing(fields, settings),
        "linkedResources": [{"applicationName": APP_NAME, "externalId": crm_id,
                             "displayName": f"Task in {APP_NAME}"}],
    }


def todo_patch_body(wanted: TaskFields, changed: frozenset[str], settings: UserSyncSettings) -> dict[str, Any]:
    """Only the `changed` fields (what the user set in To Do and we do not own stays: importance, an inProgress
    status, a reminder they moved); the reminder follows the due date."""
    patch: dict[str, Any] = {}
    if "subject" in changed:
        patch["title"] = wanted.subject
    if "body" in changed:
        patch["body"] = {"content": wanted.body, "contentType": "text"}
    if "done" in changed:
        patch["status"] = "completed" if wanted.done else "notStarted"
    if changed & TIMING:
        patch.update(todo_timing(wanted, settings))
    return patch


def graph_to_todo_task(item: object, tz: ZoneInfo) -> MsTask:
    """Parse a To Do task (any documented shape); InvalidRecordError with a reason (never a value)."""
    item, ms_id = _graph_id(item)
    version = item.get("@odata.etag") or item.get("lastModifiedDateTime") or ""
    if not isinstance(version, str):
        raise InvalidRecordError("@odata.etag is not text")
    status = item.get("status")
    if status is not None and not isinstance(status, str):
        raise InvalidRecordError("status is not text")
    due_date: date | None = None
    if item.get("dueDateTime") is not None:
        instant, expressed_in, midnight = parse_graph_time(item["dueDateTime"], "dueDateTime")
        due_date = instant.astimezone(expressed_in).date() if midnight else instant.astimezone(tz).date()
    crm_id = None
    links = item.get("linkedResources")
    if isinstance(links, list):
        ours = sorted(str(link["externalId"]) for link in links
                      if isinstance(link, Mapping) and link.get("applicationName") == APP_NAME
                      and isinstance(link.get("externalId"), str) and link["externalId"])
        crm_id = ours[0] if ours else None
    fields = normalise_task(TaskFields(subject=_text(item, "title"), body=_body_text(item), due_date=due_date,
                                       done=(status or "").lower() == "completed"), tz)
    return MsTask(id=ms_id, version=version, fields=fields, crm_id=crm_id, all_day=True)


# --- event JSON ---------------------------------------------------------------------------------------

def transaction_id(crm_id: str, crm_version: str) -> str:
    """Unique per create intent (a re-create after a CRM edit is a new intent), and names our CRM id."""
    nonce = hashlib.sha256(f"{crm_id}\n{crm_version}".encode()).hexdigest()[:12]
    return f"{TRANSACTION_PREFIX}{crm_id}:{nonce}"


def crm_id_of_transaction(value: object) -> str | None:
    if not isinstance(value, str) or not value.startswith(TRANSACTION_PREFIX):
        return None
    crm_id, _, nonce = value[len(TRANSACTION_PREFIX):].rpartition(":")
    return crm_id or None if nonce else None


def event_timing(fields: TaskFields, settings: UserSyncSettings) -> dict[str, Any]:
    """start/end/isAllDay/reminder of the event for `fields` (which must have a due day)."""
    if fields.due_date is None:
        raise InvalidRecordError("a task without a due date has no place in the calendar")
    on, minutes = event_reminder(fields, settings)
    reminder: dict[str, Any] = {"isReminderOn": on, **({"reminderMinutesBeforeStart": minutes} if on else {})}
    if fields.due_at is None:
        return {"isAllDay": True, "start": _midnight_json(fields.due_date, settings.time_zone),
                "end": _midnight_json(fields.due_date + timedelta(days=1), settings.time_zone),
                "showAs": "free", **reminder}
    tz = user_zone(settings)
    end = fields.due_at + timedelta(minutes=settings.event_duration_minutes)
    return {"isAllDay": False, "start": _wall_time_json(fields.due_at, tz, settings.time_zone),
            "end": _wall_time_json(end, tz, settings.time_zone), **reminder}


def event_create_body(fields: TaskFields, settings: UserSyncSettings, crm_id: str, crm_version: str) -> dict[str, Any]:
    """An event POST: no attendees (so no invitation is ever sent), tagged with our CRM id twice."""
    return {
        "subject": fields.subject,
        "body": {"contentType": "text", "content": fields.body},
        **event_timing(fields, settings),
        "transactionId": transaction_id(crm_id, crm_version),
        "singleValueExtendedProperties": [{"id": TASK_ID_PROPERTY, "value": crm_id}],
    }


def event_patch_body(wanted: TaskFields, changed: frozenset[str], all_day_now: bool | None,
                     settings: UserSyncSettings) -> dict[str, Any]:
    """Only the `changed` fields: a user's longer meeting, moved reminder or location stays. isAllDay is sent
    only when it flips (an occurrence of a series refuses it otherwise)."""
    patch: dict[str, Any] = {}
    if "subject" in changed:
        patch["subject"] = wanted.subject
    if "body" in changed:
        patch["body"] = {"contentType": "text", "content": wanted.body}
    if changed & TIMING:
        timing = event_timing(wanted, settings)
        if all_day_now is not None and all_day_now == timing["isAllDay"]:
            del timing["isAllDay"]
            timing.pop("showAs", None)
        patch.update(timing)
    return patch


def graph_to_event_task(item: object, tz: ZoneInfo) -> MsTask:
    """Parse an event or occurrence of the calendar view; InvalidRecordError with a reason."""
    item, ms_id = _graph_id(item)
    version = item.get("changeKey") or item.get("@odata.etag") or ""
    if not isinstance(version, str):
        raise InvalidRecordError("changeKey is not text")
    all_day = item.get("isAllDay")
    if all_day is not None and not isinstance(all_day, bool):
        raise InvalidRecordError("isAllDay is not a boolean")
    instant, expressed_in, _ = parse_graph_time(item.get("start"), "start")
    if all_day:
        # All-day events are floating days: Graph answers midnight of the date in whatever zone it answers in.
        due_date, due_at = instant.astimezone(expressed_in).date(), None
    else:
        due_date, due_at = None, instant
    crm_id = crm_id_of_transaction(item.get("transactionId"))
    for prop in item.get("singleValueExtendedProperties") or []:
        if isinstance(prop, Mapping) and str(prop.get("id", "")).lower() == TASK_ID_PROPERTY.lower():
            crm_id = str(prop.get("value") or "") or crm_id
    master = item.get("seriesMasterId")
    attendees = item.get("attendees")
    fields = normalise_task(TaskFields(subject=_text(item, "subject"), body=_body_text(item), due_date=due_date,
                                       due_at=due_at), tz)
    return MsTask(id=ms_id, version=version, fields=fields, crm_id=crm_id, all_day=bool(all_day),
                  series_master_id=master if isinstance(master, str) and master else None,
                  meeting=isinstance(attendees, list) and len(attendees) > 0)


def graph_to_task(target: TaskTarget, item: object, tz: ZoneInfo) -> MsTask:
    return graph_to_todo_task(item, tz) if target is TaskTarget.TO_DO else graph_to_event_task(item, tz)
