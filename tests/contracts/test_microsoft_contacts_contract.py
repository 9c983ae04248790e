"""MicrosoftContactsPort contract: what the in-memory adapter and the Graph adapter (over HTTP, on the
emulator, which mirrors Graph) both do with an Outlook contact folder."""
from __future__ import annotations

import pytest

from sync_core.domain.errors import DeltaExpiredError, MicrosoftError
from sync_core.domain.models import ContactFields, DeltaResult, MsChange
from sync_core.ports import ITEM_GONE
from tests.contracts.mailboxes import Mailbox

FOLDER = "Really Simple Systems"


def ada(**changes: object) -> ContactFields:
    return ContactFields(first_name="Ada", last_name="Lovelace", emails=("ada@example.com",), company="Engines Ltd",
                         job_title="Analyst").model_copy(update=changes)


def by_id(delta: DeltaResult) -> dict[str, MsChange]:
    return {change.ms_id: change for change in delta.changes}


def created(mailbox: Mailbox, folder: str, *items: tuple[str, ContactFields]) -> list[str]:
    results = mailbox.contacts.create_contacts(folder, list(items))
    assert [(r.key, r.ok) for r in results] == [(crm_id, True) for crm_id, _ in items], results
    return [r.item.id for r in results if r.item is not None]


def test_ensure_folder_makes_one_folder_and_finds_it_again(mailbox: Mailbox) -> None:
    folder = mailbox.contacts.ensure_folder(FOLDER, None)
    assert folder
    assert mailbox.contacts.ensure_folder(FOLDER, None) == folder  # found by name, not made twice
    assert mailbox.contacts.ensure_folder(FOLDER, folder) == folder
    mailbox.contacts.delete_folder(folder)
    mailbox.contacts.delete_folder(folder)  # already gone is no error
    again = mailbox.contacts.ensure_folder(FOLDER, folder)  # the known one is gone: a new one
    assert again and again != folder


def test_a_create_shows_in_a_full_round_with_our_fields_and_tag(mailbox: Mailbox) -> None:
    folder = mailbox.contacts.ensure_folder(FOLDER, None)
    results = mailbox.contacts.create_contacts(folder, [("crm-1", ada())])
    [result] = results
    assert result.ok and result.key == "crm-1" and 200 <= result.status < 300
    assert result.item is not None and result.item.fields == ada() and result.item.version
    ms_id = result.item.id
    delta = mailbox.contacts.contact_delta(folder, None)
    assert delta.full and delta.delta_link
    [change] = delta.changes
    assert change.ms_id == ms_id and change.item is not None and change.item.fields == ada()
    assert mailbox.contacts.crm_ids_of([ms_id]) == {ms_id: "crm-1"}


def test_a_later_round_shows_only_what_changed_since(mailbox: Mailbox) -> None:
    folder = mailbox.contacts.ensure_folder(FOLDER, None)
    kept, edited = created(mailbox, folder, ("crm-1", ada()), ("crm-2", ada(first_name="Charles")))
    first = mailbox.contacts.contact_delta(folder, None)
    assert set(by_id(first)) == {kept, edited}
    quiet = mailbox.contacts.contact_delta(folder, first.delta_link)
    assert not quiet.full and quiet.changes == ()
    [update] = mailbox.contacts.update_contacts([(edited, ada(first_name="Charles", job_title="Inventor"))])
    assert update.ok and update.item is not None
    assert update.item.version != by_id(first)[edited].item.version  # type: ignore[union-attr]
    later = mailbox.contacts.contact_delta(folder, quiet.delta_link)
    assert list(by_id(later)) == [edited]
    assert later.changes[0].item is not None and later.changes[0].item.fields.job_title == "Inventor"
    assert later.changes[0].item.version == update.item.version


def test_a_delete_shows_as_removed_and_a_second_delete_is_a_404_that_is_fine(mailbox: Mailbox) -> None:
    folder = mailbox.contacts.ensure_folder(FOLDER, None)
    [ms_id] = created(mailbox, folder, ("crm-1", ada()))
    link = mailbox.contacts.contact_delta(folder, None).delta_link
    [gone] = mailbox.contacts.delete_contacts([ms_id])
    assert gone.ok and gone.key == ms_id and 200 <= gone.status < 300
    delta = mailbox.contacts.contact_delta(folder, link)
    assert [(c.ms_id, c.item, c.removed_reason) for c in delta.changes] == [(ms_id, None, "deleted")]
    [again] = mailbox.contacts.delete_contacts([ms_id])
    assert again.ok and again.status == 404  # already gone is what a delete wants
    [missing] = mailbox.contacts.update_contacts([(ms_id, ada())])
    assert not missing.ok and missing.status == 404


def test_deleted_and_moved_out_by_the_owner_show_as_removed(mailbox: Mailbox) -> None:
    folder = mailbox.contacts.ensure_folder(FOLDER, None)
    elsewhere = mailbox.contacts.ensure_folder("Elsewhere", None)
    deleted, moved = created(mailbox, folder, ("crm-1", ada()), ("crm-2", ada(first_name="Charles")))
    link = mailbox.contacts.contact_delta(folder, None).delta_link
    mailbox.delete_contact(deleted)
    mailbox.move_contact(moved, elsewhere)
    delta = mailbox.contacts.contact_delta(folder, link)
    removed = {c.ms_id: c.removed_reason for c in delta.changes if c.item is None}
    assert removed == {deleted: "deleted", moved: "changed"}  # moved out: Graph says "changed"
    assert mailbox.contacts.crm_ids_of([moved]) == {moved: "crm-2"}  # the tag goes with the card
    assert moved in by_id(mailbox.contacts.contact_delta(elsewhere, None))


def test_a_lost_sync_state_is_delta_expired_and_a_garbled_token_is_refused(mailbox: Mailbox) -> None:
    folder = mailbox.contacts.ensure_folder(FOLDER, None)
    created(mailbox, folder, ("crm-1", ada()))
    link = mailbox.contacts.contact_delta(folder, None).delta_link
    with pytest.raises(MicrosoftError) as garbled:
        mailbox.contacts.contact_delta(folder, link + "x")  # a token the server never issued: 400, not 410
    assert not isinstance(garbled.value, DeltaExpiredError) and garbled.value.status == 400
    mailbox.lose_sync_state()
    with pytest.raises(DeltaExpiredError):
        mailbox.contacts.contact_delta(folder, link)
    again = mailbox.contacts.contact_delta(folder, None)  # what the sync does next: a full round
    assert again.full and len(again.changes) == 1


def test_find_by_crm_id_and_the_tags_of_ours_the_owners_and_a_gone_card(mailbox: Mailbox) -> None:
    folder = mailbox.contacts.ensure_folder(FOLDER, None)
    ours, gone = created(mailbox, folder, ("crm-1", ada()), ("crm-2", ada(first_name="Charles")))
    own = mailbox.own_contact(folder, {"givenName": "Kept", "surname": "Own"})
    mailbox.contacts.delete_contacts([gone])
    found = mailbox.contacts.find_contact_by_crm_id(folder, "crm-1")
    assert found is not None and found.id == ours and found.fields == ada()
    assert mailbox.contacts.find_contact_by_crm_id(folder, "crm-2") is None
    assert mailbox.contacts.find_contact_by_crm_id(folder, "crm-unknown") is None
    assert mailbox.contacts.crm_ids_of([ours, own, gone]) == {ours: "crm-1", own: None, gone: ITEM_GONE}
    assert mailbox.contacts.crm_ids_of([]) == {}
