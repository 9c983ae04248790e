"""Which CRM account a contact coming from Outlook belongs to.

The rule (issue 4): the company name matches an account (case-, whitespace- and punctuation-insensitive)
→ that account; no match → a new account with that name; blank → the account "From Office 365", created on
first use. When several accounts match, the pick is deterministic: an account the syncing user owns comes
first, then the lowest account id (ids are compared as strings). Peers failed exactly here, stripping the
company or erroring on multiple matches (lessons.md #8).
"""
from __future__ import annotations

import unicodedata
from collections.abc import MutableMapping

from sync_core.domain.text import clean_line
from sync_core.domain.models import DEFAULT_IMPORT_ACCOUNT, Account
from sync_core.ports import CrmPort


def normalise_company(name: str) -> str:
    """The matching key of a company name: NFKC, case-folded, letters and digits only.

    "Contoso, Inc.", "contoso inc" and "CONTOSO-INC" share the key "contosoinc"; a name made only of
    punctuation and spaces has the empty key, i.e. counts as blank. (The Table CRM indexes names by the
    same key.)
    """
    return "".join(ch for ch in unicodedata.normalize("NFKC", name).casefold() if ch.isalnum())


_DEFAULT_KEY = normalise_company(DEFAULT_IMPORT_ACCOUNT)


def company_key(name: str) -> str:
    """The account a company name stands for, as a key: blank and "From Office 365" are the same account
    (a contact there shows no company), so neither is an edit of the other."""
    key = normalise_company(name)
    return "" if key == _DEFAULT_KEY else key


def pick_account(matches: list[Account], owner_user_id: str | None) -> Account:
    """The deterministic choice among accounts of the same name: the user's own first, then lowest id."""
    return min(matches, key=lambda account: (account.owner_user_id != owner_user_id, account.id))


def resolve_account(
    crm: CrmPort,
    tenant_id: str,
    company: str,
    owner_user_id: str | None,
    cache: MutableMapping[str, Account],
) -> Account:
    """The account for `company`, creating it when none matches. `cache` (key → account) lives for one run,
    so the same company seen many times costs one lookup and "From Office 365" is created at most once.
    """
    key = normalise_company(company)
    name = clean_line(company)
    if not key:
        key, name = normalise_company(DEFAULT_IMPORT_ACCOUNT), DEFAULT_IMPORT_ACCOUNT
    if key in cache:
        return cache[key]
    # The adapter's name lookup may be broader (e.g. a prefix index); the key decides.
    matches = [a for a in crm.find_accounts_by_name(tenant_id, name) if normalise_company(a.name) == key]
    account = pick_account(matches, owner_user_id) if matches else crm.create_account(tenant_id, name, owner_user_id)
    cache[key] = account
    return account
