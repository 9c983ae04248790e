"""The state a continued sync keeps (issue 10) round-trips through both state stores: a run's progress and
outcome, the cursor's fan-out mark; and rows written before issue 10 (without them) still read."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone

from sync_core.domain.models import Cursor, Progress, RunOutcome, RunRecord
from sync_core.ports import StateStore

TENANT = "tenant-cont"


def test_a_continuing_run_keeps_its_progress_and_the_cursor_its_fanout_mark(store: StateStore) -> None:
    user = "u-" + secrets.token_hex(4)
    started = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
    progress = Progress(contacts_done=2000, contacts_total=5000, tasks_done=0, tasks_total=0)
    store.save_run(RunRecord(tenant_id=TENANT, user_id=user, run_id="r1", started_at=started, finished_at=started,
                             outcome=RunOutcome.CONTINUING, progress=progress))
    [run] = store.latest_runs(TENANT, user, 1)
    assert run.outcome is RunOutcome.CONTINUING and run.progress == progress

    saved = store.save_cursor(Cursor(tenant_id=TENANT, user_id=user, crm_position=41, fanout_after="97|crm-0042"))
    read = store.get_cursor(TENANT, user)
    assert (read.crm_position, read.fanout_after) == (41, "97|crm-0042")
    store.save_cursor(read.model_copy(update={"fanout_after": None}))
    assert store.get_cursor(TENANT, user).fanout_after is None and saved.etag is not None


def test_rows_from_before_the_budget_read_without_progress_or_fanout_mark() -> None:
    from azure.data.tables import TableEntity

    from sync_core.adapters.tables.state import cursor_from_entity, cursor_to_entity, run_from_entity, run_to_entity

    def stored(entity: dict[str, object], drop: str) -> TableEntity:
        row = TableEntity({k: v for k, v in entity.items() if k != drop})
        row._metadata = {"etag": 'W/"datetime\'2026-05-01T08%3A00%3A00Z\'"', "timestamp": None}
        return row

    started = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)
    run = run_to_entity(RunRecord(tenant_id=TENANT, user_id="u", run_id="r0", started_at=started,
                                  outcome=RunOutcome.SUCCEEDED))
    assert run_from_entity(stored(run, "Progress")).progress is None
    cursor = cursor_to_entity(Cursor(tenant_id=TENANT, user_id="u", crm_position=3))
    assert cursor_from_entity(stored(cursor, "FanoutAfter")).fanout_after is None
