"""Account resolution for contacts coming from Outlook: match, create, or "From Office 365"."""
from __future__ import annotations

import pytest

from sync_core.kinds.contacts.accounts import normalise_company, resolve_account
from tests.support.fakes import FakeCrm
from sync_core.domain.models import DEFAULT_IMPORT_ACCOUNT, Account

T = "tenant-1"


@pytest.mark.parametrize(("a", "b"), [
    ("Contoso, Inc.", "contoso inc"),
    ("CONTOSO   INC", "Contoso-Inc!"),
    ("Ｃｏｎｔｏｓｏ Inc", "contoso inc"),  # full-width letters (NFKC)
    ("Straße AG", "STRASSE ag"),  # case folding
    ("Café\tLtd", "Cafe\u0301 Ltd"),  # composed and decomposed forms
])
def test_names_that_match(a: str, b: str) -> None:
    assert normalise_company(a) == normalise_company(b) != ""


@pytest.mark.parametrize(("a", "b"), [("Contoso", "Contoso Ltd"), ("Café", "Cafe"), ("A1", "A2")])
def test_names_that_do_not_match(a: str, b: str) -> None:
    assert normalise_company(a) != normalise_company(b)


def test_blank_and_punctuation_only_names_count_as_blank() -> None:
    assert normalise_company("") == normalise_company("  ") == normalise_company("-.,!") == ""


def test_a_match_is_used_and_looked_up_once_per_run() -> None:
    crm = FakeCrm()
    contoso = crm.add_account(T, "Contoso, Inc.", "u1")
    cache: dict[str, Account] = {}
    assert resolve_account(crm, T, "contoso inc", "u1", cache) == contoso
    assert resolve_account(crm, T, "CONTOSO INC.", "u1", cache) == contoso
    assert crm.calls["find_accounts_by_name"] == 1 and crm.calls["create_account"] == 1  # add_account's own


def test_ties_prefer_the_users_own_account_then_the_lowest_id() -> None:
    crm = FakeCrm()
    made = [crm.add_account(T, name, owner) for name, owner in
            [("Fabrikam", "u2"), ("FABRIKAM", "u2"), ("fabrikam.", "u1"), ("Fabrikam ", "u1")]]
    mine = sorted((a for a in made if a.owner_user_id == "u1"), key=lambda a: a.id)[0]
    others = sorted((a for a in made if a.owner_user_id == "u2"), key=lambda a: a.id)[0]
    assert resolve_account(crm, T, "Fabrikam", "u1", {}) == mine
    assert resolve_account(crm, T, "Fabrikam", "u3", {}) == min(made, key=lambda a: a.id)
    assert resolve_account(crm, T, "Fabrikam", "u2", {}) == others
    # Deterministic: the same answer every time, whatever order the CRM lists them in.
    assert {resolve_account(crm, T, "fabrikam", "u1", {}).id for _ in range(5)} == {mine.id}


def test_no_match_creates_an_account_with_the_name_as_given() -> None:
    crm = FakeCrm()
    crm.add_account(T, "Contoso", "u1")
    created = resolve_account(crm, T, "  Northwind   Traders ", "u1", {})
    assert created.name == "Northwind Traders" and created.owner_user_id == "u1"
    assert resolve_account(crm, T, "northwind traders", "u2", {}) == created
    assert [a.name for a in crm.list_accounts(T)].count("Northwind Traders") == 1


def test_blank_goes_to_from_office_365_created_on_first_use_only() -> None:
    crm = FakeCrm()
    first = resolve_account(crm, T, "", "u1", {})
    assert first.name == DEFAULT_IMPORT_ACCOUNT
    assert resolve_account(crm, T, "  ", "u1", {}) == first  # a new run, no cache: found, not created
    assert resolve_account(crm, T, "--", "u2", {}) == first
    assert [a.name for a in crm.list_accounts(T)] == [DEFAULT_IMPORT_ACCOUNT]
    assert crm.calls["create_account"] == 1


def test_accounts_of_another_tenant_never_match() -> None:
    crm = FakeCrm()
    crm.add_account("other", "Contoso", "u1")
    assert resolve_account(crm, T, "Contoso", "u1", {}).tenant_id == T
