"""The task kind's planning rules: what the ONE planner (sync/planner.py) needs to know of tasks.

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
from typing import TypeAlias

from sync_core.domain.models import (
    CrmTask,
    Link,
    MsChange,
    MsTask,
    SyncMode,
    TaskFields,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.kinds.tasks.mapping import FIELD_NAMES, REPRESENTED, SyncedTask, decode_synced, field_hashes
from sync_core.sync import actions
from sync_core.sync.actions import Side
from sync_core.sync.guard import DeleteGuard, GuardLimits
from sync_core.sync.kind import MsItem, PlanRules, Words
from sync_core.sync.planner import plan as plan_kind

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
    def record(self) -> CrmTask | None:
        return self.task

    @property
    def in_scope(self) -> bool:
        return self.assigned

    @property
    def version(self) -> str:
        return self.task.version if self.task is not None else ""


@dataclass(frozen=True)
class TaskPlanContext:
    """One task run's frame: the user's settings and the target it syncs (To Do or the calendar); the
    executor reads the same frame."""

    settings: UserSyncSettings
    target: TaskTarget

    @property
    def pull(self) -> bool:
        return self.settings.mode is not SyncMode.CRM_TO_MICROSOFT

    @property
    def shown(self) -> frozenset[str]:
        return REPRESENTED[self.target]

    def placeable(self, fields: TaskFields) -> bool:
        """Whether the target can hold the task at all (an event needs a day)."""
        return self.target is not TaskTarget.CALENDAR or fields.due_date is not None


# A task convergence carries the Microsoft item itself (None: not in this round, unchanged since the link).
TaskAction: TypeAlias = actions.Action[TaskFields, CrmTask, MsTask | None]


def synced_of(link: Link | None) -> SyncedTask | None:
    return decode_synced(link.synced_hash) if link is not None else None


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


def paired_crm_id(change: MsChange[MsTask], context: TaskPlanContext) -> list[str]:
    """The CRM ids an unlinked Microsoft item may be ours for: the CRM id it is tagged with (we created it),
    then the id our own import of it would have (its link write was lost)."""
    ids = [change.item.crm_id] if change.item is not None and change.item.crm_id else []
    ids.append(import_task_id(context.settings.tenant_id, context.settings.user_id, change.ms_id))
    return ids


class TaskRules(PlanRules[TaskFields, MsTask | None, MsChange[MsTask]]):
    words = Words(ms="Microsoft", items="tasks", ms_item="Microsoft item",
                  crm_gone="deleted in the CRM or assigned to someone else", out_of_scope="not assigned to the user",
                  unplaceable="no due date: not shown in the calendar",
                  no_longer_placeable="no due date any more: removed from the calendar",
                  stray="an item of ours whose task is synced with another item",
                  protected_left="deleted in the CRM; a meeting is left in Outlook",
                  protected_unchanged="a meeting is not changed by the sync (its attendees would be told)",
                  protected_stays="a meeting stays in the calendar",
                  not_moved_yet="in the other target; moved when its task is next read")
    gone_when_out_of_scope = True  # a synced task given to someone else leaves this user's Microsoft 365
    skip_tagged_strays = True

    def __init__(self, context: TaskPlanContext) -> None:
        super().__init__(context.settings)
        self.context = context

    def ms_item(self, change: MsChange[MsTask]) -> MsItem[TaskFields] | None:
        item = change.item
        return MsItem(change.ms_id, item.version, item.fields, item.meeting) if item is not None else None

    def tag(self, change: MsChange[MsTask]) -> str | None:
        return change.item.crm_id if change.item is not None else None

    def candidates(self, change: MsChange[MsTask]) -> list[str]:
        # a removed item is never paired with a CRM task: nothing of it is left to link
        return paired_crm_id(change, self.context) if change.item is not None else []

    def import_id(self, ms_id: str) -> str:
        return import_task_id(self.settings.tenant_id, self.settings.user_id, ms_id)

    def same_content(self, fields: TaskFields, link: Link, side: Side) -> bool:
        # A field the target cannot hold never counts as changed on the Microsoft side.
        synced = synced_of(link)
        names = self.context.shown if side is Side.MICROSOFT else FIELD_NAMES
        return synced is not None and synced.same(fields, names)

    def merge(self, link: Link | None, crm: TaskFields, ms: TaskFields) -> tuple[TaskFields, tuple[str, ...]]:
        return merge_tasks(synced_of(link), crm, ms, self.context.shown)

    def crm_update(self, link: Link, crm: TaskFields | None, ms: TaskFields) -> TaskFields:
        # the executor merges Microsoft's fields into the CRM task it reads (fields Microsoft cannot hold stay)
        return ms

    def ms_now(self, change: MsChange[MsTask] | None, link: Link | None, crm: TaskFields | None) -> MsTask | None:
        return change.item if change is not None else None

    def protected(self, item: MsItem[TaskFields] | None, link: Link | None) -> bool:
        # a meeting: as read now, or as the link remembers it
        synced = synced_of(link)
        return (item is not None and item.protected) or (synced is not None and synced.meeting)

    def placeable(self, fields: TaskFields) -> bool:
        return self.context.placeable(fields)

    def in_target(self, link: Link) -> bool:
        return key_target(link.ms_id) is self.context.target

    def moved_reason(self) -> str:
        return f"moved to {self.context.target.value}"


def plan_tasks(crm: Sequence[TaskItem], ms: Sequence[MsChange[MsTask]], links: Iterable[Link], context: TaskPlanContext, *,
               guard: DeleteGuard | None = None, limits: GuardLimits = GuardLimits()) -> list[TaskAction]:
    """The actions for one batch. `ms` changes carry link keys (ms_key) as their ms_id; `links` are the links
    of the records given. `guard` is the run's mass-delete verdict (None: computed from this plan alone)."""
    return plan_kind(crm, ms, links, TaskRules(context), guard=guard, limits=limits)
