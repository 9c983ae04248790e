"""MicrosoftTasksPort in memory: a mailbox's To Do lists and primary calendar, with Graph's rules.

Bodies are built and read by the task mapping, as with the Graph adapter. To Do: a list found by name or
created; the tasks of a list that is gone answer 404. Calendar: the container is the calendarView window
("start/end", UTC ISO); a full round lists the events starting in it, a later round reports what changed in
it and, as Graph does, events changed or deleted outside it as removed. A POST repeating a transactionId
answers the event the first made. Delta tokens are refused and expire as changes.py says. `request_count`
counts the HTTP requests Graph would have served. tests/contracts/test_microsoft_tasks_contract.py holds it to
what the Graph adapter does on the emulator.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sync_core.domain.changes import WriteResult
from sync_core.adapters.memory.changes import ChangeLog, Ids, batches, not_json, utc_now
from sync_core.domain.errors import InvalidRecordError, NotFoundError
from sync_core.domain.models import DeltaResult, MsChange, MsTask, TaskFields, TaskTarget, UserSyncSettings
from sync_core.kinds.tasks import mapping
from sync_core.ports import TaskUpdate

CALENDAR = "calendar"  # where events live here (To Do tasks live in their list's id)
DEFAULT_TASK_LIST = "default-tasks"


def calendar_window(container: str) -> tuple[datetime, datetime]:
    """A calendar container ("start/end", UTC ISO) as two instants."""
    start, _, end = container.partition("/")
    return datetime.fromisoformat(start.replace("Z", "+00:00")), datetime.fromisoformat(end.replace("Z", "+00:00"))


class MemoryTasks:
    """The user's To Do lists and calendar events, in memory. Items are Graph JSON with "_in": where they are."""

    def __init__(self, settings: UserSyncSettings, *, delta_page_size: int = 100,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self._ids = Ids("tasks")
        self.lists: dict[str, str] = {DEFAULT_TASK_LIST: "Tasks"}
        self.items: dict[str, dict[str, Any]] = {}
        self.log = ChangeLog(self._ids, clock)
        self.delta_page_size = delta_page_size
        self.request_count = 0

    # -- the mailbox's contents
    @property
    def _zone(self) -> ZoneInfo:
        return mapping.user_zone(self.settings)

    def _store(self, ms_id: str, body: dict[str, Any], where: str) -> None:
        body = {k: v for k, v in body.items() if k not in ("id", "changeKey", "@odata.etag", "_in")}
        body["id"] = ms_id
        version = self._ids("ck-")
        if where == CALENDAR:
            body["changeKey"] = version
        else:
            body["@odata.etag"] = f'W/"{version}"'
        body["_in"] = where
        self.items[ms_id] = body
        self.log.record(ms_id, where)

    def _remove(self, ms_id: str) -> None:
        del self.items[ms_id]
        self.log.record(ms_id, None)

    @staticmethod
    def _where(target: TaskTarget, container: str) -> str:
        return CALENDAR if target is TaskTarget.CALENDAR else container

    def _holds(self, where: str, ms_id: str) -> bool:
        item = self.items.get(ms_id)
        return item is not None and item["_in"] == where

    def task(self, ms_id: str) -> MsTask:
        item = self.items[ms_id]
        target = TaskTarget.CALENDAR if item["_in"] == CALENDAR else TaskTarget.TO_DO
        return mapping.graph_to_task(target, {k: v for k, v in item.items() if k != "_in"}, self._zone)

    def items_in(self, where: str) -> dict[str, dict[str, Any]]:
        return {i: item for i, item in self.items.items() if item["_in"] == where}

    def _in_window(self, ms_id: str, window: tuple[datetime, datetime]) -> bool:
        try:
            fields = self.task(ms_id).fields
        except InvalidRecordError:
            return True  # an unreadable event is reported (and quarantined), as Graph would send it
        if fields.due_at is not None:
            start = fields.due_at
        elif fields.due_date is not None:
            start = mapping.at_local(fields.due_date, datetime.min.time(), self._zone)
        else:
            return False
        return window[0] <= start < window[1]

    def _require_list(self, where: str) -> None:
        if where != CALENDAR and where not in self.lists:
            raise NotFoundError("the To Do list does not exist")

    # -- the container
    def ensure_container(self, target: TaskTarget, name: str, known: str | None) -> str:
        if target is TaskTarget.CALENDAR:
            return known or ""
        if known:
            return known  # as the Graph adapter: a list gone since answers 404 on its next read
        self.request_count += 1  # list the lists
        found = sorted(i for i, n in self.lists.items() if n == name)
        if found:
            return found[0]
        self.request_count += 1  # POST the list
        list_id = self._ids("list-")
        self.lists[list_id] = name
        return list_id

    # -- reading
    def task_delta(self, target: TaskTarget, container: str, delta_link: str | None) -> DeltaResult[MsTask]:
        self.request_count += 1
        where = self._where(target, container)
        self._require_list(where)
        window = calendar_window(container) if where == CALENDAR else None
        since = None if delta_link is None else self.log.since(delta_link, container)
        changes: list[MsChange[MsTask]] = []
        for ms_id, events in self.log.items():
            visible = self._holds(where, ms_id) and (window is None or self._in_window(ms_id, window))
            if since is None:
                if visible:
                    changes.append(self._as_change(ms_id))
                continue
            if not ChangeLog.split(events, since)[1]:
                continue
            if visible:
                changes.append(self._as_change(ms_id))
            elif any(e.where == where for e in events):
                changes.append(MsChange(ms_id=ms_id, removed_reason="deleted"))
        self.request_count += max(1, -(-len(changes) // self.delta_page_size)) - 1
        return DeltaResult(changes=tuple(changes), delta_link=self.log.issue(container), full=delta_link is None)

    def _as_change(self, ms_id: str) -> MsChange[MsTask]:
        try:
            return MsChange(ms_id=ms_id, item=self.task(ms_id))
        except InvalidRecordError as exc:
            return MsChange(ms_id=ms_id, invalid_reason=str(exc))

    def get_tasks(self, target: TaskTarget, container: str, ms_ids: Sequence[str]) -> dict[str, MsTask | None]:
        self.request_count += batches(len(ms_ids)) if ms_ids else 0
        where = self._where(target, container)
        return {ms_id: self.task(ms_id) if self._holds(where, ms_id) else None for ms_id in ms_ids}

    def find_task_by_crm_id(self, target: TaskTarget, container: str, crm_id: str) -> MsTask | None:
        self.request_count += 1
        for ms_id, item in sorted(self.items_in(self._where(target, container)).items()):
            tags = [t.get("value") for t in item.get("singleValueExtendedProperties") or []
                    if t.get("id") == mapping.TASK_ID_PROPERTY]
            tags += [link.get("externalId") for link in item.get("linkedResources") or []]
            if crm_id in tags:
                return self.task(ms_id)
        return None

    # -- writing
    def create_tasks(self, target: TaskTarget, container: str,
                     items: Sequence[tuple[str, str, TaskFields]]) -> list[WriteResult[MsTask]]:
        self.request_count += batches(len(items))
        where = self._where(target, container)
        self._require_list(where)
        results: list[WriteResult[MsTask]] = []
        for crm_id, crm_version, fields in items:
            try:
                body = (mapping.event_create_body(fields, self.settings, crm_id, crm_version)
                        if target is TaskTarget.CALENDAR else mapping.todo_create_body(fields, self.settings, crm_id))
            except InvalidRecordError as exc:
                results.append(WriteResult(crm_id, False, status=400, error=str(exc)))
                continue
            problem = not_json(body)
            if problem:
                results.append(WriteResult(crm_id, False, status=400, error=problem))
                continue
            repeated = [i for i, item in self.items_in(where).items()
                        if body.get("transactionId") and item.get("transactionId") == body["transactionId"]]
            if repeated:  # Graph answers the event the first POST made
                results.append(WriteResult(crm_id, True, item=self.task(repeated[0]), status=201))
                continue
            ms_id = self._ids("AAMkT-" if where == CALENDAR else "AQMkT-")
            self._store(ms_id, body, where)
            results.append(WriteResult(crm_id, True, item=self.task(ms_id), status=201))
        return results

    def update_tasks(self, target: TaskTarget, container: str, items: Sequence[TaskUpdate]) -> list[WriteResult[MsTask]]:
        self.request_count += batches(len(items))
        where = self._where(target, container)
        return [self._update_one(target, where, update) for update in items]

    def _update_one(self, target: TaskTarget, where: str, update: TaskUpdate) -> WriteResult[MsTask]:
        if not self._holds(where, update.ms_id):
            return WriteResult(update.ms_id, False, status=404, error="ErrorItemNotFound")
        try:
            patch = (mapping.event_patch_body(update.fields, update.changed, update.all_day_now, self.settings)
                     if target is TaskTarget.CALENDAR
                     else mapping.todo_patch_body(update.fields, update.changed, self.settings))
        except InvalidRecordError as exc:
            return WriteResult(update.ms_id, False, status=400, error=str(exc))
        if not patch:  # nothing this target holds changed: the Graph adapter sends no request either
            return WriteResult(update.ms_id, True, status=200)
        problem = not_json(patch)
        if problem:
            return WriteResult(update.ms_id, False, status=400, error=problem)
        self._store(update.ms_id, {**self.items[update.ms_id], **patch}, where)
        return WriteResult(update.ms_id, True, item=self.task(update.ms_id), status=200)

    def delete_tasks(self, target: TaskTarget, container: str, ms_ids: Sequence[str]) -> list[WriteResult[MsTask]]:
        self.request_count += batches(len(ms_ids))
        where = self._where(target, container)
        return [self._delete_one(where, ms_id) for ms_id in ms_ids]

    def _delete_one(self, where: str, ms_id: str) -> WriteResult[MsTask]:
        if not self._holds(where, ms_id):
            return WriteResult(ms_id, True, status=404)  # already gone is what we wanted
        self._remove(ms_id)
        return WriteResult(ms_id, True, status=204)
