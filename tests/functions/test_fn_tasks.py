"""Tasks as users meet them: the CRM task screen, the task preview, the task subscription, and what Remove
integration deletes of the task sync's work."""
from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from sync_core.domain.models import CrmTask
from sync_core.domain.subscriptions import Kind
from tests.functions.stack import Stack, WebClient, connect_with_emulator, wait_for, wait_subscribed
from devhost.stack import VALID_FORM


def _user() -> str:
    return "user-" + uuid.uuid4().hex[:8]


def _task_form(csrf: str, account_id: str, **fields: str) -> dict[str, str]:
    return {"csrf": csrf, "account_id": account_id, "subject": "", "assigned_to": "", "description": "",
            "due_kind": "none", "due_date": "", "due_time": "", **fields}


def test_tasks_can_be_created_edited_and_deleted(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    account = stack.services.crm.create_account(tenant, "Tasks & Co", user)
    web.launch(tenant, user)
    csrf = web.csrf("/api/crm/tasks")
    made = web.post_form("/api/crm/tasks", _task_form(csrf, account.id, subject="Call <Ada>", assigned_to=user,
                                                      due_kind="time", due_date="2030-03-31", due_time="09:30"))
    assert made.status_code == 303, made.text
    [task] = stack.services.crm.list_tasks(tenant)
    assert task.due_at == datetime(2030, 3, 31, 9, 30, tzinfo=UTC) and task.due_date is None
    listing = web.follow(made).text
    assert "Call &lt;Ada&gt;" in listing and "31 Mar 2030, 09:30" in listing

    edit = web.get(f"/api/crm/tasks/{task.id}").text
    version = html.unescape(re.search(r'name="version" value="([^"]+)"', edit).group(1))  # type: ignore[union-attr]
    edited = web.post_form(f"/api/crm/tasks/{task.id}", {
        **_task_form(csrf, account.id, subject="Call Ada", assigned_to=user, due_kind="day", due_date="2030-04-01",
                     done="on"), "version": version})
    assert edited.status_code == 303, edited.text
    stored = stack.services.crm.get_tasks(tenant, [task.id])[task.id]
    assert (stored.due_date, stored.due_at, stored.status.value) == (date(2030, 4, 1), None, "done")

    deleted = web.post_form(f"/api/crm/tasks/{task.id}/delete", {"csrf": csrf})
    assert deleted.status_code == 303
    assert stack.services.crm.list_tasks(tenant) == []


def test_invalid_tasks_rerender_with_messages(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    account = stack.services.crm.create_account(tenant, "Tasks & Co", user)
    web.launch(tenant, user)
    csrf = web.csrf("/api/crm/tasks")
    for fields, message in (({"subject": "", "assigned_to": user}, "at least 1 character"),
                            ({"subject": "x", "assigned_to": user, "due_kind": "day"}, "enter the due date"),
                            ({"subject": "x", "assigned_to": user, "due_kind": "time", "due_date": "2030-01-01"},
                             "enter the due time"),
                            ({"subject": "x", "assigned_to": user, "due_kind": "day", "due_date": "31/12/2030"},
                             "date")):
        response = web.post_form("/api/crm/tasks", _task_form(csrf, account.id, **fields))
        assert response.status_code == 400 and message in response.text, (fields, response.text[-2000:])
    assert stack.services.crm.list_tasks(tenant) == []


def _with_tasks(stack: Stack, tenant: str, user: str, due: date = date(2030, 5, 6)) -> None:
    account = stack.services.crm.create_account(tenant, "Planning", user)
    crm = stack.services.crm
    crm.create_task(CrmTask(id="", tenant_id=tenant, account_id=account.id, assigned_to=user,
                            subject="Quarterly <review>", due_date=due))
    crm.create_task(CrmTask(id="", tenant_id=tenant, account_id=account.id, assigned_to=user,
                            subject="Undated note"))
    crm.create_task(CrmTask(id="", tenant_id=tenant, account_id=account.id, assigned_to="someone-else",
                            subject="Not mine", due_date=date(2030, 5, 6)))


def test_the_preview_shows_tasks_as_the_task_mapping_sends_them(stack: Stack, web: WebClient) -> None:
    tenant, user = stack.new_tenant(), _user()
    _with_tasks(stack, tenant, user)
    web.launch(tenant, user)
    todo = web.post_form("/api/settings", {**VALID_FORM, "csrf": web.csrf(), "tasks_enabled": "on",
                                           "time_zone": "Europe/London", "action": "preview"})
    table = re.search(r'<table id="preview-tasks".*?</table>', todo.text, re.S)
    assert table is not None
    assert "<code>dueDateTime</code>" in table.group(0) and "Quarterly &lt;review&gt;" in table.group(0)
    assert "2030-05-06T00:00:00 (Europe/London)" in table.group(0) and "notStarted" in table.group(0)
    assert "Not mine" not in table.group(0)
    calendar = web.post_form("/api/settings", {**VALID_FORM, "csrf": web.csrf(), "tasks_enabled": "on",
                                               "task_target": "calendar", "action": "preview"})
    table = re.search(r'<table id="preview-tasks".*?</table>', calendar.text, re.S)
    assert table is not None
    assert "<code>isAllDay</code>" in table.group(0) and "2030-05-07T00:00:00 (UTC)" in table.group(0)
    assert "not sent: a task without a due date has no place in the calendar" in table.group(0)


def _graph(stack: Stack, ms_user: dict[str, Any], path: str) -> Any:
    token = stack.control.token(ms_user["id"])
    response = httpx.get(stack.emulator.graph + path, headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    response.raise_for_status()
    return response.json()


def _enable_tasks(stack: Stack, web: WebClient, target: str) -> None:
    saved = web.post_form("/api/settings", {**VALID_FORM, "csrf": web.csrf(), "tasks_enabled": "on",
                                            "task_target": target})
    assert saved.status_code == 303


def test_the_task_list_gets_its_subscription_once_the_sync_made_it(stack: Stack, web: WebClient,
                                                                   ms_user: dict[str, Any]) -> None:
    tenant, user = stack.new_tenant(), _user()
    _with_tasks(stack, tenant, user)
    web.launch(tenant, user)
    connect_with_emulator(web, ms_user)
    wait_subscribed(stack, tenant, user)
    _enable_tasks(stack, web, "todo")
    store = stack.services.subscriptions
    record = wait_for(lambda: (r := store.get(tenant, user, Kind.TASKS)) and not r.owed and r, 60,
                      "the To Do list subscription")
    lists = [item for item in _graph(stack, ms_user, "/me/todo/lists")["value"]
             if item["displayName"] == "Really Simple Systems"]
    assert len(lists) == 1 and record.resource == f"/me/todo/lists/{lists[0]['id']}/tasks"
    # Switching tasks off drops the subscription.
    web.post_form("/api/settings", {**VALID_FORM, "csrf": web.csrf()})
    wait_for(lambda: store.get(tenant, user, Kind.TASKS) is None, 30, "the task subscription to go")


def test_remove_integration_deletes_the_events_it_created_and_keeps_the_users_own(
        stack: Stack, web: WebClient, ms_user: dict[str, Any]) -> None:
    tenant, user = stack.new_tenant(), _user()
    _with_tasks(stack, tenant, user, due=datetime.now(UTC).date() + timedelta(days=10))
    web.launch(tenant, user)
    connect_with_emulator(web, ms_user)
    token = stack.control.token(ms_user["id"])
    own = httpx.post(f"{stack.emulator.graph}/me/events", headers={"Authorization": f"Bearer {token}"},
                     trust_env=False, json={"subject": "My own dentist", "start": {"dateTime": _soon(2), "timeZone": "UTC"},
                                            "end": {"dateTime": _soon(2, 1), "timeZone": "UTC"}})
    own.raise_for_status()
    _enable_tasks(stack, web, "calendar")

    def subjects() -> set[str]:
        return {e["subject"] for e in _graph(stack, ms_user, "/me/events?$top=200")["value"]}

    wait_for(lambda: "Quarterly <review>" in subjects(), 60, "the task sync to create its event")
    wait_for(lambda: any(t.subject == "My own dentist" for t in stack.services.crm.list_tasks(tenant)), 60,
             "the user's own event to be imported into the CRM")
    warning = web.get("/api/disconnect").text
    assert "The events this integration created in your Outlook calendar." in warning
    done = web.post_form("/api/disconnect", {"csrf": web.csrf("/api/disconnect")})
    assert done.headers["location"] == "/api/settings?flash=disconnected"
    left = subjects()
    assert "Quarterly <review>" not in left and "My own dentist" in left
    assert {t.subject for t in stack.services.crm.list_tasks(tenant)} >= {"Quarterly <review>", "Undated note",
                                                                         "My own dentist"}


def _soon(days: int, hours: int = 0) -> str:
    moment = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    return (moment + timedelta(days=days, hours=hours)).strftime("%Y-%m-%dT%H:%M:%S")
