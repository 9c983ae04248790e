"""MicrosoftTasksPort over Microsoft Graph: a To Do list, or the primary calendar (mirrors graph_contacts.py).

To Do: the list "Really Simple Systems" is found by name or created; `GET /todo/lists/{id}/tasks/delta`.
Calendar: v1.0 has delta only for a calendar view of the primary calendar, `GET /calendarView/delta` over a
window (the container, "start/end"); it takes no $select, and recurring series come as occurrences whose ids
are stable. Bodies are built and read by task_mapping with the user's settings (time zone, reminders, event
duration). Events are never given attendees, so Outlook never sends an invitation.

Creates are idempotent: a To Do task carries our CRM id in a linkedResource, an event in a single-value
extended property and in its transactionId (Graph answers a repeated POST with the event the first made);
`find_task_by_crm_id` finds either again when an outcome was lost. Only PATCH, DELETE and GET are replayed
after an ambiguous failure.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from sync_core.domain.changes import WriteResult
from sync_core.adapters.graph.outcomes import delete_result, delta_items, read_results, write_result
from sync_core.adapters.graph.session import GraphSession, SubRequest, SubResponse
from sync_core.domain.errors import DeltaExpiredError, InvalidRecordError, MicrosoftError
from sync_core.domain.models import DeltaResult, MsChange, MsTask, TaskFields, TaskTarget, UserSyncSettings
from sync_core.ports import TaskUpdate
from sync_core.kinds.tasks.mapping import (
    APP_NAME, TASK_ID_PROPERTY, event_create_body, event_patch_body, graph_to_task, todo_create_body,
    todo_patch_body, user_zone,
)

DELTA_PAGE_SIZE = 500
T = TypeVar("T")


def _odata_quote(value: str) -> str:
    return value.replace("'", "''")


def _q(value: str) -> str:
    return quote(value, safe="")


class GraphTasks:
    """The user's tasks in To Do or their calendar. `request_count` counts the HTTP requests it sent."""

    def __init__(self, session: GraphSession, settings: UserSyncSettings, mailbox: str = "/me") -> None:
        self.session = session
        self.settings = settings
        self.mailbox = mailbox
        self.request_count = 0
        self._zone = user_zone(settings)

    def _counted(self, work: Callable[[], T]) -> T:
        before = self.session.requests_sent
        try:
            return work()
        finally:
            self.request_count += self.session.requests_sent - before

    # -- URLs ------------------------------------------------------------------------------
    def _tasks_url(self, list_id: str) -> str:
        return f"{self.mailbox}/todo/lists/{_q(list_id)}/tasks"

    def _item_url(self, target: TaskTarget, container: str, ms_id: str) -> str:
        if target is TaskTarget.TO_DO:
            return f"{self._tasks_url(container)}/{_q(ms_id)}"
        return f"{self.mailbox}/events/{_q(ms_id)}"

    # -- the container ---------------------------------------------------------------------
    def ensure_container(self, target: TaskTarget, name: str, known: str | None) -> str:
        """To Do: the known list id, else the list of that name (the lowest id when several were made by hand),
        else a new one. Calendar: the window is the caller's choice; nothing to create."""
        if target is TaskTarget.CALENDAR:
            return known or ""
        if known:
            return known
        return self._counted(lambda: self._find_or_create_list(name))

    def _find_or_create_list(self, name: str) -> str:
        lists, _ = self.session.get_pages(f"{self.mailbox}/todo/lists")
        ids = sorted(str(item["id"]) for item in lists
                     if isinstance(item, dict) and item.get("displayName") == name and item.get("id"))
        if ids:
            return ids[0]
        created = self.session.request("POST", f"{self.mailbox}/todo/lists", {"displayName": name}, retry=False)
        return str(created["id"])

    # -- reading ---------------------------------------------------------------------------
    def task_delta(self, target: TaskTarget, container: str, delta_link: str | None) -> DeltaResult[MsTask]:
        return self._counted(lambda: self._delta(target, container, delta_link))

    def _delta(self, target: TaskTarget, container: str, delta_link: str | None) -> DeltaResult[MsTask]:
        if delta_link:
            url = delta_link
        elif target is TaskTarget.TO_DO:
            url = f"{self._tasks_url(container)}/delta"
        else:
            start, _, end = container.partition("/")
            url = f"{self.mailbox}/calendarView/delta?startDateTime={_q(start)}&endDateTime={_q(end)}"
        items, new_link = self.session.get_pages(url, headers={"Prefer": f"odata.maxpagesize={DELTA_PAGE_SIZE}"})
        if not new_link:
            raise DeltaExpiredError("delta round ended without a deltaLink", status=200)
        changes: dict[str, MsChange[MsTask]] = {}
        # An item without an id has nothing to name it by: it cannot be synced or quarantined.
        for ms_id, removed, item in delta_items(items):
            if removed is not None:
                changes[ms_id] = MsChange(ms_id=ms_id, removed_reason=removed)
                continue
            changes[ms_id] = self._change(target, ms_id, item)
        # The same item can appear twice in a round; the last state wins (the dict keeps the latest).
        return DeltaResult(changes=tuple(changes.values()), delta_link=new_link, full=not delta_link)

    def _change(self, target: TaskTarget, ms_id: str, item: Mapping[str, Any]) -> MsChange[MsTask]:
        if target is TaskTarget.CALENDAR and item.get("type") == "seriesMaster":
            return MsChange(ms_id=ms_id, invalid_reason="a series master is not an instance")
        try:
            return MsChange(ms_id=ms_id, item=graph_to_task(target, item, self._zone))
        except InvalidRecordError as exc:
            return MsChange(ms_id=ms_id, invalid_reason=str(exc))

    def get_tasks(self, target: TaskTarget, container: str, ms_ids: Sequence[str]) -> dict[str, MsTask | None]:
        """Each item as it is now, or None when it is gone (404). Items whose state could not be learnt (a
        failed GET, an unreadable answer) are left out: the caller must not take them for gone."""
        subs = [SubRequest(str(i), "GET", self._item_url(target, container, ms_id)) for i, ms_id in enumerate(ms_ids)]
        answered = self._counted(lambda: self.session.batch(subs, idempotent=True)) if subs else {}
        gone: MsTask | None = None
        return read_results(ms_ids, answered, gone, lambda body: graph_to_task(target, body, self._zone))

    def find_task_by_crm_id(self, target: TaskTarget, container: str, crm_id: str) -> MsTask | None:
        return self._counted(lambda: self._find(target, container, crm_id))

    def _find(self, target: TaskTarget, container: str, crm_id: str) -> MsTask | None:
        if target is TaskTarget.CALENDAR:
            prop = _odata_quote(TASK_ID_PROPERTY)
            url = (f"{self.mailbox}/calendar/events?$filter=singleValueExtendedProperties/Any(ep: ep/id eq '{prop}' "
                   f"and ep/value eq '{_odata_quote(crm_id)}')")
            items, _ = self.session.get_pages(url)
        else:
            try:
                url = (f"{self._tasks_url(container)}?$filter=linkedResources/any(l: l/externalId eq "
                       f"'{_odata_quote(crm_id)}')&$expand=linkedResources")
                items, _ = self.session.get_pages(url)
            except MicrosoftError as exc:
                if exc.status != 400:
                    raise
                # Not filterable here: read the list (rare: only after a create whose outcome was lost).
                everything, _ = self.session.get_pages(f"{self._tasks_url(container)}?$expand=linkedResources")
                items = [item for item in everything if isinstance(item, dict) and any(
                    isinstance(link, dict) and link.get("applicationName") == APP_NAME
                    and link.get("externalId") == crm_id for link in item.get("linkedResources") or [])]
        candidates = sorted((i for i in items if isinstance(i, dict)), key=lambda i: str(i.get("id")))
        return graph_to_task(target, candidates[0], self._zone) if candidates else None

    # -- writing ---------------------------------------------------------------------------
    def create_tasks(self, target: TaskTarget, container: str,
                     items: Sequence[tuple[str, str, TaskFields]]) -> list[WriteResult[MsTask]]:
        url = self._tasks_url(container) if target is TaskTarget.TO_DO else f"{self.mailbox}/calendar/events"
        subs: list[SubRequest] = []
        refused: dict[str, WriteResult[MsTask]] = {}
        for i, (crm_id, crm_version, fields) in enumerate(items):
            try:
                body = (todo_create_body(fields, self.settings, crm_id) if target is TaskTarget.TO_DO
                        else event_create_body(fields, self.settings, crm_id, crm_version))
            except InvalidRecordError as exc:
                refused[str(i)] = WriteResult(crm_id, False, status=400, error=str(exc))
                continue
            subs.append(SubRequest(str(i), "POST", url, body))
        answered = self._counted(lambda: self.session.batch(subs, idempotent=False)) if subs else {}
        return [refused.get(str(i)) or self._result(target, crm_id, answered[str(i)])
                for i, (crm_id, _, _) in enumerate(items)]

    def update_tasks(self, target: TaskTarget, container: str, items: Sequence[TaskUpdate]) -> list[WriteResult[MsTask]]:
        subs: list[SubRequest] = []
        done: dict[str, WriteResult[MsTask]] = {}
        for i, update in enumerate(items):
            try:
                patch = (todo_patch_body(update.fields, update.changed, self.settings) if target is TaskTarget.TO_DO
                         else event_patch_body(update.fields, update.changed, update.all_day_now, self.settings))
            except InvalidRecordError as exc:
                done[str(i)] = WriteResult(update.ms_id, False, status=400, error=str(exc))
                continue
            if not patch:  # nothing this target holds changed
                done[str(i)] = WriteResult(update.ms_id, True, status=200)
                continue
            subs.append(SubRequest(str(i), "PATCH", self._item_url(target, container, update.ms_id), patch))
        answered = self._counted(lambda: self.session.batch(subs, idempotent=True)) if subs else {}
        return [done.get(str(i)) or self._result(target, u.ms_id, answered[str(i)]) for i, u in enumerate(items)]

    def delete_tasks(self, target: TaskTarget, container: str, ms_ids: Sequence[str]) -> list[WriteResult[MsTask]]:
        subs = [SubRequest(str(i), "DELETE", self._item_url(target, container, ms_id)) for i, ms_id in enumerate(ms_ids)]
        answered = self._counted(lambda: self.session.batch(subs, idempotent=True)) if subs else {}
        return [delete_result(WriteResult[MsTask], ms_id, answered[str(i)]) for i, ms_id in enumerate(ms_ids)]

    def _result(self, target: TaskTarget, key: str, response: SubResponse) -> WriteResult[MsTask]:
        return write_result(WriteResult[MsTask], key, response, "item",
                            lambda body: graph_to_task(target, body, self._zone))
