"""The sync decision: a pure function from (CRM state, Microsoft changes, links, settings) to actions.

Nothing here does I/O. `plan` pairs every CRM record and Outlook item of the run through the links (the
last-synced state), classifies each side against its link, and walks ONE decision table (`_decide`), one
commented line per branch. The engine applies the resulting actions; tests feed plain data.

"Changed" means the version token (CRM ETag / Outlook changeKey) moved AND the normalised content hash
differs from the link's: our own writes, echoed back with new versions but the same content, never bounce.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from sync_core.kinds.contacts.accounts import company_key
from sync_core.domain.models import (
    Address,
    ContactFields,
    CrmContact,
    Link,
    LinkState,
    MsChange,
    SyncMode,
    UserSyncSettings,
)


class Side(StrEnum):
    CRM = "crm"
    MICROSOFT = "microsoft"


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


# --- inputs -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CrmItem:
    """The CRM side of one record in this run: its current state (contact None: deleted in the CRM)."""

    crm_id: str
    contact: CrmContact | None
    fields: ContactFields | None = None  # crm_to_fields(contact, account name); set whenever contact is
    in_scope: bool = True  # in an account the user owns (or scope is the tenant); gates only new pushes
    account_version: str = ""  # the account's version: renaming it changes the contact's synced content

    @property
    def version(self) -> str:
        return crm_version(self.contact.version, self.account_version) if self.contact is not None else ""


def crm_version(contact_version: str, account_version: str) -> str:
    """The version token of a contact's synced content: its own ETag and its account's (whose name is the
    company), so an account rename counts as a change of its contacts."""
    return f"{contact_version}+{account_version}" if account_version else contact_version


# --- actions ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CreateInMicrosoft:
    crm_id: str
    fields: ContactFields
    crm_version: str
    link: Link | None  # an earlier link (Outlook item gone) to replace
    reason: str


@dataclass(frozen=True)
class DeleteInMicrosoft:
    crm_id: str
    ms_id: str
    link: Link | None
    reason: str


@dataclass(frozen=True)
class CreateInCrm:
    ms_id: str
    ms_version: str
    fields: ContactFields
    crm_id: str  # import_crm_id(...): the id to create under
    match_by_email: bool  # link to a CRM contact with the same e-mail in the resolved account instead
    sync_back: bool  # Outlook may be written: its company follows the CRM account's name


@dataclass(frozen=True)
class Converge:
    """Bring both sides of a pair to `fields`: the CRM is written where it differs, Outlook too if
    `write_ms`. The engine resolves the account when the company changed, so Outlook follows the account."""

    crm_id: str
    ms_id: str
    ms_version: str
    ms_fields: ContactFields  # what Outlook holds now
    fields: ContactFields  # what both sides should hold
    contact: CrmContact | None  # the CRM record now (None: the engine reads it)
    link: Link | None
    write_ms: bool


@dataclass(frozen=True)
class UpdateMicrosoft(Converge):
    """Edited in the CRM only."""


@dataclass(frozen=True)
class UpdateCrm(Converge):
    """Edited in Outlook only."""


@dataclass(frozen=True)
class LinkExisting(Converge):
    """Two records that are the same contact get linked (our lost import, or an item moved back in)."""


@dataclass(frozen=True)
class ConflictMerge(Converge):
    """Edited on both sides: merged field by field; `clashes` are fields both changed (the CRM won)."""

    clashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MarkMsRemoved:
    """Deleted or moved out in Outlook: the CRM keeps the contact, the link remembers the removal."""

    crm_id: str
    link: Link


@dataclass(frozen=True)
class MarkCrmDeleted:
    """Deleted in the CRM, microsoft_to_crm: Outlook keeps its card, the link remembers the delete so the
    card is not imported again unless it is edited in Outlook."""

    crm_id: str
    link: Link


@dataclass(frozen=True)
class ForgetLink:
    """A link that only remembered a CRM delete (CRM_DELETED) is dropped: its card left Outlook too, or
    was edited there and is imported again. Deletes nothing, so the mass-delete guard does not count it."""

    crm_id: str
    link: Link


@dataclass(frozen=True)
class Unlink:
    crm_id: str
    link: Link
    origin: Side
    reason: str


@dataclass(frozen=True)
class RefreshLinkVersions:
    """Versions moved but content did not (e.g. our own write echoed back): remember the new versions."""

    link: Link
    crm_version: str
    ms_version: str


@dataclass(frozen=True)
class Skip:
    key: str
    reason: str
    origin: Side | None = None
    held: bool = False  # held back by the mass-delete guard: to be retried by the next run


Action = (
    CreateInMicrosoft | DeleteInMicrosoft | CreateInCrm | UpdateMicrosoft | UpdateCrm | LinkExisting
    | ConflictMerge | MarkMsRemoved | MarkCrmDeleted | ForgetLink | Unlink | RefreshLinkVersions | Skip
)


# --- the mass-delete guard ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GuardLimits:
    """A run may delete/unlink at most max(min_items, max_fraction × the user's links) items per side."""

    min_items: int = 20
    max_fraction: float = 0.5
    enabled: bool = True

    def threshold(self, link_count: int) -> int:
        return max(self.min_items, int(self.max_fraction * link_count))


@dataclass(frozen=True)
class DeleteGuard:
    """Which side's deletions a run holds back, with the reason (None: allowed)."""

    crm_reason: str | None = None
    ms_reason: str | None = None

    def reason_for(self, origin: Side) -> str | None:
        return self.crm_reason if origin is Side.CRM else self.ms_reason


def guard_needs_link_count(crm_deletes: int, ms_removals: int, limits: GuardLimits) -> bool:
    """Counting a user's links costs a scan; it is only needed when a run deletes more than the floor."""
    return limits.enabled and max(crm_deletes, ms_removals) > limits.min_items


def mass_delete_guard(crm_deletes: int, ms_removals: int, link_count: int | None, limits: GuardLimits) -> DeleteGuard:
    if not guard_needs_link_count(crm_deletes, ms_removals, limits):
        return DeleteGuard()
    if link_count is None:
        raise ValueError("link_count is needed when deletions exceed the guard's floor")
    limit = limits.threshold(link_count)

    def reason(count: int, side: str) -> str | None:
        if count <= limit:
            return None
        return (f"mass-delete guard: {count} deletions reported by {side} exceed the limit of {limit} "
                f"({limits.max_fraction:.0%} of {link_count} links, at least {limits.min_items}); held back")

    return DeleteGuard(crm_reason=reason(crm_deletes, "the CRM"), ms_reason=reason(ms_removals, "Microsoft"))


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


# --- classification -----------------------------------------------------------------------------------

class Status(Enum):
    ABSENT = "absent"  # not part of this run: unchanged since the link
    NEW = "new"  # no link yet
    SAME = "same"  # version token unchanged
    TOUCHED = "touched"  # version moved, content the same (our own write echoed back)
    CHANGED = "changed"  # version moved and content changed
    GONE = "gone"  # deleted in the CRM / removed (deleted or moved out) in Outlook


def _moved(current: str, stored: str) -> bool:
    # A missing version token (some Graph shapes carry no changeKey) cannot prove "unchanged".
    return not current or current != stored


def _same_content(fields: ContactFields, link: Link) -> bool:
    if link.synced_hash:
        return fields.content_hash() == link.synced_hash
    return link.synced is not None and link.synced == fields


def crm_status(item: CrmItem | None, link: Link | None) -> Status:
    if item is None:
        return Status.ABSENT
    if item.contact is None:
        return Status.GONE
    if link is None:
        return Status.NEW
    if not _moved(item.version, link.crm_version):
        return Status.SAME
    assert item.fields is not None, "CrmItem.fields must be set when the contact exists"
    return Status.TOUCHED if _same_content(item.fields, link) else Status.CHANGED


def ms_status(change: MsChange | None, link: Link | None) -> Status:
    if change is None:
        return Status.ABSENT
    if change.contact is None:
        return Status.GONE
    if link is None:
        return Status.NEW
    if not _moved(change.contact.change_key, link.ms_version):
        return Status.SAME
    return Status.TOUCHED if _same_content(change.contact.fields, link) else Status.CHANGED


# --- planning -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Unit:
    crm: CrmItem | None
    ms: MsChange | None
    link: Link | None


def plan(
    crm: Sequence[CrmItem],
    ms: Sequence[MsChange],
    links: Iterable[Link],
    settings: UserSyncSettings,
    *,
    guard: DeleteGuard | None = None,
    limits: GuardLimits = GuardLimits(),
    link_count: int | None = None,
) -> list[Action]:
    """The actions for one batch of records. `links` are the links of the records given (by CRM id or by
    Microsoft id). `guard`: the run's mass-delete verdict; when None it is computed from this plan alone
    against `link_count` (default: the number of links given)."""
    links = list(links)
    actions = [action for unit in _pair(crm, ms, links, settings) for action in _decide(unit, settings)]
    if guard is None:
        crm_deletes = sum(1 for a in actions if _deletion_origin(a) is Side.CRM)
        ms_removals = sum(1 for a in actions if _deletion_origin(a) is Side.MICROSOFT)
        count = link_count if link_count is not None else sum(1 for link in links if link.state is LinkState.LINKED)
        guard = mass_delete_guard(crm_deletes, ms_removals, count, limits)
    return [_guarded(action, guard) for action in actions]


def _pair(crm: Sequence[CrmItem], ms: Sequence[MsChange], links: list[Link], settings: UserSyncSettings) -> list[_Unit]:
    """Each CRM record and Outlook item of the run, paired through its link or, for an Outlook item without
    a link, with the CRM record its tag names or our own import of it would have created (a lost link)."""
    crm_by_id = {item.crm_id: item for item in crm}
    link_by_crm = {link.crm_id: link for link in links}
    link_by_ms = {link.ms_id: link for link in links if link.ms_id}
    ms_for_crm: dict[str, MsChange] = {}
    lone_ms: dict[str, MsChange] = {}
    for change in ms:
        link = link_by_ms.get(change.ms_id)
        if link is not None:
            ms_for_crm[link.crm_id] = change
            continue
        candidates = [change.tag] if change.tag else []  # our tag names its record: our card, link lost
        for derived in [*candidates, *import_crm_ids(settings.tenant_id, settings.user_id, change.ms_id)]:
            if derived in crm_by_id and derived not in link_by_crm and derived not in ms_for_crm:
                ms_for_crm[derived] = change
                break
        else:
            lone_ms[change.ms_id] = change
    units = [_Unit(item, ms_for_crm.pop(item.crm_id, None), link_by_crm.get(item.crm_id)) for item in crm_by_id.values()]
    # Outlook changes of linked records whose CRM side was not given: the CRM side is unchanged since the link.
    units += [_Unit(None, change, link_by_crm.get(crm_id) or link_by_ms.get(change.ms_id))
              for crm_id, change in ms_for_crm.items()]
    units += [_Unit(None, change, None) for change in lone_ms.values()]
    return units


def _current(item: CrmItem | None) -> tuple[CrmContact, ContactFields]:
    assert item is not None and item.contact is not None and item.fields is not None, "CRM record expected"
    return item.contact, item.fields


def _decide(unit: _Unit, settings: UserSyncSettings) -> list[Action]:
    """THE decision table. push: CRM → Microsoft allowed (not microsoft_to_crm);
    pull: Microsoft → CRM allowed (not crm_to_microsoft)."""
    push = settings.mode is not SyncMode.MICROSOFT_TO_CRM
    pull = settings.mode is not SyncMode.CRM_TO_MICROSOFT
    crm, ms, link = unit.crm, unit.ms, unit.link
    key = crm.crm_id if crm else link.crm_id if link else ms.ms_id if ms else "?"
    if ms is not None and ms.invalid_reason:
        # malformed in Outlook → skipped here; the engine quarantines it with the reason
        return [Skip(ms.ms_id, f"malformed Outlook item: {ms.invalid_reason}", Side.MICROSOFT)]
    c, m = crm_status(crm, link), ms_status(ms, link)
    item = ms.contact if ms is not None else None

    # --- a create whose outcome is still unknown: never act on it twice
    if link is not None and link.state is LinkState.PENDING_CREATE:
        # create in Outlook not confirmed → wait; the engine resolves it by our CRM id before planning
        return [Skip(key, "create in Outlook not confirmed yet; resolved by the next run")]

    # --- no link yet
    if link is None:
        if c is Status.NEW and item is not None:
            # our own import found again (its link write was lost) → link them; CRM wins, Outlook fills blanks
            contact, fields = _current(crm)
            target = merge_two(fields, item.fields) if pull else fields
            return [LinkExisting(key, item.id, item.change_key, item.fields, target, contact, None, write_ms=push)]
        if c is Status.NEW and ms is not None:
            # our own import found again (link write lost), since removed in Outlook → remember the removal
            contact, fields = _current(crm)
            removed = Link(tenant_id=settings.tenant_id, user_id=settings.user_id, crm_id=key, ms_id=ms.ms_id, state=LinkState.MS_REMOVED,
                           crm_version=crm.version, synced=fields, synced_hash=fields.content_hash())  # type: ignore[union-attr]
            return [MarkMsRemoved(key, removed)]
        if c is Status.GONE and item is not None:
            if push:
                # our own import, deleted in the CRM before its link was saved → the CRM delete wins
                return [DeleteInMicrosoft(key, item.id, None, "deleted in the CRM")]
            # the same in microsoft_to_crm, which never writes Outlook → leave the item alone
            return [Skip(key, "deleted in the CRM; microsoft_to_crm leaves Outlook alone", Side.CRM)]
        if c is Status.GONE:
            # deleted in the CRM before it was ever synced → nothing to do
            return [Skip(key, "deleted in the CRM before it was synced")]
        if c is Status.NEW:
            contact, fields = _current(crm)
            if crm is not None and not crm.in_scope:
                # new in the CRM but not in an account the user syncs → not ours
                return [Skip(key, "not in the user's accounts")]
            if not push:
                # new in the CRM, microsoft_to_crm → CRM contacts are not sent
                return [Skip(key, "microsoft_to_crm: CRM contacts are not sent to Outlook", Side.CRM)]
            # new in the CRM → create in Outlook
            return [CreateInMicrosoft(key, fields, crm.version, None, "new in the CRM")]  # type: ignore[union-attr]
        if item is None:
            # removed in Outlook before it was ever synced → nothing to do
            return [Skip(key, "removed in Outlook before it was synced")]
        if not pull:
            # new (or moved in) in Outlook, crm_to_microsoft → Outlook contacts are not imported
            return [Skip(key, "crm_to_microsoft: Outlook contacts are not imported", Side.MICROSOFT)]
        # new or moved into the folder in Outlook → import (the engine links a same-e-mail contact instead)
        return [CreateInCrm(item.id, item.change_key, item.fields,
                            import_crm_id(settings.tenant_id, settings.user_id, item.id),
                            match_by_email=True, sync_back=push)]

    # CRM content now: as read, or (record not part of this run) unchanged since the link.
    base = link.synced
    crm_contact = crm.contact if crm is not None else None
    crm_fields = crm.fields if crm is not None and crm.fields is not None else base or ContactFields()

    # --- the link remembers a removal in Outlook
    if link.state is LinkState.MS_REMOVED:
        if c is Status.GONE and item is not None and push:
            # deleted in the CRM while it was out of the folder, now moved back in → delete in Outlook
            return [DeleteInMicrosoft(key, item.id, link, "deleted in the CRM")]
        if c is Status.GONE:
            # deleted in the CRM after it left Outlook → forget the link
            return [Unlink(key, link, Side.CRM, "deleted in the CRM after it left Outlook")]
        if item is not None:
            # back in the folder (moved back in; immutable ids keep its id) → link again and converge
            target = merge_three(base, crm_fields, item.fields)[0] if pull else crm_fields
            return [LinkExisting(key, item.id, item.change_key, item.fields, target, crm_contact, link, write_ms=push)]
        if c is Status.CHANGED and push:
            # left Outlook, then edited in the CRM → push the CRM version back (re-create)
            _, fields = _current(crm)
            return [CreateInMicrosoft(key, fields, crm.version, link, "edited in the CRM after it left Outlook")]  # type: ignore[union-attr]
        if c is Status.TOUCHED:
            # left Outlook; the CRM version moved without a content change → remember the version
            return [RefreshLinkVersions(link, crm.version, link.ms_version)]  # type: ignore[union-attr]
        # left Outlook and not edited in the CRM since → not pushed back
        return [Skip(key, "left Outlook; not pushed back until edited in the CRM")]

    # --- the link remembers a delete in the CRM (microsoft_to_crm)
    if link.state is LinkState.CRM_DELETED:
        if m is Status.GONE:
            # its card left Outlook too → nothing left to remember
            return [ForgetLink(key, link)]
        if m is Status.CHANGED and item is not None and pull:
            # edited in Outlook since → imported again, as a new CRM contact
            return [ForgetLink(key, link), CreateInCrm(item.id, item.change_key, item.fields,
                                                       import_crm_id(settings.tenant_id, settings.user_id, item.id),
                                                       match_by_email=True, sync_back=push)]
        # unchanged in Outlook (a replayed or full round) → not imported again
        return [Skip(key, "deleted in the CRM; its Outlook card is imported again only if edited there")]

    # --- linked
    ms_id = link.ms_id or ""
    if c is Status.GONE and m is Status.GONE:
        # deleted in the CRM and removed in Outlook → just forget the link
        return [Unlink(key, link, Side.CRM, "gone on both sides")]
    if c is Status.GONE:
        if push:
            # deleted in the CRM (even if edited in Outlook meanwhile: the CRM wins) → delete in Outlook
            return [DeleteInMicrosoft(key, ms_id, link, "deleted in the CRM")]
        # deleted in the CRM, microsoft_to_crm → leave Outlook alone; remember it (re-imported only if edited)
        return [MarkCrmDeleted(key, link)]
    if m is Status.GONE:
        if c is Status.CHANGED and push:
            # deleted in Outlook, edited in the CRM → push the CRM version back (re-create)
            _, fields = _current(crm)
            return [CreateInMicrosoft(key, fields, crm.version, link, "edited in the CRM while removed in Outlook")]  # type: ignore[union-attr]
        # deleted or moved out in Outlook → keep the CRM record, remember the removal (never delete CRM data)
        return [MarkMsRemoved(key, link)]

    ms_fields = item.fields if item is not None else base or crm_fields
    ms_version = item.change_key if item is not None else link.ms_version
    crm_changed = c is Status.CHANGED
    ms_changed = m is Status.CHANGED and pull
    if crm_changed and ms_changed:
        # edited on both sides → three-way merge; the CRM wins fields both changed; recorded as a conflict
        merged, clashes = merge_three(base, crm_fields, ms_fields)
        return [ConflictMerge(key, ms_id, ms_version, ms_fields, merged, crm_contact, link, write_ms=push,
                              clashes=clashes)]
    if crm_changed and push:
        # edited in the CRM only (Outlook edits are ignored in crm_to_microsoft) → update Outlook
        return [UpdateMicrosoft(key, ms_id, ms_version, ms_fields, crm_fields, crm_contact, link, write_ms=True)]
    if crm_changed:
        # edited in the CRM, microsoft_to_crm → not sent (its fields still win a later merge)
        return [Skip(key, "microsoft_to_crm: CRM edits are not sent to Outlook", Side.CRM)]
    if ms_changed:
        # edited in Outlook only → update the CRM (merged against the base, so CRM-only differences stay)
        target = merge_three(base, crm_fields, ms_fields)[0]
        return [UpdateCrm(key, ms_id, ms_version, ms_fields, target, crm_contact, link, write_ms=push)]
    if m is Status.CHANGED and c is not Status.TOUCHED:
        # edited in Outlook, crm_to_microsoft → ignored
        return [Skip(key, "crm_to_microsoft: Outlook edits are ignored", Side.MICROSOFT)]
    if c is Status.TOUCHED or m is Status.TOUCHED:
        # versions moved but content did not (our own write echoed back) → remember the versions only
        version = crm.version if c is Status.TOUCHED and crm is not None else link.crm_version
        return [RefreshLinkVersions(link, version, ms_version if m is Status.TOUCHED else link.ms_version)]
    # nothing changed on either side
    return [Skip(key, "unchanged")]


def _deletion_origin(action: Action) -> Side | None:
    """The side whose report causes a deletion or unlink (what the mass-delete guard counts)."""
    if isinstance(action, DeleteInMicrosoft):
        return Side.CRM
    if isinstance(action, MarkMsRemoved):
        return Side.MICROSOFT
    if isinstance(action, MarkCrmDeleted):
        return Side.CRM
    if isinstance(action, Unlink):
        return action.origin
    return None


def _guarded(action: Action, guard: DeleteGuard) -> Action:
    origin = _deletion_origin(action)
    reason = guard.reason_for(origin) if origin is not None else None
    if reason is None:
        return action
    return Skip(action.crm_id, reason, origin, held=True)  # type: ignore[union-attr]
