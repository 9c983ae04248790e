"""The ports of sync_core: small Protocols that the engine depends on.

Each has a fake (enforcing the real rules: stale ETags raise, ids are opaque) and a real
adapter (Table Storage, Microsoft Graph); one contract suite per port runs against both.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sync_core.domain.connections import Connection
from sync_core.domain.changes import WriteResult
from sync_core.domain.errors import SyncError
from sync_core.domain.models import (
    Account,
    ContactFields,
    CrmContact,
    CrmTask,
    Cursor,
    DeltaResult,
    FeedPage,
    Lease,
    Link,
    MsContact,
    MsTask,
    QuarantineEntry,
    RunRecord,
    TaskFields,
    TaskTarget,
)
from sync_core.domain.sign_ins import PendingSignIn
from sync_core.domain.subscriptions import Kind, Owner, Subscription
from sync_core.domain.sync_flags import SyncFlags
from sync_core.domain.tenants import Tenant

# crm_ids_of's answer for an item gone from the mailbox: told apart from an untagged item (the user's own card),
# which is imported, while a gone one never is. No CRM id is empty.
ITEM_GONE = ""


class CrmPort(Protocol):
    """The CRM's accounts and contacts of one tenant, with a change feed."""

    def read_changes(self, tenant_id: str, after: int, limit: int = 1000) -> FeedPage: ...
    def get_contacts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmContact]: ...
    def get_accounts(self, tenant_id: str, ids: Iterable[str]) -> dict[str, Account]: ...
    def find_accounts_by_name(self, tenant_id: str, name: str) -> list[Account]: ...
    def create_account(self, tenant_id: str, name: str, owner_user_id: str | None) -> Account: ...
    def create_contact(self, contact: CrmContact) -> CrmContact: ...
    def update_contact(self, contact: CrmContact) -> CrmContact: ...  # contact.version is the expected ETag
    def delete_contact(self, tenant_id: str, contact_id: str) -> None: ...
    def find_contacts_by_email(self, tenant_id: str, account_id: str, email: str) -> list[CrmContact]: ...
    # For the CRM screen and the settings preview (not used by the sync itself): sorted by id.
    def list_accounts(self, tenant_id: str) -> list[Account]: ...
    def list_contacts(self, tenant_id: str, account_id: str | None = None, limit: int = 200) -> list[CrmContact]: ...


class MicrosoftContactsPort(Protocol):
    """The user's Outlook contact folder through Microsoft Graph."""

    # How long after we gave up waiting for its answer a write may still land in Microsoft.
    @property
    def late_write_seconds(self) -> float: ...

    def ensure_folder(self, display_name: str, known_id: str | None) -> str: ...
    def contact_delta(self, folder_id: str, delta_link: str | None) -> DeltaResult[MsContact]: ...  # DeltaExpiredError
    def create_contacts(self, folder_id: str, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult[MsContact]]: ...
    def update_contacts(self, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult[MsContact]]: ...
    def delete_contacts(self, ms_ids: Sequence[str]) -> list[WriteResult[MsContact]]: ...
    def find_contact_by_crm_id(self, folder_id: str, crm_id: str) -> MsContact | None: ...
    # The CRM id our create tagged each item with (None: untagged; ITEM_GONE: no longer in the mailbox, 404); an
    # unreadable item is left out.
    def crm_ids_of(self, ms_ids: Sequence[str]) -> dict[str, str | None]: ...
    def delete_folder(self, folder_id: str) -> None: ...


class StateStore(Protocol):
    """Links, cursors, runs, leases and quarantine of each user: one partition per tenant AND user, since user
    ids repeat across CRM tenants. `user_id` may name a scope of the user (their tasks: see task_service)."""

    def get_links_by_crm(self, tenant_id: str, user_id: str, crm_ids: Iterable[str]) -> dict[str, Link]: ...
    def get_links_by_ms(self, tenant_id: str, user_id: str, ms_ids: Iterable[str]) -> dict[str, Link]: ...
    def iter_links(self, tenant_id: str, user_id: str) -> Iterator[Link]: ...
    def save_link(self, link: Link) -> Link: ...  # insert when etag is None, else If-Match
    def save_links(self, links: Sequence[Link]) -> list[Link | SyncError]: ...  # few transactions; per-link errors
    def delete_link(self, link: Link) -> None: ...
    def get_cursor(self, tenant_id: str, user_id: str) -> Cursor: ...
    def save_cursor(self, cursor: Cursor) -> Cursor: ...
    def save_run(self, run: RunRecord) -> RunRecord: ...
    def latest_runs(self, tenant_id: str, user_id: str, limit: int = 10) -> list[RunRecord]: ...
    def acquire_lease(self, tenant_id: str, user_id: str, owner: str, ttl_seconds: float, now: datetime) -> Lease: ...  # LeaseHeldError
    def release_lease(self, lease: Lease) -> None: ...
    def put_quarantine(self, entry: QuarantineEntry) -> None: ...
    def list_quarantine(self, tenant_id: str, user_id: str) -> list[QuarantineEntry]: ...
    def clear_quarantine(self, tenant_id: str, user_id: str, side: str, record_id: str) -> None: ...


# --- tasks (issue 5) ----------------------------------------------------------------------------------

class CrmTasksPort(Protocol):
    """The CRM's tasks of one tenant; their writes feed the same change feed (kind "task")."""

    def read_changes(self, tenant_id: str, after: int, limit: int = 1000) -> FeedPage: ...
    def feed_position(self, tenant_id: str) -> int: ...  # the position of the newest feed entry (0: none)
    def get_tasks(self, tenant_id: str, ids: Iterable[str]) -> dict[str, CrmTask]: ...
    def tasks_assigned_to(self, tenant_id: str, user_id: str) -> list[CrmTask]: ...  # sorted by id
    def create_task(self, task: CrmTask) -> CrmTask: ...  # AlreadyExistsError when the id is taken
    def update_task(self, task: CrmTask) -> CrmTask: ...  # task.version is the expected ETag
    def delete_task(self, tenant_id: str, task_id: str) -> None: ...
    def find_accounts_by_name(self, tenant_id: str, name: str) -> list[Account]: ...
    def create_account(self, tenant_id: str, name: str, owner_user_id: str | None) -> Account: ...


@dataclass(frozen=True)
class TaskUpdate:
    """One task to bring to `fields` in Microsoft: only the `changed` field names are written (what the user
    keeps in other properties stays), the timing whenever the due day or time changed. `all_day_now` says
    whether the item is all-day now (None: unknown)."""

    ms_id: str
    fields: TaskFields
    changed: frozenset[str]
    all_day_now: bool | None = None


class MicrosoftTasksPort(Protocol):
    """The user's tasks in Microsoft 365, in either target: a To Do list (`container` is its id) or the
    primary calendar (`container` is the calendarView window, "start/end" in UTC ISO). Ids are Graph ids.
    The adapter renders TaskFields with the user's settings (time zone, reminders, event duration)."""

    def ensure_container(self, target: TaskTarget, name: str, known: str | None) -> str: ...
    def task_delta(self, target: TaskTarget, container: str, delta_link: str | None) -> DeltaResult[MsTask]: ...
    def create_tasks(self, target: TaskTarget, container: str,
                     items: Sequence[tuple[str, str, TaskFields]]) -> list[WriteResult[MsTask]]: ...  # (crm id, crm version, fields)
    def update_tasks(self, target: TaskTarget, container: str, items: Sequence[TaskUpdate]) -> list[WriteResult[MsTask]]: ...
    def delete_tasks(self, target: TaskTarget, container: str, ms_ids: Sequence[str]) -> list[WriteResult[MsTask]]: ...
    def get_tasks(self, target: TaskTarget, container: str, ms_ids: Sequence[str]) -> dict[str, MsTask | None]: ...
    def find_task_by_crm_id(self, target: TaskTarget, container: str, crm_id: str) -> MsTask | None: ...


# --- the app's own stores (issue 11): built once by bootstrap into app.services.Services ----------------

class ConnectionStore(Protocol):
    """Each CRM user's connection: status, Microsoft account, settings. Insert when etag is None
    (AlreadyExistsError when the row exists), else If-Match (ConcurrencyError when stale)."""

    def get(self, tenant_id: str, user_id: str) -> Connection | None: ...
    def save(self, connection: Connection) -> Connection: ...
    def get_or_create(self, tenant_id: str, user_id: str) -> Connection: ...
    def delete(self, tenant_id: str, user_id: str) -> None: ...
    def tenants_of(self, user_id: str) -> list[str]: ...  # sorted; user ids repeat across tenants
    def iter_keys(self) -> Iterator[tuple[str, str]]: ...  # (tenant, user) of every connection, any status
    def iter_connected(self) -> Iterator[tuple[str, str]]: ...  # (tenant, user) with status connected


class TokenStore(Protocol):
    """Encrypted MSAL token caches, one per user, never logged."""

    def load(self, tenant_id: str, user_id: str) -> str | None: ...
    def save(self, tenant_id: str, user_id: str, serialized: str) -> None: ...
    def delete(self, tenant_id: str, user_id: str) -> None: ...


class TenantStore(Protocol):
    """The CRM's tenants and their plan; an unknown tenant reads as free (fail closed)."""

    def get(self, tenant_id: str) -> Tenant: ...
    def save(self, tenant: Tenant) -> None: ...  # last writer wins: the CRM owns the plan


class SubscriptionStore(Protocol):
    """Graph subscriptions per user and kind, with an index from subscription id to its owner."""

    def owner_of(self, sub_id: str) -> Owner | None: ...
    def for_user(self, tenant_id: str, user_id: str) -> dict[Kind, Subscription]: ...
    def get(self, tenant_id: str, user_id: str, kind: Kind) -> Subscription | None: ...
    # Insert when record.etag is None, else If-Match; ConcurrencyError when either finds another write.
    # `previous`'s id leaves the index when the record's id differs.
    def save(self, record: Subscription, previous: Subscription | None) -> Subscription: ...
    def delete(self, record: Subscription) -> None: ...
    def iter_due(self, before: datetime, limit: int = 500) -> Iterator[Subscription]: ...  # expiring before `before`


class NonceStore(Protocol):
    """Nonces of launch links already used: `use` succeeds once per (tenant, user, nonce)."""

    def use(self, tenant_id: str, user_id: str, nonce: str, expires: int) -> bool: ...
    def purge_expired(self, now: float | None = None, limit: int = 1000) -> int: ...  # how many were deleted


class SyncFlagStore(Protocol):
    """Per-user coalescing flags of sync jobs. `save` inserts when flags.etag is None (AlreadyExistsError
    when the row exists), else If-Match (ConcurrencyError when stale)."""

    def get(self, tenant_id: str, user_id: str) -> SyncFlags | None: ...
    def save(self, flags: SyncFlags) -> SyncFlags: ...


class SignInStore(Protocol):
    """Microsoft sign-ins in progress, by state. `create` raises AlreadyExistsError for a state in use; `save`
    is If-Match (ConcurrencyError when stale); `take` deletes If-Match (ConcurrencyError when it changed
    meanwhile; a record already gone is not an error, as Table Storage answers)."""

    def create(self, pending: PendingSignIn) -> PendingSignIn: ...
    def get(self, state: str) -> PendingSignIn | None: ...
    def save(self, pending: PendingSignIn) -> PendingSignIn: ...
    def take(self, pending: PendingSignIn) -> None: ...
