"""The queue worker through devhost (real Azurite queue), the timer's work, and Sync now."""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest
import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from sync_core.app import freshness
from sync_core.domain.models import CrmContact
from sync_core.settings import get_settings
from sync_core.domain.subscriptions import Kind
from tests.functions.stack import Stack, WebClient, connect_with_emulator, wait_for, wait_subscribed


def _connected(stack: Stack, web: WebClient, ms_user: dict[str, Any], *, contacts: int = 1) -> tuple[str, str]:
    tenant, user = stack.new_tenant(), "user-" + uuid.uuid4().hex[:8]
    account = stack.services.crm.create_account(tenant, "Fabrikam", user)
    for index in range(contacts):
        stack.services.crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=account.id,
                                                     first_name=f"Person{index}", last_name="Queue"))
    web.launch(tenant, user)
    connect_with_emulator(web, ms_user)
    return tenant, user


def test_first_sync_runs_on_the_worker_and_the_page_shows_its_outcome(stack: Stack, web: WebClient,
                                                                     ms_user: dict[str, Any]) -> None:
    tenant, user = _connected(stack, web, ms_user, contacts=2)
    connection = wait_for(lambda: (c := stack.services.connections.get(tenant, user)) and c.last_success_at and c,
                          60, "the first sync to succeed")
    assert connection.last_error is None
    page = web.get("/api/settings").text
    assert "Awaiting first sync" not in page
    assert 'id="run-counts"' in page and "Created in Microsoft 365</th><td>2</td>" in page


def test_sync_now_enqueues_a_sync_that_the_worker_runs(stack: Stack, web: WebClient,
                                                      ms_user: dict[str, Any]) -> None:
    tenant, user = _connected(stack, web, ms_user)
    first = wait_for(lambda: stack.services.state.latest_runs(tenant, user, 1), 60, "the first sync")[0]
    wait_for(lambda: (c := stack.services.connections.get(tenant, user)) and c.last_run_id == first.run_id,
             60, "the first run to be recorded")
    response = web.post_form("/api/sync-now", {"csrf": web.csrf()})
    assert response.status_code == 303 and response.headers["location"] == "/api/settings?flash=sync-queued"
    newer = wait_for(lambda: [r for r in stack.services.state.latest_runs(tenant, user, 3) if r.run_id != first.run_id],
                     60, "a second run after Sync now")
    assert newer


def test_a_message_that_is_not_a_sync_job_is_dropped_not_poisoned(stack: Stack) -> None:
    queue_name = stack.settings.sync_queue_name
    client = QueueClient.from_connection_string(stack.settings.storage_connection_string, queue_name,
                                                message_encode_policy=TextBase64EncodePolicy())
    poison = QueueClient.from_connection_string(stack.settings.storage_connection_string, queue_name + "-poison",
                                                message_decode_policy=TextBase64DecodePolicy())
    ours = ["{not a job " + uuid.uuid4().hex, '{"tenant_id": "t", "user_id": "u", "extra": "%s"}' % uuid.uuid4().hex]

    def drops() -> int:
        return sum("queue message dropped: not a sync job" in line for line in stack.devhost_lines())

    # The queue's message count is no measure here: other tests' delayed follow-up jobs wait in it, invisible.
    before = drops()
    try:
        for body in ours:
            client.send_message(body)
        wait_for(lambda: drops() >= before + len(ours), 30, "the worker to drop both messages")
        wait_for(lambda: not {m.content for m in client.peek_messages(max_messages=32)} & set(ours), 30,
                 "both messages to leave the queue")
        try:
            poisoned = {m.content for m in poison.peek_messages(max_messages=32)}
        except ResourceNotFoundError:
            poisoned = set()  # never created: nothing was poisoned
        assert not poisoned & set(ours)
    finally:
        client.close()
        poison.close()


def test_timer_renews_expiring_subscriptions_and_creates_owed_ones(stack: Stack, web: WebClient,
                                                                  ms_user: dict[str, Any]) -> None:
    tenant, user = _connected(stack, web, ms_user)
    store = stack.services.subscriptions
    record = wait_subscribed(stack, tenant, user)
    soon = store.save(replace(record, expires_at=datetime.now(UTC) + timedelta(hours=2)), record)
    report = freshness.tick(stack.services)
    assert report.enqueued >= 1
    renewed = store.get(tenant, user, Kind.CONTACTS)
    assert renewed is not None and renewed.sub_id == record.sub_id
    assert renewed.expires_at > soon.expires_at + timedelta(hours=20)

    # An owed subscription (its creation failed earlier) is created by the next tick.
    store.delete(renewed)
    owed = store.save(replace(renewed, sub_id="", expires_at=datetime(1970, 1, 1, tzinfo=UTC), etag=None), None)
    assert owed.owed
    freshness.tick(stack.services)
    created = store.get(tenant, user, Kind.CONTACTS)
    assert created is not None and not created.owed and created.sub_id != record.sub_id
    assert store.owner_of(created.sub_id) is not None


def test_the_timer_blueprint_fans_out_through_function_app(stack: Stack, web: WebClient, ms_user: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The registered timer function, called as the Functions worker calls it."""
    tenant, user = _connected(stack, web, ms_user)
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        import function_app
        functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
        timer = functions["sync_timer"]
        bindings = timer.get_bindings_dict()["bindings"]
        assert bindings[0]["schedule"] == "0 */5 * * * *"
        assert functions["sync_worker"].get_bindings_dict()["bindings"][0]["queueName"] == "%SYNC_QUEUE_NAME%"
        before = len(stack.services.state.latest_runs(tenant, user, 10))
        timer.get_user_function()(TimerRequest(past_due=False))
        wait_for(lambda: len(stack.services.state.latest_runs(tenant, user, 10)) > before, 60,
                 "the timer's message to run a sync of a connected user")
    finally:
        get_settings.cache_clear()


def test_the_subscription_follows_the_folder_the_sync_moved_to(stack: Stack, web: WebClient,
                                                              ms_user: dict[str, Any]) -> None:
    tenant, user = _connected(stack, web, ms_user)
    old = wait_subscribed(stack, tenant, user)
    token = stack.control.token(ms_user["id"])
    made = httpx.post(f"{stack.emulator.graph}/me/contactFolders", json={"displayName": "Really Simple Systems (2)"},
                      headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    made.raise_for_status()
    # What the sync records when it had to settle on another folder (e.g. the old one was deleted).
    cursor = stack.services.state.get_cursor(tenant, user)
    stack.services.state.save_cursor(cursor.model_copy(update={"folder_id": made.json()["id"], "delta_link": None}))
    web.post_form("/api/sync-now", {"csrf": web.csrf()})
    store = stack.services.subscriptions
    fresh = wait_for(lambda: (r := store.get(tenant, user, Kind.CONTACTS)) and not r.owed
                     and r.sub_id != old.sub_id and r, 60, "a subscription on the new folder")
    assert fresh.resource == f"/me/contactFolders/{made.json()['id']}/contacts"
    assert store.owner_of(old.sub_id) is None
