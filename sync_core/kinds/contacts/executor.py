"""Applies a contact plan through the shared executor (sync_core.sync.executor), adding what only contacts do:
the accounts a contact is filed under (read once per run, resolved by company name), our CRM-id tags on
Outlook items (an item we created or imported before is never imported twice: `_a_copy_of_ours`), matching
an import to an existing CRM contact by e-mail, and converging a pair's ContactFields.

Creates in Outlook are idempotent: `resolve_pending` settles intent links with `find_contact_by_crm_id`
before anything is planned for them, so a create whose outcome was lost is found again, never repeated.
Log lines name record ids, field names and status codes only: no personal data.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sync_core.domain.changes import WriteResult
from sync_core.domain.errors import AlreadyExistsError, InvalidRecordError, MicrosoftError, NotFoundError
from sync_core.domain.models import (
    Account,
    ContactFields,
    CrmContact,
    Link,
    LinkState,
    MsContact,
    QuarantineEntry,
    SyncMode,
    UserSyncSettings,
)
from sync_core.kinds.contacts.accounts import company_key, resolve_account
from sync_core.kinds.contacts.mapping import crm_to_fields, fields_to_crm
from sync_core.kinds.contacts.planner import Action, crm_version, import_crm_ids, merge_two
from sync_core.ports import ITEM_GONE, CrmPort, MicrosoftContactsPort, StateStore
from sync_core.sync.actions import ConflictMerge, Converge, CreateInCrm, CreateInMicrosoft, DeleteInMicrosoft, LinkExisting, Side
from sync_core.sync.executor import EngineConfig, Executor, MsWrite, Removal, Tally, outcome

__all__ = ["Engine"]


class Engine(Executor[ContactFields, CrmContact, WriteResult[MsContact]]):
    """Applies contact plans for one user's run. Holds the run's caches (accounts, links saved so far)."""

    SERVICE, NOUN, LABEL, RESULT = "Outlook", "", "", WriteResult
    CRM_RECORD, CRM_GONE = "CRM record", "CRM record or account gone during the run"
    GONE_DELETE_COUNTS = True  # the adapter answers a contact already gone as deleted, and it is counted

    def __init__(self, settings: UserSyncSettings, crm: CrmPort, microsoft: MicrosoftContactsPort, state: StateStore,
                 folder_id: str, *, tally: Tally, quarantined: Iterable[QuarantineEntry] = (),
                 config: EngineConfig = EngineConfig(), sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], datetime]) -> None:
        super().__init__(settings, state, tally, partition=settings.user_id, quarantined=quarantined, config=config,
                         sleep=sleep, now=now)
        self.crm = crm
        self.microsoft = microsoft
        self.folder_id = folder_id
        self._accounts: dict[str, Account] = {}
        self._resolved: dict[str, Account] = {}  # resolve_account's cache: company key → account
        self._claimed: set[str] = set()  # CRM ids linked in this run: never matched by e-mail again
        # A create of ours whose outcome could not be learnt: any new Outlook item may be it, so none is imported
        # this run (the Outlook round is replayed next run, when the lookup can tell ours from the user's).
        self._unresolved_creates = False
        self._tags: dict[str, str | None] = {}  # our CRM-id tag of each Outlook item this chunk may import
        self._owners: dict[str, str] = {}  # of those items, the CRM contact each is a card of, if it exists

    @property
    def user_id(self) -> str:
        return self.settings.user_id

    # --- accounts ---------------------------------------------------------------------------------

    def accounts(self, ids: Iterable[str]) -> dict[str, Account]:
        """Accounts by id, read once per run."""
        missing = {i for i in ids if i not in self._accounts}
        if missing:
            self._accounts.update(self.crm.get_accounts(self.tenant_id, missing))
        return self._accounts

    def account_name(self, account_id: str) -> str:
        account = self.accounts([account_id]).get(account_id)
        return account.name if account else ""

    def forget_accounts(self, ids: Iterable[str]) -> None:
        """Accounts changed in the CRM during this run (renamed, new owner) are read again."""
        for account_id in ids:
            self._accounts.pop(account_id, None)

    def _account_for(self, company: str) -> Account:
        """The account a company files a contact under (found, or created), remembered for this run."""
        account = resolve_account(self.crm, self.tenant_id, company, self.user_id, self._resolved)
        self._accounts[account.id] = account
        return account

    # --- before planning --------------------------------------------------------------------------

    def resolve_pending(self, links: dict[str, Link]) -> dict[str, Link]:
        """Settle creates whose outcome was lost: found by our CRM id → linked; not found → the create never
        happened and is still owed (the planner creates again); lookup failed → left pending."""
        settled = dict(links)
        for crm_id, link in links.items():
            if link.state is not LinkState.PENDING_CREATE:
                continue
            try:
                found = self.microsoft.find_contact_by_crm_id(self.folder_id, crm_id)
            except MicrosoftError as exc:
                self._fail(Side.MICROSOFT, Side.CRM, crm_id, f"pending create not resolved ({type(exc).__name__})",
                           retry=True)
                self._unresolved_creates = True
                self.tally.hold_delta = True
                continue
            if found is not None and self._linked_elsewhere(found.id, crm_id):
                # The newest item with our tag belongs to another contact (a copy the user kept of an earlier
                # item and that was imported on its own): our create never got that far.
                found = None
            if found is None and self._may_still_land(link):
                # Its answer was lost only moments ago: Graph may still be carrying it out. Neither made again
                # nor any Outlook item imported (it could be this one) until it shows or its time is up.
                self._fail(Side.MICROSOFT, Side.CRM, crm_id, "create outcome unknown, not in Outlook yet", retry=True)
                self._unresolved_creates = True
                self.tally.hold_delta = True
                continue
            if found is None:
                # Never created: the contact is still owed to Outlook. Kept as a link (so it stays synced even
                # outside the user's accounts) that is not in Outlook and counts as edited: the planner
                # creates it again.
                owed = self._save_link(link.model_copy(update={
                    "state": LinkState.MS_REMOVED, "ms_id": None, "crm_version": "", "synced": None,
                    "synced_hash": "", "pending_since": None}))
                if owed is not None:
                    settled[crm_id] = owed
                self.tally.log(f"pending create crm:{crm_id} not found in Outlook: created again")
                continue
            # Unknown whether the user edited it since: an unknown version lets the next delta decide by content.
            intended = link.synced or found.fields
            version = found.version if found.fields == intended else ""
            saved = self._save_link(link.model_copy(update={
                "ms_id": found.id, "state": LinkState.LINKED, "ms_version": version,
                "synced": intended, "synced_hash": intended.content_hash(), "pending_since": None}))
            if saved is not None:
                settled[crm_id] = saved
                self._succeeded(crm_id, None)
                self.tally.log(f"pending create crm:{crm_id} found in Outlook: linked, not created twice")
        return settled

    def _may_still_land(self, link: Link) -> bool:
        grace = self.microsoft.late_write_seconds
        return link.pending_since is not None and (self.now() - link.pending_since).total_seconds() < grace

    def _linked_elsewhere(self, ms_id: str, crm_id: str) -> bool:
        link = self.state.get_links_by_ms(self.tenant_id, self.user_id, [ms_id]).get(ms_id)
        return link is not None and link.crm_id != crm_id

    # --- applying ---------------------------------------------------------------------------------

    def apply(self, actions: Sequence[Action]) -> None:
        self._read_tags([a.ms_id for a in actions if isinstance(a, CreateInCrm)])
        super().apply(actions)
        # Later chunks read their links afresh; keeping these would grow with the size of a first sync.
        self._saved.clear()

    def _apply_own(self, action: Any) -> None:
        if isinstance(action, CreateInCrm):
            self._create_in_crm(action)
        elif isinstance(action, Converge):
            self._converge(action)

    # --- CRM writes -------------------------------------------------------------------------------

    def _create_in_crm(self, action: CreateInCrm) -> None:
        if self._unresolved_creates:
            self.tally.log(f"microsoft:{action.ms_id} not imported yet: a create of ours is unresolved")
            return
        if self._a_copy_of_ours(action):
            return
        account = self._account_for(action.fields.company)
        match = self._match_by_email(account.id, action.fields.emails) if action.match_by_email else None
        created: CrmContact | None = None
        if match is None:
            record = fields_to_crm(action.fields, None, account.id, tenant_id=self.tenant_id, contact_id=action.crm_id)
            for crm_id in import_crm_ids(self.tenant_id, self.user_id, action.ms_id):
                try:
                    created = self.crm.create_contact(record.model_copy(update={"id": crm_id}))
                    break
                except AlreadyExistsError:
                    # Our own import of this item whose link write was lost: link it rather than duplicate it.
                    match = self._lost_import(crm_id)
                    if match is not None:
                        break
                except (InvalidRecordError, NotFoundError) as exc:
                    self._fail(Side.CRM, Side.MICROSOFT, action.ms_id, "CRM refused the import", retry=False,
                               detail=str(exc))
                    return
            else:  # every derived id taken by other contacts: let the CRM pick one
                created = self._try_create(record.model_copy(update={"id": ""}), action.ms_id)
        if match is not None:
            self._claimed.add(match.id)
            link = self._current_link(match.id)
            target = merge_two(crm_to_fields(match, self.account_name(match.account_id)), action.fields)
            self.tally.log(f"microsoft:{action.ms_id} linked to existing crm:{match.id} instead of importing it")
            self._converge(LinkExisting(match.id, action.ms_id, action.ms_version, action.fields, target, match,
                                        link, write_ms=action.sync_back))
            return
        if created is None:
            return
        self._claimed.add(created.id)
        self.tally.crm["created"] += 1
        final = crm_to_fields(created, account.name)
        self._settle(created.id, action.ms_id, action.ms_version, action.fields, final,
                     crm_version(created.version, account.version), None,
                     write_ms=action.sync_back)

    def _read_tags(self, ms_ids: list[str]) -> None:
        """Our tags of the items about to be imported, in one batched read (an unreadable one stays out)."""
        if not ms_ids or self._unresolved_creates:
            return
        try:
            self._tags = self.microsoft.crm_ids_of(ms_ids)
        except MicrosoftError as exc:
            self.tally.log(f"tags of {len(ms_ids)} Outlook items not readable ({type(exc).__name__}): not imported yet")
            self._tags = {}
        # An untagged item is the user's own card, imported before if the id its import takes is a contact.
        owners = {ms_id: tag or import_crm_ids(self.tenant_id, self.user_id, ms_id)[0]
                  for ms_id, tag in self._tags.items() if tag != ITEM_GONE}
        existing = self.crm.get_contacts(self.tenant_id, set(owners.values())) if owners else {}
        self._owners = {ms_id: owner for ms_id, owner in owners.items() if owner in existing}

    def _a_copy_of_ours(self, action: CreateInCrm) -> bool:
        """A card of a CRM contact that is now synced with another item, never imported as a contact of its
        own: an item our create tagged (the user moved back in a card we had re-created after it left the
        folder, or copied one), or an item we imported before (its first import id is taken) whose contact
        was pushed to a new card while it was out of the folder. In two-way the older copy leaves the folder
        (the synced one holds the CRM's data); Microsoft → CRM leaves Outlook alone. Returns whether it was
        handled here."""
        if action.ms_id not in self._tags:
            self._fail(Side.CRM, Side.MICROSOFT, action.ms_id, "not imported: its tag was not readable", retry=True)
            return True
        if self._tags[action.ms_id] == ITEM_GONE:
            # Deleted in Outlook after the delta was read: all we hold of it is the delta's copy, and a card of
            # ours that no link names (an old copy, our create whose answer was lost) would come back as a
            # second CRM contact. The round is replayed: the next delta says whether it is gone for good.
            self.tally.hold_delta = True
            self.tally.log(f"microsoft:{action.ms_id} not imported: gone from Outlook since the delta was read")
            return True
        owner = self._owners.get(action.ms_id)
        contact = self._crm_read(owner) if owner is not None else None  # fresh: the chunk may have changed it
        if owner is None or contact is None:
            return False  # the user's own contact, new to us
        link = self._current_link(owner)
        if link is None or link.ms_id == action.ms_id:
            return False
        if link.state is LinkState.PENDING_CREATE:
            # Our own create, landed after its answer was lost: the next run's lookup links it.
            self.tally.hold_delta = True
            self.tally.log(f"microsoft:{action.ms_id} not imported: our create for crm:{owner} is being confirmed")
            return True
        if link.state is LinkState.MS_REMOVED:
            # Its synced item is gone: the one brought back takes its place.
            target = merge_two(crm_to_fields(contact, self.account_name(contact.account_id)), action.fields)
            self.tally.log(f"microsoft:{action.ms_id} is crm:{owner}'s card, back in the folder: linked again")
            self._converge(LinkExisting(owner, action.ms_id, action.ms_version, action.fields, target, contact,
                                        link, write_ms=action.sync_back))
            return True
        if not action.sync_back:
            self.tally.log(f"microsoft:{action.ms_id} not imported: a second copy of crm:{owner}'s card")
            return True
        [result] = self.microsoft.delete_contacts([action.ms_id])
        kind = outcome(result)
        if kind in ("ok", "gone"):
            if kind == "ok":
                self.tally.microsoft["deleted"] += 1
            self.tally.log(f"microsoft:{action.ms_id} removed: an older copy of crm:{owner}'s card, which is in the folder")
        else:
            self._fail(Side.MICROSOFT, Side.MICROSOFT, action.ms_id, self._reason("delete", result),
                       retry=kind != "rejected", detail=result.error or "")
        return True

    def _lost_import(self, crm_id: str) -> CrmContact | None:
        """The record an earlier import of this item created, if its link was never saved. A record of that id
        linked to another Outlook item is no lost import (an old copy of one of our own items is caught
        before, by its tag: `_a_copy_of_ours`)."""
        contact = self._crm_read(crm_id)
        if contact is None or crm_id in self._claimed:
            return None
        link = self._current_link(crm_id)
        if link is not None and link.state is not LinkState.MS_REMOVED:
            return None
        return contact

    def _try_create(self, record: CrmContact, ms_id: str) -> CrmContact | None:
        try:
            return self.crm.create_contact(record)
        except (InvalidRecordError, NotFoundError, AlreadyExistsError) as exc:
            self._fail(Side.CRM, Side.MICROSOFT, ms_id, "CRM refused the import", retry=False, detail=str(exc))
            return None

    def _match_by_email(self, account_id: str, emails: Sequence[str]) -> CrmContact | None:
        """A CRM contact of the account with one of these addresses that is not linked to another item."""
        for email in emails:
            candidates = [c for c in self.crm.find_contacts_by_email(self.tenant_id, account_id, email)
                          if c.id not in self._claimed]
            if not candidates:
                continue
            links = self.state.get_links_by_crm(self.tenant_id, self.user_id, [c.id for c in candidates])
            free = [c for c in candidates
                    if (link := links.get(c.id)) is None or link.state is LinkState.MS_REMOVED]
            if free:
                return min(free, key=lambda c: c.id)
        return None

    def _converge(self, action: Converge) -> None:
        contact = action.record or self._crm_read(action.crm_id)
        if contact is None:
            # Deleted in the CRM meanwhile: the feed brings the delete next run; replay the Outlook side with it.
            self._fail(Side.CRM, Side.MICROSOFT, action.ms_id, "CRM record deleted during the run", retry=True)
            return
        account = self.accounts([contact.account_id]).get(contact.account_id)
        account_name, account_version = (account.name, account.version) if account else ("", "")
        current = crm_to_fields(contact, account_name)
        account_id = contact.account_id
        if company_key(action.fields.company) != company_key(current.company):
            # The company changed in Outlook: the contact moves to the matching (or a new) account.
            account = self._account_for(action.fields.company)
            account_id, account_name, account_version = account.id, account.name, account.version
        record = fields_to_crm(action.fields, contact, account_id)
        contact = self._write_crm(record, contact, action.ms_id)
        if contact is None:
            return
        final = crm_to_fields(contact, account_name)
        self._claimed.add(contact.id)
        if isinstance(action, ConflictMerge):
            self._conflict(action.crm_id, action.clashes)
        self._settle(contact.id, action.ms_id, action.ms_version, action.ms_now, final,
                     crm_version(contact.version, account_version), action.link, write_ms=action.write_ms)

    def _settle(self, crm_id: str, ms_id: str, ms_version: str, ms_fields: ContactFields, final: ContactFields,
                crm_version: str, prior: Link | None, *, write_ms: bool) -> None:
        """Outlook follows the CRM's content (e.g. the account's exact name) when it may be written; then the
        pair's link is saved with what both sides hold."""
        if write_ms and final != ms_fields:
            known = self._fresh(prior) if prior is not None else None
            if (known is None or known.state is not LinkState.LINKED or known.synced != ms_fields
                    or known.ms_version != ms_version):
                # Record the pair as Outlook holds it now before writing to Outlook, so a failing write neither
                # orphans a new pair nor loses an Outlook change already taken into the CRM. The unknown CRM
                # version makes the next run compare content and send the CRM's again.
                prior = self._link(crm_id, ms_id, "", ms_version, ms_fields, prior)
                if prior is None:
                    return
            self._ms_updates.append(MsWrite(crm_id, ms_id, ms_id, final, crm_version, prior, None))
            return
        # microsoft_to_crm never writes Outlook: the merge base is what Outlook holds.
        synced = ms_fields if self.settings.mode is SyncMode.MICROSOFT_TO_CRM else final
        if self._link(crm_id, ms_id, crm_version, ms_version, synced, prior) is not None:
            self._succeeded(crm_id, ms_id)

    def _crm_update(self, record: CrmContact) -> CrmContact:
        return self.crm.update_contact(record)

    def _crm_read(self, crm_id: str) -> CrmContact | None:
        return self.crm.get_contacts(self.tenant_id, [crm_id]).get(crm_id)

    # --- what the shared executor asks of contacts ------------------------------------------------

    def _removal(self, action: DeleteInMicrosoft) -> Removal:
        return Removal(action.crm_id, action.ms_id, action.ms_id, "", action.link)

    def _stored(self, synced: ContactFields, meeting: bool) -> dict[str, Any]:
        return {"synced": synced, "synced_hash": synced.content_hash()}

    def _intent(self, action: CreateInMicrosoft, prior: Link | None) -> dict[str, Any]:
        return {"ms_id": None, **self._stored(action.fields, False), "pending_since": self.now()}

    def _create_call(self) -> Callable[[list[tuple[CreateInMicrosoft, Link]]], list[WriteResult[MsContact]]]:
        return lambda chunk: self.microsoft.create_contacts(self.folder_id, [(a.crm_id, a.fields) for a, _ in chunk])

    def _update_call(self) -> Callable[[list[MsWrite[ContactFields]]], list[WriteResult[MsContact]]]:
        return lambda chunk: self.microsoft.update_contacts([(w.graph_id, w.fields) for w in chunk])

    def _delete_call(self, group: str) -> Callable[[list[str]], list[WriteResult[MsContact]]]:
        return self.microsoft.delete_contacts

    def _written(self, result: WriteResult[MsContact]) -> tuple[str, str] | None:
        return (result.item.id, result.item.version) if result.item is not None else None
