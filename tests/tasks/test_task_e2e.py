"""The task sync end to end: Table Storage on Azurite, msgraph-sdk against the Microsoft 365 emulator over HTTP,
run by sync_user exactly as the worker runs it (contacts, then tasks)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from bench.tasks import TaskRig, is_task_request, make_task_rig
from devhost.azurite import Azurite
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.domain.models import (
    DEFAULT_IMPORT_ACCOUNT,
    AllDayReminder,
    RunOutcome,
    TaskStatus,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.kinds.tasks.mapping import APP_NAME

# A fixed "today" for the runs: the calendar window and the due dates below do not depend on the machine's clock.
TODAY = datetime(2026, 10, 20, 9, 0, tzinfo=UTC)


def clock(start: datetime = TODAY) -> Callable[[], datetime]:
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


@pytest.fixture
def rig(azurite: Azurite, emulator: EmulatorProcess, emulator_control: ControlClient,
        storage_prefix: str) -> Iterator[TaskRig]:
    yield make_task_rig(azurite, emulator.graph, emulator_control, storage_prefix, time_zone="Europe/London")


def writes(run: Any) -> tuple[int, ...]:
    return (run.microsoft.created, run.microsoft.updated, run.microsoft.deleted, run.crm.created, run.crm.updated)


def utc(value: dict[str, str]) -> datetime:
    assert value["timeZone"] == "UTC", value
    return datetime.fromisoformat(value["dateTime"][:19]).replace(tzinfo=UTC)


def test_todo_pushes_pulls_and_deletes_per_the_replication_rules(rig: TaskRig) -> None:
    rig.configure(all_day_reminder=AllDayReminder.DAY_BEFORE, all_day_reminder_time="09:00", timed_reminder_minutes=30)
    summer = rig.task(subject="Renew contract", description="Line one\nLine two", due_date=date(2027, 6, 15))
    timed = rig.task(subject="Call Ada", due_at=datetime(2027, 3, 30, 8, 0, tzinfo=UTC))
    rig.task(assigned_to="someone-else", subject="Not mine")
    run = rig.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert run.microsoft.created == 2
    assert any(line.startswith("tasks (todo): Microsoft created 2") for line in run.log)
    items = {link["externalId"]: item for item in rig.todo_items() for link in item.get("linkedResources", [])
             if link["applicationName"] == APP_NAME}
    assert set(items) == {summer.id, timed.id}
    assert utc(items[summer.id]["dueDateTime"]) == datetime(2027, 6, 14, 23, 0, tzinfo=UTC)  # midnight BST
    assert utc(items[summer.id]["reminderDateTime"]) == datetime(2027, 6, 14, 8, 0, tzinfo=UTC)  # 09:00 the day before
    assert items[summer.id]["body"] == {"content": "Line one\nLine two", "contentType": "text"}
    assert utc(items[timed.id]["reminderDateTime"]) == datetime(2027, 3, 30, 7, 30, tzinfo=UTC)  # 30 minutes before
    assert items[timed.id]["isReminderOn"] is True

    # Nothing changed: one Graph request for tasks (the list's delta), nothing written.
    since = rig.control.last_request_seq()
    quiet = rig.sync()
    assert writes(quiet) == (0, 0, 0, 0, 0)
    task_requests = [r for r in rig.graph_requests(since) if is_task_request(r)]
    assert len(task_requests) == 1 and "/tasks/delta" in task_requests[0]["path"], task_requests

    # The person in To Do: completes and renames one, adds one (HTML body), deletes one.
    list_id = rig.todo_list_id()
    with rig.outlook() as client:
        assert client.patch(f"/me/todo/lists/{list_id}/tasks/{items[summer.id]['id']}",
                            json={"title": "Renew contract (signed)", "status": "completed"}).status_code == 200
        made = client.post(f"/me/todo/lists/{list_id}/tasks",
                           json={"title": "Order stamps", "body": {"contentType": "html",
                                                                   "content": "<p>Two <b>books</b></p><script>x()</script>"},
                                 "dueDateTime": {"dateTime": "2027-01-05T00:00:00", "timeZone": "UTC"}})
        assert made.status_code == 201
        assert client.delete(f"/me/todo/lists/{list_id}/tasks/{items[timed.id]['id']}").status_code == 204
    run = rig.sync()
    assert (run.crm.updated, run.crm.created, run.microsoft.created) == (1, 1, 0), run
    crm = {t.subject: t for t in rig.crm_tasks()}
    assert crm["Renew contract (signed)"].status is TaskStatus.DONE
    assert crm["Renew contract (signed)"].due_date == date(2027, 6, 15)
    assert "Call Ada" in crm  # deleted in To Do: the CRM keeps it
    stamps = crm["Order stamps"]
    assert (stamps.description, stamps.due_date, stamps.assigned_to) == ("Two books", date(2027, 1, 5),
                                                                         rig.settings.user_id)
    account = rig.base.crm.get_accounts(rig.settings.tenant_id, [stamps.account_id])[stamps.account_id]
    assert account.name == DEFAULT_IMPORT_ACCOUNT
    assert sorted(i["title"] for i in rig.todo_items()) == ["Order stamps", "Renew contract (signed)"]

    # A CRM delete removes the To Do task.
    rig.base.crm.delete_task(rig.settings.tenant_id, summer.id)
    run = rig.sync()
    assert run.microsoft.deleted == 1
    assert [i["title"] for i in rig.todo_items()] == ["Order stamps"]


def test_an_expired_delta_link_resyncs_without_duplicates(rig: TaskRig) -> None:
    for i in range(3):
        rig.task(subject=f"Task {i}", due_date=date(2027, 2, 1 + i))
    rig.sync()
    with rig.outlook() as client:
        assert client.post(f"/me/todo/lists/{rig.todo_list_id()}/tasks", json={"title": "From To Do"}).status_code == 201
    rig.sync()
    rig.control.expire_delta_tokens(rig.base.mailbox["id"])
    run = rig.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert any("todo deltaLink expired" in line for line in run.log)
    assert writes(run) == (0, 0, 0, 0, 0)
    assert len(rig.todo_items()) == 4 and len(rig.crm_tasks()) == 4


def test_calendar_events_all_day_timed_recurring_and_window_moves(rig: TaskRig) -> None:
    rig.configure(task_target=TaskTarget.CALENDAR, time_zone="America/New_York", event_duration_minutes=45,
                  timed_reminder_minutes=15)
    now = clock()
    dst_day = rig.task(subject="Clocks go forward", due_date=date(2027, 3, 14))
    fold = rig.task(subject="Second 01:30", due_at=datetime(2026, 11, 1, 6, 30, tzinfo=UTC))  # 01:30 EST
    rig.task(subject="Someday")
    run = rig.sync(now)
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 2, run
    events = {e["subject"]: e for e in rig.events()}
    assert set(events) == {"Clocks go forward", "Second 01:30"}
    day = events["Clocks go forward"]
    assert day["isAllDay"] is True and day["originalStartTimeZone"] == "America/New_York"
    assert (day["start"]["dateTime"][:19], day["end"]["dateTime"][:19]) == ("2027-03-14T00:00:00", "2027-03-15T00:00:00")
    timed = events["Second 01:30"]
    assert utc(timed["start"]) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert utc(timed["end"]) - utc(timed["start"]) == timedelta(minutes=45)
    assert (timed["isReminderOn"], timed["reminderMinutesBeforeStart"]) == (True, 15)
    assert all(e["attendees"] == [] for e in events.values())  # nobody is ever invited

    # The person's own events: a daily series of three and a single event, all inside the window.
    with rig.outlook() as client:
        series = {"subject": "Stand-up", "start": {"dateTime": "2026-11-02T09:00:00", "timeZone": "America/New_York"},
                  "end": {"dateTime": "2026-11-02T09:15:00", "timeZone": "America/New_York"},
                  "recurrence": {"pattern": {"type": "daily", "interval": 1},
                                 "range": {"type": "numbered", "startDate": "2026-11-02", "numberOfOccurrences": 3}}}
        assert client.post("/me/events", json=series).status_code == 201
        single = {"subject": "Lunch", "start": {"dateTime": "2026-11-10T12:00:00", "timeZone": "UTC"},
                  "end": {"dateTime": "2026-11-10T13:00:00", "timeZone": "UTC"}}
        assert client.post("/me/events", json=single).status_code == 201
    run = rig.sync(now)
    assert run.crm.created == 4, run
    standups = sorted((t for t in rig.crm_tasks() if t.subject == "Stand-up"), key=lambda t: t.due_at or TODAY)
    assert [t.due_at for t in standups] == [datetime(2026, 11, 2 + i, 14, 0, tzinfo=UTC) for i in range(3)]

    # Occurrences keep their ids: an expired delta link, and the window moving on, never import them twice.
    rig.control.expire_delta_tokens(rig.base.mailbox["id"])
    assert writes(rig.sync(now)) == (0, 0, 0, 0, 0)
    later = clock(TODAY + timedelta(days=9))
    moved = rig.sync(later)
    assert writes(moved) == (0, 0, 0, 0, 0), moved
    assert len(rig.crm_tasks()) == 7

    # One delta round when nothing changed.
    since = rig.control.last_request_seq()
    rig.sync(later)
    assert [r["path"].split("?")[0] for r in rig.graph_requests(since) if is_task_request(r)] == ["/me/calendarView/delta"]

    # Deleted in Outlook: the CRM keeps it. Deleted in the CRM: the event goes.
    with rig.outlook() as client:
        assert client.delete(f"/me/events/{events['Clocks go forward']['id']}").status_code == 204
    rig.base.crm.delete_task(rig.settings.tenant_id, fold.id)
    run = rig.sync(later)
    assert run.microsoft.deleted == 1 and dst_day.id in {t.id for t in rig.crm_tasks()}
    assert "Second 01:30" not in {e["subject"] for e in rig.events()}


def test_switching_the_target_moves_the_tasks_and_leaves_nothing_behind(rig: TaskRig) -> None:
    now = clock()
    for i in range(4):
        rig.task(subject=f"Task {i}", due_date=date(2026, 12, 1 + i))
    rig.task(subject="No day")
    rig.sync(now)
    with rig.outlook() as client:
        client.post(f"/me/todo/lists/{rig.todo_list_id()}/tasks",
                    json={"title": "Made in To Do", "dueDateTime": {"dateTime": "2026-12-24T00:00:00", "timeZone": "UTC"}})
    rig.sync(now)
    assert len(rig.todo_items()) == 6
    rig.configure(task_target=TaskTarget.CALENDAR)
    run = rig.sync(now)
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert rig.todo_items() == []
    assert sorted(e["subject"] for e in rig.events()) == ["Made in To Do", "Task 0", "Task 1", "Task 2", "Task 3"]
    assert len(rig.crm_tasks()) == 6  # no loss, no duplicate
    rig.configure(task_target=TaskTarget.TO_DO)
    rig.sync(now)
    assert rig.events() == []
    assert sorted(i["title"] for i in rig.todo_items()) == ["Made in To Do", "No day", "Task 0", "Task 1", "Task 2",
                                                            "Task 3"]
    assert writes(rig.sync(now)) == (0, 0, 0, 0, 0)


def test_the_import_account_setting_and_its_rename(rig: TaskRig) -> None:
    rig.configure(task_import_account="Tasks from Outlook")
    rig.sync()
    list_id = rig.todo_list_id()
    with rig.outlook() as client:
        client.post(f"/me/todo/lists/{list_id}/tasks", json={"title": "First"})
    rig.sync()
    rig.configure(task_import_account="Inbox tasks")
    with rig.outlook() as client:
        client.post(f"/me/todo/lists/{list_id}/tasks", json={"title": "Second"})
    rig.sync()
    accounts = {a.id: a.name for a in rig.base.crm.list_accounts(rig.settings.tenant_id)}
    assert {t.subject: accounts[t.account_id] for t in rig.crm_tasks()} == {"First": "Tasks from Outlook",
                                                                            "Second": "Inbox tasks"}


@pytest.mark.parametrize("target", [TaskTarget.TO_DO, TaskTarget.CALENDAR])
def test_a_create_whose_answer_is_lost_is_found_again_not_repeated(rig: TaskRig, target: TaskTarget) -> None:
    rig.configure(task_target=target)
    now = clock()
    task = rig.task(subject="Exactly once", due_date=date(2026, 12, 3))
    path = r"/todo/lists/[^/]+/tasks$" if target is TaskTarget.TO_DO else r"/calendar/events$"
    # The create happens in Microsoft, but its answer inside the $batch is a gateway timeout.
    rig.control.add_fault(path_regex=path, method="POST", in_batch=True, status=504, after=True, times=1)
    try:
        first = rig.sync(now)
    finally:
        rig.control.clear_faults()
    assert first.outcome is RunOutcome.PARTIAL, first
    second = rig.sync(now)
    assert second.outcome is RunOutcome.SUCCEEDED, second
    assert any("found in" in line and "not created twice" in line for line in second.log), second.log
    shown = rig.todo_items() if target is TaskTarget.TO_DO else rig.events()
    assert len(shown) == 1 and rig.crm_tasks() == [rig.base.crm.get_tasks(rig.settings.tenant_id, [task.id])[task.id]]


def test_a_meeting_is_followed_but_never_changed_or_deleted(rig: TaskRig) -> None:
    rig.configure(task_target=TaskTarget.CALENDAR)
    now = clock()
    with rig.outlook() as client:
        made = client.post("/me/events", json={
            "subject": "Quarterly review", "start": {"dateTime": "2026-11-12T15:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-11-12T16:00:00", "timeZone": "UTC"},
            "attendees": [{"emailAddress": {"address": "guest@example.com"}, "type": "required"}]})
        assert made.status_code == 201
        meeting = made.json()
    assert rig.sync(now).crm.created == 1
    (task,) = rig.crm_tasks()
    assert (task.subject, task.due_at) == ("Quarterly review", datetime(2026, 11, 12, 15, 0, tzinfo=UTC))
    # Moved in Outlook: the CRM follows.
    with rig.outlook() as client:
        assert client.patch(f"/me/events/{meeting['id']}", json={
            "start": {"dateTime": "2026-11-13T15:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-11-13T16:00:00", "timeZone": "UTC"}}).status_code == 200
    assert rig.sync(now).crm.updated == 1
    # Edited, then deleted in the CRM: Outlook would tell the attendees, so the meeting is left as it is.
    current = rig.base.crm.get_tasks(rig.settings.tenant_id, [task.id])[task.id]
    assert current.due_at == datetime(2026, 11, 13, 15, 0, tzinfo=UTC)
    rig.base.crm.update_task(current.model_copy(update={"subject": "Renamed in the CRM"}))
    edited = rig.sync(now)
    assert (edited.microsoft.updated, edited.microsoft.deleted) == (0, 0)
    rig.base.crm.delete_task(rig.settings.tenant_id, task.id)
    deleted = rig.sync(now)
    assert (deleted.microsoft.updated, deleted.microsoft.deleted) == (0, 0)
    (still,) = [e for e in rig.events() if e["id"] == meeting["id"]]
    assert still["subject"] == "Quarterly review" and len(still["attendees"]) == 1
    # Never imported again (the deleted task does not come back), even after a full resync.
    rig.control.expire_delta_tokens(rig.base.mailbox["id"])
    assert rig.sync(now).crm.created == 0 and rig.crm_tasks() == []


def test_reminder_choices_reach_outlook_and_anything_else_is_refused(rig: TaskRig) -> None:
    rig.configure(task_target=TaskTarget.CALENDAR)
    now = clock()
    shown: dict[str, Any] = {}
    for minutes in (None, 0, 5, 60, 10080):
        rig.configure(timed_reminder_minutes=minutes)
        rig.task(subject=f"Reminder {minutes}", due_at=datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
        rig.sync(now)
    for event in rig.events():
        shown[event["subject"]] = (event["isReminderOn"], event["reminderMinutesBeforeStart"] if event["isReminderOn"]
                                   else None)
    assert shown == {"Reminder None": (False, None), "Reminder 0": (True, 0), "Reminder 5": (True, 5),
                     "Reminder 60": (True, 60), "Reminder 10080": (True, 10080)}
    with pytest.raises(ValidationError, match="choose one of Outlook's reminders: Don't remind me, At time of event"):
        UserSyncSettings.model_validate({**rig.settings.model_dump(), "timed_reminder_minutes": 10})
