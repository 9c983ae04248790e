"""Found by the bad-input property test: a company name or e-mail address whose index key is longer than Table
Storage allows (a RowKey holds 512 characters; every non-ASCII byte is escaped to three) could not be stored.
An Outlook contact of such a company failed the whole run, every run: the user's sync was stuck. Now the CRM
stores any name and address the mapping lets through, and finds them again."""
from __future__ import annotations

import uuid

import pytest

from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.tables.common import connect
from sync_core.kinds.contacts.mapping import TEXT_MAX, EMAIL_MAX, crm_to_fields, graph_to_contact
from sync_core.domain.models import FOLDER_NAME, CrmContact, LinkState, RunOutcome
from devhost.azurite import Azurite
from tests.badinput.conftest import Rig

LONG_NAMES = ["株式会社" * 63 + "商事", "Société Générale d'Équipements Électriques " * 5, "é" * TEXT_MAX]


@pytest.fixture
def crm(azurite: Azurite, storage_prefix: str) -> TableCrm:
    return TableCrm(connect(azurite.connection_string), lambda base: f"{storage_prefix}{base}")


@pytest.mark.parametrize("name", LONG_NAMES)
def test_accounts_with_long_non_ascii_names_are_stored_and_found_by_name(crm: TableCrm, name: str) -> None:
    account = crm.create_account("t1", name, "u1")
    assert [a.id for a in crm.find_accounts_by_name("t1", name)] == [account.id]
    other = "Renamed " + name[:-8]
    renamed = crm.rename_account("t1", account.id, other)
    assert [a.id for a in crm.find_accounts_by_name("t1", other)] == [renamed.id]
    assert crm.find_accounts_by_name("t1", name) == []


def test_contacts_with_long_non_ascii_email_addresses_are_stored_and_found(crm: TableCrm) -> None:
    account = crm.create_account("t1", "Contoso", "u1")
    local = "ü" * (EMAIL_MAX - len("@exämple.de"))
    address = f"{local}@exämple.de"
    contact = crm.create_contact(CrmContact(id="", tenant_id="t1", account_id=account.id, first_name="Long",
                                            emails=(address,)))
    assert [c.id for c in crm.find_contacts_by_email("t1", account.id, address.upper())] == [contact.id]
    other = local[:-1] + "v@exämple.de"  # the same long start: still a different address
    assert crm.find_contacts_by_email("t1", account.id, other) == []
    crm.delete_contact("t1", contact.id)
    assert crm.find_contacts_by_email("t1", account.id, address) == []


@pytest.mark.parametrize("company", LONG_NAMES)
def test_an_outlook_contact_of_a_long_company_name_is_imported(rig: Rig, company: str) -> None:
    folder = rig.outlook.folder_id(FOLDER_NAME)
    made = rig.outlook.request("POST", f"/contactFolders/{folder}/contacts",
                               {"givenName": "Long", "surname": f"Company {uuid.uuid4().hex[:6]}",
                                "companyName": company})
    assert made.status_code == 201
    run = rig.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, (run.error, run.log)
    link = rig.base.state.get_links_by_ms(rig.settings.tenant_id, rig.settings.user_id, [made.json()["id"]])[made.json()["id"]]
    assert link.state is LinkState.LINKED
    contact = rig.base.crm.get_contacts(rig.settings.tenant_id, [link.crm_id])[link.crm_id]
    account = rig.base.crm.get_accounts(rig.settings.tenant_id, [contact.account_id])[contact.account_id]
    item = rig.outlook.request("GET", f"/contacts/{link.ms_id}").json()
    assert graph_to_contact(item).fields == crm_to_fields(contact, account.name)
