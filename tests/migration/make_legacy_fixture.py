"""Writes legacy_state.json: a storage account filled by the previous version's own adapters (state
partitioned by user id alone), for tests/migration. Run it from a checkout of that version:

    git worktree add /tmp/legacy e0075f6 && cd /tmp/legacy
    PYTHONPATH=. /path/to/.venv/bin/python /path/to/tests/migration/make_legacy_fixture.py OUT.json

Users: "solo" (one tenant; contacts and tasks, 230 links so a move takes several transactions) and
"twin" connected in two tenants (the mixed state the per-tenant keys fix).
"""
from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from azure.data.tables import TableServiceClient  # noqa: E402
from table_dump import dump  # noqa: E402

from devhost.azurite import Azurite  # noqa: E402
from sync_core.adapters.tables.connections import TableConnections  # noqa: E402
from sync_core.adapters.tables.state import TableStateStore  # noqa: E402
from sync_core.domain.connections import Connection, ConnectionStatus  # noqa: E402
from sync_core.domain.models import (  # noqa: E402
    ContactFields,
    Cursor,
    Link,
    LinkState,
    QuarantineEntry,
    RunOutcome,
    RunRecord,
    SideCounts,
    TaskTarget,
    UserSyncSettings,
)

PREFIX = "legacy"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def main(out: Path) -> None:
    server = Azurite().start()
    try:
        service = TableServiceClient.from_connection_string(server.connection_string)
        name = lambda base: PREFIX + base  # noqa: E731
        connections = TableConnections(service, name)
        for tenant, user in (("tenant-solo", "solo"), ("tenant-north", "twin"), ("tenant-south", "twin")):
            connections.save(Connection(tenant_id=tenant, user_id=user, status=ConnectionStatus.CONNECTED,
                                        ms_account=f"{user}@{tenant}.example",
                                        settings=UserSyncSettings(tenant_id=tenant, user_id=user, tasks_enabled=True,
                                                                  task_target=TaskTarget.TO_DO)))
        state = TableStateStore(service, name)
        for user in ("solo", "twin"):
            links = [Link(user_id=user, crm_id=f"c{i}", ms_id=f"m{i}", crm_version=f"v{i}", ms_version=f"k{i}",
                          synced=ContactFields(first_name=f"Ada {i}", emails=(f"ada{i}@example.com",)),
                          synced_hash=f"h{i}") for i in range(230 if user == "solo" else 3)]
            links.append(Link(user_id=user, crm_id="c-removed", ms_id="m-removed", state=LinkState.MS_REMOVED))
            state.save_links(links)
            state.save_link(Link(user_id=f"{user}|tasks", crm_id="t1", ms_id="todo:AAMk-task-1", crm_version="tv1"))
            state.save_cursor(Cursor(user_id=user, folder_id=f"folder-of-{user}", delta_link=f"https://graph/delta?{user}",
                                     crm_position=4242))
            state.save_cursor(Cursor(user_id=f"{user}|tasks", folder_id="tasks;target=todo;mode=two_way"))
            state.save_cursor(Cursor(user_id=f"{user}|tasks|todo", folder_id=f"list-of-{user}",
                                     delta_link=f"https://graph/todo-delta?{user}"))
            for index in range(3):
                state.save_run(RunRecord(user_id=user, run_id=f"run-{user}-{index}",
                                         started_at=T0 + timedelta(minutes=5 * index),
                                         finished_at=T0 + timedelta(minutes=5 * index, seconds=3),
                                         outcome=RunOutcome.SUCCEEDED, microsoft=SideCounts(created=index)))
            state.put_quarantine(QuarantineEntry(user_id=user, side="crm", record_id="c-bad", reason="too long",
                                                 first_seen=T0))
            state.acquire_lease(user, "old-worker", 60, T0)
        out.write_text(json.dumps(dump(service, PREFIX), indent=1, sort_keys=True))
    finally:
        server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
