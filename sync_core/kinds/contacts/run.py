"""The contact kind's run: one user's Outlook contact folder against the CRM's contacts (`sync_user` runs it
first, under the run's lease and budget; the steps every kind shares are in sync/run.py).

    cursor → folder → Outlook delta (expired → full resync) → CRM feed (contacts, and accounts fanned out to
    their contacts) → pair (links, our import ids, our tags) → guard → plan and apply in chunks → cursor saved

With a time budget the run stops between two chunks and saves where it is: the CRM feed position just before
the first record it did not apply (and, among the contacts of a changed account, the last one done), and the
new deltaLink when every Outlook change of the round was applied (else the old one). An incremental run
reads storage in proportion to what changed: links are fetched by the ids that changed, never listed
(`iter_links` only on a full resync or when the mass-delete guard needs the user's link count).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sync_core.domain.models import (
    Account,
    ContactScope,
    CrmContact,
    Cursor,
    DeltaResult,
    FOLDER_NAME,
    FeedEntry,
    Link,
    MsChange,
    MsContact,
)
from sync_core.kinds.contacts.executor import Engine
from sync_core.kinds.contacts.mapping import crm_to_fields
from sync_core.kinds.contacts.planner import CrmItem, import_crm_ids, plan
from sync_core.ports import MicrosoftContactsPort
from sync_core.sync.budget import safe_feed_position
from sync_core.sync.guard import DeleteGuard
from sync_core.sync.run import KindRun, RunPart, SyncOptions, read_delta, save_cursor, utc_now

__all__ = ["SyncOptions", "sync_contacts", "utc_now"]

# An account change (rename, new owner) is fanned out to its contacts; more than this is not a CRM account.
ACCOUNT_FANOUT_LIMIT = 1_000_000


def sync_contacts(part: RunPart, microsoft: MicrosoftContactsPort) -> None:
    """One contact sync of the user into the run's tally; progress and a budget stop go to `part.stint`."""
    _ContactRun(part, microsoft).execute()


@dataclass
class _Feed:
    contacts: dict[str, bool]  # CRM id → deleted, in feed order (last state wins)
    accounts: set[str]
    position: int
    last_seen: dict[str, int] = field(default_factory=dict)  # CRM id → position of the entry naming it last
    account_positions: dict[str, int] = field(default_factory=dict)  # account id → its last entry's position


class _ContactRun(KindRun[MsContact]):
    def __init__(self, part: RunPart, microsoft: MicrosoftContactsPort) -> None:
        super().__init__(part, part.user.user_id, part.tally)
        self.crm = part.crm
        self.microsoft = microsoft

    def execute(self) -> None:
        cursor = self.state.get_cursor(self.tenant_id, self.user.user_id)
        quarantined = self._own_quarantine()
        folder_id = cursor.folder_id or self._find_or_create_folder()
        replay_link = cursor.delta_link if folder_id == cursor.folder_id else None
        delta, folder_id, replay_link = read_delta(
            self.microsoft.contact_delta, folder_id, replay_link, self.tally.log,
            expired="deltaLink expired: full resync reconciled against the stored links",
            gone="contact folder gone: looked up by name again, full resync", relocate=self._find_or_create_folder)
        engine = Engine(self.user, self.crm, self.microsoft, self.state, folder_id, tally=self.tally,
                        quarantined=quarantined, config=self.options.engine, sleep=self.sleep, now=self.now)

        feed = self._read_feed(cursor.crm_position)
        crm_ids = dict.fromkeys(feed.contacts)
        crm_ids.update(dict.fromkeys(q.record_id for q in quarantined if q.side == "crm"))
        # Contacts with a feed entry of their own are judged by it (it is read again while they are left undone,
        # and the sync reads the account as it is now); the others only by their account's entry: done in id
        # order, the last one noted in the cursor when the run stops among them.
        fanned = sorted(set(self._fan_out(engine, feed, cursor.fanout_after)) - set(crm_ids))
        crm_ids.update(dict.fromkeys(fanned))
        counted = set(crm_ids)  # progress counts what the CRM side asked for and real Outlook changes

        ms_changes = self._latest(delta.changes, engine.quarantine_malformed)
        link_count = (self._reconcile_full((c.ms_id for c in delta.changes if c.item is not None or c.invalid_reason),
                                           ms_changes) if delta.full else None)
        links_by_ms = self.state.get_links_by_ms(self.tenant_id, self.user.user_id, list(ms_changes)) if ms_changes else {}
        attached: dict[str, MsChange[MsContact]] = {}  # CRM id → the Outlook change of the same pair
        lone: dict[str, MsChange[MsContact]] = {}  # Outlook changes without a link (new, moved in)
        for ms_id, change in ms_changes.items():
            if (link := links_by_ms.get(ms_id)) is not None:
                self._attach(link, change, crm_ids, attached, counted)
        self._pair_unlinked(delta, ms_changes, links_by_ms, crm_ids, attached, lone, counted)

        retried = [q.record_id for q in quarantined if q.side == "crm"]
        candidates = [i for i, deleted in feed.contacts.items() if deleted]
        candidates += [i for i in retried if i not in feed.contacts]  # e.g. deletions held back last time
        guard = self._guard(candidates, lambda linked: set(self.crm.get_contacts(self.tenant_id, linked)),
                            ms_changes, links_by_ms, link_count)
        echoes, fanned_only = {i for i in attached if i not in counted}, set(fanned)
        ids = (self._paired_first(crm_ids, attached, echoes, skip=fanned_only)
               + [i for i in fanned if i not in attached] + self._echo_tail(crm_ids, echoes))
        left = self._apply_round(ids, counted, lone, lambda chunk: self._crm_chunk(engine, chunk, attached, lone, guard),
                                 lambda changes: self._lone_chunk(changes, self._applier(engine, guard)))
        position, fanout_after = feed.position, None
        if left:  # stopped among the CRM ids
            position = safe_feed_position(feed.position, feed.last_seen, left)
            fanout_after = cursor.fanout_after  # still true: those contacts were synced after those entries
            undone = [i for i in left if i in fanned_only]
            if undone:  # the account entries are read again; the contacts done so far are not fanned again
                position = min(position, min(feed.account_positions.values()) - 1)
                done = [i for i in fanned if i < min(undone)]
                fanout_after = f"{feed.position}|{done[-1]}" if done else fanout_after
        new_link = self._next_delta_link(left, attached, lone, echoes, replay_link, delta.delta_link)
        save_cursor(self.state, cursor.model_copy(update={"folder_id": folder_id, "delta_link": new_link,
                                                          "crm_position": position, "fanout_after": fanout_after}),
                    keep=_reevaluation)

    def _pair_unlinked(self, delta: DeltaResult[MsContact], ms_changes: dict[str, MsChange[MsContact]], links_by_ms: dict[str, Link],
                       crm_ids: dict[str, None], attached: dict[str, MsChange[MsContact]], lone: dict[str, MsChange[MsContact]],
                       counted: set[str]) -> None:
        """Outlook items without a link: our import whose link was lost is a CRM record with a derived id (or
        named by our tag) and no link; the others are lone (new, moved in)."""
        unlinked = {ms_id: import_crm_ids(self.tenant_id, self.user.user_id, ms_id)
                    for ms_id in ms_changes if ms_id not in links_by_ms}
        # A full round may find our cards with no link at all (the state was lost, or could not be told
        # apart from another tenant's user: state_migration): our tag names the CRM record, which is
        # paired with its card instead of getting a second one while the first is deleted as a stray copy.
        for ms_id, tag in self._tags_of_unlinked(delta, ms_changes, unlinked, crm_ids).items():
            unlinked[ms_id] = (tag, *unlinked[ms_id])
            ms_changes[ms_id] = ms_changes[ms_id].model_copy(update={"tag": tag})
        present = [i for ids in unlinked.values() for i in ids if i in crm_ids]
        taken = self.state.get_links_by_crm(self.tenant_id, self.user.user_id, present) if present else {}
        for ms_id, derived_ids in unlinked.items():
            free = [i for i in derived_ids if i in crm_ids and i not in taken and i not in attached]
            if free:
                attached[free[0]] = ms_changes[ms_id]
                counted.add(free[0])
            else:
                lone[ms_id] = ms_changes[ms_id]

    def _tags_of_unlinked(self, delta: DeltaResult[MsContact], ms_changes: dict[str, MsChange[MsContact]], unlinked: dict[str, tuple[str, ...]],
                          crm_ids: dict[str, None]) -> dict[str, str]:
        """Our tag on each unlinked card of a full round that names a CRM record of this run (no Graph
        request in an incremental round, or when nothing is unlinked)."""
        if not delta.full:
            return {}
        wanted = [ms_id for ms_id in unlinked if ms_changes[ms_id].item is not None]
        if not wanted:
            return {}
        return {ms_id: tag for ms_id, tag in self.microsoft.crm_ids_of(wanted).items() if tag and tag in crm_ids}

    # --- reading both sides -----------------------------------------------------------------------

    def _find_or_create_folder(self) -> str:
        folder_id = self.microsoft.ensure_folder(FOLDER_NAME, None)
        self.tally.log("contact folder looked up by name (created if missing)")
        return folder_id

    def _read_feed(self, after: int) -> _Feed:
        feed = _Feed({}, set(), after)

        def take(entry: FeedEntry) -> None:
            if entry.kind == "contact":
                feed.contacts.pop(entry.record_id, None)
                feed.contacts[entry.record_id] = entry.deleted
                feed.last_seen[entry.record_id] = entry.position
            elif entry.kind == "account":
                feed.accounts.add(entry.record_id)
                feed.account_positions[entry.record_id] = entry.position
        feed.position = self._feed_since(after, take)
        return feed

    def _fan_out(self, engine: Engine, feed: _Feed, resume: str | None) -> list[str]:
        """Contacts of accounts changed in the CRM (renamed, owner changed) that this user syncs: Outlook's
        company name follows the account. Accounts of other owners are skipped unless the scope is the tenant.
        `resume` ("position|id"): a stopped run fanned the entries up to that position out up to that id."""
        account_ids = feed.accounts
        if not account_ids:
            return []
        through, _, after = (resume or "").partition("|")
        engine.forget_accounts(account_ids)
        accounts = engine.accounts(account_ids)
        ids: list[str] = []
        for account_id in sorted(account_ids):
            account = accounts.get(account_id)
            if account is None or not self._in_scope(account):
                continue
            done_up_to = after if through and feed.account_positions[account_id] <= int(through) else ""
            ids.extend(c.id for c in self.crm.list_contacts(self.tenant_id, account_id, limit=ACCOUNT_FANOUT_LIMIT)
                       if c.id > done_up_to)
        return ids

    # --- planning and applying, a chunk at a time -------------------------------------------------

    def _in_scope(self, account: Account | None) -> bool:
        if self.user.contact_scope is ContactScope.TENANT:
            return True
        return account is not None and account.owner_user_id == self.user.user_id

    def _crm_items(self, engine: Engine, ids: Iterable[str], contacts: dict[str, CrmContact]) -> list[CrmItem]:
        accounts = engine.accounts({c.account_id for c in contacts.values()})
        items = []
        for crm_id in ids:
            contact = contacts.get(crm_id)
            if contact is None:
                items.append(CrmItem(crm_id, None))
                continue
            account = accounts.get(contact.account_id)
            fields = crm_to_fields(contact, account.name if account else "")
            items.append(CrmItem(crm_id, contact, fields, self._in_scope(account), account.version if account else ""))
        return items

    def _crm_chunk(self, engine: Engine, ids: list[str], attached: dict[str, MsChange[MsContact]], lone: dict[str, MsChange[MsContact]],
                   guard: DeleteGuard) -> None:
        self.renew()
        contacts = self.crm.get_contacts(self.tenant_id, ids)
        links = engine.resolve_pending(self.state.get_links_by_crm(self.tenant_id, self.user.user_id, ids))
        for crm_id, link in links.items():  # a create found again may also be in this round as a "new" item
            if link.ms_id is not None and link.ms_id in lone:
                paired = attached.get(crm_id)
                attached[crm_id] = lone.pop(link.ms_id)
                if paired is not None:  # paired by our import id: the user's own copy, now a contact of its own
                    lone[paired.ms_id] = paired
        ms = [attached.pop(crm_id) for crm_id in ids if crm_id in attached]
        engine.apply(plan(self._crm_items(engine, ids, contacts), ms, links.values(), self.user, guard=guard))

    def _applier(self, engine: Engine, guard: DeleteGuard) -> Callable[[list[str], list[MsChange[MsContact]], list[Link]], None]:
        def apply(crm_ids: list[str], changes: list[MsChange[MsContact]], links: list[Link]) -> None:
            contacts = self.crm.get_contacts(self.tenant_id, crm_ids) if crm_ids else {}
            engine.apply(plan(self._crm_items(engine, crm_ids, contacts), changes, links, self.user, guard=guard))
        return apply


def _reevaluation(ours: Cursor, theirs: Cursor) -> dict[str, object]:
    """The other copy of the cursor is the settings page asking for a re-evaluation (scope or mode changed
    while this run used the old ones): keep its request, i.e. the earlier feed position and no deltaLink.
    Replaying is always safe."""
    keep: dict[str, object] = {"crm_position": min(ours.crm_position, theirs.crm_position)}
    if theirs.delta_link is None:
        keep["delta_link"] = None
    return keep
