"""SubscriptionStore contract: one record per user and kind, an index from subscription id to its owner,
and the ETag rules that let two requests never both replace one subscription."""
from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sync_core.adapters.memory.app_stores import MemorySubscriptions
from sync_core.adapters.tables.common import connect
from sync_core.adapters.tables.subscriptions import TableSubscriptions
from sync_core.adapters.tokens import TokenCipher
from sync_core.domain.errors import ConcurrencyError
from sync_core.domain.subscriptions import Kind, Owner, Subscription
from sync_core.ports import SubscriptionStore
from sync_core.settings import load_settings

SOON = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["memory", "tables"])
def subscriptions(request: pytest.FixtureRequest) -> SubscriptionStore:
    if request.param == "memory":
        return MemorySubscriptions()
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableSubscriptions(connect(settings.storage_connection_string), settings.storage_name,
                              TokenCipher(settings.token_key_bytes))


def _record(tenant: str, user: str, kind: Kind, sub_id: str, expires: datetime = SOON) -> Subscription:
    return Subscription(tenant, user, kind, sub_id, f"/me/{kind.value}", expires, f"secret-{tenant}-{user}-{sub_id}")


def test_a_saved_subscription_reads_back_by_user_and_by_id(subscriptions: SubscriptionStore) -> None:
    saved = subscriptions.save(_record("t/1", "u#1", Kind.CONTACTS, "sub-1"), None)
    assert saved.etag
    assert subscriptions.get("t/1", "u#1", Kind.CONTACTS) == saved
    assert subscriptions.get("t/1", "u#1", Kind.TASKS) is None
    assert subscriptions.get("t/2", "u#1", Kind.CONTACTS) is None
    assert subscriptions.for_user("t/1", "u#1") == {Kind.CONTACTS: saved}
    owner = subscriptions.owner_of("sub-1")
    assert owner == Owner("t/1", "u#1", Kind.CONTACTS, "secret-t/1-u#1-sub-1")
    assert subscriptions.owner_of("") is None and subscriptions.owner_of("x" * 201) is None
    assert subscriptions.owner_of("sub-unknown") is None


def test_a_new_id_moves_the_index_and_an_owed_record_is_not_indexed(subscriptions: SubscriptionStore) -> None:
    first = subscriptions.save(_record("t", "u", Kind.TASKS, "old-id"), None)
    second = subscriptions.save(replace(_record("t", "u", Kind.TASKS, "new-id"), etag=first.etag), first)
    assert subscriptions.owner_of("old-id") is None
    owner = subscriptions.owner_of("new-id")
    assert owner is not None and owner.client_state == "secret-t-u-new-id"

    owed = subscriptions.save(replace(_record("t", "u", Kind.TASKS, "", EPOCH), etag=second.etag), second)
    assert owed.owed
    assert subscriptions.owner_of("new-id") is None
    assert subscriptions.get("t", "u", Kind.TASKS) == owed


def test_writes_from_a_stale_read_are_refused(subscriptions: SubscriptionStore) -> None:
    first = subscriptions.save(_record("t", "u", Kind.CONTACTS, "a"), None)
    with pytest.raises(ConcurrencyError):
        subscriptions.save(_record("t", "u", Kind.CONTACTS, "b"), None)  # someone created it meanwhile
    renewed = subscriptions.save(replace(first, expires_at=SOON + timedelta(days=2)), first)
    with pytest.raises(ConcurrencyError):
        subscriptions.save(replace(first, expires_at=EPOCH), first)  # marks due from the state before renewal
    assert subscriptions.get("t", "u", Kind.CONTACTS) == renewed
    subscriptions.delete(renewed)
    assert subscriptions.get("t", "u", Kind.CONTACTS) is None and subscriptions.owner_of("a") is None
    with pytest.raises(ConcurrencyError):
        subscriptions.save(replace(renewed, expires_at=EPOCH), renewed)  # deleted meanwhile
    assert subscriptions.get("t", "u", Kind.CONTACTS) is None


def test_due_lists_records_expiring_before_the_moment_up_to_the_limit(subscriptions: SubscriptionStore) -> None:
    subscriptions.save(_record("t", "u1", Kind.CONTACTS, "", EPOCH), None)  # owed: always due
    subscriptions.save(_record("t", "u2", Kind.CONTACTS, "s2", SOON), None)
    subscriptions.save(_record("t", "u3", Kind.TASKS, "s3", SOON + timedelta(days=3)), None)

    due = {(r.user_id, r.sub_id) for r in subscriptions.iter_due(SOON + timedelta(hours=1))}
    assert due == {("u1", ""), ("u2", "s2")}
    assert len(list(subscriptions.iter_due(SOON + timedelta(days=4), limit=2))) == 2
    assert [r.sub_id for r in subscriptions.iter_due(SOON)] == [""]
