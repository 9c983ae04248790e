"""Where Graph change-notification subscriptions are kept (table "subscriptions").

    PartitionKey u_{tenant}_{user}   RowKey {kind}               the user's subscription of that kind
    PartitionKey byid                RowKey {subscription id}    index: whose it is, and its secret

Each subscription has its own random clientState secret, sealed with the token key (AES-GCM) in both
rows; the webhook reads the index row (one point read) and compares in constant time. A user row
whose `sub_id` is empty is an owed subscription: wanted, but its creation failed or had to wait (the
To Do list does not exist before the first task sync). Owed rows are stored already expired, so the
timer's "expiring within 24 h" query retries them with no extra bookkeeping.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sync_core.adapters.tables.common import Table, etag_of, key_part
from sync_core.adapters.tokens import TokenCipher
from sync_core.app.per_services import per_services
from sync_core.bootstrap import Services
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError, NotFoundError

INDEX_PARTITION = "byid"
USER_PREFIX = "u_"
MAX_RENEWALS_PER_TICK = 500
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Kind(StrEnum):
    CONTACTS = "contacts"
    TASKS = "tasks"


@dataclass(frozen=True)
class Subscription:
    tenant_id: str
    user_id: str
    kind: Kind
    sub_id: str  # "" while owed
    resource: str
    expires_at: datetime
    client_state: str = field(repr=False)
    etag: str | None = None  # of the user row

    @property
    def owed(self) -> bool:
        return not self.sub_id


@dataclass(frozen=True)
class Owner:
    """Whose subscription an id is, from the index row (what the webhook needs)."""

    tenant_id: str
    user_id: str
    kind: Kind
    client_state: str = field(repr=False)


def user_partition(tenant_id: str, user_id: str) -> str:
    return f"{USER_PREFIX}{key_part(tenant_id)}_{key_part(user_id)}"


def _aad(tenant_id: str, user_id: str, kind: str) -> str:
    return f"subscription/{tenant_id}/{user_id}/{kind}"


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return EPOCH
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_graph_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Graph writes 7 fractional digits; fromisoformat takes at most 6.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class SubscriptionStore:
    def __init__(self, services: Services) -> None:
        self.table = Table(services.table_service, services.settings.storage_name("subscriptions"), services.counter)
        self.cipher = TokenCipher(services.settings.token_key_bytes)

    def _from_user_row(self, entity: Any) -> Subscription:
        tenant_id, user_id, kind = str(entity["tenant_id"]), str(entity["user_id"]), Kind(str(entity["RowKey"]))
        return Subscription(
            tenant_id=tenant_id, user_id=user_id, kind=kind, sub_id=str(entity.get("sub_id") or ""),
            resource=str(entity.get("resource") or ""), expires_at=_utc(entity.get("expires")),
            client_state=self.cipher.decrypt(str(entity["secret"]), _aad(tenant_id, user_id, kind.value)),
            etag=etag_of(entity),
        )

    def owner_of(self, sub_id: str) -> Owner | None:
        if not sub_id or len(sub_id) > 200:
            return None
        entity = self.table.get(INDEX_PARTITION, key_part(sub_id))
        if entity is None:
            return None
        tenant_id, user_id, kind = str(entity["tenant_id"]), str(entity["user_id"]), str(entity["kind"])
        secret = self.cipher.decrypt(str(entity["secret"]), _aad(tenant_id, user_id, kind))
        return Owner(tenant_id, user_id, Kind(kind), secret)

    def for_user(self, tenant_id: str, user_id: str) -> dict[Kind, Subscription]:
        rows = self.table.query("PartitionKey eq @pk", {"pk": user_partition(tenant_id, user_id)})
        return {record.kind: record for record in map(self._from_user_row, rows)}

    def get(self, tenant_id: str, user_id: str, kind: Kind) -> Subscription | None:
        entity = self.table.get(user_partition(tenant_id, user_id), kind.value)
        return None if entity is None else self._from_user_row(entity)

    def save(self, record: Subscription, previous: Subscription | None) -> Subscription:
        """Write the user row (insert, or If-Match `record.etag`) and the index rows: the new id's
        index first, so a notification never finds a subscription we do not know; the old id's last."""
        sealed = self.cipher.encrypt(record.client_state, _aad(record.tenant_id, record.user_id, record.kind.value))
        if record.sub_id:
            self.table.upsert({"PartitionKey": INDEX_PARTITION, "RowKey": key_part(record.sub_id),
                               "tenant_id": record.tenant_id, "user_id": record.user_id, "kind": record.kind.value,
                               "secret": sealed, "expires": record.expires_at})
        entity = {"PartitionKey": user_partition(record.tenant_id, record.user_id), "RowKey": record.kind.value,
                  "tenant_id": record.tenant_id, "user_id": record.user_id, "sub_id": record.sub_id,
                  "resource": record.resource, "expires": record.expires_at, "secret": sealed}
        try:
            etag = self.table.create(entity) if record.etag is None else self.table.replace(entity, record.etag)
        except (AlreadyExistsError, NotFoundError) as exc:
            raise ConcurrencyError("the subscription changed meanwhile") from exc
        if previous is not None and previous.sub_id and previous.sub_id != record.sub_id:
            self.table.delete(INDEX_PARTITION, key_part(previous.sub_id))
        return replace(record, etag=etag)

    def delete(self, record: Subscription) -> None:
        self.table.delete(user_partition(record.tenant_id, record.user_id), record.kind.value)
        if record.sub_id:
            self.table.delete(INDEX_PARTITION, key_part(record.sub_id))

    def iter_due(self, before: datetime, limit: int = MAX_RENEWALS_PER_TICK) -> Iterator[Subscription]:
        """User rows expiring before `before` (owed rows are stored already expired)."""
        rows = self.table.query(
            "PartitionKey ge @lo and PartitionKey lt @hi and expires lt @before",
            {"lo": USER_PREFIX, "hi": "u`", "before": before}, page_size=min(limit, 1000), max_items=limit)
        for entity in rows:
            yield self._from_user_row(entity)


def subscription_store(services: Services) -> SubscriptionStore:
    return per_services(services, "_subscription_store", SubscriptionStore)
