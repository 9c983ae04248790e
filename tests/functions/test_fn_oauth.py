"""Connect to Microsoft through devhost and the emulator's identity platform, as a browser would."""
from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sync_core.domain.connections import ConnectionStatus
from tests.functions.stack import Stack, WebClient, client_sign_in, connect_with_emulator, wait_for, wait_subscribed


def _user() -> str:
    return "user-" + uuid.uuid4().hex[:8]


def test_connect_shows_the_green_banner_and_awaiting_first_sync(stack: Stack, web: WebClient,
                                                               ms_user: dict[str, Any]) -> None:
    tenant, user = stack.new_tenant(), _user()
    web.launch(tenant, user)
    page = connect_with_emulator(web, ms_user)
    assert page.status_code == 200
    assert str(page.url).endswith("/api/settings?flash=connected")
    assert 'data-banner="ok"' in page.text and "Connected to Microsoft 365" in page.text
    assert f"Connected to {ms_user['userPrincipalName']}" in page.text
    assert '<span id="last-success">Awaiting first sync</span>' in page.text
    connection = stack.services.connections.get(tenant, user)
    assert connection is not None and connection.status is ConnectionStatus.CONNECTED
    assert connection.ms_account == ms_user["userPrincipalName"]
    # The token cache is stored encrypted: the raw row never holds a token in the clear.
    cache = json.loads(stack.services.tokens.load(tenant, user) or "{}")
    refresh_tokens = [entry["secret"] for entry in cache.get("RefreshToken", {}).values()]
    assert refresh_tokens
    raw = stack.services.tokens.table.get(*_keys(tenant, user))
    assert raw is not None and not any(token in str(dict(raw)) for token in refresh_tokens)


def test_connect_subscribes_to_the_contact_folder(stack: Stack, web: WebClient, ms_user: dict[str, Any]) -> None:
    tenant, user = stack.new_tenant(), _user()
    web.launch(tenant, user)
    connect_with_emulator(web, ms_user)
    # Owed until the first sync has made the folder (only the sync creates it), then created.
    record = wait_subscribed(stack, tenant, user)
    folder_id = stack.services.state.get_cursor(tenant, user).folder_id
    assert record.resource == f"/me/contactFolders/{folder_id}/contacts"
    assert record.resource.startswith("/me/contactFolders/") and record.resource.endswith("/contacts")
    owner = stack.services.subscriptions.owner_of(record.sub_id)
    assert owner is not None and (owner.tenant_id, owner.user_id) == (tenant, user)
    assert 20 <= len(record.client_state) <= 128


def test_a_replayed_callback_is_refused(stack: Stack, web: WebClient, ms_user: dict[str, Any]) -> None:
    web.launch(stack.new_tenant(), _user())
    answer = client_sign_in(web, ms_user)
    first = web.http.post(answer["action"], data=answer["fields"])
    assert first.status_code == 303
    replay = web.http.post(answer["action"], data=answer["fields"])
    assert replay.status_code == 400 and "already" in replay.text
    # The first answer still completes; finishing twice does not.
    finish = web.follow(first)
    assert "Connected to Microsoft 365" in finish.text
    again = web.get(first.headers["location"])
    assert again.status_code == 400 and "already finished" in again.text


def test_another_users_session_cannot_finish_my_sign_in(stack: Stack, web: WebClient,
                                                       ms_user: dict[str, Any]) -> None:
    tenant, victim, attacker = stack.new_tenant(), _user(), _user()
    web.launch(tenant, victim)
    answer = client_sign_in(web, ms_user)
    callback = web.http.post(answer["action"], data=answer["fields"])
    other = stack.browser()
    try:
        other.launch(tenant, attacker)
        stolen = other.get(callback.headers["location"])
        assert stolen.status_code == 400 and "another session" in stolen.text
        assert stack.services.connections.get(tenant, attacker) is None
        assert stack.services.tokens.load(tenant, attacker) is None
    finally:
        other.close()


def test_unknown_or_missing_state_is_refused(stack: Stack, web: WebClient) -> None:
    missing = web.http.post("/api/oauth/callback", data={"code": "abc"})
    assert missing.status_code == 400 and "state" in missing.text
    forged = web.http.get("/api/oauth/callback", params={"code": "abc", "state": "forged-state"})
    assert forged.status_code == 400
    web.launch(stack.new_tenant(), _user())
    assert web.get("/api/oauth/finish", params={"state": "forged-state"}).status_code == 400


def test_cancelled_consent_says_so_and_connects_nothing(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    web.launch(tenant, user)
    start = web.post_form("/api/connect", {"csrf": web.csrf()})
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    callback = web.http.post("/api/oauth/callback", data={"state": state, "error": "access_denied",
                                                        "error_description": "AADSTS65004: User declined."})
    page = web.follow(callback)
    assert page.status_code == 400 and "cancelled the Microsoft sign-in" in page.text
    connection = stack.services.connections.get(tenant, user)
    assert connection is None or connection.status is ConnectionStatus.NOT_CONNECTED


def _keys(tenant: str, user: str) -> tuple[str, str]:
    from sync_core.adapters.tables.common import key_part
    return key_part(tenant), key_part(user)


def test_a_dead_sign_in_shows_reconnect_and_reconnecting_resumes(stack: Stack, web: WebClient,
                                                                 ms_user: dict[str, Any]) -> None:
    tenant, user = stack.new_tenant(), _user()
    web.launch(tenant, user)
    connect_with_emulator(web, ms_user)
    wait_for(lambda: (c := stack.services.connections.get(tenant, user)) and c.last_success_at, 60, "the first sync")
    stack.control.revoke(ms_user["id"])
    cache = json.loads(stack.services.tokens.load(tenant, user) or "{}")
    cache["AccessToken"] = {}  # the next Graph call must refresh, and the revoke makes that fail
    stack.services.tokens.save(tenant, user, json.dumps(cache))
    web.post_form("/api/sync-now", {"csrf": web.csrf()})
    wait_for(lambda: (c := stack.services.connections.get(tenant, user))
             and c.status is ConnectionStatus.RECONNECT_NEEDED, 60, "the worker to find the sign-in dead")
    page = web.get("/api/settings").text
    assert 'data-state="reconnect_needed"' in page and "has stopped" in page
    assert 'id="status-problem"' in page and "invalid_grant" in page
    assert "Reconnect to Microsoft" in page and 'id="sync-now"' not in page

    again = connect_with_emulator(web, ms_user)
    assert "Connected to Microsoft 365" in again.text
    connection = stack.services.connections.get(tenant, user)
    assert connection is not None and connection.status is ConnectionStatus.CONNECTED
    assert connection.last_error is None
