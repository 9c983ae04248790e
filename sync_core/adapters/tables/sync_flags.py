"""Sync-job flags in Table Storage: table "syncflags", PartitionKey = tenant, RowKey = user; the
properties queued, queued_at, dirty and (once a follow-up job was scheduled) follow_at."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import NameFunction, RequestCounter, Table, etag_of, key_part
from sync_core.domain.sync_flags import SyncFlags


def _flags_of(tenant_id: str, user_id: str, row: Mapping[str, Any]) -> SyncFlags:
    follow_at = row.get("follow_at")
    return SyncFlags(tenant_id=tenant_id, user_id=user_id, queued=bool(row.get("queued")),
                     queued_at=float(row.get("queued_at", 0.0)), dirty=bool(row.get("dirty")),
                     follow_at=None if follow_at is None else float(follow_at), etag=etag_of(row))


class TableSyncFlags:
    def __init__(self, service: TableServiceClient, name: NameFunction, counter: RequestCounter | None = None) -> None:
        self.table = Table(service, name("syncflags"), counter or RequestCounter())

    def get(self, tenant_id: str, user_id: str) -> SyncFlags | None:
        row = self.table.get(key_part(tenant_id), key_part(user_id))
        return None if row is None else _flags_of(tenant_id, user_id, row)

    def save(self, flags: SyncFlags) -> SyncFlags:
        entity: dict[str, Any] = {"PartitionKey": key_part(flags.tenant_id), "RowKey": key_part(flags.user_id),
                                  "queued": flags.queued, "queued_at": float(flags.queued_at), "dirty": flags.dirty}
        if flags.follow_at is not None:  # rows of users never followed keep having no such property
            entity["follow_at"] = float(flags.follow_at)
        etag = self.table.create(entity) if flags.etag is None else self.table.replace(entity, flags.etag)
        return replace(flags, etag=etag)
