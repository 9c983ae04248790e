"""Tenants in Table Storage: table "tenants", PartitionKey "tenant", RowKey the tenant id."""
from __future__ import annotations

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import NameFunction, RequestCounter, Table, key_part
from sync_core.domain.tenants import Plan, Tenant

_PARTITION = "tenant"


class TableTenants:
    def __init__(self, service: TableServiceClient, name: NameFunction, counter: RequestCounter | None = None) -> None:
        self.table = Table(service, name("tenants"), counter or RequestCounter())

    def get(self, tenant_id: str) -> Tenant:
        entity = self.table.get(_PARTITION, key_part(tenant_id))
        if entity is None:
            return Tenant(id=tenant_id)
        return Tenant(id=tenant_id, name=str(entity.get("name") or ""), plan=Plan(str(entity["plan"])))

    def save(self, tenant: Tenant) -> None:
        self.table.upsert({"PartitionKey": _PARTITION, "RowKey": key_part(tenant.id), "tenant_id": tenant.id,
                           "name": tenant.name, "plan": tenant.plan.value})
