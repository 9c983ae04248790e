"""Outlook contacts, To Do and the calendar for engine tests: the memory adapters with injected faults (whole
calls, batch items, expired delta tokens), counters of what was written, guards on what our mapping sends,
and the mailbox's owner at work (their edits are not our app's traffic: no request counted)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sync_core.domain.changes import WriteResult
from sync_core.adapters.memory import CALENDAR, MemoryContacts, MemoryTasks
from sync_core.adapters.memory.changes import batches
from sync_core.domain.errors import DeltaExpiredError, InvalidRecordError
from sync_core.domain.models import ContactFields, DeltaResult, MsTask, TaskFields, TaskTarget, UserSyncSettings
from sync_core.kinds.contacts import mapping
from sync_core.kinds.tasks.mapping import event_create_body, event_patch_body, todo_create_body, todo_patch_body
from sync_core.ports import TaskUpdate
from tests.support.faults import Faulty, merged, with_faults


class _Expiring(Faulty):
    """Delta tokens the server has forgotten (`expire_delta`): their next round raises DeltaExpiredError."""

    request_count: int

    def _init_expiry(self) -> None:
        self._init_faults()
        self._issued: set[str] = set()
        self._expired: set[str] = set()
        self.items_written = 0

    def expire_delta(self) -> None:
        self._expired |= self._issued

    def _check_token(self, delta_link: str | None) -> None:
        if delta_link is not None and delta_link in self._expired:
            self.request_count += 1
            raise DeltaExpiredError("SyncStateNotFound", status=410, code="SyncStateNotFound")

    def _issue(self, delta_link: str) -> None:
        self._issued.add(delta_link)


@with_faults("ensure_folder", "delete_folder", "crm_ids_of", "find_contact_by_crm_id")
class FakeMicrosoft(_Expiring, MemoryContacts):
    """MemoryContacts with faults; `items_written` counts contacts created, updated or deleted through the port.
    `duplicate_delta_items` repeats every item of a round, as Graph may."""

    def __init__(self, *, delta_page_size: int = 100, duplicate_delta_items: bool = False) -> None:
        super().__init__(delta_page_size=delta_page_size)
        self.duplicate_delta_items = duplicate_delta_items
        self._init_expiry()

    @staticmethod
    def _not_ours(body: dict[str, Any], allow_tag: bool) -> str | None:
        """A field our mapping does not own must never leave it (refused here as Graph would refuse a bad body)."""
        extra = set(body) - set(mapping.OWNED_GRAPH_FIELDS) - ({"singleValueExtendedProperties"} if allow_tag else set())
        return f"fields we do not own in the body: {sorted(extra)}" if extra else None

    def _refusals(self, keys: Sequence[str], bodies: Sequence[dict[str, Any] | None],
                  allow_tag: bool) -> dict[int, WriteResult]:
        refused: dict[int, WriteResult] = {}
        for i, (key, body) in enumerate(zip(keys, bodies)):
            fault = self._item_fault(key)
            problem = self._not_ours(body, allow_tag) if body is not None else None
            if fault is not None:
                refused[i] = WriteResult(key, False, status=fault.status, error=fault.error, retry_after=fault.retry_after)
            elif problem:
                refused[i] = WriteResult(key, False, status=400, error=problem)
        return refused

    def _batch(self, method: str, items: Sequence[Any], refused: dict[int, WriteResult], args: tuple[Any, ...],
               write: Any) -> list[WriteResult]:
        passed = write([item for i, item in enumerate(items) if i not in refused])
        self.request_count += batches(len(items)) - batches(len(items) - len(refused))
        self.items_written += sum(1 for r in passed if r.ok and r.status != 404)
        self._leave(method, *args)
        return merged(len(items), refused, passed)

    def contact_delta(self, folder_id: str, delta_link: str | None) -> DeltaResult:
        self._enter("contact_delta", folder_id, delta_link)
        self._check_token(delta_link)
        result = MemoryContacts.contact_delta(self, folder_id, delta_link)
        self._issue(result.delta_link)
        if self.duplicate_delta_items:
            result = DeltaResult(changes=result.changes + result.changes, delta_link=result.delta_link, full=result.full)
        self._leave("contact_delta", folder_id, delta_link)
        return result

    def create_contacts(self, folder_id: str, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult]:
        self._enter("create_contacts", folder_id, items)
        refused = self._refusals([c for c, _ in items], [mapping.fields_to_graph(f, c) for c, f in items], True)
        return self._batch("create_contacts", items, refused, (folder_id, items),
                           lambda rest: MemoryContacts.create_contacts(self, folder_id, rest))

    def update_contacts(self, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult]:
        self._enter("update_contacts", items)
        bodies = [mapping.fields_to_graph(f, None) if m in self.items else None for m, f in items]
        refused = self._refusals([m for m, _ in items], bodies, False)
        return self._batch("update_contacts", items, refused, (items,),
                           lambda rest: MemoryContacts.update_contacts(self, rest))

    def delete_contacts(self, ms_ids: Sequence[str]) -> list[WriteResult]:
        self._enter("delete_contacts", ms_ids)
        refused = self._refusals(ms_ids, [None] * len(ms_ids), False)
        return self._batch("delete_contacts", ms_ids, refused, (ms_ids,),
                           lambda rest: MemoryContacts.delete_contacts(self, rest))

    # -- the Outlook user at work
    def user_create(self, folder_id: str, **graph: Any) -> str:
        ms_id = self._ids("AAMk-")
        self._store(ms_id, dict(graph), folder_id)
        return ms_id

    def user_edit(self, ms_id: str, **graph: Any) -> None:
        current = self.items[ms_id]
        self._store(ms_id, {**current, **graph}, current["parentFolderId"])

    def user_delete(self, ms_id: str) -> None:
        self._remove(ms_id)

    def user_move(self, ms_id: str, folder_id: str) -> None:
        self._store(ms_id, dict(self.items[ms_id]), folder_id)


@with_faults("ensure_container", "get_tasks", "find_task_by_crm_id")
class FakeMicrosoftTasks(_Expiring, MemoryTasks):
    """MemoryTasks with faults; `items_written` counts writes, `attendee_notices` the changes or deletes of
    meetings (Outlook would have told their attendees). A body with attendees is refused: we never invite."""

    def __init__(self, settings: UserSyncSettings, *, delta_page_size: int = 100) -> None:
        super().__init__(settings, delta_page_size=delta_page_size)
        self._init_expiry()
        self.attendee_notices = 0

    def _refusals(self, keys: Sequence[str], bodies: Sequence[dict[str, Any] | None]) -> dict[int, WriteResult[MsTask]]:
        refused: dict[int, WriteResult[MsTask]] = {}
        for i, (key, body) in enumerate(zip(keys, bodies)):
            fault = self._item_fault(key)
            if fault is not None:
                refused[i] = WriteResult(key, False, status=fault.status, error=fault.error,
                                             retry_after=fault.retry_after)
            elif body is not None and body.get("attendees"):
                refused[i] = WriteResult(key, False, status=400,
                                             error="attendees in a body: the sync must never invite anyone")
        return refused

    def _batch(self, method: str, items: Sequence[Any], refused: dict[int, WriteResult[MsTask]], args: tuple[Any, ...],
               keys: Sequence[str], write: Any) -> list[WriteResult[MsTask]]:
        meetings = {k for k in keys if (self.items.get(k) or {}).get("attendees")}
        before = len(self.items)
        passed: list[WriteResult[MsTask]] = write([item for i, item in enumerate(items) if i not in refused])
        self.request_count += batches(len(items)) - batches(len(items) - len(refused))
        if method == "create_tasks":
            self.items_written += len(self.items) - before  # a repeated transactionId made nothing
        else:
            # a PATCH with nothing for this target to hold is answered without a write
            self.items_written += sum(1 for r in passed if r.ok and (r.status == 204 or r.item is not None))
        self.attendee_notices += sum(1 for r in passed if r.key in meetings and r.ok and (r.status == 204 or r.item is not None))
        self._leave(method, *args)
        return merged(len(items), refused, passed)

    def _body(self, make: Any) -> dict[str, Any] | None:
        try:
            return make()  # type: ignore[no-any-return]
        except InvalidRecordError:
            return None  # the adapter refuses it itself

    def task_delta(self, target: TaskTarget, container: str, delta_link: str | None) -> DeltaResult[MsTask]:
        self._enter("task_delta", target, container, delta_link)
        self._check_token(delta_link)
        result = MemoryTasks.task_delta(self, target, container, delta_link)
        self._issue(result.delta_link)
        self._leave("task_delta", target, container, delta_link)
        return result

    def create_tasks(self, target: TaskTarget, container: str,
                     items: Sequence[tuple[str, str, TaskFields]]) -> list[WriteResult[MsTask]]:
        self._enter("create_tasks", target, container, items)
        calendar = target is TaskTarget.CALENDAR
        bodies = [self._body(lambda: event_create_body(f, self.settings, c, v) if calendar
                             else todo_create_body(f, self.settings, c)) for c, v, f in items]
        refused = self._refusals([c for c, _, _ in items], bodies)
        return self._batch("create_tasks", items, refused, (target, container, items), [],
                           lambda rest: MemoryTasks.create_tasks(self, target, container, rest))

    def update_tasks(self, target: TaskTarget, container: str, items: Sequence[TaskUpdate]) -> list[WriteResult[MsTask]]:
        self._enter("update_tasks", target, container, items)
        calendar = target is TaskTarget.CALENDAR
        bodies = [self._body(lambda: event_patch_body(u.fields, u.changed, u.all_day_now, self.settings) if calendar
                             else todo_patch_body(u.fields, u.changed, self.settings)) for u in items]
        keys = [u.ms_id for u in items]
        refused = self._refusals(keys, bodies)
        return self._batch("update_tasks", items, refused, (target, container, items), keys,
                           lambda rest: MemoryTasks.update_tasks(self, target, container, rest))

    def delete_tasks(self, target: TaskTarget, container: str, ms_ids: Sequence[str]) -> list[WriteResult[MsTask]]:
        self._enter("delete_tasks", target, container, ms_ids)
        refused = self._refusals(ms_ids, [None] * len(ms_ids))
        return self._batch("delete_tasks", ms_ids, refused, (target, container, ms_ids), ms_ids,
                           lambda rest: MemoryTasks.delete_tasks(self, target, container, rest))

    # -- the user at work in To Do or Outlook
    def delete_list(self, list_id: str) -> None:
        """The user deletes the list in To Do (its tasks go with it)."""
        self.lists.pop(list_id, None)
        for ms_id in list(self.items_in(list_id)):
            self._remove(ms_id)

    def user_create(self, where: str, **graph: Any) -> str:
        ms_id = self._ids("AAMkU-")
        self._store(ms_id, dict(graph), where)
        return ms_id

    def user_edit(self, ms_id: str, **graph: Any) -> None:
        current = self.items[ms_id]
        self._store(ms_id, {**current, **graph}, current["_in"])

    def user_delete(self, ms_id: str) -> None:
        self._remove(ms_id)


__all__ = ["CALENDAR", "FakeMicrosoft", "FakeMicrosoftTasks"]
