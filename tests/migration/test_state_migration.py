"""The previous version's state (partitioned by user id alone) moves to (tenant, user) keys: by the
operator command, once, idempotent and resumable; and on first access by the queue worker. The storage
account is the one the previous version's own adapters wrote (make_legacy_fixture.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from table_dump import load, read

from sync_core.app import jobs
from sync_core.adapters.tables.state import LEGACY_TABLES
from sync_core.app.services import Services
from sync_core.bootstrap import build_services
from sync_core.domain.models import LinkState, RunOutcome
from sync_core.settings import load_settings
from sync_core.adapters.tables.state_migration import StateMigration, migrate_user
from sync_core.domain.tenants import Plan, Tenant

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURE = read(HERE / "legacy_state.json")
SOLO, TWIN = ("tenant-solo", "solo"), "twin"


@pytest.fixture
def services(app_env: dict[str, str], storage_prefix: str) -> Services:
    built = build_services(load_settings(app_env))
    load(built.table_service, storage_prefix, FIXTURE)
    for tenant in ("tenant-solo", "tenant-north", "tenant-south"):
        built.tenants.save(Tenant(id=tenant, plan=Plan.PAID))
    return built


def legacy_partitions(services: Services, table: str) -> set[str]:
    client = services.table_service.get_table_client(services.settings.storage_name(LEGACY_TABLES[table]))
    return {str(row["PartitionKey"]) for row in client.list_entities(select=["PartitionKey"])}


def migration(services: Services) -> StateMigration:
    return StateMigration(services.table_service, services.settings.storage_name, services.connections)


def assert_solo_moved_whole(services: Services) -> None:
    state = services.state
    cursor = state.get_cursor(*SOLO)
    assert (cursor.folder_id, cursor.delta_link, cursor.crm_position) == ("folder-of-solo", "https://graph/delta?solo", 4242)
    assert state.get_cursor(SOLO[0], "solo|tasks|todo").folder_id == "list-of-solo"
    assert state.get_cursor(SOLO[0], "solo|tasks").folder_id == "tasks;target=todo;mode=two_way"
    links = list(state.iter_links(*SOLO))
    assert len(links) == 231 and len({link.crm_id for link in links}) == 231
    by_ms = state.get_links_by_ms(SOLO[0], "solo", ["m7", "m-removed"])
    assert by_ms["m7"].synced is not None and by_ms["m7"].synced.first_name == "Ada 7"
    assert by_ms["m7"].crm_version == "v7" and by_ms["m-removed"].state is LinkState.MS_REMOVED
    assert state.get_links_by_crm(SOLO[0], "solo|tasks", ["t1"])["t1"].ms_id == "todo:AAMk-task-1"
    runs = state.latest_runs(*SOLO)
    assert [r.run_id for r in runs] == ["run-solo-2", "run-solo-1", "run-solo-0"]
    assert all(r.outcome is RunOutcome.SUCCEEDED and r.tenant_id == SOLO[0] for r in runs)
    assert [(q.record_id, q.reason) for q in state.list_quarantine(*SOLO)] == [("c-bad", "too long")]
    for table in LEGACY_TABLES:
        assert not {p for p in legacy_partitions(services, table) if p.startswith("solo")}, table


def assert_twin_left_alone(services: Services) -> None:
    for tenant in ("tenant-north", "tenant-south"):
        assert services.state.get_cursor(tenant, TWIN).etag is None
        assert list(services.state.iter_links(tenant, TWIN)) == []
        assert services.state.latest_runs(tenant, TWIN) == []
    assert "twin" in legacy_partitions(services, "usercursors")


def test_the_operator_command_moves_each_users_state_once(services: Services, app_env: dict[str, str]) -> None:
    env = {**{k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}, **app_env}

    def command() -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "sync_core", "migrate-state"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    first = command()
    assert first["moved_rows"] == {"synccursors": 3, "syncleases": 1, "synclinks": 464, "syncquarantine": 1,
                                   "syncruns": 3}
    assert first["users_moved"] == 1
    assert first["ambiguous"] == {"twin": ["tenant-north", "tenant-south"]} and first["orphaned"] == []
    assert_solo_moved_whole(services)
    assert_twin_left_alone(services)

    again = command()  # idempotent: nothing left to move, nothing changed
    assert again["moved_rows"] == {} and again["users_moved"] == 0
    assert_solo_moved_whole(services)


def test_a_migration_stopped_midway_finishes_on_the_next_run(services: Services,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = StateMigration._move

    def crash_on_the_third(self: StateMigration, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the process was stopped")
        original(self, *args)

    monkeypatch.setattr(StateMigration, "_move", crash_on_the_third)
    with pytest.raises(RuntimeError):
        migration(services).run()
    assert "solo" in legacy_partitions(services, "usercursors") or "solo" in legacy_partitions(services, "userlinks")
    monkeypatch.setattr(StateMigration, "_move", original)
    report = migration(services).run()
    assert report.users == {SOLO}
    assert_solo_moved_whole(services)
    assert_twin_left_alone(services)


def test_the_queue_worker_moves_a_users_state_before_its_first_sync(services: Services) -> None:
    """The worker runs the job; this test's identity endpoint is closed, so the sync itself fails at sign-in
    (the queue would retry the message), but the user's state had already moved to their tenant."""
    with pytest.raises(requests.exceptions.ConnectionError):
        jobs.handle_sync_message(services, {"tenant_id": SOLO[0], "user_id": SOLO[1], "reason": "timer"})
    assert_solo_moved_whole(services)
    assert_twin_left_alone(services)
    # A user id connected in two tenants is not guessed at, by the worker either.
    assert migrate_user(services.table_service, services.settings.storage_name, services.connections,
                        "tenant-north", TWIN) is not None
    assert_twin_left_alone(services)
