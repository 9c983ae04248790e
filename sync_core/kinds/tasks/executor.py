"""Applies a task plan: the imperative shell around task_planner (as engine.py is for contacts).

The same discipline as the contact engine:
- CRM writes first (imports, Microsoft edits merged into the CRM), then Microsoft writes in batches (creates,
  updates, deletes); every link is saved right after its own write succeeded (ETag-conditional).
- Creates are idempotent: a PENDING_CREATE link (the intent) is saved before the call, naming the target
  the item goes to (`ms_version`) and, during a target switch, the item in the old target that is deleted
  once the new one exists (`ms_id`). `resolve_pending` settles such links by our CRM id (a To Do
  linkedResource, an event's extended property) before anything is planned for them.
- A failing record never stops the run: rejected ones are quarantined, retryable ones counted as errors and
  retried by the next run (CRM tasks through the quarantine list, Microsoft changes by keeping the deltaLink).

Task links live in their own partition of the state store (task_service.task_partition), so they never meet
contact links; quarantine entries go to the user's own list, named "task:{crm id}" and by the link key.
Log lines name ids, field names and status codes only: no personal data.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from sync_core.kinds.contacts.accounts import resolve_account
from sync_core.kinds.contacts.executor import EngineConfig, Tally, record_failure, save_links_batched
from sync_core.domain.errors import (
    AlreadyExistsError,
    ConcurrencyError,
    InvalidRecordError,
    MicrosoftError,
    NotFoundError,
    ThrottledError,
)
from sync_core.domain.models import (
    Account,
    CrmTask,
    Link,
    LinkState,
    MsTask,
    QuarantineEntry,
    SyncMode,
    TaskChange,
    TaskFields,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.ports import CrmTasksPort, MicrosoftTasksPort, StateStore, TaskUpdate, TaskWriteResult
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
from sync_core.kinds.tasks.planner import TaskAction, TaskPlanContext, key_target, ms_key, split_ms_key, synced_of
from sync_core.sync.actions import (ConflictMerge, Converge, CreateInCrm, CreateInMicrosoft, DeleteInMicrosoft, ForgetLink,
                                    LinkExisting, MarkCrmDeleted, MarkMsRemoved, RefreshLinkVersions, RememberMeeting,
                                    Side, Skip, Unlink)

T = TypeVar("T")
_NONE_HASH = field_hashes(TaskFields())["due_at"]  # the hash of "no due time": an all-day (or undated) task


def crm_record_id(crm_id: str) -> str:
    """How a CRM task is named in the user's quarantine list (never confused with a contact)."""
    return f"task:{crm_id}"


def outcome(result: TaskWriteResult) -> str:
    """ok | gone (404) | throttled | unknown (may or may not have happened) | rejected (a 4xx: will not work)."""
    if result.ok:
        return "ok"
    if result.status == 404:
        return "gone"
    if result.status in (429, 503) or result.retry_after is not None:
        return "throttled"
    if result.status == 0 or result.status >= 500 or result.status in (408, 504) or 200 <= result.status < 300:
        return "unknown"
    return "rejected"


def combine(wanted: TaskFields, crm: TaskFields, shown: frozenset[str]) -> TaskFields:
    """`wanted` for the fields the target holds, the CRM's for the others (a due time To Do cannot show)."""
    return TaskFields(**{name: getattr(wanted if name in shown else crm, name) for name in FIELD_NAMES})


@dataclass(frozen=True)
class _MsWrite:
    crm_id: str
    update: TaskUpdate
    final: TaskFields
    crm_version: str
    prior: Link | None


@dataclass
class TaskEngine:
    """Applies task plans for one user's run in one target (`context.target` in `container`)."""

    context: TaskPlanContext
    crm: CrmTasksPort
    microsoft: MicrosoftTasksPort
    state: StateStore
    partition: str  # the state-store partition of this user's task links
    containers: dict[TaskTarget, str]  # the To Do list id and/or the calendar window of this run
    tally: Tally
    now: Callable[[], datetime]
    quarantined: Iterable[QuarantineEntry] = ()
    config: EngineConfig = field(default_factory=EngineConfig)
    sleep: Callable[[float], None] = time.sleep
    locate: Callable[[TaskTarget], str | None] = lambda target: None  # finds a container not known yet
    _accounts: dict[str, Account] = field(default_factory=dict)
    _saved: dict[str, Link] = field(default_factory=dict)
    _listed: set[tuple[str, str]] = field(default_factory=set)
    _ms_updates: list[_MsWrite] = field(default_factory=list)
    _ms_deletes: list[DeleteInMicrosoft] = field(default_factory=list)
    found: dict[str, TaskChange] = field(default_factory=dict)  # items resolve_pending found, by CRM id
    zone: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        self._listed = {(q.side, q.record_id) for q in self.quarantined}
        self.zone = user_zone(self.context.settings)

    @property
    def settings(self) -> UserSyncSettings:
        return self.context.settings

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
            self.found[crm_id] = TaskChange(ms_id=ms_key(target, found.id), task=found)
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

    def quarantine_malformed(self, change: TaskChange) -> None:
        self._fail(Side.CRM, Side.MICROSOFT, change.ms_id, f"malformed Microsoft item: {change.invalid_reason}",
                   retry=False)

    # --- applying ---------------------------------------------------------------------------------

    def apply(self, actions: Sequence[TaskAction]) -> None:
        creates: list[CreateInMicrosoft] = []
        guard_reasons: set[str] = set()
        for action in actions:
            if isinstance(action, Skip):
                self._skip(action, guard_reasons)
            elif isinstance(action, CreateInMicrosoft):
                creates.append(action)
            elif isinstance(action, DeleteInMicrosoft):
                self._ms_deletes.append(action)
            elif isinstance(action, CreateInCrm):
                self._create_in_crm(action)
            elif isinstance(action, Converge):
                self._converge(action)
            elif isinstance(action, MarkMsRemoved):
                self._save_link(self._fresh(action.link).model_copy(update={"state": LinkState.MS_REMOVED}))
                self._succeeded(action.crm_id, action.link.ms_id)
            elif isinstance(action, MarkCrmDeleted):
                self._save_link(self._fresh(action.link).model_copy(update={"state": LinkState.CRM_DELETED}))
                self._succeeded(action.crm_id, action.link.ms_id)
            elif isinstance(action, (Unlink, ForgetLink)):
                self._drop_link(action.link)
                self._succeeded(action.crm_id, action.link.ms_id)
            elif isinstance(action, RememberMeeting):
                self._link(action.crm_id, action.ms_id, "", action.ms_version, action.fields, None, meeting=True)
            elif isinstance(action, RefreshLinkVersions):
                self._save_link(self._fresh(action.link).model_copy(update={
                    "crm_version": action.crm_version, "ms_version": action.ms_version}))
        self._run_creates(creates)
        updates, self._ms_updates = self._ms_updates, []
        self._run_updates(updates)
        deletes, self._ms_deletes = self._ms_deletes, []
        self._run_deletes(deletes)

    def _skip(self, action: Skip, guard_reasons: set[str]) -> None:
        if not action.held:
            return
        self.tally.guarded = True
        if action.reason not in guard_reasons:
            guard_reasons.add(action.reason)
            self.tally.log(f"tasks: {action.reason}")
        if action.origin is Side.MICROSOFT:
            self.tally.hold_delta = True  # the removals come again with the same deltaLink
        else:
            self.state.put_quarantine(QuarantineEntry(
                tenant_id=self.settings.tenant_id, user_id=self.settings.user_id, side=Side.CRM.value, record_id=crm_record_id(action.key),
                reason=action.reason, first_seen=self.now()))

    # --- CRM writes -------------------------------------------------------------------------------

    def _import_account(self) -> Account:
        """The account the user's setting names, created on first use; a renamed setting files new imports
        under the new name (resolved per run, never cached across runs)."""
        return resolve_account(self.crm, self.settings.tenant_id, self.settings.task_import_account,  # type: ignore[arg-type]
                               self.settings.user_id, self._accounts)

    def _create_in_crm(self, action: CreateInCrm) -> None:
        try:
            account = self._import_account()
            record = task_fields_to_crm(action.fields, None, self.zone, tenant_id=self.settings.tenant_id,
                                        task_id=action.crm_id, account_id=account.id,
                                        assigned_to=self.settings.user_id)
            created = self.crm.create_task(record)
        except AlreadyExistsError:
            # Our own import of this item whose link write was lost: link it rather than duplicate it.
            existing = self._read_task(action.crm_id)
            if existing is None:
                self._fail(Side.CRM, Side.MICROSOFT, action.ms_id, "CRM refused the import (id held)", retry=True)
                return
            self.tally.log(f"tasks: {action.ms_id} linked to existing crm:{existing.id} instead of importing it")
            current = self.state.get_links_by_crm(self.settings.tenant_id, self.partition, [existing.id]).get(existing.id)
            if existing.assigned_to != self.settings.user_id:
                # Our import of this item (its link write was lost), since given to someone else: as with a
                # link, it leaves this user's Microsoft 365 (a meeting stays: its attendees would be told).
                if action.meeting and current is None:
                    # remembered, so it is never imported again
                    self._link(existing.id, action.ms_id, "", action.ms_version, action.fields, None, meeting=True)
                elif action.sync_back:
                    self._ms_deletes.append(DeleteInMicrosoft(existing.id, action.ms_id, None,
                                                                  "assigned to someone else"))
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
        task = action.record or self._read_task(action.crm_id)
        if task is None:
            # Deleted in the CRM meanwhile: the feed brings the delete next run; replay the Microsoft side with it.
            self._fail(Side.CRM, Side.MICROSOFT, action.ms_id, "CRM task deleted during the run", retry=True)
            return
        current = crm_to_task_fields(task, self.zone)
        wanted = current if not self.context.pull else normalise_task(
            move_to_day(combine(action.fields, current, self.context.shown), self.zone), self.zone)
        record = task_fields_to_crm(wanted, task, self.zone)
        if record != task:
            written = self._update_crm(record, task, action.ms_id)
            if written is None:
                return
            task = written
            self.tally.crm["updated"] += 1
        final = crm_to_task_fields(task, self.zone)
        if isinstance(action, ConflictMerge):
            self.tally.conflicts += 1
            clashes = ", ".join(action.clashes) if action.clashes else "none (different fields)"
            self.tally.log(f"tasks: conflict crm:{action.crm_id} edited on both sides; fields changed on both: "
                           f"{clashes}; CRM wins those")
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
                self._ms_deletes.append(DeleteInMicrosoft(crm_id, key, prior, "no due date: removed from the calendar"))
                return
            all_day = ms_task.all_day if ms_task is not None else (
                base.hashes.get("due_at") == _NONE_HASH if base is not None else None)
            update = TaskUpdate(split_ms_key(key)[1], final, changed, all_day)
            self._ms_updates.append(_MsWrite(crm_id, update, final, crm_version, prior))
            return
        # Microsoft not written (microsoft_to_crm, a meeting): the merge base of the fields it holds is its own.
        synced = final
        if (self.settings.mode is SyncMode.MICROSOFT_TO_CRM or meeting) and ms_fields is not None:
            synced = combine(ms_fields, final, shown)
        if self._link(crm_id, key, crm_version, ms_version, synced, prior, meeting=meeting) is not None:
            self._succeeded(crm_id, key)

    def _update_crm(self, record: CrmTask, read: CrmTask, key: str) -> CrmTask | None:
        try:
            return self.crm.update_task(record)
        except ConcurrencyError:
            fresh = self._read_task(record.id)
            if fresh is not None and fresh.model_copy(update={"version": "", "modified_at": None}) == \
                    read.model_copy(update={"version": "", "modified_at": None}):
                try:
                    return self.crm.update_task(record.model_copy(update={"version": fresh.version}))
                except ConcurrencyError:
                    pass
            self._fail(Side.CRM, Side.MICROSOFT, key, "CRM task changed during the run", retry=True)
        except NotFoundError:
            self._fail(Side.CRM, Side.MICROSOFT, key, "CRM task gone during the run", retry=True)
        except InvalidRecordError as exc:
            self._fail(Side.CRM, Side.MICROSOFT, key, "CRM refused the update", retry=False, detail=str(exc))
        return None

    def _read_task(self, crm_id: str) -> CrmTask | None:
        return self.crm.get_tasks(self.settings.tenant_id, [crm_id]).get(crm_id)

    # --- Microsoft writes -------------------------------------------------------------------------

    def _run_creates(self, creates: list[CreateInMicrosoft]) -> None:
        # Intents first, for the whole batch in few storage transactions: if we die after Microsoft created
        # the items, the next run finds each by our CRM id.
        planned: list[Link] = []
        for action in creates:
            prior = self._fresh(action.link) if action.link is not None else None
            # During a target switch the old item stays until the new one exists (then it is deleted).
            old = prior.ms_id if prior is not None and prior.state is LinkState.LINKED and \
                key_target(prior.ms_id) not in (None, self.target) else None
            planned.append(Link(
                tenant_id=self.settings.tenant_id, user_id=self.partition, crm_id=action.crm_id, ms_id=old, state=LinkState.PENDING_CREATE,
                crm_version=action.crm_version, ms_version=self.target.value,
                synced_hash=encode_synced(action.fields), etag=prior.etag if prior is not None else None))
        intents = [(action, intent) for action, intent in zip(creates, self._save_links(planned)) if intent is not None]
        target, container = self.target, self.container

        def call(chunk: list[tuple[CreateInMicrosoft, Link]]) -> list[TaskWriteResult]:
            return self.microsoft.create_tasks(target, container, [(a.crm_id, a.crm_version, a.fields) for a, _ in chunk])

        created: list[tuple[CreateInMicrosoft, Link, MsTask]] = []
        for (action, intent), result in self._batched(call, intents, key=lambda pair: pair[0].crm_id):
            kind = outcome(result)
            if kind == "ok" and result.task is not None:
                self.tally.microsoft["created"] += 1
                created.append((action, intent, result.task))
                if len(created) >= self.config.write_chunk:
                    self._link_created(created)
                    created = []
            elif kind in ("ok", "unknown"):
                # May exist in Microsoft: the intent stays; the next run looks it up by our CRM id.
                self._fail(Side.MICROSOFT, Side.CRM, action.crm_id, f"create outcome unknown (HTTP {result.status})",
                           retry=True)
            else:
                # Certainly not created: put the link back as it was.
                self._undo_intent(intent, action.link)
                self._fail(Side.MICROSOFT, Side.CRM, action.crm_id, self._reason("create", result),
                           retry=kind != "rejected", detail=result.error or "")
        self._link_created(created)

    def _link_created(self, created: list[tuple[CreateInMicrosoft, Link, MsTask]]) -> None:
        """A chunk of confirmed creates: the old items of a target switch deleted (in batches), then the links
        saved together. An old item that could not be deleted keeps its intent: the next run finds the new
        item by our CRM id and deletes the old one again."""
        gone = self._delete_olds([(action.crm_id, intent.ms_id) for action, intent, _ in created if intent.ms_id])
        done = [(action, intent, task) for action, intent, task in created if not intent.ms_id or action.crm_id in gone]
        links = [Link(tenant_id=self.settings.tenant_id, user_id=self.partition, crm_id=action.crm_id, ms_id=ms_key(self.target, task.id),
                      state=LinkState.LINKED, crm_version=action.crm_version, ms_version=task.version,
                      synced_hash=encode_synced(action.fields), etag=(self._saved.get(action.crm_id) or intent).etag)
                 for action, intent, task in done]
        for (action, _, _), saved in zip(done, self._save_links(links)):
            if saved is not None:
                self._succeeded(action.crm_id, None)

    def _delete_old(self, key: str, crm_id: str) -> bool:
        """Delete a target switch's old item (already gone is fine); False when that failed."""
        return crm_id in self._delete_olds([(crm_id, key)])

    def _delete_olds(self, olds: list[tuple[str, str]]) -> set[str]:
        """Delete the old items (CRM id, key) of a target switch, batched per target; the CRM ids whose old
        item is gone now (already gone is fine)."""
        gone: set[str] = set()
        by_target: dict[TaskTarget, list[tuple[str, str]]] = {}
        for crm_id, key in olds:
            target, graph_id = split_ms_key(key)
            by_target.setdefault(target, []).append((crm_id, graph_id))
        for target, group in by_target.items():
            container = self.container_of(target) or ""

            def call(chunk: list[tuple[str, str]], target: TaskTarget = target,
                     container: str = container) -> list[TaskWriteResult]:
                return self.microsoft.delete_tasks(target, container, [graph_id for _, graph_id in chunk])

            for (crm_id, _), result in self._batched(call, group, key=lambda pair: pair[1]):
                if outcome(result) in ("ok", "gone"):
                    if outcome(result) == "ok" and result.status != 404:
                        self.tally.microsoft["deleted"] += 1
                    gone.add(crm_id)
                else:
                    self._fail(Side.MICROSOFT, Side.CRM, crm_id,
                               self._reason(f"delete of the old {target.value} item", result), retry=True)
        return gone

    def _undo_intent(self, intent: Link, prior: Link | None) -> None:
        if prior is None:
            self._drop_link(intent)
        elif prior.state is LinkState.LINKED and key_target(prior.ms_id) not in (None, self.target):
            self._save_link(prior.model_copy(update={"etag": intent.etag}))  # still in the old target, as it was
        else:
            # The earlier item is gone either way: remembered as removed, pushed again when edited.
            self._save_link(prior.model_copy(update={"state": LinkState.MS_REMOVED, "etag": intent.etag}))

    def _run_updates(self, updates: list[_MsWrite]) -> None:
        target, container = self.target, self.container

        def call(chunk: list[_MsWrite]) -> list[TaskWriteResult]:
            return self.microsoft.update_tasks(target, container, [w.update for w in chunk])

        for write, result in self._batched(call, updates, key=lambda w: w.update.ms_id):
            kind = outcome(result)
            key = ms_key(target, write.update.ms_id)
            if kind == "ok":
                self.tally.microsoft["updated"] += 1
                version = result.task.version if result.task is not None else ""
                if self._link(write.crm_id, key, write.crm_version, version, write.final, write.prior):
                    self._succeeded(write.crm_id, key)
            elif kind == "gone":
                # Deleted in Microsoft meanwhile: remember the removal; the CRM edit pushes it back next run.
                if write.prior is not None:
                    self._save_link(self._fresh(write.prior).model_copy(update={"state": LinkState.MS_REMOVED}))
                self._fail(Side.MICROSOFT, Side.CRM, write.crm_id, "Microsoft item gone during the run", retry=True)
            else:
                if write.prior is None or write.prior.state is not LinkState.LINKED:
                    # A pair found in this round and not linked yet: the round must come again to pair them.
                    self.tally.hold_delta = True
                self._fail(Side.MICROSOFT, Side.CRM, write.crm_id, self._reason("update", result),
                           retry=kind != "rejected", detail=result.error or "")

    def _run_deletes(self, deletes: list[DeleteInMicrosoft]) -> None:
        by_target: dict[TaskTarget, list[DeleteInMicrosoft]] = {}
        for action in deletes:
            by_target.setdefault(split_ms_key(action.ms_id)[0], []).append(action)
        for target, group in by_target.items():
            container = self.container_of(target) or ""

            def call(chunk: list[DeleteInMicrosoft], target: TaskTarget = target,
                     container: str = container) -> list[TaskWriteResult]:
                return self.microsoft.delete_tasks(target, container, [split_ms_key(d.ms_id)[1] for d in chunk])

            for action, result in self._batched(call, group, key=lambda d: split_ms_key(d.ms_id)[1]):
                kind = outcome(result)
                if kind in ("ok", "gone"):
                    if kind == "ok" and result.status != 404:
                        self.tally.microsoft["deleted"] += 1
                    if action.link is not None:
                        self._drop_link(action.link)
                    self._succeeded(action.crm_id, action.ms_id)
                else:
                    self._fail(Side.MICROSOFT, Side.CRM, action.crm_id, self._reason("delete", result),
                               retry=kind != "rejected", detail=result.error or "")

    def _batched(self, call: Callable[[list[T]], list[TaskWriteResult]], items: list[T],
                 key: Callable[[T], str]) -> Iterator[tuple[T, TaskWriteResult]]:
        """Each item with its result, a chunk at a time (its links saved before the next call); throttled items
        retried after the longest Retry-After a bounded number of times; a call failing as a whole leaves every
        item's outcome unknown (status 0)."""
        for start in range(0, len(items), self.config.write_chunk):
            pending = items[start:start + self.config.write_chunk]
            for round_no in range(self.config.throttle_rounds + 1):
                last = round_no == self.config.throttle_rounds
                try:
                    results = call(pending)
                except ThrottledError as exc:
                    if last:
                        for item in pending:
                            yield item, TaskWriteResult(key(item), False, status=429, retry_after=exc.retry_after)
                        break
                    self._wait(exc.retry_after)
                    continue
                except MicrosoftError as exc:
                    for item in pending:
                        yield item, TaskWriteResult(key(item), False, status=0, error=type(exc).__name__)
                    break
                by_key = {r.key: r for r in results}
                throttled: list[tuple[T, TaskWriteResult]] = []
                for item in pending:
                    result = by_key.get(key(item)) or TaskWriteResult(key(item), False, status=0, error="no answer")
                    if outcome(result) == "throttled" and not last:
                        throttled.append((item, result))
                    else:
                        yield item, result
                if not throttled:
                    break
                self._wait(max(r.retry_after or 1.0 for _, r in throttled))
                pending = [item for item, _ in throttled]

    def _wait(self, seconds: float) -> None:
        self.sleep(min(max(seconds, 0.0), self.config.max_wait_seconds))

    @staticmethod
    def _reason(verb: str, result: TaskWriteResult) -> str:
        kind = outcome(result)
        if kind == "throttled":
            return f"task {verb} throttled by Microsoft beyond the run's retries"
        if kind == "rejected":
            return f"Microsoft refused the task {verb} (HTTP {result.status})"
        return f"task {verb} failed in Microsoft (HTTP {result.status})"

    # --- links and bookkeeping --------------------------------------------------------------------

    def _fresh(self, link: Link) -> Link:
        return self._saved.get(link.crm_id, link)

    def _link(self, crm_id: str, key: str, crm_version: str, ms_version: str, synced: TaskFields,
              prior: Link | None, *, meeting: bool = False) -> Link | None:
        current = self._saved.get(crm_id) or prior
        return self._save_link(Link(
            tenant_id=self.settings.tenant_id, user_id=self.partition, crm_id=crm_id, ms_id=key, state=LinkState.LINKED, crm_version=crm_version,
            ms_version=ms_version, synced_hash=encode_synced(synced, meeting),
            etag=current.etag if current else None))

    def _save_link(self, link: Link) -> Link | None:
        try:
            saved = self.state.save_link(link)
        except (ConcurrencyError, AlreadyExistsError):
            # Someone (a worker whose lease ran out) wrote it meanwhile: we hold the lease, ours stands. Once.
            current = self.state.get_links_by_crm(self.settings.tenant_id, self.partition, [link.crm_id]).get(link.crm_id)
            try:
                saved = self.state.save_link(link.model_copy(update={"etag": current.etag if current else None}))
            except (ConcurrencyError, AlreadyExistsError) as exc:
                self._fail(Side.CRM, Side.CRM, link.crm_id, f"task link not saved ({type(exc).__name__})", retry=True)
                return None
        self._saved[saved.crm_id] = saved
        return saved

    def _save_links(self, links: list[Link]) -> list[Link | None]:
        return save_links_batched(self.state, links, self._saved, self._save_link)

    def _drop_link(self, link: Link) -> None:
        current = self._fresh(link)
        try:
            self.state.delete_link(current)
        except ConcurrencyError:
            fresh = self.state.get_links_by_crm(self.settings.tenant_id, self.partition, [link.crm_id]).get(link.crm_id)
            if fresh is not None:
                self.state.delete_link(fresh)
        self._saved.pop(link.crm_id, None)

    def _succeeded(self, crm_id: str, key: str | None) -> None:
        for side, record_id in ((Side.CRM.value, crm_record_id(crm_id)), (Side.MICROSOFT.value, key)):
            if record_id is not None and (side, record_id) in self._listed:
                self.state.clear_quarantine(self.settings.tenant_id, self.settings.user_id, side, record_id)
                self._listed.discard((side, record_id))

    def _fail(self, write_side: Side, record_side: Side, record_id: str, reason: str, *, retry: bool,
              detail: str = "") -> None:
        named = crm_record_id(record_id) if record_side is Side.CRM else record_id
        record_failure(self.state, self.tally, self.settings.tenant_id, self.settings.user_id, write_side, record_side, named, reason,
                       retry=retry, detail=detail, now=self.now(), label="tasks: ")
        self._listed.add((record_side.value, named))


def _intent_target(link: Link, default: TaskTarget) -> TaskTarget:
    try:
        return TaskTarget(link.ms_version)
    except ValueError:
        return default

