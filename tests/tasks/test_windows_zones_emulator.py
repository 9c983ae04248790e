"""Every Windows time-zone id of CLDR's mapping over real HTTP: the product's To Do and event bodies for a user
in the zone are posted to the Microsoft 365 emulator, read back in UTC and with `Prefer: outlook.timezone` set
to the Windows id, and parsed by the product to the same local day and time, on the zone's clock-change day.
Items written in the Windows id (as Outlook and the To Do apps write them) are accepted and read right too."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from zone_cases import WINDOWS_NAMES, clock_change_days, crm_task, exists, iana, unambiguous, user

from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.domain.models import TaskTarget
from sync_core.kinds.tasks.mapping import (
    crm_to_task_fields,
    event_create_body,
    graph_to_event_task,
    graph_to_todo_task,
    parse_graph_time,
    project,
    reminder_instant,
    task_fields_to_crm,
    todo_create_body,
)

# A sample with all-day items, UTC answers and wall times around the clock change: no DST (Pakistan), DST north
# and south, a half-hour DST (Lord Howe), a 45-minute offset (Chatham), clocks changing at midnight (Cuba).
SAMPLE = ["Pakistan Standard Time", "Pacific Standard Time", "AUS Eastern Standard Time", "Lord Howe Standard Time",
          "Chatham Islands Standard Time", "Cuba Standard Time"]


class Mailbox:
    """One emulator mailbox over raw HTTP (status codes and the Prefer header matter here)."""

    def __init__(self, base: str, token: str, http: httpx.Client) -> None:
        self.base, self.http = base, http
        self.headers = {"Authorization": f"Bearer {token}"}
        lists = self.call("GET", "/me/todo/lists")["value"]
        self.todo = next(item["id"] for item in lists if item["wellknownListName"] == "defaultList")

    def call(self, method: str, path: str, body: Any = None, status: int = 200, zone: str | None = None) -> Any:
        headers = {**self.headers, **({"Prefer": f'outlook.timezone="{zone}"'} if zone else {})}
        answer = self.http.request(method, self.base + path, json=body, headers=headers)
        assert answer.status_code == status, answer.text
        return answer.json()

    def event(self, body: dict[str, Any], zone: str | None = None) -> dict[str, Any]:
        created = self.call("POST", "/me/events", body, status=201)
        answer = self.call("GET", f"/me/events/{created['id']}", zone=zone)
        assert answer["start"]["timeZone"] == (zone or "UTC")
        return dict(answer)

    def todo_task(self, body: dict[str, Any]) -> dict[str, Any]:
        created = self.call("POST", f"/me/todo/lists/{self.todo}/tasks", body, status=201)
        return dict(self.call("GET", f"/me/todo/lists/{self.todo}/tasks/{created['id']}"))


@pytest.fixture(scope="module")
def mailbox(emulator: EmulatorProcess, emulator_control: ControlClient) -> Iterator[Mailbox]:  # noqa: F811
    _, token = emulator_control.new_user_with_token()
    with httpx.Client(timeout=30, trust_env=False) as http:
        yield Mailbox(emulator.graph, token, http)


def change_day(windows: str) -> date:
    """The zone's first clock change in 2026, or a plain day for zones whose clocks do not change."""
    return next((day for day in clock_change_days(windows) if day.year == 2026), date(2026, 3, 29))


def product_round_trip(mailbox: Mailbox, windows: str, day: date, wall: time | None) -> None:
    tz = ZoneInfo(iana(windows))
    settings_ = user(iana(windows))
    # A fresh CRM id each time: Graph answers a repeated transactionId with the event made first.
    task = crm_task(day, wall, tz).model_copy(update={"id": f"task-{uuid.uuid4().hex}"})
    fields = crm_to_task_fields(task, tz)
    body = event_create_body(fields, settings_, task.id, task.version)
    timed = [] if body["isAllDay"] else [body["start"], body["end"]]
    for zone in (None, windows) if all(unambiguous(value, windows) for value in timed) else (None,):
        back = graph_to_event_task(mailbox.event(body, zone), tz)
        assert back.fields == project(fields, TaskTarget.CALENDAR)
        assert task_fields_to_crm(back.fields.model_copy(update={"done": fields.done}), task, tz) == task
        if wall is not None and exists(day, wall, tz):
            assert back.fields.due_at is not None
            local = back.fields.due_at.astimezone(tz)
            assert (local.date(), local.time()) == (day, wall)
    answer = mailbox.todo_task(todo_create_body(fields, settings_, task.id))
    assert graph_to_todo_task(answer, tz).fields == project(fields, TaskTarget.TO_DO)
    assert graph_to_todo_task(answer, tz).fields.due_date == fields.due_date
    reminded, _, _ = parse_graph_time(answer["reminderDateTime"], "reminderDateTime")
    assert reminded == reminder_instant(fields, settings_)


def written_in_windows_zone(mailbox: Mailbox, windows: str, day: date, wall: time) -> None:
    tz = ZoneInfo(iana(windows))
    start = {"dateTime": f"{day.isoformat()}T{wall.isoformat()}", "timeZone": windows}
    end = {"dateTime": f"{(day + timedelta(days=1)).isoformat()}T00:00:00", "timeZone": windows}
    expected = datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)
    event = {"subject": "Made in Outlook", "start": start, "end": end}
    zones = (None, windows) if unambiguous({**start, "timeZone": "UTC",
                                            "dateTime": expected.replace(tzinfo=None).isoformat()}, windows) else (None,)
    for zone in zones:
        assert graph_to_event_task(mailbox.event(event, zone), tz).fields.due_at == expected
    midnight = {**start, "dateTime": f"{day.isoformat()}T00:00:00"}
    all_day = {"subject": "Made in Outlook", "isAllDay": True, "start": midnight, "end": end}
    assert graph_to_event_task(mailbox.event(all_day, windows), tz).fields.due_date == day
    answer = mailbox.todo_task({"title": "Made in To Do", "dueDateTime": midnight, "isReminderOn": True,
                                "reminderDateTime": start})
    assert graph_to_todo_task(answer, tz).fields.due_date == day
    assert parse_graph_time(answer["reminderDateTime"], "reminderDateTime")[0] == expected


@pytest.mark.parametrize("windows", WINDOWS_NAMES)
def test_every_windows_zone_round_trips_through_the_emulator(mailbox: Mailbox, windows: str) -> None:
    """Per id, the few requests that show the emulator takes and answers in it and the product reads it: our
    timed event read back in the id, an event and a To Do due date written in the id (all-day items, UTC
    answers and more wall times are in the sample below)."""
    day = change_day(windows)
    tz = ZoneInfo(iana(windows))
    task = crm_task(day, time(9, 15), tz).model_copy(update={"id": f"task-{uuid.uuid4().hex}"})
    fields = crm_to_task_fields(task, tz)
    answer = mailbox.event(event_create_body(fields, user(iana(windows)), task.id, task.version), windows)
    assert graph_to_event_task(answer, tz).fields == project(fields, TaskTarget.CALENDAR)
    start = {"dateTime": f"{day.isoformat()}T10:45:00", "timeZone": windows}
    end = {"dateTime": f"{day.isoformat()}T11:45:00", "timeZone": windows}
    made = mailbox.event({"subject": "Made in Outlook", "start": start, "end": end}, windows)
    assert graph_to_event_task(made, tz).fields.due_at == datetime.combine(day, time(10, 45), tzinfo=tz)
    todo = mailbox.todo_task({"title": "Made in To Do", "dueDateTime": {**start, "dateTime": f"{day}T00:00:00"}})
    assert graph_to_todo_task(todo, tz).fields.due_date == day


@pytest.mark.parametrize("windows", SAMPLE)
def test_wall_times_around_the_clock_change(mailbox: Mailbox, windows: str) -> None:
    day = change_day(windows)
    product_round_trip(mailbox, windows, day, None)
    written_in_windows_zone(mailbox, windows, day, time(0, 0))
    for wall in (time(0, 30), time(1, 30), time(2, 0), time(2, 30), time(3, 0), time(23, 30)):
        product_round_trip(mailbox, windows, day, wall)
        written_in_windows_zone(mailbox, windows, day, wall)
