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
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

from sync_core.adapters.tokens import register_token_cache
from sync_core.domain.connections import Connection, ConnectionStatus
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError, NotFoundError
from sync_core.domain.models import UserSyncSettings
from sync_core.domain.subscriptions import Kind, Owner, Subscription
from sync_core.domain.sync_flags import SyncFlags
from sync_core.domain.tenants import Tenant

_etags = itertools.count(1)
Key = tuple[str, str]


def _etag() -> str:
    return f'W/"mem{next(_etags)}"'


def _check_write(exists: bool, current_etag: str | None, expected: str | None) -> None:
    """Insert when `expected` is None, else If-Match: the rules of Table.create / Table.replace."""
    if expected is None:
        if exists:
            raise AlreadyExistsError("the record already exists")
    elif not exists:
        raise NotFoundError("the record is gone")
    elif current_etag != expected:
        raise ConcurrencyError("the record changed since it was read (stale ETag)")


class MemoryConnections:
    def __init__(self) -> None:
        self._rows: dict[Key, Connection] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: str, user_id: str) -> Connection | None:
        with self._lock:
            return self._rows.get((tenant_id, user_id))

    def save(self, connection: Connection) -> Connection:
        with self._lock:
            current = self._rows.get(connection.key)
            _check_write(current is not None, current.etag if current else None, connection.etag)
            # Read back as the table reads it: empty texts are None, last_error is cut at 2,000 characters.
            saved = connection.model_copy(update={
                "etag": _etag(), "last_error": (connection.last_error or "")[:2000] or None,
                "ms_account": connection.ms_account or None, "ms_user_id": connection.ms_user_id or None,
                "last_run_id": connection.last_run_id or None})
            self._rows[connection.key] = saved
            return saved

    def get_or_create(self, tenant_id: str, user_id: str) -> Connection:
        found = self.get(tenant_id, user_id)
        if found is not None:
            return found
        try:
            return self.save(Connection(tenant_id=tenant_id, user_id=user_id,
                                        settings=UserSyncSettings(tenant_id=tenant_id, user_id=user_id)))
        except AlreadyExistsError:
            found = self.get(tenant_id, user_id)
            assert found is not None
            return found

    def delete(self, tenant_id: str, user_id: str) -> None:
        with self._lock:
            self._rows.pop((tenant_id, user_id), None)

    def tenants_of(self, user_id: str) -> list[str]:
        with self._lock:
            return sorted({tenant for tenant, user in self._rows if user == user_id})

    def iter_keys(self) -> Iterator[Key]:
        with self._lock:
            keys = sorted(self._rows)
        yield from keys

    def iter_connected(self) -> Iterator[Key]:
        with self._lock:
            keys = sorted(key for key, row in self._rows.items() if row.status is ConnectionStatus.CONNECTED)
        yield from keys


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
        self._records: dict[tuple[str, str, Kind], Subscription] = {}
        self._index: dict[str, Owner] = {}
        self._lock = threading.Lock()

    def owner_of(self, sub_id: str) -> Owner | None:
        if not sub_id or len(sub_id) > 200:
            return None
        with self._lock:
            return self._index.get(sub_id)

    def for_user(self, tenant_id: str, user_id: str) -> dict[Kind, Subscription]:
        with self._lock:
            return {kind: record for (t, u, kind), record in sorted(self._records.items())
                    if (t, u) == (tenant_id, user_id)}

    def get(self, tenant_id: str, user_id: str, kind: Kind) -> Subscription | None:
        with self._lock:
            return self._records.get((tenant_id, user_id, kind))

    def save(self, record: Subscription, previous: Subscription | None) -> Subscription:
        key = (record.tenant_id, record.user_id, record.kind)
        with self._lock:
            if record.sub_id:  # the new id's index first, as the table adapter writes it
                self._index[record.sub_id] = Owner(record.tenant_id, record.user_id, record.kind, record.client_state)
            current = self._records.get(key)
            try:
                _check_write(current is not None, current.etag if current else None, record.etag)
            except (AlreadyExistsError, NotFoundError) as exc:
                raise ConcurrencyError("the subscription changed meanwhile") from exc
            saved = replace(record, etag=_etag())
            self._records[key] = saved
            if previous is not None and previous.sub_id and previous.sub_id != record.sub_id:
                self._index.pop(previous.sub_id, None)
            return saved

    def delete(self, record: Subscription) -> None:
        with self._lock:
            self._records.pop((record.tenant_id, record.user_id, record.kind), None)
            if record.sub_id:
                self._index.pop(record.sub_id, None)

    def iter_due(self, before: datetime, limit: int = 500) -> Iterator[Subscription]:
        with self._lock:
            due = [record for _, record in sorted(self._records.items()) if record.expires_at < before]
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
        self._flags: dict[Key, SyncFlags] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: str, user_id: str) -> SyncFlags | None:
        with self._lock:
            return self._flags.get((tenant_id, user_id))

    def save(self, flags: SyncFlags) -> SyncFlags:
        key = (flags.tenant_id, flags.user_id)
        with self._lock:
            current = self._flags.get(key)
            _check_write(current is not None, current.etag if current else None, flags.etag)
            saved = replace(flags, etag=_etag())
            self._flags[key] = saved
            return saved
