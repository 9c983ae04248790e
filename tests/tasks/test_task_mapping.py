"""task_mapping: CRM → Microsoft → CRM gives the same task, all-day and timed, in four zones and across
their DST changes (property tests); HTML bodies; reminders from the user's settings."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sync_core.domain.models import (
    TIMED_REMINDER_CHOICES,
    AllDayReminder,
    CrmTask,
    TaskFields,
    TaskStatus,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.kinds.tasks.mapping import (
    crm_to_task_fields,
    event_create_body,
    event_reminder,
    graph_to_event_task,
    graph_to_todo_task,
    html_to_text,
    normalise_task,
    project,
    reminder_instant,
    task_fields_to_crm,
    todo_create_body,
)

ZONES = ["Europe/London", "America/New_York", "Australia/Sydney", "UTC"]
# DST changes in 2025 (each zone's own dates), and the day after each.
DST_DAYS = [date(2025, 3, 30), date(2025, 10, 26), date(2025, 3, 9), date(2025, 11, 2), date(2025, 4, 6),
            date(2025, 10, 5)]


def _graph_answer_time(value: dict[str, str]) -> dict[str, str]:
    """How Graph answers a dateTimeTimeZone it stored: the instant, in UTC, with seven fractional digits."""
    wall = datetime.fromisoformat(value["dateTime"])
    instant = wall.replace(tzinfo=ZoneInfo(value["timeZone"])).astimezone(UTC)
    return {"dateTime": instant.replace(tzinfo=None).isoformat(timespec="microseconds") + "0", "timeZone": "UTC"}


def todo_as_graph_answers(body: dict[str, Any], ms_id: str = "AQMkADAw") -> dict[str, Any]:
    out = {**body, "id": ms_id, "@odata.etag": 'W/"x"'}
    for name in ("dueDateTime", "reminderDateTime"):
        if body.get(name):
            out[name] = _graph_answer_time(body[name])
    return out


def event_as_graph_answers(body: dict[str, Any], ms_id: str = "AAMkADAw") -> dict[str, Any]:
    """All-day events come back at midnight of their dates (floating); timed ones as their UTC instant."""
    out = {**body, "id": ms_id, "changeKey": "ck"}
    for name in ("start", "end"):
        if body["isAllDay"]:
            out[name] = {"dateTime": body[name]["dateTime"] + ".0000000", "timeZone": "UTC"}
        else:
            out[name] = _graph_answer_time(body[name])
    return out


def user(zone: str, **extra: Any) -> UserSyncSettings:
    return UserSyncSettings(tenant_id="t", user_id="u", time_zone=zone, tasks_enabled=True, **extra)


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
days = st.one_of(st.sampled_from(DST_DAYS + [d + timedelta(days=1) for d in DST_DAYS]),
                 st.dates(date(2020, 1, 1), date(2030, 12, 31)))
instants = st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC))
fold_instants = st.sampled_from([datetime(2025, 11, 2, 5, 30, tzinfo=UTC), datetime(2025, 11, 2, 6, 30, tzinfo=UTC),
                                 datetime(2025, 10, 26, 0, 30, tzinfo=UTC), datetime(2025, 10, 26, 1, 30, tzinfo=UTC),
                                 datetime(2025, 4, 5, 15, 30, tzinfo=UTC), datetime(2025, 4, 5, 16, 30, tzinfo=UTC),
                                 datetime(2025, 3, 9, 7, 0, tzinfo=UTC), datetime(2025, 3, 30, 1, 0, tzinfo=UTC)])


@st.composite
def crm_tasks(draw: st.DrawFn, kind: str) -> CrmTask:
    due_date = draw(days) if kind == "all_day" else None
    due_at = draw(st.one_of(instants, fold_instants)) if kind == "timed" else None
    if due_at is not None and draw(st.booleans()):
        due_at = due_at.astimezone(ZoneInfo(draw(st.sampled_from(ZONES))))  # the CRM may keep any zone
    return CrmTask(id="task-1", tenant_id="t", account_id="a", assigned_to="u", subject=draw(texts),
                   description=draw(texts), due_date=due_date, due_at=due_at,
                   status=draw(st.sampled_from(list(TaskStatus))), version="v1")


def _canonical(task: CrmTask, tz: ZoneInfo) -> CrmTask:
    """The task as any round trip must give it back: its normal form."""
    return task_fields_to_crm(crm_to_task_fields(task, tz), None, tz, tenant_id="t", task_id=task.id,
                              account_id="a", assigned_to="u")


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["all_day", "timed", "none"]), data=st.data(), zone=st.sampled_from(ZONES))
def test_todo_round_trip_gives_the_same_task(kind: str, data: st.DataObject, zone: str) -> None:
    task = data.draw(crm_tasks(kind))
    settings_ = user(zone, all_day_reminder=AllDayReminder.DAY_BEFORE)
    tz = ZoneInfo(zone)
    fields = crm_to_task_fields(task, tz)
    answer = todo_as_graph_answers(todo_create_body(fields, settings_, task.id))
    back = graph_to_todo_task(answer, tz)
    assert back.fields == project(fields, TaskTarget.TO_DO)  # To Do holds all but the due time
    assert back.crm_id == task.id
    if kind != "timed":
        assert task_fields_to_crm(back.fields, task, tz) == task
    # With the CRM task as the base (how the sync writes), nothing of it changes: not even a timed task's time.
    merged = back.fields.model_copy(update={"due_at": fields.due_at})
    assert task_fields_to_crm(merged, task, tz) == task


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["all_day", "timed"]), data=st.data(), zone=st.sampled_from(ZONES))
@example(kind="timed", data=None, zone="America/New_York")  # type: ignore[arg-type]
def test_calendar_round_trip_gives_the_same_task(kind: str, data: st.DataObject | None, zone: str) -> None:
    task = data.draw(crm_tasks(kind)) if data is not None else CrmTask(
        id="task-1", tenant_id="t", account_id="a", assigned_to="u", subject="Fold",
        due_at=datetime(2025, 11, 2, 6, 30, tzinfo=UTC))  # 01:30 EST, the second 01:30 of that night
    settings_ = user(zone, timed_reminder_minutes=30)
    tz = ZoneInfo(zone)
    fields = crm_to_task_fields(task, tz)
    body = event_create_body(fields, settings_, task.id, task.version)
    assert "attendees" not in body
    back = graph_to_event_task(event_as_graph_answers(body), tz)
    assert back.fields == project(fields, TaskTarget.CALENDAR)
    assert back.crm_id == task.id
    done = fields.done
    restored = task_fields_to_crm(back.fields.model_copy(update={"done": done}), None, tz, tenant_id="t",
                                  task_id=task.id, account_id="a", assigned_to="u")
    assert restored == _canonical(task, tz).model_copy(update={"version": ""})
    assert task_fields_to_crm(back.fields.model_copy(update={"done": done}), task, tz) == task


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("day", DST_DAYS)
def test_all_day_events_span_midnight_to_midnight_in_an_explicit_zone(zone: str, day: date) -> None:
    body = event_create_body(TaskFields(subject="s", due_date=day), user(zone), "c1", "v1")
    assert body["isAllDay"] is True
    assert body["start"] == {"dateTime": f"{day.isoformat()}T00:00:00", "timeZone": zone}
    assert body["end"] == {"dateTime": f"{(day + timedelta(days=1)).isoformat()}T00:00:00", "timeZone": zone}


def test_a_due_date_set_in_the_todo_app_is_a_floating_day() -> None:
    # To Do's own apps store a due day as midnight UTC; in New York that is the evening before: still that day.
    item = {"id": "t1", "title": "Call", "dueDateTime": {"dateTime": "2025-06-03T00:00:00.0000000", "timeZone": "UTC"}}
    assert graph_to_todo_task(item, ZoneInfo("America/New_York")).fields.due_date == date(2025, 6, 3)
    # Our own writes come back as the UTC instant of midnight in the user's zone: the day in that zone.
    ours = {"id": "t2", "title": "Call", "dueDateTime": {"dateTime": "2025-06-02T14:00:00.0000000", "timeZone": "UTC"}}
    assert graph_to_todo_task(ours, ZoneInfo("Australia/Sydney")).fields.due_date == date(2025, 6, 3)


def test_windows_zone_names_are_understood() -> None:
    item = {"id": "e1", "subject": "x", "isAllDay": False,
            "start": {"dateTime": "2025-07-01T09:00:00.0000000", "timeZone": "Pacific Standard Time"}}
    assert graph_to_event_task(item, ZoneInfo("UTC")).fields.due_at == datetime(2025, 7, 1, 16, 0, tzinfo=UTC)


def test_html_bodies_become_safe_plain_text() -> None:
    markup = ("<html><head><style>p{color:red}</style><script>alert('x')</script></head><body>"
              "<p>Call&nbsp;<b>Bob</b> &amp; Alice</p><div>Line two<br>Line three</div>"
              "<p>&lt;not a tag&gt;</p></body></html>")
    assert html_to_text(markup) == "Call Bob & Alice\nLine two\nLine three\n<not a tag>"
    event = {"id": "e1", "subject": "s", "isAllDay": True, "body": {"contentType": "html", "content": markup},
             "start": {"dateTime": "2025-07-01T00:00:00", "timeZone": "UTC"}}
    assert "alert" not in graph_to_event_task(event, ZoneInfo("UTC")).fields.body
    assert html_to_text("<p>unclosed <b>bold") == "unclosed bold"


@pytest.mark.parametrize("minutes", list(TIMED_REMINDER_CHOICES))
def test_timed_reminders_are_outlooks_choices(minutes: int | None) -> None:
    settings_ = user("Europe/London", timed_reminder_minutes=minutes)
    due = datetime(2025, 6, 3, 14, 30, tzinfo=UTC)
    fields = normalise_task(TaskFields(subject="s", due_at=due), ZoneInfo("Europe/London"))
    on, before = event_reminder(fields, settings_)
    assert (on, before if on else None) == ((False, None) if minutes is None else (True, minutes))
    todo = todo_create_body(fields, settings_, "c1")
    assert todo["isReminderOn"] is (minutes is not None)
    if minutes is not None:
        expected = (due - timedelta(minutes=minutes)).replace(tzinfo=None).isoformat(timespec="seconds")
        assert todo["reminderDateTime"] == {"dateTime": expected, "timeZone": "UTC"}


@pytest.mark.parametrize("minutes", [1, 10, 45, 90, -5, 100000])
def test_a_reminder_outlook_does_not_offer_is_refused_with_a_clear_message(minutes: int) -> None:
    with pytest.raises(ValidationError) as caught:
        user("UTC", timed_reminder_minutes=minutes)
    message = str(caught.value)
    assert "choose one of Outlook's reminders" in message and "15 minutes before" in message


@pytest.mark.parametrize(("choice", "fires"), [
    (AllDayReminder.OFF, None),
    (AllDayReminder.SAME_DAY, datetime(2025, 3, 30, 8, 0, tzinfo=UTC)),  # 09:00 BST on the day clocks go forward
    (AllDayReminder.DAY_BEFORE, datetime(2025, 3, 29, 9, 0, tzinfo=UTC)),  # 09:00 GMT
    (AllDayReminder.WEEK_BEFORE, datetime(2025, 3, 23, 9, 0, tzinfo=UTC)),
])
def test_all_day_reminders_at_a_time_of_day(choice: AllDayReminder, fires: datetime | None) -> None:
    settings_ = user("Europe/London", all_day_reminder=choice, all_day_reminder_time="09:00")
    fields = TaskFields(subject="s", due_date=date(2025, 3, 30))
    assert reminder_instant(fields, settings_) == fires
    on, minutes = event_reminder(fields, settings_)
    assert on is (fires is not None)
    if choice is AllDayReminder.DAY_BEFORE:
        assert minutes == 15 * 60  # 09:00 the day before a midnight start
    if choice is AllDayReminder.SAME_DAY:
        assert minutes == 0  # Outlook counts before the start only: the day's start
