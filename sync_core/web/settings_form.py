"""The settings form: its choices, its current values, and validation with pydantic.

`parse_settings_form` turns a submitted form into a new UserSyncSettings or raises FormInvalid
with one message per field; the page then re-renders with those messages and saves nothing.
The rules themselves live in UserSyncSettings (models.py), so the page cannot drift from them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from sync_core.domain.models import (
    TIMED_REMINDER_CHOICES,
    AllDayReminder,
    ContactScope,
    SyncMode,
    TaskTarget,
    UserSyncSettings,
)

MODE_CHOICES: list[tuple[str, str]] = [
    (SyncMode.TWO_WAY.value, "Two-way: changes on either side are synced"),
    (SyncMode.CRM_TO_MICROSOFT.value, "CRM → Microsoft: Outlook receives the CRM's contacts"),
    (SyncMode.MICROSOFT_TO_CRM.value, "Microsoft → CRM: the CRM receives Outlook's contacts"),
]
SCOPE_CHOICES: list[tuple[str, str]] = [
    (ContactScope.OWNED_ACCOUNTS.value, "Contacts of the accounts I own"),
    (ContactScope.TENANT.value, "All contacts of the CRM"),
]
TARGET_CHOICES: list[tuple[str, str]] = [
    (TaskTarget.TO_DO.value, "Microsoft To Do (a list named “Really Simple Systems”)"),
    (TaskTarget.CALENDAR.value, "Outlook calendar (events in my calendar)"),
]
ALL_DAY_CHOICES: list[tuple[str, str]] = [
    (AllDayReminder.OFF.value, "No notification"),
    (AllDayReminder.SAME_DAY.value, "On the day"),
    (AllDayReminder.DAY_BEFORE.value, "The day before"),
    (AllDayReminder.WEEK_BEFORE.value, "The week before"),
]
NO_REMINDER = "none"
# Exactly Outlook's choices, in the order models.py lists them; None is sent as "none".
TIMED_CHOICES: list[tuple[str, str]] = [
    (NO_REMINDER if minutes is None else str(minutes), label) for minutes, label in TIMED_REMINDER_CHOICES.items()
]

LABELS = {
    "mode": "Contact sync mode",
    "contact_scope": "Which contacts",
    "tasks_enabled": "Task & calendar sync",
    "task_target": "Where tasks go",
    "all_day_reminder": "All-day tasks: default notification",
    "all_day_reminder_time": "Notification time",
    "timed_reminder_minutes": "Timed tasks: reminder",
    "task_import_account": "Account for tasks imported from Microsoft",
    "time_zone": "Time zone",
    "event_duration_minutes": "Length of calendar events for timed tasks (minutes)",
}
FIELDS = tuple(LABELS)


class FormInvalid(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{LABELS.get(k, k)}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class FormState:
    """What the form shows: values as strings (the user's own input after a failed submit)."""

    values: dict[str, str]
    errors: dict[str, str]


def form_values(settings: UserSyncSettings) -> dict[str, str]:
    minutes = settings.timed_reminder_minutes
    return {
        "mode": settings.mode.value,
        "contact_scope": settings.contact_scope.value,
        "tasks_enabled": "on" if settings.tasks_enabled else "",
        "task_target": settings.task_target.value,
        "all_day_reminder": settings.all_day_reminder.value,
        "all_day_reminder_time": settings.all_day_reminder_time,
        "timed_reminder_minutes": NO_REMINDER if minutes is None else str(minutes),
        "task_import_account": settings.task_import_account,
        "time_zone": settings.time_zone,
        "event_duration_minutes": str(settings.event_duration_minutes),
    }


def submitted_values(form: Mapping[str, str]) -> dict[str, str]:
    values = {name: form.get(name, "").strip() for name in FIELDS}
    values["tasks_enabled"] = "on" if form.get("tasks_enabled") else ""
    return values


def _reminder(raw: str, errors: dict[str, str]) -> int | None:
    if raw in ("", NO_REMINDER):
        return None
    try:
        return int(raw)
    except ValueError:
        errors["timed_reminder_minutes"] = "choose one of Outlook's reminder choices"
        return None


def _message(error: Mapping[str, object]) -> str:
    kind = str(error.get("type", ""))
    if kind == "enum":
        return "choose one of the options shown"
    if kind == "string_pattern_mismatch":
        return "enter a time as HH:MM (24-hour clock)"
    if kind in ("string_too_short", "missing"):
        return "this cannot be empty"
    if kind == "string_too_long":
        return "this is too long"
    if kind in ("int_parsing", "int_type"):
        return "enter a whole number"
    if kind in ("greater_than_equal", "less_than_equal"):
        return str(error.get("msg", "out of range")).lower()
    message = str(error.get("msg", "is not valid"))
    return message.removeprefix("Value error, ")


def parse_settings_form(form: Mapping[str, str], current: UserSyncSettings) -> UserSyncSettings:
    """The settings the form asks for, validated by UserSyncSettings; FormInvalid lists every problem."""
    values = submitted_values(form)
    errors: dict[str, str] = {}
    candidate: dict[str, object] = current.model_dump()
    candidate.update({
        "mode": values["mode"],
        "contact_scope": values["contact_scope"] or current.contact_scope.value,
        "tasks_enabled": values["tasks_enabled"] == "on",
        "task_target": values["task_target"] or current.task_target.value,
        "all_day_reminder": values["all_day_reminder"] or current.all_day_reminder.value,
        "all_day_reminder_time": values["all_day_reminder_time"] or current.all_day_reminder_time,
        "timed_reminder_minutes": _reminder(values["timed_reminder_minutes"], errors),
        "task_import_account": values["task_import_account"],
        "time_zone": values["time_zone"] or current.time_zone,
        "event_duration_minutes": values["event_duration_minutes"] or current.event_duration_minutes,
    })
    try:
        parsed = UserSyncSettings.model_validate(candidate)
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "form"
            errors.setdefault(name, _message(error))
        raise FormInvalid(errors) from None
    if errors:
        raise FormInvalid(errors)
    return parsed
