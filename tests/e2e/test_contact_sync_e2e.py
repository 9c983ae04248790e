"""The contact sync end to end: Table Storage on Azurite, msgraph-sdk against the emulator over HTTP."""
from __future__ import annotations

from typing import Any

import httpx

from bench.harness import ContactRig
from sync_core.models import FOLDER_NAME, RunOutcome


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
