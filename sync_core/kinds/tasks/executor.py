"""Applies a task plan through the shared executor (sync_core.sync.executor), adding what only tasks do: the
two targets (a To Do list, the calendar) and their containers, the target switch (the old item is deleted
once the new one exists), meetings (never written, never imported twice) and converging TaskFields.

Creates are idempotent: a PENDING_CREATE link (the intent) is saved before the call, naming the target the
item goes to (`ms_version`) and, during a target switch, the item in the old target that is deleted once
the new one exists (`ms_id`). `resolve_pending` settles such links by our CRM id (a To Do linkedResource,
an event's extended property) before anything is planned for them.

Task links live in their own partition of the state store (task_service.task_partition), so they never meet
contact links; quarantine entries go to the user's own list, named "task:{crm id}" and by the link key.
Log lines name ids, field names and status codes only: no personal data.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sync_core.domain.changes import WriteResult
from sync_core.domain.errors import AlreadyExistsError, InvalidRecordError, MicrosoftError, NotFoundError
from sync_core.domain.models import (
    Account,
    CrmTask,
    Link,
    LinkState,
    MsChange,
    MsTask,
    QuarantineEntry,
    SyncMode,
    TaskFields,
    TaskTarget,
)
from sync_core.kinds.contacts.accounts import resolve_account
from sync_core.kinds.tasks.mapping import (
    FIELD_NAMES,
    crm_to_task_fields,
    encode_synced,
    field_hashes,
    move_to_day,
    normalise_task,
    task_fields_to_crm,
    user_zone,
)
from sync_core.kinds.tasks.planner import TaskPlanContext, key_target, ms_key, split_ms_key, synced_of
from sync_core.sync.actions import (ConflictMerge, Converge, CreateInCrm, CreateInMicrosoft, DeleteInMicrosoft, LinkExisting,
                                    RememberMeeting, Side)
from sync_core.ports import CrmTasksPort, MicrosoftTasksPort, StateStore, TaskUpdate
from sync_core.sync.executor import EngineConfig, Executor, MsWrite, Removal, Tally, outcome

_NONE_HASH = field_hashes(TaskFields())["due_at"]  # the hash of "no due time": an all-day (or undated) task


def crm_record_id(crm_id: str) -> str:
    """How a CRM task is named in the user's quarantine list (never confused with a contact)."""
    return f"task:{crm_id}"


def combine(wanted: TaskFields, crm: TaskFields, shown: frozenset[str]) -> TaskFields:
    """`wanted` for the fields the target holds, the CRM's for the others (a due time To Do cannot show)."""
    return TaskFields(**{name: getattr(wanted if name in shown else crm, name) for name in FIELD_NAMES})


class TaskEngine(Executor[TaskFields, CrmTask, WriteResult[MsTask]]):
    """Applies task plans for one user's run in one target (`context.target` in `container`)."""

    SERVICE, NOUN, LABEL, RESULT = "Microsoft", "task ", "tasks: ", WriteResult[MsTask]
    CRM_RECORD, CRM_GONE = "CRM task", "CRM task gone during the run"
    GONE_DELETE_COUNTS = False  # an item already gone is not counted as deleted by us

    def __init__(self, context: TaskPlanContext, crm: CrmTasksPort, microsoft: MicrosoftTasksPort, state: StateStore,
                 partition: str, containers: dict[TaskTarget, str], tally: Tally, now: Callable[[], datetime],
                 quarantined: Iterable[QuarantineEntry] = (), config: EngineConfig = EngineConfig(),
                 sleep: Callable[[float], None] = time.sleep,
                 locate: Callable[[TaskTarget], str | None] = lambda target: None) -> None:
        super().__init__(context.settings, state, tally, partition=partition, quarantined=quarantined, config=config,
                         sleep=sleep, now=now)
        self.context = context
        self.crm = crm
        self.microsoft = microsoft
        self.containers = containers  # the To Do list id and/or the calendar window of this run
        self.locate = locate  # finds a container not known yet
        self._accounts: dict[str, Account] = {}
        self.found: dict[str, MsChange[MsTask]] = {}  # items resolve_pending found, by CRM id
        self.zone = user_zone(context.settings)

    @property
    def target(self) -> TaskTarget:
        return self.context.target

    @property
    def container(self) -> str:
        return self.containers[self.target]

    def container_of(self, target: TaskTarget) -> str | None:
        if target not in self.containers:
            found = self.locate(target)
            if found is not None:
                self.containers[target] = found
        return self.containers.get(target)

    # --- before planning --------------------------------------------------------------------------

    def resolve_pending(self, links: dict[str, Link]) -> dict[str, Link]:
        """Settle creates whose outcome was lost: found by our CRM id → linked (an old item of a target switch
        deleted first); not found → the intent is dropped (or the old item's link restored); lookup failed →
        left pending."""
        settled = dict(links)
        for crm_id, link in links.items():
            if link.state is not LinkState.PENDING_CREATE:
                continue
            target = _intent_target(link, self.target)
            container = self.container_of(target)
            if container is None:
                continue  # a create into a target this run does not reach: settled when it does
            try:
                found = self.microsoft.find_task_by_crm_id(target, container, crm_id)
            except MicrosoftError as exc:
                self._fail(Side.MICROSOFT, Side.CRM, crm_id, f"pending create not resolved ({type(exc).__name__})",
                           retry=True)
                continue
            if found is None:
                restored = self._restore(link)
                if restored is None:
                    del settled[crm_id]
                else:
                    settled[crm_id] = restored
                self.tally.log(f"pending task create crm:{crm_id} not found in {target.value}: created again")
                continue
            if link.ms_id and not self._delete_old(link.ms_id, crm_id):
                continue
            # What the item holds now takes part in this run: the user may have edited it meanwhile, and the
            # round that reported that edit may be gone.
            self.found[crm_id] = MsChange(ms_id=ms_key(target, found.id), item=found)
            synced = synced_of(link)
            # Unknown whether the user edited it since: an unknown version lets the next delta decide by content.
            same = synced is not None and synced.same(found.fields, self.context.shown)
            saved = self._save_link(link.model_copy(update={
                "ms_id": ms_key(target, found.id), "state": LinkState.LINKED,
                "ms_version": found.version if same else ""}))
            if saved is not None:
                settled[crm_id] = saved
                self._succeeded(crm_id, None)
                self.tally.log(f"pending task create crm:{crm_id} found in {target.value}: linked, not created twice")
        return settled

    def _restore(self, intent: Link) -> Link | None:
        """A create that never happened: the intent goes; a target switch's old item is linked again (with no
        versions or hashes, so the next run compares by content and the CRM wins), or, when the user deleted
        it meanwhile, remembered as removed (pushed again only when edited in the CRM)."""
        if not intent.ms_id:
            self._drop_link(intent)
            return None
        target, graph_id = split_ms_key(intent.ms_id)
        try:
            still = self.microsoft.get_tasks(target, self.container_of(target) or "", [graph_id])
        except MicrosoftError:
            still = {}
        if graph_id in still and still[graph_id] is None:
            return self._save_link(intent.model_copy(update={"state": LinkState.MS_REMOVED, "ms_version": ""}))
        return self._save_link(intent.model_copy(update={
            "state": LinkState.LINKED, "crm_version": "", "ms_version": "", "synced_hash": ""}))

    # --- applying ---------------------------------------------------------------------------------

    def _apply_own(self, action: Any) -> None:
        if isinstance(action, CreateInCrm):
            self._create_in_crm(action)
        elif isinstance(action, Converge):
            self._converge(action)
        elif isinstance(action, RememberMeeting):
            self._link(action.crm_id, action.ms_id, "", action.ms_version, action.fields, None, meeting=True)

    # --- CRM writes -------------------------------------------------------------------------------

    def _import_account(self) -> Account:
        """The account the user's setting names, created on first use; a renamed setting files new imports
        under the new name (resolved per run, never cached across runs)."""
        return resolve_account(self.crm, self.tenant_id, self.settings.task_import_account,  # type: ignore[arg-type]
                               self.settings.user_id, self._accounts)

    def _create_in_crm(self, action: CreateInCrm) -> None:
        try:
            account = self._import_account()
            record = task_fields_to_crm(action.fields, None, self.zone, tenant_id=self.tenant_id,
                                        task_id=action.crm_id, account_id=account.id,
                                        assigned_to=self.settings.user_id)
            created = self.crm.create_task(record)
        except AlreadyExistsError:
            # Our own import of this item whose link write was lost: link it rather than duplicate it.
            existing = self._crm_read(action.crm_id)
            if existing is None:
                self._fail(Side.CRM, Side.MICROSOFT, action.ms_id, "CRM refused the import (id held)", retry=True)
                return
            self.tally.log(f"tasks: {action.ms_id} linked to existing crm:{existing.id} instead of importing it")
            current = self._current_link(existing.id)
            if existing.assigned_to != self.settings.user_id:
                # Our import of this item (its link write was lost), since given to someone else: as with a
                # link, it leaves this user's Microsoft 365 (a meeting stays: its attendees would be told).
                if action.meeting and current is None:
                    # remembered, so it is never imported again
                    self._link(existing.id, action.ms_id, "", action.ms_version, action.fields, None, meeting=True)
                elif action.sync_back:
                    self._ms_deletes.append(self._removal_of(existing.id, action.ms_id, None))
                else:
                    self.tally.log(f"tasks: {action.ms_id} not imported: crm:{existing.id} is someone else's")
                return
            if current is not None and (current.state is LinkState.PENDING_CREATE
                                        or current.ms_id not in (None, action.ms_id)):
                # That task is synced with another item (or its create is being confirmed): this one is left
                # alone, never a duplicate.
                self.tally.log(f"tasks: {action.ms_id} not imported: crm:{existing.id} is synced with another item")
                return
            self.tally.log(f"tasks: {action.ms_id} linked to existing crm:{existing.id} instead of importing it")
            item = MsTask(id=split_ms_key(action.ms_id)[1], version=action.ms_version, fields=action.fields,
                          meeting=action.meeting, all_day=action.fields.due_at is None)
            self._converge(LinkExisting(existing.id, action.ms_id, action.ms_version, item, action.fields, existing,
                                    current, write_ms=action.sync_back))
            return
        except (InvalidRecordError, NotFoundError) as exc:
            self._fail(Side.CRM, Side.MICROSOFT, action.ms_id, "CRM refused the import", retry=False, detail=str(exc))
            return
        self.tally.crm["created"] += 1
        final = crm_to_task_fields(created, self.zone)
        self._settle(created.id, action.ms_id, action.ms_version, None, final, created.version, None,
                     write_ms=action.sync_back, ms_fields=action.fields, meeting=action.meeting)

    def _converge(self, action: Converge, *, meeting: bool = False) -> None:
        task = action.record or self._crm_read(action.crm_id)
        if task is None:
            # Deleted in the CRM meanwhile: the feed brings the delete next run; replay the Microsoft side with it.
            self._fail(Side.CRM, Side.MICROSOFT, action.ms_id, "CRM task deleted during the run", retry=True)
            return
        current = crm_to_task_fields(task, self.zone)
        wanted = current if not self.context.pull else normalise_task(
            move_to_day(combine(action.fields, current, self.context.shown), self.zone), self.zone)
        record = task_fields_to_crm(wanted, task, self.zone)
        task = self._write_crm(record, task, action.ms_id)
        if task is None:
            return
        final = crm_to_task_fields(task, self.zone)
        if isinstance(action, ConflictMerge):
            self._conflict(action.crm_id, action.clashes)
        ms_fields = action.ms_now.fields if action.ms_now is not None else None
        base = synced_of(action.link)
        meeting = meeting or (action.ms_now.meeting if action.ms_now is not None else False) or bool(
            base and base.meeting)
        self._settle(task.id, action.ms_id, action.ms_version, action.ms_now, final, task.version, action.link,
                     write_ms=action.write_ms, ms_fields=ms_fields, meeting=meeting)

    def _settle(self, crm_id: str, key: str, ms_version: str, ms_task: MsTask | None, final: TaskFields,
                crm_version: str, prior: Link | None, *, write_ms: bool, ms_fields: TaskFields | None,
                meeting: bool = False) -> None:
        """Microsoft follows the CRM's content where it may be written and differs; then the pair's link is
        saved with what both sides hold."""
        shown = self.context.shown
        base = synced_of(prior)
        if ms_fields is not None:
            changed = frozenset(n for n in shown if getattr(final, n) != getattr(ms_fields, n))
        elif base is not None:
            changed = frozenset(base.changed_fields(final, shown))
        else:
            changed = shown
        if write_ms and changed:
            if not self.context.placeable(final):
                self._ms_deletes.append(self._removal_of(crm_id, key, prior))  # no due date: off the calendar
                return
            all_day = ms_task.all_day if ms_task is not None else (
                base.hashes.get("due_at") == _NONE_HASH if base is not None else None)
            update = TaskUpdate(split_ms_key(key)[1], final, changed, all_day)
            self._ms_updates.append(MsWrite(crm_id, ms_key(self.target, update.ms_id), update.ms_id, final, crm_version,
                                            prior, update))
            return
        # Microsoft not written (microsoft_to_crm, a meeting): the merge base of the fields it holds is its own.
        synced = final
        if (self.settings.mode is SyncMode.MICROSOFT_TO_CRM or meeting) and ms_fields is not None:
            synced = combine(ms_fields, final, shown)
        if self._link(crm_id, key, crm_version, ms_version, synced, prior, meeting=meeting) is not None:
            self._succeeded(crm_id, key)

    def _crm_update(self, record: CrmTask) -> CrmTask:
        return self.crm.update_task(record)

    def _crm_read(self, crm_id: str) -> CrmTask | None:
        return self.crm.get_tasks(self.tenant_id, [crm_id]).get(crm_id)

    # --- Microsoft writes -------------------------------------------------------------------------

    def _delete_old(self, key: str, crm_id: str) -> bool:
        """Delete a target switch's old item (already gone is fine); False when that failed."""
        return crm_id in self._delete_olds([(crm_id, key)])

    def _delete_olds(self, olds: list[tuple[str, str]]) -> set[str]:
        """Delete the old items (CRM id, key) of a target switch, batched per target; the CRM ids whose old
        item is gone now (already gone is fine)."""
        gone: set[str] = set()
        for old, result in self._deleted([self._removal_of(crm_id, key, None) for crm_id, key in olds]):
            if outcome(result) in ("ok", "gone"):
                if outcome(result) == "ok" and result.status != 404:
                    self.tally.microsoft["deleted"] += 1
                gone.add(old.crm_id)
            else:
                self._fail(Side.MICROSOFT, Side.CRM, old.crm_id,
                           self._reason(f"delete of the old {old.group} item", result), retry=True)
        return gone

    def _undo_intent(self, intent: Link, prior: Link | None) -> None:
        if prior is not None and self._switching(prior):
            self._save_link(prior.model_copy(update={"etag": intent.etag}))  # still in the old target, as it was
        else:
            super()._undo_intent(intent, prior)

    # --- what the shared executor asks of tasks ---------------------------------------------------

    def _crm_name(self, crm_id: str) -> str:
        return crm_record_id(crm_id)

    def _removal(self, action: DeleteInMicrosoft) -> Removal:
        return self._removal_of(action.crm_id, action.ms_id, action.link)

    def _removal_of(self, crm_id: str, key: str, link: Link | None) -> Removal:
        target, graph_id = split_ms_key(key)
        return Removal(crm_id, key, graph_id, target.value, link)

    def _stored(self, synced: TaskFields, meeting: bool) -> dict[str, Any]:
        return {"synced_hash": encode_synced(synced, meeting)}

    def _switching(self, prior: Link) -> bool:
        """A link to an item in the other target: it stays there until the new one exists."""
        return prior.state is LinkState.LINKED and key_target(prior.ms_id) not in (None, self.target)

    def _intent(self, action: CreateInMicrosoft, prior: Link | None) -> dict[str, Any]:
        old = prior.ms_id if prior is not None and self._switching(prior) else None
        return {"ms_id": old, "ms_version": self.target.value, **self._stored(action.fields, False)}

    def _ready(self, created: list[tuple[Any, Link, tuple[str, str]]]) -> list[tuple[Any, Link, tuple[str, str]]]:
        """The old items of a target switch deleted first (in batches). An old item that could not be deleted
        keeps its intent: the next run finds the new item by our CRM id and deletes the old one again."""
        gone = self._delete_olds([(action.crm_id, intent.ms_id) for action, intent, _ in created if intent.ms_id])
        return [(action, intent, item) for action, intent, item in created
                if not intent.ms_id or action.crm_id in gone]

    def _update_failed(self, write: MsWrite[TaskFields]) -> None:
        if write.prior is None or write.prior.state is not LinkState.LINKED:
            # A pair found in this round and not linked yet: the round must come again to pair them.
            self.tally.hold_delta = True

    def _create_call(self) -> Callable[[list[tuple[CreateInMicrosoft, Link]]], list[WriteResult[MsTask]]]:
        target, container = self.target, self.container
        return lambda chunk: self.microsoft.create_tasks(target, container,
                                                         [(a.crm_id, a.crm_version, a.fields) for a, _ in chunk])

    def _update_call(self) -> Callable[[list[MsWrite[TaskFields]]], list[WriteResult[MsTask]]]:
        target, container = self.target, self.container
        return lambda chunk: self.microsoft.update_tasks(target, container, [w.payload for w in chunk])

    def _delete_call(self, group: str) -> Callable[[list[str]], list[WriteResult[MsTask]]]:
        target = TaskTarget(group)
        container = self.container_of(target) or ""
        return lambda graph_ids: self.microsoft.delete_tasks(target, container, graph_ids)

    def _written(self, result: WriteResult[MsTask]) -> tuple[str, str] | None:
        return (ms_key(self.target, result.item.id), result.item.version) if result.item is not None else None


def _intent_target(link: Link, default: TaskTarget) -> TaskTarget:
    try:
        return TaskTarget(link.ms_version)
    except ValueError:
        return default
