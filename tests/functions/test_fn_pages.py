"""The settings page through devhost over real HTTP: launch links, sessions, the form, the preview."""
from __future__ import annotations

import re
import uuid

import httpx

from devhost.stack import VALID_FORM
from sync_core.domain.models import SyncMode, TIMED_REMINDER_CHOICES
from sync_core.domain.tenants import Plan
from sync_core.web.auth import SESSION_COOKIE
from tests.functions.stack import Stack, WebClient, started_sign_ins


def _user() -> str:
    return "user-" + uuid.uuid4().hex[:8]


def test_launch_sets_a_hardened_session_cookie_and_opens_settings(stack: Stack, web: WebClient) -> None:
    tenant = stack.new_tenant()
    response = web.launch(tenant, _user())
    assert response.headers["location"] == "/api/settings"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/"):
        assert attribute in cookie
    page = web.follow(response)
    assert page.status_code == 200
    assert "Settings &gt; Integrations &gt; Contacts &amp; Calendar Integrations" in page.text
    assert "Not connected to Microsoft 365" in page.text
    assert 'id="connect"' in page.text and 'id="sync-now"' not in page.text
    # Every section of the page, in order.
    positions = [page.text.index(h) for h in ("1. Status", "2. Contact sync mode", "3. Preview", "4. Task",)]
    assert positions == sorted(positions)


def test_every_response_carries_the_security_headers(stack: Stack, web: WebClient) -> None:
    web.launch(stack.new_tenant(), _user())
    for response in (web.get("/api/settings"), web.get("/api/crm/contacts"),
                     httpx.get(stack.url + "/api/settings", trust_env=False),
                     httpx.post(stack.url + "/api/graph/notifications", content=b"{", trust_env=False,
                                headers={"content-type": "application/json"})):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"


def test_timed_reminder_select_offers_exactly_outlooks_choices(stack: Stack, web: WebClient) -> None:
    web.launch(stack.new_tenant(), _user())
    page = web.get("/api/settings").text
    select = re.search(r'<select id="timed_reminder_minutes".*?</select>', page, re.S)
    assert select is not None
    labels = re.findall(r"<option [^>]*>([^<]+)</option>", select.group(0))
    assert [label.replace("&#39;", "'") for label in labels] == list(TIMED_REMINDER_CHOICES.values())
    # Tasks are off by default, and every input has a label.
    assert re.search(r'<input type="checkbox" id="tasks_enabled" name="tasks_enabled" value="on">', page)
    for input_id in re.findall(r'<(?:input|select|textarea) [^>]*id="([^"]+)"', page):
        assert f'for="{input_id}"' in page, input_id


def test_saving_valid_settings_persists_them(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    web.launch(tenant, user)
    form = {**VALID_FORM, "csrf": web.csrf(), "mode": "crm_to_microsoft", "tasks_enabled": "on",
            "task_target": "calendar", "timed_reminder_minutes": "none", "time_zone": "Europe/London"}
    response = web.post_form("/api/settings", form)
    assert response.status_code == 303 and response.headers["location"] == "/api/settings?flash=saved"
    saved = stack.services.connections.get(tenant, user)
    assert saved is not None
    assert saved.settings.mode is SyncMode.CRM_TO_MICROSOFT
    assert saved.settings.tasks_enabled and saved.settings.task_target.value == "calendar"
    assert saved.settings.timed_reminder_minutes is None
    page = web.follow(response).text
    assert "Settings saved." in page
    assert 'value="crm_to_microsoft" checked' in page


def test_invalid_settings_rerender_with_messages_and_save_nothing(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    web.launch(tenant, user)
    form = {**VALID_FORM, "csrf": web.csrf(), "mode": "sideways", "timed_reminder_minutes": "7",
            "time_zone": "Mars/Olympus", "all_day_reminder_time": "25:99"}
    response = web.post_form("/api/settings", form)
    assert response.status_code == 400
    assert "Nothing was saved" in response.text
    assert "choose one of the options shown" in response.text
    assert "choose one of Outlook&#39;s reminders" in response.text
    assert "unknown time zone" in response.text and "HH:MM" in response.text
    # The user's own input is shown again (escaped), and nothing reached storage.
    assert 'value="Mars/Olympus"' in response.text
    assert stack.services.connections.get(tenant, user) is None


def test_preview_shows_contacts_as_mapping_sends_them_without_saving(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    crm = stack.services.crm
    mine = crm.create_account(tenant, "Contoso <Ltd>", user)
    theirs = crm.create_account(tenant, "Fabrikam", "someone-else")
    from sync_core.domain.models import CrmContact
    crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=mine.id, first_name="  Ada ",
                                  last_name="Lovelace<script>", emails=("ADA@Example.COM",)))
    crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=theirs.id, first_name="Grace",
                                  last_name="Hopper"))
    web.launch(tenant, user)
    page = web.get("/api/settings").text
    # Normalised by the mapping module (trimmed, lower-cased e-mail) and escaped.
    assert "<td>Ada</td>" in page and "Lovelace&lt;script&gt;" in page and "ada@example.com" in page
    assert "Contoso &lt;Ltd&gt;" in page and "Grace" not in page
    assert "<code>givenName</code>" in page
    form = {**VALID_FORM, "csrf": web.csrf(), "contact_scope": "tenant", "action": "preview"}
    preview = web.post_form("/api/settings", form)
    assert preview.status_code == 200
    assert "Grace" in preview.text and "not saved yet" in preview.text
    assert stack.services.connections.get(tenant, user) is None


def test_free_plan_gets_the_paid_plan_page_and_no_microsoft_call(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(Plan.FREE), _user()
    web.launch(tenant, user)
    page = web.get("/api/settings")
    assert page.status_code == 403 and "needs a paid plan" in page.text
    # A hand-made connect form gets the same answer, and never reaches Microsoft.
    connect = web.post_form("/api/connect", {"csrf": "x"})
    assert connect.status_code == 403 and "paid plan" in connect.text
    assert not started_sign_ins(stack, tenant)
    assert stack.services.tokens.load(tenant, user) is None


def test_unknown_tenant_counts_as_free(stack: Stack, web: WebClient) -> None:
    web.launch("never-registered-" + uuid.uuid4().hex[:6], _user())
    assert web.get("/api/settings").status_code == 403


def test_sync_now_needs_a_connection(stack: Stack, web: WebClient) -> None:
    web.launch(stack.new_tenant(), _user())
    response = web.post_form("/api/sync-now", {"csrf": web.csrf()})
    assert response.status_code == 409 and "Connect to Microsoft first" in response.text


def test_malformed_requests_get_4xx_with_a_message(stack: Stack, web: WebClient) -> None:
    web.launch(stack.new_tenant(), _user())
    csrf = web.csrf()
    as_json = web.http.post("/api/settings", json={"csrf": csrf})
    assert as_json.status_code == 415 and "form" in as_json.text
    huge = web.post_form("/api/settings", {"csrf": csrf, "notes": "x" * 70_000})
    assert huge.status_code == 413
    long_field = web.post_form("/api/settings", {"csrf": csrf, "mode": "x" * 5000})
    assert long_field.status_code == 400
    assert web.http.request("PUT", "/api/settings").status_code == 405
    assert web.get("/api/crm/contacts/..%2F..%2Fetc").status_code == 404
    for response in (as_json, huge, long_field):
        assert "Traceback" not in response.text
