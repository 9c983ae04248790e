"""Applies a plan: the imperative shell around the planner.

Order within a batch of actions: CRM writes first (imports, Outlook edits merged into the CRM), then the
Outlook writes in batches (creates, updates, deletes), then nothing else: every link is saved right after
its own write succeeded (ETag-conditional). Creates in Outlook are idempotent: the intent (a PENDING_CREATE
link) is saved before the call; `resolve_pending` settles such links with `find_contact_by_crm_id` before
anything is planned for them, so a create whose outcome was lost is found again, never repeated.

A failing record never stops the run. Failures are sorted into:
- rejected (a 4xx, a malformed record): quarantined with the reason, not retried until the record changes;
- retryable (throttled beyond our bounded retries, 5xx, timeouts, lost races): counted as errors and retried
  by the next run, CRM records through the quarantine list (re-read by id), Outlook changes by keeping the
  old deltaLink (`Tally.hold_delta`), since Graph cannot be asked for one changed item again.
Log lines name record ids, field names and status codes only: no personal data.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sync_core.kinds.contacts.accounts import company_key, resolve_account
from sync_core.domain.errors import (
    AlreadyExistsError,
    ConcurrencyError,
    InvalidRecordError,
    MicrosoftError,
    NotFoundError,
    ThrottledError,
)
from sync_core.kinds.contacts.mapping import crm_to_fields, fields_to_crm
from sync_core.domain.models import (
    Account,
    ContactFields,
    CrmContact,
    Link,
    LinkState,
    MsChange,
    QuarantineEntry,
    RunRecord,
    SideCounts,
    SyncMode,
    UserSyncSettings,
)
from sync_core.kinds.contacts.planner import Action, crm_version, import_crm_ids, merge_two
from sync_core.sync.actions import (ConflictMerge, Converge, CreateInCrm, CreateInMicrosoft, DeleteInMicrosoft, ForgetLink,
                                    LinkExisting, MarkCrmDeleted, MarkMsRemoved, RefreshLinkVersions, Side, Skip, Unlink)
from sync_core.ports import ITEM_GONE, CrmPort, MicrosoftContactsPort, StateStore, WriteResult

T = TypeVar("T")


@dataclass(frozen=True)
class EngineConfig:
    write_chunk: int = 100  # items per port call (the adapter splits them into $batch requests of 20)
    throttle_rounds: int = 3  # retries of throttled items within a run, each after the longest Retry-After
    max_wait_seconds: float = 60.0  # never sleep longer than this for one Retry-After
    log_limit: int = 200  # log lines kept in a run record


def save_links_batched(state: StateStore, links: list[Link], saved_now: dict[str, Link],
                       save_one: Callable[[Link], Link | None]) -> list[Link | None]:
    """Many links in few storage transactions (remembered in `saved_now` by CRM id, for their new ETags);
    a link that met a race goes the one-by-one way (`save_one`). Shared by the contact and task engines."""
    if not links:
        return []
    out: list[Link | None] = []
    for link, saved in zip(links, state.save_links(links)):
        if isinstance(saved, Link):
            saved_now[saved.crm_id] = saved
            out.append(saved)
        elif isinstance(saved, (ConcurrencyError, AlreadyExistsError)):
            out.append(save_one(link))
        else:
            raise saved
    return out


@dataclass
class Tally:
    """What a run did, counted as it goes; folded into the RunRecord at the end."""

    log_limit: int = 200
    crm: dict[str, int] = field(default_factory=lambda: dict(created=0, updated=0, deleted=0, errors=0))
    microsoft: dict[str, int] = field(default_factory=lambda: dict(created=0, updated=0, deleted=0, errors=0))
    conflicts: int = 0
    quarantined: int = 0
    hold_delta: bool = False  # an Outlook change could not be applied: keep the old deltaLink to replay it
    guarded: bool = False  # the mass-delete guard held deletions back
    lines: list[str] = field(default_factory=list)
    dropped_lines: int = 0

    def side(self, side: Side) -> dict[str, int]:
        return self.crm if side is Side.CRM else self.microsoft

    def log(self, line: str) -> None:
        if len(self.lines) < self.log_limit:
            self.lines.append(line)
        else:
            self.dropped_lines += 1

    @property
    def failures(self) -> int:
        return self.crm["errors"] + self.microsoft["errors"] + self.quarantined + int(self.guarded)

    def fold_into(self, run: RunRecord) -> RunRecord:
        lines = list(self.lines)
        if self.dropped_lines:
            lines.append(f"... {self.dropped_lines} more log lines not kept")
        return run.model_copy(update={
            "crm": SideCounts(**self.crm), "microsoft": SideCounts(**self.microsoft),
            "conflicts": self.conflicts, "quarantined": self.quarantined, "log": tuple(lines),
        })


@dataclass(frozen=True)
class _MsWrite:
    """An Outlook update decided while converging; its link is saved once it succeeded."""

    crm_id: str
    ms_id: str
    fields: ContactFields
    crm_version: str
    prior: Link | None


def _kind(result: WriteResult) -> str:
    """ok | gone (404) | throttled | unknown (may or may not have happened) | rejected (a 4xx: will not work)."""
    if result.ok:
        return "ok"
    if result.status == 404:
        return "gone"
    if result.status in (429, 503) or result.retry_after is not None:
        return "throttled"
    if result.status == 0 or result.status >= 500 or result.status in (408, 504) or 200 <= result.status < 300:
        return "unknown"
    return "rejected"


class Engine:
    """Applies plans for one user's run. Holds the run's caches (accounts, links saved so far)."""

    def __init__(
        self,
        settings: UserSyncSettings,
        crm: CrmPort,
        microsoft: MicrosoftContactsPort,
        state: StateStore,
        folder_id: str,
        *,
        tally: Tally,
        quarantined: Iterable[QuarantineEntry] = (),
        config: EngineConfig = EngineConfig(),
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.crm = crm
        self.microsoft = microsoft
        self.state = state
        self.folder_id = folder_id
        self.tally = tally
        self.config = config
        self.sleep = sleep
        self.now = now
        self._quarantined = {(q.side, q.record_id) for q in quarantined}
        self._accounts: dict[str, Account] = {}
        self._resolved: dict[str, Account] = {}  # resolve_account's cache: company key → account
        self._saved: dict[str, Link] = {}  # links saved while applying this chunk, by CRM id (newest ETag)
        self._claimed: set[str] = set()  # CRM ids linked in this run: never matched by e-mail again
        # A create of ours whose outcome could not be learnt: any new Outlook item may be it, so none is imported
        # this run (the Outlook round is replayed next run, when the lookup can tell ours from the user's).
        self._unresolved_creates = False
        self._ms_updates: list[_MsWrite] = []
        self._tags: dict[str, str | None] = {}  # our CRM-id tag of each Outlook item this chunk may import
        self._owners: dict[str, str] = {}  # of those items, the CRM contact each is a card of, if it exists

    @property
    def tenant_id(self) -> str:
        return self.settings.tenant_id

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

    def _remember(self, account: Account) -> Account:
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
            version = found.change_key if found.fields == intended else ""
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

    def quarantine_malformed(self, change: MsChange) -> None:
        self._fail(Side.CRM, Side.MICROSOFT, change.ms_id, f"malformed Outlook item: {change.invalid_reason}",
                   retry=False)

    # --- applying ---------------------------------------------------------------------------------

    def apply(self, actions: Sequence[Action]) -> None:
        creates: list[CreateInMicrosoft] = []
        deletes: list[DeleteInMicrosoft] = []
        guard_reasons: set[str] = set()
        self._read_tags([a.ms_id for a in actions if isinstance(a, CreateInCrm)])
        for action in actions:
            if isinstance(action, Skip):
                self._skip(action, guard_reasons)
            elif isinstance(action, CreateInMicrosoft):
                creates.append(action)
            elif isinstance(action, DeleteInMicrosoft):
                deletes.append(action)
            elif isinstance(action, CreateInCrm):
                self._create_in_crm(action)
            elif isinstance(action, Converge):
                self._converge(action)
            elif isinstance(action, MarkMsRemoved):
                self._save_link(self._fresh(action.link).model_copy(update={"state": LinkState.MS_REMOVED}))
                self._succeeded(action.crm_id, action.link.ms_id)
            elif isinstance(action, MarkCrmDeleted):
                self._save_link(self._fresh(action.link).model_copy(update={"state": LinkState.CRM_DELETED}))
                self._succeeded(action.crm_id, action.link.ms_id)
            elif isinstance(action, (Unlink, ForgetLink)):
                self._drop_link(action.link)
                self._succeeded(action.crm_id, action.link.ms_id)
            elif isinstance(action, RefreshLinkVersions):
                self._save_link(self._fresh(action.link).model_copy(update={
                    "crm_version": action.crm_version, "ms_version": action.ms_version}))
        self._run_creates(creates)
        updates, self._ms_updates = self._ms_updates, []
        self._run_updates(updates)
        self._run_deletes(deletes)
        # Later chunks read their links afresh; keeping these would grow with the size of a first sync.
        self._saved.clear()

    def _skip(self, action: Skip, guard_reasons: set[str]) -> None:
        if not action.held:
            return
        self.tally.guarded = True
        if action.reason not in guard_reasons:
            guard_reasons.add(action.reason)
            self.tally.log(action.reason)
        if action.origin is Side.MICROSOFT:
            self.tally.hold_delta = True  # the removals come again with the same deltaLink
        else:
            self.state.put_quarantine(QuarantineEntry(
                tenant_id=self.tenant_id, user_id=self.user_id, side=Side.CRM.value, record_id=action.key, reason=action.reason,
                first_seen=self.now()))

    # --- CRM writes -------------------------------------------------------------------------------

    def _create_in_crm(self, action: CreateInCrm) -> None:
        if self._unresolved_creates:
            self.tally.log(f"microsoft:{action.ms_id} not imported yet: a create of ours is unresolved")
            return
        if self._a_copy_of_ours(action):
            return
        account = self._remember(resolve_account(self.crm, self.tenant_id, action.fields.company, self.user_id,
                                                 self._resolved))
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
            link = self.state.get_links_by_crm(self.tenant_id, self.user_id, [match.id]).get(match.id)
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
        contact = self._read_contact(owner) if owner is not None else None  # fresh: the chunk may have changed it
        if owner is None or contact is None:
            return False  # the user's own contact, new to us
        link = self.state.get_links_by_crm(self.tenant_id, self.user_id, [owner]).get(owner)
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
        kind = _kind(result)
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
        contact = self._read_contact(crm_id)
        if contact is None or crm_id in self._claimed:
            return None
        link = self.state.get_links_by_crm(self.tenant_id, self.user_id, [crm_id]).get(crm_id)
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
        contact = action.record or self._read_contact(action.crm_id)
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
            account = self._remember(resolve_account(self.crm, self.tenant_id, action.fields.company, self.user_id,
                                                     self._resolved))
            account_id, account_name, account_version = account.id, account.name, account.version
        record = fields_to_crm(action.fields, contact, account_id)
        if record != contact:
            written = self._update_crm(record, contact, action.ms_id)
            if written is None:
                return
            contact = written
            self.tally.crm["updated"] += 1
        final = crm_to_fields(contact, account_name)
        self._claimed.add(contact.id)
        if isinstance(action, ConflictMerge):
            self.tally.conflicts += 1
            clashes = ", ".join(action.clashes) if action.clashes else "none (different fields)"
            self.tally.log(f"conflict crm:{action.crm_id} edited on both sides; fields changed on both: {clashes}; "
                           "CRM wins those")
        self._settle(contact.id, action.ms_id, action.ms_version, action.ms_now, final,
                     crm_version(contact.version, account_version),
                     action.link, write_ms=action.write_ms)

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
            self._ms_updates.append(_MsWrite(crm_id, ms_id, final, crm_version, prior))
            return
        # microsoft_to_crm never writes Outlook: the merge base is what Outlook holds.
        synced = ms_fields if self.settings.mode is SyncMode.MICROSOFT_TO_CRM else final
        if self._link(crm_id, ms_id, crm_version, ms_version, synced, prior) is not None:
            self._succeeded(crm_id, ms_id)

    def _update_crm(self, record: CrmContact, read: CrmContact, ms_id: str) -> CrmContact | None:
        try:
            return self.crm.update_contact(record)
        except ConcurrencyError:
            fresh = self._read_contact(record.id)
            # Only the version moved (no content change): write again on the fresh version, once.
            if fresh is not None and fresh.model_copy(update={"version": "", "modified_at": None}) == \
                    read.model_copy(update={"version": "", "modified_at": None}):
                try:
                    return self.crm.update_contact(record.model_copy(update={"version": fresh.version}))
                except ConcurrencyError:
                    pass
            # Edited in the CRM meanwhile: the next run merges both edits (the Outlook one is replayed).
            self._fail(Side.CRM, Side.MICROSOFT, ms_id, "CRM record changed during the run", retry=True)
        except NotFoundError:
            self._fail(Side.CRM, Side.MICROSOFT, ms_id, "CRM record or account gone during the run", retry=True)
        except InvalidRecordError as exc:
            self._fail(Side.CRM, Side.MICROSOFT, ms_id, "CRM refused the update", retry=False, detail=str(exc))
        return None

    def _read_contact(self, crm_id: str) -> CrmContact | None:
        return self.crm.get_contacts(self.tenant_id, [crm_id]).get(crm_id)

    # --- Outlook writes ---------------------------------------------------------------------------

    def _run_creates(self, creates: list[CreateInMicrosoft]) -> None:
        # Intent first, for a whole chunk in few storage transactions: if we die after Graph created
        # the items, the next run finds each by our CRM id.
        intents: list[tuple[CreateInMicrosoft, Link]] = []
        planned = [Link(tenant_id=self.tenant_id, user_id=self.user_id, crm_id=action.crm_id, ms_id=None, state=LinkState.PENDING_CREATE,
                        crm_version=action.crm_version, synced=action.fields, synced_hash=action.fields.content_hash(),
                        pending_since=self.now(), etag=self._fresh(action.link).etag if action.link else None)
                   for action in creates]
        for action, intent in zip(creates, self._save_links(planned)):
            if intent is not None:
                intents.append((action, intent))
        call: Callable[[list[tuple[CreateInMicrosoft, Link]]], list[WriteResult]] = (
            lambda chunk: self.microsoft.create_contacts(self.folder_id, [(a.crm_id, a.fields) for a, _ in chunk]))
        created: list[tuple[CreateInMicrosoft, Link, WriteResult]] = []
        for (action, intent), result in self._batched(call, intents, key=lambda pair: pair[0].crm_id):
            kind = _kind(result)
            if kind == "ok" and result.contact is not None:
                self.tally.microsoft["created"] += 1
                created.append((action, intent, result))
                if len(created) >= self.config.write_chunk:
                    self._link_created(created)
                    created = []
            elif kind in ("ok", "unknown"):
                # May exist in Outlook: the intent stays; the next run looks it up by our CRM id.
                self._fail(Side.MICROSOFT, Side.CRM, action.crm_id, f"create outcome unknown (HTTP {result.status})",
                           retry=True)
            else:
                # Certainly not created: put the link back as it was.
                self._undo_intent(intent, action.link)
                self._fail(Side.MICROSOFT, Side.CRM, action.crm_id, self._reason("create", result),
                           retry=kind != "rejected", detail=result.error or "")
        self._link_created(created)

    def _link_created(self, created: list[tuple[CreateInMicrosoft, Link, WriteResult]]) -> None:
        """Links of a chunk of confirmed creates, saved together."""
        links = []
        for action, intent, result in created:
            assert result.contact is not None
            current = self._saved.get(action.crm_id) or intent
            links.append(Link(tenant_id=self.tenant_id, user_id=self.user_id, crm_id=action.crm_id, ms_id=result.contact.id,
                              state=LinkState.LINKED, crm_version=action.crm_version,
                              ms_version=result.contact.change_key, synced=action.fields,
                              synced_hash=action.fields.content_hash(), etag=current.etag))
        for (action, _, _), saved in zip(created, self._save_links(links)):
            if saved is not None:
                self._succeeded(action.crm_id, None)

    def _undo_intent(self, intent: Link, prior: Link | None) -> None:
        if prior is None:
            self._drop_link(intent)
        else:
            # The earlier Outlook item is gone either way: remembered as removed, pushed again when edited.
            self._save_link(prior.model_copy(update={"state": LinkState.MS_REMOVED, "etag": intent.etag}))

    def _run_updates(self, updates: list[_MsWrite]) -> None:
        call: Callable[[list[_MsWrite]], list[WriteResult]] = (
            lambda chunk: self.microsoft.update_contacts([(w.ms_id, w.fields) for w in chunk]))
        for write, result in self._batched(call, updates, key=lambda w: w.ms_id):
            kind = _kind(result)
            if kind == "ok":
                self.tally.microsoft["updated"] += 1
                version = result.contact.change_key if result.contact is not None else ""
                if self._link(write.crm_id, write.ms_id, write.crm_version, version, write.fields, write.prior):
                    self._succeeded(write.crm_id, write.ms_id)
            elif kind == "gone":
                # Deleted in Outlook meanwhile: remember the removal; the CRM edit pushes it back next run.
                if write.prior is not None:
                    self._save_link(self._fresh(write.prior).model_copy(update={"state": LinkState.MS_REMOVED}))
                self._fail(Side.MICROSOFT, Side.CRM, write.crm_id, "Outlook item gone during the run", retry=True)
            else:
                self._fail(Side.MICROSOFT, Side.CRM, write.crm_id, self._reason("update", result),
                           retry=kind != "rejected", detail=result.error or "")

    def _run_deletes(self, deletes: list[DeleteInMicrosoft]) -> None:
        call: Callable[[list[DeleteInMicrosoft]], list[WriteResult]] = (
            lambda chunk: self.microsoft.delete_contacts([d.ms_id for d in chunk]))
        for action, result in self._batched(call, deletes, key=lambda d: d.ms_id):
            kind = _kind(result)
            if kind in ("ok", "gone"):
                if kind == "ok":
                    self.tally.microsoft["deleted"] += 1
                if action.link is not None:
                    self._drop_link(action.link)
                self._succeeded(action.crm_id, action.ms_id)
            else:
                self._fail(Side.MICROSOFT, Side.CRM, action.crm_id, self._reason("delete", result),
                           retry=kind != "rejected", detail=result.error or "")

    def _batched(self, call: Callable[[list[T]], list[WriteResult]], items: list[T],
                 key: Callable[[T], str]) -> Iterator[tuple[T, WriteResult]]:
        """Each item with its result, one chunk at a time (so its links are saved before the next call).
        Throttled items are retried after the longest Retry-After, a bounded number of times; a call that
        fails as a whole leaves every item's outcome unknown (status 0)."""
        for start in range(0, len(items), self.config.write_chunk):
            pending = items[start:start + self.config.write_chunk]
            for round_no in range(self.config.throttle_rounds + 1):
                last = round_no == self.config.throttle_rounds
                try:
                    results = call(pending)
                except ThrottledError as exc:
                    if last:
                        for item in pending:
                            yield item, WriteResult(key(item), False, status=429, retry_after=exc.retry_after)
                        break
                    self._wait(exc.retry_after)
                    continue
                except MicrosoftError as exc:
                    for item in pending:
                        yield item, WriteResult(key(item), False, status=0, error=type(exc).__name__)
                    break
                by_key = {r.key: r for r in results}
                throttled: list[tuple[T, WriteResult]] = []
                for item in pending:
                    result = by_key.get(key(item)) or WriteResult(key(item), False, status=0, error="no answer")
                    if _kind(result) == "throttled" and not last:
                        throttled.append((item, result))
                    else:
                        yield item, result
                if not throttled:
                    break
                self._wait(max(r.retry_after or 1.0 for _, r in throttled))
                pending = [item for item, _ in throttled]

    def _wait(self, seconds: float) -> None:
        self.sleep(min(max(seconds, 0.0), self.config.max_wait_seconds))

    @staticmethod
    def _reason(verb: str, result: WriteResult) -> str:
        kind = _kind(result)
        if kind == "throttled":
            return f"{verb} throttled by Outlook beyond the run's retries"
        if kind == "rejected":
            return f"Outlook refused the {verb} (HTTP {result.status})"
        return f"{verb} failed in Outlook (HTTP {result.status})"

    # --- links and bookkeeping --------------------------------------------------------------------

    def _fresh(self, link: Link) -> Link:
        """The link as last saved in this run (its newest ETag)."""
        return self._saved.get(link.crm_id, link)

    def _link(self, crm_id: str, ms_id: str, crm_version: str, ms_version: str, synced: ContactFields,
              prior: Link | None) -> Link | None:
        current = self._saved.get(crm_id) or prior
        etag = current.etag if current is not None else None
        return self._save_link(Link(
            tenant_id=self.tenant_id, user_id=self.user_id, crm_id=crm_id, ms_id=ms_id, state=LinkState.LINKED, crm_version=crm_version,
            ms_version=ms_version, synced=synced, synced_hash=synced.content_hash(), etag=etag))

    def _save_links(self, links: list[Link]) -> list[Link | None]:
        return save_links_batched(self.state, links, self._saved, self._save_link)

    def _save_link(self, link: Link) -> Link | None:
        try:
            saved = self.state.save_link(link)
        except (ConcurrencyError, AlreadyExistsError):
            # Someone (a worker whose lease ran out) wrote it meanwhile: we hold the lease, ours stands. Once.
            current = self.state.get_links_by_crm(self.tenant_id, self.user_id, [link.crm_id]).get(link.crm_id)
            try:
                saved = self.state.save_link(link.model_copy(update={"etag": current.etag if current else None}))
            except (ConcurrencyError, AlreadyExistsError) as exc:
                self._fail(Side.CRM, Side.CRM, link.crm_id, f"link not saved ({type(exc).__name__})", retry=True)
                return None
        self._saved[saved.crm_id] = saved
        return saved

    def _drop_link(self, link: Link) -> None:
        current = self._fresh(link)
        try:
            self.state.delete_link(current)
        except ConcurrencyError:
            fresh = self.state.get_links_by_crm(self.tenant_id, self.user_id, [link.crm_id]).get(link.crm_id)
            if fresh is not None:
                self.state.delete_link(fresh)
        self._saved.pop(link.crm_id, None)

    def _succeeded(self, crm_id: str, ms_id: str | None) -> None:
        for side, record_id in ((Side.CRM.value, crm_id), (Side.MICROSOFT.value, ms_id)):
            if record_id is not None and (side, record_id) in self._quarantined:
                self.state.clear_quarantine(self.tenant_id, self.user_id, side, record_id)
                self._quarantined.discard((side, record_id))

    def _fail(self, write_side: Side, record_side: Side, record_id: str, reason: str, *, retry: bool,
              detail: str = "") -> None:
        record_failure(self.state, self.tally, self.tenant_id, self.user_id, write_side, record_side, record_id, reason,
                       retry=retry, detail=detail, now=self.now())
        self._quarantined.add((record_side.value, record_id))


def record_failure(state: StateStore, tally: Tally, tenant_id: str, user_id: str, write_side: Side, record_side: Side,
                   record_id: str, reason: str, *, retry: bool, detail: str, now: datetime, label: str = "") -> None:
    """A record that failed, on the user's quarantine list. retry: counted as an error of `write_side` and
    retried next run; else quarantined until it changes. `reason` goes to the run log and must hold no
    personal data; `detail` (e.g. Graph's error message) only to the user's own list. Shared by the contact
    and task engines."""
    state.put_quarantine(QuarantineEntry(tenant_id=tenant_id, user_id=user_id, side=record_side.value, record_id=record_id,
                                         reason=f"{reason}: {detail}" if detail else reason, first_seen=now))
    if retry:
        tally.side(write_side)["errors"] += 1
        if record_side is Side.MICROSOFT:
            tally.hold_delta = True  # the Outlook change comes again with the same deltaLink
        tally.log(f"{label}error {record_side.value}:{record_id}: {reason} (retried next run)")
    else:
        tally.quarantined += 1
        tally.log(f"{label}quarantined {record_side.value}:{record_id}: {reason}")
