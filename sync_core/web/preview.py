"""Section 3 of the settings page: what Microsoft will receive under the given settings.

Every contact shown goes through sync_core.kinds.contacts.mapping.preview_contact, the same code the sync uses
to build the Graph body, so the preview cannot differ from what is sent.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from collections.abc import Mapping
from typing import Any

from sync_core.kinds.contacts import mapping

from sync_core.kinds.tasks import mapping as task_mapping
from sync_core.domain.errors import InvalidRecordError
from sync_core.domain.models import Account, ContactScope, CrmContact, CrmTask, SyncMode, TaskTarget, UserSyncSettings
from sync_core.ports import CrmPort, CrmTasksPort

PREVIEW_CONTACTS = 5
PREVIEW_TASKS = 5
TODO_COLUMNS = ("title", "status", "dueDateTime", "isReminderOn", "reminderDateTime")
EVENT_COLUMNS = ("subject", "isAllDay", "start", "end", "isReminderOn", "reminderMinutesBeforeStart")
_SCAN_LIMIT = 200  # contacts read to find the first few in scope
_ACCOUNT_LIMIT = 20  # accounts read one by one when the first scan found too few


@dataclass(frozen=True)
class PreviewView:
    summary: str
    contact_fields: tuple[str, ...] = ()
    contact_columns: tuple[str, ...] = ()
    contacts: list[tuple[str, ...]] = field(default_factory=list)
    tasks_shown: bool = False
    task_columns: tuple[str, ...] = ()
    tasks: list[tuple[str, ...]] = field(default_factory=list)
    tasks_note: str = ""
    unsaved: bool = False


def contacts_in_scope(crm: CrmPort, settings: UserSyncSettings,
                      limit: int = PREVIEW_CONTACTS) -> list[tuple[CrmContact, Account]]:
    """The first `limit` contacts (by id) the sync would send, with their accounts."""
    accounts = {account.id: account for account in crm.list_accounts(settings.tenant_id)}
    if settings.contact_scope is ContactScope.OWNED_ACCOUNTS:
        wanted = {aid for aid, account in accounts.items() if account.owner_user_id == settings.user_id}
    else:
        wanted = set(accounts)
    found: dict[str, tuple[CrmContact, Account]] = {}
    for contact in crm.list_contacts(settings.tenant_id, limit=_SCAN_LIMIT):
        if contact.account_id in wanted:
            found[contact.id] = (contact, accounts[contact.account_id])
    if len(found) < limit:
        # The first page of the tenant's contacts held too few of this user's: look account by account.
        for account_id in sorted(wanted)[:_ACCOUNT_LIMIT]:
            for contact in crm.list_contacts(settings.tenant_id, account_id=account_id, limit=limit):
                found.setdefault(contact.id, (contact, accounts[account_id]))
            if len(found) >= limit:
                break
    return [found[key] for key in sorted(found)[:limit]]


def _shown(value: Any) -> str:
    """A Graph JSON value as the preview shows it (dateTimeTimeZone as "when (zone)")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping) and "dateTime" in value:
        return f"{value['dateTime']} ({value.get('timeZone', '')})"
    return str(value)


def task_rows(tasks: list[CrmTask], settings: UserSyncSettings) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The Graph body of each task exactly as task_mapping builds the create request, a column per property."""
    zone = task_mapping.user_zone(settings)
    columns = TODO_COLUMNS if settings.task_target is TaskTarget.TO_DO else EVENT_COLUMNS
    rows: list[tuple[str, ...]] = []
    for task in tasks:
        fields = task_mapping.crm_to_task_fields(task, zone)
        try:
            if settings.task_target is TaskTarget.TO_DO:
                body = task_mapping.todo_create_body(fields, settings, task.id)
            else:
                body = task_mapping.event_create_body(fields, settings, task.id, task.version)
        except InvalidRecordError as exc:
            rows.append((fields.subject, f"not sent: {exc}", *("" for _ in columns[2:])))
            continue
        rows.append(tuple(_shown(body.get(name)) for name in columns))
    return columns, rows


def _task_preview(crm: CrmTasksPort, settings: UserSyncSettings) -> tuple[tuple[str, ...], list[tuple[str, ...]], str]:
    where = ("Microsoft To Do (the list “Really Simple Systems”)" if settings.task_target is TaskTarget.TO_DO
             else "your Outlook calendar")
    tasks = crm.tasks_assigned_to(settings.tenant_id, settings.user_id)[:PREVIEW_TASKS]
    if not tasks:
        return (), [], f"No CRM tasks are assigned to you yet; they will be sent to {where}."
    columns, rows = task_rows(tasks, settings)
    return columns, rows, f"Your first tasks as {where} will receive them:"


def build_preview(crm: CrmPort, settings: UserSyncSettings, *, tasks_crm: CrmTasksPort | None = None,
                  unsaved: bool = False) -> PreviewView:
    """`tasks_crm`: where the user's CRM tasks are read (the same TableCrm in the app)."""
    tasks_shown = settings.tasks_enabled
    task_columns: tuple[str, ...] = ()
    tasks: list[tuple[str, ...]] = []
    tasks_note = ""
    if tasks_shown and settings.mode is not SyncMode.MICROSOFT_TO_CRM and tasks_crm is not None:
        task_columns, tasks, tasks_note = _task_preview(tasks_crm, settings)
    elif tasks_shown:
        tasks_note = "Microsoft → CRM: Microsoft receives no tasks; tasks you add there are copied into the CRM."
    extra = PreviewView(summary="", tasks_shown=tasks_shown, task_columns=task_columns, tasks=tasks,
                        tasks_note=tasks_note, unsaved=unsaved)
    if settings.mode is SyncMode.MICROSOFT_TO_CRM:
        return replace(extra, summary="Microsoft → CRM: Microsoft receives no contacts from the CRM; contacts "
                                      "you keep in the Outlook folder “Really Simple Systems” are copied into the CRM.")
    pairs = contacts_in_scope(crm, settings)
    previews = [mapping.preview_contact(contact, account.name) for contact, account in pairs]
    scope = ("the accounts you own" if settings.contact_scope is ContactScope.OWNED_ACCOUNTS
             else "all accounts of the CRM")
    if not previews:
        return replace(extra, summary=f"No CRM contacts in {scope} yet: Microsoft will receive nothing for now.",
                       contact_fields=mapping.OWNED_GRAPH_FIELDS)
    columns = tuple(label for label, _ in previews[0].rows)
    rows = [tuple(value for _, value in preview.rows) for preview in previews]
    return replace(
        extra,
        summary=(f"The first {len(previews)} contacts" if len(previews) > 1 else "The first contact")
        + f" of {scope}, as the Outlook folder “Really Simple Systems” will receive "
        + ("them:" if len(previews) > 1 else "it:"),
        contact_fields=mapping.OWNED_GRAPH_FIELDS, contact_columns=columns, contacts=rows)
