"""Connections and encrypted token caches in Table Storage.

connections: PartitionKey = tenant, RowKey = user; settings as JSON. Listing the connected users
for the timer fan-out is one filtered query returning only keys.
tokens: PartitionKey = tenant, RowKey = user; the MSAL cache sealed with AES-GCM (adapters/tokens.py).
"""
from __future__ import annotations

from collections.abc import Iterator

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import NameFunction, RequestCounter, Table, etag_of, from_iso, iso, key_part
from sync_core.adapters.tokens import TokenCipher, register_token_cache
from sync_core.domain.connections import Connection, ConnectionStatus, CreatedOnFirstUse
from sync_core.domain.models import UserSyncSettings

# Table Storage caps a string property at 64 KiB (32K UTF-16 chars); token caches are split.
_CHUNK = 30_000


class TableConnections(CreatedOnFirstUse):
    def __init__(self, service: TableServiceClient, name: NameFunction, counter: RequestCounter | None = None) -> None:
        self.table = Table(service, name("connections"), counter or RequestCounter())

    def get(self, tenant_id: str, user_id: str) -> Connection | None:
        entity = self.table.get(key_part(tenant_id), key_part(user_id))
        if entity is None:
            return None
        return Connection(
            tenant_id=tenant_id, user_id=user_id, status=ConnectionStatus(entity["status"]),
            ms_account=entity.get("ms_account") or None, ms_user_id=entity.get("ms_user_id") or None,
            connected_at=from_iso(entity.get("connected_at")), last_success_at=from_iso(entity.get("last_success_at")),
            last_error=entity.get("last_error") or None, last_run_id=entity.get("last_run_id") or None,
            settings=UserSyncSettings.model_validate_json(entity["settings"]), etag=etag_of(entity),
        )

    def save(self, connection: Connection) -> Connection:
        entity = {
            "PartitionKey": key_part(connection.tenant_id), "RowKey": key_part(connection.user_id),
            "tenant_id": connection.tenant_id, "user_id": connection.user_id,
            "status": connection.status.value, "ms_account": connection.ms_account or "",
            "ms_user_id": connection.ms_user_id or "", "connected_at": iso(connection.connected_at),
            "last_success_at": iso(connection.last_success_at), "last_error": (connection.last_error or "")[:2000],
            "last_run_id": connection.last_run_id or "", "settings": connection.settings.model_dump_json(),
        }
        if connection.etag is None:
            etag = self.table.create(entity)
        else:
            etag = self.table.replace(entity, connection.etag)
        return connection.model_copy(update={"etag": etag})

    def delete(self, tenant_id: str, user_id: str) -> None:
        self.table.delete(key_part(tenant_id), key_part(user_id))

    def tenants_of(self, user_id: str) -> list[str]:
        """Every tenant with a connection row for this user id (user ids repeat across tenants)."""
        rows = self.table.query("RowKey eq @rk", {"rk": key_part(user_id)}, select=["tenant_id"])
        return sorted({str(row["tenant_id"]) for row in rows})

    def iter_keys(self) -> Iterator[tuple[str, str]]:
        """(tenant, user) of every connection, whatever its state: a scan returning only those fields."""
        for entity in self.table.query("PartitionKey ge @lo", {"lo": ""}, page_size=1000, select=["tenant_id", "user_id"]):
            yield str(entity["tenant_id"]), str(entity["user_id"])

    def iter_connected(self) -> Iterator[tuple[str, str]]:
        for entity in self.table.query("status eq @s", {"s": ConnectionStatus.CONNECTED.value},
                                       page_size=1000, select=["tenant_id", "user_id"]):
            yield str(entity["tenant_id"]), str(entity["user_id"])


class TableTokens:
    def __init__(self, service: TableServiceClient, name: NameFunction, cipher: TokenCipher,
                 counter: RequestCounter | None = None) -> None:
        self.table = Table(service, name("tokens"), counter or RequestCounter())
        self.cipher = cipher

    def load(self, tenant_id: str, user_id: str) -> str | None:
        entity = self.table.get(key_part(tenant_id), key_part(user_id))
        if entity is None:
            return None
        sealed = "".join(str(entity.get(f"c{i}", "")) for i in range(int(entity.get("chunks", 0))))
        serialized = self.cipher.decrypt(sealed, f"{tenant_id}/{user_id}")
        register_token_cache(serialized)
        return serialized

    def save(self, tenant_id: str, user_id: str, serialized: str) -> None:
        register_token_cache(serialized)  # a sign-in or a refresh just produced these tokens
        sealed = self.cipher.encrypt(serialized, f"{tenant_id}/{user_id}")
        chunks = [sealed[i:i + _CHUNK] for i in range(0, len(sealed), _CHUNK)]
        entity: dict[str, object] = {"PartitionKey": key_part(tenant_id), "RowKey": key_part(user_id),
                                     "chunks": len(chunks)}
        entity.update({f"c{i}": chunk for i, chunk in enumerate(chunks)})
        self.table.upsert(entity)

    def delete(self, tenant_id: str, user_id: str) -> None:
        self.table.delete(key_part(tenant_id), key_part(user_id))

    def __repr__(self) -> str:  # never show cache contents
        return f"TableTokens({self.table.name})"

