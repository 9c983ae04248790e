"""sync_user end to end on the fakes: every rule of issue 4 as a scenario."""
from __future__ import annotations

from typing import Any

import pytest
from core_world import TENANT, USER, World

from sync_core.domain.errors import LeaseHeldError, NotFoundError, ThrottledError, TransientError
from tests.support.fakes import DEFAULT_CONTACTS_FOLDER, FakeMicrosoft, FakeStateStore, SimulatedCrash
from sync_core.domain.models import (
    DEFAULT_IMPORT_ACCOUNT,
    FOLDER_NAME,
    ContactScope,
    CrmContact,
    LinkState,
    RunOutcome,
    SyncMode,
)
from sync_core.sync.guard import GuardLimits
from sync_core.kinds.contacts.run import SyncOptions


def populate(world: World, count: int, company: str = "Contoso, Inc.") -> list[str]:
    account = world.account(company)
    return [world.contact(account, first_name=f"First{i}", last_name="Person", emails=(f"p{i}@contoso.example",),
                          job_title="Buyer").id for i in range(count)]


# --- first sync, idempotence, request counts ----------------------------------------------------

def test_first_sync_creates_the_folder_once_and_pushes_everything(world: World) -> None:
    ids = populate(world, 45)
    run = world.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 45
    assert len(world.ms.folder_by_name(FOLDER_NAME)) == 1
    world.assert_in_step()
    assert set(world.pairs()) == set(ids)
    assert world.ms.calls["ensure_folder"] == 1
    world.sync()
    assert len(world.ms.folder_by_name(FOLDER_NAME)) == 1 and world.ms.calls["ensure_folder"] == 1
    assert [r.outcome for r in world.state.latest_runs(TENANT, USER)] == [RunOutcome.SUCCEEDED] * 2


def test_a_user_whose_sync_state_is_gone_is_paired_again_without_a_duplicate(world: World) -> None:
    """What a user whose old state could not be attributed to them (state_migration: a user id connected in
    several tenants) meets: no links, no cursor, a folder full of our cards. Pairing by our tag: nothing
    is created twice, nothing is imported as a second CRM contact."""
    ids = populate(world, 30)
    world.sync()
    written = world.ms.items_written
    world.state = FakeStateStore()
    run = world.sync()
    assert run.microsoft.created == 0 and run.crm.created == 0
    assert world.ms.items_written == written
    assert len(world.crm_contacts()) == 30 and len(world.ms.folder_items(world.folder)) == 30
    assert set(world.pairs()) == set(ids)
    world.assert_in_step()


def test_an_existing_folder_of_that_name_is_reused(world: World) -> None:
    made_by_hand = world.ms.ensure_folder(FOLDER_NAME, None)
    populate(world, 2)
    world.sync()
    assert world.ms.folder_by_name(FOLDER_NAME) == [made_by_hand]
    assert world.state.get_cursor(TENANT, USER).folder_id == made_by_hand


def test_a_second_sync_writes_nothing(world: World, no_writes: Any) -> None:
    populate(world, 12)
    world.sync()
    world.ms.user_create(world.folder, givenName="Outlook", surname="Only", companyName="Fabrikam")
    world.sync()
    world.sync()  # reads the echoes of the previous run's own writes
    no_writes(world)
    run = world.sync()
    assert run.outcome is RunOutcome.SUCCEEDED
    assert (run.crm.created, run.crm.updated, run.microsoft.created, run.microsoft.updated) == (0, 0, 0, 0)


def test_echoes_of_our_own_writes_write_nothing(world: World, no_writes: Any) -> None:
    populate(world, 5)
    world.sync()
    no_writes(world)  # the CRM feed and the delta now hold exactly what we wrote
    world.sync()


@pytest.mark.parametrize("contacts", [10, 200])
def test_a_sync_with_nothing_changed_makes_one_graph_call_and_constant_storage_reads(contacts: int) -> None:
    world = World()
    populate(world, contacts)
    world.sync()
    world.sync()  # the echo round
    graph_before, state_before, crm_before = world.ms.request_count, world.state.reads, sum(world.crm.calls.values())
    scans_before = world.state.calls["iter_links"]
    calls_before = world.ms.calls.copy()
    run = world.sync()
    assert world.ms.request_count - graph_before == 1 and run.graph_requests == 1
    assert world.ms.calls - calls_before == {"contact_delta": 1}
    assert world.state.reads - state_before == 2  # the cursor and the quarantine list
    assert world.state.calls["iter_links"] == scans_before
    assert sum(world.crm.calls.values()) - crm_before == 1  # one feed page


def test_one_changed_contact_costs_a_few_graph_requests(world: World) -> None:
    ids = populate(world, 150)
    world.sync()
    world.sync()
    before = world.ms.request_count
    world.crm.edit_contact(TENANT, ids[7], job_title="Director")
    run = world.sync()
    assert run.microsoft.updated == 1 and world.ms.request_count - before == 2  # delta + one batch
    world.assert_in_step()


# --- crashes and unknown outcomes ---------------------------------------------------------------

def test_a_crash_between_the_graph_create_and_the_link_write_creates_no_duplicate(world: World) -> None:
    populate(world, 30)
    world.ms.faults.inject("create_contacts", SimulatedCrash(), after_write=True)
    with pytest.raises(SimulatedCrash):
        world.sync()
    assert len(world.ms.folder_items(world.folder)) == 30  # created, but the links never learnt their ids
    assert {link.state for link in world.links().values()} == {LinkState.PENDING_CREATE}
    assert world.state.get_cursor(TENANT, USER).delta_link is None  # nothing was confirmed: the next run replays
    assert world.state.latest_runs(TENANT, USER)[0].outcome is RunOutcome.RUNNING
    run = world.sync()
    assert run.microsoft.created == 0 and world.ms.calls["find_contact_by_crm_id"] == 30
    assert len(world.ms.folder_items(world.folder)) == 30
    world.assert_in_step()
    run = world.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and len(world.outlook()) == 30


def test_a_crash_while_saving_the_links_is_recovered_the_same_way(world: World) -> None:
    populate(world, 5)
    world.state.faults.inject("save_link", SimulatedCrash(), when=lambda link: link.state is LinkState.LINKED)
    with pytest.raises(SimulatedCrash):
        world.sync()
    world.sync()
    assert len(world.outlook()) == 5
    world.assert_in_step()


def test_a_create_timing_out_is_looked_up_not_repeated(world: World) -> None:
    populate(world, 3)
    world.ms.faults.inject("create_contacts", TransientError("read timeout"), after_write=True)
    run = world.sync()
    assert run.outcome is RunOutcome.PARTIAL and run.microsoft.errors == 3
    assert {q.reason for q in world.state.list_quarantine(TENANT, USER)} == {"create outcome unknown (HTTP 0)"}
    run = world.sync()
    assert run.microsoft.created == 0 and len(world.outlook()) == 3
    assert world.state.list_quarantine(TENANT, USER) == []
    world.assert_in_step()


def test_a_create_that_never_reached_graph_is_made_by_the_next_run(world: World) -> None:
    populate(world, 3)
    world.ms.faults.inject("create_contacts", TransientError("connection reset"))
    world.sync()
    assert world.outlook() == {}
    run = world.sync()
    assert run.microsoft.created == 3
    world.assert_in_step()


def test_a_crash_after_an_import_into_the_crm_creates_no_duplicate(world: World) -> None:
    world.sync()
    world.ms.user_create(world.folder, givenName="Ada", surname="Lovelace", companyName="Engines",
                         emailAddresses=[{"address": "ada@engines.example"}])
    world.crm.faults.inject("create_contact", SimulatedCrash(), after_write=True)
    with pytest.raises(SimulatedCrash):
        world.sync()
    assert len(world.crm_contacts()) == 1
    world.sync()
    assert len(world.crm_contacts()) == 1
    world.assert_in_step()


# --- delta expiry -------------------------------------------------------------------------------

def test_an_expired_delta_link_resyncs_fully_without_duplicates(world: World) -> None:
    ids = populate(world, 25)
    world.sync()
    items = world.pairs()
    world.ms.user_edit(items[ids[0]], jobTitle="Chief Buyer")
    world.ms.user_delete(items[ids[1]])
    new_item = world.ms.user_create(world.folder, givenName="New", surname="Face", companyName="Contoso, Inc.")
    world.crm.edit_contact(TENANT, ids[2], mobile_phone="+1 555 0100")
    world.ms.expire_delta()
    run = world.sync()
    assert any("deltaLink expired" in line for line in run.log)
    assert run.microsoft.created == 0 and run.crm.created == 1
    assert world.crm_fields(ids[0]).job_title == "Chief Buyer"
    assert world.links()[ids[1]].state is LinkState.MS_REMOVED  # missing from the full listing
    assert len(world.crm_contacts()) == 26 and len(world.outlook()) == 25
    assert new_item in world.pairs().values()
    world.assert_in_step()
    assert world.sync().outcome is RunOutcome.SUCCEEDED


def test_a_deleted_folder_is_found_or_made_again_by_name(world: World) -> None:
    populate(world, 3)
    world.sync()
    world.ms.delete_folder(world.folder)
    run = world.sync(options=SyncOptions(limits=GuardLimits(min_items=20)))
    assert len(world.ms.folder_by_name(FOLDER_NAME)) == 1
    assert all(link.state is LinkState.MS_REMOVED for link in world.links().values())
    assert len(world.crm_contacts()) == 3 and run.outcome is RunOutcome.SUCCEEDED


# --- replication rules --------------------------------------------------------------------------

def test_an_outlook_delete_keeps_the_crm_record_and_is_not_undone_until_edited_in_the_crm(world: World) -> None:
    ids = populate(world, 3)
    world.sync()
    world.ms.user_delete(world.pairs()[ids[0]])
    run = world.sync()
    assert run.crm == run.crm.model_copy(update={"deleted": 0}) and len(world.crm_contacts()) == 3
    assert world.links()[ids[0]].state is LinkState.MS_REMOVED
    world.crm.edit_contact(TENANT, ids[1], job_title="Other contact edited")  # not the removed one
    for _ in range(2):
        world.sync()
    assert len(world.outlook()) == 2
    world.crm.edit_contact(TENANT, ids[0], job_title="Edited after removal")
    run = world.sync()
    assert run.microsoft.created == 1 and len(world.outlook()) == 3
    world.assert_in_step()


def test_moving_out_of_the_folder_is_a_removal_and_moving_back_relinks(world: World) -> None:
    ids = populate(world, 2)
    world.sync()
    item = world.pairs()[ids[0]]
    world.ms.user_move(item, DEFAULT_CONTACTS_FOLDER)
    world.sync()
    assert world.links()[ids[0]].state is LinkState.MS_REMOVED and len(world.crm_contacts()) == 2
    world.ms.user_edit(item, mobilePhone="+44 1")
    world.ms.user_move(item, world.folder)
    run = world.sync()
    assert run.crm.created == 0 and len(world.crm_contacts()) == 2
    assert world.pairs()[ids[0]] == item and world.crm_fields(ids[0]).mobile_phone == "+44 1"
    world.assert_in_step()


def test_a_crm_delete_removes_the_outlook_item(world: World) -> None:
    ids = populate(world, 3)
    world.sync()
    item = world.pairs()[ids[0]]
    world.crm.remove_contact(TENANT, ids[0])
    run = world.sync()
    assert run.microsoft.deleted == 1 and item not in world.ms.items and ids[0] not in world.links()
    world.assert_in_step()


def test_a_contact_moved_in_with_a_known_email_is_linked_not_duplicated(world: World) -> None:
    fabrikam = world.account("Fabrikam", owner="someone-else")  # not synced by this user: never pushed
    bob = world.contact(fabrikam, first_name="Bob", last_name="Kelly", emails=("bob@fabrikam.example",))
    world.sync()
    assert world.outlook() == {}
    item = world.ms.user_create(DEFAULT_CONTACTS_FOLDER, givenName="Bob", surname="Kelly", companyName="FABRIKAM",
                                emailAddresses=[{"address": "Bob@Fabrikam.example"}], mobilePhone="+1 425 555 0199")
    world.ms.user_move(item, world.folder)
    run = world.sync()
    assert run.crm.created == 0 and [c.id for c in world.crm_contacts()] == [bob.id]
    assert world.pairs() == {bob.id: item}
    assert world.crm_fields(bob.id).mobile_phone == "+1 425 555 0199"  # the blank filled from Outlook
    assert world.outlook()[item].fields.company == "Fabrikam"  # Outlook follows the account's name
    world.assert_in_step()


def test_a_new_outlook_contact_is_imported_into_the_matching_or_a_new_account(world: World) -> None:
    contoso = world.account("Contoso, Inc.")
    world.sync()
    a = world.ms.user_create(world.folder, givenName="A", surname="One", companyName="contoso inc")
    b = world.ms.user_create(world.folder, givenName="B", surname="Two", companyName="Northwind")
    c = world.ms.user_create(world.folder, givenName="C", surname="Three")
    d = world.ms.user_create(world.folder, givenName="D", surname="Four", companyName="  ")
    world.sync()
    by_item = {ms_id: crm_id for crm_id, ms_id in world.pairs().items()}
    accounts = {a.name: a for a in world.crm.list_accounts(TENANT)}
    assert set(accounts) == {"Contoso, Inc.", "Northwind", DEFAULT_IMPORT_ACCOUNT}
    contact = {ms_id: world.crm.contacts[(TENANT, by_item[ms_id])] for ms_id in (a, b, c, d)}
    assert contact[a].account_id == contoso.id
    assert contact[b].account_id == accounts["Northwind"].id and accounts["Northwind"].owner_user_id == USER
    assert contact[c].account_id == contact[d].account_id == accounts[DEFAULT_IMPORT_ACCOUNT].id
    assert world.outlook()[a].fields.company == "Contoso, Inc." and world.outlook()[c].fields.company == ""
    world.assert_in_step()


def test_a_company_change_in_outlook_moves_the_contact_to_another_account(world: World) -> None:
    ids = populate(world, 2)
    fabrikam = world.account("Fabrikam")
    world.sync()
    world.ms.user_edit(world.pairs()[ids[0]], companyName="fabrikam")
    world.ms.user_edit(world.pairs()[ids[1]], companyName="Tailspin Toys")
    world.sync()
    assert world.crm.contacts[(TENANT, ids[0])].account_id == fabrikam.id
    tailspin = world.crm.find_accounts_by_name(TENANT, "Tailspin Toys")
    assert len(tailspin) == 1 and world.crm.contacts[(TENANT, ids[1])].account_id == tailspin[0].id
    world.ms.user_edit(world.pairs()[ids[1]], companyName=None)
    world.sync()
    assert world.crm_fields(ids[1]).company == ""
    world.assert_in_step()


def test_outlook_company_follows_the_crm_account(world: World) -> None:
    ids = populate(world, 2)
    other = world.account("Adventure Works")
    world.sync()
    contact = world.crm.contacts[(TENANT, ids[0])]
    world.crm.update_contact(contact.model_copy(update={"account_id": other.id}))
    world.crm.rename_account(TENANT, contact.account_id, "Contoso Holdings")
    world.sync()
    outlook = world.outlook()
    assert outlook[world.pairs()[ids[0]]].fields.company == "Adventure Works"
    assert outlook[world.pairs()[ids[1]]].fields.company == "Contoso Holdings"
    world.assert_in_step()


def test_a_two_way_conflict_merges_per_field_and_the_crm_wins_the_same_field(world: World) -> None:
    ids = populate(world, 1)
    world.sync()
    item = world.pairs()[ids[0]]
    world.crm.edit_contact(TENANT, ids[0], job_title="CRM title", notes="CRM notes")
    world.ms.user_edit(item, jobTitle="Outlook title", mobilePhone="+1 206 555 0100")
    run = world.sync()
    assert run.conflicts == 1
    assert any(f"conflict crm:{ids[0]}" in line and "job_title" in line for line in run.log)
    merged = world.crm_fields(ids[0])
    assert (merged.job_title, merged.notes, merged.mobile_phone) == ("CRM title", "CRM notes", "+1 206 555 0100")
    world.assert_in_step()


def test_user_data_in_fields_we_do_not_own_survives_our_updates(world: World) -> None:
    ids = populate(world, 1)
    world.sync()
    item = world.pairs()[ids[0]]
    world.ms.user_edit(item, homePhones=["+1 555 0000"], birthday="1974-07-22", department="Sales")
    world.sync()
    world.crm.edit_contact(TENANT, ids[0], job_title="Changed in the CRM")
    world.sync()
    stored = world.ms.items[item]
    assert (stored["homePhones"], stored["birthday"], stored["department"]) == (["+1 555 0000"], "1974-07-22", "Sales")
    assert stored["jobTitle"] == "Changed in the CRM"


# --- scope and modes ----------------------------------------------------------------------------

def test_only_contacts_of_the_users_accounts_are_pushed_unless_the_scope_is_the_tenant(world: World) -> None:
    populate(world, 2)
    others = world.account("Elsewhere", owner="user-2")
    world.contact(others, first_name="Not", last_name="Mine")
    world.sync()
    assert len(world.outlook()) == 2
    world.user = world.user.model_copy(update={"contact_scope": ContactScope.TENANT})
    world.crm.edit_contact(TENANT, world.crm_contacts()[0].id, notes="touch")
    world.crm.set_account_owner(TENANT, others.id, "user-2")  # an account change re-reads its contacts
    world.sync()
    assert len(world.outlook()) == 3


def test_crm_to_microsoft_ignores_outlook_changes(world: World) -> None:
    world.set_mode(SyncMode.CRM_TO_MICROSOFT)
    ids = populate(world, 2)
    world.sync()
    world.ms.user_edit(world.pairs()[ids[0]], jobTitle="Edited in Outlook")
    world.ms.user_create(world.folder, givenName="Outlook", surname="Only")
    run = world.sync()
    assert (run.crm.created, run.crm.updated) == (0, 0) and world.crm_fields(ids[0]).job_title == "Buyer"
    world.crm.edit_contact(TENANT, ids[0], notes="CRM edit")
    world.sync()
    assert world.outlook()[world.pairs()[ids[0]]].fields.job_title == "Buyer"  # the CRM version wins


def test_microsoft_to_crm_a_crm_delete_stays_deleted_after_a_full_resync(world: World) -> None:
    """chaos long 4243 u3 m463 / 4246 u3 m426: a contact deleted in the CRM came back at the next full
    round (after a delta expiry), its Outlook card unchanged. It comes back only when edited in Outlook."""
    world.set_mode(SyncMode.MICROSOFT_TO_CRM)
    world.account("Contoso")
    item = world.ms.user_create(world.ms.ensure_folder(FOLDER_NAME, None), givenName="Ada", surname="Lovelace",
                                companyName="Contoso")
    world.sync()
    (crm_id,) = world.pairs()
    world.crm.remove_contact(TENANT, crm_id)
    world.sync()
    world.ms.expire_delta()
    run = world.sync()
    assert [c.first_name for c in world.crm_contacts()] == [] and run.crm.created == 0
    assert item in world.ms.items and world.ms.items_written == 0
    world.sync()
    assert world.crm_contacts() == []
    world.ms.user_edit(item, jobTitle="Countess")
    world.sync()
    (back,) = world.crm_contacts()
    assert back.first_name == "Ada" and back.job_title == "Countess"
    assert world.pairs() == {back.id: item}


def test_microsoft_to_crm_never_writes_outlook(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.set_mode(SyncMode.MICROSOFT_TO_CRM)
    populate(world, 2)
    world.sync()
    assert world.outlook() == {}
    for name in ("create_contacts", "update_contacts", "delete_contacts"):
        monkeypatch.setattr(world.ms, name, lambda *a, **k: pytest.fail("Outlook written in microsoft_to_crm"))
    item = world.ms.user_create(world.folder, givenName="Ada", surname="Lovelace", companyName="contoso inc")
    world.sync()
    (crm_id,) = world.pairs()
    world.ms.user_edit(item, jobTitle="Countess")
    world.crm.edit_contact(TENANT, crm_id, notes="CRM only")
    run = world.sync()
    assert world.crm_fields(crm_id).job_title == "Countess" and world.crm_fields(crm_id).notes == "CRM only"
    assert world.outlook()[item].fields.company == "contoso inc" and run.outcome is RunOutcome.SUCCEEDED
    world.crm.remove_contact(TENANT, crm_id)
    world.sync()
    assert item in world.ms.items and world.pairs() == {}


# --- guards, quarantine and throttling ----------------------------------------------------------

def test_a_mass_delete_in_the_crm_is_held_back_with_the_reason(world: World) -> None:
    ids = populate(world, 30)
    world.sync()
    for crm_id in ids[:25]:
        world.crm.remove_contact(TENANT, crm_id)
    run = world.sync()
    assert run.outcome is RunOutcome.PARTIAL and run.microsoft.deleted == 0
    assert any("mass-delete guard: 25 deletions reported by the CRM" in line for line in run.log)
    assert len(world.outlook()) == 30
    run = world.sync()  # still held, still said
    assert run.microsoft.deleted == 0 and any("mass-delete guard" in line for line in run.log)
    run = world.sync(options=SyncOptions(limits=GuardLimits(enabled=False)))
    assert run.microsoft.deleted == 25 and len(world.outlook()) == 5
    world.assert_in_step()


def test_outlook_reporting_everything_gone_unlinks_nothing(world: World) -> None:
    ids = populate(world, 30)
    world.sync()
    for ms_id in list(world.outlook()):
        world.ms.user_delete(ms_id)
    run = world.sync()
    assert any("mass-delete guard: 30 deletions reported by Microsoft" in line for line in run.log)
    assert all(link.state is LinkState.LINKED for link in world.links().values())
    run = world.sync()  # the same removals come again from the same deltaLink
    assert any("mass-delete guard" in line for line in run.log)
    world.sync(options=SyncOptions(limits=GuardLimits(enabled=False)))
    assert all(world.links()[i].state is LinkState.MS_REMOVED for i in ids)
    assert len(world.crm_contacts()) == 30


def test_a_malformed_outlook_item_is_quarantined_while_the_rest_syncs(world: World) -> None:
    world.sync()
    bad = world.ms.user_create(world.folder, givenName="Bad", emailAddresses={"address": "not-a-list"})
    world.ms.user_create(world.folder, givenName="Good", surname="One")
    run = world.sync()
    assert run.outcome is RunOutcome.PARTIAL and run.quarantined == 1 and run.crm.created == 1
    (entry,) = world.state.list_quarantine(TENANT, USER)
    assert (entry.side, entry.record_id, entry.reason) == ("microsoft", bad,
                                                           "malformed Outlook item: emailAddresses is not a list")
    world.ms.user_edit(bad, emailAddresses=[{"address": "bad@example.com"}])
    run = world.sync()
    assert run.crm.created == 1 and world.state.list_quarantine(TENANT, USER) == []
    world.assert_in_step()


def test_an_item_outlook_refuses_is_quarantined_and_retried_later(world: World) -> None:
    ids = populate(world, 4)
    world.ms.fail_item(ids[1], status=400, error="ErrorInvalidProperty")
    run = world.sync()
    assert run.outcome is RunOutcome.PARTIAL and run.quarantined == 1 and run.microsoft.created == 3
    (entry,) = world.state.list_quarantine(TENANT, USER)
    assert entry.record_id == ids[1] and entry.reason.startswith("Outlook refused the create (HTTP 400)")
    assert ids[1] not in world.links()
    world.ms.fail_item(ids[1], status=400)
    world.sync()
    assert world.state.list_quarantine(TENANT, USER)[0].attempts == 2
    run = world.sync()
    assert run.microsoft.created == 1 and world.state.list_quarantine(TENANT, USER) == []
    world.assert_in_step()


def test_throttled_batch_items_are_retried_after_the_longest_retry_after(world: World) -> None:
    ids = populate(world, 5)
    world.ms.fail_item(ids[0], status=429, retry_after=2.5)
    world.ms.fail_item(ids[3], status=429, retry_after=7.0, times=2)
    run = world.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 5
    assert world.sleeps == [7.0, 7.0]
    world.assert_in_step()


def test_throttling_beyond_the_bounded_retries_is_retried_next_run(world: World) -> None:
    ids = populate(world, 3)
    world.ms.fail_item(ids[2], status=429, retry_after=1.0, times=10)
    run = world.sync()
    assert run.outcome is RunOutcome.PARTIAL and run.microsoft.errors == 1 and len(world.sleeps) == 3
    assert ids[2] not in world.links()
    world.ms.fail_item(ids[2], status=200, times=0)
    world.sync()
    world.assert_in_step()
    assert len(world.outlook()) == 3


def test_a_whole_call_throttled_is_retried_after_its_retry_after(world: World) -> None:
    populate(world, 2)
    world.ms.faults.inject("create_contacts", ThrottledError("slow down", retry_after=3.0))
    run = world.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and world.sleeps == [3.0]


def test_an_outlook_change_that_cannot_reach_the_crm_is_replayed(world: World) -> None:
    ids = populate(world, 2)
    world.sync()
    world.ms.user_edit(world.pairs()[ids[0]], jobTitle="From Outlook")
    world.crm.faults.inject("update_contact", NotFoundError("the account is being moved"))
    run = world.sync()
    assert run.outcome is RunOutcome.PARTIAL and run.crm.errors == 1
    run = world.sync()  # the old deltaLink brings the edit again
    assert world.crm_fields(ids[0]).job_title == "From Outlook"
    world.assert_in_step()


def test_an_item_deleted_in_outlook_while_we_update_it_is_pushed_back(world: World) -> None:
    ids = populate(world, 1)
    world.sync()
    world.crm.edit_contact(TENANT, ids[0], job_title="New title")
    item = world.pairs()[ids[0]]
    # The user deletes it after our delta call and before our update reaches Graph.
    world.ms.faults.inject("update_contacts", RuntimeError("unused"), when=lambda items: world.ms.user_delete(item))
    run = world.sync()
    assert run.microsoft.errors == 1 and world.links()[ids[0]].state is LinkState.MS_REMOVED
    world.sync()
    world.assert_in_step()
    assert len(world.outlook()) == 1


# --- lease and run records ----------------------------------------------------------------------

def test_a_second_worker_is_refused_while_the_lease_is_held(world: World) -> None:
    world.state.acquire_lease(TENANT, USER, "other-worker", 600, world.clock())
    with pytest.raises(LeaseHeldError):
        world.sync()
    assert world.state.latest_runs(TENANT, USER) == []


def test_the_run_record_is_saved_running_first_and_finished_last(world: World) -> None:
    populate(world, 1)
    world.ms.faults.inject("contact_delta", SimulatedCrash())
    with pytest.raises(SimulatedCrash):
        world.sync()
    (crashed,) = world.state.latest_runs(TENANT, USER)
    assert crashed.outcome is RunOutcome.RUNNING and crashed.finished_at is None
    assert world.state.leases == {}  # released on the way out
    run = world.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.finished_at is not None and run.graph_requests >= 2
    assert world.state.latest_runs(TENANT, USER, 1) == [run]


def test_a_failing_side_ends_the_run_as_failed_with_the_error_recorded(world: World) -> None:
    populate(world, 1)
    world.ms.faults.inject("contact_delta", TransientError("Graph unreachable"))
    run = world.sync()
    assert run.outcome is RunOutcome.FAILED and run.error == "TransientError: Graph unreachable"
    assert world.state.get_cursor(TENANT, USER).crm_position == 0
    assert world.sync().outcome is RunOutcome.SUCCEEDED


def test_a_bug_is_recorded_and_raised(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(world.crm, "read_changes", broken)
    with pytest.raises(KeyError):
        world.sync()
    assert world.state.latest_runs(TENANT, USER)[0].outcome is RunOutcome.FAILED


def test_delta_rounds_that_repeat_items_are_applied_once() -> None:
    world = World(ms=FakeMicrosoft(duplicate_delta_items=True))
    world.sync()
    world.ms.user_create(world.folder, givenName="Twice", surname="Listed")
    run = world.sync()
    assert run.crm.created == 1 and len(world.crm_contacts()) == 1


def test_a_later_outlook_company_edit_reaches_the_crm_after_an_import_typed_in_other_case(world: World) -> None:
    """Chaos long run, microsoft_to_crm: the import filed "  NEWCO 5595 LTD " under the account "Newco 5595 Ltd";
    the CRM showing the account's own spelling is no CRM edit, so a later company edit in Outlook must win."""
    world.set_mode(SyncMode.MICROSOFT_TO_CRM)
    world.account("Newco 5595 Ltd")
    later = world.account("Newco 4266 Ltd")
    world.sync()
    ms_id = world.ms.user_create(world.folder, givenName="Ann", surname="Lee", companyName="  NEWCO 5595 LTD ")
    world.sync()
    [imported] = [c for c in world.crm_contacts() if c.last_name == "Lee"]
    assert world.crm_fields(imported.id).company == "Newco 5595 Ltd"
    world.ms.user_edit(ms_id, companyName="  NEWCO 4266 LTD ")
    world.sync()
    assert world.crm.contacts[(TENANT, imported.id)].account_id == later.id


@pytest.mark.parametrize("mode", [SyncMode.TWO_WAY, SyncMode.MICROSOFT_TO_CRM])
def test_an_outlook_company_edit_reaches_the_crm_after_an_import_typed_from_office_365(world: World,
                                                                                       mode: SyncMode) -> None:
    """Chaos long run (u3 m910): a card typed with the company "From Office 365" lands in that account, whose
    contacts show no company; the CRM's blank was taken for an edit of the company that beat Outlook's."""
    world.set_mode(mode)
    world.sync()
    ms_id = world.ms.user_create(world.folder, givenName="Radia", surname="Lamarr", companyName="From Office 365")
    world.sync()
    [contact] = world.crm_contacts()
    assert world.crm.accounts[(TENANT, contact.account_id)].name == "From Office 365"
    world.ms.user_edit(ms_id, mobilePhone="+44 20 7946 3090")
    world.sync()
    world.ms.user_edit(ms_id, companyName="  NEWCO 8739 LTD ")
    run = world.sync()
    assert world.crm_fields(contact.id).company.casefold() == "newco 8739 ltd", run.log
    assert world.sync().crm.updated == 0


def _synced_then_moved_out(world: World) -> tuple[str, str, CrmContact]:
    """One CRM contact synced, its card moved out of the folder in Outlook, and a sync that saw it go."""
    [crm_id] = populate(world, 1)
    world.sync()
    old_card = world.pairs()[crm_id]
    world.ms.user_move(old_card, DEFAULT_CONTACTS_FOLDER)
    world.sync()
    return crm_id, old_card, world.crm.contacts[(TENANT, crm_id)]


def test_an_old_card_moved_back_in_after_we_recreated_it_is_no_second_contact(world: World) -> None:
    """Chaos long run (u4 c584): moved out of the folder, re-created by us after a CRM edit (an account
    rename), then the old card moved back in. It carries our CRM id: never imported as a contact of its own."""
    crm_id, old_card, contact = _synced_then_moved_out(world)
    world.crm.rename_account(TENANT, contact.account_id, "Contoso Holdings")
    world.sync()
    recreated = world.pairs()[crm_id]
    assert recreated != old_card
    world.ms.user_move(old_card, world.folder)
    run = world.sync()
    assert [c.id for c in world.crm_contacts()] == [crm_id], run.log
    assert list(world.outlook()) == [recreated]
    world.assert_in_step()
    assert world.sync().microsoft.deleted == 0  # settled


@pytest.mark.parametrize("mode", [SyncMode.TWO_WAY, SyncMode.MICROSOFT_TO_CRM])
def test_the_users_own_card_moved_back_in_after_we_recreated_it_is_no_second_contact(world: World,
                                                                                     mode: SyncMode) -> None:
    """Chaos long run (u6 m22): a card made in Outlook and imported, moved out, its contact re-created in
    Outlook after a CRM edit, then the original moved back in. It carries no tag of ours, but the id its
    import takes is that contact: never imported a second time."""
    world.set_mode(mode)
    world.sync()  # the folder
    original = world.ms.user_create(world.folder, givenName="Ada", surname="Lovelace", companyName="Engines",
                                    emailAddresses=[{"address": "ada@example.com"}])
    world.sync()
    [contact] = world.crm_contacts()
    world.ms.user_move(original, DEFAULT_CONTACTS_FOLDER)
    world.sync()
    world.set_mode(SyncMode.TWO_WAY)  # the contact goes back to Outlook as a card of ours
    world.crm.update_contact(contact.model_copy(update={"job_title": "Countess"}))
    world.sync()
    recreated = world.pairs()[contact.id]
    assert recreated != original
    world.set_mode(mode)
    world.ms.user_move(original, world.folder)
    run = world.sync()
    assert [c.id for c in world.crm_contacts()] == [contact.id], run.log
    assert world.crm_fields(contact.id).job_title == "Countess"
    if mode is SyncMode.TWO_WAY:
        assert list(world.outlook()) == [recreated], run.log
        world.assert_in_step()
    else:
        assert set(world.outlook()) == {recreated, original}  # microsoft_to_crm never writes Outlook
    assert world.sync().crm.created == 0


def _deleted_by_the_user_once_the_delta_is_read(world: World, ms_id: str) -> None:
    """The Outlook user deletes this card while a run is under way: after it read the delta, before it read
    the card's tag (what a run that takes seconds to write the CRM side meets)."""
    def delete(*_: Any) -> bool:
        if ms_id in world.ms.items:
            world.ms.user_delete(ms_id)
        return False  # no error: the run goes on with the delta it read

    world.ms.faults.inject("contact_delta", RuntimeError("unused"), after_write=True, when=delete)


@pytest.mark.parametrize("how", ["old card moved back in", "our create whose answer was lost"])
def test_a_card_of_ours_deleted_while_the_run_reads_it_is_no_second_contact(world: World, how: str) -> None:
    """Chaos long run (u2 c1165): a card of a CRM contact that no link names (an old copy moved back in, or
    our create whose answer was lost) is in the run's delta, and the user deletes it before the run reads its
    tag. Its tag read answers 404: the card is gone, not the user's own untagged card, so it is never
    imported (that made a second CRM contact with the first one's data)."""
    if how == "old card moved back in":
        crm_id, card, contact = _synced_then_moved_out(world)
        world.crm.update_contact(contact.model_copy(update={"job_title": "Countess"}))
        world.sync()  # re-created in the folder
        world.ms.user_move(card, world.folder)
    else:
        [crm_id] = populate(world, 1)
        world.ms.faults.inject("create_contacts", TransientError("read timeout"), after_write=True)
        world.sync()
        [card] = world.outlook()
        assert world.links()[crm_id].state is LinkState.PENDING_CREATE
    _deleted_by_the_user_once_the_delta_is_read(world, card)
    run = world.sync()
    world.ms.faults.clear()
    assert [c.id for c in world.crm_contacts()] == [crm_id], run.log
    assert run.crm.created == 0
    world.sync()
    [kept] = world.outlook()
    assert kept != card and world.pairs() == {crm_id: kept}
    world.assert_in_step()
    settled = world.sync()
    assert (settled.crm.created, settled.crm.updated, settled.microsoft.created, settled.microsoft.updated) == (0, 0, 0, 0)


def test_an_old_card_moved_back_in_after_its_recreated_copy_was_deleted_is_linked_again(world: World) -> None:
    crm_id, old_card, contact = _synced_then_moved_out(world)
    world.crm.update_contact(contact.model_copy(update={"job_title": "Head of Buying"}))
    world.sync()
    world.ms.user_delete(world.pairs()[crm_id])
    world.sync()
    world.ms.user_move(old_card, world.folder)
    run = world.sync()
    assert [c.id for c in world.crm_contacts()] == [crm_id], run.log
    assert world.pairs() == {crm_id: old_card}
    assert world.outlook()[old_card].fields.job_title == "Head of Buying"
    world.assert_in_step()
