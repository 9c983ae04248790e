"""The task sync decision: a pure function from (CRM tasks, Microsoft task changes, links, settings) to actions.

The same planner as contacts (planner.py): every CRM task and Microsoft item of the run is paired through its
link, each side is classified against the link, and ONE commented decision table (`_decide`) says what to do.
What differs for tasks:
- Which CRM tasks: those assigned to the user. A task reassigned to someone else leaves this user's Microsoft
  365 as if deleted in the CRM.
- Items live in one of two targets (To Do, the calendar). A link's Microsoft key names its target
  (`ms_key`), so a target switch can tell what still sits in the old one.
- A task link remembers a hash per field (task_mapping.SyncedTask), not the values: a field changed when its
  hash moved. A field the target cannot hold (a due time in To Do, completion in the calendar) never counts as
  changed on the Microsoft side, so a three-way merge keeps the CRM's value for it.
- A calendar event needs a day: a CRM task without a due date is not shown in the calendar.
- A meeting (an event with attendees) is imported and followed, but never changed or deleted by the sync:
  Outlook would tell its attendees (lessons.md #7). It stays in the calendar when the target switches.
- A link in the other target (a target switch, or an interrupted one) is moved: created here, then deleted
  there by the engine once the new item exists.

Replication rules (the product's table): Microsoft → CRM create/update yes, delete NO; CRM → Microsoft
create/update/delete yes. The sync mode gates directions exactly as for contacts.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sync_core.domain.models import (
    CrmTask,
    Link,
    LinkState,
    MsTask,
    SyncMode,
    TaskChange,
    TaskFields,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.kinds.contacts.planner import DeleteGuard, GuardLimits, Side, Skip, Status, mass_delete_guard
from sync_core.kinds.tasks.mapping import FIELD_NAMES, REPRESENTED, SyncedTask, decode_synced, field_hashes

_IMPORT_NAMESPACE = uuid.UUID("0c8f6a52-3d1e-4b7a-9e25-6f4d2a1b8c73")


def ms_key(target: TaskTarget, graph_id: str) -> str:
    """A task link's Microsoft key: the target and the Graph id (ids of two targets never meet)."""
    return f"{target.value}:{graph_id}"


def split_ms_key(key: str) -> tuple[TaskTarget, str]:
    target, _, graph_id = key.partition(":")
    return TaskTarget(target), graph_id


def key_target(key: str | None) -> TaskTarget | None:
    if not key:
        return None
    try:
        return split_ms_key(key)[0]
    except ValueError:
        return None


def import_task_id(tenant_id: str, user_id: str, key: str) -> str:
    """The id a task imported from Microsoft gets in the CRM: derived from the item's key, so an import
    repeated after a crash between the CRM write and the link write finds the same task (no duplicate), and
    an occurrence of a series (whose id is stable across rounds and window moves) is imported once."""
    return uuid.uuid5(_IMPORT_NAMESPACE, f"{tenant_id}\n{user_id}\n{key}").hex


# --- inputs -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskItem:
    """The CRM side of one task in this run (task None: deleted in the CRM)."""

    crm_id: str
    task: CrmTask | None
    fields: TaskFields | None = None  # crm_to_task_fields(task); set whenever task is
    assigned: bool = True  # assigned to the syncing user

    @property
    def version(self) -> str:
        return self.task.version if self.task is not None else ""


@dataclass(frozen=True)
class TaskPlanContext:
    settings: UserSyncSettings
    target: TaskTarget

    @property
    def push(self) -> bool:
        return self.settings.mode is not SyncMode.MICROSOFT_TO_CRM

    @property
    def pull(self) -> bool:
        return self.settings.mode is not SyncMode.CRM_TO_MICROSOFT

    @property
    def shown(self) -> frozenset[str]:
        return REPRESENTED[self.target]

    def placeable(self, fields: TaskFields) -> bool:
        """Whether the target can hold the task at all (an event needs a day)."""
        return self.target is not TaskTarget.CALENDAR or fields.due_date is not None


# --- actions ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CreateTaskInMicrosoft:
    crm_id: str
    fields: TaskFields
    crm_version: str
    link: Link | None  # an earlier link to replace (item gone, or in the other target: deleted once created)
    reason: str


@dataclass(frozen=True)
class DeleteTaskInMicrosoft:
    crm_id: str
    ms_key: str
    link: Link | None
    reason: str


@dataclass(frozen=True)
class CreateTaskInCrm:
    ms_key: str
    ms_version: str
    fields: TaskFields
    crm_id: str  # import_task_id(...)
    sync_back: bool  # Microsoft may be written (not in microsoft_to_crm, never a meeting)
    meeting: bool = False


@dataclass(frozen=True)
class ConvergeTask:
    """Bring both sides of a pair to `fields`: the CRM is written where it differs, Microsoft too if
    `write_ms` (only the fields its target holds)."""

    crm_id: str
    ms_key: str
    ms_version: str
    ms_task: MsTask | None  # what Microsoft holds now (None: not in this round, unchanged since the link)
    fields: TaskFields
    task: CrmTask | None  # the CRM task now (None: the engine reads it)
    link: Link | None
    write_ms: bool


@dataclass(frozen=True)
class UpdateTaskInMicrosoft(ConvergeTask):
    """Edited in the CRM only."""


@dataclass(frozen=True)
class UpdateTaskInCrm(ConvergeTask):
    """Edited in Microsoft only."""


@dataclass(frozen=True)
class LinkTask(ConvergeTask):
    """Two records that are the same task get linked (our own item found again, or back after a removal)."""


@dataclass(frozen=True)
class TaskConflict(ConvergeTask):
    """Edited on both sides: merged field by field; `clashes` changed on both (the CRM won)."""

    clashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MarkTaskRemoved:
    """Deleted in Microsoft: the CRM keeps the task, the link remembers the removal."""

    crm_id: str
    link: Link


@dataclass(frozen=True)
class MarkTaskCrmDeleted:
    """Deleted in the CRM (or reassigned), microsoft_to_crm: Microsoft keeps its item, the link remembers
    the delete so the item is not imported again unless it is edited in Microsoft."""

    crm_id: str
    link: Link


@dataclass(frozen=True)
class ForgetTaskLink:
    """A link that only remembered a CRM delete (CRM_DELETED) is dropped: its item left Microsoft too, or
    was edited there and is imported again. Deletes nothing: the mass-delete guard does not count it."""

    crm_id: str
    link: Link


@dataclass(frozen=True)
class UnlinkTask:
    crm_id: str
    link: Link
    origin: Side
    reason: str


@dataclass(frozen=True)
class RememberMeeting:
    """A meeting whose CRM task is gone: linked all the same, so it is never imported (resurrected) again."""

    crm_id: str
    ms_key: str
    ms_version: str
    fields: TaskFields


@dataclass(frozen=True)
class RefreshTaskLink:
    """Versions moved, content did not (our own write echoed back): remember the new versions."""

    link: Link
    crm_version: str
    ms_version: str


TaskAction = (
    CreateTaskInMicrosoft | DeleteTaskInMicrosoft | CreateTaskInCrm | UpdateTaskInMicrosoft | UpdateTaskInCrm
    | LinkTask | TaskConflict | MarkTaskRemoved | MarkTaskCrmDeleted | ForgetTaskLink | UnlinkTask | RefreshTaskLink
    | RememberMeeting | Skip
)


# --- merging ------------------------------------------------------------------------------------------

def merge_tasks(synced: SyncedTask | None, crm: TaskFields, ms: TaskFields,
                shown: frozenset[str]) -> tuple[TaskFields, tuple[str, ...]]:
    """Field-by-field three-way merge against the link's hashes: a field takes Microsoft's value only when
    Microsoft changed it (and can hold it) and the CRM did not; changed on both → the CRM's, a clash.
    Without a base: the CRM wins, Microsoft fills the CRM's blanks among the fields it holds."""
    values: dict[str, object] = {}
    clashes: list[str] = []
    crm_hash, ms_hash = field_hashes(crm), field_hashes(ms)
    for name in FIELD_NAMES:
        mine, theirs = getattr(crm, name), getattr(ms, name)
        if name not in shown:
            values[name] = mine
        elif synced is None:
            values[name] = mine if mine not in (None, "", False) else theirs
        else:
            crm_moved = crm_hash[name] != synced.hashes.get(name)
            ms_moved = ms_hash[name] != synced.hashes.get(name)
            if ms_moved and not crm_moved:
                values[name] = theirs
            else:
                values[name] = mine
                if ms_moved and crm_moved and crm_hash[name] != ms_hash[name]:
                    clashes.append(name)
    return TaskFields(**values), tuple(clashes)  # type: ignore[arg-type]


# --- classification -----------------------------------------------------------------------------------

def _moved(current: str, stored: str) -> bool:
    return not current or current != stored


def synced_of(link: Link | None) -> SyncedTask | None:
    return decode_synced(link.synced_hash) if link is not None else None


def crm_status(item: TaskItem | None, link: Link | None) -> Status:
    if item is None:
        return Status.ABSENT
    if item.task is None or (not item.assigned and link is not None):
        return Status.GONE  # deleted, or (for a synced task) assigned to someone else
    if link is None:
        return Status.NEW
    if not _moved(item.version, link.crm_version):
        return Status.SAME
    synced = synced_of(link)
    assert item.fields is not None, "TaskItem.fields must be set when the task exists"
    return Status.TOUCHED if synced is not None and synced.same(item.fields) else Status.CHANGED


def ms_status(change: TaskChange | None, link: Link | None, shown: frozenset[str]) -> Status:
    if change is None:
        return Status.ABSENT
    if change.task is None:
        return Status.GONE
    if link is None:
        return Status.NEW
    if not _moved(change.task.version, link.ms_version):
        return Status.SAME
    synced = synced_of(link)
    return Status.TOUCHED if synced is not None and synced.same(change.task.fields, shown) else Status.CHANGED


# --- planning -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Unit:
    crm: TaskItem | None
    ms: TaskChange | None  # ms_id is the link key (ms_key)
    link: Link | None


def plan_tasks(
    crm: Sequence[TaskItem],
    ms: Sequence[TaskChange],
    links: Iterable[Link],
    context: TaskPlanContext,
    *,
    guard: DeleteGuard | None = None,
    limits: GuardLimits = GuardLimits(),
) -> list[TaskAction]:
    """The actions for one batch. `ms` changes carry link keys (ms_key) as their ms_id; `links` are the links
    of the records given. `guard` is the run's mass-delete verdict (None: computed from this plan alone)."""
    links = list(links)
    units, strays = _pair(crm, ms, links, context)
    # ours (tagged with a CRM id) while that task's link names another item or a create being confirmed:
    # never imported as a new task, never touched
    actions: list[TaskAction] = [Skip(c.ms_id, "an item of ours whose task is synced with another item") for c in strays]
    actions += [a for unit in units for a in _decide(unit, context)]
    if guard is None:
        crm_deletes = sum(1 for a in actions if deletion_origin(a) is Side.CRM)
        ms_removals = sum(1 for a in actions if deletion_origin(a) is Side.MICROSOFT)
        count = sum(1 for link in links if link.state is LinkState.LINKED)
        guard = mass_delete_guard(crm_deletes, ms_removals, count, limits)
    return [_guarded(a, guard) for a in actions]


def paired_crm_id(change: TaskChange, context: TaskPlanContext) -> list[str]:
    """The CRM ids an unlinked Microsoft item may be ours for: the CRM id it is tagged with (we created it),
    then the id our own import of it would have (its link write was lost)."""
    ids = [change.task.crm_id] if change.task is not None and change.task.crm_id else []
    ids.append(import_task_id(context.settings.tenant_id, context.settings.user_id, change.ms_id))
    return ids


def _pair(crm: Sequence[TaskItem], ms: Sequence[TaskChange], links: list[Link],
          context: TaskPlanContext) -> tuple[list[_Unit], list[TaskChange]]:
    crm_by_id = {item.crm_id: item for item in crm}
    link_by_crm = {link.crm_id: link for link in links}
    link_by_ms = {link.ms_id: link for link in links if link.ms_id}
    ms_for_crm: dict[str, TaskChange] = {}
    lone: list[TaskChange] = []
    strays: list[TaskChange] = []
    for change in ms:
        link = link_by_ms.get(change.ms_id)
        if link is not None:
            ms_for_crm[link.crm_id] = change
            continue
        if change.task is not None and change.task.crm_id in link_by_crm:
            strays.append(change)
            continue
        mate = next((i for i in paired_crm_id(change, context)
                     if i in crm_by_id and i not in link_by_crm and i not in ms_for_crm), None)
        if mate is not None and change.task is not None:
            ms_for_crm[mate] = change
        else:
            lone.append(change)
    units = [_Unit(item, ms_for_crm.pop(item.crm_id, None), link_by_crm.get(item.crm_id)) for item in crm_by_id.values()]
    # Microsoft changes of linked tasks whose CRM side was not given: unchanged in the CRM since the link.
    units += [_Unit(None, change, link_by_crm.get(crm_id) or link_by_ms.get(change.ms_id))
              for crm_id, change in ms_for_crm.items()]
    units += [_Unit(None, change, None) for change in lone]
    return units, strays


def _current(item: TaskItem | None) -> tuple[CrmTask, TaskFields]:
    assert item is not None and item.task is not None and item.fields is not None, "CRM task expected"
    return item.task, item.fields


def _decide(unit: _Unit, context: TaskPlanContext) -> list[TaskAction]:
    """THE task decision table. push: CRM → Microsoft allowed; pull: Microsoft → CRM allowed."""
    push, pull, shown = context.push, context.pull, context.shown
    crm, ms, link = unit.crm, unit.ms, unit.link
    key = crm.crm_id if crm else link.crm_id if link else ms.ms_id if ms else "?"
    if ms is not None and ms.invalid_reason:
        # malformed in Microsoft → skipped here; the engine quarantines it with the reason
        return [Skip(ms.ms_id, f"malformed Microsoft item: {ms.invalid_reason}", Side.MICROSOFT)]
    c, m = crm_status(crm, link), ms_status(ms, link, shown)
    item = ms.task if ms is not None else None
    synced = synced_of(link)
    meeting = (item.meeting if item is not None else False) or (synced.meeting if synced is not None else False)
    write_ms = push and not meeting

    # --- a create whose outcome is still unknown: never act on it twice
    if link is not None and link.state is LinkState.PENDING_CREATE:
        # create not confirmed → wait; the engine settles it by our CRM id before planning
        return [Skip(key, "create in Microsoft not confirmed yet; resolved by the next run")]

    # --- no link yet
    if link is None:
        ms_key_ = ms.ms_id if ms is not None else ""
        if c is Status.NEW and item is not None and crm is not None and crm.assigned:
            # our own item found again (tagged with this CRM id, or our import whose link was lost) → link;
            # the CRM wins, Microsoft fills its blanks
            task, fields = _current(crm)
            target = merge_tasks(None, fields, item.fields, shown)[0] if pull else fields
            return [LinkTask(key, ms_key_, item.version, item, target, task, None, write_ms=write_ms)]
        if (c is Status.GONE or (c is Status.NEW and crm is not None and not crm.assigned)) and item is not None:
            if meeting:
                # our import of a meeting whose CRM task went before its link was saved → remembered, never
                # deleted (its attendees would be told) and never imported again
                return [RememberMeeting(key, ms_key_, item.version, item.fields)]
            if push:
                # our own item whose CRM task was deleted (or given to someone else) before the link was saved
                return [DeleteTaskInMicrosoft(key, ms_key_, None, "deleted in the CRM or assigned to someone else")]
            # the same in microsoft_to_crm, which never writes Microsoft → leave the item alone
            return [Skip(key, "deleted in the CRM; microsoft_to_crm leaves Microsoft alone", Side.CRM)]
        if c is Status.GONE:
            # deleted in the CRM before it was ever synced → nothing to do
            return [Skip(key, "deleted in the CRM before it was synced")]
        if c is Status.NEW:
            task, fields = _current(crm)
            if crm is not None and not crm.assigned:
                # a CRM task of someone else → not this user's
                return [Skip(key, "not assigned to the user")]
            if not push:
                # new in the CRM, microsoft_to_crm → CRM tasks are not sent
                return [Skip(key, "microsoft_to_crm: CRM tasks are not sent to Microsoft", Side.CRM)]
            if not context.placeable(fields):
                # no due date, calendar target → an event needs a day; sent once it has one
                return [Skip(key, "no due date: not shown in the calendar")]
            # new in the CRM → create in Microsoft
            return [CreateTaskInMicrosoft(key, fields, task.version, None, "new in the CRM")]
        if item is None:
            # removed in Microsoft before it was ever synced → nothing to do
            return [Skip(key, "removed in Microsoft before it was synced")]
        if not pull:
            # new in Microsoft, crm_to_microsoft → not imported
            return [Skip(key, "crm_to_microsoft: Microsoft tasks are not imported", Side.MICROSOFT)]
        # new in Microsoft (an occurrence of a series too, keyed by its stable id) → import into the CRM
        ms_key_ = ms.ms_id if ms is not None else ""
        return [CreateTaskInCrm(ms_key_, item.version, item.fields,
                                import_task_id(context.settings.tenant_id, context.settings.user_id, ms_key_),
                                sync_back=write_ms, meeting=meeting)]

    crm_task = crm.task if crm is not None else None
    crm_fields = crm.fields if crm is not None and crm.fields is not None else None
    in_target = key_target(link.ms_id) is context.target

    # --- the link remembers a delete in the CRM (microsoft_to_crm)
    if link.state is LinkState.CRM_DELETED:
        if m is Status.GONE:
            # its item left Microsoft too → nothing left to remember
            return [ForgetTaskLink(key, link)]
        if m is Status.CHANGED and item is not None and ms is not None and pull:
            # edited in Microsoft since → imported again, as a new CRM task
            return [ForgetTaskLink(key, link), CreateTaskInCrm(
                ms.ms_id, item.version, item.fields,
                import_task_id(context.settings.tenant_id, context.settings.user_id, ms.ms_id),
                sync_back=write_ms, meeting=meeting)]
        # unchanged in Microsoft (a replayed or full round) → not imported again
        return [Skip(key, "deleted in the CRM; its Microsoft item is imported again only if edited there")]

    # --- the link remembers a removal in Microsoft
    if link.state is LinkState.MS_REMOVED:
        if c is Status.GONE:
            # deleted in the CRM (or reassigned) after it left Microsoft → forget the link
            return [UnlinkTask(key, link, Side.CRM, "deleted in the CRM after it left Microsoft")]
        if item is not None and in_target:
            # back in Microsoft (restored) → link again and converge
            # (without the CRM side in this run, the engine takes what Microsoft cannot hold from the CRM task)
            if crm_fields is None:
                target = item.fields
            else:
                target = merge_tasks(synced, crm_fields, item.fields, shown)[0] if pull else crm_fields
            return [LinkTask(key, link.ms_id or "", item.version, item, target, crm_task, link, write_ms=write_ms)]
        if c is Status.CHANGED and push:
            _, fields = _current(crm)
            if not context.placeable(fields):
                # edited in the CRM, but still no day for the calendar → not pushed back yet
                return [RefreshTaskLink(link, crm.version, link.ms_version)]  # type: ignore[union-attr]
            # left Microsoft, then edited in the CRM → push the CRM version back (re-create)
            return [CreateTaskInMicrosoft(key, fields, crm.version, link, "edited in the CRM after it left Microsoft")]  # type: ignore[union-attr]
        if c is Status.TOUCHED:
            # left Microsoft; the CRM version moved without a content change → remember the version
            return [RefreshTaskLink(link, crm.version, link.ms_version)]  # type: ignore[union-attr]
        # left Microsoft and not edited in the CRM since → not pushed back
        return [Skip(key, "left Microsoft; not pushed back until edited in the CRM")]

    # --- linked
    ms_id = link.ms_id or ""
    if not in_target:
        return _move(key, crm, link, c, meeting, context)
    if c is Status.GONE and m is Status.GONE:
        # deleted in the CRM and in Microsoft → just forget the link
        return [UnlinkTask(key, link, Side.CRM, "gone on both sides")]
    if c is Status.GONE:
        if meeting:
            # deleted in the CRM, but a meeting → left in Outlook (deleting it would notify its attendees); the
            # link stays, so the meeting is never imported again
            return [Skip(key, "deleted in the CRM; a meeting is left in Outlook")]
        if push:
            # deleted in the CRM or reassigned (even if edited in Microsoft meanwhile: the CRM wins) → delete
            return [DeleteTaskInMicrosoft(key, ms_id, link, "deleted in the CRM or assigned to someone else")]
        # deleted in the CRM, microsoft_to_crm → leave Microsoft alone; remember it (imported again if edited)
        return [MarkTaskCrmDeleted(key, link)]
    if m is Status.GONE:
        if c is Status.CHANGED and push and crm_fields is not None and context.placeable(crm_fields):
            # deleted in Microsoft, edited in the CRM → push the CRM version back (re-create)
            return [CreateTaskInMicrosoft(key, crm_fields, crm.version, link, "edited in the CRM while removed in Microsoft")]  # type: ignore[union-attr]
        # deleted in Microsoft → keep the CRM task, remember the removal (never delete CRM data)
        return [MarkTaskRemoved(key, link)]

    ms_version = item.version if item is not None else link.ms_version
    crm_changed = c is Status.CHANGED
    ms_changed = m is Status.CHANGED and pull
    if crm_changed and crm_fields is not None and not context.placeable(crm_fields) and write_ms:
        # the CRM task lost its due date, calendar target → no day for an event: delete it (sent again with one)
        return [DeleteTaskInMicrosoft(key, ms_id, link, "no due date any more: removed from the calendar")]
    if crm_changed and ms_changed:
        # edited on both sides → three-way merge; the CRM wins fields both changed; recorded as a conflict
        assert crm_fields is not None and item is not None
        merged, clashes = merge_tasks(synced, crm_fields, item.fields, shown)
        return [TaskConflict(key, ms_id, ms_version, item, merged, crm_task, link, write_ms=write_ms,
                             clashes=clashes)]
    if crm_changed and meeting:
        # edited in the CRM, but a meeting → not sent (Outlook would send the update to its attendees)
        return [Skip(key, "a meeting is not changed by the sync (its attendees would be told)", Side.CRM)]
    if crm_changed and push:
        # edited in the CRM only (Microsoft edits are ignored in crm_to_microsoft) → update Microsoft
        assert crm_fields is not None
        return [UpdateTaskInMicrosoft(key, ms_id, ms_version, item, crm_fields, crm_task, link, write_ms=True)]
    if crm_changed:
        # edited in the CRM, microsoft_to_crm → not sent (its fields still win a later merge)
        return [Skip(key, "microsoft_to_crm: CRM edits are not sent to Microsoft", Side.CRM)]
    if ms_changed:
        # edited in Microsoft only → update the CRM (merged against the base: fields Microsoft cannot hold stay)
        assert item is not None
        return [UpdateTaskInCrm(key, ms_id, ms_version, item, item.fields, crm_task, link, write_ms=write_ms)]
    if m is Status.CHANGED:
        # edited in Microsoft, crm_to_microsoft → ignored
        return [Skip(key, "crm_to_microsoft: Microsoft edits are ignored", Side.MICROSOFT)]
    if c is Status.TOUCHED or m is Status.TOUCHED:
        # versions moved but content did not (our own write echoed back) → remember the versions only
        version = crm.version if c is Status.TOUCHED and crm is not None else link.crm_version
        return [RefreshTaskLink(link, version, ms_version if m is Status.TOUCHED else link.ms_version)]
    # nothing changed on either side
    return [Skip(key, "unchanged")]


def _move(key: str, crm: TaskItem | None, link: Link, c: Status, meeting: bool,
          context: TaskPlanContext) -> list[TaskAction]:
    """A task linked in the other target (after a switch): the decision table of a move."""
    ms_id = link.ms_id or ""
    if crm is None:
        # its CRM task is not part of this run → moved when it is
        return [Skip(key, "in the other target; moved when its task is next read")]
    if meeting:
        # a meeting stays in the calendar, linked there (moving it would mean deleting it)
        return [Skip(key, "a meeting stays in the calendar")]
    if not context.push:
        # microsoft_to_crm never writes Microsoft → the old item is no longer synced
        return [UnlinkTask(key, link, Side.CRM, "target switched; microsoft_to_crm does not move items")]
    if c is Status.GONE:
        # deleted in the CRM or given to someone else → only removed from the old target
        return [DeleteTaskInMicrosoft(key, ms_id, link, "deleted in the CRM or assigned to someone else")]
    _, fields = _current(crm)
    if not context.placeable(fields):
        # no day for the calendar → only removed from To Do (sent to the calendar once it has one)
        return [DeleteTaskInMicrosoft(key, ms_id, link, "no due date: not shown in the calendar")]
    # → created in this target, then deleted in the old one (the engine does both, in that order)
    return [CreateTaskInMicrosoft(key, fields, crm.version, link, f"moved to {context.target.value}")]


def deletion_origin(action: TaskAction) -> Side | None:
    """The side whose report causes a deletion or unlink (what the mass-delete guard counts)."""
    if isinstance(action, DeleteTaskInMicrosoft):
        return Side.CRM
    if isinstance(action, MarkTaskRemoved):
        return Side.MICROSOFT
    if isinstance(action, MarkTaskCrmDeleted):
        return Side.CRM
    if isinstance(action, UnlinkTask):
        return action.origin
    return None


def _guarded(action: TaskAction, guard: DeleteGuard) -> TaskAction:
    origin = deletion_origin(action)
    reason = guard.reason_for(origin) if origin is not None else None
    if reason is None:
        return action
    return Skip(action.crm_id, reason, origin, held=True)  # type: ignore[union-attr]
