"""Remove integration through devhost: the warning page, Microsoft cleaned up, CRM data kept."""
from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from sync_core.domain.connections import ConnectionStatus
from sync_core.domain.models import CrmContact
from tests.functions.stack import Stack, WebClient, connect_with_emulator, wait_for

FOLDER = "Really Simple Systems"


def _graph(stack: Stack, ms_user: dict[str, Any], path: str) -> Any:
    token = stack.control.token(ms_user["id"])
    response = httpx.get(stack.emulator.graph + path, headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    response.raise_for_status()
    return response.json()


def _folders(stack: Stack, ms_user: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in _graph(stack, ms_user, "/me/contactFolders")["value"] if f.get("displayName") == FOLDER]


def _synced_user(stack: Stack, web: WebClient, ms_user: dict[str, Any]) -> tuple[str, str]:
    tenant, user = stack.new_tenant(), "user-" + uuid.uuid4().hex[:8]
    account = stack.services.crm.create_account(tenant, "Contoso", user)
    stack.services.crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=account.id,
                                                 first_name="Kept", last_name="InCrm", emails=("kept@contoso.test",)))
    web.launch(tenant, user)
    connect_with_emulator(web, ms_user)
    wait_for(lambda: any(True for _ in stack.services.state.iter_links(tenant, user)), 60, "the first sync to link a contact")
    return tenant, user


def test_warning_page_then_everything_in_microsoft_is_deleted_and_crm_data_stays(
        stack: Stack, web: WebClient, ms_user: dict[str, Any]) -> None:
    tenant, user = _synced_user(stack, web, ms_user)
    assert len(_folders(stack, ms_user)) == 1
    warning = web.get("/api/disconnect")
    assert warning.status_code == 200
    assert f"“{FOLDER}” and every contact in it" in warning.text
    assert "Your CRM data stays" in warning.text
    assert ms_user["userPrincipalName"] in warning.text

    done = web.post_form("/api/disconnect", {"csrf": web.csrf("/api/disconnect")})
    assert done.status_code == 303 and done.headers["location"] == "/api/settings?flash=disconnected"
    page = web.follow(done).text
    assert "Disconnected from Microsoft 365" in page and "Not connected to Microsoft 365" in page
    assert _folders(stack, ms_user) == []
    services = stack.services
    assert services.tokens.load(tenant, user) is None
    assert list(services.state.iter_links(tenant, user)) == []
    assert services.state.get_cursor(tenant, user).folder_id is None
    assert services.subscriptions.for_user(tenant, user) == {}
    connection = services.connections.get(tenant, user)
    assert connection is not None and connection.status is ConnectionStatus.NOT_CONNECTED
    assert connection.ms_account is None
    assert [c.first_name for c in services.crm.list_contacts(tenant)] == ["Kept"]
    # Nothing left to remove: the page sends the user back to the settings.
    assert web.get("/api/disconnect").status_code == 303


def test_a_dead_sign_in_still_cleans_our_side_and_says_what_is_left(
        stack: Stack, web: WebClient, ms_user: dict[str, Any]) -> None:
    tenant, user = _synced_user(stack, web, ms_user)
    stack.control.revoke(ms_user["id"])
    # Drop the cached access token so the next Graph call must refresh, which the revoke makes fail.
    cache = json.loads(stack.services.tokens.load(tenant, user) or "{}")
    cache["AccessToken"] = {}
    stack.services.tokens.save(tenant, user, json.dumps(cache))

    done = web.post_form("/api/disconnect", {"csrf": web.csrf("/api/disconnect")})
    assert done.status_code == 303
    assert "flash=disconnected" in done.headers["location"] and "left=" in done.headers["location"]
    page = web.follow(done).text
    assert "could not be deleted in Microsoft 365" in page
    assert f"the Outlook contact folder “{FOLDER}”" in page
    assert len(_folders(stack, ms_user)) == 1  # still there: nobody could delete it
    assert stack.services.tokens.load(tenant, user) is None
    assert list(stack.services.state.iter_links(tenant, user)) == []
    assert stack.services.subscriptions.for_user(tenant, user) == {}
    connection = stack.services.connections.get(tenant, user)
    assert connection is not None and connection.status is ConnectionStatus.NOT_CONNECTED
