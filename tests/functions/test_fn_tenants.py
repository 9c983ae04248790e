"""Two CRM tenants, each with a user of the same id, each connected to their own mailbox, synced
concurrently through the queue: neither touches the other; each page and status line is their own."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from typing import Any

import httpx

from sync_core.domain.models import CrmContact
from tests.functions.stack import ROOT, Stack, WebClient, connect_with_emulator, wait_for

FOLDER = "Really Simple Systems"


def _graph(stack: Stack, ms_user: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    token = stack.control.token(ms_user["id"])
    response = httpx.request(method, stack.emulator.graph + path, json=body, trust_env=False,
                             headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    return response.json()


def _outlook_names(stack: Stack, ms_user: dict[str, Any]) -> tuple[str, set[str]]:
    folders = [f for f in _graph(stack, ms_user, "GET", "/me/contactFolders")["value"] if f["displayName"] == FOLDER]
    assert len(folders) <= 1, folders
    if not folders:
        return "", set()  # the first sync has not made it yet
    contacts = _graph(stack, ms_user, "GET", f"/me/contactFolders/{folders[0]['id']}/contacts?$top=999")["value"]
    return folders[0]["id"], {c["givenName"] for c in contacts}


def _crm_names(stack: Stack, tenant: str) -> set[str]:
    return {c.first_name for c in stack.services.crm.list_contacts(tenant, limit=1000)}


def _status(stack: Stack, user: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "sync_core", "status", "--user", user, "--json"], cwd=ROOT,
                          env=stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {entry["tenant_id"]: entry for entry in json.loads(done.stdout)["users"]}


def test_the_same_user_id_in_two_tenants_syncs_two_separate_mailboxes(stack: Stack) -> None:
    user = "same-" + uuid.uuid4().hex[:8]
    people = {"north": ("Alice", "Ann", "Abe"), "south": ("Bob", "Bea")}
    tenants, mailboxes, pages = {}, {}, {}
    for side, names in people.items():
        tenant = stack.new_tenant()
        account = stack.services.crm.create_account(tenant, f"{side.title()} Ltd", user)
        for name in names:
            stack.services.crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=account.id,
                                                         first_name=name, last_name=side.title()))
        tenants[side], mailboxes[side], pages[side] = tenant, stack.control.create_user(), stack.browser()
    try:
        # Both connect at the same moment: their first syncs run on the queue worker side by side.
        def connect(side: str) -> None:
            web: WebClient = pages[side]
            web.launch(tenants[side], user)
            connect_with_emulator(web, mailboxes[side])

        threads = [threading.Thread(target=connect, args=(side,)) for side in people]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        for side, names in people.items():
            wait_for(lambda: _outlook_names(stack, mailboxes[side])[1] == set(names), 90,
                     f"{side}'s contacts in {side}'s own mailbox")
            wait_for(lambda: (c := stack.services.connections.get(tenants[side], user)) and c.last_success_at, 60,
                     f"{side}'s first sync to be recorded")

        # Sync now on both pages at once, then an Outlook change in one mailbox only.
        for side in people:
            pages[side].post_form("/api/sync-now", {"csrf": pages[side].csrf()})
        _graph(stack, mailboxes["south"], "POST",
               f"/me/contactFolders/{_outlook_names(stack, mailboxes['south'])[0]}/contacts",
               {"givenName": "Carol", "surname": "South", "companyName": "South Ltd"})
        wait_for(lambda: "Carol" in _crm_names(stack, tenants["south"]), 60, "south's Outlook contact in south's CRM")
        pages["north"].post_form("/api/sync-now", {"csrf": pages["north"].csrf()})
        wait_for(lambda: len(stack.services.state.latest_runs(tenants["north"], user, 10)) >= 2, 60,
                 "north's second run")

        expected = {"north": set(people["north"]), "south": {*people["south"], "Carol"}}
        folders = {}
        for side in people:
            folders[side], names = _outlook_names(stack, mailboxes[side])
            assert names == expected[side]
            assert _crm_names(stack, tenants[side]) == expected[side]
            cursor = stack.services.state.get_cursor(tenants[side], user)
            assert cursor.folder_id == folders[side]
        assert folders["north"] != folders["south"]

        # The status first, then the runs: a sync the webhook or the timer starts meanwhile only adds runs.
        status = _status(stack, user)
        runs = {side: {r.run_id for r in stack.services.state.latest_runs(tenants[side], user, 50)} for side in people}
        assert runs["north"] and runs["south"] and not runs["north"] & runs["south"]
        assert set(status) == {tenants["north"], tenants["south"]}
        for side in people:
            line = status[tenants[side]]
            assert line["state"] == "connected" and line["last_error"] is None
            assert line["latest_run"]["run_id"] in runs[side]
            assert line["latest_run"]["tenant_id"] == tenants[side]
            page = pages[side].get("/api/settings").text
            latest = stack.services.state.latest_runs(tenants[side], user, 1)[0]
            assert latest.run_id in runs[side] and "Awaiting first sync" not in page
    finally:
        for web in pages.values():
            web.close()
