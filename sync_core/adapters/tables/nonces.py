"""Used launch-link nonces in Table Storage (table "launchnonces"), per tenant and user: the CRM of
each tenant picks its nonces, so one tenant's nonce never blocks another's link. A nonce row is written
with insert-only semantics, so two concurrent uses of one link cannot both succeed."""
from __future__ import annotations

import time

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import NameFunction, RequestCounter, Table, key_part
from sync_core.domain.errors import AlreadyExistsError


class TableNonces:
    def __init__(self, service: TableServiceClient, name: NameFunction, counter: RequestCounter | None = None) -> None:
        self.table = Table(service, name("launchnonces"), counter or RequestCounter())

    @staticmethod
    def _partition(nonce: str) -> str:
        return "n" + key_part(nonce[:2])

    def use(self, tenant_id: str, user_id: str, nonce: str, expires: int) -> bool:
        row = f"{key_part(tenant_id)}_{key_part(user_id)}_{key_part(nonce)}"
        try:
            self.table.create({"PartitionKey": self._partition(nonce), "RowKey": row, "expires": expires})
        except AlreadyExistsError:
            return False
        return True

    def purge_expired(self, now: float | None = None, limit: int = 1000) -> int:
        """Delete nonces whose link has expired (they can no longer be replayed anyway)."""
        cutoff = int(now if now is not None else time.time())
        removed = 0
        for entity in self.table.query("expires lt @now", {"now": cutoff}, page_size=min(limit, 1000),
                                       max_items=limit, select=["PartitionKey", "RowKey"]):
            self.table.delete(str(entity["PartitionKey"]), str(entity["RowKey"]))
            removed += 1
        return removed
