"""Tasks with bad input from either side, in To Do and in the calendar: empty, huge, unicode, control characters,
HTML bodies, due days at year ends, on 29 February and on DST changes, due times in DST gaps and folds. Always a
synced task (both sides hold the same content, as far as the target can hold it), a quarantined one with its
reason in the run record, or (a calendar without a day to put it on) nothing at all; never a crash."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from devhost.azurite import Azurite
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.domain.errors import InvalidRecordError
from sync_core.domain.models import CrmTask, LinkState, RunOutcome, TaskStatus, TaskTarget
from sync_core.sync.actions import Side
from sync_core.kinds.tasks.executor import crm_record_id
from sync_core.kinds.tasks.mapping import crm_to_task_fields, graph_to_task, project
from sync_core.kinds.tasks.run import task_partition
from tests.badinput.conftest import Rig, make_bad_input_rig
from tests.badinput.strategies import BODY, DAY, TEXT, WALL, ZONES, due
from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401

PROFILE = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                   phases=(Phase.explicit, Phase.generate),
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                          HealthCheck.data_too_large, HealthCheck.large_base_example])


@pytest.fixture(scope="module")
def todo_rig(azurite: Azurite, emulator: EmulatorProcess,  # noqa: F811
             emulator_control: ControlClient) -> Iterator[Rig]:  # noqa: F811
    yield from make_bad_input_rig(azurite, emulator, emulator_control, "bt" + uuid.uuid4().hex[:6],
                                  tasks_enabled=True, task_target=TaskTarget.TO_DO, time_zone="Europe/London")


@pytest.fixture(scope="module")
def calendar_rig(azurite: Azurite, emulator: EmulatorProcess,  # noqa: F811
                 emulator_control: ControlClient) -> Iterator[Rig]:  # noqa: F811
    yield from make_bad_input_rig(azurite, emulator, emulator_control, "bc" + uuid.uuid4().hex[:6],
                                  tasks_enabled=True, task_target=TaskTarget.CALENDAR, time_zone="America/New_York")


def _item(rig: Rig, target: TaskTarget, graph_id: str) -> dict[str, Any] | None:
    if target is TaskTarget.TO_DO:
        path = f"/todo/lists/{rig.outlook.todo_list_id()}/tasks/{graph_id}"
    else:
        path = f"/events/{graph_id}"
    answer = rig.outlook.request("GET", path)
    return answer.json() if answer.status_code == 200 else None


def _quarantine_reason(rig: Rig, side: str, record_id: str) -> str | None:
    for entry in rig.base.state.list_quarantine(rig.settings.tenant_id, rig.settings.user_id):
        if entry.side == side and entry.record_id == record_id:
            return entry.reason
    return None


def _check_crm_task(rig: Rig, task: CrmTask) -> None:
    target = rig.settings.task_target
    tz = ZoneInfo(rig.settings.time_zone)
    run = rig.sync()
    assert run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.PARTIAL), (run.error, run.log[-10:])
    link = rig.base.state.get_links_by_crm(rig.settings.tenant_id, task_partition(rig.settings.user_id), [task.id]).get(task.id)
    if link is not None and link.state is LinkState.LINKED:
        assert link.ms_id is not None and link.ms_id.startswith(f"{target.value}:")
        item = _item(rig, target, link.ms_id.split(":", 1)[1])
        assert item is not None, "linked to an item that does not exist"
        stored = rig.base.crm.get_tasks(rig.settings.tenant_id, [task.id])[task.id]
        assert project(graph_to_task(target, item, tz).fields, target) == project(crm_to_task_fields(stored, tz), target)
        return
    reason = _quarantine_reason(rig, Side.CRM.value, crm_record_id(task.id))
    if reason is not None:
        assert any(task.id in line for line in run.log), run.log
        return
    # No day for the calendar: nothing to show there, nothing wrong.
    assert target is TaskTarget.CALENDAR and task.due_date is None and task.due_at is None, (link, run.log)


def _crm_task(rig: Rig, subject: str, body: str, when: tuple[date | None, datetime | None], done: bool) -> CrmTask | None:
    due_date, due_at = when
    task = CrmTask(id=uuid.uuid4().hex, tenant_id=rig.settings.tenant_id, account_id=rig.account_id,
                   assigned_to=rig.settings.user_id, subject=subject, description=body, due_date=due_date,
                   due_at=due_at, status=TaskStatus.DONE if done else TaskStatus.OPEN)
    try:
        return rig.base.crm.create_task(task)
    except InvalidRecordError as exc:
        assert str(exc)  # the CRM refuses with a reason and keeps nothing
        assert rig.base.crm.get_tasks(rig.settings.tenant_id, [task.id]) == {}
        return None


@PROFILE
@given(subject=TEXT, body=BODY, when=due(), done=st.booleans())
def test_crm_tasks_reach_to_do_or_are_quarantined(todo_rig: Rig, subject: str, body: str,
                                                  when: tuple[date | None, datetime | None], done: bool) -> None:
    task = _crm_task(todo_rig, subject, body, when, done)
    if task is not None:
        _check_crm_task(todo_rig, task)


@PROFILE
@given(subject=TEXT, body=BODY, when=due())
def test_crm_tasks_reach_the_calendar_or_are_quarantined(calendar_rig: Rig, subject: str, body: str,
                                                         when: tuple[date | None, datetime | None]) -> None:
    task = _crm_task(calendar_rig, subject, body, when, False)
    if task is not None:
        _check_crm_task(calendar_rig, task)


def _check_import(rig: Rig, graph_id: str) -> None:
    target = rig.settings.task_target
    tz = ZoneInfo(rig.settings.time_zone)
    run = rig.sync()
    assert run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.PARTIAL), (run.error, run.log[-10:])
    key = f"{target.value}:{graph_id}"
    link = rig.base.state.get_links_by_ms(rig.settings.tenant_id, task_partition(rig.settings.user_id), [key]).get(key)
    if link is not None:
        tasks = rig.base.crm.get_tasks(rig.settings.tenant_id, [link.crm_id])
        assert link.crm_id in tasks, "a link to a CRM task that was never written"
        item = _item(rig, target, graph_id)
        assert item is not None
        assert project(graph_to_task(target, item, tz).fields, target) == \
            project(crm_to_task_fields(tasks[link.crm_id], tz), target)
        return
    reason = _quarantine_reason(rig, Side.MICROSOFT.value, key) or _quarantine_reason(rig, Side.MICROSOFT.value, graph_id)
    assert reason, (key, run.log)


WINDOWS_OR_IANA = st.sampled_from(["UTC", "GMT Standard Time", "Pacific Standard Time", "Eastern Standard Time",
                                   "Europe/Berlin", "Pacific/Chatham", "Australia/Lord_Howe"])


@PROFILE
@given(title=TEXT, body=BODY, html=st.booleans(), day=st.none() | DAY, zone=WINDOWS_OR_IANA,
       status=st.sampled_from(["notStarted", "completed", "inProgress", "waitingOnOthers", "deferred"]))
def test_to_do_tasks_from_microsoft_are_imported_or_quarantined(todo_rig: Rig, title: str, body: str, html: bool,
                                                                day: date | None, zone: str, status: str) -> None:
    list_id = todo_rig.outlook.todo_list_id()
    document: dict[str, Any] = {"title": title, "status": status,
                                "body": {"content": body, "contentType": "html" if html else "text"}}
    if day is not None:
        document["dueDateTime"] = {"dateTime": f"{day.isoformat()}T00:00:00.0000000", "timeZone": zone}
    made = todo_rig.outlook.request("POST", f"/todo/lists/{list_id}/tasks", document)
    assume(made.status_code == 201)
    _check_import(todo_rig, made.json()["id"])


@PROFILE
@given(subject=TEXT, body=BODY, html=st.booleans(), all_day=st.booleans(), offset=st.integers(-20, 300),
       wall=WALL, zone=st.sampled_from(ZONES + ["Pacific Standard Time", "GMT Standard Time"]))
def test_events_from_microsoft_are_imported_or_quarantined(calendar_rig: Rig, subject: str, body: str, html: bool,
                                                           all_day: bool, offset: int, wall: Any, zone: str) -> None:
    day = datetime.now(ZoneInfo("UTC")).date() + timedelta(days=offset)  # inside the sync's calendar window
    if all_day:
        timing = {"isAllDay": True, "start": {"dateTime": f"{day.isoformat()}T00:00:00", "timeZone": zone},
                  "end": {"dateTime": f"{(day + timedelta(days=1)).isoformat()}T00:00:00", "timeZone": zone}}
    else:
        start = datetime.combine(day, wall.replace(tzinfo=None, microsecond=0))
        timing = {"start": {"dateTime": start.isoformat(), "timeZone": zone},
                  "end": {"dateTime": (start + timedelta(minutes=45)).isoformat(), "timeZone": zone}}
    made = calendar_rig.outlook.request("POST", "/events", {
        "subject": subject, "body": {"content": body, "contentType": "html" if html else "text"}, **timing})
    assume(made.status_code == 201)
    _check_import(calendar_rig, made.json()["id"])
