"""Section 3 of the settings page: what Microsoft will receive under the given settings.

Every contact shown goes through sync_core.mapping.preview_contact, the same code the sync uses
to build the Graph body, so the preview cannot differ from what is sent.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sync_core import mapping
from sync_core.models import Account, ContactScope, CrmContact, SyncMode, UserSyncSettings
from sync_core.ports import CrmPort

PREVIEW_CONTACTS = 5
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


def contacts_in_scope(crm: CrmPort, settings: UserSyncSettings, limit: int = PREVIEW_CONTACTS) -> list[tuple[CrmContact, Account]]:
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


def build_preview(crm: CrmPort, settings: UserSyncSettings, *, unsaved: bool = False) -> PreviewView:
    tasks_shown = settings.tasks_enabled
    tasks_note = ("Tasks assigned to you will be sent to Microsoft To Do." if settings.task_target.value == "todo"
                  else "Tasks assigned to you will be sent to your Outlook calendar.")
    if settings.mode is SyncMode.MICROSOFT_TO_CRM:
        return PreviewView(
            summary="Microsoft → CRM: Microsoft receives no contacts from the CRM; contacts you keep in the "
                    "Outlook folder “Really Simple Systems” are copied into the CRM.",
            tasks_shown=tasks_shown, tasks_note=tasks_note, unsaved=unsaved)
    pairs = contacts_in_scope(crm, settings)
    previews = [mapping.preview_contact(contact, account.name) for contact, account in pairs]
    scope = ("the accounts you own" if settings.contact_scope is ContactScope.OWNED_ACCOUNTS
             else "all accounts of the CRM")
    if not previews:
        return PreviewView(summary=f"No CRM contacts in {scope} yet: Microsoft will receive nothing for now.",
                           contact_fields=mapping.OWNED_GRAPH_FIELDS,
                           tasks_shown=tasks_shown, tasks_note=tasks_note, unsaved=unsaved)
    columns = tuple(label for label, _ in previews[0].rows)
    rows = [tuple(value for _, value in preview.rows) for preview in previews]
    return PreviewView(
        summary=(f"The first {len(previews)} contacts" if len(previews) > 1 else "The first contact")
        + f" of {scope}, as the Outlook folder “Really Simple Systems” will receive "
        + ("them:" if len(previews) > 1 else "it:"),
        contact_fields=mapping.OWNED_GRAPH_FIELDS, contact_columns=columns, contacts=rows,
        tasks_shown=tasks_shown, tasks_note=tasks_note, unsaved=unsaved)
