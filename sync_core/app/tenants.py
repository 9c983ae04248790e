"""CRM tenants and their plan: the integration is for paid plans only.

The CRM owns the plan; it mirrors each tenant here (table "tenants", PartitionKey "tenant",
RowKey the tenant id). A tenant with no record is treated as free: the integration fails closed,
so a tenant the CRM never told us about gets the "needs a paid plan" page and no Microsoft call.
"""
from __future__ import annotations

from enum import StrEnum

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import NameFunction, RequestCounter, Table, key_part
from sync_core.bootstrap import Services
from sync_core.domain.models import Frozen

_PARTITION = "tenant"


class Plan(StrEnum):
    FREE = "free"
    PAID = "paid"


class Tenant(Frozen):
    id: str
    name: str = ""
    plan: Plan = Plan.FREE

    @property
    def integration_allowed(self) -> bool:
        return self.plan is Plan.PAID


class TenantStore:
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


def tenant_store(services: Services) -> TenantStore:
    """The TenantStore of these Services, built once per Services."""
    store: TenantStore | None = getattr(services, "_tenant_store", None)
    if store is None:
        store = TenantStore(services.table_service, services.settings.storage_name, services.counter)
        services._tenant_store = store  # type: ignore[attr-defined]
    return store
