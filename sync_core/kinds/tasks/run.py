"""The task kind's run (issue 5): `sync_user` runs it after the contacts, under the same lease, budget and run
record (the steps every kind shares are in sync/run.py; where task state is kept: targets.py).

    task cursor → CRM side (the feed since the task cursor, or on first use every task assigned to the user)
    → [target switched: pull the old target's changes, then move every synced task to the new target]
    → the target's delta (To Do tasks delta, or calendarView/delta over the window; expired → full resync)
    → pair, guard, plan and apply in chunks → cursors saved → counts folded into the run record

Quarantine entries go to the user's own list (named "task:{crm id}" or by the link key). Occurrences keep
their ids across rounds, so a moved calendar window imports nothing twice. An event reported gone whose due
day is outside the window just left it (Graph reports those as removed too) and keeps its link; one inside is
looked up before it counts as deleted (it may have been moved out of the window by an edit).

With a time budget (issue 10) the pass of the current target stops between chunks once another would not fit.
A first run (or a new mode or target) goes through its tasks in id order and notes in the marker the last id it
finished ("after"): the continuation looks only at the tasks after it, keeps the feed position of the first
run (edits made meanwhile are read from the feed afterwards), and starts the target's delta from the deltaLink
the stop saved. A feed-driven run stores the feed position just before the first task it did not apply.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, time as wall_time
from typing import cast

from sync_core.domain.models import (
    CrmTask,
    Cursor,
    FOLDER_NAME,
    FeedEntry,
    Link,
    LinkState,
    MsChange,
    MsTask,
    QuarantineEntry,
    TaskTarget,
)
from sync_core.kinds.tasks.executor import TaskEngine
from sync_core.kinds.tasks.mapping import at_local, crm_to_task_fields, user_zone
from sync_core.kinds.tasks.planner import (TaskItem, TaskPlanContext, key_target, ms_key, paired_crm_id, plan_tasks,
                                           split_ms_key, synced_of)
from sync_core.kinds.tasks.targets import (Marker, calendar_window, forget_task_state, target_cursor_key,
                                           task_partition, window_bounds)
from sync_core.ports import CrmTasksPort, MicrosoftTasksPort
from sync_core.sync.actions import Side
from sync_core.sync.budget import safe_feed_position
from sync_core.sync.guard import DeleteGuard
from sync_core.sync.run import KindRun, RunPart, fold_tally, read_delta, save_cursor
from sync_core.sync.tally import Tally

__all__ = ["calendar_window", "forget_task_state", "is_task_entry", "sync_tasks", "target_cursor_key",
           "task_partition"]


def sync_tasks(part: RunPart, microsoft: MicrosoftTasksPort) -> None:
    """One task sync of the user (the caller holds the user's lease and keeps the run record). What it did is
    folded into the run's tally even when it fails; sync errors propagate to the caller, which records them."""
    run = _TaskRun(part, microsoft)
    try:
        run.execute()
    finally:
        fold_tally(part.tally, run.tally, f"tasks ({part.user.task_target.value})")


def is_task_entry(entry: QuarantineEntry) -> bool:
    """A task's entry in the user's quarantine list (contacts and tasks share it)."""
    return entry.record_id.startswith("task:") if entry.side == Side.CRM.value else key_target(entry.record_id) is not None


class _TaskRun(KindRun[MsTask]):
    def __init__(self, part: RunPart, microsoft: MicrosoftTasksPort) -> None:
        super().__init__(part, task_partition(part.user.user_id), Tally(log_limit=part.options.engine.log_limit))
        self.crm = cast(CrmTasksPort, part.crm)  # the CRM adapters serve both ports
        self.microsoft = microsoft
        self.containers: dict[TaskTarget, str] = {}
        self.quarantined: list[QuarantineEntry] = []

    def execute(self) -> None:
        home = self.state.get_cursor(self.tenant_id, self.partition)
        marker = Marker.parse(home.folder_id)
        new = self.user.task_target
        switched = marker is not None and marker.target is not new
        # A first run, a new sync mode or a new target looks at every task of the user, not just the feed's
        # (a task the old target could not hold, e.g. one without a day for the calendar, goes to the new one).
        fresh = (home.etag is None or marker is None or marker.mode is not self.user.mode or switched
                 or marker.full_owed)
        if fresh and (marker is None or not marker.full_owed or (new is not marker.target and new not in marker.pending)):
            # Should this run die, the next one still owes the full look, and replays what this one may have
            # written into the new target before it moves anything.
            owed = (replace(marker, full_owed=True, pending=marker.pending | ({new} - {marker.target}))
                    if marker is not None else Marker(new, self.user.mode, True))
            home = save_cursor(self.state, home.model_copy(update={"folder_id": owed.encode()}))
        self.quarantined = self._own_quarantine()
        marker_now = Marker.parse(home.folder_id)
        after = marker_now.done_up_to(new, self.user.mode) if fresh and marker_now is not None else None
        position, crm_ids, required = self._crm_side(home, fresh, after)
        crm_ids.update(dict.fromkeys(q.record_id[len("task:"):] for q in self.quarantined if q.side == Side.CRM.value))
        others = sorted(({marker.target} if switched and marker is not None else set()) | (marker.pending - {new} if marker else set()))
        if switched:
            assert marker is not None
            self.tally.log(f"tasks: target switched from {marker.target.value} to {new.value}: moving the synced tasks")
        for old in others:
            old_cursor = self.state.get_cursor(self.tenant_id, target_cursor_key(self.user.user_id, old))
            # What changed in the old target since the last run reaches the CRM before the tasks move (a full
            # round when the last run there never finished).
            self._pass(old, {}, full=old_cursor.folder_id is None, container=old_cursor.folder_id)
        if others:
            # Every task linked in the old target (or with a create pending) is planned in the new target's
            # pass, where the planner moves it: created there, then deleted in the old target.
            crm_ids.update(dict.fromkeys(link.crm_id for link in self.state.iter_links(self.tenant_id, self.partition)
                                         if (link.state is LinkState.PENDING_CREATE or key_target(link.ms_id) is not new)
                                         and (after is None or link.crm_id > after)))
        # A continuation of a full look starts from the deltaLink its stop saved (the full round was listed).
        left = self._pass(new, crm_ids, full=(fresh or switched) and after is None, ordered=fresh)
        if left is not None:
            assert marker_now is not None or not fresh
            if fresh and marker_now is not None:
                undone = set(left)
                done = [i for i in sorted(crm_ids) if i not in undone]
                last = max(done[-1], after or "") if done else after
                mark = replace(marker_now, after=f"{new.value}|{self.user.mode.value}|{last}" if last else None)
                save_cursor(self.state, home.model_copy(update={"folder_id": mark.encode(), "crm_position": position}))
            else:
                save_cursor(self.state, home.model_copy(update={"crm_position": safe_feed_position(position, required, left)}))
            return
        for old in others:
            self._forget_target(old)
        save_cursor(self.state, home.model_copy(update={"folder_id": Marker(new, self.user.mode).encode(),
                                                        "crm_position": position, "delta_link": None}))
    # --- the CRM side -----------------------------------------------------------------------------

    def _crm_side(self, home: Cursor, fresh: bool, after: str | None) -> tuple[int, dict[str, None], dict[str, int]]:
        """(feed position to store, CRM task ids to look at, id → position of the feed entry naming it last).
        On first use (or a new sync mode) every task assigned to the user and every linked one (those after
        `after` when continuing one); else the tasks in the feed since the cursor."""
        if fresh:
            # First: later writes are replayed, not lost. A continuation keeps the position of the first run.
            position = home.crm_position if after is not None else self.crm.feed_position(self.tenant_id)
            ids: dict[str, None] = dict.fromkeys(t.id for t in self.crm.tasks_assigned_to(self.tenant_id,
                                                                             self.user.user_id)
                                                 if after is None or t.id > after)
            if home.etag is not None:
                ids.update(dict.fromkeys(link.crm_id for link in self.state.iter_links(self.tenant_id, self.partition)
                                         if after is None or link.crm_id > after))
            return position, ids, {}
        ids, required = {}, {}

        def take(entry: FeedEntry) -> None:
            if entry.kind == "task":
                ids.pop(entry.record_id, None)
                ids[entry.record_id] = None
                required[entry.record_id] = entry.position
        return self._feed_since(home.crm_position, take), ids, required

    def _items(self, ids: Iterable[str], tasks: dict[str, CrmTask]) -> list[TaskItem]:
        zone = user_zone(self.user)
        items = []
        for crm_id in ids:
            task = tasks.get(crm_id)
            if task is None:
                items.append(TaskItem(crm_id, None))
            else:
                items.append(TaskItem(crm_id, task, crm_to_task_fields(task, zone), task.assigned_to == self.user.user_id))
        return items

    # --- one target -------------------------------------------------------------------------------


    def _container(self, target: TaskTarget, known: str | None) -> str:
        if target is TaskTarget.CALENDAR:
            return calendar_window(self.now(), self.user)
        if known:
            return known
        list_id = self.microsoft.ensure_container(TaskTarget.TO_DO, FOLDER_NAME, None)
        self.tally.log("tasks: To Do list looked up by name (created if missing)")
        return list_id

    def _engine(self, target: TaskTarget) -> TaskEngine:
        return TaskEngine(TaskPlanContext(self.user, target), self.crm, self.microsoft, self.state, self.partition,
                          self.containers, self.tally, self.now, quarantined=self.quarantined,
                          config=self.options.engine, sleep=self.sleep, locate=self._locate)

    def _locate(self, target: TaskTarget) -> str | None:
        """A container no cursor knows (an item of a run that died before saving one): looked up."""
        if target is TaskTarget.CALENDAR:
            return calendar_window(self.now(), self.user)
        return self._container(TaskTarget.TO_DO, None)

    def _pass(self, target: TaskTarget, crm_ids: dict[str, None], *, full: bool, container: str | None = None,
              ordered: bool | None = None) -> list[str] | None:
        """One sync of `target` (in `container`: default, the To Do list or the current window). With `ordered`
        set (the current target's pass) it may stop at the budget: then it returns the CRM ids it did not apply
        (in id order when `ordered`, the Outlook-paired ones first otherwise). None when it finished."""
        cursor_key = target_cursor_key(self.user.user_id, target)
        cursor = self.state.get_cursor(self.tenant_id, cursor_key)
        container = container or self._container(target, cursor.folder_id)
        link = cursor.delta_link if not full and cursor.folder_id == container else None
        delta, container, replay = read_delta(
            lambda where, since: self.microsoft.task_delta(target, where, since), container, link, self.tally.log,
            expired=f"tasks: {target.value} deltaLink expired: full resync reconciled against the links",
            gone=None if target is TaskTarget.CALENDAR else "tasks: To Do list gone: looked up by name again, full resync",
            relocate=lambda: self._container(target, None))
        self.containers[target] = container
        self._know_other_container(target)
        engine = self._engine(target)
        held_before, self.tally.hold_delta = self.tally.hold_delta, False

        changes = self._latest((c.model_copy(update={"ms_id": ms_key(target, c.ms_id)}) for c in delta.changes),
                               engine.quarantine_malformed)
        # In the calendar only the items of the window are listed: those are reconciled.
        link_count = (self._reconcile_full((ms_key(target, c.ms_id) for c in delta.changes if c.item is not None or c.invalid_reason),
                                           changes, mine=lambda key: key_target(key) is target) if delta.full else None)
        links_by_ms = self.state.get_links_by_ms(self.tenant_id, self.partition, list(changes)) if changes else {}
        if target is TaskTarget.CALENDAR:
            self._settle_removals(container, changes, links_by_ms)

        context = TaskPlanContext(self.user, target)
        counted = set(crm_ids)  # progress: what the CRM side asked for and real Outlook changes
        attached: dict[str, MsChange[MsTask]] = {}
        lone: dict[str, MsChange[MsTask]] = {}
        self._pair(changes, links_by_ms, context, crm_ids, attached, lone, counted)
        guard = self._guard(list(crm_ids), self._still_assigned, changes, links_by_ms, link_count)
        counted.update(i for i, change in attached.items() if change.ms_id not in links_by_ms)  # paired by tag or id
        echoes = {i for i in attached if i not in counted}
        tail = self._echo_tail(crm_ids, echoes, stoppable=ordered is not None)
        if ordered is None:
            ids = list(crm_ids)
        elif ordered:  # a stop notes the last id done
            ids = sorted(i for i in crm_ids if i not in echoes) + tail
        else:
            ids = self._paired_first(crm_ids, attached, echoes) + tail
        left = self._apply_round(ids, counted, lone,
                                 lambda chunk: self._crm_chunk(engine, context, chunk, attached, lone, guard),
                                 lambda batch: self._lone_chunk(batch, self._applier(engine, context, guard)),
                                 stoppable=ordered is not None)
        new_link = self._next_delta_link(left, attached, lone, echoes, replay, delta.delta_link)
        self.tally.hold_delta = held_before or self.tally.hold_delta
        stored = self.state.get_cursor(self.tenant_id, cursor_key)
        save_cursor(self.state, stored.model_copy(update={"folder_id": container, "delta_link": new_link}))
        return left

    def _pair(self, changes: dict[str, MsChange[MsTask]], links_by_ms: dict[str, Link], context: TaskPlanContext,
              crm_ids: dict[str, None], attached: dict[str, MsChange[MsTask]], lone: dict[str, MsChange[MsTask]],
              counted: set[str]) -> None:
        """Each change to its CRM task: by link; else by the id our create or import derives (our own item,
        or our import whose link was lost); else by our tag; the rest are lone (new in Microsoft)."""
        tagged: dict[str, MsChange[MsTask]] = {}
        for key, change in changes.items():
            found = links_by_ms.get(key)
            candidates = paired_crm_id(change, context)
            if found is not None:
                self._attach(found, change, crm_ids, attached, counted)
            elif change.item is not None and (mate := next((i for i in candidates
                                                             if i in crm_ids and i not in attached), None)):
                attached[mate] = change
            elif change.item is not None and change.item.crm_id:
                tagged[change.item.crm_id] = change
            else:
                lone[key] = change
        if not tagged:
            return
        # Items we created that no link names: paired with their CRM task, never imported.
        linked = self.state.get_links_by_crm(self.tenant_id, self.partition, list(tagged))
        for crm_id, change in tagged.items():
            found = linked.get(crm_id)
            if found is None or found.state is LinkState.PENDING_CREATE:
                # its link is lost, or its create not yet confirmed (settled when the task is read)
                crm_ids.setdefault(crm_id, None)
                if crm_id not in attached:
                    attached[crm_id] = change
            else:
                # the task is synced with another item: this copy of ours is left alone, never imported
                self.tally.log(f"tasks: {change.ms_id} carries crm:{crm_id}, which is synced with another item")

    def _still_assigned(self, linked: list[str]) -> set[str]:
        """Linked tasks the CRM still holds for the user (the others count as deletions for the guard)."""
        return {i for i, task in self.crm.get_tasks(self.tenant_id, linked).items()
                if task.assigned_to == self.user.user_id}

    def _know_other_container(self, target: TaskTarget) -> None:
        """Where the other target's items are, for moving or deleting what is still linked there."""
        other = TaskTarget.CALENDAR if target is TaskTarget.TO_DO else TaskTarget.TO_DO
        if other in self.containers:
            return
        if other is TaskTarget.CALENDAR:
            self.containers[other] = calendar_window(self.now(), self.user)  # events are reached by id alone
            return
        known = self.state.get_cursor(self.tenant_id, target_cursor_key(self.user.user_id, other)).folder_id
        if known:
            self.containers[other] = known

    def _in_window(self, container: str, day: date | None) -> bool:
        if day is None:
            return False
        start, end = window_bounds(container)
        midnight = at_local(day, wall_time(), user_zone(self.user))
        return start <= midnight < end

    def _settle_removals(self, container: str, changes: dict[str, MsChange[MsTask]], links: dict[str, Link]) -> None:
        """Calendar removals are ambiguous (deleted, moved out of the window, or changed outside it): an item
        whose due day lies outside the window just left it; one inside is looked up before it counts."""
        confirm: list[str] = []
        for key, change in list(changes.items()):
            link = links.get(key)
            if change.item is not None or link is None or link.state is not LinkState.LINKED:
                continue
            synced = synced_of(link)
            if self._in_window(container, synced.due_date if synced else None):
                confirm.append(key)
            else:
                del changes[key]
        if not confirm:
            return
        found = self.microsoft.get_tasks(TaskTarget.CALENDAR, container, [split_ms_key(k)[1] for k in confirm])
        for key in confirm:
            graph_id = split_ms_key(key)[1]
            if graph_id not in found:  # could not be learnt: not taken for deleted; the round is replayed
                del changes[key]
                self.tally.hold_delta = True
            elif (task := found[graph_id]) is not None:
                changes[key] = MsChange(ms_id=key, item=task)  # still there: whatever changed is applied

    def _crm_chunk(self, engine: TaskEngine, context: TaskPlanContext, ids: list[str],
                   attached: dict[str, MsChange[MsTask]], lone: dict[str, MsChange[MsTask]], guard: DeleteGuard) -> None:
        self.renew()
        tasks = self.crm.get_tasks(self.tenant_id, ids)
        read = self.state.get_links_by_crm(self.tenant_id, self.partition, ids)
        links = engine.resolve_pending(read)
        for crm_id, link in links.items():  # a create found again may also be in this round as a "new" item
            if link.ms_id is not None and link.ms_id in lone:
                attached[crm_id] = lone.pop(link.ms_id)
        for crm_id, before in read.items():
            change = attached.get(crm_id)
            after = links.get(crm_id)
            if change is not None and before.ms_id == change.ms_id and (after is None or after.ms_id != change.ms_id):
                # the old item of a move, deleted once its new one was found: what it reported is void
                del attached[crm_id]
            if crm_id in engine.found and (after is not None and after.ms_id == engine.found[crm_id].ms_id):
                lone.pop(engine.found[crm_id].ms_id, None)
                attached[crm_id] = engine.found.pop(crm_id)  # the found item as it is now
        ms = [attached.pop(crm_id) for crm_id in ids if crm_id in attached]
        engine.apply(plan_tasks(self._items(ids, tasks), ms, links.values(), context, guard=guard,
                                limits=self.options.limits))

    def _applier(self, engine: TaskEngine, context: TaskPlanContext,
                 guard: DeleteGuard) -> Callable[[list[str], list[MsChange[MsTask]], list[Link]], None]:
        def apply(crm_ids: list[str], changes: list[MsChange[MsTask]], links: list[Link]) -> None:
            tasks = self.crm.get_tasks(self.tenant_id, crm_ids) if crm_ids else {}
            engine.apply(plan_tasks(self._items(crm_ids, tasks), changes, links, context, guard=guard,
                                    limits=self.options.limits))
        return apply

    def _forget_target(self, target: TaskTarget) -> None:
        """The old target's deltaLink is of no use once its items are gone (a switch back starts afresh)."""
        cursor = self.state.get_cursor(self.tenant_id, target_cursor_key(self.user.user_id, target))
        if cursor.etag is not None and cursor.delta_link:
            save_cursor(self.state, cursor.model_copy(update={"delta_link": None}))
