"""The whole integration in headless Chromium, as a CRM user meets it, with a screenshot of each step.

launch link → settings → Connect → the emulator's sign-in page → back with the green banner → change settings →
preview → Sync now → the contact in the emulator → edit it in the emulator → the edit in the CRM screen (through
the webhook) → Remove integration with its warning → the folder gone in the emulator.
"""
from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest

from sync_core.domain.models import CrmContact
from sync_core.domain.subscriptions import Kind
from tests.functions.stack import Stack, wait_for

FOLDER = "Really Simple Systems"
pytestmark = pytest.mark.browser


def _graph(stack: Stack, ms_user: dict[str, Any], path: str) -> Any:
    token = stack.control.token(ms_user["id"])
    response = httpx.get(stack.emulator.graph + path, headers={"Authorization": f"Bearer {token}"},
                         trust_env=False, timeout=10)
    response.raise_for_status()
    return response.json()


def _folder_contacts(stack: Stack, ms_user: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    folders = [f for f in _graph(stack, ms_user, "/me/contactFolders")["value"] if f.get("displayName") == FOLDER]
    if not folders:
        return None
    items = _graph(stack, ms_user, f"/me/contactFolders/{folders[0]['id']}/contacts")["value"]
    return {str(item.get("displayName")): item for item in items}


def _deliveries_to_us(stack: Stack, since: int) -> list[dict[str, Any]]:
    log = stack.control.http.get("/notifications/log", params={"since": since}).json()["value"]
    return [d for d in log if d["url"] == stack.url + "/api/graph/notifications" and d["state"] == "delivered"]


def test_connect_configure_sync_edit_and_remove(stack: Stack, page: Any, shots: Any,
                                                 ms_user: dict[str, Any]) -> None:
    tenant, user = stack.new_tenant(), "user-" + uuid.uuid4().hex[:8]
    crm = stack.services.crm
    mine = crm.create_account(tenant, "Analytical Engines", user)
    theirs = crm.create_account(tenant, "Harvard Mark I", "a-colleague")
    ada = crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=mine.id, first_name="Ada",
                                        last_name="Lovelace", emails=("ada@engines.test",), job_title="Analyst"))
    crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=theirs.id, first_name="Grace",
                                  last_name="Hopper", emails=("grace@harvard.test",)))

    # 1. The CRM opens the integration with a launch link; the session cookie takes over.
    page.goto(stack.launch_link(tenant, user))
    assert page.url == stack.url + "/api/settings"
    assert page.get_by_text("Settings > Integrations > Contacts & Calendar Integrations").is_visible()
    assert page.locator("#status-headline").inner_text() == "Not connected to Microsoft 365"
    shots(page, "settings-not-connected")

    # 2. Connect: Microsoft's (the emulator's) sign-in and consent pages, then back with the green banner.
    page.get_by_role("button", name="Connect to Microsoft").click()
    page.wait_for_url(re.compile(r"^https://"))
    assert page.get_by_role("heading", name="Sign in").is_visible()
    page.get_by_label("Email address").fill(ms_user["userPrincipalName"])
    page.get_by_label("Password").fill(ms_user["password"])
    shots(page, "microsoft-sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Accept").wait_for()
    shots(page, "microsoft-consent")
    page.get_by_role("button", name="Accept").click()
    page.wait_for_url(stack.url + "/api/settings?flash=connected")
    banner = page.locator('[data-banner="ok"]')
    assert "Connected to Microsoft 365" in banner.inner_text()
    assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(220, 252, 231)"  # green
    assert page.locator("#status-headline").inner_text() == f"Connected to {ms_user['userPrincipalName']}"
    assert page.locator("#last-success").inner_text() == "Awaiting first sync"
    shots(page, "connected-awaiting-first-sync")

    # 3. Change a setting and preview it before saving: the colleague's contact joins the preview.
    wait_for(lambda: (_folder_contacts(stack, ms_user) or {}).get("Ada Lovelace"), 60, "the first sync to push Ada")
    page.goto(stack.url + "/api/settings")
    preview = page.locator("#preview-contacts")
    assert "Ada" in preview.inner_text() and "Grace" not in preview.inner_text()
    # The task panel follows its toggle without JavaScript (tasks are off by default).
    toggle, panel = page.get_by_label("Sync my CRM tasks with Microsoft 365"), page.locator("#task-panel")
    assert not toggle.is_checked() and not panel.is_visible()
    toggle.check()
    assert panel.is_visible() and page.get_by_label("Timed tasks: reminder").is_visible()
    toggle.uncheck()
    assert not panel.is_visible()
    page.get_by_label("All contacts of the CRM").check()
    page.get_by_role("button", name="Preview these settings").click()
    assert "not saved yet" in page.locator("#preview").inner_text()
    assert "Grace" in page.locator("#preview-contacts").inner_text()
    assert "grace@harvard.test" in page.locator("#preview-contacts").inner_text()
    shots(page, "preview-unsaved")
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_url(stack.url + "/api/settings?flash=saved")
    assert page.get_by_label("All contacts of the CRM").is_checked()
    shots(page, "settings-saved")

    # 4. Sync now; the colleague's contact reaches the Outlook folder in the emulator.
    page.get_by_role("button", name="Sync now").click()
    page.wait_for_url(stack.url + "/api/settings?flash=sync-queued")
    shots(page, "sync-now-queued")
    contacts = wait_for(lambda: (found := _folder_contacts(stack, ms_user)) and "Grace Hopper" in found and found,
                        60, "Sync now to push Grace")
    assert contacts["Ada Lovelace"]["companyName"] == "Analytical Engines"
    page.goto(stack.emulator.ui)
    mailbox = page.locator(f"#user-{ms_user['id']}")
    assert mailbox.get_by_text("Grace Hopper").first.is_visible()
    shots(page, "contacts-in-the-emulator")
    page.goto(stack.url + "/api/settings")
    wait_for(lambda: (page.reload() or True) and page.locator("#last-success").inner_text() != "Awaiting first sync",
             30, "the settings page to show the last successful sync", interval=0.5)
    assert page.locator("#run-counts").is_visible()
    shots(page, "settings-last-sync")

    # 5. Edit Ada in the emulator (as in Outlook); the webhook brings the edit to the CRM screen.
    record = stack.services.subscriptions.get(tenant, user, Kind.CONTACTS)
    assert record is not None and not record.owed
    since = max((d["seq"] for d in stack.control.http.get("/notifications/log").json()["value"]), default=0)
    page.goto(stack.emulator.ui)
    row = page.locator(f"#user-{ms_user['id']} tr", has_text="Ada Lovelace")
    row.locator('input[name="jobTitle"]').fill("Chief Analyst")
    shots(page, "edit-in-the-emulator")
    edited_at = time.monotonic()
    row.get_by_role("button", name="Save").click()
    page.goto(stack.url + "/api/crm/contacts")
    wait_for(lambda: (page.reload() or True) and "Chief Analyst" in page.locator("#contacts").inner_text(),
             20, "the Outlook edit to reach the CRM screen", interval=0.3)
    latency = time.monotonic() - edited_at
    assert crm.get_contacts(tenant, [ada.id])[ada.id].job_title == "Chief Analyst"
    deliveries = _deliveries_to_us(stack, since)
    assert any(record.sub_id in d["subscriptionIds"] and d["attempts"][-1]["status"] == 202 for d in deliveries), \
        deliveries
    assert latency < 20
    shots(page, "edit-visible-in-crm")

    # 6. Remove integration: the warning says what goes in Microsoft and that CRM data stays; then it is gone.
    page.goto(stack.url + "/api/settings")
    page.get_by_role("link", name="Remove integration…").click()
    page.wait_for_url(stack.url + "/api/disconnect")
    warning = page.locator("#will-be-deleted").inner_text()
    assert f"The Outlook contact folder “{FOLDER}” and every contact in it." in warning
    assert "Your CRM data stays" in page.locator("#crm-stays").inner_text()
    shots(page, "remove-warning")
    page.get_by_role("button", name="Remove integration").click()
    page.wait_for_url(stack.url + "/api/settings?flash=disconnected")
    assert "Disconnected from Microsoft 365" in page.locator('[data-banner="ok"]').inner_text()
    assert page.locator("#status-headline").inner_text() == "Not connected to Microsoft 365"
    shots(page, "disconnected")
    assert _folder_contacts(stack, ms_user) is None
    page.goto(stack.emulator.ui)
    assert page.locator(f"#user-{ms_user['id']}").get_by_text(FOLDER).count() == 0
    shots(page, "folder-gone-in-the-emulator")
    assert {c.first_name for c in crm.list_contacts(tenant)} == {"Ada", "Grace"}
