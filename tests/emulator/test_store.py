"""The in-process contracts other emulator modules build on: the store's change listeners, the persisted state's
round trip, delta tokens and the $filter subset. Real objects, no HTTP (the HTTP behaviour is tested elsewhere)."""
from __future__ import annotations

from pathlib import Path

import pytest

from m365_emulator.app import build_emulator
from m365_emulator.kernel.core import Core
from m365_emulator.kernel.delta import DeltaState, TokenCodec
from m365_emulator.kernel.emulator import Emulator
from m365_emulator.kernel.graph import GraphError
from m365_emulator.kernel.odata_filter import compile_filter
from m365_emulator.kernel.persist import Persister
from m365_emulator.resources import contacts


@pytest.fixture
def emu() -> Emulator:
    return build_emulator(Core())


def test_change_listeners_hear_every_change_with_the_collection_resource(emu: Emulator) -> None:
    user = emu.core.add_user("Lis Tener", "listener@contoso.test")
    events: list[tuple[str, str, str, str]] = []
    unsubscribe = emu.store.on_change(lambda *event: events.append(event))
    default = contacts.ensure_default_folder(emu, user.id)
    other = contacts.create_folder(emu, user.id, "Other").id
    item = contacts.create_contact(emu, user.id, default, {"givenName": "Ada"})
    contacts.update_contact(emu, user.id, item.immutable_id, {"surname": "Lovelace"})
    contacts.move_contact(emu, user.id, item.immutable_id, other)
    contacts.delete_contact(emu, user.id, item.immutable_id)
    unsubscribe()
    contacts.create_contact(emu, user.id, default, {"givenName": "Unheard"})
    home = f"/users/{user.id}/contactFolders/{default}/contacts"
    away = f"/users/{user.id}/contactFolders/{other}/contacts"
    iid = item.immutable_id
    assert events == [(user.id, home, "created", iid), (user.id, home, "updated", iid),
                      (user.id, home, "deleted", iid), (user.id, away, "created", iid),
                      (user.id, away, "deleted", iid)]


def test_a_failing_listener_does_not_undo_the_change(emu: Emulator) -> None:
    user = emu.core.add_user("Robust", "robust@contoso.test")

    def broken(*_: object) -> None:
        raise RuntimeError("listener bug")

    emu.store.on_change(broken)
    folder = contacts.ensure_default_folder(emu, user.id)
    item = contacts.create_contact(emu, user.id, folder, {"givenName": "Still here"})
    assert contacts.find_contact(emu, user.id, item.immutable_id)[1].data["givenName"] == "Still here"


def test_state_round_trips_through_the_file(emu: Emulator, tmp_path: Path) -> None:
    user = emu.core.add_user("Per Sist", "persist@contoso.test")
    emu.core.register_app("app-1", "secret", ("http://127.0.0.1/cb",))
    refresh = emu.core.issue_refresh_token(user.id, "app-1")
    emu.core.consents[(user.id, "app-1")] = {"Contacts.ReadWrite"}
    access = emu.core.issue_access_token(user.id, "app-1", ("Contacts.ReadWrite",))
    folder = contacts.ensure_default_folder(emu, user.id)
    item = contacts.create_contact(emu, user.id, folder, {
        "givenName": "Kept", "singleValueExtendedProperties": [{"id": "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name CrmId", "value": "1"}]})
    contacts.delete_contact(emu, user.id, contacts.create_contact(emu, user.id, folder, {"givenName": "Tomb"}).immutable_id)
    emu.core.clock.advance(100)
    path = tmp_path / "state.json"
    assert Persister(path, emu).save_if_changed()

    restored = build_emulator(Core())
    assert Persister(path, restored).load()
    assert restored.core.tenant_id == emu.core.tenant_id
    assert restored.core.clock.offset == 100
    assert restored.core.user_for_access_token(access.token).id == user.id
    assert restored.core.refresh_tokens[refresh.token].user_id == user.id
    assert restored.core.consents == {(user.id, "app-1"): {"Contacts.ReadWrite"}}
    assert restored.token_secret == emu.token_secret
    again = contacts.find_contact(restored, user.id, item.regular_id)[1]
    assert (again.immutable_id, again.change_key, again.extended) == (item.immutable_id, item.change_key, item.extended)
    coll = restored.store.collection(user.id, folder)
    assert coll is not None and coll.seq == 3 and [t.reason for t in coll.tombstones] == ["deleted"]
    assert Persister(path, restored).save_if_changed() is True  # a fresh persister writes once...
    second = Persister(path, restored)
    second.load()
    assert second.save_if_changed() is False  # ...and not again when nothing changed


def test_delta_tokens_are_signed() -> None:
    codec = TokenCodec(b"k" * 32)
    state = DeltaState("user", "folder", 3, None, (4, "x"), ("givenName",), 1000.0, 0)
    token = codec.encode(state)
    assert codec.decode(token) == state
    for bad in (token[:-2] + "AA", "garbage", token.replace(".", ""), TokenCodec(b"o" * 32).encode(state)):
        with pytest.raises(GraphError) as caught:
            codec.decode(bad)
        assert caught.value.status == 400


@pytest.mark.parametrize(("expression", "expected"), [
    ("displayName eq 'ada lovelace'", True),
    ("displayName eq 'Ada' or givenName eq 'Ada'", True),
    ("givenName ne 'Ada'", False),
    ("emailAddresses/any(a: a/address eq 'ADA@example.com')", True),
    ("emailAddresses/any(a: a/address eq 'x@example.com')", False),
    ("startswith(surname, 'Love') and not (companyName eq null)", True),
    ("companyName eq null", False),
    ("singleValueExtendedProperties/Any(ep: ep/id eq 'p' and ep/value eq 'O''Brien')", True),
])
def test_filter_subset(expression: str, expected: bool) -> None:
    record = {"displayName": "Ada Lovelace", "givenName": "Ada", "surname": "Lovelace", "companyName": "Engines",
              "emailAddresses": [{"name": "Ada", "address": "ada@example.com"}],
              "singleValueExtendedProperties": [{"id": "p", "value": "O'Brien"}]}
    assert compile_filter(expression)(record, {}) is expected


@pytest.mark.parametrize("expression", ["displayName eq", "(givenName eq 'a'", "emailAddresses/any(a a/x eq 1)",
                                        "eq eq eq", "favouriteColour eq 'blue'", "nope/any(x: x eq 1)"])
def test_filter_errors_are_400(expression: str) -> None:
    with pytest.raises(GraphError) as caught:
        compile_filter(expression, ("displayName", "givenName", "emailAddresses"))
    assert caught.value.status == 400
