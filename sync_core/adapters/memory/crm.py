"""CrmPort and CrmTasksPort in memory, with Table Storage's rules: ETag-conditional updates (a stale version
raises ConcurrencyError), inserts of an existing id raise AlreadyExistsError, opaque ids, a new version on
every write, and every write's change-feed entry appended in the same locked step as the record.
tests/contracts runs the same suites against it and TableCrm on Azurite.
"""
from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from sync_core.adapters.memory.changes import Ids, utc_now
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError, NotFoundError
from sync_core.domain.models import Account, CrmContact, CrmTask, FeedEntry, FeedPage
from sync_core.kinds.contacts.accounts import normalise_company

R = TypeVar("R", CrmContact, CrmTask)
_ID_PREFIX = {"contact": "con-", "task": "task-"}


class MemoryCrm:
    """The CRM's accounts, contacts and tasks of every tenant, with one change feed per tenant; thread-safe."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._ids = Ids("crm")
        self.accounts: dict[tuple[str, str], Account] = {}
        self.contacts: dict[tuple[str, str], CrmContact] = {}
        self.tasks: dict[tuple[str, str], CrmTask] = {}
        self.feed: dict[str, list[FeedEntry]] = {}

    def _append(self, tenant_id: str, kind: str, record_id: str, deleted: bool = False) -> None:
        entries = self.feed.setdefault(tenant_id, [])
        position = entries[-1].position + 1 if entries else 1
        entries.append(FeedEntry(position=position, kind=kind, record_id=record_id, deleted=deleted))

    def _require_account(self, tenant_id: str, account_id: str) -> None:
        if (tenant_id, account_id) not in self.accounts:
            raise NotFoundError("the record's account does not exist")

    # -- contacts and tasks are read and written alike: `kind` names the record in errors and in the feed
    def _get(self, table: dict[tuple[str, str], R], tenant_id: str, ids: Iterable[str]) -> dict[str, R]:
        with self._lock:
            found = (table.get((tenant_id, i)) for i in ids)
            return {r.id: r for r in found if r is not None}

    def _create(self, table: dict[tuple[str, str], R], record: R, kind: str) -> R:
        with self._lock:
            stored = record.model_copy(update={"id": record.id or self._ids(_ID_PREFIX[kind]), "version": self._ids("v"),
                                               "modified_at": self._clock()})
            if (stored.tenant_id, stored.id) in table:
                raise AlreadyExistsError(f"a {kind} with this id exists")
            self._require_account(stored.tenant_id, stored.account_id)
            table[(stored.tenant_id, stored.id)] = stored
            self._append(stored.tenant_id, kind, stored.id)
            return stored

    def _update(self, table: dict[tuple[str, str], R], record: R, kind: str) -> R:
        with self._lock:
            current = table.get((record.tenant_id, record.id))
            if current is None:
                raise NotFoundError(f"the {kind} does not exist")
            if current.version != record.version:
                raise ConcurrencyError(f"the {kind} changed since it was read (stale version)")
            self._require_account(record.tenant_id, record.account_id)
            stored = record.model_copy(update={"version": self._ids("v"), "modified_at": self._clock()})
            table[(record.tenant_id, record.id)] = stored
            self._append(record.tenant_id, kind, record.id)
            return stored

    def _delete(self, table: dict[tuple[str, str], R], tenant_id: str, record_id: str, kind: str) -> None:
        with self._lock:
            if table.pop((tenant_id, record_id), None) is None:
                raise NotFoundError(f"the {kind} does not exist")
            self._append(tenant_id, kind, record_id, deleted=True)

    # -- the feed
    def read_changes(self, tenant_id: str, after: int, limit: int = 1000) -> FeedPage:
        with self._lock:
            entries = self.feed.get(tenant_id, [])
            start = bisect.bisect_right([e.position for e in entries], after)
            page = tuple(entries[start:start + limit])
            return FeedPage(entries=page, last_position=page[-1].position if page else after)

    def feed_position(self, tenant_id: str) -> int:
        with self._lock:
            entries = self.feed.get(tenant_id, [])
            return entries[-1].position if entries else 0

    # -- accounts
    def get_accounts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, Account]:
        with self._lock:
            found = (self.accounts.get((tenant_id, i)) for i in ids)
            return {a.id: a for a in found if a is not None}

    def find_accounts_by_name(self, tenant_id: str, name: str) -> list[Account]:
        with self._lock:
            key = normalise_company(name)
            if not key:
                return []
            return sorted((a for (t, _), a in self.accounts.items() if t == tenant_id and normalise_company(a.name) == key),
                          key=lambda a: a.id)

    def list_accounts(self, tenant_id: str) -> list[Account]:
        with self._lock:
            return sorted((a for (t, _), a in self.accounts.items() if t == tenant_id), key=lambda a: a.id)

    def create_account(self, tenant_id: str, name: str, owner_user_id: str | None) -> Account:
        with self._lock:
            account = Account(id=self._ids("acc-"), tenant_id=tenant_id, name=name, owner_user_id=owner_user_id,
                              version=self._ids("v"))
            self.accounts[(tenant_id, account.id)] = account
            self._append(tenant_id, "account", account.id)
            return account

    def rename_account(self, tenant_id: str, account_id: str, name: str) -> Account:
        """A CRM user renames an account (not a port method: the CRM's own edit, as TableCrm has it)."""
        return self._write_account(tenant_id, account_id, name=name)

    def set_account_owner(self, tenant_id: str, account_id: str, owner_user_id: str | None) -> Account:
        return self._write_account(tenant_id, account_id, owner_user_id=owner_user_id)

    def _write_account(self, tenant_id: str, account_id: str, **changes: str | None) -> Account:
        with self._lock:
            current = self.accounts.get((tenant_id, account_id))
            if current is None:
                raise NotFoundError("the account does not exist")
            stored = current.model_copy(update={**changes, "version": self._ids("v")})
            self.accounts[(tenant_id, account_id)] = stored
            self._append(tenant_id, "account", account_id)
            return stored

    # -- contacts
    def get_contacts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmContact]:
        return self._get(self.contacts, tenant_id, ids)

    def list_contacts(self, tenant_id: str, account_id: str | None = None, limit: int = 200) -> list[CrmContact]:
        with self._lock:
            chosen = (c for (t, _), c in self.contacts.items()
                      if t == tenant_id and (account_id is None or c.account_id == account_id))
            return sorted(chosen, key=lambda c: c.id)[:limit]

    def find_contacts_by_email(self, tenant_id: str, account_id: str, email: str) -> list[CrmContact]:
        with self._lock:
            wanted = email.strip().casefold()
            if not wanted:
                return []
            return sorted((c for (t, _), c in self.contacts.items()
                           if t == tenant_id and c.account_id == account_id
                           and any(e.strip().casefold() == wanted for e in c.emails)), key=lambda c: c.id)

    def create_contact(self, contact: CrmContact) -> CrmContact:
        return self._create(self.contacts, contact, "contact")

    def update_contact(self, contact: CrmContact) -> CrmContact:
        return self._update(self.contacts, contact, "contact")

    def delete_contact(self, tenant_id: str, contact_id: str) -> None:
        self._delete(self.contacts, tenant_id, contact_id, "contact")

    # -- tasks: their writes feed the same feed, kind "task"
    def get_tasks(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmTask]:
        return self._get(self.tasks, tenant_id, ids)

    def tasks_assigned_to(self, tenant_id: str, user_id: str) -> list[CrmTask]:
        with self._lock:
            return sorted((t for (tn, _), t in self.tasks.items() if tn == tenant_id and t.assigned_to == user_id),
                          key=lambda t: t.id)

    def create_task(self, task: CrmTask) -> CrmTask:
        return self._create(self.tasks, task, "task")

    def delete_task(self, tenant_id: str, task_id: str) -> None:
        self._delete(self.tasks, tenant_id, task_id, "task")

    def update_task(self, task: CrmTask) -> CrmTask:
        return self._update(self.tasks, task, "task")
