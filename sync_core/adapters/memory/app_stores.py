"""In-memory versions of the app's stores (ports.py: ConnectionStore, TokenStore, TenantStore,
SubscriptionStore, NonceStore, SyncFlagStore), for tests and local tools. They keep the rules the
Table Storage adapters keep, so a test against them fails where production would: an insert of an
existing record raises AlreadyExistsError, a stale ETag raises ConcurrencyError, a nonce is used once.
Each operation is atomic (one lock per store), as a single Table Storage request is.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from sync_core.adapters.tokens import register_token_cache
from sync_core.domain.connections import Connection, ConnectionStatus, CreatedOnFirstUse
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError, NotFoundError
from sync_core.domain.sign_ins import PendingSignIn
from sync_core.domain.subscriptions import Kind, Owner, Subscription
from sync_core.domain.sync_flags import SyncFlags
from sync_core.domain.tenants import Tenant

_etags = itertools.count(1)
Key = tuple[str, str]
K = TypeVar("K", bound=tuple[str, ...])


class _Versioned(Protocol):
    @property
    def etag(self) -> str | None: ...


V = TypeVar("V", bound=_Versioned)


def _etag() -> str:
    return f'W/"mem{next(_etags)}"'


class _Records(Generic[K, V]):
    """Records with an ETag each, behind one lock (reentrant: a store may group its own steps under it).
    A write inserts when `expected` is None and replaces If-Match otherwise, as Table.create / replace do."""

    def __init__(self) -> None:
        self._rows: dict[K, V] = {}
        self.lock = threading.RLock()

    def get(self, key: K) -> V | None:
        with self.lock:
            return self._rows.get(key)

    def put(self, key: K, record: V, stored: Callable[[V], V]) -> V:
        with self.lock:
            current = self._rows.get(key)
            if record.etag is None:
                if current is not None:
                    raise AlreadyExistsError("the record already exists")
            elif current is None:
                raise NotFoundError("the record is gone")
            elif current.etag != record.etag:
                raise ConcurrencyError("the record changed since it was read (stale ETag)")
            self._rows[key] = saved = stored(record)
            return saved

    def pop(self, key: K) -> None:
        with self.lock:
            self._rows.pop(key, None)

    def items(self) -> list[tuple[K, V]]:
        """A sorted snapshot (by key)."""
        with self.lock:
            return sorted(self._rows.items(), key=lambda item: item[0])


def _stored_connection(connection: Connection) -> Connection:
    """What a read gives back, as from the table: empty texts are None, last_error is cut at 2,000 characters."""
    return connection.model_copy(update={
        "etag": _etag(), "last_error": (connection.last_error or "")[:2000] or None,
        "ms_account": connection.ms_account or None, "ms_user_id": connection.ms_user_id or None,
        "last_run_id": connection.last_run_id or None})


class MemoryConnections(CreatedOnFirstUse):
    def __init__(self) -> None:
        self._rows: _Records[Key, Connection] = _Records()

    def get(self, tenant_id: str, user_id: str) -> Connection | None:
        return self._rows.get((tenant_id, user_id))

    def save(self, connection: Connection) -> Connection:
        return self._rows.put(connection.key, connection, _stored_connection)

    def delete(self, tenant_id: str, user_id: str) -> None:
        self._rows.pop((tenant_id, user_id))

    def tenants_of(self, user_id: str) -> list[str]:
        return sorted({tenant for (tenant, user), _ in self._rows.items() if user == user_id})

    def iter_keys(self) -> Iterator[Key]:
        yield from [key for key, _ in self._rows.items()]

    def iter_connected(self) -> Iterator[Key]:
        yield from [key for key, row in self._rows.items() if row.status is ConnectionStatus.CONNECTED]


class MemoryTokens:
    def __init__(self) -> None:
        self._caches: dict[Key, str] = {}
        self._lock = threading.Lock()

    def load(self, tenant_id: str, user_id: str) -> str | None:
        with self._lock:
            serialized = self._caches.get((tenant_id, user_id))
        if serialized is not None:
            register_token_cache(serialized)  # as the real store: tokens read are never logged
        return serialized

    def save(self, tenant_id: str, user_id: str, serialized: str) -> None:
        register_token_cache(serialized)
        with self._lock:
            self._caches[(tenant_id, user_id)] = serialized

    def delete(self, tenant_id: str, user_id: str) -> None:
        with self._lock:
            self._caches.pop((tenant_id, user_id), None)

    def __repr__(self) -> str:  # never show cache contents
        return f"MemoryTokens({len(self._caches)} users)"


class MemoryTenants:
    def __init__(self) -> None:
        self._tenants: dict[str, Tenant] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: str) -> Tenant:
        with self._lock:
            return self._tenants.get(tenant_id) or Tenant(id=tenant_id)

    def save(self, tenant: Tenant) -> None:
        with self._lock:
            self._tenants[tenant.id] = tenant


class MemorySubscriptions:
    def __init__(self) -> None:
        self._records: _Records[tuple[str, str, Kind], Subscription] = _Records()
        self._index: dict[str, Owner] = {}

    def owner_of(self, sub_id: str) -> Owner | None:
        if not sub_id or len(sub_id) > 200:
            return None
        with self._records.lock:
            return self._index.get(sub_id)

    def for_user(self, tenant_id: str, user_id: str) -> dict[Kind, Subscription]:
        return {kind: record for (t, u, kind), record in self._records.items() if (t, u) == (tenant_id, user_id)}

    def get(self, tenant_id: str, user_id: str, kind: Kind) -> Subscription | None:
        return self._records.get((tenant_id, user_id, kind))

    def save(self, record: Subscription, previous: Subscription | None) -> Subscription:
        with self._records.lock:
            if record.sub_id:  # the new id's index first, as the table adapter writes it
                self._index[record.sub_id] = Owner(record.tenant_id, record.user_id, record.kind, record.client_state)
            try:
                saved = self._records.put((record.tenant_id, record.user_id, record.kind), record,
                                          lambda r: replace(r, etag=_etag()))
            except (AlreadyExistsError, NotFoundError) as exc:
                raise ConcurrencyError("the subscription changed meanwhile") from exc
            if previous is not None and previous.sub_id and previous.sub_id != record.sub_id:
                self._index.pop(previous.sub_id, None)
            return saved

    def delete(self, record: Subscription) -> None:
        with self._records.lock:
            self._records.pop((record.tenant_id, record.user_id, record.kind))
            if record.sub_id:
                self._index.pop(record.sub_id, None)

    def iter_due(self, before: datetime, limit: int = 500) -> Iterator[Subscription]:
        due = [record for _, record in self._records.items() if record.expires_at < before]
        yield from due[:limit]


class MemoryNonces:
    def __init__(self) -> None:
        self._used: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def use(self, tenant_id: str, user_id: str, nonce: str, expires: int) -> bool:
        with self._lock:
            if (tenant_id, user_id, nonce) in self._used:
                return False
            self._used[(tenant_id, user_id, nonce)] = expires
            return True

    def purge_expired(self, now: float | None = None, limit: int = 1000) -> int:
        cutoff = int(now if now is not None else time.time())
        with self._lock:
            expired = [key for key, expires in sorted(self._used.items()) if expires < cutoff][:limit]
            for key in expired:
                del self._used[key]
            return len(expired)


class MemorySyncFlags:
    def __init__(self) -> None:
        self._flags: _Records[Key, SyncFlags] = _Records()

    def get(self, tenant_id: str, user_id: str) -> SyncFlags | None:
        return self._flags.get((tenant_id, user_id))

    def save(self, flags: SyncFlags) -> SyncFlags:
        return self._flags.put((flags.tenant_id, flags.user_id), flags, lambda f: replace(f, etag=_etag()))


class MemorySignIns:
    def __init__(self) -> None:
        self._pending: _Records[tuple[str], PendingSignIn] = _Records()

    def create(self, pending: PendingSignIn) -> PendingSignIn:
        return self._pending.put((pending.state,), replace(pending, etag=None), lambda p: replace(p, etag=_etag()))

    def get(self, state: str) -> PendingSignIn | None:
        return self._pending.get((state,))

    def save(self, pending: PendingSignIn) -> PendingSignIn:
        with self._pending.lock:
            current = self._pending.get((pending.state,))
            if pending.etag is None:  # Table.replace without an ETag: whatever is there, but it must be there
                if current is None:
                    raise NotFoundError("the sign-in is gone")
                pending = replace(pending, etag=current.etag)
            return self._pending.put((pending.state,), pending, lambda p: replace(p, etag=_etag()))

    def take(self, pending: PendingSignIn) -> None:
        with self._pending.lock:
            current = self._pending.get((pending.state,))
            if current is None:
                return  # already gone: Table Storage answers a delete of a missing row with success
            if pending.etag is not None and current.etag != pending.etag:
                raise ConcurrencyError("the sign-in changed since it was read (stale ETag)")
            self._pending.pop((pending.state,))
