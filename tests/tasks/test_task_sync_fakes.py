"""Task sync scenarios on the fakes (fast): every replication rule, both targets, a target switch, the
import account, expired delta links, lost creates, reassignment, the mass-delete guard."""
from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from task_world import TENANT, USER, TaskWorld

from sync_core.domain.errors import TransientError
from tests.support.fakes import CALENDAR, SimulatedCrash
from sync_core.domain.models import DEFAULT_IMPORT_ACCOUNT, LinkState, RunOutcome, SyncMode, TaskStatus, TaskTarget
from sync_core.kinds.tasks.mapping import APP_NAME
from sync_core.kinds.tasks.run import forget_task_state, target_cursor_key, task_partition


def counts(run: Any) -> tuple[int, ...]:
    return (run.microsoft.created, run.microsoft.updated, run.microsoft.deleted, run.crm.created, run.crm.updated)


def test_first_sync_pushes_the_users_tasks_to_todo_and_a_second_sync_writes_nothing(world: TaskWorld,
                                                                                      no_writes: Any) -> None:
    call = world.task(subject="Call Ada", description="About the order", due_date=date(2026, 3, 30))
    timed = world.task(subject="Meet Bob", due_at=datetime(2026, 3, 30, 13, 30, tzinfo=UTC))
    world.task(assigned_to="user-2", subject="Not mine")
    run = world.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert counts(run) == (2, 0, 0, 0, 0)
    items = {t.crm_id: t for t in world.todo_items().values()}
    assert set(items) == {call.id, timed.id}
    assert items[call.id].fields.due_date == date(2026, 3, 30)
    assert items[timed.id].fields.due_date == date(2026, 3, 30)
    assert any("tasks (todo): Microsoft created 2" in line for line in run.log)
    no_writes(world)
    again = world.sync()
    assert counts(again) == (0, 0, 0, 0, 0) and again.outcome is RunOutcome.SUCCEEDED


def test_todo_edits_and_new_tasks_reach_the_crm_and_deletes_follow_the_rules(world: TaskWorld) -> None:
    ada = world.task(subject="Call Ada", due_date=date(2026, 4, 1))
    bob = world.task(subject="Call Bob")
    world.sync()
    by_crm = {t.crm_id: ms_id for ms_id, t in world.todo_items().items()}
    world.ms.user_edit(by_crm[ada.id], title="Call Ada today", status="completed")
    world.ms.user_create(world.todo_list(), title="Buy stamps", body={"content": "<p>Two</p>", "contentType": "html"})
    world.ms.user_delete(by_crm[bob.id])
    run = world.sync()
    assert (run.crm.updated, run.crm.created, run.microsoft.created) == (1, 1, 0), run
    tasks = {t.subject: t for t in world.crm_tasks()}
    assert tasks["Call Ada today"].status is TaskStatus.DONE
    assert tasks["Call Ada today"].due_date == date(2026, 4, 1)
    assert "Call Bob" in tasks  # a delete in To Do never deletes CRM data
    stamps = tasks["Buy stamps"]
    assert stamps.description == "Two" and stamps.assigned_to == USER
    account = world.crm.get_accounts(TENANT, [stamps.account_id])[stamps.account_id]
    assert account.name == DEFAULT_IMPORT_ACCOUNT
    # Bob's task is not pushed back until it is edited in the CRM; then it is.
    assert sorted(t.fields.subject for t in world.todo_items().values()) == ["Buy stamps", "Call Ada today"]
    world.crm.edit_task(TENANT, bob.id, subject="Call Bob again")
    world.sync()
    assert {t.fields.subject for t in world.todo_items().values()} >= {"Call Bob again"}
    # A CRM delete removes the item from To Do.
    world.crm.remove_task(TENANT, ada.id)
    run = world.sync()
    assert run.microsoft.deleted == 1
    assert ada.id not in {t.crm_id for t in world.todo_items().values()}


def test_calendar_target_all_day_and_timed_events_and_no_due_date_stays_out(world: TaskWorld) -> None:
    world.configure(task_target=TaskTarget.CALENDAR, event_duration_minutes=45)
    day = world.task(subject="Renewal", due_date=date(2026, 3, 29))  # the day UK clocks go forward
    timed = world.task(subject="Call", due_at=datetime(2026, 3, 30, 8, 0, tzinfo=UTC))
    world.task(subject="Someday")
    run = world.sync()
    assert run.microsoft.created == 2, run
    events = {e.crm_id: world.ms.items[ms_id] for ms_id, e in world.events().items()}
    assert events[day.id]["isAllDay"] is True
    assert events[day.id]["start"] == {"dateTime": "2026-03-29T00:00:00", "timeZone": "Europe/London"}
    assert events[day.id]["end"] == {"dateTime": "2026-03-30T00:00:00", "timeZone": "Europe/London"}
    assert events[timed.id]["start"] == {"dateTime": "2026-03-30T09:00:00", "timeZone": "Europe/London"}
    assert events[timed.id]["end"] == {"dateTime": "2026-03-30T09:45:00", "timeZone": "Europe/London"}
    assert all(not e.get("attendees") for e in events.values())
    # An event made in Outlook becomes a CRM task; moving it in Outlook moves the CRM task.
    made = world.ms.user_create(CALENDAR, subject="Lunch", isAllDay=False,
                                start={"dateTime": "2026-03-10T12:00:00", "timeZone": "UTC"},
                                end={"dateTime": "2026-03-10T13:00:00", "timeZone": "UTC"})
    world.sync()
    lunch = next(t for t in world.crm_tasks() if t.subject == "Lunch")
    assert lunch.due_at == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    world.ms.user_edit(made, start={"dateTime": "2026-03-11T12:00:00", "timeZone": "UTC"})
    world.sync()
    assert world.crm.get_tasks(TENANT, [lunch.id])[lunch.id].due_at == datetime(2026, 3, 11, 12, 0, tzinfo=UTC)


def test_switching_the_target_moves_every_synced_task_without_duplicates_or_loss(world: TaskWorld) -> None:
    tasks = [world.task(subject=f"Task {i}", due_date=date(2026, 3, 10 + i)) for i in range(5)]
    world.task(subject="No day")
    world.sync()
    assert len(world.todo_items()) == 6
    # An edit in To Do just before the switch is not lost.
    first = next(ms_id for ms_id, t in world.todo_items().items() if t.crm_id == tasks[0].id)
    world.ms.user_edit(first, title="Task 0 (edited in To Do)")
    world.configure(task_target=TaskTarget.CALENDAR)
    run = world.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert world.todo_items() == {}
    events = world.events()
    assert sorted(e.crm_id for e in events.values()) == sorted(t.id for t in tasks)  # "No day" has no place
    assert any(e.fields.subject == "Task 0 (edited in To Do)" for e in events.values())
    assert all(link.ms_id and link.ms_id.startswith("calendar:") for link in world.links())
    assert len(world.crm_tasks()) == 6
    # And back again: everything returns to To Do, the calendar is emptied.
    world.configure(task_target=TaskTarget.TO_DO)
    world.sync()
    assert world.events() == {}
    assert len(world.todo_items()) == 6
    assert world.sync().microsoft.created == 0


def test_a_target_switch_interrupted_by_a_crash_finishes_without_duplicates(world: TaskWorld) -> None:
    tasks = [world.task(subject=f"Task {i}", due_date=date(2026, 3, 10 + i)) for i in range(4)]
    world.sync()
    world.configure(task_target=TaskTarget.CALENDAR)
    world.ms.faults.inject("create_tasks", SimulatedCrash(), after_write=True)
    try:
        world.sync()
    except SimulatedCrash:
        pass
    world.sync()
    events = world.events()
    assert sorted(e.crm_id for e in events.values()) == sorted(t.id for t in tasks)
    assert world.todo_items() == {}


def test_import_account_setting_files_new_imports_and_a_rename_uses_the_new_name(world: TaskWorld) -> None:
    world.configure(task_import_account="Office tasks")
    world.sync()
    world.ms.user_create(world.todo_list(), title="First")
    world.sync()
    world.configure(task_import_account="Renamed inbox")
    world.ms.user_create(world.todo_list(), title="Second")
    world.sync()
    names = {t.subject: world.crm.get_accounts(TENANT, [t.account_id])[t.account_id].name for t in world.crm_tasks()}
    assert names == {"First": "Office tasks", "Second": "Renamed inbox"}
    assert len(world.crm.find_accounts_by_name(TENANT, "Office tasks")) == 1


def test_an_expired_delta_link_resyncs_without_duplicates(world: TaskWorld) -> None:
    for i in range(3):
        world.task(subject=f"Task {i}")
    world.sync()
    world.ms.user_create(world.todo_list(), title="Made in To Do")
    world.sync()
    world.ms.expire_delta()
    run = world.sync()
    assert run.outcome is RunOutcome.SUCCEEDED
    assert any("deltaLink expired" in line for line in run.log)
    assert counts(run) == (0, 0, 0, 0, 0)
    assert len(world.todo_items()) == 4 and len(world.crm_tasks()) == 4


def test_microsoft_to_crm_a_crm_delete_stays_deleted_after_a_full_resync(world: TaskWorld) -> None:
    """As for contacts: a task deleted in the CRM in microsoft_to_crm is not imported again when its
    unchanged To Do item shows up in a full round; it is when the item is edited in To Do."""
    world.configure(mode=SyncMode.MICROSOFT_TO_CRM)
    world.sync()
    item = world.ms.user_create(world.todo_list(), title="Made in To Do")
    world.sync()
    (task,) = world.crm_tasks()
    world.crm.remove_task(TENANT, task.id)
    world.sync()
    world.ms.expire_delta()
    run = world.sync()
    assert world.crm_tasks() == [] and run.crm.created == 0
    assert list(world.todo_items()) == [item]
    world.ms.user_edit(item, title="Made in To Do, edited")
    world.sync()
    (back,) = world.crm_tasks()
    assert back.subject == "Made in To Do, edited"


def test_a_create_whose_answer_was_lost_is_found_again_not_repeated(world: TaskWorld) -> None:
    task = world.task(subject="Once only")
    world.ms.faults.inject("create_tasks", TransientError("timeout"), after_write=True)
    first = world.sync()
    assert first.outcome is RunOutcome.PARTIAL
    links = world.links()
    assert [link.state for link in links] == [LinkState.PENDING_CREATE]
    second = world.sync()
    assert second.outcome is RunOutcome.SUCCEEDED, second
    items = world.todo_items()
    assert [t.crm_id for t in items.values()] == [task.id]
    raw = world.ms.items[next(iter(items))]
    assert raw["linkedResources"][0]["applicationName"] == APP_NAME


def test_a_task_given_to_someone_else_leaves_the_users_microsoft_365(world: TaskWorld) -> None:
    task = world.task(subject="Handover", due_date=date(2026, 3, 20))
    world.sync()
    world.crm.edit_task(TENANT, task.id, assigned_to="user-2")
    run = world.sync()
    assert run.microsoft.deleted == 1
    assert world.todo_items() == {}
    assert world.links() == []


def test_the_mass_delete_guard_holds_back_a_sudden_wipe(world: TaskWorld) -> None:
    tasks = [world.task(subject=f"Task {i}") for i in range(30)]
    world.sync()
    for task in tasks:
        world.crm.remove_task(TENANT, task.id)
    run = world.sync()
    assert run.outcome is RunOutcome.PARTIAL
    assert any("mass-delete guard" in line for line in run.log)
    assert len(world.todo_items()) == 30


def test_forget_task_state_leaves_nothing_and_a_reconnect_starts_afresh(world: TaskWorld) -> None:
    world.task(subject="Kept in the CRM", due_date=date(2026, 3, 20))
    world.sync()
    forget_task_state(world.state, TENANT, USER)
    assert world.links() == []
    for key in (task_partition(USER), target_cursor_key(USER, TaskTarget.TO_DO)):
        cursor = world.state.get_cursor(TENANT, key)
        assert (cursor.folder_id, cursor.delta_link, cursor.crm_position) == (None, None, 0)
    # As after a disconnect that removed the list: the next sync looks at everything again, once.
    world.ms.delete_list(world.todo_list())
    run = world.sync()
    assert run.microsoft.created == 1 and len(world.todo_items()) == 1
