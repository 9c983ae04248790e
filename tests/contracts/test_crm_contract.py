"""CrmPort contract: what every CRM implementation (in memory and on Table Storage) must do."""
from __future__ import annotations

import secrets
import threading
import time

import pytest

from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError, NotFoundError
from sync_core.domain.models import Address, CrmContact, FeedEntry
from sync_core.ports import CrmPort


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


@pytest.fixture
def tenant() -> str:
    return new_id("tenant-")


def contact(tenant: str, account_id: str, **fields: object) -> CrmContact:
    values: dict[str, object] = {"id": new_id("c"), "tenant_id": tenant, "account_id": account_id,
                                 "first_name": "Ada", "last_name": "Lovelace"}
    values.update(fields)
    return CrmContact.model_validate(values)


def content(c: CrmContact) -> dict[str, object]:
    """A contact without the fields the store owns (version, modified_at)."""
    return c.model_dump(exclude={"version", "modified_at"})


def all_changes(crm: CrmPort, tenant: str, after: int = 0, limit: int = 7) -> list[FeedEntry]:
    entries: list[FeedEntry] = []
    while True:
        page = crm.read_changes(tenant, after, limit)
        entries.extend(page.entries)
        if not page.entries:
            return entries
        assert page.last_position == page.entries[-1].position
        after = page.last_position


# ---- accounts ---------------------------------------------------------------------------------

def test_account_create_and_get(crm: CrmPort, tenant: str) -> None:
    account = crm.create_account(tenant, "Analytical Engines Ltd", "user-1")
    assert account.id and account.tenant_id == tenant and account.owner_user_id == "user-1"
    assert crm.get_accounts(tenant, [account.id, "missing"]) == {account.id: account}
    assert crm.get_accounts("other-tenant", [account.id]) == {}


def test_account_name_lookup_ignores_case_space_and_punctuation(crm: CrmPort, tenant: str) -> None:
    acme = crm.create_account(tenant, "Acme, Inc.", None)
    crm.create_account(tenant, "Acme Ltd", None)
    for query in ["Acme, Inc.", "  acme inc ", "ACME-INC", "acme\tinc!"]:
        assert [a.id for a in crm.find_accounts_by_name(tenant, query)] == [acme.id], query
    assert crm.find_accounts_by_name(tenant, "Acme Incorporated") == []
    assert crm.find_accounts_by_name("other-tenant", "Acme Inc") == []
    crm.create_account(tenant, "...", None)
    assert crm.find_accounts_by_name(tenant, " ,. ") == []  # blank names match nothing


def test_account_rename_and_owner_change_are_fed_and_reindexed(crm: CrmPort, tenant: str) -> None:
    # Not port methods (the sync never writes accounts this way) but both CRMs offer them to
    # tests and screens acting as a CRM user, and the engine reacts to the feed entries.
    account = crm.create_account(tenant, "Old Name Ltd", "u1")
    after = crm.read_changes(tenant, 0).last_position
    renamed = crm.rename_account(tenant, account.id, "New Name Ltd")  # type: ignore[attr-defined]
    assert renamed.name == "New Name Ltd" and renamed.version != account.version
    assert crm.find_accounts_by_name(tenant, "old name ltd") == []
    assert crm.find_accounts_by_name(tenant, "NEW NAME LTD") == [renamed]
    moved = crm.set_account_owner(tenant, account.id, "u2")  # type: ignore[attr-defined]
    assert moved.owner_user_id == "u2" and moved.name == "New Name Ltd"
    assert crm.get_accounts(tenant, [account.id]) == {account.id: moved}
    changes = crm.read_changes(tenant, after).entries
    assert [(e.kind, e.record_id) for e in changes] == [("account", account.id)] * 2


def test_several_accounts_with_one_name_come_back_in_id_order(crm: CrmPort, tenant: str) -> None:
    first = crm.create_account(tenant, "Babbage & Co", None)
    second = crm.create_account(tenant, "BABBAGE  co", None)
    found = crm.find_accounts_by_name(tenant, "babbage co")
    assert [a.id for a in found] == sorted([first.id, second.id])


def test_list_accounts(crm: CrmPort, tenant: str) -> None:
    made = [crm.create_account(tenant, name, "u") for name in ("B corp", "A corp", "C corp")]
    assert crm.list_accounts(tenant) == sorted(made, key=lambda a: a.id)
    assert crm.list_accounts("other-tenant") == []


# ---- contacts ---------------------------------------------------------------------------------

def test_contact_create_get_update_delete(crm: CrmPort, tenant: str) -> None:
    account = crm.create_account(tenant, "Engines", None)
    draft = contact(tenant, account.id, emails=("ada@example.com",), job_title="Analyst",
                    address=Address(street="1 St James's Sq", city="London", country="UK"), notes="first\nnote")
    created = crm.create_contact(draft)
    assert created.version and created.id == draft.id
    assert content(created) == content(draft)
    assert crm.get_contacts(tenant, [created.id]) == {created.id: created}

    edited = created.model_copy(update={"job_title": "Programmer", "mobile_phone": "+44 7700 900000"})
    updated = crm.update_contact(edited)
    assert updated.version and updated.version != created.version
    assert content(updated) == content(edited)
    assert crm.get_contacts(tenant, [created.id, "missing"]) == {created.id: updated}

    crm.delete_contact(tenant, created.id)
    assert crm.get_contacts(tenant, [created.id]) == {}
    with pytest.raises(NotFoundError):
        crm.delete_contact(tenant, created.id)


def test_update_with_stale_version_raises_and_keeps_the_newer_write(crm: CrmPort, tenant: str) -> None:
    account = crm.create_account(tenant, "Engines", None)
    created = crm.create_contact(contact(tenant, account.id))
    newer = crm.update_contact(created.model_copy(update={"first_name": "Augusta"}))
    with pytest.raises(ConcurrencyError):
        crm.update_contact(created.model_copy(update={"first_name": "Stale"}))
    assert crm.get_contacts(tenant, [created.id])[created.id] == newer


def test_concurrent_updates_of_one_version_let_exactly_one_win(crm: CrmPort, tenant: str) -> None:
    account = crm.create_account(tenant, "Engines", None)
    created = crm.create_contact(contact(tenant, account.id))
    before = crm.read_changes(tenant, 0).last_position
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def edit(name: str) -> None:
        barrier.wait()
        try:
            crm.update_contact(created.model_copy(update={"first_name": name}))
            outcomes.append(name)
        except ConcurrencyError:
            outcomes.append("lost")

    threads = [threading.Thread(target=edit, args=(name,)) for name in ("One", "Two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "lost"]
    assert len(winners) == 1 and len(outcomes) == 2
    assert crm.get_contacts(tenant, [created.id])[created.id].first_name == winners[0]
    assert [e.record_id for e in crm.read_changes(tenant, before).entries] == [created.id]


def test_duplicate_create_raises(crm: CrmPort, tenant: str) -> None:
    account = crm.create_account(tenant, "Engines", None)
    first = crm.create_contact(contact(tenant, account.id, first_name="One"))
    with pytest.raises(AlreadyExistsError):
        crm.create_contact(contact(tenant, account.id, id=first.id, first_name="Two"))
    assert crm.get_contacts(tenant, [first.id])[first.id] == first


def test_update_or_create_against_missing_records(crm: CrmPort, tenant: str) -> None:
    account = crm.create_account(tenant, "Engines", None)
    with pytest.raises(NotFoundError):
        crm.update_contact(contact(tenant, account.id, version="W/\"anything\""))
    with pytest.raises(NotFoundError):
        crm.create_contact(contact(tenant, "no-such-account"))


def test_list_contacts_by_account_and_limit(crm: CrmPort, tenant: str) -> None:
    a = crm.create_account(tenant, "A", None)
    b = crm.create_account(tenant, "B", None)
    in_a = [crm.create_contact(contact(tenant, a.id)) for _ in range(3)]
    in_b = [crm.create_contact(contact(tenant, b.id)) for _ in range(2)]
    assert crm.list_contacts(tenant, a.id) == sorted(in_a, key=lambda c: c.id)
    assert crm.list_contacts(tenant, b.id) == sorted(in_b, key=lambda c: c.id)
    everyone = sorted(in_a + in_b, key=lambda c: c.id)
    assert crm.list_contacts(tenant) == everyone
    assert len(crm.list_contacts(tenant, limit=2)) == 2


# ---- email lookup -----------------------------------------------------------------------------

def test_email_lookup_follows_every_write(crm: CrmPort, tenant: str) -> None:
    a = crm.create_account(tenant, "A", None)
    b = crm.create_account(tenant, "B", None)
    ada = crm.create_contact(contact(tenant, a.id, emails=("Ada@Example.com", "ada@engines.example")))
    assert crm.find_contacts_by_email(tenant, a.id, "ada@example.com") == [ada]
    assert crm.find_contacts_by_email(tenant, a.id, "ADA@ENGINES.EXAMPLE") == [ada]
    assert crm.find_contacts_by_email(tenant, b.id, "ada@example.com") == []
    assert crm.find_contacts_by_email(tenant, a.id, "ada@example.co") == []

    dropped = crm.update_contact(ada.model_copy(update={"emails": ("ada@engines.example",)}))
    assert crm.find_contacts_by_email(tenant, a.id, "ada@example.com") == []
    assert crm.find_contacts_by_email(tenant, a.id, "ada@engines.example") == [dropped]

    moved = crm.update_contact(dropped.model_copy(update={"account_id": b.id}))
    assert crm.find_contacts_by_email(tenant, a.id, "ada@engines.example") == []
    assert crm.find_contacts_by_email(tenant, b.id, "ada@engines.example") == [moved]

    twin = crm.create_contact(contact(tenant, b.id, emails=("ada@engines.example",)))
    found = crm.find_contacts_by_email(tenant, b.id, "ada@engines.example")
    assert found == sorted([moved, twin], key=lambda c: c.id)

    crm.delete_contact(tenant, moved.id)
    assert crm.find_contacts_by_email(tenant, b.id, "ada@engines.example") == [twin]


# ---- change feed ------------------------------------------------------------------------------

def test_feed_lists_every_write_in_order_with_paging_and_deletes(crm: CrmPort, tenant: str) -> None:
    start = crm.read_changes(tenant, 0)
    assert start.entries == () and start.last_position == 0
    account = crm.create_account(tenant, "Engines", None)
    expected: list[tuple[str, str, bool]] = [("account", account.id, False)]
    made = []
    for index in range(5):
        made.append(crm.create_contact(contact(tenant, account.id, first_name=f"N{index}")))
        expected.append(("contact", made[-1].id, False))
    crm.update_contact(made[2].model_copy(update={"last_name": "Byron"}))
    expected.append(("contact", made[2].id, False))
    crm.delete_contact(tenant, made[0].id)
    expected.append(("contact", made[0].id, True))

    entries = all_changes(crm, tenant, limit=3)
    assert [(e.kind, e.record_id, e.deleted) for e in entries] == expected
    positions = [e.position for e in entries]
    assert positions == list(range(positions[0], positions[0] + len(positions)))  # increasing, no gaps

    middle = positions[3]
    page = crm.read_changes(tenant, middle, limit=2)
    assert [e.position for e in page.entries] == positions[4:6] and page.last_position == positions[5]
    end = crm.read_changes(tenant, positions[-1])
    assert end.entries == () and end.last_position == positions[-1]
    assert crm.read_changes("other-tenant", 0).entries == ()


def test_failed_writes_leave_no_feed_entry(crm: CrmPort, tenant: str) -> None:
    account = crm.create_account(tenant, "Engines", None)
    created = crm.create_contact(contact(tenant, account.id))
    before = crm.read_changes(tenant, 0).last_position
    crm.update_contact(created.model_copy(update={"first_name": "New"}))
    with pytest.raises(ConcurrencyError):
        crm.update_contact(created.model_copy(update={"first_name": "Stale"}))
    with pytest.raises(AlreadyExistsError):
        crm.create_contact(created)
    assert len(crm.read_changes(tenant, before).entries) == 1


def test_concurrent_writers_lose_no_change_and_readers_skip_none(crm: CrmPort, tenant: str) -> None:
    account = crm.create_account(tenant, "Engines", None)
    start = crm.read_changes(tenant, 0).last_position
    written: list[list[str]] = [[], []]
    seen_by_reader: list[str] = []
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def writer(slot: int) -> None:
        try:
            for index in range(50):
                made = crm.create_contact(contact(tenant, account.id, first_name=f"W{slot}-{index}"))
                written[slot].append(made.id)
        except BaseException as exc:  # surfaced by the assertion below, not swallowed
            errors.append(exc)

    def reader() -> None:
        # A poller that keeps its cursor like the engine does must never skip a change.
        cursor = start
        try:
            while True:
                finished = writers_done.is_set()
                page = crm.read_changes(tenant, cursor, limit=10)
                seen_by_reader.extend(e.record_id for e in page.entries)
                cursor = page.last_position
                if finished and not page.entries:
                    return
                if not page.entries:
                    time.sleep(0.005)  # poll like a worker would, without starving the writers
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(slot,)) for slot in (0, 1)]
    poller = threading.Thread(target=reader)
    poller.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writers_done.set()
    poller.join()
    assert errors == []

    entries = all_changes(crm, tenant, after=start, limit=25)
    ids = [e.record_id for e in entries]
    assert sorted(ids) == sorted(written[0] + written[1]) and len(set(ids)) == 100
    positions = [e.position for e in entries]
    assert positions == list(range(start + 1, start + 101))
    for slot in (0, 1):  # each writer's own writes appear in the order it made them
        assert [i for i in ids if i in set(written[slot])] == written[slot]
    assert sorted(seen_by_reader) == sorted(ids)
