"""A task's fields in their one normal form, the per-field hashes a task link remembers, and the CRM task
⇄ fields mapping (what each target can hold: REPRESENTED)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sync_core.domain.models import CrmTask, TaskFields, TaskStatus, TaskTarget
from sync_core.domain.text import clean_block, clean_line
from sync_core.kinds.tasks.timing import at_local, normalise_instant

SUBJECT_MAX = 255
BODY_MAX = 8000
FIELD_NAMES = ("subject", "body", "due_date", "due_at", "done")
REPRESENTED: dict[TaskTarget, frozenset[str]] = {
    TaskTarget.TO_DO: frozenset({"subject", "body", "due_date", "done"}),  # no due time in To Do
    TaskTarget.CALENDAR: frozenset({"subject", "body", "due_date", "due_at"}),  # no completion in a calendar
}
TIMING = frozenset({"due_date", "due_at"})


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
