"""The contact sync end to end: Table Storage on Azurite, msgraph-sdk against the emulator over HTTP."""
from __future__ import annotations

from typing import Any

import httpx
import pytest

from bench.harness import ContactRig
from sync_core.domain.models import FOLDER_NAME, RunOutcome


def outlook(rig: ContactRig) -> httpx.Client:
    """The person in Outlook: the ordinary Graph API with their own token."""
    token = rig.control.token(rig.mailbox["id"])
    return httpx.Client(base_url=rig.graph_url, headers={"Authorization": f"Bearer {token}"}, trust_env=False)


def folder_contacts(rig: ContactRig) -> list[dict[str, Any]]:
    with outlook(rig) as client:
        folders = client.get("/me/contactFolders").json()["value"]
        ours = [f for f in folders if f["displayName"] == FOLDER_NAME]
        assert len(ours) == 1, folders
        return list(client.get(f"/me/contactFolders/{ours[0]['id']}/contacts?$top=999").json()["value"])


def test_first_sync_pushes_crm_contacts_and_second_sync_writes_nothing(rig: ContactRig) -> None:
    acme = rig.account("Acme Ltd")
    rig.contact(acme, "Ada", "Lovelace", "ada@example.com", job_title="Engineer")
    rig.contact(acme, "Alan", "Turing", "alan@example.com")
    run = rig.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert run.microsoft.created == 2
    contacts = folder_contacts(rig)
    assert sorted(c["givenName"] for c in contacts) == ["Ada", "Alan"]
    assert {c["companyName"] for c in contacts} == {"Acme Ltd"}
    since = rig.control.last_request_seq()
    again = rig.sync()
    assert (again.microsoft.created, again.microsoft.updated, again.crm.created, again.crm.updated) == (0, 0, 0, 0)
    requests = rig.graph_requests(since)
    assert len(requests) == 1 and "delta" in requests[0]["path"], requests


def test_outlook_edit_and_new_contact_reach_the_crm(rig: ContactRig) -> None:
    acme = rig.account("Acme Ltd")
    ada = rig.contact(acme, "Ada", "Lovelace", "ada@example.com")
    rig.sync()
    (pushed,) = folder_contacts(rig)
    with outlook(rig) as client:
        assert client.patch(f"/me/contacts/{pushed['id']}", json={"jobTitle": "Countess"}).status_code == 200
        folder_id = pushed["parentFolderId"]
        created = client.post(f"/me/contactFolders/{folder_id}/contacts",
                              json={"givenName": "Grace", "surname": "Hopper", "companyName": "  acme LTD. ",
                                    "emailAddresses": [{"address": "grace@example.com"}]})
        assert created.status_code == 201
        loner = client.post(f"/me/contactFolders/{folder_id}/contacts", json={"givenName": "No", "surname": "Company"})
        assert loner.status_code == 201
    run = rig.sync()
    assert run.crm.updated == 1 and run.crm.created == 2, run
    assert rig.crm.get_contacts(rig.settings.tenant_id, [ada.id])[ada.id].job_title == "Countess"
    everyone = rig.crm.list_contacts(rig.settings.tenant_id)
    grace = next(c for c in everyone if c.first_name == "Grace")
    assert grace.account_id == acme.id  # company name matched the account despite case and punctuation
    nobody = next(c for c in everyone if c.first_name == "No")
    account = rig.crm.get_accounts(rig.settings.tenant_id, [nobody.account_id])[nobody.account_id]
    assert account.name == "From Office 365"


def test_outlook_delete_keeps_crm_record_and_crm_delete_removes_outlook_item(rig: ContactRig) -> None:
    acme = rig.account("Acme Ltd")
    ada = rig.contact(acme, "Ada", "Lovelace", "ada@example.com")
    alan = rig.contact(acme, "Alan", "Turing", "alan@example.com")
    rig.sync()
    by_name = {c["givenName"]: c for c in folder_contacts(rig)}
    with outlook(rig) as client:
        assert client.delete(f"/me/contacts/{by_name['Ada']['id']}").status_code == 204
    rig.crm.delete_contact(rig.settings.tenant_id, alan.id)
    run = rig.sync()
    assert run.outcome is RunOutcome.SUCCEEDED
    assert ada.id in rig.crm.get_contacts(rig.settings.tenant_id, [ada.id])  # never deleted from the CRM
    assert folder_contacts(rig) == []  # Alan removed; Ada not pushed back
    assert rig.sync().microsoft.created == 0


def test_expired_delta_link_resyncs_without_duplicates(rig: ContactRig) -> None:
    acme = rig.account("Acme Ltd")
    for i in range(5):
        rig.contact(acme, f"P{i}", "Person", f"p{i}@example.com")
    rig.sync()
    rig.control.expire_delta_tokens(rig.mailbox["id"])
    run = rig.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert (run.microsoft.created, run.crm.created) == (0, 0)
    assert len(folder_contacts(rig)) == 5
    assert len(rig.crm.list_contacts(rig.settings.tenant_id)) == 5


def default_folder_id(client: httpx.Client) -> str:
    folders = client.get("/me/contactFolders").json()["value"]
    return next(f["id"] for f in folders if f["displayName"] == "Contacts")


def test_moves_out_of_and_into_the_folder(rig: ContactRig) -> None:
    acme = rig.account("Acme Ltd")
    ada = rig.contact(acme, "Ada", "Lovelace", "ada@example.com")
    grace = rig.contact(acme, "Grace", "Hopper", "grace@example.com")
    rig.sync()
    by_name = {c["givenName"]: c for c in folder_contacts(rig)}
    with outlook(rig) as client:
        elsewhere = default_folder_id(client)
        ours = by_name["Ada"]["parentFolderId"]
        rig.control.move_contact(rig.mailbox["id"], by_name["Grace"]["id"], elsewhere)
    run = rig.sync()
    assert (run.crm.created, run.crm.deleted, run.microsoft.created) == (0, 0, 0)
    assert grace.id in rig.crm.get_contacts(rig.settings.tenant_id, [grace.id])  # moved out: kept in the CRM
    assert [c["givenName"] for c in folder_contacts(rig)] == ["Ada"]  # and not pushed back
    with outlook(rig) as client:
        outside = client.get(f"/me/contactFolders/{elsewhere}/contacts").json()["value"]
        moved = next(c for c in outside if c["givenName"] == "Grace")
        client.delete(f"/me/contacts/{moved['id']}").raise_for_status()
        # Another card for a person the CRM already knows (same email, same company), dragged in.
        again = client.post(f"/me/contactFolders/{elsewhere}/contacts",
                            json={"givenName": "Grace", "surname": "Hopper", "companyName": "Acme Ltd",
                                  "jobTitle": "Rear Admiral", "emailAddresses": [{"address": "GRACE@example.com"}]}).json()
        rig.control.move_contact(rig.mailbox["id"], again["id"], ours)
        newcomer = client.post(f"/me/contactFolders/{elsewhere}/contacts",
                               json={"givenName": "Katherine", "surname": "Johnson", "companyName": "Acme Ltd"}).json()
        rig.control.move_contact(rig.mailbox["id"], newcomer["id"], ours)
    run = rig.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert run.crm.created == 1, "only the unknown person is new; Grace links to her CRM record"
    everyone = rig.crm.list_contacts(rig.settings.tenant_id)
    assert sorted(c.first_name for c in everyone) == ["Ada", "Grace", "Katherine"]
    assert rig.crm.get_contacts(rig.settings.tenant_id, [grace.id])[grace.id].job_title == "Rear Admiral"
    assert ada.id in rig.crm.get_contacts(rig.settings.tenant_id, [ada.id])
    assert rig.sync().crm.created == 0


def test_company_change_in_outlook_moves_the_contact_to_another_account(rig: ContactRig) -> None:
    acme = rig.account("Acme Ltd")
    globex = rig.account("Globex Corporation")
    ada = rig.contact(acme, "Ada", "Lovelace", "ada@example.com")
    rig.sync()
    (pushed,) = folder_contacts(rig)
    with outlook(rig) as client:
        client.patch(f"/me/contacts/{pushed['id']}", json={"companyName": "GLOBEX corporation"}).raise_for_status()
    rig.sync()
    assert rig.crm.get_contacts(rig.settings.tenant_id, [ada.id])[ada.id].account_id == globex.id
    with outlook(rig) as client:
        client.patch(f"/me/contacts/{pushed['id']}", json={"companyName": "Initech"}).raise_for_status()
    rig.sync()
    moved = rig.crm.get_contacts(rig.settings.tenant_id, [ada.id])[ada.id]
    new_account = rig.crm.get_accounts(rig.settings.tenant_id, [moved.account_id])[moved.account_id]
    assert new_account.name == "Initech"


def test_throttled_batch_items_are_retried_after_retry_after(rig: ContactRig) -> None:
    acme = rig.account("Acme Ltd")
    for i in range(30):
        rig.contact(acme, f"P{i}", "Person", f"p{i}@example.com")
    rig.control.add_fault(method="POST", path_regex=r"contactFolders/.*/contacts$", status=429, retry_after=1,
                          times=7, in_batch=True)
    try:
        since = rig.control.last_request_seq()
        run = rig.sync()
    finally:
        rig.control.clear_faults()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert run.microsoft.created == 30
    log = rig.graph_requests(since)
    assert len([r for r in log if r.get("in_batch") and r["status"] == 429]) == 7
    assert len(folder_contacts(rig)) == 30


class CrashAfterGraphWrite(Exception):
    """Stands for the process dying after Graph created items and before their links were saved."""


def test_crash_between_graph_write_and_link_write_leaves_no_duplicate(rig: ContactRig) -> None:
    from sync_core.domain.models import LinkState

    acme = rig.account("Acme Ltd")
    for i in range(25):
        rig.contact(acme, f"P{i}", "Person", f"p{i}@example.com")
    real_save_links = rig.state.save_links
    saved_linked = 0

    def dying_save_links(links):  # type: ignore[no-untyped-def]
        nonlocal saved_linked
        if any(link.state is LinkState.LINKED for link in links):
            saved_linked += 1
            raise CrashAfterGraphWrite()  # Graph created them; the process dies before linking
        return real_save_links(links)

    rig.state.save_links = dying_save_links  # type: ignore[method-assign]
    with pytest.raises(CrashAfterGraphWrite):
        rig.sync()  # the worker dies; its lease expires
    rig.state.save_links = real_save_links  # type: ignore[method-assign]
    assert saved_linked == 1
    assert len(folder_contacts(rig)) == 25  # all created in Outlook, none linked
    from datetime import UTC, datetime, timedelta

    run = rig.sync(now=lambda: datetime.now(UTC) + timedelta(hours=1))  # after the dead worker's lease
    assert run.outcome is RunOutcome.SUCCEEDED, run
    names = sorted(c["givenName"] for c in folder_contacts(rig))
    assert names == sorted(f"P{i}" for i in range(25)), "every contact exactly once"
    assert rig.sync().microsoft.created == 0


def test_an_old_card_moved_back_in_after_we_recreated_it_leaves_one_card_and_one_contact(rig: ContactRig) -> None:
    """Out of the folder, re-created by us after a CRM edit, the old card moved back in: it carries our CRM id
    (read with $expand=singleValueExtendedProperties), so it is removed as an older copy, never imported."""
    acme = rig.account("Acme Ltd")
    ada = rig.contact(acme, "Ada", "Lovelace", "ada@example.com")
    rig.sync()
    [card] = folder_contacts(rig)
    with outlook(rig) as client:
        elsewhere = default_folder_id(client)
        moved = rig.control.move_contact(rig.mailbox["id"], card["id"], elsewhere)  # a new id, as in Outlook
        rig.sync()
        rig.crm.update_contact(rig.crm.get_contacts(rig.settings.tenant_id, [ada.id])[ada.id].model_copy(
            update={"job_title": "Countess"}))
        rig.sync()
        [recreated] = folder_contacts(rig)
        back = rig.control.move_contact(rig.mailbox["id"], moved["id"], recreated["parentFolderId"])
        assert back["id"] != recreated["id"]
    run = rig.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.crm.created == 0, run.log
    assert [c["id"] for c in folder_contacts(rig)] == [recreated["id"]]
    assert [c.id for c in rig.crm.list_contacts(rig.settings.tenant_id)] == [ada.id]
    quiet = rig.sync()
    assert (quiet.crm.created, quiet.microsoft.created, quiet.microsoft.deleted) == (0, 0, 0)
