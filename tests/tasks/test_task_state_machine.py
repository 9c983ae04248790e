"""A hypothesis state machine over the fake CRM, the fake To Do/calendar and the fake state store: random
edits on both sides in both targets, target switches, reassignments, injected failures and crashes, syncs.

After every step: no CRM task is ever deleted by the sync, and no Microsoft item is created twice for one
CRM task (in either target). At the end, with the failures off, one settling sync brings both sides in line:
every linked pair agrees on what the target holds, every dated task of the user is in the current target
(or was removed there by the user), nothing of ours is left in the other target, and a further sync writes
nothing at all.
"""
from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from task_world import TENANT, USER, TaskWorld

from sync_core.domain.errors import ConcurrencyError, ThrottledError, TransientError
from tests.support.fakes import CALENDAR, SimulatedCrash
from sync_core.domain.models import LinkState, TaskStatus, TaskTarget
from sync_core.kinds.tasks.mapping import TASK_ID_PROPERTY, crm_to_task_fields, decode_synced, project, user_zone
from sync_core.kinds.tasks.planner import import_task_id, split_ms_key

SUBJECTS = st.sampled_from(["Call", "Email", "Visit", "", "Quote  follow-up\t"])
DAYS = st.one_of(st.none(), st.sampled_from([date(2026, 3, 29), date(2026, 3, 2), date(2026, 10, 25)]))
TIMES = st.sampled_from([datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2026, 3, 5, 14, 15, tzinfo=UTC),
                         datetime(2026, 10, 25, 0, 30, tzinfo=UTC)])


class TaskMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = TaskWorld()
        self.created_in_crm: set[str] = set()
        self.deleted_in_crm: set[str] = set()
        self.crm_deletes = 0

    # --- helpers
    def crm_ids(self) -> list[str]:
        return [t.id for t in self.world.crm_tasks()]

    def target_where(self) -> str | None:
        if self.world.user.task_target is TaskTarget.CALENDAR:
            return CALENDAR
        lists = [i for i, name in self.world.ms.lists.items() if name != "Tasks"]
        return lists[0] if lists else None

    def target_ids(self) -> list[str]:
        where = self.target_where()
        return sorted(self.world.ms.items_in(where)) if where else []

    # --- the CRM user
    @rule(subject=SUBJECTS, day=DAYS, at=st.one_of(st.none(), TIMES), mine=st.booleans())
    def crm_create(self, subject: str, day: date | None, at: datetime | None, mine: bool) -> None:
        values: dict[str, Any] = {"subject": subject}
        if at is not None:
            values["due_at"] = at
        else:
            values["due_date"] = day
        made = self.world.task(assigned_to=USER if mine else "user-2", **values)
        self.created_in_crm.add(made.id)

    @precondition(lambda self: self.crm_ids())
    @rule(data=st.data(), subject=SUBJECTS, day=DAYS, done=st.booleans())
    def crm_edit(self, data: st.DataObject, subject: str, day: date | None, done: bool) -> None:
        crm_id = data.draw(st.sampled_from(self.crm_ids()))
        task = self.world.crm.tasks[(TENANT, crm_id)]
        change: dict[str, Any] = {"subject": subject, "status": TaskStatus.DONE if done else TaskStatus.OPEN}
        if task.due_at is None:
            change["due_date"] = day
        self.world.crm.edit_task(TENANT, crm_id, **change)

    @precondition(lambda self: self.crm_ids())
    @rule(data=st.data(), mine=st.booleans())
    def crm_reassign(self, data: st.DataObject, mine: bool) -> None:
        crm_id = data.draw(st.sampled_from(self.crm_ids()))
        self.world.crm.edit_task(TENANT, crm_id, assigned_to=USER if mine else "user-2")

    @precondition(lambda self: self.crm_ids())
    @rule(data=st.data())
    def crm_delete(self, data: st.DataObject) -> None:
        crm_id = data.draw(st.sampled_from(self.crm_ids()))
        self.world.crm.remove_task(TENANT, crm_id)
        self.deleted_in_crm.add(crm_id)
        self.crm_deletes += 1

    # --- the Microsoft user
    @precondition(lambda self: self.target_where() is not None)
    @rule(subject=SUBJECTS, day=st.sampled_from([date(2026, 3, 3), date(2026, 3, 29)]), meeting=st.booleans())
    def ms_create(self, subject: str, day: date, meeting: bool) -> None:
        where = self.target_where()
        assert where is not None
        if where == CALENDAR:
            attendees = [{"emailAddress": {"address": "guest@example.com"}, "type": "required"}] if meeting else []
            self.world.ms.user_create(where, subject=subject, isAllDay=True, attendees=attendees,
                                      start={"dateTime": f"{day}T00:00:00", "timeZone": "UTC"},
                                      end={"dateTime": f"{day + timedelta(days=1)}T00:00:00", "timeZone": "UTC"})
        else:
            self.world.ms.user_create(where, title=subject,
                                      dueDateTime={"dateTime": f"{day}T00:00:00", "timeZone": "UTC"})

    @precondition(lambda self: self.target_ids())
    @rule(data=st.data(), subject=SUBJECTS, done=st.booleans())
    def ms_edit(self, data: st.DataObject, subject: str, done: bool) -> None:
        ms_id = data.draw(st.sampled_from(self.target_ids()))
        if self.world.user.task_target is TaskTarget.CALENDAR:
            self.world.ms.user_edit(ms_id, subject=subject)
        else:
            self.world.ms.user_edit(ms_id, title=subject, status="completed" if done else "notStarted")

    @precondition(lambda self: self.target_ids())
    @rule(data=st.data())
    def ms_delete(self, data: st.DataObject) -> None:
        self.world.ms.user_delete(data.draw(st.sampled_from(self.target_ids())))

    @rule()
    def switch_target(self) -> None:
        now = self.world.user.task_target
        self.world.configure(task_target=TaskTarget.CALENDAR if now is TaskTarget.TO_DO else TaskTarget.TO_DO)

    # --- failures and syncs
    @rule(kind=st.sampled_from(["create-timeout", "create-crash", "update-transient", "delete-transient", "throttle",
                                "delta-expired", "link-crash", "crm-race", "crm-import-crash", "item-500"]))
    def inject_failure(self, kind: str) -> None:
        ms, crm, state = self.world.ms, self.world.crm, self.world.state
        if kind == "create-timeout":
            ms.faults.inject("create_tasks", TransientError("timeout"), after_write=True)
        elif kind == "create-crash":
            ms.faults.inject("create_tasks", SimulatedCrash(), after_write=True)
        elif kind == "update-transient":
            ms.faults.inject("update_tasks", TransientError("503"))
        elif kind == "delete-transient":
            ms.faults.inject("delete_tasks", TransientError("timeout"), after_write=True)
        elif kind == "throttle":
            ms.faults.inject("create_tasks", ThrottledError("429", retry_after=2.0), times=5)
        elif kind == "delta-expired":
            ms.expire_delta()
        elif kind == "link-crash":
            state.faults.inject("save_link", SimulatedCrash(), when=lambda link: link.state is LinkState.LINKED)
        elif kind == "crm-race":
            crm.faults.inject("update_task", ConcurrencyError("lost a race"))
        elif kind == "crm-import-crash":
            crm.faults.inject("create_task", SimulatedCrash(), after_write=True)
        elif kind == "item-500":
            for ms_id in self.target_ids()[:2]:
                ms.fail_item(ms_id, 500, error="server error")

    @rule()
    def sync(self) -> None:
        try:
            self.world.sync()
        except SimulatedCrash:
            pass  # the process died; the next run must pick up the pieces

    # --- always true
    @invariant()
    def no_crm_task_is_lost(self) -> None:
        assert self.created_in_crm - self.deleted_in_crm <= set(self.crm_ids())
        assert self.world.crm.calls["delete_task"] == 0  # the sync never deletes CRM tasks

    @invariant()
    def no_attendee_is_ever_told_anything(self) -> None:
        assert self.world.ms.attendee_notices == 0  # a meeting is never changed or deleted by the sync

    def tags(self) -> Counter[tuple[str, str]]:
        """(container, CRM id) of every item of ours."""
        tags: Counter[tuple[str, str]] = Counter()
        for item in self.world.ms.items.values():
            for prop in item.get("singleValueExtendedProperties") or []:
                if prop["id"] == TASK_ID_PROPERTY:
                    tags[(item["_in"], prop["value"])] += 1
            for link in item.get("linkedResources") or []:
                tags[(item["_in"], link["externalId"])] += 1
        return tags

    @invariant()
    def no_microsoft_item_is_created_twice(self) -> None:
        # (During a target switch a task is in both targets until its new item is confirmed: created first,
        # the old one deleted after. Once settled, the teardown checks that nothing is left in the old one.)
        tags = self.tags()
        assert all(count == 1 for count in tags.values()), tags

    # --- at the end
    def teardown(self) -> None:
        world = self.world
        world.ms.clear_faults()
        world.crm.faults.clear()
        world.state.faults.clear()
        world.sync()
        self.check_agreement()
        self.check_second_sync_writes_nothing()

    def check_agreement(self) -> None:
        world = self.world
        target = world.user.task_target
        where = self.target_where()
        here = world.ms.items_in(where) if where else {}
        links = {link.crm_id: link for link in world.links()}
        zone = user_zone(world.user)
        assert all(link.state is not LinkState.PENDING_CREATE for link in links.values())
        def meeting(graph_id: str) -> bool:
            return bool(world.ms.items.get(graph_id, {}).get("attendees"))

        crm_ids = Counter(crm_id for _, crm_id in self.tags())
        assert all(count == 1 for count in crm_ids.values()), ("one item per task across both targets", crm_ids)
        linked = [split_ms_key(link.ms_id) for link in links.values() if link.state is LinkState.LINKED and link.ms_id]
        flagged = {link.ms_id for link in links.values() if (synced := decode_synced(link.synced_hash)) and synced.meeting}
        assert all(t is target or f"{t.value}:{g}" in flagged for t, g in linked), "all but meetings moved"
        mine = sorted(g for t, g in linked if t is target)
        assert len(mine) == len(set(mine)) and set(mine) <= set(here), ("linked once", mine, sorted(here))
        crm_ids_now = {t.id for t in world.crm_tasks()}
        for graph_id in set(here) - set(mine):
            # Not linked: only one of the user's own items that was imported, whose pairing a crash during a
            # target switch lost (it pairs with its task again at the next full round, never imported twice).
            item = here[graph_id]
            assert not item.get("linkedResources") and not item.get("singleValueExtendedProperties"), item
            assert import_task_id(TENANT, USER, f"{target.value}:{graph_id}") in crm_ids_now, ("unlinked", item, links)
        others = [CALENDAR] if target is TaskTarget.CALENDAR else []
        others = [w for w in [CALENDAR, *world.ms.lists] if w != where and w != "default-tasks"]
        for elsewhere in others:  # the user's own items there are theirs; nothing of ours is left behind
            for item in world.ms.items_in(elsewhere).values():
                assert not item.get("linkedResources") and not item.get("singleValueExtendedProperties"), item
        for task in world.crm_tasks():
            link = links.get(task.id)
            fields = crm_to_task_fields(task, zone)
            placeable = target is TaskTarget.TO_DO or fields.due_date is not None
            if task.assigned_to != USER or not placeable:
                assert link is None or link.state is LinkState.MS_REMOVED or link.ms_id in flagged, task
                continue
            assert link is not None, f"{task.id} of the user is synced"
            if link.state is LinkState.LINKED:
                linked_target, graph_id = split_ms_key(link.ms_id or "")
                if link.ms_id in flagged:
                    continue  # a meeting is followed, never written: the CRM may hold edits it does not
                assert world.ms.task(graph_id).fields == project(fields, target), task

    def check_second_sync_writes_nothing(self) -> None:
        world = self.world

        def writes() -> tuple[int, ...]:
            return (world.ms.items_written, sum(world.crm.calls[m] for m in ("create_task", "update_task", "create_account")),
                    world.state.calls["save_link"] + world.state.calls["delete_link"])

        before = writes()
        run = world.sync()
        assert writes() == before, run.log


# No "explain" phase: its line tracer makes a failing run take minutes on Python 3.11.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
TaskMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestTaskMachine = TaskMachine.TestCase


def test_long_runs_reproducibly() -> None:
    run_state_machine_as_test(TaskMachine, settings=settings(
        max_examples=8, stateful_step_count=60, deadline=None, database=None, derandomize=True, phases=PHASES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
