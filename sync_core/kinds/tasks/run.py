"""One user's task sync (issue 5), run by `sync_user` after the contacts, under the same lease and run record.

    task cursor → CRM side (the feed since the task cursor, or on first use every task assigned to the user)
    → [target switched: pull the old target's changes, then move every synced task to the new target]
    → the target's delta (To Do tasks delta, or calendarView/delta over the window; expired → full resync)
    → pair, guard, plan and apply in chunks → cursors saved → counts folded into the run record

State, in the shared state store: task links in their own partition (`task_partition`), so they never meet
contact links; the task cursor there holds the CRM feed position and which target and mode the links were
made for; each target keeps its own cursor (`target_cursor_key`): the To Do list id or the calendar window,
and that target's deltaLink. Quarantine entries go to the user's own list (named "task:{crm id}" or by the
link key).

The calendar window (calendar_window_past_days back, calendar_window_future_days ahead) is snapped to
weeks, so it moves once a week: a moved window starts a fresh delta round, which lists the window again.
Occurrences keep their ids across rounds, so nothing is imported twice. An event reported gone whose due
day is outside the window just left it (Graph reports those as removed too) and keeps its link; one inside is
looked up before it counts as deleted (it may have been moved out of the window by an edit).

With a time budget (issue 10) the pass of the current target stops between chunks once another would not fit.
A first run (or a new mode or target) goes through its tasks in id order and notes in the marker the last id it
finished ("after"): the continuation looks only at the tasks after it, keeps the feed position of the first
run (edits made meanwhile are read from the feed afterwards), and starts the target's delta from the deltaLink
the stop saved. A feed-driven run stores the feed position just before the first task it did not apply.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from urllib.parse import quote, unquote
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time as wall_time, timedelta

from sync_core.sync.budget import Budget, Stint, safe_feed_position
from sync_core.kinds.contacts.executor import EngineConfig, Tally
from sync_core.domain.errors import ConcurrencyError, DeltaExpiredError, NotFoundError
from sync_core.domain.models import (
    FOLDER_NAME,
    CrmTask,
    Cursor,
    Link,
    LinkState,
    QuarantineEntry,
    SyncMode,
    TaskChange,
    TaskDeltaResult,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.sync.actions import Side
from sync_core.sync.guard import DeleteGuard, GuardLimits, guard_needs_link_count, mass_delete_guard
from sync_core.ports import CrmTasksPort, MicrosoftTasksPort, StateStore
from sync_core.kinds.tasks.executor import TaskEngine
from sync_core.kinds.tasks.mapping import at_local, crm_to_task_fields, user_zone
from sync_core.kinds.tasks.planner import (
    TaskItem,
    TaskPlanContext,
    key_target,
    ms_key,
    paired_crm_id,
    plan_tasks,
    split_ms_key,
    synced_of,
)


def task_partition(user_id: str) -> str:
    """The state-store partition of a user's task links and task cursor."""
    return f"{user_id}|tasks"


def target_cursor_key(user_id: str, target: TaskTarget) -> str:
    return f"{user_id}|tasks|{target.value}"


def calendar_window(now: datetime, settings: UserSyncSettings) -> str:
    """The calendarView window "start/end" (UTC ISO): at least the configured days back and ahead, from
    midnight in the user's zone, snapped to Mondays so that it moves once a week."""
    tz = user_zone(settings)
    today = now.astimezone(tz).date()
    first = today - timedelta(days=settings.calendar_window_past_days)
    first -= timedelta(days=first.weekday())
    last = today + timedelta(days=settings.calendar_window_future_days)
    last += timedelta(days=7 - last.weekday())
    start, end = at_local(first, wall_time(), tz), at_local(last, wall_time(), tz)
    return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"


def window_bounds(container: str) -> tuple[datetime, datetime]:
    start, _, end = container.partition("/")
    return (datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
            datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))


@dataclass(frozen=True)
class TaskSyncOptions:
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: GuardLimits = field(default_factory=GuardLimits)
    chunk_size: int = 500
    feed_page_size: int = 1000


@dataclass(frozen=True)
class _Marker:
    """What the task links were made for: the target and the sync mode of the last finished run (a change
    means a full look); whether a full look was started but not finished (a run died during it); and the
    other targets an unfinished run was writing to (their rounds are replayed before anything moves)."""

    target: TaskTarget
    mode: SyncMode
    full_owed: bool = False
    pending: frozenset[TaskTarget] = frozenset()
    # A full look that stopped at its budget: "target|mode|id", tasks up to that id are done for that target and
    # mode (a later switch of either starts the full look over).
    after: str | None = None

    def encode(self) -> str:
        text = f"tasks;target={self.target.value};mode={self.mode.value}"
        if self.full_owed:
            text += ";full=owed"
        if self.pending:
            text += ";pending=" + ",".join(sorted(t.value for t in self.pending))
        if self.after is not None:
            text += ";after=" + quote(self.after, safe="")
        return text

    @classmethod
    def parse(cls, text: str | None) -> _Marker | None:
        if not text or not text.startswith("tasks;"):
            return None
        parts = dict(part.split("=", 1) for part in text.split(";")[1:] if "=" in part)
        try:
            pending = frozenset(TaskTarget(t) for t in parts.get("pending", "").split(",") if t)
            after = unquote(parts["after"]) if "after" in parts else None
            return cls(TaskTarget(parts.get("target", "")), SyncMode(parts.get("mode", "")),
                       parts.get("full") == "owed", pending, after)
        except ValueError:
            return None


def sync_tasks(
    user: UserSyncSettings,
    crm: CrmTasksPort,
    microsoft: MicrosoftTasksPort,
    state: StateStore,
    *,
    renew_lease: Callable[[], None],
    now: Callable[[], datetime],
    sleep: Callable[[float], None] = time.sleep,
    options: TaskSyncOptions = TaskSyncOptions(),
    into: Tally | None = None,
    budget: Budget | None = None,
    stint: Stint | None = None,
) -> Tally:
    """One task sync of `user` (the caller holds the user's lease and keeps the run record); returns what it
    did, also folded into `into` (the run's tally) even when it fails. Sync errors propagate to the caller,
    which records them. With `budget`, `stint` tells how far it got and whether it stopped with work left."""
    run = _TaskRun(user, crm, microsoft, state, renew_lease, now, sleep, options, budget or Budget.unlimited(),
                   stint or Stint())
    try:
        run.execute()
    finally:
        if into is not None:
            fold_task_tally(into, run.tally, user.task_target)
    return run.tally


def fold_task_tally(into: Tally, tasks: Tally, target: TaskTarget) -> None:
    """Task counts join the run's counts per side; the run log gets one summary line, then the task lines."""
    for side, counts in ((into.crm, tasks.crm), (into.microsoft, tasks.microsoft)):
        for name, value in counts.items():
            side[name] += value
    into.conflicts += tasks.conflicts
    into.quarantined += tasks.quarantined
    into.guarded = into.guarded or tasks.guarded
    into.log(f"tasks ({target.value}): Microsoft created {tasks.microsoft['created']}, updated "
             f"{tasks.microsoft['updated']}, deleted {tasks.microsoft['deleted']}; CRM created {tasks.crm['created']}, "
             f"updated {tasks.crm['updated']}; errors {tasks.crm['errors'] + tasks.microsoft['errors']}, "
             f"quarantined {tasks.quarantined}, conflicts {tasks.conflicts}")
    for line in tasks.lines:
        into.log(line)
    into.dropped_lines += tasks.dropped_lines


def is_task_entry(entry: QuarantineEntry) -> bool:
    """A task's entry in the user's quarantine list (contacts and tasks share it)."""
    return entry.record_id.startswith("task:") if entry.side == Side.CRM.value else key_target(entry.record_id) is not None


class _TaskRun:
    def __init__(self, user: UserSyncSettings, crm: CrmTasksPort, microsoft: MicrosoftTasksPort, state: StateStore,
                 renew_lease: Callable[[], None], now: Callable[[], datetime], sleep: Callable[[float], None],
                 options: TaskSyncOptions, budget: Budget, stint: Stint) -> None:
        self.user = user
        self.budget = budget
        self.stint = stint
        self.crm = crm
        self.microsoft = microsoft
        self.state = state
        self.renew = renew_lease
        self.now = now
        self.sleep = sleep
        self.options = options
        self.tally = Tally(log_limit=options.engine.log_limit)
        self.partition = task_partition(user.user_id)
        self.containers: dict[TaskTarget, str] = {}
        self.quarantined: list[QuarantineEntry] = []

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id

    def execute(self) -> None:
        home = self.state.get_cursor(self.tenant_id, self.partition)
        marker = _Marker.parse(home.folder_id)
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
                    if marker is not None else _Marker(new, self.user.mode, True))
            home = self._save_any(home.model_copy(update={"folder_id": owed.encode()}))
        self.quarantined = [q for q in self.state.list_quarantine(self.tenant_id, self.user.user_id) if is_task_entry(q)]
        marker_now = _Marker.parse(home.folder_id)
        after = _done_up_to(marker_now, new, self.user.mode) if fresh else None
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
                self._save_cursor(home.model_copy(update={"folder_id": mark.encode(), "crm_position": position}))
            else:
                self._save_cursor(home.model_copy(update={"crm_position": safe_feed_position(position, required, left)}))
            return
        for old in others:
            self._forget_target(old)
        self._save_cursor(home.model_copy(update={"folder_id": _Marker(new, self.user.mode).encode(),
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
        ids = {}
        required: dict[str, int] = {}
        position = home.crm_position
        while True:
            page = self.crm.read_changes(self.tenant_id, position, self.options.feed_page_size)
            for entry in page.entries:
                if entry.kind == "task":
                    ids.pop(entry.record_id, None)
                    ids[entry.record_id] = None
                    required[entry.record_id] = entry.position
            position = page.last_position
            if len(page.entries) < self.options.feed_page_size:
                return position, ids, required

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
        delta, container, replay = self._delta(target, container, link)
        self.containers[target] = container
        self._know_other_container(target)
        engine = self._engine(target)
        held_before, self.tally.hold_delta = self.tally.hold_delta, False

        changes: dict[str, TaskChange] = {}
        for change in delta.changes:  # an item may come twice in a round: its last state wins
            key = ms_key(target, change.ms_id)
            changes[key] = change.model_copy(update={"ms_id": key})
        for change in [c for c in changes.values() if c.invalid_reason]:
            engine.quarantine_malformed(change)
            del changes[change.ms_id]
        link_count = self._reconcile_full(target, container, delta, changes) if delta.full else None
        links_by_ms = self.state.get_links_by_ms(self.tenant_id, self.partition, list(changes)) if changes else {}
        if target is TaskTarget.CALENDAR:
            self._settle_removals(container, changes, links_by_ms)

        context = TaskPlanContext(self.user, target)
        counted = set(crm_ids)  # progress: what the CRM side asked for and real Outlook changes
        attached: dict[str, TaskChange] = {}
        lone: dict[str, TaskChange] = {}
        tagged: dict[str, TaskChange] = {}
        for key, change in changes.items():
            found = links_by_ms.get(key)
            candidates = paired_crm_id(change, context)
            if found is not None:
                crm_ids.setdefault(found.crm_id, None)
                attached[found.crm_id] = change
                if not (found.state is LinkState.LINKED and change.task is not None
                        and found.ms_version == change.task.version):
                    counted.add(found.crm_id)  # not our own write coming back
            elif change.task is not None and (mate := next((i for i in candidates
                                                             if i in crm_ids and i not in attached), None)):
                attached[mate] = change  # our own item, or our import whose link was lost
            elif change.task is not None and change.task.crm_id:
                tagged[change.task.crm_id] = change
            else:
                lone[key] = change
        if tagged:  # items we created that no link names: paired with their CRM task, never imported
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

        guard = self._guard(crm_ids, changes, links_by_ms, link_count)
        counted.update(i for i, change in attached.items() if change.ms_id not in links_by_ms)  # paired by tag or id
        # Our own writes coming back (nothing changed on either side since) need no chunk: under a budget they
        # are left out, so a replayed round never spends a run on them again and again.
        echoes = {i for i in attached if i not in counted}
        tail = [] if ordered is not None and self.budget.seconds is not None else [i for i in crm_ids if i in echoes]
        if ordered is None:
            ids = list(crm_ids)
        elif ordered:  # a stop notes the last id done
            ids = sorted(i for i in crm_ids if i not in echoes) + tail
        else:  # a stop after the Outlook-paired tasks keeps the new deltaLink
            ids = ([i for i in crm_ids if i in attached and i not in echoes]
                   + [i for i in crm_ids if i not in attached and i not in echoes] + tail)
        if ordered is not None:
            self.stint.total += sum(1 for i in ids if i in counted) + len(lone)
        left: list[str] | None = None
        size = self.options.chunk_size
        for start in range(0, len(ids), size):
            if ordered is not None and not self.budget.allows_another():
                left = ids[start:]
                break
            with self.budget.chunk():
                self._crm_chunk(engine, context, ids[start:start + size], attached, lone, guard)
            self.stint.done += sum(1 for i in ids[start:start + size] if i in counted)
        waiting = [] if left is not None else list(lone.values())
        for start in range(0, len(waiting), size):
            if ordered is not None and not self.budget.allows_another():
                left = []
                break
            with self.budget.chunk():
                self._ms_chunk(engine, context, waiting[start:start + size], guard)
            self.stint.done += len(waiting[start:start + size])
            for change in waiting[start:start + size]:
                lone.pop(change.ms_id, None)
        self.stint.stopped = self.stint.stopped or left is not None

        # Outlook changes not applied yet (a stop) are read again from the old deltaLink.
        outlook_left = left is not None and (any(i not in echoes for i in attached) or bool(lone))
        new_link = replay if self.tally.hold_delta or outlook_left else delta.delta_link
        self.tally.hold_delta = held_before or self.tally.hold_delta
        self._save_target_cursor(cursor_key, container, new_link)
        return left

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

    def _delta(self, target: TaskTarget, container: str, link: str | None) -> tuple[TaskDeltaResult, str, str | None]:
        """The changes since `link`: (result, container, the link that replays this round)."""
        try:
            return self.microsoft.task_delta(target, container, link), container, link
        except DeltaExpiredError:
            self.tally.log(f"tasks: {target.value} deltaLink expired: full resync reconciled against the links")
        except NotFoundError:
            if target is TaskTarget.CALENDAR:
                raise
            self.tally.log("tasks: To Do list gone: looked up by name again, full resync")
            container = self._container(target, None)
        return self.microsoft.task_delta(target, container, None), container, None

    def _in_window(self, container: str, day: date | None) -> bool:
        if day is None:
            return False
        start, end = window_bounds(container)
        midnight = at_local(day, wall_time(), user_zone(self.user))
        return start <= midnight < end

    def _settle_removals(self, container: str, changes: dict[str, TaskChange], links: dict[str, Link]) -> None:
        """Calendar removals are ambiguous (deleted, moved out of the window, or changed outside it): an item
        whose due day lies outside the window just left it; one inside is looked up before it counts."""
        confirm: list[str] = []
        for key, change in list(changes.items()):
            link = links.get(key)
            if change.task is not None or link is None or link.state is not LinkState.LINKED:
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
                changes[key] = TaskChange(ms_id=key, task=task)  # still there: whatever changed is applied

    def _reconcile_full(self, target: TaskTarget, container: str, delta: TaskDeltaResult,
                        changes: dict[str, TaskChange]) -> int:
        """A full round lists what is in the target now: linked items missing from it were removed while we
        were not looking (in the calendar: only those due inside the window). Returns the LINKED count."""
        present = {ms_key(target, c.ms_id) for c in delta.changes if c.task is not None or c.invalid_reason}
        count = 0
        for link in self.state.iter_links(self.tenant_id, self.partition):
            if link.state not in (LinkState.LINKED, LinkState.CRM_DELETED):
                continue
            count += link.state is LinkState.LINKED
            if link.ms_id and link.ms_id not in present and key_target(link.ms_id) is target:
                changes.setdefault(link.ms_id, TaskChange(ms_id=link.ms_id, removed_reason="missing after a full resync"))
        return count

    def _guard(self, crm_ids: dict[str, None], changes: dict[str, TaskChange], links_by_ms: dict[str, Link],
               link_count: int | None) -> DeleteGuard:
        """The run's mass-delete verdict, from the deletions it is about to apply (read by the changed ids)."""
        crm_deletes = 0
        if crm_ids:
            links = self.state.get_links_by_crm(self.tenant_id, self.partition, list(crm_ids))
            linked = [i for i, link in links.items() if link.state is LinkState.LINKED]
            if linked:
                existing = self.crm.get_tasks(self.tenant_id, linked)
                crm_deletes = sum(1 for i in linked
                                  if i not in existing or existing[i].assigned_to != self.user.user_id)
        ms_removals = sum(1 for key, change in changes.items()
                          if change.task is None and (link := links_by_ms.get(key)) is not None
                          and link.state is LinkState.LINKED)
        limits = self.options.limits
        if guard_needs_link_count(crm_deletes, ms_removals, limits) and link_count is None:
            link_count = sum(1 for link in self.state.iter_links(self.tenant_id, self.partition) if link.state is LinkState.LINKED)
        return mass_delete_guard(crm_deletes, ms_removals, link_count, limits)

    def _crm_chunk(self, engine: TaskEngine, context: TaskPlanContext, ids: list[str],
                   attached: dict[str, TaskChange], lone: dict[str, TaskChange], guard: DeleteGuard) -> None:
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

    def _ms_chunk(self, engine: TaskEngine, context: TaskPlanContext, changes: list[TaskChange],
                  guard: DeleteGuard) -> None:
        self.renew()
        links = self.state.get_links_by_ms(self.tenant_id, self.partition, [c.ms_id for c in changes])  # made in this run, maybe
        crm_ids = [link.crm_id for link in links.values()]
        tasks = self.crm.get_tasks(self.tenant_id, crm_ids) if crm_ids else {}
        engine.apply(plan_tasks(self._items(crm_ids, tasks), changes, links.values(), context, guard=guard,
                                limits=self.options.limits))

    # --- a target switch ---------------------------------------------------------------------------

    def _forget_target(self, target: TaskTarget) -> None:
        """The old target's deltaLink is of no use once its items are gone (a switch back starts afresh)."""
        key = target_cursor_key(self.user.user_id, target)
        cursor = self.state.get_cursor(self.tenant_id, key)
        if cursor.etag is not None and cursor.delta_link:
            self._save_any(cursor.model_copy(update={"delta_link": None}))

    # --- bookkeeping ------------------------------------------------------------------------------

    def _save_target_cursor(self, key: str, container: str, delta_link: str | None) -> None:
        cursor = self.state.get_cursor(self.tenant_id, key)
        self._save_any(cursor.model_copy(update={"folder_id": container, "delta_link": delta_link}))

    def _save_cursor(self, cursor: Cursor) -> None:
        self._save_any(cursor)

    def _save_any(self, cursor: Cursor) -> Cursor:
        try:
            return self.state.save_cursor(cursor)
        except ConcurrencyError:
            # We hold the lease, so what we applied stands: write over the other copy, once.
            current = self.state.get_cursor(cursor.tenant_id, cursor.user_id)
            return self.state.save_cursor(cursor.model_copy(update={"etag": current.etag}))


def _done_up_to(marker: _Marker | None, target: TaskTarget, mode: SyncMode) -> str | None:
    """The last task id a stopped full look finished, if it was a look for this target and mode."""
    if marker is None or marker.after is None:
        return None
    done_target, _, rest = marker.after.partition("|")
    done_mode, _, last = rest.partition("|")
    return last if done_target == target.value and done_mode == mode.value and last else None


def forget_task_state(state: StateStore, tenant_id: str, user_id: str) -> None:
    """Everything the task sync keeps about a user (links, cursors): for disconnecting a user. Quarantine
    entries live in the user's own list and go with it."""
    partition = task_partition(user_id)
    for link in list(state.iter_links(tenant_id, partition)):
        try:
            state.delete_link(link)
        except (ConcurrencyError, NotFoundError):
            continue
    for key in (partition, *(target_cursor_key(user_id, t) for t in TaskTarget)):
        cursor = state.get_cursor(tenant_id, key)
        if cursor.etag is not None:
            state.save_cursor(Cursor(tenant_id=tenant_id, user_id=key, etag=cursor.etag))

