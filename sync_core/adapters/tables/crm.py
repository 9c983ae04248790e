"""The CRM kept in Table Storage (the default CrmPort adapter).

One partition per tenant holds everything of that tenant, so that every write of a record is a
single entity group transaction together with its change-feed entry:

    feedcounter                               Position of the last feed entry (Int64)
    feed_{position:020d}                      Kind, RecordId, Deleted
    acct_{account_id}                         an account
    acctname_{normalised name}_{account_id}   name index row (find_accounts_by_name is a prefix query)
    contact_{contact_id}                      a contact (its ETag is the contact's `version`)
    email_{account_id}_{email}_{contact_id}   email index row (find_contacts_by_email is a prefix query)
    task_{task_id}                            a task (its ETag is the task's `version`)
    taskuser_{assigned_to}_{task_id}          assignee index row (tasks_assigned_to is a prefix query)

A write is [counter If-Match, insert feed row, the record's own operations, its index rows] in
one transaction. The counter goes first so that a writer who lost the race for a position is told
so by operation 0, re-reads the counter and retries; feed positions are therefore contiguous and a
position is visible only together with the record write it describes. No change can be lost if
the process dies between two writes, because there is no "between": it is one write.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

from azure.data.tables import TableServiceClient

from sync_core.kinds.contacts.accounts import normalise_company
from sync_core.adapters.tables.common import (
    Entity,
    NameFunction,
    Op,
    RequestCounter,
    Table,
    as_int,
    connect,
    etag_of,
    failed_op_index,
    from_iso,
    int64,
    iso,
    key_part,
)
from sync_core.domain.errors import (
    AlreadyExistsError,
    ConcurrencyError,
    InvalidRecordError,
    NotFoundError,
)
from sync_core.domain.models import Account, Address, CrmContact, CrmTask, FeedEntry, FeedPage, TaskStatus
from sync_core.settings import AppSettings

TABLE = "crmrecords"
COUNTER_ROW = "feedcounter"
FEED_PREFIX = "feed_"
ACCOUNT_PREFIX = "acct_"
ACCOUNT_NAME_PREFIX = "acctname_"
CONTACT_PREFIX = "contact_"
EMAIL_PREFIX = "email_"
TASK_PREFIX = "task_"
TASK_USER_PREFIX = "taskuser_"
# Racing writers each retry after losing a position; bounded so a stuck counter surfaces as an error.
MAX_FEED_ATTEMPTS = 60
# Keeps a contact's transaction (3 fixed operations + index rows) well inside the 100 limit.
MAX_EMAILS = 40


def normalise_email(email: str) -> str:
    return email.strip().casefold()


def _identity(base: str) -> str:
    return base


def _now() -> datetime:
    return datetime.now(timezone.utc)


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

def account_to_entity(account: Account) -> Entity:
    return {
        "PartitionKey": account.tenant_id,
        "RowKey": account_row(account.id),
        "Id": account.id,
        "Name": account.name,
        "OwnerUserId": account.owner_user_id or "",
    }


def account_from_entity(entity: Mapping[str, Any]) -> Account:
    return Account(
        id=entity["Id"],
        tenant_id=entity["PartitionKey"],
        name=entity["Name"],
        owner_user_id=entity.get("OwnerUserId") or None,
        version=etag_of(entity),
    )


def contact_to_entity(contact: CrmContact) -> Entity:
    return {
        "PartitionKey": contact.tenant_id,
        "RowKey": contact_row(contact.id),
        "Id": contact.id,
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
        id=entity["Id"],
        tenant_id=entity["PartitionKey"],
        account_id=entity["AccountId"],
        first_name=entity.get("FirstName", ""),
        last_name=entity.get("LastName", ""),
        emails=tuple(json.loads(entity.get("Emails") or "[]")),
        business_phone=entity.get("BusinessPhone", ""),
        mobile_phone=entity.get("MobilePhone", ""),
        job_title=entity.get("JobTitle", ""),
        address=Address.model_validate_json(entity.get("Address") or "{}"),
        notes=entity.get("Notes", ""),
        version=etag_of(entity),
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


def _index_entity(tenant_id: str, row_key: str, **values: str) -> Entity:
    return {"PartitionKey": tenant_id, "RowKey": row_key, **values}


class TableCrm:
    """CrmPort on Table Storage; see the module docstring for the layout."""

    def __init__(
        self,
        service: TableServiceClient | str,
        name: NameFunction = _identity,
        *,
        counter: RequestCounter | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.counter = counter or RequestCounter()
        self._table = Table(connect(service), name(TABLE), self.counter)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: AppSettings, counter: RequestCounter | None = None) -> TableCrm:
        return cls(settings.storage_connection_string, settings.storage_name, counter=counter)

    # ---- the change feed --------------------------------------------------------------------

    def read_changes(self, tenant_id: str, after: int, limit: int = 1000) -> FeedPage:
        """Feed entries with position > after, oldest first, at most `limit`: one range query."""
        rows = self._table.query_prefix(tenant_id, FEED_PREFIX, after=feed_row(after), max_items=limit)
        entries = tuple(feed_from_entity(row) for row in rows)
        return FeedPage(entries=entries, last_position=entries[-1].position if entries else after)

    def _commit_with_feed(
        self, tenant_id: str, kind: str, record_id: str, deleted: bool, record_ops: Sequence[Op]
    ) -> list[str | None]:
        """Commit `record_ops` with the next feed entry in one transaction; the ETags of record_ops."""
        return self._commit_many(tenant_id, [(kind, record_id, deleted, record_ops)])[0]

    def _commit_many(
        self, tenant_id: str, records: Sequence[tuple[str, str, bool, Sequence[Op]]]
    ) -> list[list[str | None]]:
        """Commit several records, each with its own consecutive feed entry, in ONE transaction
        (≤ 100 operations); returns each record's op ETags."""
        for attempt in range(MAX_FEED_ATTEMPTS):
            counter = self._table.get(tenant_id, COUNTER_ROW)
            first = (as_int(counter["Position"]) if counter is not None else 0) + 1
            last = first + len(records) - 1
            counter_entity = {"PartitionKey": tenant_id, "RowKey": COUNTER_ROW, "Position": int64(last)}
            ops: list[Op] = [Op("replace", counter_entity, etag_of(counter)) if counter is not None
                             else Op("create", counter_entity)]
            spans: list[tuple[int, int]] = []
            for offset, (kind, record_id, deleted, record_ops) in enumerate(records):
                entry = FeedEntry(position=first + offset, kind=kind, record_id=record_id, deleted=deleted)
                ops.append(Op("create", feed_to_entity(tenant_id, entry)))
                spans.append((len(ops), len(ops) + len(record_ops)))
                ops.extend(record_ops)
            try:
                etags = self._table.transact(ops)
                return [etags[start:end] for start, end in spans]
            except (ConcurrencyError, AlreadyExistsError) as exc:
                if failed_op_index(exc) != 0:
                    raise  # a record's own condition failed, not the race for a position
            # Another writer took this position: back off a little (jittered) and try the next one.
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise ConcurrencyError(f"feed counter of the tenant stayed contended for {MAX_FEED_ATTEMPTS} attempts")

    # ---- accounts ---------------------------------------------------------------------------

    def get_accounts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, Account]:
        found = self._table.get_many(tenant_id, (account_row(i) for i in ids))
        accounts = (account_from_entity(e) for e in found.values())
        return {a.id: a for a in accounts}

    def find_accounts_by_name(self, tenant_id: str, name: str) -> list[Account]:
        """Accounts whose name normalises like `name`, sorted by id (a deterministic order).
        A blank name (nothing but spaces and punctuation) matches nothing."""
        if not normalise_company(name):
            return []
        rows = self._table.query_prefix(tenant_id, account_name_prefix(name))
        ids = [row["AccountId"] for row in rows]
        return sorted(self.get_accounts(tenant_id, ids).values(), key=lambda a: a.id)

    def list_accounts(self, tenant_id: str) -> list[Account]:
        rows = self._table.query_prefix(tenant_id, ACCOUNT_PREFIX)
        return sorted((account_from_entity(row) for row in rows), key=lambda a: a.id)

    def create_account(self, tenant_id: str, name: str, owner_user_id: str | None) -> Account:
        account = Account(id=uuid.uuid4().hex, tenant_id=tenant_id, name=name, owner_user_id=owner_user_id)
        index = _index_entity(tenant_id, account_name_row(name, account.id), AccountId=account.id)
        etags = self._commit_with_feed(
            tenant_id, "account", account.id, False,
            [Op("create", account_to_entity(account)), Op("create", index)],
        )
        return account.model_copy(update={"version": etags[0]})

    def rename_account(self, tenant_id: str, account_id: str, name: str) -> Account:
        """A CRM user renames an account: the name index moves in the same transaction."""
        return self._write_account(tenant_id, account_id, name=name)

    def set_account_owner(self, tenant_id: str, account_id: str, owner_user_id: str | None) -> Account:
        return self._write_account(tenant_id, account_id, owner_user_id=owner_user_id)

    def _write_account(self, tenant_id: str, account_id: str, **changes: str | None) -> Account:
        entity = self._table.get(tenant_id, account_row(account_id))
        if entity is None:
            raise NotFoundError("the account does not exist")
        current = account_from_entity(entity)
        stored = current.model_copy(update=changes)
        ops = [Op("replace", account_to_entity(stored), current.version)]
        old_index, new_index = account_name_row(current.name, account_id), account_name_row(stored.name, account_id)
        if old_index != new_index:
            ops += [Op("delete", _index_entity(tenant_id, old_index)),
                    Op("create", _index_entity(tenant_id, new_index, AccountId=account_id))]
        etags = self._commit_with_feed(tenant_id, "account", account_id, False, ops)
        return stored.model_copy(update={"version": etags[0]})

    def _require_account(self, tenant_id: str, account_id: str) -> None:
        if self._table.get(tenant_id, account_row(account_id)) is None:
            raise NotFoundError("the contact's account does not exist")

    # ---- contacts ---------------------------------------------------------------------------

    def get_contacts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmContact]:
        found = self._table.get_many(tenant_id, (contact_row(i) for i in ids))
        contacts = (contact_from_entity(e) for e in found.values())
        return {c.id: c for c in contacts}

    def list_contacts(self, tenant_id: str, account_id: str | None = None, limit: int = 200) -> list[CrmContact]:
        """Contacts sorted by id, at most `limit`, optionally of one account (for screens/previews)."""
        extra, params = ("", {}) if account_id is None else (" and AccountId eq @acct", {"acct": account_id})
        rows = self._table.query_prefix(tenant_id, CONTACT_PREFIX, max_items=limit,
                                        extra_filter=extra, extra_parameters=params)
        return sorted((contact_from_entity(row) for row in rows), key=lambda c: c.id)

    def find_contacts_by_email(self, tenant_id: str, account_id: str, email: str) -> list[CrmContact]:
        """Contacts of the account holding `email` (case-insensitive), sorted by id."""
        if not email.strip():
            return []
        rows = self._table.query_prefix(tenant_id, email_prefix(account_id, email))
        ids = [row["ContactId"] for row in rows]
        return sorted(self.get_contacts(tenant_id, ids).values(), key=lambda c: c.id)

    def _email_ops(self, tenant_id: str, contact_id: str, old: set[str], new: set[str]) -> list[Op]:
        if len(new) > MAX_EMAILS:
            raise InvalidRecordError(f"a contact may hold at most {MAX_EMAILS} email addresses")
        removed = [Op("delete", _index_entity(tenant_id, row)) for row in sorted(old - new)]
        added = [Op("upsert", _index_entity(tenant_id, row, ContactId=contact_id)) for row in sorted(new - old)]
        return removed + added

    def create_contact(self, contact: CrmContact) -> CrmContact:
        """Insert `contact` (an empty id gets a new one); AlreadyExistsError when the id is taken."""
        stored = contact.model_copy(update={"id": contact.id or uuid.uuid4().hex, "modified_at": self._clock()})
        self._require_account(stored.tenant_id, stored.account_id)
        ops = [Op("create", contact_to_entity(stored)),
               *self._email_ops(stored.tenant_id, stored.id, set(), email_rows(stored))]
        etags = self._commit_with_feed(stored.tenant_id, "contact", stored.id, False, ops)
        return stored.model_copy(update={"version": etags[0]})

    def import_contacts(self, contacts: Sequence[CrmContact]) -> list[CrmContact]:
        """Bulk create (a CRM import, the demo seed, benchmarks): many contacts per transaction,
        each still with its own feed entry, so the sync sees exactly what one-by-one creates give."""
        stored = [c.model_copy(update={"id": c.id or uuid.uuid4().hex, "modified_at": self._clock()}) for c in contacts]
        by_tenant: dict[str, list[CrmContact]] = {}
        for contact in stored:
            by_tenant.setdefault(contact.tenant_id, []).append(contact)
        versions: dict[str, str] = {}
        for tenant_id, group in by_tenant.items():
            account_ids = {c.account_id for c in group}
            found = self.get_accounts(tenant_id, account_ids)
            if missing := account_ids - set(found):
                raise NotFoundError(f"{len(missing)} account(s) of the import do not exist")
            chunk: list[tuple[str, str, bool, Sequence[Op]]] = []
            size = 1
            for contact in group:
                ops = [Op("create", contact_to_entity(contact)),
                       *self._email_ops(tenant_id, contact.id, set(), email_rows(contact))]
                if size + 1 + len(ops) > Table.MAX_BATCH:
                    self._import_chunk(tenant_id, chunk, versions)
                    chunk, size = [], 1
                chunk.append(("contact", contact.id, False, ops))
                size += 1 + len(ops)
            self._import_chunk(tenant_id, chunk, versions)
        return [c.model_copy(update={"version": versions[c.id]}) for c in stored]

    def _import_chunk(self, tenant_id: str, chunk: Sequence[tuple[str, str, bool, Sequence[Op]]],
                      versions: dict[str, str]) -> None:
        if not chunk:
            return
        for (_, record_id, _, _), etags in zip(chunk, self._commit_many(tenant_id, chunk)):
            versions[record_id] = str(etags[0])

    def update_contact(self, contact: CrmContact) -> CrmContact:
        """Replace the contact If-Match `contact.version`: ConcurrencyError when stale."""
        current_entity = self._table.get(contact.tenant_id, contact_row(contact.id))
        if current_entity is None:
            raise NotFoundError("the contact does not exist")
        current = contact_from_entity(current_entity)
        if current.version != contact.version:
            raise ConcurrencyError("the contact changed since it was read (stale version)")
        if current.account_id != contact.account_id:
            self._require_account(contact.tenant_id, contact.account_id)
        stored = contact.model_copy(update={"modified_at": self._clock()})
        ops = [Op("replace", contact_to_entity(stored), contact.version),
               *self._email_ops(stored.tenant_id, stored.id, email_rows(current), email_rows(stored))]
        etags = self._commit_with_feed(stored.tenant_id, "contact", stored.id, False, ops)
        return stored.model_copy(update={"version": etags[0]})

    def delete_contact(self, tenant_id: str, contact_id: str) -> None:
        """Delete the contact and its index rows with a `deleted` feed entry; NotFoundError if absent."""
        current_entity = self._table.get(tenant_id, contact_row(contact_id))
        if current_entity is None:
            raise NotFoundError("the contact does not exist")
        current = contact_from_entity(current_entity)
        ops = [Op("delete", contact_to_entity(current), current.version),
               *self._email_ops(tenant_id, contact_id, email_rows(current), set())]
        self._commit_with_feed(tenant_id, "contact", contact_id, True, ops)

    # ---- tasks (issue 5) --------------------------------------------------------------------

    def feed_position(self, tenant_id: str) -> int:
        """The position of the newest feed entry (0 before the first write): one point read."""
        counter = self._table.get(tenant_id, COUNTER_ROW)
        return as_int(counter["Position"]) if counter is not None else 0

    def get_tasks(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmTask]:
        found = self._table.get_many(tenant_id, (task_row(i) for i in ids))
        tasks = (task_from_entity(e) for e in found.values())
        return {t.id: t for t in tasks}

    def tasks_assigned_to(self, tenant_id: str, user_id: str) -> list[CrmTask]:
        """The user's tasks, sorted by id: one prefix query on the assignee index, then point reads."""
        rows = self._table.query_prefix(tenant_id, task_user_prefix(user_id))
        ids = [row["TaskId"] for row in rows]
        return sorted(self.get_tasks(tenant_id, ids).values(), key=lambda t: t.id)

    def list_tasks(self, tenant_id: str, limit: int = 200) -> list[CrmTask]:
        """Tasks sorted by id, at most `limit` (for screens)."""
        rows = self._table.query_prefix(tenant_id, TASK_PREFIX, max_items=limit)
        return sorted((task_from_entity(row) for row in rows), key=lambda t: t.id)

    def create_task(self, task: CrmTask) -> CrmTask:
        """Insert `task` (an empty id gets a new one) with its index row and feed entry in one transaction;
        AlreadyExistsError when the id is taken, NotFoundError when its account does not exist."""
        stored = task.model_copy(update={"id": task.id or uuid.uuid4().hex, "modified_at": self._clock()})
        self._require_account(stored.tenant_id, stored.account_id)
        ops = [Op("create", task_to_entity(stored)), Op("create", task_index_entity(stored))]
        etags = self._commit_with_feed(stored.tenant_id, "task", stored.id, False, ops)
        return stored.model_copy(update={"version": etags[0]})

    def import_tasks(self, tasks: Sequence[CrmTask]) -> list[CrmTask]:
        """Bulk create (seeds, benchmarks): many tasks per transaction, each with its own feed entry."""
        stored = [t.model_copy(update={"id": t.id or uuid.uuid4().hex, "modified_at": self._clock()}) for t in tasks]
        versions: dict[str, str] = {}
        by_tenant: dict[str, list[CrmTask]] = {}
        for task in stored:
            by_tenant.setdefault(task.tenant_id, []).append(task)
        for tenant_id, group in by_tenant.items():
            account_ids = {t.account_id for t in group}
            if missing := account_ids - set(self.get_accounts(tenant_id, account_ids)):
                raise NotFoundError(f"{len(missing)} account(s) of the import do not exist")
            per_batch = (Table.MAX_BATCH - 1) // 3  # counter + (feed, task, index) per task
            for start in range(0, len(group), per_batch):
                chunk = [("task", t.id, False, [Op("create", task_to_entity(t)), Op("create", task_index_entity(t))])
                         for t in group[start:start + per_batch]]
                self._import_chunk(tenant_id, chunk, versions)
        return [t.model_copy(update={"version": versions[t.id]}) for t in stored]

    def update_task(self, task: CrmTask) -> CrmTask:
        """Replace the task If-Match `task.version` (ConcurrencyError when stale); a new assignee moves its
        index row in the same transaction."""
        current_entity = self._table.get(task.tenant_id, task_row(task.id))
        if current_entity is None:
            raise NotFoundError("the task does not exist")
        current = task_from_entity(current_entity)
        if current.version != task.version:
            raise ConcurrencyError("the task changed since it was read (stale version)")
        if current.account_id != task.account_id:
            self._require_account(task.tenant_id, task.account_id)
        stored = task.model_copy(update={"modified_at": self._clock()})
        ops = [Op("replace", task_to_entity(stored), task.version)]
        if current.assigned_to != stored.assigned_to:
            ops += [Op("delete", task_index_entity(current)), Op("create", task_index_entity(stored))]
        etags = self._commit_with_feed(stored.tenant_id, "task", stored.id, False, ops)
        return stored.model_copy(update={"version": etags[0]})

    def delete_task(self, tenant_id: str, task_id: str) -> None:
        """Delete the task and its index row with a `deleted` feed entry; NotFoundError if absent."""
        current_entity = self._table.get(tenant_id, task_row(task_id))
        if current_entity is None:
            raise NotFoundError("the task does not exist")
        current = task_from_entity(current_entity)
        ops = [Op("delete", task_to_entity(current), current.version), Op("delete", task_index_entity(current))]
        self._commit_with_feed(tenant_id, "task", task_id, True, ops)


# ---- task rows (issue 5) ----------------------------------------------------------------------

def task_row(task_id: str) -> str:
    return f"{TASK_PREFIX}{key_part(task_id)}"


def task_user_prefix(user_id: str) -> str:
    return f"{TASK_USER_PREFIX}{key_part(user_id)}_"


def task_index_entity(task: CrmTask) -> Entity:
    return _index_entity(task.tenant_id, task_user_prefix(task.assigned_to) + key_part(task.id), TaskId=task.id)


def task_to_entity(task: CrmTask) -> Entity:
    return {
        "PartitionKey": task.tenant_id,
        "RowKey": task_row(task.id),
        "Id": task.id,
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
        id=entity["Id"],
        tenant_id=entity["PartitionKey"],
        account_id=entity["AccountId"],
        assigned_to=entity["AssignedTo"],
        subject=entity.get("Subject", ""),
        description=entity.get("Description", ""),
        due_date=date.fromisoformat(due_date) if due_date else None,
        due_at=from_iso(entity.get("DueAt")),
        status=TaskStatus(entity.get("Status") or TaskStatus.OPEN.value),
        version=etag_of(entity),
        modified_at=from_iso(entity.get("ModifiedAt")),
    )
