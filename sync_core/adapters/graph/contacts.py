"""MicrosoftContactsPort over Microsoft Graph (msgraph-sdk request adapter, JSON batching).

Creates are idempotent: each POST body carries our CRM id in a single-value extended property,
so a create whose outcome is unknown is found again by `find_contact_by_crm_id` rather than
repeated. Only idempotent writes (PATCH, DELETE) are replayed after an ambiguous failure.
"""
from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from sync_core.domain.changes import WriteResult
from sync_core.kinds.contacts import mapping
from sync_core.adapters.graph.outcomes import delete_result, delta_items, read_results, write_result
from sync_core.adapters.graph.session import GraphSession, SubRequest, SubResponse
from sync_core.domain.errors import DeltaExpiredError, InvalidRecordError, NotFoundError
from sync_core.domain.models import ContactFields, DeltaResult, MsChange, MsContact
from sync_core.ports import ITEM_GONE

CONTACT_SELECT = ",".join([
    "givenName", "surname", "displayName", "emailAddresses", "businessPhones", "mobilePhone", "jobTitle",
    "companyName", "businessAddress", "personalNotes", "parentFolderId", "changeKey", "lastModifiedDateTime",
])
DELTA_PAGE_SIZE = 500
LATE_WRITE_TIMEOUTS = 4


def _odata_quote(value: str) -> str:
    return value.replace("'", "''")


class GraphContacts:
    """The user's contact folder in Outlook."""

    def __init__(self, session: GraphSession, mailbox: str = "/me") -> None:
        self.session = session
        self.mailbox = mailbox
        self.quarantined: list[tuple[str, str]] = []  # delta items without even an id

    @property
    def request_count(self) -> int:
        return self.session.requests_sent

    @property
    def late_write_seconds(self) -> float:
        """A request we stopped waiting for after `timeout` s may still be carried out by Graph: allow it
        several times as long again before concluding it never happened."""
        return LATE_WRITE_TIMEOUTS * self.session.timeout

    # -- folder ----------------------------------------------------------------------------
    def ensure_folder(self, display_name: str, known_id: str | None) -> str:
        if known_id:
            try:
                self.session.request("GET", f"{self.mailbox}/contactFolders/{quote(known_id, safe='')}?$select=id")
                return known_id
            except NotFoundError:
                pass  # deleted in Outlook: find another of that name or create it anew
        found = self.session.request(
            "GET", f"{self.mailbox}/contactFolders?$filter=displayName eq '{_odata_quote(display_name)}'&$select=id,displayName")
        candidates: list[str] = sorted(f["id"] for f in (found or {}).get("value", []) if f.get("displayName") == display_name)
        if candidates:
            return candidates[0]  # several (made by hand in Outlook): always the same one
        created = self.session.request("POST", f"{self.mailbox}/contactFolders", {"displayName": display_name}, retry=False)
        return str(created["id"])

    def delete_folder(self, folder_id: str) -> None:
        try:
            self.session.request("DELETE", f"{self.mailbox}/contactFolders/{quote(folder_id, safe='')}")
        except NotFoundError:
            return

    # -- reading ---------------------------------------------------------------------------
    def contact_delta(self, folder_id: str, delta_link: str | None) -> DeltaResult[MsContact]:
        full = delta_link is None
        url = delta_link or (f"{self.mailbox}/contactFolders/{quote(folder_id, safe='')}/contacts/delta"
                             f"?$select={CONTACT_SELECT}")
        items, new_link = self.session.get_pages(url, headers={"Prefer": f"odata.maxpagesize={DELTA_PAGE_SIZE}"})
        if not new_link:
            raise DeltaExpiredError("delta round ended without a deltaLink", status=200)
        changes: dict[str, MsChange[MsContact]] = {}

        def nameless() -> None:
            self.quarantined.append(("?", "delta item without an id"))

        for ms_id, removed, item in delta_items(items, nameless):
            if removed is not None:
                changes[ms_id] = MsChange(ms_id=ms_id, removed_reason=removed)
                continue
            try:
                changes[ms_id] = MsChange(ms_id=ms_id, item=mapping.graph_to_contact(item))
            except InvalidRecordError as exc:
                # Quarantined by the engine with this reason; never mistaken for a removal.
                changes[ms_id] = MsChange(ms_id=ms_id, invalid_reason=str(exc))
        # The same item can appear twice in a round; the last state wins (dict keeps the latest).
        return DeltaResult(changes=tuple(changes.values()), delta_link=new_link, full=full)

    def crm_ids_of(self, ms_ids: Sequence[str]) -> dict[str, str | None]:
        """The CRM id our create tagged each item with (it survives moves between folders); None for an item
        of the user's own, ITEM_GONE for one gone meanwhile. An item whose read failed is left out. Read in
        $batch calls of 20, so an import of many items costs a twentieth of a request each."""
        prop = _odata_quote(mapping.CRM_ID_PROPERTY)
        subs = [SubRequest(str(i), "GET", f"{self.mailbox}/contacts/{quote(ms_id, safe='')}?$select=id"
                                          f"&$expand=singleValueExtendedProperties($filter=id eq '{prop}')")
                for i, ms_id in enumerate(ms_ids)]
        answered = self.session.batch(subs, idempotent=True) if subs else {}
        gone: str | None = ITEM_GONE
        return read_results(ms_ids, answered, gone, _crm_tag)

    def find_contact_by_crm_id(self, folder_id: str, crm_id: str) -> MsContact | None:
        prop = _odata_quote(mapping.CRM_ID_PROPERTY)
        url = (f"{self.mailbox}/contactFolders/{quote(folder_id, safe='')}/contacts"
               f"?$filter=singleValueExtendedProperties/Any(ep: ep/id eq '{prop}' and ep/value eq '{_odata_quote(crm_id)}')"
               f"&$select={CONTACT_SELECT}")
        items, _ = self.session.get_pages(url + ",createdDateTime")
        items = [item for item in items if isinstance(item, dict)]  # anything else is no contact of ours
        if not items:
            return None
        # The newest copy is the one our create made; an older one is a card the user moved back in.
        newest = sorted(items, key=lambda i: (str(i.get("createdDateTime") or ""), str(i.get("id"))))[-1]
        return mapping.graph_to_contact(newest)

    # -- writing ---------------------------------------------------------------------------
    def create_contacts(self, folder_id: str, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult[MsContact]]:
        subs = [SubRequest(str(i), "POST", f"{self.mailbox}/contactFolders/{quote(folder_id, safe='')}/contacts",
                           mapping.fields_to_graph(fields, crm_id)) for i, (crm_id, fields) in enumerate(items)]
        answered = self.session.batch(subs, idempotent=False)
        return [self._result(crm_id, answered[str(i)]) for i, (crm_id, _) in enumerate(items)]

    def update_contacts(self, items: Sequence[tuple[str, ContactFields]]) -> list[WriteResult[MsContact]]:
        subs = [SubRequest(str(i), "PATCH", f"{self.mailbox}/contacts/{quote(ms_id, safe='')}",
                           mapping.fields_to_graph(fields, None)) for i, (ms_id, fields) in enumerate(items)]
        answered = self.session.batch(subs, idempotent=True)
        return [self._result(ms_id, answered[str(i)]) for i, (ms_id, _) in enumerate(items)]

    def delete_contacts(self, ms_ids: Sequence[str]) -> list[WriteResult[MsContact]]:
        subs = [SubRequest(str(i), "DELETE", f"{self.mailbox}/contacts/{quote(ms_id, safe='')}")
                for i, ms_id in enumerate(ms_ids)]
        answered = self.session.batch(subs, idempotent=True)
        return [delete_result(WriteResult[MsContact], ms_id, answered[str(i)]) for i, ms_id in enumerate(ms_ids)]

    @staticmethod
    def _result(key: str, response: SubResponse) -> WriteResult[MsContact]:
        return write_result(WriteResult[MsContact], key, response, "item", mapping.graph_to_contact)


def _crm_tag(item: object) -> str | None:
    tags = item.get("singleValueExtendedProperties") if isinstance(item, dict) else None
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, dict) and isinstance(tag.get("value"), str) and tag["value"]:
            return str(tag["value"])
    return None
