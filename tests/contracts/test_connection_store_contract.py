"""ConnectionStore and TokenStore contracts: the memory stores and the Table Storage stores (on Azurite)."""
from __future__ import annotations

import json

import pytest

from sync_core.adapters.memory.app_stores import MemoryConnections, MemoryTokens
from sync_core.adapters.tables.common import connect
from sync_core.adapters.tables.connections import TableConnections, TableTokens
from sync_core.adapters.tokens import TokenCipher
from sync_core.domain.connections import ConnectionStatus
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError
from sync_core.domain.models import SyncMode
from sync_core.ports import ConnectionStore, TokenStore
from sync_core.settings import load_settings


@pytest.fixture(params=["memory", "tables"])
def connections(request: pytest.FixtureRequest) -> ConnectionStore:
    if request.param == "memory":
        return MemoryConnections()
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableConnections(connect(settings.storage_connection_string), settings.storage_name)


@pytest.fixture(params=["memory", "tables"])
def tokens(request: pytest.FixtureRequest) -> TokenStore:
    if request.param == "memory":
        return MemoryTokens()
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableTokens(connect(settings.storage_connection_string), settings.storage_name,
                       TokenCipher(settings.token_key_bytes))


def test_a_connection_is_created_once_and_saved_if_unchanged(connections: ConnectionStore) -> None:
    first = connections.get_or_create("t/1", "u#1")
    assert first.status is ConnectionStatus.NOT_CONNECTED and first.etag
    assert connections.get_or_create("t/1", "u#1") == first
    with pytest.raises(AlreadyExistsError):
        connections.save(first.model_copy(update={"etag": None}))
    updated = connections.save(first.model_copy(update={
        "status": ConnectionStatus.CONNECTED, "ms_account": "a@b.example", "last_error": "x" * 3000,
        "settings": first.settings.model_copy(update={"mode": SyncMode.CRM_TO_MICROSOFT})}))
    with pytest.raises(ConcurrencyError):
        connections.save(first.model_copy(update={"ms_account": "stale"}))
    again = connections.get("t/1", "u#1")
    assert again is not None and again.etag == updated.etag and again.status is ConnectionStatus.CONNECTED
    assert again.ms_account == "a@b.example" and again.last_error == "x" * 2000
    assert again.settings.mode is SyncMode.CRM_TO_MICROSOFT
    assert connections.get("t/2", "u#1") is None


def test_listings_and_delete(connections: ConnectionStore) -> None:
    for tenant, user in [("t2", "u1"), ("t1", "u1"), ("t1", "u2")]:
        connections.get_or_create(tenant, user)
    connected = connections.get("t1", "u2")
    assert connected is not None
    connections.save(connected.model_copy(update={"status": ConnectionStatus.CONNECTED}))

    assert connections.tenants_of("u1") == ["t1", "t2"]
    assert connections.tenants_of("nobody") == []
    assert sorted(connections.iter_keys()) == [("t1", "u1"), ("t1", "u2"), ("t2", "u1")]
    assert list(connections.iter_connected()) == [("t1", "u2")]

    connections.delete("t1", "u1")
    connections.delete("t1", "u1")  # already gone is what was wanted
    assert connections.get("t1", "u1") is None
    assert connections.tenants_of("u1") == ["t2"]


def test_a_token_cache_is_per_user_and_survives_its_size(tokens: TokenStore) -> None:
    assert tokens.load("t", "u") is None
    cache = json.dumps({"RefreshToken": {"k": {"secret": "r" * 40}}, "pad": "p" * 70_000})  # several table chunks
    tokens.save("t", "u", cache)
    assert tokens.load("t", "u") == cache
    assert tokens.load("t2", "u") is None and tokens.load("t", "u2") is None
    tokens.save("t", "u", "{}")
    assert tokens.load("t", "u") == "{}"
    tokens.delete("t", "u")
    assert tokens.load("t", "u") is None
