"""The Table adapters' storage requests do not grow with the amount of data: link lookups are one
point read per id, the feed and run history are one query each (against the session's Azurite)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.tables.state import TableStateStore
from sync_core.adapters.tables.common import RequestCounter, connect
from sync_core.domain.models import CrmContact, Link, RunRecord
from sync_core.settings import AppSettings, load_settings

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def settings(app_env: dict[str, str]) -> AppSettings:
    return load_settings(app_env)


@pytest.mark.parametrize("links", [5, 60])
def test_link_lookups_cost_what_is_asked_not_what_is_stored(settings: AppSettings, links: int) -> None:
    store = TableStateStore.from_settings(settings)
    for index in range(links):
        store.save_link(Link(tenant_id="t1", user_id="u1", crm_id=f"c{index}", ms_id=f"m{index}"))

    store.counter.reset()
    found = store.get_links_by_crm("t1", "u1", ["c1", "c3", "missing"])
    assert set(found) == {"c1", "c3"}
    assert store.counter.snapshot() == {"reads": 1, "writes": 0}  # one OR-query of up to 14 keys

    store.counter.reset()
    wanted = [f"c{i}" for i in range(min(links, 30))] + ["missing"]
    found = store.get_links_by_crm("t1", "u1", wanted)
    assert set(found) == set(wanted) - {"missing"}
    assert store.counter.snapshot() == {"reads": -(-len(wanted) // 14), "writes": 0}

    store.counter.reset()
    found = store.get_links_by_ms("t1", "u1", ["m2", "m4"])
    assert {link.crm_id for link in found.values()} == {"c2", "c4"}
    assert store.counter.snapshot() == {"reads": 2, "writes": 0}

    store.counter.reset()
    assert store.get_links_by_crm("t1", "u1", []) == {}
    assert store.counter.total == 0


@pytest.mark.parametrize("contacts", [3, 40])
def test_an_idle_feed_poll_is_one_read_whatever_the_number_of_contacts(settings: AppSettings, contacts: int) -> None:
    crm = TableCrm.from_settings(settings)
    account = crm.create_account("t1", "Engines", None)
    for index in range(contacts):
        crm.create_contact(CrmContact(id=f"c{index}", tenant_id="t1", account_id=account.id))
    cursor = crm.read_changes("t1", 0, limit=1000).last_position
    assert cursor == contacts + 1

    crm.counter.reset()
    page = crm.read_changes("t1", cursor)
    assert page.entries == () and page.last_position == cursor
    assert crm.counter.snapshot() == {"reads": 1, "writes": 0}


def test_latest_runs_is_one_query(settings: AppSettings) -> None:
    store = TableStateStore.from_settings(settings)
    for index in range(25):
        store.save_run(RunRecord(tenant_id="t1", user_id="u1", run_id=f"r{index}", started_at=T0 + timedelta(minutes=index)))
    store.counter.reset()
    assert [r.run_id for r in store.latest_runs("t1", "u1", limit=3)] == ["r24", "r23", "r22"]
    assert store.counter.snapshot() == {"reads": 1, "writes": 0}


def test_each_table_is_created_once_per_process(settings: AppSettings) -> None:
    service = connect(settings.storage_connection_string)
    first = RequestCounter()
    TableStateStore(service, settings.storage_name, counter=first).get_cursor("t1", "u1")
    assert first.snapshot() == {"reads": 1, "writes": 1}  # the create-table request, then the read

    second = RequestCounter()
    TableStateStore(service, settings.storage_name, counter=second).get_cursor("t1", "u1")
    assert second.snapshot() == {"reads": 1, "writes": 0}
