"""The fault matrix, system side: webhooks duplicated and late, the worker killed (also between a Graph write
and its link write), Azurite restarted or gone, a dead worker's lease, a poison message, two jobs at once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.storage.queue import QueueClient

from sync_core.app import freshness, jobs, ops
from sync_core.domain.errors import StorageError
from sync_core.domain.models import RunOutcome, RunRecord
from sync_core.domain.subscriptions import Kind
from tests.faults.matrix import LEASE_SECONDS, Connector, User
from tests.faults.test_graph_faults import BATCH, DELTA, _assert_one_each
from tests.functions.stack import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _fault_hit(user: User, rule_id: str) -> bool:
    rules = user.stack.control.http.get("/faults").json()["value"]
    return any(r["id"] == rule_id and r["hits"] > 0 for r in rules)


def _no_overlap(runs: list[RunRecord]) -> None:
    ordered = sorted(runs, key=lambda r: r.started_at)
    for earlier, later in zip(ordered, ordered[1:]):
        assert earlier.finished_at is not None and later.started_at >= earlier.finished_at, (earlier, later)


def test_duplicate_and_late_notifications_reach_the_crm_once(connect: Connector) -> None:
    user = connect(contacts=2)
    stack = user.stack
    wait_for(lambda: (r := stack.services.subscriptions.get(user.tenant_id, user.user_id, Kind.CONTACTS))
             and not r.owed, 30, "the contact folder subscription")
    stack.control.http.delete("/notifications/log")
    stack.control.http.post("/notifications", json={"duplicate_probability": 1.0, "delay_ms": 1500})
    since = datetime.now(UTC)
    item = user.folder_items()[0]
    assert user.outlook.request("PATCH", f"/contacts/{item['id']}", {"jobTitle": "Via webhook"}).status_code == 200

    def ours() -> list[dict[str, object]]:
        log = stack.control.http.get("/notifications/log").json()["value"]
        return [d for d in log if d["kind"] == "change" and str(d["url"]).startswith(stack.url)]

    # Every delivery is sent twice (a duplicate of a duplicate too): once some came twice, stop duplicating.
    wait_for(lambda: any(d["duplicate"] and d["state"] == "delivered" for d in ours()), 20, "a duplicate delivery")
    stack.control.http.post("/notifications", json={"duplicate_probability": 0})
    wait_for(lambda: any(c.job_title == "Via webhook" for c in user.crm_contacts()), 30, "the edit in the CRM")
    delivered = wait_for(lambda: (found := ours()) and all(d["state"] != "pending" for d in found) and found, 30,
                         "every delivery to be answered")
    assert all(d["state"] == "delivered" for d in delivered), [(d["state"], d["attempts"]) for d in delivered]
    assert all(d["attempts"][0]["status"] == 202 for d in delivered)  # answered at once, late or not
    time.sleep(3)  # the duplicate and any coalesced pass
    runs = [r for r in user.runs() if r.started_at >= since]
    assert 1 <= len(runs) <= 3, runs  # duplicates coalesce instead of stacking runs
    _no_overlap(runs)
    _assert_one_each(user)


def test_worker_killed_mid_run_is_taken_over_after_its_lease(connect: Connector) -> None:
    user = connect(contacts=0)
    stack = user.stack
    user.add_contacts(25)
    sent = user.enqueue()
    killed = wait_for(lambda: next((r for r in user.runs(5) if r.started_at >= sent
                                    and r.outcome is RunOutcome.RUNNING), None), 30, "the run to start")
    stack.devhost.kill()
    stack.devhost.start()
    run = user.sync_until_quiet()
    assert run.started_at >= killed.lease_expires_at - timedelta(seconds=1)  # not before the lease ran out
    _assert_one_each(user)
    wait_for(lambda: not [r for r in user.runs() if r.outcome is RunOutcome.RUNNING], 15,
             "the killed run to be closed")
    closed = next(r for r in user.runs() if r.run_id == killed.run_id)
    assert closed.outcome is RunOutcome.FAILED and closed.error == jobs.ABANDONED


def test_worker_killed_between_the_graph_write_and_the_link_write(connect: Connector) -> None:
    user = connect(contacts=0)
    stack = user.stack
    rule = stack.control.add_fault(method="POST", path_regex=BATCH, delay_ms=15_000, after=True, times=1,
                                   in_batch=False)
    user.add_contacts(25)
    user.enqueue()
    wait_for(lambda: _fault_hit(user, rule["id"]), 30, "a create batch done by Graph")
    stack.devhost.kill()  # Graph made the contacts; the worker never saved their links
    assert len(user.folder_items()) >= 20
    stack.devhost.start()
    user.sync_until_quiet()
    _assert_one_each(user)
    # The killed run is closed as abandoned by the worker just after it saves its own run.
    wait_for(lambda: not [r for r in user.runs() if r.outcome is RunOutcome.RUNNING], 15,
             "the killed run to be closed")


def test_azurite_restarted_keeps_everything_and_the_next_sync_writes_only_the_change(connect: Connector) -> None:
    user = connect(contacts=3)
    stack = user.stack
    stack.restart_azurite()
    contact = user.crm_contacts()[0]
    stack.services.crm.update_contact(contact.model_copy(update={"job_title": "After the restart"}))
    run = user.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert (run.microsoft.created, run.microsoft.updated) == (0, 1)
    _assert_one_each(user)


def test_storage_unavailable_at_the_start_of_a_run_fails_cleanly_and_recovers(connect: Connector) -> None:
    user = connect(contacts=1)
    stack = user.stack
    job = json.dumps({"tenant_id": user.tenant_id, "user_id": user.user_id, "reason": "test"})
    stack.azurite.stop()
    try:
        started = time.monotonic()
        # What the queue trigger runs: a typed storage error within seconds; the host then retries the message.
        with pytest.raises(StorageError):
            freshness.run_job(stack.services, job)
        assert time.monotonic() - started < 30
        # Graph must retry a notification it could not hand over; a page says to try again.
        hint = httpx.post(f"{stack.url}/api/graph/notifications", trust_env=False, timeout=30,
                          json={"value": [{"subscriptionId": "x", "clientState": "y"}]})
        assert hint.status_code == 503
        page = user.web.get("/api/settings")
        assert page.status_code == 503 and "try again" in page.text
        status = subprocess.run([sys.executable, "-m", "sync_core", "status"], capture_output=True, text=True,
                                env={**os.environ, **stack.stack.env}, cwd=ROOT, timeout=120)
        assert status.returncode == 1 and "storage is not reachable" in status.stderr
    finally:
        stack.azurite.start()
    user.add_contacts(1)
    run = user.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 1, run
    assert not [r for r in user.runs() if r.outcome is RunOutcome.RUNNING]


def test_a_dead_workers_lease_expires_and_its_user_is_synced_then_without_another_job(connect: Connector) -> None:
    user = connect(contacts=0)
    state = user.stack.services.state
    connection = user.stack.services.connections.get(user.tenant_id, user.user_id)
    assert connection is not None
    now = datetime.now(UTC)
    # An older run whose worker died long ago: operators see it at once, running with its lease gone.
    older = state.save_run(RunRecord(tenant_id=user.tenant_id, user_id=user.user_id, run_id=f"older-{uuid.uuid4().hex[:8]}",
                                     started_at=now - timedelta(minutes=20),
                                     lease_expires_at=now - timedelta(minutes=5)))
    assert [r.run_id for r in ops.user_status(user.stack.services, connection).abandoned_runs] == [older.run_id]
    lease = state.acquire_lease(user.tenant_id, user.user_id, "dead-host:4242", LEASE_SECONDS, now)
    dead = state.save_run(RunRecord(tenant_id=user.tenant_id, user_id=user.user_id, run_id=f"dead-{uuid.uuid4().hex[:8]}", started_at=now,
                                    lease_expires_at=lease.expires_at))
    user.add_contacts(2)
    sent = user.enqueue()
    time.sleep(2)
    assert not [r for r in user.runs() if r.started_at >= sent], "a run started while the lease was held"
    # No further job is sent: the one that found the lease held scheduled a follow-up for its expiry,
    # instead of leaving the user to the next timer tick (5 minutes in production).
    run = user.wait_run(sent, timeout=LEASE_SECONDS + 30)
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 2 and run.started_at >= lease.expires_at

    def closed() -> bool:  # the worker closes them just after saving its own run
        runs = {r.run_id: r for r in user.runs()}
        return all(runs[gone.run_id].outcome is RunOutcome.FAILED and runs[gone.run_id].error == jobs.ABANDONED
                   for gone in (dead, older))

    wait_for(closed, 15, "the dead worker's runs to be closed as abandoned")
    assert not ops.user_status(user.stack.services, connection).abandoned_runs


def test_a_poison_message_is_moved_aside_shown_to_operators_and_the_user_still_syncs(connect: Connector) -> None:
    user = connect(contacts=0)
    stack = user.stack
    settings = stack.settings
    poison = QueueClient.from_connection_string(settings.storage_connection_string, settings.sync_queue_name + "-poison")
    before = ops.poison_report(stack.services).depth
    # A stray sender forgot the base64 encoding the queue trigger expects: every delivery fails.
    stray = QueueClient.from_connection_string(settings.storage_connection_string, settings.sync_queue_name)
    try:
        stray.send_message(json.dumps({"tenant_id": user.tenant_id, "user_id": user.user_id, "reason": "stray"}))
        wait_for(lambda: ops.poison_report(stack.services).depth == before + 1, 60, "the message in the poison queue")
        lines = stack.devhost.log_path.read_text(errors="replace")
        assert "(delivery 5 of 5)" in lines or "after 5 deliveries" in lines
        env = {**os.environ, **stack.stack.env}
        table = subprocess.run([sys.executable, "-m", "sync_core", "status"], capture_output=True, text=True,
                               env=env, cwd=ROOT, timeout=120)
        assert table.returncode == 0, table.stderr
        assert f"poison queue {settings.sync_queue_name}-poison: {before + 1} message(s)" in table.stdout
        assert f"{user.tenant_id}/{user.user_id}" in table.stdout
        assert ops.status_json([], ops.poison_report(stack.services))["poison"]["depth"] == before + 1  # type: ignore[index]
        # The user's next timer sync still runs.
        user.add_contacts(1)
        sent = datetime.now(UTC)
        jobs.fan_out(stack.services)
        run = user.wait_run(sent)
        assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 1, run
    finally:
        stray.close()
        poison.clear_messages()
        poison.close()


def test_two_jobs_for_one_user_at_once_never_run_side_by_side(connect: Connector) -> None:
    user = connect(contacts=0)
    stack = user.stack
    # Each run spends a while in its first request, so two concurrent runs would overlap.
    stack.control.add_fault(method="GET", path_regex=DELTA, delay_ms=1200, times=4, in_batch=False)
    user.add_contacts(5)
    sent = datetime.now(UTC)
    stack.services.queue.enqueue_many([])
    for _ in range(2):
        stack.services.queue.enqueue_user(user.tenant_id, user.user_id, "test")
    user.wait_run(sent)
    time.sleep(4)  # the second job and any pass it asked for
    runs = [r for r in user.runs() if r.started_at >= sent]
    wait_for(lambda: all(r.outcome is not RunOutcome.RUNNING for r in user.runs(10)), 30, "runs to finish")
    runs = [r for r in user.runs() if r.started_at >= sent]
    _no_overlap(runs)
    _assert_one_each(user)
