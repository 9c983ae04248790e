"""StateStore contract: what every sync state store (in memory and on Table Storage) must do."""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

import pytest

from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError, LeaseHeldError
from sync_core.domain.models import (
    Address,
    ContactFields,
    Cursor,
    Link,
    LinkState,
    QuarantineEntry,
    RunOutcome,
    RunRecord,
    SideCounts,
)
from sync_core.ports import StateStore

TENANT = "tenant-a"
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def user() -> str:
    return f"user-{secrets.token_hex(6)}"


def link(user: str, crm_id: str, ms_id: str | None, **fields: object) -> Link:
    synced = ContactFields(first_name="Ada", emails=("ada@example.com",), company="Engines",
                           address=Address(city="London"))
    values: dict[str, object] = {"tenant_id": TENANT, "user_id": user, "crm_id": crm_id, "ms_id": ms_id, "crm_version": "v1",
                                 "ms_version": "ck1", "synced": synced, "synced_hash": synced.content_hash()}
    values.update(fields)
    return Link.model_validate(values)


def same(a: Link, b: Link) -> bool:
    """Equal apart from the storage ETag."""
    return a.model_copy(update={"etag": None}) == b.model_copy(update={"etag": None})


# ---- links ------------------------------------------------------------------------------------

# Graph ids carry characters that are not allowed in storage keys; CRM ids are opaque too.
ODD_MS_ID = "AAMkAGI2/THVkAAA+x==_1"
ODD_CRM_ID = "crm_1#?\\x"


def test_link_round_trip_by_both_ids(store: StateStore, user: str) -> None:
    saved = store.save_link(link(user, ODD_CRM_ID, ODD_MS_ID))
    assert saved.etag
    by_crm = store.get_links_by_crm(TENANT, user, [ODD_CRM_ID, "missing"])
    by_ms = store.get_links_by_ms(TENANT, user, [ODD_MS_ID, "missing"])
    assert set(by_crm) == {ODD_CRM_ID} and set(by_ms) == {ODD_MS_ID}
    assert same(by_crm[ODD_CRM_ID], saved) and same(by_ms[ODD_MS_ID], saved)
    assert by_crm[ODD_CRM_ID].synced == saved.synced
    assert store.get_links_by_crm(TENANT, "another-user", [ODD_CRM_ID]) == {}
    assert store.get_links_by_ms(TENANT, "another-user", [ODD_MS_ID]) == {}


def test_long_synced_content_round_trips(store: StateStore, user: str) -> None:
    notes = ("Meeting notes, line with ünïcödé and \"quotes\".\n" * 1500)[:70_000]
    big = link(user, "c1", "m1", synced=ContactFields(first_name="Ada", notes=notes))
    saved = store.save_link(big)
    assert store.get_links_by_ms(TENANT, user, ["m1"])["m1"].synced == big.synced
    shorter = store.save_link(saved.model_copy(update={"synced": ContactFields(notes="short")}))
    assert store.get_links_by_crm(TENANT, user, ["c1"])["c1"].synced == shorter.synced


def test_duplicate_link_insert_raises(store: StateStore, user: str) -> None:
    store.save_link(link(user, "c1", "m1"))
    with pytest.raises(AlreadyExistsError):
        store.save_link(link(user, "c1", "m2"))
    with pytest.raises(AlreadyExistsError):  # an ms item is linked to one CRM record only
        store.save_link(link(user, "c2", "m1"))
    assert store.get_links_by_ms(TENANT, user, ["m2"]) == {} and store.get_links_by_crm(TENANT, user, ["c2"]) == {}


def test_stale_link_etag_raises(store: StateStore, user: str) -> None:
    first = store.save_link(link(user, "c1", "m1"))
    second = store.save_link(first.model_copy(update={"crm_version": "v2"}))
    with pytest.raises(ConcurrencyError):
        store.save_link(first.model_copy(update={"crm_version": "stale"}))
    assert store.get_links_by_crm(TENANT, user, ["c1"])["c1"].crm_version == "v2"
    # A copy read through the ms id is just as stale once the link was saved through the other.
    via_ms = store.get_links_by_ms(TENANT, user, ["m1"])["m1"]
    store.save_link(second.model_copy(update={"crm_version": "v3"}))
    with pytest.raises(ConcurrencyError):
        store.save_link(via_ms.model_copy(update={"crm_version": "stale"}))


def test_link_read_by_ms_id_can_be_saved(store: StateStore, user: str) -> None:
    store.save_link(link(user, "c1", "m1"))
    via_ms = store.get_links_by_ms(TENANT, user, ["m1"])["m1"]
    saved = store.save_link(via_ms.model_copy(update={"ms_version": "ck2"}))
    assert store.get_links_by_crm(TENANT, user, ["c1"])["c1"].ms_version == "ck2"
    assert store.get_links_by_ms(TENANT, user, ["m1"])["m1"].ms_version == "ck2"
    assert same(store.get_links_by_crm(TENANT, user, ["c1"])["c1"], saved)


def test_ms_id_change_moves_the_ms_index(store: StateStore, user: str) -> None:
    since = T0 + timedelta(seconds=5)
    pending = store.save_link(link(user, "c1", None, state=LinkState.PENDING_CREATE).model_copy(
        update={"pending_since": since}))
    read = store.get_links_by_crm(TENANT, user, ["c1"])["c1"]
    assert read.state is LinkState.PENDING_CREATE and read.pending_since == since  # the create's grace runs from it
    linked = store.save_link(pending.model_copy(update={"ms_id": "m1", "state": LinkState.LINKED,
                                                        "pending_since": None}))
    assert store.get_links_by_crm(TENANT, user, ["c1"])["c1"].pending_since is None
    assert same(store.get_links_by_ms(TENANT, user, ["m1"])["m1"], linked)
    moved = store.save_link(linked.model_copy(update={"ms_id": "m2"}))
    assert store.get_links_by_ms(TENANT, user, ["m1"]) == {}
    assert same(store.get_links_by_ms(TENANT, user, ["m2"])["m2"], moved)
    via_ms = store.get_links_by_ms(TENANT, user, ["m2"])["m2"]
    removed = store.save_link(via_ms.model_copy(update={"ms_id": None, "state": LinkState.MS_REMOVED}))
    assert store.get_links_by_ms(TENANT, user, ["m2"]) == {}
    assert same(store.get_links_by_crm(TENANT, user, ["c1"])["c1"], removed)
    # The freed ms id can be linked again.
    store.save_link(link(user, "c2", "m1"))
    assert store.get_links_by_ms(TENANT, user, ["m1"])["m1"].crm_id == "c2"


def test_delete_link_removes_both_ids_and_checks_the_etag(store: StateStore, user: str) -> None:
    first = store.save_link(link(user, "c1", "m1"))
    newer = store.save_link(first.model_copy(update={"crm_version": "v2"}))
    with pytest.raises(ConcurrencyError):
        store.delete_link(first)
    store.delete_link(newer)
    assert store.get_links_by_crm(TENANT, user, ["c1"]) == {} and store.get_links_by_ms(TENANT, user, ["m1"]) == {}
    with pytest.raises(ConcurrencyError):  # saving over a deleted link is a lost race too
        store.save_link(newer)
    store.save_link(link(user, "c1", "m1"))  # the ids are free again


def test_iter_links_lists_each_link_once(store: StateStore, user: str) -> None:
    made = [store.save_link(link(user, f"c{i}", f"m{i}" if i % 2 else None)) for i in range(7)]
    store.save_link(link("another-user", "cx", "mx"))
    listed = sorted(store.iter_links(TENANT, user), key=lambda lk: lk.crm_id)
    assert len(listed) == 7
    assert all(same(a, b) for a, b in zip(listed, sorted(made, key=lambda lk: lk.crm_id)))


# ---- cursor -----------------------------------------------------------------------------------

def test_cursor_is_empty_first_then_if_match(store: StateStore, user: str) -> None:
    empty = store.get_cursor(TENANT, user)
    assert empty == Cursor(tenant_id=TENANT, user_id=user)
    saved = store.save_cursor(empty.model_copy(update={"folder_id": "f1", "delta_link": "https://x/delta?t=1",
                                                       "crm_position": 41}))
    assert saved.etag
    assert store.get_cursor(TENANT, user) == saved
    with pytest.raises(ConcurrencyError):  # another worker created it meanwhile
        store.save_cursor(empty.model_copy(update={"crm_position": 1}))
    newer = store.save_cursor(saved.model_copy(update={"crm_position": 2**40}))
    with pytest.raises(ConcurrencyError):
        store.save_cursor(saved.model_copy(update={"crm_position": 43}))
    assert store.get_cursor(TENANT, user) == newer
    assert store.get_cursor(TENANT, "another-user").etag is None


# ---- runs -------------------------------------------------------------------------------------

def run(user: str, index: int, **fields: object) -> RunRecord:
    values: dict[str, object] = {"tenant_id": TENANT, "user_id": user, "run_id": f"run-{index}",
                                 "started_at": T0 + timedelta(minutes=index, microseconds=index)}
    values.update(fields)
    return RunRecord.model_validate(values)


def test_latest_runs_are_newest_first(store: StateStore, user: str) -> None:
    for index in (3, 0, 4, 1, 2):
        store.save_run(run(user, index))
    store.save_run(run("another-user", 9))
    assert [r.run_id for r in store.latest_runs(TENANT, user, limit=3)] == ["run-4", "run-3", "run-2"]
    with pytest.raises(AlreadyExistsError):  # a run is inserted once, then saved with its etag
        store.save_run(run(user, 3))
    assert [r.run_id for r in store.latest_runs(TENANT, user)] == ["run-4", "run-3", "run-2", "run-1", "run-0"]


def test_run_round_trip_and_if_match(store: StateStore, user: str) -> None:
    started = store.save_run(run(user, 1))
    assert started.etag
    finished = started.model_copy(update={
        "finished_at": started.started_at + timedelta(seconds=12.5), "outcome": RunOutcome.PARTIAL,
        "crm": SideCounts(created=1, updated=2), "microsoft": SideCounts(created=3, deleted=1, errors=1),
        "conflicts": 2, "quarantined": 1, "graph_requests": 7, "log": ("conflict on c1: job_title", "guard"),
        "error": None, "lease_expires_at": started.started_at + timedelta(minutes=5)})
    saved = store.save_run(finished)
    assert store.latest_runs(TENANT, user, limit=1) == [saved]
    with pytest.raises(ConcurrencyError):
        store.save_run(started.model_copy(update={"outcome": RunOutcome.FAILED}))
    assert store.latest_runs(TENANT, user, limit=1)[0].outcome is RunOutcome.PARTIAL


# ---- lease ------------------------------------------------------------------------------------

def test_lease_acquire_held_expired_takeover_and_release(store: StateStore, user: str) -> None:
    first = store.acquire_lease(TENANT, user, "worker-a", 30, T0)
    first = store.acquire_lease(TENANT, user, "worker-a", 60, T0)  # the holder may renew
    assert first.owner == "worker-a" and first.expires_at == T0 + timedelta(seconds=60) and first.etag
    with pytest.raises(LeaseHeldError) as held:
        store.acquire_lease(TENANT, user, "worker-b", 60, T0 + timedelta(seconds=59))
    assert held.value.expires_at == first.expires_at  # a waiting job is scheduled for that moment
    assert store.acquire_lease(TENANT, "another-user", "worker-b", 60, T0).owner == "worker-b"

    later = T0 + timedelta(seconds=61)
    second = store.acquire_lease(TENANT, user, "worker-b", 30, later)
    assert second.owner == "worker-b" and second.expires_at == later + timedelta(seconds=30)
    with pytest.raises(ConcurrencyError):  # worker-a's lease was taken over: it cannot release b's
        store.release_lease(first)
    with pytest.raises(LeaseHeldError):
        store.acquire_lease(TENANT, user, "worker-c", 30, later)

    store.release_lease(second)
    store.release_lease(second)  # releasing twice is harmless
    third = store.acquire_lease(TENANT, user, "worker-c", 30, later)
    assert third.owner == "worker-c"


# ---- quarantine -------------------------------------------------------------------------------

def test_quarantine_counts_attempts_and_clears(store: StateStore, user: str) -> None:
    entry = QuarantineEntry(tenant_id=TENANT, user_id=user, side="microsoft", record_id=ODD_MS_ID, reason="no name",
                            first_seen=T0)
    store.put_quarantine(entry)
    store.put_quarantine(QuarantineEntry(tenant_id=TENANT, user_id=user, side="crm", record_id=ODD_MS_ID, reason="too long",
                                         first_seen=T0))
    assert sorted((q.side, q.attempts) for q in store.list_quarantine(TENANT, user)) == [("crm", 1), ("microsoft", 1)]

    store.put_quarantine(entry.model_copy(update={"reason": "still no name", "first_seen": T0 + timedelta(hours=1)}))
    again = {q.side: q for q in store.list_quarantine(TENANT, user)}["microsoft"]
    assert again == entry.model_copy(update={"reason": "still no name", "attempts": 2})

    store.clear_quarantine(TENANT, user, "microsoft", ODD_MS_ID)
    store.clear_quarantine(TENANT, user, "microsoft", ODD_MS_ID)  # clearing what is not there is harmless
    assert [(q.side, q.record_id) for q in store.list_quarantine(TENANT, user)] == [("crm", ODD_MS_ID)]
    assert store.list_quarantine(TENANT, "another-user") == []


# ---- tenants ------------------------------------------------------------------------------------

def test_the_same_user_id_in_two_tenants_shares_nothing(store: StateStore, user: str) -> None:
    """User ids repeat across CRM tenants: every row is the (tenant, user)'s own."""
    other = "tenant-b"
    mine = store.save_link(link(user, "c1", "m1"))
    theirs = store.save_link(link(user, "c1", "m9").model_copy(update={"tenant_id": other}))
    assert store.get_links_by_crm(TENANT, user, ["c1"])["c1"].ms_id == "m1"
    assert store.get_links_by_crm(other, user, ["c1"])["c1"].ms_id == "m9"
    assert store.get_links_by_ms(TENANT, user, ["m9"]) == {} and store.get_links_by_ms(other, user, ["m1"]) == {}
    assert [l.ms_id for l in store.iter_links(other, user)] == ["m9"]
    assert (mine.tenant_id, theirs.tenant_id) == (TENANT, other)

    store.save_cursor(Cursor(tenant_id=TENANT, user_id=user, folder_id="folder-a", delta_link="https://d/a"))
    assert store.get_cursor(other, user).etag is None and store.get_cursor(other, user).folder_id is None
    assert store.get_cursor(TENANT, user).tenant_id == TENANT

    store.save_run(RunRecord(tenant_id=other, user_id=user, run_id="r-b", started_at=T0))
    assert store.latest_runs(TENANT, user) == [] and [r.run_id for r in store.latest_runs(other, user)] == ["r-b"]

    store.acquire_lease(TENANT, user, "worker-a", 60, T0)
    held = store.acquire_lease(other, user, "worker-b", 60, T0)  # not held by worker-a: another person
    assert held.tenant_id == other
    store.release_lease(held)

    store.put_quarantine(QuarantineEntry(tenant_id=other, user_id=user, side="crm", record_id="c1",
                                         reason="bad", first_seen=T0))
    assert store.list_quarantine(TENANT, user) == []
    store.clear_quarantine(TENANT, user, "crm", "c1")
    assert [q.tenant_id for q in store.list_quarantine(other, user)] == [other]
