"""Contacts with bad input from either side always end cleanly: a synced record (both sides hold the same
normalised content), or a quarantined record whose reason the run record shows, or (the CRM's own check) a
refusal with a message. Never a crash, never a half-written record."""
from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from sync_core.domain.errors import InvalidRecordError
from sync_core.kinds.contacts.mapping import CRM_ID_PROPERTY, crm_to_fields, graph_to_contact
from sync_core.domain.models import FOLDER_NAME, Address, CrmContact, LinkState, RunOutcome, RunRecord
from sync_core.kinds.contacts.planner import import_crm_id
from tests.badinput.conftest import Rig
from tests.badinput.strategies import crm_contact_values, graph_contact

# Each example is a real sync over HTTP: shrinking would take minutes, the failing example is printed as is.
NO_SHRINK = (Phase.explicit, Phase.generate)
PROFILE = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                   phases=NO_SHRINK,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                          HealthCheck.data_too_large, HealthCheck.large_base_example])


def _folder(rig: Rig) -> str:
    folder = rig.outlook.folder_id(FOLDER_NAME)
    assert folder is not None
    return folder


def _tagged(rig: Rig, crm_id: str) -> list[dict[str, Any]]:
    """Outlook items in the folder carrying our tag for `crm_id`."""
    prop = CRM_ID_PROPERTY.replace("'", "''")
    answer = rig.outlook.request("GET", f"/contactFolders/{_folder(rig)}/contacts?$filter=singleValueExtendedProperties"
                                        f"/Any(ep: ep/id eq '{prop}' and ep/value eq '{crm_id}')")
    assert answer.status_code == 200, answer.text[:300]
    return list(answer.json()["value"])


def _quarantined(rig: Rig, side: str, record_id: str) -> str | None:
    found = [q for q in rig.base.state.list_quarantine(rig.settings.tenant_id, rig.settings.user_id) if q.side == side and q.record_id == record_id]
    return found[0].reason if found else None


def _clean(run: RunRecord) -> None:
    assert run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.PARTIAL), (run.error, run.log[-10:])


@PROFILE
@given(values=crm_contact_values())
def test_crm_contacts_with_bad_fields_sync_or_are_quarantined(rig: Rig, values: dict[str, Any]) -> None:
    address = Address(street=values.pop("street"), city=values.pop("city"))
    contact = CrmContact(id=uuid.uuid4().hex, tenant_id=rig.settings.tenant_id, account_id=rig.account_id,
                         address=address, **values)
    try:
        contact = rig.base.crm.create_contact(contact)
    except InvalidRecordError as exc:
        # The CRM refuses it with a reason, and keeps nothing of it.
        assert str(exc)
        assert rig.base.crm.get_contacts(rig.settings.tenant_id, [contact.id]) == {}
        return
    run = rig.sync()
    _clean(run)
    link = rig.base.state.get_links_by_crm(rig.settings.tenant_id, rig.settings.user_id, [contact.id]).get(contact.id)
    items = _tagged(rig, contact.id)
    if link is not None and link.state is LinkState.LINKED:
        assert [i["id"] for i in items] == [link.ms_id], items
        assert graph_to_contact(items[0]).fields == crm_to_fields(contact, "Contoso Ltd")
    else:
        reason = _quarantined(rig, "crm", contact.id)
        assert reason, f"neither synced nor quarantined: {link}"
        assert any(contact.id in line for line in run.log), run.log
        assert items == [] or (link is not None and link.state is LinkState.PENDING_CREATE), items


@PROFILE
@given(body=graph_contact())
def test_outlook_contacts_with_bad_fields_are_imported_or_quarantined(rig: Rig, body: dict[str, Any]) -> None:
    made = rig.outlook.request("POST", f"/contactFolders/{_folder(rig)}/contacts", body)
    assume(made.status_code == 201)  # what Outlook itself refuses never reaches us
    ms_id = made.json()["id"]
    run = rig.sync()
    _clean(run)
    link = rig.base.state.get_links_by_ms(rig.settings.tenant_id, rig.settings.user_id, [ms_id]).get(ms_id)
    if link is not None:
        crm = rig.base.crm.get_contacts(rig.settings.tenant_id, [link.crm_id])
        assert link.crm_id in crm, "a link to a CRM record that was never written"
        contact = crm[link.crm_id]
        account = rig.base.crm.get_accounts(rig.settings.tenant_id, [contact.account_id])[contact.account_id]
        now = rig.outlook.request("GET", f"/contacts/{ms_id}").json()  # after any write-back of the company
        assert graph_to_contact(now).fields == crm_to_fields(contact, account.name)
    else:
        reason = _quarantined(rig, "microsoft", ms_id)
        assert reason, "neither imported nor quarantined"
        assert any(ms_id in line for line in run.log), run.log
        derived = import_crm_id(rig.settings.tenant_id, rig.settings.user_id, ms_id)
        assert rig.base.crm.get_contacts(rig.settings.tenant_id, [derived]) == {}, "half-written import"


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
                   phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(edit=graph_contact(), crm_notes=st.sampled_from(["", "<b>x</b>", "é" * 9000]))
def test_bad_edits_on_both_sides_of_a_linked_contact_converge(rig: Rig, edit: dict[str, Any], crm_notes: str) -> None:
    contact = rig.base.crm.create_contact(CrmContact(id=uuid.uuid4().hex, tenant_id=rig.settings.tenant_id,
                                                     account_id=rig.account_id, first_name="Ada", last_name="Edge"))
    _clean(rig.sync())
    (item,) = _tagged(rig, contact.id)
    patched = rig.outlook.request("PATCH", f"/contacts/{item['id']}", edit)
    assume(patched.status_code == 200)
    fresh = rig.base.crm.get_contacts(rig.settings.tenant_id, [contact.id])[contact.id]
    rig.base.crm.update_contact(fresh.model_copy(update={"notes": crm_notes}))
    _clean(rig.sync())
    second = rig.sync()
    _clean(second)
    now = rig.base.crm.get_contacts(rig.settings.tenant_id, [contact.id])
    assert contact.id in now  # an edit never loses the CRM record
    link = rig.base.state.get_links_by_crm(rig.settings.tenant_id, rig.settings.user_id, [contact.id])[contact.id]
    if link.state is LinkState.LINKED and not _quarantined(rig, "crm", contact.id):
        current = rig.outlook.request("GET", f"/contacts/{link.ms_id}").json()
        account = rig.base.crm.get_accounts(rig.settings.tenant_id, [now[contact.id].account_id])
        name = account[now[contact.id].account_id].name
        assert graph_to_contact(current).fields == crm_to_fields(now[contact.id], name)
