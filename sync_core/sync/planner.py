"""The sync decision, for every kind: a pure function from (CRM state, Microsoft changes, links, rules) to actions.

Nothing here does I/O. `plan` pairs every CRM record and Microsoft item of the run through the links (the
last-synced state), classifies each side against its link, and walks ONE decision table (`_decide`), one
commented line per branch. What a kind supplies goes through its PlanRules (sync/kind.py); the executor
applies the resulting actions; tests feed plain data.

"Changed" means the version token (CRM ETag / Microsoft changeKey) moved AND the normalised content differs
from the link's: our own writes, echoed back with new versions but the same content, never bounce.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from sync_core.domain.models import Link, LinkState
from sync_core.sync.actions import (Action, ConflictMerge, CreateInCrm, CreateInMicrosoft, DeleteInMicrosoft, ForgetLink,
                                    LinkExisting, MarkCrmDeleted, MarkMsRemoved, RefreshLinkVersions, RememberMeeting,
                                    Side, Skip, Unlink, UpdateCrm, UpdateMicrosoft, deletion_origin)
from sync_core.sync.guard import DeleteGuard, GuardLimits, mass_delete_guard
from sync_core.sync.kind import C, CrmSide, MsItem, PlanRules

F = TypeVar("F")
R = TypeVar("R")
M = TypeVar("M")


# --- classification -----------------------------------------------------------------------------------

class Status(Enum):
    ABSENT = "absent"  # not part of this run: unchanged since the link
    NEW = "new"  # no link yet
    SAME = "same"  # version token unchanged
    TOUCHED = "touched"  # version moved, content the same (our own write echoed back)
    CHANGED = "changed"  # version moved and content changed
    GONE = "gone"  # deleted in the CRM (or, for a kind that says so, out of scope) / removed in Microsoft


def _moved(current: str, stored: str) -> bool:
    # A missing version token (some Graph shapes carry no changeKey) cannot prove "unchanged".
    return not current or current != stored


def crm_status(item: CrmSide[F, R] | None, link: Link | None, rules: PlanRules[F, M, C]) -> Status:
    if item is None:
        return Status.ABSENT
    if item.record is None or (rules.gone_when_out_of_scope and not item.in_scope and link is not None):
        return Status.GONE
    if link is None:
        return Status.NEW
    if not _moved(item.version, link.crm_version):
        return Status.SAME
    assert item.fields is not None, "the CRM side's fields must be set when its record exists"
    return Status.TOUCHED if rules.same_content(item.fields, link, Side.CRM) else Status.CHANGED


def ms_status(change: C | None, link: Link | None, rules: PlanRules[F, M, C]) -> Status:
    if change is None:
        return Status.ABSENT
    item = rules.ms_item(change)
    if item is None:
        return Status.GONE
    if link is None:
        return Status.NEW
    if not _moved(item.version, link.ms_version):
        return Status.SAME
    return Status.TOUCHED if rules.same_content(item.fields, link, Side.MICROSOFT) else Status.CHANGED


# --- planning -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Unit(Generic[F, R, C]):
    crm: CrmSide[F, R] | None
    ms: C | None
    link: Link | None


def plan(
    crm: Sequence[CrmSide[F, R]],
    ms: Sequence[C],
    links: Iterable[Link],
    rules: PlanRules[F, M, C],
    *,
    guard: DeleteGuard | None = None,
    limits: GuardLimits = GuardLimits(),
    link_count: int | None = None,
) -> list[Action[F, R, M]]:
    """The actions for one batch of records. `links` are the links of the records given (by CRM id or by
    Microsoft key). `guard`: the run's mass-delete verdict; when None it is computed from this plan alone
    against `link_count` (default: the number of linked links given)."""
    links = list(links)
    units, strays = _pair(crm, ms, links, rules)
    # ours (tagged with a CRM id) while that record's link names another item: never imported, never touched
    actions: list[Action[F, R, M]] = [Skip(change.ms_id, rules.words.stray) for change in strays]
    actions += [action for unit in units for action in _decide(unit, rules)]
    if guard is None:
        crm_deletes = sum(1 for a in actions if deletion_origin(a) is Side.CRM)
        ms_removals = sum(1 for a in actions if deletion_origin(a) is Side.MICROSOFT)
        count = link_count if link_count is not None else sum(1 for link in links if link.state is LinkState.LINKED)
        guard = mass_delete_guard(crm_deletes, ms_removals, count, limits)
    return [_guarded(action, guard) for action in actions]


def _pair(crm: Sequence[CrmSide[F, R]], ms: Sequence[C], links: list[Link],
          rules: PlanRules[F, M, C]) -> tuple[list[_Unit[F, R, C]], list[C]]:
    """Each CRM record and Microsoft item of the run, paired through its link or, for an item without a link,
    with the CRM record its tag names or our own import of it would have created (a lost link)."""
    crm_by_id = {item.crm_id: item for item in crm}
    link_by_crm = {link.crm_id: link for link in links}
    link_by_ms = {link.ms_id: link for link in links if link.ms_id}
    ms_for_crm: dict[str, C] = {}
    lone: list[C] = []
    strays: list[C] = []
    for change in ms:
        link = link_by_ms.get(change.ms_id)
        if link is not None:
            ms_for_crm[link.crm_id] = change
            continue
        if rules.skip_tagged_strays and (tag := rules.tag(change)) is not None and tag in link_by_crm:
            strays.append(change)
            continue
        mate = next((crm_id for crm_id in rules.candidates(change)
                     if crm_id in crm_by_id and crm_id not in link_by_crm and crm_id not in ms_for_crm), None)
        if mate is not None:
            ms_for_crm[mate] = change
        else:
            lone.append(change)
    units = [_Unit(item, ms_for_crm.pop(item.crm_id, None), link_by_crm.get(item.crm_id)) for item in crm_by_id.values()]
    # Microsoft changes of linked records whose CRM side was not given: the CRM side is unchanged since the link.
    units += [_Unit(None, change, link_by_crm.get(crm_id) or link_by_ms.get(change.ms_id))
              for crm_id, change in ms_for_crm.items()]
    units += [_Unit(None, change, None) for change in lone]
    return units, strays


def _fields(item: CrmSide[F, R] | None) -> F:
    assert item is not None and item.record is not None and item.fields is not None, "CRM record expected"
    return item.fields


def _decide(unit: _Unit[F, R, C], rules: PlanRules[F, M, C]) -> list[Action[F, R, M]]:
    """THE decision table. push: CRM → Microsoft allowed (not microsoft_to_crm);
    pull: Microsoft → CRM allowed (not crm_to_microsoft)."""
    push, pull, words, ms_name = rules.push, rules.pull, rules.words, rules.words.ms
    crm, ms, link = unit.crm, unit.ms, unit.link
    key = crm.crm_id if crm else link.crm_id if link else ms.ms_id if ms else "?"
    if ms is not None and ms.invalid_reason:
        # malformed in Microsoft → skipped here; the executor quarantines it with the reason
        return [Skip(ms.ms_id, f"malformed {ms_name} item: {ms.invalid_reason}", Side.MICROSOFT)]
    c, m = crm_status(crm, link, rules), ms_status(ms, link, rules)
    # the CRM side as read (a status other than ABSENT means it was)
    record, version = (crm.record, crm.version) if crm is not None else (None, "")
    in_scope = crm is None or crm.in_scope
    item: MsItem[F] | None = rules.ms_item(ms) if ms is not None else None
    protected = rules.protected(item, link)
    write_ms = push and not protected  # a protected item (a meeting) is never written or deleted

    def import_(item: MsItem[F]) -> CreateInCrm[F]:
        return CreateInCrm(item.ms_id, item.version, item.fields, rules.import_id(item.ms_id), sync_back=write_ms,
                           match_by_email=rules.match_by_email, meeting=protected)

    # --- a create whose outcome is still unknown: never act on it twice
    if link is not None and link.state is LinkState.PENDING_CREATE:
        # create not confirmed → wait; the executor resolves it by our CRM id before planning
        return [Skip(key, f"create in {ms_name} not confirmed yet; resolved by the next run")]

    # --- no link yet
    if link is None:
        crm_gone = c is Status.GONE or (c is Status.NEW and rules.gone_when_out_of_scope and not in_scope)
        if c is Status.NEW and not crm_gone and item is not None:
            # our own item found again (tagged with this CRM id, or our import whose link was lost) → link;
            # the CRM wins, Microsoft fills its blanks
            fields = _fields(crm)
            target = rules.merge(None, fields, item.fields)[0] if pull else fields
            return [LinkExisting(key, item.ms_id, item.version, rules.ms_now(ms, None, fields), target,
                                 record, None, write_ms=write_ms)]
        if c is Status.NEW and not crm_gone and ms is not None and (
                removed := rules.removal_link(key, ms.ms_id, version, _fields(crm))) is not None:
            # our own import found again (link write lost), since removed in Microsoft → remember the removal
            return [MarkMsRemoved(key, removed)]
        if crm_gone and item is not None:
            if protected:
                # our import of a meeting whose CRM record went before its link was saved → remembered, never
                # deleted (its attendees would be told) and never imported again
                return [RememberMeeting(key, item.ms_id, item.version, item.fields)]
            if push:
                # our own item whose CRM record went before its link was saved → the CRM delete wins
                return [DeleteInMicrosoft(key, item.ms_id, None, words.crm_gone)]
            # the same in microsoft_to_crm, which never writes Microsoft → leave the item alone
            return [Skip(key, f"deleted in the CRM; microsoft_to_crm leaves {ms_name} alone", Side.CRM)]
        if c is Status.GONE:
            # deleted in the CRM before it was ever synced → nothing to do
            return [Skip(key, "deleted in the CRM before it was synced")]
        if c is Status.NEW:
            fields = _fields(crm)
            if not in_scope:
                # new in the CRM but not the user's (an account they do not sync, a task of someone else)
                return [Skip(key, words.out_of_scope)]
            if not push:
                # new in the CRM, microsoft_to_crm → CRM records are not sent
                return [Skip(key, f"microsoft_to_crm: CRM {words.items} are not sent to {ms_name}", Side.CRM)]
            if not rules.placeable(fields):
                # the target cannot hold it (an event needs a day) → sent once it can
                return [Skip(key, words.unplaceable)]
            # new in the CRM → create in Microsoft
            return [CreateInMicrosoft(key, fields, version, None, "new in the CRM")]
        if item is None:
            # removed in Microsoft before it was ever synced → nothing to do
            return [Skip(key, f"removed in {ms_name} before it was synced")]
        if not pull:
            # new (or moved in) in Microsoft, crm_to_microsoft → not imported
            return [Skip(key, f"crm_to_microsoft: {ms_name} {words.items} are not imported", Side.MICROSOFT)]
        # new or moved in in Microsoft (a series' occurrence too, by its stable id) → import into the CRM
        return [import_(item)]

    # CRM content now: as read, or (record not part of this run) unchanged since the link, when the kind knows it.
    crm_fields = crm.fields if crm is not None and crm.fields is not None else rules.unchanged_crm_fields(link)
    in_target = rules.in_target(link)

    # --- the link remembers a removal in Microsoft
    if link.state is LinkState.MS_REMOVED:
        if c is Status.GONE and item is not None and write_ms:
            # deleted in the CRM while it was out of Microsoft, now back in → delete it in Microsoft
            return [DeleteInMicrosoft(key, item.ms_id, link, words.crm_gone)]
        if c is Status.GONE:
            # deleted in the CRM after it left Microsoft → forget the link
            return [Unlink(key, link, Side.CRM, f"deleted in the CRM after it left {ms_name}")]
        if item is not None and in_target:
            # back in Microsoft (moved back in, restored) → link again and converge
            # (without the CRM side in this run, the executor takes what Microsoft cannot hold from the CRM)
            if crm_fields is None:
                target = item.fields
            else:
                target = rules.merge(link, crm_fields, item.fields)[0] if pull else crm_fields
            return [LinkExisting(key, item.ms_id, item.version, rules.ms_now(ms, link, crm_fields), target, record,
                                 link, write_ms=write_ms)]
        if c is Status.CHANGED and push:
            fields = _fields(crm)
            if not rules.placeable(fields):
                # edited in the CRM, but the target still cannot hold it → not pushed back yet
                return [RefreshLinkVersions(link, version, link.ms_version)]
            # left Microsoft, then edited in the CRM → push the CRM version back (re-create)
            return [CreateInMicrosoft(key, fields, version, link, f"edited in the CRM after it left {ms_name}")]
        if c is Status.TOUCHED:
            # left Microsoft; the CRM version moved without a content change → remember the version
            return [RefreshLinkVersions(link, version, link.ms_version)]
        # left Microsoft and not edited in the CRM since → not pushed back
        return [Skip(key, f"left {ms_name}; not pushed back until edited in the CRM")]

    # --- the link remembers a delete in the CRM (microsoft_to_crm)
    if link.state is LinkState.CRM_DELETED:
        if m is Status.GONE:
            # its item left Microsoft too → nothing left to remember
            return [ForgetLink(key, link)]
        if m is Status.CHANGED and item is not None and pull:
            # edited in Microsoft since → imported again, as a new CRM record
            return [ForgetLink(key, link), import_(item)]
        # unchanged in Microsoft (a replayed or full round) → not imported again
        return [Skip(key, f"deleted in the CRM; its {words.ms_item} is imported again only if edited there")]

    # --- linked
    ms_id = link.ms_id or ""
    if not in_target:
        return _move(key, crm, link, c, protected, rules)
    if c is Status.GONE and m is Status.GONE:
        # deleted in the CRM and removed in Microsoft → just forget the link
        return [Unlink(key, link, Side.CRM, "gone on both sides")]
    if c is Status.GONE:
        if protected:
            # deleted in the CRM, but a meeting → left in Outlook (deleting it would notify its attendees); the
            # link stays, so the meeting is never imported again
            return [Skip(key, words.protected_left)]
        if push:
            # deleted in the CRM (even if edited in Microsoft meanwhile: the CRM wins) → delete in Microsoft
            return [DeleteInMicrosoft(key, ms_id, link, words.crm_gone)]
        # deleted in the CRM, microsoft_to_crm → leave Microsoft alone; remember it (re-imported only if edited)
        return [MarkCrmDeleted(key, link)]
    if m is Status.GONE:
        if c is Status.CHANGED and push and rules.placeable(_fields(crm)):
            # deleted in Microsoft, edited in the CRM → push the CRM version back (re-create)
            return [CreateInMicrosoft(key, _fields(crm), version, link, f"edited in the CRM while removed in {ms_name}")]
        # deleted or moved out in Microsoft → keep the CRM record, remember the removal (never delete CRM data)
        return [MarkMsRemoved(key, link)]

    ms_now = rules.ms_now(ms, link, crm_fields)
    ms_version = item.version if item is not None else link.ms_version
    crm_changed = c is Status.CHANGED
    ms_changed = m is Status.CHANGED and pull
    if crm_changed and write_ms and not rules.placeable(_fields(crm)):
        # the target cannot hold it any more (the task lost its due date, calendar) → delete it (sent again later)
        return [DeleteInMicrosoft(key, ms_id, link, words.no_longer_placeable)]
    if crm_changed and ms_changed:
        # edited on both sides → three-way merge; the CRM wins fields both changed; recorded as a conflict
        assert item is not None
        merged, clashes = rules.merge(link, _fields(crm), item.fields)
        return [ConflictMerge(key, ms_id, ms_version, ms_now, merged, record, link, write_ms=write_ms, clashes=clashes)]
    if crm_changed and protected:
        # edited in the CRM, but a meeting → not sent (Outlook would send the update to its attendees)
        return [Skip(key, words.protected_unchanged, Side.CRM)]
    if crm_changed and push:
        # edited in the CRM only (Microsoft edits are ignored in crm_to_microsoft) → update Microsoft
        return [UpdateMicrosoft(key, ms_id, ms_version, ms_now, _fields(crm), record, link, write_ms=True)]
    if crm_changed:
        # edited in the CRM, microsoft_to_crm → not sent (its fields still win a later merge)
        return [Skip(key, f"microsoft_to_crm: CRM edits are not sent to {ms_name}", Side.CRM)]
    if ms_changed:
        # edited in Microsoft only → update the CRM (merged against the base, so CRM-only differences stay)
        assert item is not None
        return [UpdateCrm(key, ms_id, ms_version, ms_now, rules.crm_update(link, crm_fields, item.fields), record,
                          link, write_ms=write_ms)]
    if m is Status.CHANGED and c is not Status.TOUCHED:
        # edited in Microsoft, crm_to_microsoft → ignored
        return [Skip(key, f"crm_to_microsoft: {ms_name} edits are ignored", Side.MICROSOFT)]
    if c is Status.TOUCHED or m is Status.TOUCHED:
        # versions moved but content did not (our own write echoed back) → remember the versions only
        crm_version = version if c is Status.TOUCHED else link.crm_version
        return [RefreshLinkVersions(link, crm_version, ms_version if m is Status.TOUCHED else link.ms_version)]
    # nothing changed on either side
    return [Skip(key, "unchanged")]


def _move(key: str, crm: CrmSide[F, R] | None, link: Link, c: Status, protected: bool,
          rules: PlanRules[F, M, C]) -> list[Action[F, R, M]]:
    """A record linked in another target than this run's (after a task target switch): the move table."""
    ms_id = link.ms_id or ""
    if crm is None:
        # its CRM record is not part of this run → moved when it is
        return [Skip(key, rules.words.not_moved_yet)]
    if protected:
        # a meeting stays in the calendar, linked there (moving it would mean deleting it)
        return [Skip(key, rules.words.protected_stays)]
    if not rules.push:
        # microsoft_to_crm never writes Microsoft → the old item is no longer synced
        return [Unlink(key, link, Side.CRM, "target switched; microsoft_to_crm does not move items")]
    if c is Status.GONE:
        # deleted in the CRM or out of scope → only removed from the old target
        return [DeleteInMicrosoft(key, ms_id, link, rules.words.crm_gone)]
    fields = _fields(crm)
    if not rules.placeable(fields):
        # the new target cannot hold it → only removed from the old one (sent once it can be)
        return [DeleteInMicrosoft(key, ms_id, link, rules.words.unplaceable)]
    # → created in this target, then deleted in the old one (the executor does both, in that order)
    return [CreateInMicrosoft(key, fields, crm.version, link, rules.moved_reason())]


def _guarded(action: Action[F, R, M], guard: DeleteGuard) -> Action[F, R, M]:
    origin = deletion_origin(action)
    reason = guard.reason_for(origin) if origin is not None else None
    if reason is None:
        return action
    return Skip(action.crm_id, reason, origin, held=True)  # type: ignore[union-attr]
