"""MicrosoftTasksPort contract, To Do and calendar: what the in-memory adapter and the Graph adapter (over
HTTP, on the emulator, which mirrors Graph) both do with a user's tasks."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from sync_core.domain.errors import DeltaExpiredError, MicrosoftError
from sync_core.domain.models import DeltaResult, FOLDER_NAME, MsTask, TaskFields, TaskTarget, UserSyncSettings
from sync_core.ports import MicrosoftTasksPort, TaskUpdate
from tests.contracts.mailboxes import Mailbox

TO_DO, CALENDAR = TaskTarget.TO_DO, TaskTarget.CALENDAR
WINDOW = "2030-01-07T00:00:00Z/2030-02-04T00:00:00Z"  # a calendarView window, as the sync sets it


def settings() -> UserSyncSettings:
    return UserSyncSettings(tenant_id="tenant-contract", user_id="user-contract", tasks_enabled=True,
                            time_zone="Europe/London")


def call_ada(**changes: object) -> TaskFields:
    return TaskFields(subject="Call Ada", body="About the engine", due_date=date(2030, 1, 15)).model_copy(update=changes)


def timed(day: int, hour: int, subject: str = "Meet Charles") -> TaskFields:
    return TaskFields(subject=subject, due_date=date(2030, 1, day),
                      due_at=datetime(2030, 1, day, hour, 0, tzinfo=timezone.utc))


def ids(delta: DeltaResult[MsTask]) -> dict[str, str | None]:
    """Each item of a round and how it left (None: it is there)."""
    return {c.ms_id: c.removed_reason if c.item is None else None for c in delta.changes}


def container(port: MicrosoftTasksPort, target: TaskTarget) -> str:
    return port.ensure_container(target, FOLDER_NAME, None if target is TO_DO else WINDOW)


def created(port: MicrosoftTasksPort, target: TaskTarget, where: str, *items: tuple[str, TaskFields]) -> list[str]:
    results = port.create_tasks(target, where, [(crm_id, "v1", fields) for crm_id, fields in items])
    assert [(r.key, r.ok) for r in results] == [(crm_id, True) for crm_id, _ in items], results
    return [r.item.id for r in results if r.item is not None]


def test_ensure_container_finds_the_list_again_and_takes_the_window_as_given(mailbox: Mailbox) -> None:
    port = mailbox.tasks(settings())
    todo = port.ensure_container(TO_DO, FOLDER_NAME, None)
    assert todo
    assert port.ensure_container(TO_DO, FOLDER_NAME, None) == todo  # found by name, not made twice
    assert port.ensure_container(TO_DO, FOLDER_NAME, todo) == todo
    assert port.ensure_container(CALENDAR, FOLDER_NAME, WINDOW) == WINDOW
    assert port.ensure_container(CALENDAR, FOLDER_NAME, None) == ""


@pytest.mark.parametrize("target", [TO_DO, CALENDAR], ids=["todo", "calendar"])
def test_a_create_shows_in_a_full_round_and_is_found_by_its_crm_id(mailbox: Mailbox, target: TaskTarget) -> None:
    port = mailbox.tasks(settings())
    where = container(port, target)
    fields = call_ada() if target is TO_DO else timed(16, 10)
    [result] = port.create_tasks(target, where, [("crm-1", "v1", fields)])
    assert result.ok and result.key == "crm-1" and 200 <= result.status < 300 and result.item is not None
    ms_id, version = result.item.id, result.item.version
    assert version and result.item.fields.subject == fields.subject
    assert result.item.fields.due_date == fields.due_date and result.item.fields.due_at == fields.due_at
    delta = port.task_delta(target, where, None)
    assert delta.full and delta.delta_link and ids(delta) == {ms_id: None}
    assert delta.changes[0].item is not None and delta.changes[0].item.fields == result.item.fields
    assert delta.changes[0].item.crm_id == "crm-1"
    found = port.find_task_by_crm_id(target, where, "crm-1")
    assert found is not None and found.id == ms_id
    assert port.find_task_by_crm_id(target, where, "crm-unknown") is None
    got = port.get_tasks(target, where, [ms_id])
    assert list(got) == [ms_id] and got[ms_id] is not None and got[ms_id].fields == result.item.fields  # type: ignore[union-attr]


@pytest.mark.parametrize("target", [TO_DO, CALENDAR], ids=["todo", "calendar"])
def test_an_update_is_a_new_version_and_a_later_round_shows_only_it(mailbox: Mailbox, target: TaskTarget) -> None:
    port = mailbox.tasks(settings())
    where = container(port, target)
    first_fields, second_fields = (call_ada(), call_ada(subject="Call Charles")) if target is TO_DO \
        else (timed(16, 10), timed(17, 11, "Meet Ada"))
    kept, edited = created(port, target, where, ("crm-1", first_fields), ("crm-2", second_fields))
    first = port.task_delta(target, where, None)
    assert ids(first) == {kept: None, edited: None}
    quiet = port.task_delta(target, where, first.delta_link)
    assert not quiet.full and quiet.changes == ()
    before = port.get_tasks(target, where, [edited])[edited]
    wanted = second_fields.model_copy(update={"subject": "Renamed"})
    [update] = port.update_tasks(target, where, [TaskUpdate(edited, wanted, frozenset({"subject"}))])
    assert update.ok and update.item is not None and update.item.fields.subject == "Renamed"
    assert before is not None and update.item.version != before.version
    later = port.task_delta(target, where, quiet.delta_link)
    assert ids(later) == {edited: None}
    assert later.changes[0].item is not None and later.changes[0].item.version == update.item.version


@pytest.mark.parametrize("target", [TO_DO, CALENDAR], ids=["todo", "calendar"])
def test_a_delete_shows_as_removed_and_a_second_delete_is_a_404_that_is_fine(mailbox: Mailbox,
                                                                             target: TaskTarget) -> None:
    port = mailbox.tasks(settings())
    where = container(port, target)
    [ms_id] = created(port, target, where, ("crm-1", call_ada() if target is TO_DO else timed(16, 10)))
    link = port.task_delta(target, where, None).delta_link
    [gone] = port.delete_tasks(target, where, [ms_id])
    assert gone.ok and gone.key == ms_id and 200 <= gone.status < 300
    assert ids(port.task_delta(target, where, link)) == {ms_id: "deleted"}
    [again] = port.delete_tasks(target, where, [ms_id])
    assert again.ok and again.status == 404  # already gone is what a delete wants
    assert port.get_tasks(target, where, [ms_id]) == {ms_id: None}
    [missing] = port.update_tasks(target, where, [TaskUpdate(ms_id, call_ada(subject="x"), frozenset({"subject"}))])
    assert not missing.ok and missing.status == 404
    assert port.find_task_by_crm_id(target, where, "crm-1") is None


def test_the_calendar_round_covers_its_window_and_an_event_moved_out_is_removed(mailbox: Mailbox) -> None:
    port = mailbox.tasks(settings())
    inside, leaving, outside = created(port, CALENDAR, WINDOW, ("crm-1", timed(16, 10)), ("crm-2", timed(20, 9)),
                                       ("crm-3", TaskFields(subject="Later", due_date=date(2030, 3, 4))))
    first = port.task_delta(CALENDAR, WINDOW, None)
    assert ids(first) == {inside: None, leaving: None}
    found = port.find_task_by_crm_id(CALENDAR, WINDOW, "crm-3")  # found wherever it is in the calendar
    assert found is not None and found.id == outside and found.all_day
    moved = TaskFields(subject="Meet Charles", due_date=date(2030, 3, 5),
                       due_at=datetime(2030, 3, 5, 9, 0, tzinfo=timezone.utc))
    [update] = port.update_tasks(CALENDAR, WINDOW, [TaskUpdate(leaving, moved, frozenset({"due_date", "due_at"}),
                                                               all_day_now=False)])
    assert update.ok
    assert ids(port.task_delta(CALENDAR, WINDOW, first.delta_link)) == {leaving: "deleted"}


@pytest.mark.parametrize("target", [TO_DO, CALENDAR], ids=["todo", "calendar"])
def test_a_lost_sync_state_is_delta_expired_and_a_garbled_token_is_refused(mailbox: Mailbox,
                                                                           target: TaskTarget) -> None:
    port = mailbox.tasks(settings())
    where = container(port, target)
    created(port, target, where, ("crm-1", call_ada() if target is TO_DO else timed(16, 10)))
    link = port.task_delta(target, where, None).delta_link
    with pytest.raises(MicrosoftError) as garbled:
        port.task_delta(target, where, link + "x")  # a token the server never issued: 400, not 410
    assert not isinstance(garbled.value, DeltaExpiredError) and garbled.value.status == 400
    mailbox.lose_sync_state()
    with pytest.raises(DeltaExpiredError):
        port.task_delta(target, where, link)
    again = port.task_delta(target, where, None)
    assert again.full and len(again.changes) == 1
