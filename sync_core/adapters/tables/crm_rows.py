"""The rows of the CRM table (see crm.py for the layout): their keys and entity ⇄ model conversions."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from sync_core.adapters.tables.codec import as_int, etag_of, from_iso, int64, iso, key_part
from sync_core.adapters.tables.common import Entity
from sync_core.domain.models import Account, Address, CrmContact, CrmTask, FeedEntry, TaskStatus
from sync_core.kinds.contacts.accounts import normalise_company

TABLE = "crmrecords"
COUNTER_ROW = "feedcounter"
FEED_PREFIX = "feed_"
ACCOUNT_PREFIX = "acct_"
ACCOUNT_NAME_PREFIX = "acctname_"
CONTACT_PREFIX = "contact_"
EMAIL_PREFIX = "email_"
TASK_PREFIX = "task_"
TASK_USER_PREFIX = "taskuser_"


def normalise_email(email: str) -> str:
    return email.strip().casefold()


# ---- keys -------------------------------------------------------------------------------------

def feed_row(position: int) -> str:
    return f"{FEED_PREFIX}{position:020d}"


def account_row(account_id: str) -> str:
    return f"{ACCOUNT_PREFIX}{key_part(account_id)}"


# A RowKey holds at most 512 characters and key_part escapes every non-ASCII byte to three: the longest
# escaped name (or address) an index row can carry beside its prefix and a 32-character id, with room left.
NAME_KEY_MAX = 470
EMAIL_KEY_MAX = 430


def bounded_key(value: str, limit: int) -> str:
    """key_part(value), or when that is longer than `limit`, its start and a digest of the whole value (a form
    key_part never produces: "~~" cannot occur in it). Values that always fitted keep their key."""
    escaped = key_part(value)
    if len(escaped) <= limit:
        return escaped
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
    return f"{escaped[:limit - 34]}~~{digest}"


def account_name_prefix(name: str) -> str:
    return f"{ACCOUNT_NAME_PREFIX}{bounded_key(normalise_company(name), NAME_KEY_MAX)}_"


def account_name_row(name: str, account_id: str) -> str:
    return account_name_prefix(name) + key_part(account_id)


def contact_row(contact_id: str) -> str:
    return f"{CONTACT_PREFIX}{key_part(contact_id)}"


def email_prefix(account_id: str, email: str) -> str:
    return f"{EMAIL_PREFIX}{key_part(account_id)}_{bounded_key(normalise_email(email), EMAIL_KEY_MAX)}_"


def email_rows(contact: CrmContact) -> set[str]:
    emails = {normalise_email(e) for e in contact.emails if e.strip()}
    return {email_prefix(contact.account_id, e) + key_part(contact.id) for e in emails}


# ---- entity <-> model -------------------------------------------------------------------------

def _keys(record: Account | CrmContact | CrmTask, row_key: str) -> Entity:
    return {"PartitionKey": record.tenant_id, "RowKey": row_key, "Id": record.id}


def _identity_of(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record's id, tenant and version (its ETag)."""
    return {"id": entity["Id"], "tenant_id": entity["PartitionKey"], "version": etag_of(entity)}


def account_to_entity(account: Account) -> Entity:
    return {
        **_keys(account, account_row(account.id)),
        "Name": account.name,
        "OwnerUserId": account.owner_user_id or "",
    }


def account_from_entity(entity: Mapping[str, Any]) -> Account:
    return Account(
        **_identity_of(entity),
        name=entity["Name"],
        owner_user_id=entity.get("OwnerUserId") or None,
    )


def contact_to_entity(contact: CrmContact) -> Entity:
    return {
        **_keys(contact, contact_row(contact.id)),
        "AccountId": contact.account_id,
        "FirstName": contact.first_name,
        "LastName": contact.last_name,
        "Emails": json.dumps(list(contact.emails)),
        "BusinessPhone": contact.business_phone,
        "MobilePhone": contact.mobile_phone,
        "JobTitle": contact.job_title,
        "Address": contact.address.model_dump_json(),
        "Notes": contact.notes,
        "ModifiedAt": iso(contact.modified_at),
    }


def contact_from_entity(entity: Mapping[str, Any]) -> CrmContact:
    return CrmContact(
        **_identity_of(entity),
        account_id=entity["AccountId"],
        first_name=entity.get("FirstName", ""),
        last_name=entity.get("LastName", ""),
        emails=tuple(json.loads(entity.get("Emails") or "[]")),
        business_phone=entity.get("BusinessPhone", ""),
        mobile_phone=entity.get("MobilePhone", ""),
        job_title=entity.get("JobTitle", ""),
        address=Address.model_validate_json(entity.get("Address") or "{}"),
        notes=entity.get("Notes", ""),
        modified_at=from_iso(entity.get("ModifiedAt")),
    )


def feed_to_entity(tenant_id: str, entry: FeedEntry) -> Entity:
    return {
        "PartitionKey": tenant_id,
        "RowKey": feed_row(entry.position),
        "Position": int64(entry.position),
        "Kind": entry.kind,
        "RecordId": entry.record_id,
        "Deleted": entry.deleted,
    }


def feed_from_entity(entity: Mapping[str, Any]) -> FeedEntry:
    return FeedEntry(
        position=as_int(entity["Position"]),
        kind=entity["Kind"],
        record_id=entity["RecordId"],
        deleted=bool(entity.get("Deleted", False)),
    )


def index_entity(tenant_id: str, row_key: str, **values: str) -> Entity:
    return {"PartitionKey": tenant_id, "RowKey": row_key, **values}


# ---- task rows (issue 5) ----------------------------------------------------------------------

def task_row(task_id: str) -> str:
    return f"{TASK_PREFIX}{key_part(task_id)}"


def task_user_prefix(user_id: str) -> str:
    return f"{TASK_USER_PREFIX}{key_part(user_id)}_"


def task_index_entity(task: CrmTask) -> Entity:
    return index_entity(task.tenant_id, task_user_prefix(task.assigned_to) + key_part(task.id), TaskId=task.id)


def task_to_entity(task: CrmTask) -> Entity:
    return {
        **_keys(task, task_row(task.id)),
        "AccountId": task.account_id,
        "AssignedTo": task.assigned_to,
        "Subject": task.subject,
        "Description": task.description,
        "DueDate": task.due_date.isoformat() if task.due_date else "",
        "DueAt": iso(task.due_at),
        "Status": task.status.value,
        "ModifiedAt": iso(task.modified_at),
    }


def task_from_entity(entity: Mapping[str, Any]) -> CrmTask:
    due_date = entity.get("DueDate") or ""
    return CrmTask(
        **_identity_of(entity),
        account_id=entity["AccountId"],
        assigned_to=entity["AssignedTo"],
        subject=entity.get("Subject", ""),
        description=entity.get("Description", ""),
        due_date=date.fromisoformat(due_date) if due_date else None,
        due_at=from_iso(entity.get("DueAt")),
        status=TaskStatus(entity.get("Status") or TaskStatus.OPEN.value),
        modified_at=from_iso(entity.get("ModifiedAt")),
    )
