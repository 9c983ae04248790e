from __future__ import annotations

import os

import pytest

from sync_core.adapters.tables.connections import TableConnections, TableTokens
from sync_core.adapters.tables.common import connect
from sync_core.adapters.tokens import TokenCipher
from sync_core.domain.connections import ConnectionStatus
from sync_core.domain.errors import ConcurrencyError, SyncError
from sync_core.domain.models import SyncMode
from sync_core.settings import load_settings


@pytest.fixture
def stores(app_env: dict[str, str]) -> tuple[TableConnections, TableTokens]:
    settings = load_settings(app_env)
    service = connect(settings.storage_connection_string)
    cipher = TokenCipher(settings.token_key_bytes)
    return TableConnections(service, settings.storage_name), TableTokens(service, settings.storage_name, cipher)


def test_connection_round_trip_and_stale_etag(stores: tuple[TableConnections, TableTokens]) -> None:
    connections, _ = stores
    first = connections.get_or_create("tenant-1", "user/1")
    assert first.status is ConnectionStatus.NOT_CONNECTED
    assert connections.get_or_create("tenant-1", "user/1").etag == first.etag
    updated = connections.save(first.model_copy(update={
        "status": ConnectionStatus.CONNECTED, "ms_account": "a@b.example",
        "settings": first.settings.model_copy(update={"mode": SyncMode.CRM_TO_MICROSOFT})}))
    with pytest.raises(ConcurrencyError):
        connections.save(first.model_copy(update={"ms_account": "stale"}))
    again = connections.get("tenant-1", "user/1")
    assert again is not None and again.ms_account == "a@b.example" and again.settings.mode is SyncMode.CRM_TO_MICROSOFT
    assert again.etag == updated.etag
    assert list(connections.iter_connected()) == [("tenant-1", "user/1")]


def test_token_cache_is_encrypted_bound_to_user_and_chunked(stores: tuple[TableConnections, TableTokens]) -> None:
    _, tokens = stores
    secret = "refresh-" + os.urandom(40_000).hex()  # larger than one table property
    tokens.save("t", "u1", secret)
    assert tokens.load("t", "u1") == secret
    raw = tokens.table.get("t", "u1")
    assert raw is not None and secret[:20] not in "".join(str(v) for v in raw.values())
    # A sealed cache copied onto another user's row does not open.
    raw_entity = dict(raw)
    raw_entity["RowKey"] = "u2"
    tokens.table.upsert(raw_entity)
    with pytest.raises(SyncError):
        tokens.load("t", "u2")
    tokens.delete("t", "u1")
    assert tokens.load("t", "u1") is None
