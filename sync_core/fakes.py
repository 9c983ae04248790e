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
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sync_core import mapping
from sync_core.accounts import normalise_company
from sync_core.errors import (
    AlreadyExistsError,
    ConcurrencyError,
    DeltaExpiredError,
    InvalidRecordError,
    LeaseHeldError,
    NotFoundError,
)
from sync_core.models import (
    Account,
    ContactFields,
    CrmContact,
    Cursor,
    DeltaResult,
    FeedEntry,
    FeedPage,
    Lease,
    Link,
    MsChange,
    MsContact,
    QuarantineEntry,
    RunRecord,
)
from sync_core.ports import WriteResult


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

    # -- plumbing
    def _enter(self, method: str, *args: Any) -> None:
        self.calls[method] += 1
        self.faults.check(method, False, *args)

    def _leave(self, method: str, *args: Any) -> None:
        self.faults.check(method, True, *args)

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
        return self.create_account(tenant_id, name, owner_user_id)

    def add_contact(self, tenant_id: str, account_id: str, **values: Any) -> CrmContact:
        return self.create_contact(CrmContact(id="", tenant_id=tenant_id, account_id=account_id, **values))

    def edit_contact(self, tenant_id: str, contact_id: str, **changes: Any) -> CrmContact:
        with self._lock:
            current = self.contacts[(tenant_id, contact_id)]
            return self.update_contact(current.model_copy(update=changes))

    def remove_contact(self, tenant_id: str, contact_id: str) -> None:
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

    def find_contact_by_crm_id(self, folder_id: str, crm_id: str) -> MsContact | None:
        self._enter("find_contact_by_crm_id", 1, folder_id, crm_id)
        for ms_id, item in sorted(self.folder_items(folder_id).items()):
            tags = item.get("singleValueExtendedProperties") or []
            if any(t.get("id") == mapping.CRM_ID_PROPERTY and t.get("value") == crm_id for t in tags):
                return self.contact(ms_id)
        return None

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
        self.links: dict[tuple[str, str], Link] = {}
        self._by_ms: dict[tuple[str, str], str] = {}
        self.cursors: dict[str, Cursor] = {}
        self.runs: dict[tuple[str, str], RunRecord] = {}
        self.leases: dict[str, Lease] = {}
        self.quarantine: dict[tuple[str, str, str], QuarantineEntry] = {}
        self.calls: Counter[str] = Counter()
        self.faults = Faults()

    def _enter(self, method: str, *args: Any) -> None:
        self.calls[method] += 1
        self.faults.check(method, False, *args)

    def _leave(self, method: str, *args: Any) -> None:
        self.faults.check(method, True, *args)

    # -- links
    def get_links_by_crm(self, user_id: str, crm_ids: Iterable[str]) -> dict[str, Link]:
        with self._lock:
            self._enter("get_links_by_crm", user_id)
            found = (self.links.get((user_id, i)) for i in crm_ids)
            return {link.crm_id: link for link in found if link is not None}

    def get_links_by_ms(self, user_id: str, ms_ids: Iterable[str]) -> dict[str, Link]:
        with self._lock:
            self._enter("get_links_by_ms", user_id)
            found = {}
            for ms_id in ms_ids:
                crm_id = self._by_ms.get((user_id, ms_id))
                if crm_id is not None:
                    found[ms_id] = self.links[(user_id, crm_id)]
            return found

    def iter_links(self, user_id: str) -> Iterator[Link]:
        with self._lock:
            self._enter("iter_links", user_id)
            chosen = [link for (u, _), link in sorted(self.links.items()) if u == user_id]
        return iter(chosen)

    def save_link(self, link: Link) -> Link:
        with self._lock:
            self._enter("save_link", link)
            key = (link.user_id, link.crm_id)
            current = self.links.get(key)
            if link.etag is None and current is not None:
                raise AlreadyExistsError("the link exists")
            if link.etag is not None and (current is None or current.etag != link.etag):
                raise ConcurrencyError("the link changed or was deleted since it was read")
            if link.ms_id is not None:
                holder = self._by_ms.get((link.user_id, link.ms_id))
                if holder is not None and holder != link.crm_id:
                    raise AlreadyExistsError("the Microsoft item is linked to another CRM record")
            if current is not None and current.ms_id is not None:
                del self._by_ms[(link.user_id, current.ms_id)]
            saved = link.model_copy(update={"etag": self._ids("etag-")})
            self.links[key] = saved
            if saved.ms_id is not None:
                self._by_ms[(link.user_id, saved.ms_id)] = saved.crm_id
            self._leave("save_link", link)
            return saved

    def delete_link(self, link: Link) -> None:
        with self._lock:
            self._enter("delete_link", link)
            current = self.links.get((link.user_id, link.crm_id))
            if current is None or current.etag != link.etag:
                raise ConcurrencyError("the link changed or was deleted since it was read")
            del self.links[(link.user_id, link.crm_id)]
            if current.ms_id is not None:
                del self._by_ms[(link.user_id, current.ms_id)]
            self._leave("delete_link", link)

    # -- cursor
    def get_cursor(self, user_id: str) -> Cursor:
        with self._lock:
            self._enter("get_cursor", user_id)
            return self.cursors.get(user_id) or Cursor(user_id=user_id)

    def save_cursor(self, cursor: Cursor) -> Cursor:
        with self._lock:
            self._enter("save_cursor", cursor)
            current = self.cursors.get(cursor.user_id)
            if (current.etag if current else None) != cursor.etag:
                raise ConcurrencyError("the cursor changed since it was read")
            saved = cursor.model_copy(update={"etag": self._ids("etag-")})
            self.cursors[cursor.user_id] = saved
            self._leave("save_cursor", cursor)
            return saved

    # -- runs
    def save_run(self, run: RunRecord) -> RunRecord:
        with self._lock:
            self._enter("save_run", run)
            key = (run.user_id, run.run_id)
            current = self.runs.get(key)
            if run.etag is None and current is not None:
                raise AlreadyExistsError("the run exists")
            if run.etag is not None and (current is None or current.etag != run.etag):
                raise ConcurrencyError("the run record changed since it was read")
            saved = run.model_copy(update={"etag": self._ids("etag-")})
            self.runs[key] = saved
            return saved

    def latest_runs(self, user_id: str, limit: int = 10) -> list[RunRecord]:
        with self._lock:
            self._enter("latest_runs", user_id)
            mine = [r for (u, _), r in self.runs.items() if u == user_id]
            return sorted(mine, key=lambda r: (r.started_at, r.run_id), reverse=True)[:limit]

    # -- lease
    def acquire_lease(self, user_id: str, owner: str, ttl_seconds: float, now: datetime) -> Lease:
        with self._lock:
            self._enter("acquire_lease", user_id, owner)
            current = self.leases.get(user_id)
            if current is not None and current.owner != owner and current.expires_at > now:
                raise LeaseHeldError("another worker is syncing this user")
            lease = Lease(user_id=user_id, owner=owner, expires_at=now + timedelta(seconds=ttl_seconds),
                          etag=self._ids("etag-"))
            self.leases[user_id] = lease
            return lease

    def release_lease(self, lease: Lease) -> None:
        with self._lock:
            self._enter("release_lease", lease)
            current = self.leases.get(lease.user_id)
            if current is None:
                return
            if current.etag != lease.etag:
                raise ConcurrencyError("the lease was taken over")
            del self.leases[lease.user_id]

    # -- quarantine
    def put_quarantine(self, entry: QuarantineEntry) -> None:
        with self._lock:
            self._enter("put_quarantine", entry)
            key = (entry.user_id, entry.side, entry.record_id)
            current = self.quarantine.get(key)
            if current is not None:
                entry = entry.model_copy(update={"first_seen": current.first_seen, "attempts": current.attempts + 1})
            self.quarantine[key] = entry

    def list_quarantine(self, user_id: str) -> list[QuarantineEntry]:
        with self._lock:
            self._enter("list_quarantine", user_id)
            return [q for (u, _, _), q in sorted(self.quarantine.items()) if u == user_id]

    def clear_quarantine(self, user_id: str, side: str, record_id: str) -> None:
        with self._lock:
            self._enter("clear_quarantine", user_id, side, record_id)
            self.quarantine.pop((user_id, side, record_id), None)

    # -- counting for tests
    READS = ("get_links_by_crm", "get_links_by_ms", "iter_links", "get_cursor", "latest_runs", "list_quarantine")

    @property
    def reads(self) -> int:
        return sum(self.calls[m] for m in self.READS)
