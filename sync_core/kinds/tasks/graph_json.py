"""Task fields as the Graph JSON of both task targets (To Do tasks and calendar events), and back: create
and PATCH bodies, and the parsing of what Graph answers (any documented shape; a reason, never a value,
when an item is unusable)."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sync_core.domain.errors import InvalidRecordError
from sync_core.domain.models import FOLDER_NAME, MsTask, TaskFields, TaskTarget, UserSyncSettings
from sync_core.domain.text import graph_item, html_to_text
from sync_core.kinds.tasks.fields import TIMING, normalise_task
from sync_core.kinds.tasks.timing import (
    event_reminder, midnight_json, parse_graph_time, reminder_instant, user_zone, wall_time_json,
)

# The To Do linkedResource that carries our CRM id (To Do shows it as a link to the app).
APP_NAME = FOLDER_NAME
# Our CRM id on the events we create: a single-value extended property (found by $filter on doubt) and the
# event's transactionId, which Graph uses to refuse a repeated POST and which shows in calendarView delta.
TASK_ID_PROPERTY = "String {8a3c5e1f-2b4d-4f6a-9c7e-1d2f3a4b5c6d} Name CrmTaskId"
TRANSACTION_PREFIX = "rss-task:"


def _text_body(content: str) -> dict[str, str]:
    return {"contentType": "text", "content": content}


def _text_changes(wanted: TaskFields, changed: frozenset[str], subject_key: str) -> dict[str, Any]:
    """The PATCH of the text fields among `changed` (the subject is `subject_key` in this target)."""
    patch: dict[str, Any] = {}
    if "subject" in changed:
        patch[subject_key] = wanted.subject
    if "body" in changed:
        patch["body"] = _text_body(wanted.body)
    return patch


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


def _version(item: Mapping[str, Any], key: str, fallback: str) -> str:
    """The item's version: `key`, else `fallback` (which Graph sends when the first is missing)."""
    version = item.get(key) or item.get(fallback) or ""
    if not isinstance(version, str):
        raise InvalidRecordError(f"{key} is not text")
    return version


def _optional(item: Mapping[str, Any], key: str, kind: type, described: str) -> Any:
    """item[key] when absent, null or of `kind`; InvalidRecordError naming the key otherwise."""
    value = item.get(key)
    if value is not None and not isinstance(value, kind):
        raise InvalidRecordError(f"{key} is not {described}")
    return value


# --- To Do ---------------------------------------------------------------------------------------------

def todo_timing(fields: TaskFields, settings: UserSyncSettings) -> dict[str, Any]:
    fires = reminder_instant(fields, settings)
    return {
        "dueDateTime": midnight_json(fields.due_date, settings.time_zone) if fields.due_date else None,
        "isReminderOn": fires is not None,
        "reminderDateTime": ({"dateTime": fires.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
                              "timeZone": "UTC"} if fires is not None else None),
    }


def todo_create_body(fields: TaskFields, settings: UserSyncSettings, crm_id: str) -> dict[str, Any]:
    """A To Do POST: tagged with our CRM id in a linkedResource (how a lost create is found again)."""
    return {
        "title": fields.subject,
        "body": _text_body(fields.body),
        "status": "completed" if fields.done else "notStarted",
        **todo_timing(fields, settings),
        "linkedResources": [{"applicationName": APP_NAME, "externalId": crm_id,
                             "displayName": f"Task in {APP_NAME}"}],
    }


def todo_patch_body(wanted: TaskFields, changed: frozenset[str], settings: UserSyncSettings) -> dict[str, Any]:
    """Only the `changed` fields (what the user set in To Do and we do not own stays: importance, an inProgress
    status, a reminder they moved); the reminder follows the due date."""
    patch = _text_changes(wanted, changed, "title")
    if "done" in changed:
        patch["status"] = "completed" if wanted.done else "notStarted"
    if changed & TIMING:
        patch.update(todo_timing(wanted, settings))
    return patch


def graph_to_todo_task(item: object, tz: ZoneInfo) -> MsTask:
    """Parse a To Do task (any documented shape); InvalidRecordError with a reason (never a value)."""
    item, ms_id = graph_item(item, "task")
    version = _version(item, "@odata.etag", "lastModifiedDateTime")
    status = _optional(item, "status", str, "text")
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


# --- calendar events -----------------------------------------------------------------------------------

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
        return {"isAllDay": True, "start": midnight_json(fields.due_date, settings.time_zone),
                "end": midnight_json(fields.due_date + timedelta(days=1), settings.time_zone),
                "showAs": "free", **reminder}
    tz = user_zone(settings)
    end = fields.due_at + timedelta(minutes=settings.event_duration_minutes)
    return {"isAllDay": False, "start": wall_time_json(fields.due_at, tz, settings.time_zone),
            "end": wall_time_json(end, tz, settings.time_zone), **reminder}


def event_create_body(fields: TaskFields, settings: UserSyncSettings, crm_id: str, crm_version: str) -> dict[str, Any]:
    """An event POST: no attendees (so no invitation is ever sent), tagged with our CRM id twice."""
    return {
        "subject": fields.subject,
        "body": _text_body(fields.body),
        **event_timing(fields, settings),
        "transactionId": transaction_id(crm_id, crm_version),
        "singleValueExtendedProperties": [{"id": TASK_ID_PROPERTY, "value": crm_id}],
    }


def event_patch_body(wanted: TaskFields, changed: frozenset[str], all_day_now: bool | None,
                     settings: UserSyncSettings) -> dict[str, Any]:
    """Only the `changed` fields: a user's longer meeting, moved reminder or location stays. isAllDay is sent
    only when it flips (an occurrence of a series refuses it otherwise)."""
    patch = _text_changes(wanted, changed, "subject")
    if changed & TIMING:
        timing = event_timing(wanted, settings)
        if all_day_now is not None and all_day_now == timing["isAllDay"]:
            del timing["isAllDay"]
            timing.pop("showAs", None)
        patch.update(timing)
    return patch


def graph_to_event_task(item: object, tz: ZoneInfo) -> MsTask:
    """Parse an event or occurrence of the calendar view; InvalidRecordError with a reason."""
    item, ms_id = graph_item(item, "task")
    version = _version(item, "changeKey", "@odata.etag")
    all_day = _optional(item, "isAllDay", bool, "a boolean")
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
