"""Every Windows time-zone id of CLDR's mapping, through the product's task mapping: a CRM task's local day (all
day) or local date and time (timed) goes to To Do (dueDateTime, reminderDateTime) and to the calendar (start,
end), comes back as Graph answers it — in UTC or in the Windows id — and is the same local day and time, on
ordinary days and on each zone's clock-change days. Items Outlook made in a Windows zone are read too."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zone_cases import (
    WALL_TIMES,
    WINDOWS_NAMES,
    clock_change_days,
    crm_task,
    event_answer,
    exists,
    iana,
    todo_answer,
    unambiguous,
    user,
)

from sync_core.domain.errors import InvalidRecordError
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


def round_trip(windows: str, day: date, wall: time | None) -> None:
    """CRM → To Do and calendar → back, answered in UTC and in the Windows id: the same local day and time."""
    tz = ZoneInfo(iana(windows))
    settings_ = user(iana(windows))
    task = crm_task(day, wall, tz)
    fields = crm_to_task_fields(task, tz)
    local_day = fields.due_date
    assert local_day == (day if wall is None or exists(day, wall, tz) else local_day)
    fires = reminder_instant(fields, settings_)
    assert fires is not None
    todo = todo_create_body(fields, settings_, task.id)
    event = event_create_body(fields, settings_, task.id, task.version)
    times = [todo["reminderDateTime"], *(event[name] for name in ("start", "end") if not event["isAllDay"])]
    for zone in ("UTC", windows) if all(unambiguous(value, windows) for value in times) else ("UTC",):
        back = graph_to_todo_task(todo_answer(todo, zone), tz)
        assert back.fields == project(fields, TaskTarget.TO_DO), zone
        assert back.fields.due_date == local_day
        reminded, _, _ = parse_graph_time(todo_answer(todo, zone)["reminderDateTime"], "reminderDateTime")
        assert reminded == fires
        back = graph_to_event_task(event_answer(event, zone), tz)
        assert back.fields == project(fields, TaskTarget.CALENDAR), zone
        restored = task_fields_to_crm(back.fields.model_copy(update={"done": fields.done}), task, tz)
        assert restored == task  # the CRM task, unchanged: its local day, or its instant and so its wall time
        if wall is not None and exists(day, wall, tz):
            assert back.fields.due_at is not None
            local = back.fields.due_at.astimezone(tz)
            assert (local.date(), local.time()) == (day, wall)


def made_in_outlook(windows: str, day: date, wall: time) -> None:
    """An event and a To Do due date Outlook wrote in the Windows id (how Graph answers them) are read as that
    local day and time in the zone CLDR maps the id to."""
    tz = ZoneInfo(iana(windows))
    start = {"dateTime": f"{day.isoformat()}T{wall.isoformat()}.0000000", "timeZone": windows}
    end = {"dateTime": f"{(day + timedelta(days=1)).isoformat()}T00:00:00.0000000", "timeZone": windows}
    timed = graph_to_event_task({"id": "e", "subject": "s", "isAllDay": False, "start": start, "end": end}, tz)
    assert timed.fields.due_at == datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)
    midnight = {**start, "dateTime": f"{day.isoformat()}T00:00:00.0000000"}
    all_day = graph_to_event_task({"id": "e", "subject": "s", "isAllDay": True, "start": midnight, "end": end}, tz)
    assert all_day.fields.due_date == day
    assert graph_to_todo_task({"id": "t", "title": "s", "dueDateTime": midnight}, tz).fields.due_date == day
    # Seen from a user in another zone, the day of an all-day item stays the same (it floats).
    assert graph_to_todo_task({"id": "t", "title": "s", "dueDateTime": midnight},
                              ZoneInfo("Pacific/Kiritimati")).fields.due_date == day


def test_every_windows_zone_id_is_understood(record_property: pytest.RecordProperty) -> None:
    """The measured figure: how many of CLDR's Windows ids an event answered in that id is read from."""
    understood = []
    for windows in WINDOWS_NAMES:
        start = {"dateTime": "2026-07-01T09:00:00.0000000", "timeZone": windows}
        try:
            due = graph_to_event_task({"id": "e", "subject": "s", "start": start}, ZoneInfo("UTC")).fields.due_at
        except InvalidRecordError:
            continue
        if due == datetime(2026, 7, 1, 9, 0, tzinfo=ZoneInfo(iana(windows))).astimezone(UTC):
            understood.append(windows)
    record_property("windows_zones_understood", len(understood))
    print(f"\nWindows time-zone ids understood: {len(understood)} of CLDR's {len(WINDOWS_NAMES)}")
    assert understood == WINDOWS_NAMES
    assert "Pakistan Standard Time" in understood


def test_windows_ids_are_matched_regardless_of_case_and_unknown_ones_refused() -> None:
    start = {"dateTime": "2026-01-15T09:00:00", "timeZone": "pakistan standard time"}
    due = graph_to_event_task({"id": "e", "subject": "s", "start": start}, ZoneInfo("UTC")).fields.due_at
    assert due == datetime(2026, 1, 15, 4, 0, tzinfo=UTC)
    with pytest.raises(InvalidRecordError):
        graph_to_event_task({"id": "e", "subject": "s", "start": {**start, "timeZone": "Mars Standard Time"}},
                            ZoneInfo("UTC"))


@pytest.mark.parametrize("windows", WINDOWS_NAMES)
def test_clock_change_days_round_trip(windows: str) -> None:
    """Each zone's own clock-change days (and the days either side), all day and at wall times around the
    change, deterministically; zones without a change in 2025-2027 get a summer and a winter day."""
    days = set(clock_change_days(windows)) or {date(2026, 1, 15), date(2026, 7, 15)}
    for day in sorted(days | {d + timedelta(days=step) for d in days for step in (-1, 1)}):
        round_trip(windows, day, None)
        for wall in WALL_TIMES:
            round_trip(windows, day, wall)
            made_in_outlook(windows, day, wall)


@settings(max_examples=len(WINDOWS_NAMES) * 2, deadline=None)
@given(windows=st.sampled_from(WINDOWS_NAMES), data=st.data(), all_day=st.booleans())
def test_any_day_and_time_round_trips_in_any_windows_zone(windows: str, data: st.DataObject, all_day: bool) -> None:
    changes = clock_change_days(windows)
    day = data.draw(st.sampled_from(changes) | st.dates(date(2020, 1, 1), date(2035, 12, 31)) if changes
                    else st.dates(date(2020, 1, 1), date(2035, 12, 31)))
    wall = None if all_day else data.draw(st.times().map(lambda t: t.replace(second=0, microsecond=0, fold=0)))
    round_trip(windows, day, wall)
    if wall is not None:
        made_in_outlook(windows, day, wall)
