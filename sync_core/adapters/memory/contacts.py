"""MicrosoftContactsPort in memory: an Outlook mailbox's contact folders with Graph's rules.

Items are kept as Graph JSON; writes go through `mapping.fields_to_graph` and reads through
`mapping.graph_to_contact`, as with the Graph adapter. Ids are immutable and opaque (a move keeps the id);
every write gives a new changeKey. Delta: a round without a token lists the folder (full=True); with a
token, every item touched since comes once in its current state, or as removed ("deleted", or "changed"
when it moved out); tokens are refused and expire as changes.py says. `request_count` counts the HTTP
requests Graph would have served: a delta page, a $batch of up to 20 items, a folder call, a lookup.
tests/contracts/test_microsoft_contacts_contract.py holds it to what the Graph adapter does on the emulator.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sync_core.domain.changes import WriteResult
from sync_core.adapters.memory.changes import ChangeLog, Ids, batches, not_json, utc_now
from sync_core.domain.errors import InvalidRecordError, NotFoundError
from sync_core.domain.models import ContactFields, DeltaResult, MsChange, MsContact
from sync_core.kinds.contacts import mapping
from sync_core.ports import ITEM_GONE

DEFAULT_CONTACTS_FOLDER = "default-contacts"


class MemoryContacts:
    """The user's contact folders in Outlook, in memory."""

    late_write_seconds = 0.0  # a write here is done or not when the call returns: nothing lands later

    def __init__(self, *, delta_page_size: int = 100, clock: Callable[[], datetime] = utc_now) -> None:
        self._ids = Ids("graph")
        self.folders: dict[str, str] = {DEFAULT_CONTACTS_FOLDER: "Contacts"}
        self.items: dict[str, dict[str, Any]] = {}
        self._clock = clock
        self.log = ChangeLog(self._ids, clock)
        self.delta_page_size = delta_page_size
        self.request_count = 0

    # -- the mailbox's contents
    def _store(self, ms_id: str, body: dict[str, Any], folder_id: str) -> None:
        body["id"] = ms_id
        body["changeKey"] = self._ids("ck-")
        body["parentFolderId"] = folder_id
        body["lastModifiedDateTime"] = self._clock().isoformat()
        self.items[ms_id] = body
        self.log.record(ms_id, folder_id)

    def _remove(self, ms_id: str) -> None:
        del self.items[ms_id]
        self.log.record(ms_id, None)

    def contact(self, ms_id: str) -> MsContact:
        return mapping.graph_to_contact(self.items[ms_id])

    def folder_items(self, folder_id: str) -> dict[str, dict[str, Any]]:
        return {i: item for i, item in self.items.items() if item.get("parentFolderId") == folder_id}

    def folder_by_name(self, display_name: str) -> list[str]:
        return sorted(f for f, name in self.folders.items() if name == display_name)

    @staticmethod
    def _refused(body: dict[str, Any]) -> str | None:
        """What Graph answers with a 400."""
        if len(body.get("emailAddresses") or []) > mapping.MAX_EMAILS:
            return "more than three e-mail addresses"
        return not_json(body)

    # -- folders
    def ensure_folder(self, display_name: str, known_id: str | None) -> str:
        if known_id is not None:
            self.request_count += 1  # GET the known folder
            if known_id in self.folders:
                return known_id
        self.request_count += 1  # list folders by name
        found = self.folder_by_name(display_name)
        if found:
            return found[0]  # several (made by hand in Outlook): always the same one
        self.request_count += 1  # POST a new folder
        folder_id = self._ids("folder-")
        self.folders[folder_id] = display_name
        return folder_id

    def delete_folder(self, folder_id: str) -> None:
        self.request_count += 1
        if self.folders.pop(folder_id, None) is None:
            return
        for ms_id in list(self.folder_items(folder_id)):
            self._remove(ms_id)

    # -- reading
    def contact_delta(self, folder_id: str, delta_link: str | None) -> DeltaResult[MsContact]:
        self.request_count += 1
        if folder_id not in self.folders:
            raise NotFoundError("the contact folder does not exist")
        since = None if delta_link is None else self.log.since(delta_link, folder_id)
        changes = [c for ms_id, _ in self.log.items() if (c := self._delta_entry(ms_id, folder_id, since))]
        self.request_count += max(1, -(-len(changes) // self.delta_page_size)) - 1
        return DeltaResult(changes=tuple(changes), delta_link=self.log.issue(folder_id), full=delta_link is None)

    def _delta_entry(self, ms_id: str, folder_id: str, since: int | None) -> MsChange[MsContact] | None:
        item = self.items.get(ms_id)
        here_now = item is not None and item.get("parentFolderId") == folder_id
        if since is None:
            return self._as_change(ms_id, item) if here_now else None
        earlier, recent = ChangeLog.split(self.log.events(ms_id), since)
        if not recent:
            return None
        if here_now:
            return self._as_change(ms_id, item)
        was_here = (earlier and earlier[-1].where == folder_id) or any(e.where == folder_id for e in recent)
        if not was_here:
            return None
        return MsChange(ms_id=ms_id, removed_reason="deleted" if item is None else "changed")

    @staticmethod
    def _as_change(ms_id: str, item: dict[str, Any] | None) -> MsChange[MsContact]:
        try:
            return MsChange(ms_id=ms_id, item=mapping.graph_to_contact(item))
        except InvalidRecordError as exc:
            return MsChange(ms_id=ms_id, invalid_reason=str(exc))

    def crm_ids_of(self, ms_ids: Sequence[str]) -> dict[str, str | None]:
        self.request_count += batches(len(ms_ids)) if ms_ids else 0
        found: dict[str, str | None] = {}
        for ms_id in ms_ids:
            if ms_id not in self.items:
                found[ms_id] = ITEM_GONE
                continue
            tags = self.items[ms_id].get("singleValueExtendedProperties") or []
            found[ms_id] = next((str(t["value"]) for t in tags
                                 if t.get("id") == mapping.CRM_ID_PROPERTY and t.get("value")), None)
        return found

    def find_contact_by_crm_id(self, folder_id: str, crm_id: str) -> MsContact | None:
        """The newest item of the folder tagged with `crm_id` (an older one is a copy the user kept)."""
        self.request_count += 1
        tagged = [ms_id for ms_id, item in self.folder_items(folder_id).items()
                  if any(t.get("id") == mapping.CRM_ID_PROPERTY and t.get("value") == crm_id
                         for t in item.get("singleValueExtendedProperties") or [])]
        if not tagged:
            return None
        return self.contact(max(tagged, key=self.log.created_seq))

    # -- writing
    def create_contacts(self, folder_id: str, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult[MsContact]]:
        self.request_count += batches(len(items))
        if folder_id not in self.folders:
            raise NotFoundError("the contact folder does not exist")
        results: list[WriteResult[MsContact]] = []
        for crm_id, fields in items:
            body = mapping.fields_to_graph(fields, crm_id)
            problem = self._refused(body)
            if problem:
                results.append(WriteResult(crm_id, False, status=400, error=problem))
                continue
            ms_id = self._ids("AAMk-")
            self._store(ms_id, body, folder_id)
            results.append(WriteResult(crm_id, True, item=self.contact(ms_id), status=201))
        return results

    def update_contacts(self, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult[MsContact]]:
        self.request_count += batches(len(items))
        results: list[WriteResult[MsContact]] = []
        for ms_id, fields in items:
            if ms_id not in self.items:
                results.append(WriteResult(ms_id, False, status=404, error="ErrorItemNotFound"))
                continue
            patch = mapping.fields_to_graph(fields, None)
            problem = self._refused(patch)
            if problem:
                results.append(WriteResult(ms_id, False, status=400, error=problem))
                continue
            current = self.items[ms_id]
            self._store(ms_id, {**current, **patch}, current["parentFolderId"])
            results.append(WriteResult(ms_id, True, item=self.contact(ms_id), status=200))
        return results

    def delete_contacts(self, ms_ids: Sequence[str]) -> list[WriteResult[MsContact]]:
        self.request_count += batches(len(ms_ids))
        results: list[WriteResult[MsContact]] = []
        for ms_id in ms_ids:
            if ms_id not in self.items:
                results.append(WriteResult(ms_id, True, status=404))  # already gone is what we wanted
            else:
                self._remove(ms_id)
                results.append(WriteResult(ms_id, True, status=204))
        return results
