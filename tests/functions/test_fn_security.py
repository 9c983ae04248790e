"""Who may do what: launch links, sessions, CSRF, and one user never reaching another's connection."""
from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import pytest

from sync_core.domain.connections import Connection, ConnectionStatus
from sync_core.domain.models import UserSyncSettings
from sync_core.web.auth import SESSION_COOKIE, issue_session, sign_launch
from tests.functions.stack import Stack, WebClient, started_sign_ins


def _user() -> str:
    return "user-" + uuid.uuid4().hex[:8]


def _launch(stack: Stack, params: dict[str, str]) -> httpx.Response:
    return httpx.get(stack.url + "/api/launch", params=params, trust_env=False)


@pytest.mark.parametrize("tamper", ["user", "tenant", "sig", "nonce", "exp", "missing_sig", "other_secret"])
def test_bad_launch_signatures_are_refused_without_a_session(stack: Stack, tamper: str) -> None:
    params = stack.launch_params(stack.new_tenant(), _user())
    if tamper == "user":
        params["user"] = "someone-else"
    elif tamper == "tenant":
        params["tenant"] = "another-tenant"
    elif tamper == "sig":
        params["sig"] = "0" * 64
    elif tamper == "nonce":
        params["nonce"] = "a-different-nonce"
    elif tamper == "exp":
        params["exp"] = str(int(params["exp"]) + 60)
    elif tamper == "missing_sig":
        del params["sig"]
    else:
        params = sign_launch("z" * 64, params["tenant"], params["user"])
    response = _launch(stack, params)
    assert response.status_code == 401
    assert "set-cookie" not in response.headers
    assert "open" in response.text.lower() and "CRM" in response.text


def test_expired_and_replayed_launch_links_are_refused(stack: Stack) -> None:
    tenant = stack.new_tenant()
    expired = stack.launch_params(tenant, _user(), now=time.time() - 600)
    response = _launch(stack, expired)
    assert response.status_code == 401 and "expired" in response.text
    too_long = stack.launch_params(tenant, _user(), lifetime=3600)
    assert _launch(stack, too_long).status_code == 401
    once = stack.launch_params(tenant, _user())
    assert _launch(stack, once).status_code == 303
    replay = _launch(stack, once)
    assert replay.status_code == 401 and "already used" in replay.text and "set-cookie" not in replay.headers


@pytest.mark.parametrize("path,method", [
    ("/api/settings", "GET"), ("/api/settings", "POST"), ("/api/sync-now", "POST"), ("/api/connect", "POST"),
    ("/api/disconnect", "GET"), ("/api/disconnect", "POST"), ("/api/oauth/finish", "GET"),
    ("/api/crm", "GET"), ("/api/crm/contacts", "GET"), ("/api/crm/accounts", "POST"),
])
def test_every_page_needs_a_session(stack: Stack, path: str, method: str) -> None:
    response = httpx.request(method, stack.url + path, trust_env=False, data={"csrf": "x"})
    assert response.status_code == 401, response.text
    assert "Please open this page from the CRM" in response.text


def _forged_cookie(stack: Stack, tenant: str, user: str) -> str:
    genuine = issue_session(stack.settings.crm_launch_secret, tenant, "victim")
    body, mac = genuine.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["u"] = user
    forged = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{forged}.{mac}"


def test_forged_foreign_and_expired_sessions_are_refused(stack: Stack) -> None:
    tenant = stack.new_tenant()
    cookies = {
        "forged": _forged_cookie(stack, tenant, "attacker"),
        "other secret": issue_session("q" * 64, tenant, "victim"),
        "expired": issue_session(stack.settings.crm_launch_secret, tenant, "victim", now=time.time() - 9 * 3600),
        "garbage": "not-a-session",
    }
    for name, cookie in cookies.items():
        response = httpx.get(stack.url + "/api/settings", cookies={SESSION_COOKIE: cookie}, trust_env=False)
        assert response.status_code == 401, name


def test_a_user_never_sees_or_changes_another_users_connection(stack: Stack, web: WebClient) -> None:
    tenant, victim, attacker = stack.new_tenant(), _user(), _user()
    stack.services.connections.save(Connection(
        tenant_id=tenant, user_id=victim, status=ConnectionStatus.CONNECTED, ms_account="victim@contoso.test",
        settings=UserSyncSettings(tenant_id=tenant, user_id=victim)))
    web.launch(tenant, attacker)
    page = web.get("/api/settings", params={"user": victim, "tenant": tenant}).text
    assert "victim@contoso.test" not in page and "Not connected" in page
    # Parameters naming the victim change nothing: the caller always comes from the session.
    saved = web.post_form("/api/settings", {"csrf": web.csrf(), "user_id": victim, "user": victim, "mode": "microsoft_to_crm",
                                            "task_import_account": "X"})
    assert saved.status_code == 303
    victim_connection = stack.services.connections.get(tenant, victim)
    assert victim_connection is not None and victim_connection.settings.mode.value == "two_way"
    attacker_connection = stack.services.connections.get(tenant, attacker)
    assert attacker_connection is not None and attacker_connection.settings.mode.value == "microsoft_to_crm"


@pytest.mark.parametrize("path,form", [
    ("/api/settings", {"mode": "microsoft_to_crm", "task_import_account": "X"}),
    ("/api/sync-now", {}), ("/api/connect", {}), ("/api/disconnect", {}),
    ("/api/crm/accounts", {"name": "Sneaky", "owned": "on"}),
])
def test_state_changing_forms_need_the_sessions_csrf_token(stack: Stack, web: WebClient, path: str,
                                                           form: dict[str, str]) -> None:
    tenant, user = stack.new_tenant(), _user()
    web.launch(tenant, user)
    other = stack.browser()
    try:
        other.launch(tenant, _user())
        foreign_token = other.csrf()
    finally:
        other.close()
    for token in (None, "", foreign_token):
        # A browser always sends a form body, even for a form with no visible field.
        data = {"submit": "1", **form} if token is None else {"submit": "1", **form, "csrf": token}
        response = web.post_form(path, data)
        assert response.status_code == 403, (path, token, response.text)
        assert "did not come from this page" in response.text
    assert stack.services.connections.get(tenant, user) is None
    assert stack.services.crm.list_accounts(tenant) == []
    assert not started_sign_ins(stack, tenant)  # no Microsoft sign-in was begun either
