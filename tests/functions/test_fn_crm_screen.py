"""The embedded CRM's screen through devhost: accounts and contacts, create/edit/delete."""
from __future__ import annotations

import html
import re
import uuid

from tests.functions.stack import Stack, WebClient


def _user() -> str:
    return "user-" + uuid.uuid4().hex[:8]


def _contact_form(csrf: str, account_id: str, **fields: str) -> dict[str, str]:
    base = {"csrf": csrf, "account_id": account_id, "first_name": "", "last_name": "", "emails": "",
            "business_phone": "", "mobile_phone": "", "job_title": "", "street": "", "city": "", "state": "",
            "postal_code": "", "country": "", "notes": ""}
    return {**base, **fields}


def test_accounts_and_contacts_can_be_created_edited_and_deleted(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    web.launch(tenant, user)
    csrf = web.csrf("/api/crm/accounts")
    created = web.post_form("/api/crm/accounts", {"csrf": csrf, "name": "Northwind <Traders>", "owned": "on"})
    assert created.status_code == 303
    accounts = stack.services.crm.list_accounts(tenant)
    assert [(a.name, a.owner_user_id) for a in accounts] == [("Northwind <Traders>", user)]
    listing = web.follow(created).text
    assert "Northwind &lt;Traders&gt;" in listing and "<td>You</td>" in listing

    account_id = accounts[0].id
    made = web.post_form("/api/crm/contacts", _contact_form(
        csrf, account_id, first_name="Nancy", last_name="Davolio", emails="nancy@northwind.test\nnd@northwind.test",
        job_title="Sales <Rep>", notes="line one\nline two"))
    assert made.status_code == 303, made.text
    contacts = stack.services.crm.list_contacts(tenant)
    assert len(contacts) == 1
    contact = contacts[0]
    assert contact.emails == ("nancy@northwind.test", "nd@northwind.test")
    assert contact.notes == "line one\nline two"
    page = web.follow(made).text
    assert "Sales &lt;Rep&gt;" in page and "Saved." in page

    edit_page = web.get(f"/api/crm/contacts/{contact.id}").text
    version = re.search(r'name="version" value="([^"]+)"', edit_page)
    assert version is not None
    edited = web.post_form(f"/api/crm/contacts/{contact.id}", {
        **_contact_form(csrf, account_id, first_name="Nancy", last_name="Fuller", emails="nancy@northwind.test"),
        "version": html.unescape(version.group(1))})
    assert edited.status_code == 303, edited.text
    assert stack.services.crm.get_contacts(tenant, [contact.id])[contact.id].last_name == "Fuller"

    # The old version is stale now: a second edit from the same page is refused, not lost silently.
    stale = web.post_form(f"/api/crm/contacts/{contact.id}", {
        **_contact_form(csrf, account_id, first_name="Someone", last_name="Else"),
        "version": html.unescape(version.group(1))})
    assert stale.status_code == 409 and "changed this contact" in stale.text

    deleted = web.post_form(f"/api/crm/contacts/{contact.id}/delete", {"csrf": csrf})
    assert deleted.status_code == 303
    assert stack.services.crm.list_contacts(tenant) == []
    again = web.post_form(f"/api/crm/contacts/{contact.id}/delete", {"csrf": csrf})
    assert again.status_code == 404


def test_invalid_contacts_rerender_with_messages(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    account = stack.services.crm.create_account(tenant, "Contoso", user)
    web.launch(tenant, user)
    csrf = web.csrf("/api/crm/contacts")
    bad_email = web.post_form("/api/crm/contacts", _contact_form(csrf, account.id, first_name="A", emails="not-an-email"))
    assert bad_email.status_code == 400 and "is not an e-mail address" in bad_email.text
    nameless = web.post_form("/api/crm/contacts", _contact_form(csrf, account.id))
    assert nameless.status_code == 400 and "needs a name or an e-mail" in nameless.text
    other_tenant_account = stack.services.crm.create_account(stack.new_tenant(), "Elsewhere", None)
    foreign = web.post_form("/api/crm/contacts", _contact_form(csrf, other_tenant_account.id, first_name="X"))
    assert foreign.status_code == 400 and "choose one of the accounts" in foreign.text
    assert stack.services.crm.list_contacts(tenant) == []


def test_contacts_of_another_tenant_are_invisible(stack: Stack, web: WebClient) -> None:
    from sync_core.domain.models import CrmContact
    other_tenant = stack.new_tenant()
    account = stack.services.crm.create_account(other_tenant, "Private Co", None)
    hidden = stack.services.crm.create_contact(CrmContact(id="", tenant_id=other_tenant, account_id=account.id,
                                                          first_name="Secret", last_name="Person"))
    web.launch(stack.new_tenant(), _user())
    assert "Secret" not in web.get("/api/crm/contacts").text
    assert web.get(f"/api/crm/contacts/{hidden.id}").status_code == 404
    deleted = web.post_form(f"/api/crm/contacts/{hidden.id}/delete", {"csrf": web.csrf("/api/crm/accounts")})
    assert deleted.status_code == 404
    assert hidden.id in stack.services.crm.get_contacts(other_tenant, [hidden.id])


def test_an_account_can_be_renamed_and_given_away(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    account = stack.services.crm.create_account(tenant, "Old Name", user)
    web.launch(tenant, user)
    page = web.get(f"/api/crm/accounts/{account.id}")
    assert page.status_code == 200 and 'value="me" checked' in page.text
    csrf = web.csrf(f"/api/crm/accounts/{account.id}")
    blank = web.post_form(f"/api/crm/accounts/{account.id}", {"csrf": csrf, "name": "  ", "owner": "me"})
    assert blank.status_code == 400
    saved = web.post_form(f"/api/crm/accounts/{account.id}", {"csrf": csrf, "name": "New <Name>", "owner": "nobody"})
    assert saved.status_code == 303
    stored = stack.services.crm.get_accounts(tenant, [account.id])[account.id]
    assert (stored.name, stored.owner_user_id) == ("New <Name>", None)
    assert "New &lt;Name&gt;" in web.follow(saved).text
    assert web.get("/api/crm/accounts/not-an-account").status_code == 404
