"""TenantStore contract: the memory store and the Table Storage store (on Azurite) answer alike."""
from __future__ import annotations

import pytest

from sync_core.adapters.memory.app_stores import MemoryTenants
from sync_core.adapters.tables.common import connect
from sync_core.adapters.tables.tenants import TableTenants
from sync_core.domain.tenants import Plan, Tenant
from sync_core.ports import TenantStore
from sync_core.settings import load_settings


@pytest.fixture(params=["memory", "tables"])
def tenants(request: pytest.FixtureRequest) -> TenantStore:
    if request.param == "memory":
        return MemoryTenants()
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableTenants(connect(settings.storage_connection_string), settings.storage_name)


def test_an_unknown_tenant_is_free_and_not_allowed(tenants: TenantStore) -> None:
    tenant = tenants.get("never-told")
    assert tenant == Tenant(id="never-told", name="", plan=Plan.FREE)
    assert not tenant.integration_allowed


def test_a_saved_tenant_reads_back_and_the_last_save_wins(tenants: TenantStore) -> None:
    tenants.save(Tenant(id="acme/eu#1", name="Acme", plan=Plan.PAID))
    tenants.save(Tenant(id="globex", name="Globex", plan=Plan.PAID))
    assert tenants.get("acme/eu#1") == Tenant(id="acme/eu#1", name="Acme", plan=Plan.PAID)
    assert tenants.get("acme/eu#1").integration_allowed

    tenants.save(Tenant(id="acme/eu#1", name="Acme Ltd", plan=Plan.FREE))  # downgraded by the CRM
    assert tenants.get("acme/eu#1") == Tenant(id="acme/eu#1", name="Acme Ltd", plan=Plan.FREE)
    assert tenants.get("globex").plan is Plan.PAID
