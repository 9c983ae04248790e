"""SyncFlagStore contract: per-user job flags, insert-once and If-Match like every stored record."""
from __future__ import annotations

from dataclasses import replace

import pytest

from sync_core.adapters.memory.app_stores import MemorySyncFlags
from sync_core.adapters.tables.common import connect
from sync_core.adapters.tables.sync_flags import TableSyncFlags
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError
from sync_core.domain.sync_flags import SyncFlags
from sync_core.ports import SyncFlagStore
from sync_core.settings import load_settings


@pytest.fixture(params=["memory", "tables"])
def flags(request: pytest.FixtureRequest) -> SyncFlagStore:
    if request.param == "memory":
        return MemorySyncFlags()
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableSyncFlags(connect(settings.storage_connection_string), settings.storage_name)


def test_flags_round_trip_with_and_without_a_follow_up(flags: SyncFlagStore) -> None:
    assert flags.get("t/1", "u#1") is None
    saved = flags.save(SyncFlags("t/1", "u#1", queued=True, queued_at=1_700_000_000.25))
    assert saved.etag
    assert flags.get("t/1", "u#1") == saved
    assert saved.follow_at is None and not saved.dirty

    followed = flags.save(replace(saved, queued=False, dirty=True, follow_at=1_700_000_090.5))
    assert followed.etag != saved.etag
    assert flags.get("t/1", "u#1") == followed
    assert flags.get("t/2", "u#1") is None  # user ids repeat across tenants


def test_an_insert_of_existing_flags_and_a_stale_etag_are_refused(flags: SyncFlagStore) -> None:
    first = flags.save(SyncFlags("t", "u", queued=True, queued_at=1.0))
    with pytest.raises(AlreadyExistsError):
        flags.save(SyncFlags("t", "u", dirty=True))
    second = flags.save(replace(first, dirty=True))
    with pytest.raises(ConcurrencyError):
        flags.save(replace(first, queued=False))  # written from the state before `second`
    assert flags.get("t", "u") == second
