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

import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import (
    NameFunction, Op, RequestCounter, Table, TableAdapter, as_int, etag_of, failed_op_index, int64, same_name,
)
from sync_core.adapters.tables.crm_rows import (
    ACCOUNT_PREFIX, CONTACT_PREFIX, COUNTER_ROW, FEED_PREFIX, TABLE, TASK_PREFIX, account_from_entity,
    account_name_prefix, account_name_row, account_row, account_to_entity, contact_from_entity, contact_row,
    contact_to_entity, email_prefix, email_rows, feed_from_entity, feed_row, feed_to_entity, index_entity,
    task_from_entity, task_index_entity, task_row, task_to_entity, task_user_prefix,
)
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError, InvalidRecordError, NotFoundError
from sync_core.domain.models import Account, CrmContact, CrmTask, FeedEntry, FeedPage
from sync_core.kinds.contacts.accounts import normalise_company

# Racing writers each retry after losing a position; bounded so a stuck counter surfaces as an error.
MAX_FEED_ATTEMPTS = 60
# Keeps a contact's transaction (3 fixed operations + index rows) well inside the 100 limit.
MAX_EMAILS = 40

Record = TypeVar("Record", CrmContact, CrmTask)
Row = TypeVar("Row", Account, CrmContact, CrmTask)
# One record of a transaction: (kind, record id, deleted, the record's own operations).
RecordWrite = tuple[str, str, bool, Sequence[Op]]


def _now() -> datetime:
    return datetime.now(timezone.utc)


class TableCrm(TableAdapter):
    """CrmPort on Table Storage; see the module docstring for the layout."""

    def __init__(
        self,
        service: TableServiceClient | str,
        name: NameFunction = same_name,
        *,
        counter: RequestCounter | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        super().__init__(service, name, counter=counter)
        self._table = self._open(TABLE)
        self._clock = clock

    # ---- the change feed --------------------------------------------------------------------

    def read_changes(self, tenant_id: str, after: int, limit: int = 1000) -> FeedPage:
        """Feed entries with position > after, oldest first, at most `limit`: one range query."""
        rows = self._table.query_prefix(tenant_id, FEED_PREFIX, after=feed_row(after), max_items=limit)
        entries = tuple(feed_from_entity(row) for row in rows)
        return FeedPage(entries=entries, last_position=entries[-1].position if entries else after)

    def feed_position(self, tenant_id: str) -> int:
        """The position of the newest feed entry (0 before the first write): one point read."""
        counter = self._table.get(tenant_id, COUNTER_ROW)
        return as_int(counter["Position"]) if counter is not None else 0

    def _commit_with_feed(
        self, tenant_id: str, kind: str, record_id: str, deleted: bool, record_ops: Sequence[Op]
    ) -> list[str | None]:
        """Commit `record_ops` with the next feed entry in one transaction; the ETags of record_ops."""
        return self._commit_many(tenant_id, [(kind, record_id, deleted, record_ops)])[0]

    def _commit_many(self, tenant_id: str, records: Sequence[RecordWrite]) -> list[list[str | None]]:
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

    # ---- what contacts and tasks share --------------------------------------------------------

    def _read_rows(self, tenant_id: str, rows: Iterable[str], from_entity: Callable[[Any], Any]) -> list[Any]:
        return [from_entity(entity) for entity in self._table.get_many(tenant_id, rows).values()]

    def _by_index(self, tenant_id: str, prefix: str, id_property: str,
                  get: Callable[[str, list[str]], Mapping[str, Any]]) -> list[Any]:
        """The records an index prefix names, sorted by id: one prefix query, then point reads."""
        ids = [row[id_property] for row in self._table.query_prefix(tenant_id, prefix)]
        return sorted(get(tenant_id, ids).values(), key=lambda record: record.id)

    def _listed(self, tenant_id: str, prefix: str, from_entity: Callable[[Any], Any], limit: int | None = None,
                extra: str = "", params: Mapping[str, Any] | None = None) -> list[Any]:
        rows = self._table.query_prefix(tenant_id, prefix, max_items=limit, extra_filter=extra, extra_parameters=params)
        return sorted((from_entity(row) for row in rows), key=lambda record: record.id)

    def _existing(self, tenant_id: str, row: str, from_entity: Callable[[Any], Row], what: str) -> Row:
        entity = self._table.get(tenant_id, row)
        if entity is None:
            raise NotFoundError(f"the {what} does not exist")
        return from_entity(entity)

    def _new(self, record: Record) -> Record:
        """The record as stored by a create: an empty id gets a new one; its account must exist."""
        stored = record.model_copy(update={"id": record.id or uuid.uuid4().hex, "modified_at": self._clock()})
        self._require_account(stored.tenant_id, stored.account_id)
        return stored

    def _replacing(self, record: Record, row: str, from_entity: Callable[[Any], Record],
                   what: str) -> tuple[Record, Record]:
        """(what is stored now, what `record` will be stored as): ConcurrencyError when record.version is stale."""
        current = self._existing(record.tenant_id, row, from_entity, what)
        if current.version != record.version:
            raise ConcurrencyError(f"the {what} changed since it was read (stale version)")
        if current.account_id != record.account_id:
            self._require_account(record.tenant_id, record.account_id)
        return current, record.model_copy(update={"modified_at": self._clock()})

    def _write(self, record: Record, kind: str, ops: Sequence[Op]) -> Record:
        etags = self._commit_with_feed(record.tenant_id, kind, record.id, False, ops)
        return record.model_copy(update={"version": etags[0]})

    def _import(self, records: Sequence[Record], kind: str,
                ops_of: Callable[[Record], Sequence[Op]]) -> list[Record]:
        """Bulk create: many records per transaction, each still with its own feed entry, so the sync
        sees exactly what one-by-one creates give."""
        stored = [r.model_copy(update={"id": r.id or uuid.uuid4().hex, "modified_at": self._clock()}) for r in records]
        by_tenant: dict[str, list[Record]] = {}
        for record in stored:
            by_tenant.setdefault(record.tenant_id, []).append(record)
        versions: dict[str, str] = {}
        for tenant_id, group in by_tenant.items():
            account_ids = {r.account_id for r in group}
            if missing := account_ids - set(self.get_accounts(tenant_id, account_ids)):
                raise NotFoundError(f"{len(missing)} account(s) of the import do not exist")
            chunk: list[RecordWrite] = []
            size = 1  # the feed counter
            for record in group:
                ops = ops_of(record)
                if size + 1 + len(ops) > Table.MAX_BATCH:
                    self._import_chunk(tenant_id, chunk, versions)
                    chunk, size = [], 1
                chunk.append((kind, record.id, False, ops))
                size += 1 + len(ops)
            self._import_chunk(tenant_id, chunk, versions)
        return [r.model_copy(update={"version": versions[r.id]}) for r in stored]

    def _import_chunk(self, tenant_id: str, chunk: Sequence[RecordWrite], versions: dict[str, str]) -> None:
        if not chunk:
            return
        for (_, record_id, _, _), etags in zip(chunk, self._commit_many(tenant_id, chunk)):
            versions[record_id] = str(etags[0])

    # ---- accounts ---------------------------------------------------------------------------

    def get_accounts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, Account]:
        return {a.id: a for a in self._read_rows(tenant_id, (account_row(i) for i in ids), account_from_entity)}

    def find_accounts_by_name(self, tenant_id: str, name: str) -> list[Account]:
        """Accounts whose name normalises like `name`, sorted by id (a deterministic order).
        A blank name (nothing but spaces and punctuation) matches nothing."""
        if not normalise_company(name):
            return []
        return self._by_index(tenant_id, account_name_prefix(name), "AccountId", self.get_accounts)

    def list_accounts(self, tenant_id: str) -> list[Account]:
        return self._listed(tenant_id, ACCOUNT_PREFIX, account_from_entity)

    def create_account(self, tenant_id: str, name: str, owner_user_id: str | None) -> Account:
        account = Account(id=uuid.uuid4().hex, tenant_id=tenant_id, name=name, owner_user_id=owner_user_id)
        index = index_entity(tenant_id, account_name_row(name, account.id), AccountId=account.id)
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
        current = self._existing(tenant_id, account_row(account_id), account_from_entity, "account")
        stored = current.model_copy(update=changes)
        ops = [Op("replace", account_to_entity(stored), current.version)]
        old_index, new_index = account_name_row(current.name, account_id), account_name_row(stored.name, account_id)
        if old_index != new_index:
            ops += [Op("delete", index_entity(tenant_id, old_index)),
                    Op("create", index_entity(tenant_id, new_index, AccountId=account_id))]
        etags = self._commit_with_feed(tenant_id, "account", account_id, False, ops)
        return stored.model_copy(update={"version": etags[0]})

    def _require_account(self, tenant_id: str, account_id: str) -> None:
        if self._table.get(tenant_id, account_row(account_id)) is None:
            raise NotFoundError("the contact's account does not exist")

    # ---- contacts ---------------------------------------------------------------------------

    def get_contacts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmContact]:
        return {c.id: c for c in self._read_rows(tenant_id, (contact_row(i) for i in ids), contact_from_entity)}

    def list_contacts(self, tenant_id: str, account_id: str | None = None, limit: int = 200) -> list[CrmContact]:
        """Contacts sorted by id, at most `limit`, optionally of one account (for screens/previews)."""
        extra, params = ("", {}) if account_id is None else (" and AccountId eq @acct", {"acct": account_id})
        return self._listed(tenant_id, CONTACT_PREFIX, contact_from_entity, limit, extra, params)

    def find_contacts_by_email(self, tenant_id: str, account_id: str, email: str) -> list[CrmContact]:
        """Contacts of the account holding `email` (case-insensitive), sorted by id."""
        if not email.strip():
            return []
        return self._by_index(tenant_id, email_prefix(account_id, email), "ContactId", self.get_contacts)

    def _email_ops(self, tenant_id: str, contact_id: str, old: set[str], new: set[str]) -> list[Op]:
        if len(new) > MAX_EMAILS:
            raise InvalidRecordError(f"a contact may hold at most {MAX_EMAILS} email addresses")
        removed = [Op("delete", index_entity(tenant_id, row)) for row in sorted(old - new)]
        added = [Op("upsert", index_entity(tenant_id, row, ContactId=contact_id)) for row in sorted(new - old)]
        return removed + added

    def _new_contact_ops(self, contact: CrmContact) -> list[Op]:
        return [Op("create", contact_to_entity(contact)),
                *self._email_ops(contact.tenant_id, contact.id, set(), email_rows(contact))]

    def create_contact(self, contact: CrmContact) -> CrmContact:
        """Insert `contact` (an empty id gets a new one); AlreadyExistsError when the id is taken."""
        stored = self._new(contact)
        return self._write(stored, "contact", self._new_contact_ops(stored))

    def import_contacts(self, contacts: Sequence[CrmContact]) -> list[CrmContact]:
        """Bulk create (a CRM import, the demo seed, benchmarks)."""
        return self._import(contacts, "contact", self._new_contact_ops)

    def update_contact(self, contact: CrmContact) -> CrmContact:
        """Replace the contact If-Match `contact.version`: ConcurrencyError when stale."""
        current, stored = self._replacing(contact, contact_row(contact.id), contact_from_entity, "contact")
        ops = [Op("replace", contact_to_entity(stored), contact.version),
               *self._email_ops(stored.tenant_id, stored.id, email_rows(current), email_rows(stored))]
        return self._write(stored, "contact", ops)

    def delete_contact(self, tenant_id: str, contact_id: str) -> None:
        """Delete the contact and its index rows with a `deleted` feed entry; NotFoundError if absent."""
        current = self._existing(tenant_id, contact_row(contact_id), contact_from_entity, "contact")
        ops = [Op("delete", contact_to_entity(current), current.version),
               *self._email_ops(tenant_id, contact_id, email_rows(current), set())]
        self._commit_with_feed(tenant_id, "contact", contact_id, True, ops)

    # ---- tasks (issue 5) --------------------------------------------------------------------

    def get_tasks(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmTask]:
        return {t.id: t for t in self._read_rows(tenant_id, (task_row(i) for i in ids), task_from_entity)}

    def tasks_assigned_to(self, tenant_id: str, user_id: str) -> list[CrmTask]:
        """The user's tasks, sorted by id: one prefix query on the assignee index, then point reads."""
        return self._by_index(tenant_id, task_user_prefix(user_id), "TaskId", self.get_tasks)

    def list_tasks(self, tenant_id: str, limit: int = 200) -> list[CrmTask]:
        """Tasks sorted by id, at most `limit` (for screens)."""
        return self._listed(tenant_id, TASK_PREFIX, task_from_entity, limit)

    @staticmethod
    def _new_task_ops(task: CrmTask) -> list[Op]:
        return [Op("create", task_to_entity(task)), Op("create", task_index_entity(task))]

    def create_task(self, task: CrmTask) -> CrmTask:
        """Insert `task` (an empty id gets a new one) with its index row and feed entry in one transaction;
        AlreadyExistsError when the id is taken, NotFoundError when its account does not exist."""
        stored = self._new(task)
        return self._write(stored, "task", self._new_task_ops(stored))

    def import_tasks(self, tasks: Sequence[CrmTask]) -> list[CrmTask]:
        """Bulk create (seeds, benchmarks): many tasks per transaction, each with its own feed entry."""
        return self._import(tasks, "task", self._new_task_ops)

    def update_task(self, task: CrmTask) -> CrmTask:
        """Replace the task If-Match `task.version` (ConcurrencyError when stale); a new assignee moves its
        index row in the same transaction."""
        current, stored = self._replacing(task, task_row(task.id), task_from_entity, "task")
        ops = [Op("replace", task_to_entity(stored), task.version)]
        if current.assigned_to != stored.assigned_to:
            ops += [Op("delete", task_index_entity(current)), Op("create", task_index_entity(stored))]
        return self._write(stored, "task", ops)

    def delete_task(self, tenant_id: str, task_id: str) -> None:
        """Delete the task and its index row with a `deleted` feed entry; NotFoundError if absent."""
        current = self._existing(tenant_id, task_row(task_id), task_from_entity, "task")
        ops = [Op("delete", task_to_entity(current), current.version), Op("delete", task_index_entity(current))]
        self._commit_with_feed(tenant_id, "task", task_id, True, ops)
