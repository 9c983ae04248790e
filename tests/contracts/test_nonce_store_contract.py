"""NonceStore contract: a launch nonce is used once per tenant and user; expired ones are purged."""
from __future__ import annotations

import pytest

from sync_core.adapters.memory.app_stores import MemoryNonces
from sync_core.adapters.tables.common import connect
from sync_core.adapters.tables.nonces import TableNonces
from sync_core.ports import NonceStore
from sync_core.settings import load_settings

NOW = 1_800_000_000


@pytest.fixture(params=["memory", "tables"])
def nonces(request: pytest.FixtureRequest) -> NonceStore:
    if request.param == "memory":
        return MemoryNonces()
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableNonces(connect(settings.storage_connection_string), settings.storage_name)


def test_a_nonce_is_used_once_per_tenant_and_user(nonces: NonceStore) -> None:
    assert nonces.use("t1", "u1", "n-ab/1", NOW + 60)
    assert not nonces.use("t1", "u1", "n-ab/1", NOW + 60)
    assert not nonces.use("t1", "u1", "n-ab/1", NOW + 999)  # a later expiry does not make it new
    # Each tenant's CRM picks its own nonces: the same one elsewhere is another link.
    assert nonces.use("t2", "u1", "n-ab/1", NOW + 60)
    assert nonces.use("t1", "u2", "n-ab/1", NOW + 60)
    assert nonces.use("t1", "u1", "n-ab/2", NOW + 60)


def test_purge_drops_only_expired_nonces_up_to_the_limit(nonces: NonceStore) -> None:
    for i in range(3):
        assert nonces.use("t", "u", f"old{i}", NOW - 10 - i)
    assert nonces.use("t", "u", "edge", NOW)  # expires at `now`: not yet "before now"
    assert nonces.use("t", "u", "live", NOW + 300)

    assert nonces.purge_expired(now=NOW, limit=2) == 2
    assert nonces.purge_expired(now=NOW) == 1
    assert nonces.purge_expired(now=NOW) == 0
    assert not nonces.use("t", "u", "edge", NOW)
    assert not nonces.use("t", "u", "live", NOW + 300)
    assert nonces.purge_expired(now=NOW + 301) == 2
