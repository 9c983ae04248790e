"""Graph subscriptions in Table Storage (table "subscriptions"):

    PartitionKey u_{tenant}_{user}   RowKey {kind}               the user's subscription of that kind
    PartitionKey byid                RowKey {subscription id}    index: whose it is, and its secret

Each subscription's clientState secret is sealed with the token key (AES-GCM) in both rows; the
webhook reads the index row (one point read). Owed rows (empty `sub_id`) are stored already expired,
so the timer's "expiring within 24 h" query retries them with no extra bookkeeping.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import NameFunction, RequestCounter, Table, etag_of, key_part
from sync_core.adapters.tokens import TokenCipher
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError, NotFoundError
from sync_core.domain.subscriptions import Kind, Owner, Subscription

INDEX_PARTITION = "byid"
USER_PREFIX = "u_"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def user_partition(tenant_id: str, user_id: str) -> str:
    return f"{USER_PREFIX}{key_part(tenant_id)}_{key_part(user_id)}"


def _aad(tenant_id: str, user_id: str, kind: str) -> str:
    return f"subscription/{tenant_id}/{user_id}/{kind}"


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return _EPOCH
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class TableSubscriptions:
    def __init__(self, service: TableServiceClient, name: NameFunction, cipher: TokenCipher,
                 counter: RequestCounter | None = None) -> None:
        self.table = Table(service, name("subscriptions"), counter or RequestCounter())
        self.cipher = cipher

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

    def iter_due(self, before: datetime, limit: int = 500) -> Iterator[Subscription]:
        """User rows expiring before `before` (owed rows are stored already expired)."""
        rows = self.table.query(
            "PartitionKey ge @lo and PartitionKey lt @hi and expires lt @before",
            {"lo": USER_PREFIX, "hi": "u`", "before": before}, page_size=min(limit, 1000), max_items=limit)
        for entity in rows:
            yield self._from_user_row(entity)
