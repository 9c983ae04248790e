"""Graph change notifications through devhost: the handshake, clientState checks, lifecycle events."""
from __future__ import annotations

import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sync_core.adapters.tables.common import Table, key_part
from sync_core.domain.subscriptions import Kind, Subscription
from tests.functions.stack import Stack, WebClient, connect_with_emulator, wait_for, wait_subscribed


def _subscribed_user(stack: Stack) -> Subscription:
    """A stored subscription for a fresh (not connected) user: all the webhook needs to route a hint."""
    tenant, user = stack.new_tenant(), "user-" + uuid.uuid4().hex[:8]
    record = Subscription(tenant, user, Kind.CONTACTS, str(uuid.uuid4()), "/me/contactFolders/x/contacts",
                          datetime.now(UTC) + timedelta(days=2), secrets.token_urlsafe(48))
    return stack.services.subscriptions.save(record, None)


def _enqueued(stack: Stack, record: Subscription) -> bool:
    """jobs.enqueue_sync leaves a flag row per user it was asked to sync (kept after the run)."""
    flags = Table(stack.services.table_service, stack.settings.storage_name("syncflags"), stack.services.counter)
    return flags.get(key_part(record.tenant_id), key_part(record.user_id)) is not None


def _notification(record: Subscription, client_state: str | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "subscriptionId": record.sub_id, "clientState": record.client_state if client_state is None else client_state,
        "changeType": "updated", "resource": "Users/x/Contacts/y", "tenantId": str(uuid.uuid4()),
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00.0000000Z",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Contact", "id": "y"},
    }
    item.update(extra)
    return item


def _post(stack: Stack, path: str, document: Any) -> httpx.Response:
    return httpx.post(stack.url + path, content=json.dumps(document).encode(), trust_env=False, timeout=10,
                      headers={"content-type": "application/json"})


@pytest.mark.parametrize("path", ["/api/graph/notifications", "/api/graph/lifecycle"])
def test_validation_handshake_echoes_the_token_as_plain_text(stack: Stack, path: str) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1 & <b>"
    response = httpx.post(stack.url + path, params={"validationToken": token}, trust_env=False,
                          headers={"content-type": "text/plain"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text == token
    too_long = httpx.post(stack.url + path, params={"validationToken": "x" * 3000}, trust_env=False)
    assert too_long.status_code == 400


def test_a_genuine_notification_enqueues_the_users_sync_within_3_s(stack: Stack) -> None:
    record = _subscribed_user(stack)
    started = time.monotonic()
    response = _post(stack, "/api/graph/notifications", {"value": [_notification(record), _notification(record)]})
    assert response.status_code == 202, response.text
    assert time.monotonic() - started < 3.0
    assert _enqueued(stack, record)


@pytest.mark.parametrize("tamper", ["forged", "missing", "empty", "unknown_subscription", "mixed"])
def test_forged_notifications_are_refused_and_enqueue_nothing(stack: Stack, tamper: str) -> None:
    record = _subscribed_user(stack)
    items: list[dict[str, Any]]
    if tamper == "forged":
        items = [_notification(record, client_state=secrets.token_urlsafe(48))]
    elif tamper == "missing":
        item = _notification(record)
        del item["clientState"]
        items = [item]
    elif tamper == "empty":
        items = [_notification(record, client_state="")]
    elif tamper == "unknown_subscription":
        items = [_notification(record, subscriptionId=str(uuid.uuid4()))]
    else:  # one genuine item does not carry a forged one through
        other_last = "y" if record.client_state.endswith("x") else "x"
        items = [_notification(record), _notification(record, client_state=record.client_state[:-1] + other_last)]
    response = _post(stack, "/api/graph/notifications", {"value": items})
    assert response.status_code == 403, response.text
    assert "Traceback" not in response.text
    assert not _enqueued(stack, record)


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b"{not json", "application/json", 400),
    (b'{"value": []}', "application/json", 400),
    (b'{"value": "x"}', "application/json", 400),
    (b'[1, 2]', "application/json", 400),
    (b'{"value": [{"subscriptionId": 5, "clientState": "x"}]}', "application/json", 400),
    (b'{"value": [{}]}', "text/plain", 415),
    (b'{"value": [' + b'{"a": "' + b"x" * 300_000 + b'"}]}', "application/json", 413),
])
def test_malformed_bodies_are_refused(stack: Stack, body: bytes, content_type: str, status: int) -> None:
    response = httpx.post(stack.url + "/api/graph/notifications", content=body, trust_env=False,
                          headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/plain")


def test_lifecycle_events_go_to_their_own_url(stack: Stack) -> None:
    record = _subscribed_user(stack)
    misplaced = _post(stack, "/api/graph/notifications",
                      {"value": [_notification(record, lifecycleEvent="missed")]})
    assert misplaced.status_code == 400
    unknown_event = _post(stack, "/api/graph/lifecycle",
                          {"value": [_notification(record, lifecycleEvent="somethingElse")]})
    assert unknown_event.status_code == 400
    forged = _post(stack, "/api/graph/lifecycle",
                   {"value": [_notification(record, client_state="nope", lifecycleEvent="missed")]})
    assert forged.status_code == 403
    assert not _enqueued(stack, record)


def test_lifecycle_for_a_user_no_longer_connected_drops_the_subscription(stack: Stack) -> None:
    record = _subscribed_user(stack)
    response = _post(stack, "/api/graph/lifecycle",
                     {"value": [_notification(record, lifecycleEvent="reauthorizationRequired")]})
    assert response.status_code == 202
    assert stack.services.subscriptions.get(record.tenant_id, record.user_id, Kind.CONTACTS) is None
    assert stack.services.subscriptions.owner_of(record.sub_id) is None


def _connected(stack: Stack, web: WebClient, ms_user: dict[str, Any]) -> Subscription:
    tenant, user = stack.new_tenant(), "user-" + uuid.uuid4().hex[:8]
    web.launch(tenant, user)
    connect_with_emulator(web, ms_user)
    return wait_subscribed(stack, tenant, user)  # type: ignore[no-any-return]


def test_reauthorization_required_renews_the_subscription(stack: Stack, web: WebClient,
                                                          ms_user: dict[str, Any]) -> None:
    record = _connected(stack, web, ms_user)
    response = _post(stack, "/api/graph/lifecycle",
                     {"value": [_notification(record, lifecycleEvent="reauthorizationRequired")]})
    assert response.status_code == 202
    renewed = stack.services.subscriptions.get(record.tenant_id, record.user_id, Kind.CONTACTS)
    assert renewed is not None and renewed.sub_id == record.sub_id
    assert renewed.etag != record.etag and renewed.expires_at >= record.expires_at


def test_missed_recreates_the_subscription_and_syncs(stack: Stack, web: WebClient, ms_user: dict[str, Any]) -> None:
    record = _connected(stack, web, ms_user)
    response = _post(stack, "/api/graph/lifecycle", {"value": [_notification(record, lifecycleEvent="missed")]})
    assert response.status_code == 202
    fresh = stack.services.subscriptions.get(record.tenant_id, record.user_id, Kind.CONTACTS)
    assert fresh is not None and fresh.sub_id != record.sub_id and fresh.client_state != record.client_state
    assert stack.services.subscriptions.owner_of(record.sub_id) is None
    # The old subscription's secret no longer opens the door.
    stale = _post(stack, "/api/graph/notifications", {"value": [_notification(record)]})
    assert stale.status_code == 403
    wait_for(lambda: stack.services.state.latest_runs(record.tenant_id, record.user_id, 1), 30, "a delta sync after 'missed'")


def test_outlook_edits_reach_the_crm_through_the_webhook_within_5_s(stack: Stack, web: WebClient,
                                                                     ms_user: dict[str, Any]) -> None:
    from sync_core.domain.models import CrmContact
    tenant, user = stack.new_tenant(), "user-" + uuid.uuid4().hex[:8]
    account = stack.services.crm.create_account(tenant, "Latency Ltd", user)
    contact = stack.services.crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=account.id,
                                                           first_name="Edit", last_name="Me"))
    web.launch(tenant, user)
    connect_with_emulator(web, ms_user)
    link = wait_for(lambda: (found := stack.services.state.get_links_by_crm(tenant, user, [contact.id]).get(contact.id))
                    and found.ms_id and found, 60, "the first sync to link the contact")
    wait_subscribed(stack, tenant, user)
    token = stack.control.token(ms_user["id"])
    latencies = []
    for edit in range(5):
        title = f"Title {edit} {uuid.uuid4().hex[:4]}"
        started = time.monotonic()
        answer = httpx.patch(f"{stack.emulator.graph}/me/contacts/{link.ms_id}", json={"jobTitle": title},
                             headers={"Authorization": f"Bearer {token}"}, trust_env=False)
        answer.raise_for_status()
        wait_for(lambda: stack.services.crm.get_contacts(tenant, [contact.id])[contact.id].job_title == title,
                 10, f"edit {edit} to reach the CRM", interval=0.05)
        latencies.append(time.monotonic() - started)
    assert max(latencies) <= 5.0, latencies
