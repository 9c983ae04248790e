"""The contact kind's planning rules: what the ONE planner (sync/planner.py) needs to know of contacts.

A contact link keeps the synced values (the merge base) or their hash; an Outlook item without a link may be
ours by its tag or by our import id; a contact outside the user's accounts is only kept from new pushes;
nothing in Outlook is protected and every contact fits the folder. The reasons speak of "Outlook".
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from sync_core.domain.models import (
    Address,
    ContactFields,
    CrmContact,
    Link,
    LinkState,
    MsChange,
    MsContact,
    UserSyncSettings,
)
from sync_core.kinds.contacts.accounts import company_key
from sync_core.sync import actions
from sync_core.sync.actions import Side
from sync_core.sync.guard import DeleteGuard, GuardLimits
from sync_core.sync.kind import MsItem, PlanRules, Words
from sync_core.sync.planner import plan as plan_kind

_IMPORT_NAMESPACE = uuid.UUID("5b0f3d2e-8c1a-4e7b-9f64-2a7d1c3e5b90")


IMPORT_ID_CHOICES = 3


def import_crm_id(tenant_id: str, user_id: str, ms_id: str) -> str:
    """The id a contact imported from Outlook gets in the CRM: derived from the Outlook item, so an import
    repeated after a crash between the CRM write and the link write finds the same record (no duplicate)."""
    return str(uuid.uuid5(_IMPORT_NAMESPACE, f"{tenant_id}\n{user_id}\n{ms_id}"))


def import_crm_ids(tenant_id: str, user_id: str, ms_id: str) -> tuple[str, ...]:
    """The ids an import of this item may use, in order. The first is taken by another contact when the user
    brings back an old copy of an item we imported; the next ones keep such an import repeatable too."""
    first = import_crm_id(tenant_id, user_id, ms_id)
    return (first, *(import_crm_id(tenant_id, user_id, f"{ms_id}#{n}") for n in range(1, IMPORT_ID_CHOICES)))


@dataclass(frozen=True)
class CrmItem:
    """The CRM side of one record in this run: its current state (contact None: deleted in the CRM)."""

    crm_id: str
    contact: CrmContact | None
    fields: ContactFields | None = None  # crm_to_fields(contact, account name); set whenever contact is
    in_scope: bool = True  # in an account the user owns (or scope is the tenant); gates only new pushes
    account_version: str = ""  # the account's version: renaming it changes the contact's synced content

    @property
    def record(self) -> CrmContact | None:
        return self.contact

    @property
    def version(self) -> str:
        return crm_version(self.contact.version, self.account_version) if self.contact is not None else ""


def crm_version(contact_version: str, account_version: str) -> str:
    """The version token of a contact's synced content: its own ETag and its account's (whose name is the
    company), so an account rename counts as a change of its contacts."""
    return f"{contact_version}+{account_version}" if account_version else contact_version


# A contact convergence carries the fields Outlook holds now.
Action: TypeAlias = actions.Action[ContactFields, CrmContact, ContactFields]


# --- merging ------------------------------------------------------------------------------------------

_SCALARS = ("first_name", "last_name", "emails", "business_phone", "mobile_phone", "job_title", "company", "notes")
_ADDRESS = tuple(Address.model_fields)


def _flatten(fields: ContactFields) -> dict[str, Any]:
    flat: dict[str, Any] = {name: getattr(fields, name) for name in _SCALARS}
    flat.update({f"address.{name}": getattr(fields.address, name) for name in _ADDRESS})
    return flat


def _unflatten(flat: dict[str, Any]) -> ContactFields:
    address = Address(**{name: flat[f"address.{name}"] for name in _ADDRESS})
    return ContactFields(**{name: flat[name] for name in _SCALARS}, address=address)


def merge_three(base: ContactFields | None, crm: ContactFields, ms: ContactFields) -> tuple[ContactFields, tuple[str, ...]]:
    """Field-by-field three-way merge against the last-synced `base`; a field changed on both sides (to
    different values) keeps the CRM's value and is reported as a clash. Without a base: `merge_two`."""
    if base is None:
        return merge_two(crm, ms), ()
    b, c, m = _flatten(base), _flatten(crm), _flatten(ms)
    merged: dict[str, object] = {}
    clashes: list[str] = []
    for name in b:
        same = _same_company if name == "company" else _equal
        if same(c[name], m[name]) or same(m[name], b[name]):
            merged[name] = c[name]
        elif same(c[name], b[name]):
            merged[name] = m[name]
        else:
            merged[name] = c[name]
            clashes.append(name)
    return _unflatten(merged), tuple(clashes)


def _equal(a: object, b: object) -> bool:
    return a == b


def _same_company(a: object, b: object) -> bool:
    """Companies are accounts, found by their normalised name: "  NEWCO LTD " typed in Outlook is the account
    "Newco Ltd", and the CRM showing it so is no edit of the company. "From Office 365" typed in Outlook is
    the account whose contacts show no company."""
    return company_key(str(a)) == company_key(str(b))


def merge_two(crm: ContactFields, ms: ContactFields) -> ContactFields:
    """No common base (two records found to be the same contact): the CRM wins, Outlook fills its blanks."""
    c, m = _flatten(crm), _flatten(ms)
    return _unflatten({name: c[name] if c[name] else m[name] for name in c})


class ContactRules(PlanRules[ContactFields, ContactFields, MsChange[MsContact]]):
    words = Words(ms="Outlook", items="contacts", ms_item="Outlook card", crm_gone="deleted in the CRM",
                  out_of_scope="not in the user's accounts")
    match_by_email = True

    def ms_item(self, change: MsChange[MsContact]) -> MsItem[ContactFields] | None:
        item = change.item
        return MsItem(item.id, item.version, item.fields) if item is not None else None

    def tag(self, change: MsChange[MsContact]) -> str | None:
        return change.tag

    def candidates(self, change: MsChange[MsContact]) -> list[str]:
        # our tag names its record (our card, link lost); then our own import of it (removed ones too)
        tagged = [change.tag] if change.tag else []
        return [*tagged, *import_crm_ids(self.settings.tenant_id, self.settings.user_id, change.ms_id)]

    def import_id(self, ms_id: str) -> str:
        return import_crm_id(self.settings.tenant_id, self.settings.user_id, ms_id)

    def same_content(self, fields: ContactFields, link: Link, side: Side) -> bool:
        if link.synced_hash:
            return fields.content_hash() == link.synced_hash
        return link.synced is not None and link.synced == fields

    def merge(self, link: Link | None, crm: ContactFields, ms: ContactFields) -> tuple[ContactFields, tuple[str, ...]]:
        return merge_three(link.synced if link is not None else None, crm, ms)

    def crm_update(self, link: Link, crm: ContactFields | None, ms: ContactFields) -> ContactFields:
        return merge_three(link.synced, crm or self.unchanged_crm_fields(link), ms)[0]

    def ms_now(self, change: MsChange[MsContact] | None, link: Link | None, crm: ContactFields | None) -> ContactFields:
        # not in this round: Outlook holds what was synced
        if change is not None and change.item is not None:
            return change.item.fields
        return (link.synced if link is not None else None) or crm or ContactFields()

    def removal_link(self, crm_id: str, ms_id: str, crm_version: str, fields: ContactFields) -> Link:
        return Link(tenant_id=self.settings.tenant_id, user_id=self.settings.user_id, crm_id=crm_id, ms_id=ms_id,
                    state=LinkState.MS_REMOVED, crm_version=crm_version, synced=fields,
                    synced_hash=fields.content_hash())

    def unchanged_crm_fields(self, link: Link) -> ContactFields:
        return link.synced or ContactFields()


def plan(crm: Sequence[CrmItem], ms: Sequence[MsChange[MsContact]], links: Iterable[Link], settings: UserSyncSettings, *,
         guard: DeleteGuard | None = None, limits: GuardLimits = GuardLimits(), link_count: int | None = None) -> list[Action]:
    """The actions for one batch of contacts (see sync.planner.plan)."""
    return plan_kind(crm, ms, links, ContactRules(settings), guard=guard, limits=limits, link_count=link_count)
