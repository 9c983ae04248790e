"""In-memory CRM, Outlook and state store that enforce the real rules (fakes, not mocks).

Each keeps the rules the engine must cope with: ETag-conditional writes (stale → ConcurrencyError),
inserts of existing records (→ AlreadyExistsError), opaque ids, a new version/changeKey on every write,
the CRM change feed written in the same step as the record, Graph delta semantics (removals with reasons,
items moved in reported as new, opaque delta tokens that can be expired), and injected failures: per call
(before or after the write took effect) and per batch item (throttled with Retry-After, transient,
rejected). Request counters make "exactly one Graph call" and "storage reads independent of size" testable.

`FakeCrm` and `FakeStateStore` run the same contract suites as the Table Storage adapters
(tests/contracts); `FakeMicrosoft` stands in for the Graph adapter in the engine's tests.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sync_core.kinds.contacts import mapping
from sync_core.kinds.contacts.accounts import normalise_company
from sync_core.domain.errors import (
    AlreadyExistsError,
    ConcurrencyError,
    DeltaExpiredError,
    InvalidRecordError,
    LeaseHeldError,
    NotFoundError,
    SyncError,
)
from sync_core.domain.models import (
    Account,
    ContactFields,
    CrmContact,
    CrmTask,
    Cursor,
    DeltaResult,
    FeedEntry,
    FeedPage,
    Lease,
    Link,
    MsChange,
    MsContact,
    MsTask,
    QuarantineEntry,
    RunRecord,
    TaskChange,
    TaskDeltaResult,
    TaskFields,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.ports import ITEM_GONE, TaskUpdate, TaskWriteResult, WriteResult
from sync_core.kinds.tasks.mapping import (
    TASK_ID_PROPERTY,
    at_local,
    event_create_body,
    event_patch_body,
    graph_to_task,
    todo_create_body,
    todo_patch_body,
    user_zone,
)


class SimulatedCrash(BaseException):
    """The process died here. A BaseException, so no `except Exception` in the code under test catches it."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _Ids:
    """Opaque, deterministic ids and version tokens (deterministic so hypothesis can replay a run)."""

    def __init__(self, salt: str) -> None:
        self._salt = salt
        self._next = 0

    def __call__(self, prefix: str = "") -> str:
        self._next += 1
        return prefix + hashlib.sha1(f"{self._salt}:{self._next}".encode()).hexdigest()[:16]


# --- injected failures --------------------------------------------------------------------------------

@dataclass
class Fault:
    """Raise `error` on the next `times` calls of `method` (matching `when`, if given). With `after_write`
    the call's writes happen first: the caller cannot tell whether it worked (a timeout, a crash)."""

    method: str
    error: BaseException
    after_write: bool = False
    times: int = 1
    when: Callable[..., bool] | None = None


class Faults:
    def __init__(self) -> None:
        self._armed: list[Fault] = []

    def inject(self, method: str, error: BaseException, *, after_write: bool = False, times: int = 1,
               when: Callable[..., bool] | None = None) -> None:
        self._armed.append(Fault(method, error, after_write, times, when))

    def clear(self) -> None:
        self._armed.clear()

    def check(self, method: str, after_write: bool, *args: Any) -> None:
        for fault in self._armed:
            if fault.method != method or fault.after_write != after_write or fault.times <= 0:
                continue
            if fault.when is not None and not fault.when(*args):
                continue
            fault.times -= 1
            raise fault.error


# --- the CRM ------------------------------------------------------------------------------------------

class FakeCrm:
    """CrmPort in memory, thread-safe. Every write appends its FeedEntry in the same locked step.

    Test helpers acting as a CRM user (`add_account`, `add_contact`, `edit_contact`, `rename_account`,
    `set_account_owner`, `remove_contact`) go through the same write paths, so they feed the feed too.
    """

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._ids = _Ids("crm")
        self.accounts: dict[tuple[str, str], Account] = {}
        self.contacts: dict[tuple[str, str], CrmContact] = {}
        self.feed: dict[str, list[FeedEntry]] = {}
        self.calls: Counter[str] = Counter()
        self.faults = Faults()
        self._as_user = False

    # -- plumbing
    def _enter(self, method: str, *args: Any) -> None:
        self.calls[method] += 1
        if not self._as_user:
            self.faults.check(method, False, *args)

    def _leave(self, method: str, *args: Any) -> None:
        if not self._as_user:
            self.faults.check(method, True, *args)

    @contextmanager
    def _user(self) -> Iterator[None]:
        """The CRM's own user at work: injected faults are meant for the sync, not for test setup."""
        with self._lock:
            self._as_user = True
            try:
                yield
            finally:
                self._as_user = False

    def _append(self, tenant_id: str, kind: str, record_id: str, deleted: bool = False) -> None:
        entries = self.feed.setdefault(tenant_id, [])
        position = entries[-1].position + 1 if entries else 1
        entries.append(FeedEntry(position=position, kind=kind, record_id=record_id, deleted=deleted))

    def _require_account(self, tenant_id: str, account_id: str) -> None:
        if (tenant_id, account_id) not in self.accounts:
            raise NotFoundError("the contact's account does not exist")

    # -- CrmPort
    def read_changes(self, tenant_id: str, after: int, limit: int = 1000) -> FeedPage:
        with self._lock:
            self._enter("read_changes", tenant_id, after)
            entries = self.feed.get(tenant_id, [])
            start = bisect.bisect_right([e.position for e in entries], after)
            page = tuple(entries[start:start + limit])
            return FeedPage(entries=page, last_position=page[-1].position if page else after)

    def get_contacts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmContact]:
        with self._lock:
            self._enter("get_contacts", tenant_id)
            found = (self.contacts.get((tenant_id, i)) for i in ids)
            return {c.id: c for c in found if c is not None}

    def get_accounts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, Account]:
        with self._lock:
            self._enter("get_accounts", tenant_id)
            found = (self.accounts.get((tenant_id, i)) for i in ids)
            return {a.id: a for a in found if a is not None}

    def find_accounts_by_name(self, tenant_id: str, name: str) -> list[Account]:
        with self._lock:
            self._enter("find_accounts_by_name", tenant_id, name)
            key = normalise_company(name)
            if not key:
                return []
            return sorted((a for (t, _), a in self.accounts.items() if t == tenant_id and normalise_company(a.name) == key),
                          key=lambda a: a.id)

    def list_accounts(self, tenant_id: str) -> list[Account]:
        with self._lock:
            self._enter("list_accounts", tenant_id)
            return sorted((a for (t, _), a in self.accounts.items() if t == tenant_id), key=lambda a: a.id)

    def list_contacts(self, tenant_id: str, account_id: str | None = None, limit: int = 200) -> list[CrmContact]:
        with self._lock:
            self._enter("list_contacts", tenant_id, account_id)
            chosen = (c for (t, _), c in self.contacts.items()
                      if t == tenant_id and (account_id is None or c.account_id == account_id))
            return sorted(chosen, key=lambda c: c.id)[:limit]

    def create_account(self, tenant_id: str, name: str, owner_user_id: str | None) -> Account:
        with self._lock:
            self._enter("create_account", tenant_id, name)
            account = Account(id=self._ids("acc-"), tenant_id=tenant_id, name=name, owner_user_id=owner_user_id,
                              version=self._ids("v"))
            self.accounts[(tenant_id, account.id)] = account
            self._append(tenant_id, "account", account.id)
            self._leave("create_account", tenant_id, name)
            return account

    def create_contact(self, contact: CrmContact) -> CrmContact:
        with self._lock:
            self._enter("create_contact", contact)
            stored = contact.model_copy(update={"id": contact.id or self._ids("con-"), "version": self._ids("v"),
                                                "modified_at": self._clock()})
            if (stored.tenant_id, stored.id) in self.contacts:
                raise AlreadyExistsError("a contact with this id exists")
            self._require_account(stored.tenant_id, stored.account_id)
            self.contacts[(stored.tenant_id, stored.id)] = stored
            self._append(stored.tenant_id, "contact", stored.id)
            self._leave("create_contact", contact)
            return stored

    def update_contact(self, contact: CrmContact) -> CrmContact:
        with self._lock:
            self._enter("update_contact", contact)
            current = self.contacts.get((contact.tenant_id, contact.id))
            if current is None:
                raise NotFoundError("the contact does not exist")
            if current.version != contact.version:
                raise ConcurrencyError("the contact changed since it was read (stale version)")
            self._require_account(contact.tenant_id, contact.account_id)
            stored = contact.model_copy(update={"version": self._ids("v"), "modified_at": self._clock()})
            self.contacts[(contact.tenant_id, contact.id)] = stored
            self._append(contact.tenant_id, "contact", contact.id)
            self._leave("update_contact", contact)
            return stored

    def delete_contact(self, tenant_id: str, contact_id: str) -> None:
        with self._lock:
            self._enter("delete_contact", tenant_id, contact_id)
            if self.contacts.pop((tenant_id, contact_id), None) is None:
                raise NotFoundError("the contact does not exist")
            self._append(tenant_id, "contact", contact_id, deleted=True)
            self._leave("delete_contact", tenant_id, contact_id)

    def find_contacts_by_email(self, tenant_id: str, account_id: str, email: str) -> list[CrmContact]:
        with self._lock:
            self._enter("find_contacts_by_email", tenant_id, account_id)
            wanted = email.strip().casefold()
            if not wanted:
                return []
            return sorted((c for (t, _), c in self.contacts.items()
                           if t == tenant_id and c.account_id == account_id
                           and any(e.strip().casefold() == wanted for e in c.emails)), key=lambda c: c.id)

    # -- helpers for tests: a CRM user at work
    def add_account(self, tenant_id: str, name: str, owner_user_id: str | None) -> Account:
        with self._user():
            return self.create_account(tenant_id, name, owner_user_id)

    def add_contact(self, tenant_id: str, account_id: str, **values: Any) -> CrmContact:
        with self._user():
            return self.create_contact(CrmContact(id="", tenant_id=tenant_id, account_id=account_id, **values))

    def edit_contact(self, tenant_id: str, contact_id: str, **changes: Any) -> CrmContact:
        with self._user():
            current = self.contacts[(tenant_id, contact_id)]
            return self.update_contact(current.model_copy(update=changes))

    def remove_contact(self, tenant_id: str, contact_id: str) -> None:
        with self._user():
            self.delete_contact(tenant_id, contact_id)

    def _write_account(self, tenant_id: str, account_id: str, **changes: Any) -> Account:
        with self._lock:
            account = self.accounts[(tenant_id, account_id)].model_copy(update={**changes, "version": self._ids("v")})
            self.accounts[(tenant_id, account_id)] = account
            self._append(tenant_id, "account", account_id)
            return account

    def rename_account(self, tenant_id: str, account_id: str, name: str) -> Account:
        return self._write_account(tenant_id, account_id, name=name)

    def set_account_owner(self, tenant_id: str, account_id: str, owner_user_id: str | None) -> Account:
        return self._write_account(tenant_id, account_id, owner_user_id=owner_user_id)

    def contacts_of(self, tenant_id: str) -> list[CrmContact]:
        with self._lock:
            return sorted((c for (t, _), c in self.contacts.items() if t == tenant_id), key=lambda c: c.id)

    # -- tasks (issue 5): CrmTasksPort. Their own writes feed the same feed, kind "task".
    @property
    def tasks(self) -> dict[tuple[str, str], CrmTask]:
        # Made on first use, so the contact fake's constructor stays as it is.
        store: dict[tuple[str, str], CrmTask] | None = self.__dict__.get("_tasks")
        if store is None:
            store = self.__dict__["_tasks"] = {}
        return store

    def feed_position(self, tenant_id: str) -> int:
        with self._lock:
            self._enter("feed_position", tenant_id)
            entries = self.feed.get(tenant_id, [])
            return entries[-1].position if entries else 0

    def get_tasks(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmTask]:
        with self._lock:
            self._enter("get_tasks", tenant_id)
            found = (self.tasks.get((tenant_id, i)) for i in ids)
            return {t.id: t for t in found if t is not None}

    def tasks_assigned_to(self, tenant_id: str, user_id: str) -> list[CrmTask]:
        with self._lock:
            self._enter("tasks_assigned_to", tenant_id, user_id)
            return sorted((t for (tn, _), t in self.tasks.items() if tn == tenant_id and t.assigned_to == user_id),
                          key=lambda t: t.id)

    def create_task(self, task: CrmTask) -> CrmTask:
        with self._lock:
            self._enter("create_task", task)
            stored = task.model_copy(update={"id": task.id or self._ids("task-"), "version": self._ids("v"),
                                             "modified_at": self._clock()})
            if (stored.tenant_id, stored.id) in self.tasks:
                raise AlreadyExistsError("a task with this id exists")
            self._require_account(stored.tenant_id, stored.account_id)
            self.tasks[(stored.tenant_id, stored.id)] = stored
            self._append(stored.tenant_id, "task", stored.id)
            self._leave("create_task", task)
            return stored

    def update_task(self, task: CrmTask) -> CrmTask:
        with self._lock:
            self._enter("update_task", task)
            current = self.tasks.get((task.tenant_id, task.id))
            if current is None:
                raise NotFoundError("the task does not exist")
            if current.version != task.version:
                raise ConcurrencyError("the task changed since it was read (stale version)")
            self._require_account(task.tenant_id, task.account_id)
            stored = task.model_copy(update={"version": self._ids("v"), "modified_at": self._clock()})
            self.tasks[(task.tenant_id, task.id)] = stored
            self._append(task.tenant_id, "task", task.id)
            self._leave("update_task", task)
            return stored

    def delete_task(self, tenant_id: str, task_id: str) -> None:
        with self._lock:
            self._enter("delete_task", tenant_id, task_id)
            if self.tasks.pop((tenant_id, task_id), None) is None:
                raise NotFoundError("the task does not exist")
            self._append(tenant_id, "task", task_id, deleted=True)
            self._leave("delete_task", tenant_id, task_id)

    # -- helpers for tests: a CRM user working on tasks (same feed, no injected faults: those are the sync's)
    def _user_writes_task(self, task: CrmTask, deleted: bool = False) -> CrmTask:
        with self._lock:
            self._require_account(task.tenant_id, task.account_id)
            stored = task.model_copy(update={"version": self._ids("v"), "modified_at": self._clock()})
            if deleted:
                del self.tasks[(task.tenant_id, task.id)]
            else:
                self.tasks[(task.tenant_id, task.id)] = stored
            self._append(task.tenant_id, "task", task.id, deleted=deleted)
            return stored

    def add_task(self, tenant_id: str, account_id: str, assigned_to: str, **values: Any) -> CrmTask:
        return self._user_writes_task(CrmTask(id=self._ids("task-"), tenant_id=tenant_id, account_id=account_id,
                                              assigned_to=assigned_to, **values))

    def edit_task(self, tenant_id: str, task_id: str, **changes: Any) -> CrmTask:
        with self._lock:
            return self._user_writes_task(self.tasks[(tenant_id, task_id)].model_copy(update=changes))

    def remove_task(self, tenant_id: str, task_id: str) -> None:
        with self._lock:
            self._user_writes_task(self.tasks[(tenant_id, task_id)], deleted=True)

    def tasks_of(self, tenant_id: str) -> list[CrmTask]:
        with self._lock:
            return sorted((t for (tn, _), t in self.tasks.items() if tn == tenant_id), key=lambda t: t.id)


# --- Outlook ------------------------------------------------------------------------------------------

DEFAULT_CONTACTS_FOLDER = "default-contacts"


@dataclass
class _ItemFault:
    status: int
    retry_after: float | None
    error: str
    times: int


@dataclass
class _Event:
    seq: int
    folder_id: str | None  # where the item is after this event (None: deleted)


@dataclass
class _Token:
    folder_id: str
    seq: int
    epoch: int


class FakeMicrosoft:
    """MicrosoftContactsPort in memory, with Graph's rules.

    Items are stored as Graph JSON; writes go through `mapping.fields_to_graph` and reads through
    `mapping.graph_to_contact`, as with the real adapter. Ids are immutable (a move keeps the id). Delta:
    a round without a token lists the folder (full=True); with a token, every item touched since comes
    once in its current state, or as removed ("deleted", or "changed" when it moved out). `expire_delta()`
    makes every issued token fail with DeltaExpiredError. `request_count` counts HTTP requests as Graph
    would: a delta page, a $batch of ≤ 20 items, a folder call, a lookup.
    """

    BATCH = 20
    late_write_seconds = 0.0  # a write here is done or not when the call returns: nothing lands later

    def __init__(self, *, delta_page_size: int = 100, duplicate_delta_items: bool = False) -> None:
        self._ids = _Ids("graph")
        self.folders: dict[str, str] = {DEFAULT_CONTACTS_FOLDER: "Contacts"}
        self.items: dict[str, dict[str, Any]] = {}
        self._history: dict[str, list[_Event]] = {}
        self._seq = 0
        self._epoch = 0
        self._tokens: dict[str, _Token] = {}
        self._item_faults: dict[str, _ItemFault] = {}
        self.delta_page_size = delta_page_size
        self.duplicate_delta_items = duplicate_delta_items
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self.request_count = 0
        self.items_written = 0  # contacts created, updated or deleted through the port

    # -- plumbing
    def _enter(self, method: str, requests: int, *args: Any) -> None:
        self.calls[method] += 1
        self.request_count += requests
        self.faults.check(method, False, *args)

    def _leave(self, method: str, *args: Any) -> None:
        self.faults.check(method, True, *args)

    def _batches(self, count: int) -> int:
        return max(1, -(-count // self.BATCH))

    def _record(self, ms_id: str, folder_id: str | None) -> None:
        self._seq += 1
        self._history.setdefault(ms_id, []).append(_Event(self._seq, folder_id))

    def _store(self, ms_id: str, body: dict[str, Any], folder_id: str) -> None:
        body["id"] = ms_id
        body["changeKey"] = self._ids("ck-")
        body["parentFolderId"] = folder_id
        body["lastModifiedDateTime"] = _utc_now().isoformat()
        self.items[ms_id] = body
        self._record(ms_id, folder_id)

    def _item_fault(self, key: str) -> _ItemFault | None:
        fault = self._item_faults.get(key)
        if fault is None or fault.times <= 0:
            return None
        fault.times -= 1
        return fault

    @staticmethod
    def _check_body(body: dict[str, Any], allow_tag: bool) -> str | None:
        """What Graph would refuse with a 400 (and what must never leave our mapping)."""
        extra = set(body) - set(mapping.OWNED_GRAPH_FIELDS) - ({"singleValueExtendedProperties"} if allow_tag else set())
        if extra:
            return f"fields we do not own in the body: {sorted(extra)}"
        if len(body.get("emailAddresses") or []) > mapping.MAX_EMAILS:
            return "more than three e-mail addresses"
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError):
            return "body is not valid JSON text"
        return None

    def contact(self, ms_id: str) -> MsContact:
        return mapping.graph_to_contact(self.items[ms_id])

    def folder_items(self, folder_id: str) -> dict[str, dict[str, Any]]:
        return {i: item for i, item in self.items.items() if item.get("parentFolderId") == folder_id}

    def folder_by_name(self, display_name: str) -> list[str]:
        return sorted(f for f, name in self.folders.items() if name == display_name)

    # -- injected failures
    def fail_item(self, key: str, status: int = 429, *, retry_after: float | None = 1.0, error: str = "",
                  times: int = 1) -> None:
        """The next `times` batch writes keyed `key` (CRM id for creates, Graph id otherwise) fail so."""
        self._item_faults[key] = _ItemFault(status, retry_after if status in (429, 503) else None,
                                            error or f"HTTP {status}", times)

    def expire_delta(self) -> None:
        self._epoch += 1

    def clear_faults(self) -> None:
        self.faults.clear()
        self._item_faults.clear()

    # -- MicrosoftContactsPort
    def ensure_folder(self, display_name: str, known_id: str | None) -> str:
        self.calls["ensure_folder"] += 1
        self.faults.check("ensure_folder", False, display_name)
        if known_id is not None:
            self.request_count += 1  # GET the known folder
            if known_id in self.folders:
                return known_id
        self.request_count += 1  # list folders by name
        found = self.folder_by_name(display_name)
        if found:
            return found[0]
        self.request_count += 1  # POST a new folder
        folder_id = self._ids("folder-")
        self.folders[folder_id] = display_name
        self._leave("ensure_folder", display_name)
        return folder_id

    def delete_folder(self, folder_id: str) -> None:
        self._enter("delete_folder", 1, folder_id)
        if self.folders.pop(folder_id, None) is None:
            return
        for ms_id in list(self.folder_items(folder_id)):
            del self.items[ms_id]
            self._record(ms_id, None)

    def contact_delta(self, folder_id: str, delta_link: str | None) -> DeltaResult:
        self.calls["contact_delta"] += 1
        self.faults.check("contact_delta", False, folder_id, delta_link)
        if folder_id not in self.folders:
            self.request_count += 1
            raise NotFoundError("the contact folder does not exist")
        if delta_link is None:
            since, full = None, True
        else:
            token = self._tokens.get(delta_link)
            if token is None or token.folder_id != folder_id or token.epoch != self._epoch:
                self.request_count += 1
                raise DeltaExpiredError("SyncStateNotFound", status=410, code="SyncStateNotFound")
            since, full = token.seq, False
        changes = [c for ms_id in sorted(self._history) if (c := self._delta_entry(ms_id, folder_id, since))]
        if self.duplicate_delta_items:
            changes = changes + changes  # Graph may repeat an item within a round
        self.request_count += max(1, -(-len(changes) // self.delta_page_size))
        link = self._ids("delta-")
        self._tokens[link] = _Token(folder_id, self._seq, self._epoch)
        self._leave("contact_delta", folder_id, delta_link)
        return DeltaResult(changes=tuple(changes), delta_link=link, full=full)

    def _delta_entry(self, ms_id: str, folder_id: str, since: int | None) -> MsChange | None:
        events = self._history[ms_id]
        item = self.items.get(ms_id)
        here_now = item is not None and item.get("parentFolderId") == folder_id
        if since is None:
            return self._as_change(ms_id, item) if here_now else None
        recent = [e for e in events if e.seq > since]
        if not recent:
            return None
        if here_now:
            return self._as_change(ms_id, item)
        earlier = [e for e in events if e.seq <= since]
        was_here = (earlier and earlier[-1].folder_id == folder_id) or any(e.folder_id == folder_id for e in recent)
        if not was_here:
            return None
        return MsChange(ms_id=ms_id, removed_reason="deleted" if item is None else "changed")

    @staticmethod
    def _as_change(ms_id: str, item: dict[str, Any] | None) -> MsChange:
        try:
            return MsChange(ms_id=ms_id, contact=mapping.graph_to_contact(item))
        except InvalidRecordError as exc:
            return MsChange(ms_id=ms_id, invalid_reason=str(exc))

    def create_contacts(self, folder_id: str, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult]:
        self._enter("create_contacts", self._batches(len(items)), folder_id, items)
        if folder_id not in self.folders:
            raise NotFoundError("the contact folder does not exist")
        results = []
        for crm_id, fields in items:
            fault = self._item_fault(crm_id)
            if fault is not None:
                results.append(WriteResult(crm_id, False, status=fault.status, error=fault.error,
                                           retry_after=fault.retry_after))
                continue
            body = mapping.fields_to_graph(fields, crm_id)
            problem = self._check_body(body, allow_tag=True)
            if problem:
                results.append(WriteResult(crm_id, False, status=400, error=problem))
                continue
            ms_id = self._ids("AAMk-")
            self._store(ms_id, body, folder_id)
            self.items_written += 1
            results.append(WriteResult(crm_id, True, contact=self.contact(ms_id), status=201))
        self._leave("create_contacts", folder_id, items)
        return results

    def update_contacts(self, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult]:
        self._enter("update_contacts", self._batches(len(items)), items)
        results = []
        for ms_id, fields in items:
            fault = self._item_fault(ms_id)
            if fault is not None:
                results.append(WriteResult(ms_id, False, status=fault.status, error=fault.error,
                                           retry_after=fault.retry_after))
                continue
            if ms_id not in self.items:
                results.append(WriteResult(ms_id, False, status=404, error="ErrorItemNotFound"))
                continue
            patch = mapping.fields_to_graph(fields, None)
            problem = self._check_body(patch, allow_tag=False)
            if problem:
                results.append(WriteResult(ms_id, False, status=400, error=problem))
                continue
            current = self.items[ms_id]
            self._store(ms_id, {**current, **patch}, current["parentFolderId"])
            self.items_written += 1
            results.append(WriteResult(ms_id, True, contact=self.contact(ms_id), status=200))
        self._leave("update_contacts", items)
        return results

    def delete_contacts(self, ms_ids: Sequence[str]) -> list[WriteResult]:
        self._enter("delete_contacts", self._batches(len(ms_ids)), ms_ids)
        results = []
        for ms_id in ms_ids:
            fault = self._item_fault(ms_id)
            if fault is not None:
                results.append(WriteResult(ms_id, False, status=fault.status, error=fault.error,
                                           retry_after=fault.retry_after))
            elif self.items.pop(ms_id, None) is None:
                results.append(WriteResult(ms_id, False, status=404, error="ErrorItemNotFound"))
            else:
                self._record(ms_id, None)
                self.items_written += 1
                results.append(WriteResult(ms_id, True, status=204))
        self._leave("delete_contacts", ms_ids)
        return results

    def crm_ids_of(self, ms_ids: Sequence[str]) -> dict[str, str | None]:
        self._enter("crm_ids_of", self._batches(len(ms_ids)), ms_ids)
        found: dict[str, str | None] = {}
        for ms_id in ms_ids:
            if ms_id not in self.items:
                found[ms_id] = ITEM_GONE
                continue
            tags = self.items[ms_id].get("singleValueExtendedProperties") or []
            found[ms_id] = next((str(t["value"]) for t in tags
                                 if t.get("id") == mapping.CRM_ID_PROPERTY and t.get("value")), None)
        self._leave("crm_ids_of", ms_ids)
        return found

    def find_contact_by_crm_id(self, folder_id: str, crm_id: str) -> MsContact | None:
        """The newest item of the folder tagged with `crm_id` (an older one is a copy the user kept)."""
        self._enter("find_contact_by_crm_id", 1, folder_id, crm_id)
        tagged = [ms_id for ms_id, item in self.folder_items(folder_id).items()
                  if any(t.get("id") == mapping.CRM_ID_PROPERTY and t.get("value") == crm_id
                         for t in item.get("singleValueExtendedProperties") or [])]
        if not tagged:
            return None
        return self.contact(max(tagged, key=lambda ms_id: self._history[ms_id][0].seq))

    # -- helpers for tests: an Outlook user at work (no request counted: not our app's traffic)
    def user_create(self, folder_id: str, **graph: Any) -> str:
        ms_id = self._ids("AAMk-")
        self._store(ms_id, dict(graph), folder_id)
        return ms_id

    def user_edit(self, ms_id: str, **graph: Any) -> None:
        current = self.items[ms_id]
        self._store(ms_id, {**current, **graph}, current["parentFolderId"])

    def user_delete(self, ms_id: str) -> None:
        del self.items[ms_id]
        self._record(ms_id, None)

    def user_move(self, ms_id: str, folder_id: str) -> None:
        current = self.items[ms_id]
        self._store(ms_id, dict(current), folder_id)


# --- the state store ----------------------------------------------------------------------------------

class FakeStateStore:
    """StateStore in memory, with Table Storage's rules (ETags, insert conflicts, one link per ms id)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = _Ids("state")
        self.links: dict[tuple[str, str, str], Link] = {}
        self._by_ms: dict[tuple[str, str, str], str] = {}
        self.cursors: dict[tuple[str, str], Cursor] = {}
        self.runs: dict[tuple[str, str, str], RunRecord] = {}
        self.leases: dict[tuple[str, str], Lease] = {}
        self.quarantine: dict[tuple[str, str, str, str], QuarantineEntry] = {}
        self.calls: Counter[str] = Counter()
        self.faults = Faults()

    def _enter(self, method: str, *args: Any) -> None:
        self.calls[method] += 1
        self.faults.check(method, False, *args)

    def _leave(self, method: str, *args: Any) -> None:
        self.faults.check(method, True, *args)

    # -- links
    def get_links_by_crm(self, tenant_id: str, user_id: str, crm_ids: Iterable[str]) -> dict[str, Link]:
        with self._lock:
            self._enter("get_links_by_crm", user_id)
            found = (self.links.get((tenant_id, user_id, i)) for i in crm_ids)
            return {link.crm_id: link for link in found if link is not None}

    def get_links_by_ms(self, tenant_id: str, user_id: str, ms_ids: Iterable[str]) -> dict[str, Link]:
        with self._lock:
            self._enter("get_links_by_ms", user_id)
            found = {}
            for ms_id in ms_ids:
                crm_id = self._by_ms.get((tenant_id, user_id, ms_id))
                if crm_id is not None:
                    found[ms_id] = self.links[(tenant_id, user_id, crm_id)]
            return found

    def iter_links(self, tenant_id: str, user_id: str) -> Iterator[Link]:
        with self._lock:
            self._enter("iter_links", user_id)
            chosen = [link for (t, u, _), link in sorted(self.links.items()) if (t, u) == (tenant_id, user_id)]
        return iter(chosen)

    def save_link(self, link: Link) -> Link:
        with self._lock:
            self._enter("save_link", link)
            key = (link.tenant_id, link.user_id, link.crm_id)
            current = self.links.get(key)
            if link.etag is None and current is not None:
                raise AlreadyExistsError("the link exists")
            if link.etag is not None and (current is None or current.etag != link.etag):
                raise ConcurrencyError("the link changed or was deleted since it was read")
            if link.ms_id is not None:
                holder = self._by_ms.get((link.tenant_id, link.user_id, link.ms_id))
                if holder is not None and holder != link.crm_id:
                    raise AlreadyExistsError("the Microsoft item is linked to another CRM record")
            if current is not None and current.ms_id is not None:
                del self._by_ms[(link.tenant_id, link.user_id, current.ms_id)]
            saved = link.model_copy(update={"etag": self._ids("etag-")})
            self.links[key] = saved
            if saved.ms_id is not None:
                self._by_ms[(link.tenant_id, link.user_id, saved.ms_id)] = saved.crm_id
            self._leave("save_link", link)
            return saved

    def save_links(self, links: Sequence[Link]) -> list[Link | SyncError]:
        results: list[Link | SyncError] = []
        for link in links:
            try:
                results.append(self.save_link(link))
            except (AlreadyExistsError, ConcurrencyError) as exc:
                results.append(exc)
        return results

    def delete_link(self, link: Link) -> None:
        with self._lock:
            self._enter("delete_link", link)
            current = self.links.get((link.tenant_id, link.user_id, link.crm_id))
            if current is None or current.etag != link.etag:
                raise ConcurrencyError("the link changed or was deleted since it was read")
            del self.links[(link.tenant_id, link.user_id, link.crm_id)]
            if current.ms_id is not None:
                del self._by_ms[(link.tenant_id, link.user_id, current.ms_id)]
            self._leave("delete_link", link)

    # -- cursor
    def get_cursor(self, tenant_id: str, user_id: str) -> Cursor:
        with self._lock:
            self._enter("get_cursor", user_id)
            return self.cursors.get((tenant_id, user_id)) or Cursor(tenant_id=tenant_id, user_id=user_id)

    def save_cursor(self, cursor: Cursor) -> Cursor:
        with self._lock:
            self._enter("save_cursor", cursor)
            current = self.cursors.get((cursor.tenant_id, cursor.user_id))
            if (current.etag if current else None) != cursor.etag:
                raise ConcurrencyError("the cursor changed since it was read")
            saved = cursor.model_copy(update={"etag": self._ids("etag-")})
            self.cursors[(cursor.tenant_id, cursor.user_id)] = saved
            self._leave("save_cursor", cursor)
            return saved

    # -- runs
    def save_run(self, run: RunRecord) -> RunRecord:
        with self._lock:
            self._enter("save_run", run)
            key = (run.tenant_id, run.user_id, run.run_id)
            current = self.runs.get(key)
            if run.etag is None and current is not None:
                raise AlreadyExistsError("the run exists")
            if run.etag is not None and (current is None or current.etag != run.etag):
                raise ConcurrencyError("the run record changed since it was read")
            saved = run.model_copy(update={"etag": self._ids("etag-")})
            self.runs[key] = saved
            return saved

    def latest_runs(self, tenant_id: str, user_id: str, limit: int = 10) -> list[RunRecord]:
        with self._lock:
            self._enter("latest_runs", user_id)
            mine = [r for (t, u, _), r in self.runs.items() if (t, u) == (tenant_id, user_id)]
            return sorted(mine, key=lambda r: (r.started_at, r.run_id), reverse=True)[:limit]

    # -- lease
    def acquire_lease(self, tenant_id: str, user_id: str, owner: str, ttl_seconds: float, now: datetime) -> Lease:
        with self._lock:
            self._enter("acquire_lease", user_id, owner)
            current = self.leases.get((tenant_id, user_id))
            if current is not None and current.owner != owner and current.expires_at > now:
                raise LeaseHeldError("another worker is syncing this user", expires_at=current.expires_at)
            lease = Lease(tenant_id=tenant_id, user_id=user_id, owner=owner, expires_at=now + timedelta(seconds=ttl_seconds),
                          etag=self._ids("etag-"))
            self.leases[(tenant_id, user_id)] = lease
            return lease

    def release_lease(self, lease: Lease) -> None:
        with self._lock:
            self._enter("release_lease", lease)
            current = self.leases.get((lease.tenant_id, lease.user_id))
            if current is None:
                return
            if current.etag != lease.etag:
                raise ConcurrencyError("the lease was taken over")
            del self.leases[(lease.tenant_id, lease.user_id)]

    # -- quarantine
    def put_quarantine(self, entry: QuarantineEntry) -> None:
        with self._lock:
            self._enter("put_quarantine", entry)
            key = (entry.tenant_id, entry.user_id, entry.side, entry.record_id)
            current = self.quarantine.get(key)
            if current is not None:
                entry = entry.model_copy(update={"first_seen": current.first_seen, "attempts": current.attempts + 1})
            self.quarantine[key] = entry

    def list_quarantine(self, tenant_id: str, user_id: str) -> list[QuarantineEntry]:
        with self._lock:
            self._enter("list_quarantine", user_id)
            return [q for (t, u, _, _), q in sorted(self.quarantine.items()) if (t, u) == (tenant_id, user_id)]

    def clear_quarantine(self, tenant_id: str, user_id: str, side: str, record_id: str) -> None:
        with self._lock:
            self._enter("clear_quarantine", user_id, side, record_id)
            self.quarantine.pop((tenant_id, user_id, side, record_id), None)

    # -- counting for tests
    READS = ("get_links_by_crm", "get_links_by_ms", "iter_links", "get_cursor", "latest_runs", "list_quarantine")

    @property
    def reads(self) -> int:
        return sum(self.calls[m] for m in self.READS)


# --- Microsoft 365 tasks (issue 5) --------------------------------------------------------------------

CALENDAR = "calendar"  # where events live in FakeMicrosoftTasks (To Do tasks live in their list's id)


def calendar_window(container: str) -> tuple[datetime, datetime]:
    """A calendar container ("start/end", UTC ISO) as two instants."""
    start, _, end = container.partition("/")
    return datetime.fromisoformat(start.replace("Z", "+00:00")), datetime.fromisoformat(end.replace("Z", "+00:00"))


class FakeMicrosoftTasks:
    """MicrosoftTasksPort in memory: To Do lists and the primary calendar, with Graph's rules.

    Bodies are built and read by task_mapping, as with the real adapter, and checked as Graph would (no
    attendees, ever). To Do: a list found by name or created; ids of a deleted list answer 404. Calendar: the
    container is the calendarView window; a full round lists the events starting in it, a later round
    reports what changed in it and, as Graph does, events changed or deleted outside it as removed. A POST
    repeating a transactionId answers the event made by the first. Delta tokens can be expired
    (`expire_delta`); items can fail one by one (`fail_item`); `request_count` counts HTTP requests.
    """

    BATCH = 20

    def __init__(self, settings: UserSyncSettings, *, delta_page_size: int = 100) -> None:
        self.settings = settings
        self._ids = _Ids("tasks")
        self.lists: dict[str, str] = {"default-tasks": "Tasks"}
        self.items: dict[str, dict[str, Any]] = {}  # Graph JSON, with "_in": list id or CALENDAR
        self._history: dict[str, list[_Event]] = {}
        self._seq = 0
        self._epoch = 0
        self._tokens: dict[str, _Token] = {}
        self._item_faults: dict[str, _ItemFault] = {}
        self.delta_page_size = delta_page_size
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self.request_count = 0
        self.items_written = 0
        self.attendee_notices = 0  # changes or deletes of meetings: Outlook would have told their attendees

    # -- plumbing
    @property
    def _zone(self) -> ZoneInfo:
        return user_zone(self.settings)

    def _enter(self, method: str, requests: int, *args: Any) -> None:
        self.calls[method] += 1
        self.request_count += requests
        self.faults.check(method, False, *args)

    def _leave(self, method: str, *args: Any) -> None:
        self.faults.check(method, True, *args)

    def _batches(self, count: int) -> int:
        return max(1, -(-count // self.BATCH))

    def _record(self, ms_id: str, where: str | None) -> None:
        self._seq += 1
        self._history.setdefault(ms_id, []).append(_Event(self._seq, where))

    def _store(self, ms_id: str, body: dict[str, Any], where: str) -> None:
        body = {k: v for k, v in body.items() if k not in ("id", "changeKey", "@odata.etag", "_in")}
        body["id"] = ms_id
        version = self._ids("ck-")
        if where == CALENDAR:
            body["changeKey"] = version
        else:
            body["@odata.etag"] = f'W/"{version}"'
        body["_in"] = where
        self.items[ms_id] = body
        self._record(ms_id, where)

    def _item_fault(self, key: str) -> _ItemFault | None:
        fault = self._item_faults.get(key)
        if fault is None or fault.times <= 0:
            return None
        fault.times -= 1
        return fault

    def _where(self, target: TaskTarget, container: str) -> str:
        return CALENDAR if target is TaskTarget.CALENDAR else container

    def task(self, ms_id: str) -> MsTask:
        item = self.items[ms_id]
        target = TaskTarget.CALENDAR if item["_in"] == CALENDAR else TaskTarget.TO_DO
        return graph_to_task(target, {k: v for k, v in item.items() if k != "_in"}, self._zone)

    def _in_window(self, ms_id: str, window: tuple[datetime, datetime]) -> bool:
        try:
            fields = self.task(ms_id).fields
        except InvalidRecordError:
            return True  # an unreadable event is reported (and quarantined), as Graph would send it
        if fields.due_at is not None:
            start = fields.due_at
        elif fields.due_date is not None:
            start = at_local(fields.due_date, datetime.min.time(), self._zone)
        else:
            return False
        return window[0] <= start < window[1]

    def items_in(self, where: str) -> dict[str, dict[str, Any]]:
        return {i: item for i, item in self.items.items() if item["_in"] == where}

    @staticmethod
    def _check(body: dict[str, Any]) -> str | None:
        """What must never leave our mapping (Graph would send invitations, or refuse the body)."""
        if body.get("attendees"):
            return "attendees in a body: the sync must never invite anyone"
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError):
            return "body is not valid JSON text"
        return None

    def fail_item(self, key: str, status: int = 429, *, retry_after: float | None = 1.0, error: str = "",
                  times: int = 1) -> None:
        """The next `times` batch writes keyed `key` (CRM id for creates, Graph id otherwise) fail so."""
        self._item_faults[key] = _ItemFault(status, retry_after if status in (429, 503) else None,
                                            error or f"HTTP {status}", times)

    def expire_delta(self) -> None:
        self._epoch += 1

    def clear_faults(self) -> None:
        self.faults.clear()
        self._item_faults.clear()

    # -- MicrosoftTasksPort
    def ensure_container(self, target: TaskTarget, name: str, known: str | None) -> str:
        self.calls["ensure_container"] += 1
        self.faults.check("ensure_container", False, target, name)
        if target is TaskTarget.CALENDAR:
            return known or ""
        if known is not None and known in self.lists:
            return known
        self.request_count += 1  # list the lists
        found = sorted(i for i, n in self.lists.items() if n == name)
        if found:
            return found[0]
        self.request_count += 1  # POST the list
        list_id = self._ids("list-")
        self.lists[list_id] = name
        self._leave("ensure_container", target, name)
        return list_id

    def delete_list(self, list_id: str) -> None:
        """The user deletes the list in To Do (its tasks go with it)."""
        self.lists.pop(list_id, None)
        for ms_id in list(self.items_in(list_id)):
            del self.items[ms_id]
            self._record(ms_id, None)

    def task_delta(self, target: TaskTarget, container: str, delta_link: str | None) -> TaskDeltaResult:
        self.calls["task_delta"] += 1
        self.faults.check("task_delta", False, target, container, delta_link)
        where = self._where(target, container)
        if where != CALENDAR and where not in self.lists:
            self.request_count += 1
            raise NotFoundError("the To Do list does not exist")
        window = calendar_window(container) if where == CALENDAR else None
        if delta_link is None:
            since, full = None, True
        else:
            token = self._tokens.get(delta_link)
            if token is None or token.folder_id != container or token.epoch != self._epoch:
                self.request_count += 1
                raise DeltaExpiredError("SyncStateNotFound", status=410, code="SyncStateNotFound")
            since, full = token.seq, False
        changes: list[TaskChange] = []
        for ms_id in sorted(self._history):
            events = self._history[ms_id]
            item = self.items.get(ms_id)
            here = item is not None and item["_in"] == where
            visible = here and (window is None or self._in_window(ms_id, window))
            if since is None:
                if visible:
                    changes.append(self._as_change(ms_id))
                continue
            recent = [e for e in events if e.seq > since]
            if not recent:
                continue
            was_here = any(e.folder_id == where for e in events)
            if visible:
                changes.append(self._as_change(ms_id))
            elif was_here:
                changes.append(TaskChange(ms_id=ms_id, removed_reason="deleted"))
        self.request_count += max(1, -(-len(changes) // self.delta_page_size))
        link = self._ids("delta-")
        self._tokens[link] = _Token(container, self._seq, self._epoch)
        self._leave("task_delta", target, container, delta_link)
        return TaskDeltaResult(changes=tuple(changes), delta_link=link, full=full)

    def _as_change(self, ms_id: str) -> TaskChange:
        try:
            return TaskChange(ms_id=ms_id, task=self.task(ms_id))
        except InvalidRecordError as exc:
            return TaskChange(ms_id=ms_id, invalid_reason=str(exc))

    def _fault_result(self, key: str) -> TaskWriteResult | None:
        fault = self._item_fault(key)
        if fault is None:
            return None
        return TaskWriteResult(key, False, status=fault.status, error=fault.error, retry_after=fault.retry_after)

    def create_tasks(self, target: TaskTarget, container: str,
                     items: Sequence[tuple[str, str, TaskFields]]) -> list[TaskWriteResult]:
        self._enter("create_tasks", self._batches(len(items)), target, container, items)
        where = self._where(target, container)
        if where != CALENDAR and where not in self.lists:
            raise NotFoundError("the To Do list does not exist")
        results = []
        for crm_id, crm_version, fields in items:
            failed = self._fault_result(crm_id)
            if failed is not None:
                results.append(failed)
                continue
            try:
                body = (event_create_body(fields, self.settings, crm_id, crm_version) if target is TaskTarget.CALENDAR
                        else todo_create_body(fields, self.settings, crm_id))
            except InvalidRecordError as exc:
                results.append(TaskWriteResult(crm_id, False, status=400, error=str(exc)))
                continue
            problem = self._check(body)
            if problem:
                results.append(TaskWriteResult(crm_id, False, status=400, error=problem))
                continue
            repeated = [i for i, item in self.items_in(where).items()
                        if body.get("transactionId") and item.get("transactionId") == body["transactionId"]]
            if repeated:  # Graph answers the event the first POST made
                results.append(TaskWriteResult(crm_id, True, task=self.task(repeated[0]), status=201))
                continue
            ms_id = self._ids("AAMkT-" if where == CALENDAR else "AQMkT-")
            self._store(ms_id, body, where)
            self.items_written += 1
            results.append(TaskWriteResult(crm_id, True, task=self.task(ms_id), status=201))
        self._leave("create_tasks", target, container, items)
        return results

    def update_tasks(self, target: TaskTarget, container: str, items: Sequence[TaskUpdate]) -> list[TaskWriteResult]:
        self._enter("update_tasks", self._batches(len(items)), target, container, items)
        where = self._where(target, container)
        results = []
        for update in items:
            failed = self._fault_result(update.ms_id)
            if failed is not None:
                results.append(failed)
                continue
            current = self.items.get(update.ms_id)
            if current is None or current["_in"] != where:
                results.append(TaskWriteResult(update.ms_id, False, status=404, error="ErrorItemNotFound"))
                continue
            try:
                patch = (event_patch_body(update.fields, update.changed, update.all_day_now, self.settings)
                         if target is TaskTarget.CALENDAR else todo_patch_body(update.fields, update.changed, self.settings))
            except InvalidRecordError as exc:
                results.append(TaskWriteResult(update.ms_id, False, status=400, error=str(exc)))
                continue
            problem = self._check(patch)
            if problem:
                results.append(TaskWriteResult(update.ms_id, False, status=400, error=problem))
                continue
            if current.get("attendees"):
                self.attendee_notices += 1
            self._store(update.ms_id, {**current, **patch}, where)
            self.items_written += 1
            results.append(TaskWriteResult(update.ms_id, True, task=self.task(update.ms_id), status=200))
        self._leave("update_tasks", target, container, items)
        return results

    def delete_tasks(self, target: TaskTarget, container: str, ms_ids: Sequence[str]) -> list[TaskWriteResult]:
        self._enter("delete_tasks", self._batches(len(ms_ids)), target, container, ms_ids)
        where = self._where(target, container)
        results = []
        for ms_id in ms_ids:
            failed = self._fault_result(ms_id)
            if failed is not None:
                results.append(failed)
            elif ms_id not in self.items or self.items[ms_id]["_in"] != where:
                results.append(TaskWriteResult(ms_id, True, status=404))  # already gone is what we wanted
            else:
                if self.items[ms_id].get("attendees"):
                    self.attendee_notices += 1
                del self.items[ms_id]
                self._record(ms_id, None)
                self.items_written += 1
                results.append(TaskWriteResult(ms_id, True, status=204))
        self._leave("delete_tasks", target, container, ms_ids)
        return results

    def get_tasks(self, target: TaskTarget, container: str, ms_ids: Sequence[str]) -> dict[str, MsTask | None]:
        self._enter("get_tasks", self._batches(len(ms_ids)), target, container, ms_ids)
        where = self._where(target, container)
        found: dict[str, MsTask | None] = {}
        for ms_id in ms_ids:
            item = self.items.get(ms_id)
            found[ms_id] = self.task(ms_id) if item is not None and item["_in"] == where else None
        return found

    def find_task_by_crm_id(self, target: TaskTarget, container: str, crm_id: str) -> MsTask | None:
        self._enter("find_task_by_crm_id", 1, target, container, crm_id)
        for ms_id, item in sorted(self.items_in(self._where(target, container)).items()):
            tags = [t.get("value") for t in item.get("singleValueExtendedProperties") or [] if t.get("id") == TASK_ID_PROPERTY]
            tags += [link.get("externalId") for link in item.get("linkedResources") or []]
            if crm_id in tags:
                return self.task(ms_id)
        return None

    # -- helpers for tests: the user at work in To Do or Outlook (not our app's traffic: not counted)
    def user_create(self, where: str, **graph: Any) -> str:
        ms_id = self._ids("AAMkU-")
        self._store(ms_id, dict(graph), where)
        return ms_id

    def user_edit(self, ms_id: str, **graph: Any) -> None:
        current = self.items[ms_id]
        self._store(ms_id, {**current, **graph}, current["_in"])

    def user_delete(self, ms_id: str) -> None:
        del self.items[ms_id]
        self._record(ms_id, None)
