"""`sync_user`: one user's contact sync run, from lease to cursor (the service layer).

    lease → run record (RUNNING) → cursor → folder → Outlook delta (expired → full resync) → CRM feed
    → pair, guard, plan and apply in chunks → cursor saved → run record (outcome, counts) → lease released

With a time budget (issue 10) the run stops between two chunks once another would not fit, and saves where
it is: the CRM feed position just before the first record it did not apply, and the new deltaLink when every
Outlook change of the round was applied (else the old one: the round is replayed, judged against the links).
The run record then says CONTINUING, and the caller queues a continuation.

The cursor (deltaLink and CRM feed position) is saved only after everything read was applied, so a run
that dies anywhere is replayed by the next one; replays are harmless because "changed" is judged against
the links, and creates are idempotent. An incremental run reads storage in proportion to what changed:
links are fetched by the ids that changed, never listed (`iter_links` only on a full resync or when the
mass-delete guard needs the user's link count).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sync_core.sync.budget import Budget, Stint, carried_progress, run_progress, safe_feed_position
from sync_core.kinds.contacts.executor import Engine, EngineConfig, Tally
from sync_core.domain.errors import (
    ConcurrencyError,
    DeltaExpiredError,
    NotFoundError,
    ReconnectNeededError,
    SyncError,
)
from sync_core.kinds.contacts.mapping import crm_to_fields
from sync_core.domain.models import (
    FOLDER_NAME,
    Account,
    ContactScope,
    CrmContact,
    Cursor,
    DeltaResult,
    Lease,
    Link,
    LinkState,
    MsChange,
    RunOutcome,
    RunRecord,
    UserSyncSettings,
)
from sync_core.kinds.contacts.planner import CrmItem, import_crm_ids, plan
from sync_core.sync.guard import DeleteGuard, GuardLimits, guard_needs_link_count, mass_delete_guard
from sync_core.ports import CrmPort, MicrosoftContactsPort, MicrosoftTasksPort, StateStore
from sync_core.kinds.tasks.run import TaskSyncOptions, is_task_entry, sync_tasks

# An account change (rename, new owner) is fanned out to its contacts; more than this is not a CRM account.
ACCOUNT_FANOUT_LIMIT = 1_000_000


@dataclass(frozen=True)
class SyncOptions:
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: GuardLimits = field(default_factory=GuardLimits)
    chunk_size: int = 500  # records planned and applied together: bounds memory on a large first sync
    feed_page_size: int = 1000
    lease_seconds: float = 900.0  # renewed before every chunk


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def sync_user(
    user: UserSyncSettings,
    crm: CrmPort,
    microsoft: MicrosoftContactsPort,
    state: StateStore,
    *,
    now: Callable[[], datetime] = utc_now,
    owner: str | None = None,
    options: SyncOptions = SyncOptions(),
    sleep: Callable[[float], None] = time.sleep,
    tasks: MicrosoftTasksPort | None = None,
    budget: Budget | None = None,
    task_chunk_size: int | None = None,
) -> RunRecord:
    """Run one contact sync for `user`; returns the finished run record (also saved). With `tasks` and the
    user's task sync switched on, the task sync (task_service) runs after the contacts in the same run.

    LeaseHeldError propagates (another worker is on it). Sync errors end the run as FAILED or
    RECONNECT_NEEDED with the error recorded; anything else is recorded as FAILED and re-raised.
    """
    owner = owner or f"sync-{uuid.uuid4().hex[:12]}"
    budget = budget or Budget.unlimited()
    lease = state.acquire_lease(user.tenant_id, user.user_id, owner, options.lease_seconds, now())
    job: _Run | None = None
    try:
        carried = carried_progress(state, user.tenant_id, user.user_id) if budget.seconds is not None else None
        started = now()
        run = state.save_run(RunRecord(tenant_id=user.tenant_id, user_id=user.user_id, run_id=f"{started:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}",
                                       started_at=started, lease_expires_at=lease.expires_at, progress=carried))
        job = _Run(user, crm, microsoft, state, options, now, sleep, owner, lease, budget)
        task_stint: Stint | None = None
        requests_before = _requests(microsoft) + _requests(tasks)
        outcome, error, unexpected = RunOutcome.SUCCEEDED, None, None
        try:
            job.execute()
            if tasks is not None and user.tasks_enabled and not job.stint.stopped:
                # Tasks (issue 5): after the contacts, under the same lease and budget, in the same run record.
                task_stint = Stint()
                budget.new_part()
                task_options = TaskSyncOptions(chunk_size=task_chunk_size or TaskSyncOptions().chunk_size)
                sync_tasks(user, crm, tasks, state, renew_lease=job._renew_lease, now=now,  # type: ignore[arg-type]
                           sleep=sleep, into=job.tally, options=task_options, budget=budget, stint=task_stint)
            if job.stint.stopped or (task_stint is not None and task_stint.stopped):
                outcome = RunOutcome.CONTINUING
            elif job.tally.failures:
                outcome = RunOutcome.PARTIAL
        except ReconnectNeededError as exc:
            outcome, error = RunOutcome.RECONNECT_NEEDED, f"{type(exc).__name__}: {exc}"
        except SyncError as exc:
            outcome, error = RunOutcome.FAILED, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug: recorded for the settings page, then raised to the caller
            outcome, error, unexpected = RunOutcome.FAILED, f"{type(exc).__name__}: {exc}", exc
        finished = job.tally.fold_into(run).model_copy(update={
            "finished_at": now(), "outcome": outcome, "error": error[:500] if error else None,
            "graph_requests": _requests(microsoft) + _requests(tasks) - requests_before, "lease_expires_at": job.lease.expires_at,
            "progress": run_progress(carried, job.stint, task_stint, outcome)})
        saved = state.save_run(finished)
        if unexpected is not None:
            raise unexpected
        return saved
    finally:
        try:
            state.release_lease(job.lease if job is not None else lease)
        except ConcurrencyError:
            pass  # the lease ran out and another worker took it over: it is theirs to release


def _echo(link: Link, change: MsChange) -> bool:
    """Our own write coming back in the next round: nothing to do, not counted as progress."""
    return link.state is LinkState.LINKED and change.contact is not None and link.ms_version == change.contact.change_key


def _requests(microsoft: object) -> int:
    # Adapters that count their Graph requests expose `request_count`; others report 0.
    return int(getattr(microsoft, "request_count", 0))


@dataclass
class _Feed:
    contacts: dict[str, bool]  # CRM id → deleted, in feed order (last state wins)
    accounts: set[str]
    position: int
    last_seen: dict[str, int] = field(default_factory=dict)  # CRM id → position of the entry naming it last
    account_positions: dict[str, int] = field(default_factory=dict)  # account id → its last entry's position


class _Run:
    def __init__(self, user: UserSyncSettings, crm: CrmPort, microsoft: MicrosoftContactsPort, state: StateStore,
                 options: SyncOptions, now: Callable[[], datetime], sleep: Callable[[float], None], owner: str,
                 lease: Lease, budget: Budget | None = None) -> None:
        self.user = user
        self.crm = crm
        self.microsoft = microsoft
        self.state = state
        self.options = options
        self.now = now
        self.sleep = sleep
        self.owner = owner
        self.lease = lease
        self.tally = Tally(log_limit=options.engine.log_limit)
        self.budget = budget or Budget.unlimited()
        self.stint = Stint()

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id

    def execute(self) -> None:
        cursor = self.state.get_cursor(self.tenant_id, self.user_id)
        # Task entries are retried by the task sync: read as contact ids they would only be looked up for nothing.
        quarantined = [q for q in self.state.list_quarantine(self.tenant_id, self.user_id) if not is_task_entry(q)]
        folder_id = cursor.folder_id or self._find_or_create_folder()
        replay_link = cursor.delta_link if folder_id == cursor.folder_id else None
        delta, folder_id, replay_link = self._delta(folder_id, replay_link)
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

        ms_changes: dict[str, MsChange] = {}
        for change in delta.changes:  # an item may come twice in a round: its last state wins
            ms_changes[change.ms_id] = change
        for change in [c for c in ms_changes.values() if c.invalid_reason]:
            engine.quarantine_malformed(change)
            del ms_changes[change.ms_id]
        link_count = self._reconcile_full(delta, ms_changes) if delta.full else None

        links_by_ms = self.state.get_links_by_ms(self.tenant_id, self.user_id, list(ms_changes)) if ms_changes else {}
        attached: dict[str, MsChange] = {}  # CRM id → the Outlook change of the same pair
        lone: dict[str, MsChange] = {}  # Outlook changes without a link (new, moved in)
        for ms_id, change in ms_changes.items():
            link = links_by_ms.get(ms_id)
            if link is not None:
                crm_ids.setdefault(link.crm_id, None)
                attached[link.crm_id] = change
                if not _echo(link, change):
                    counted.add(link.crm_id)
        unlinked = {ms_id: import_crm_ids(self.tenant_id, self.user_id, ms_id)
                    for ms_id in ms_changes if ms_id not in links_by_ms}
        # A full round may find our cards with no link at all (the state was lost, or could not be told
        # apart from another tenant's user: state_migration): our tag names the CRM record, which is
        # paired with its card instead of getting a second one while the first is deleted as a stray copy.
        tags = self._tags_of_unlinked(delta, ms_changes, unlinked, crm_ids)
        for ms_id, tag in tags.items():
            unlinked[ms_id] = (tag, *unlinked[ms_id])
            ms_changes[ms_id] = ms_changes[ms_id].model_copy(update={"tag": tag})
        # Our own import whose link was lost is a CRM record with a derived id and no link.
        present = [i for ids in unlinked.values() for i in ids if i in crm_ids]
        taken = self.state.get_links_by_crm(self.tenant_id, self.user_id, present) if present else {}
        for ms_id, derived_ids in unlinked.items():
            free = [i for i in derived_ids if i in crm_ids and i not in taken and i not in attached]
            if free:
                attached[free[0]] = ms_changes[ms_id]
                counted.add(free[0])
            else:
                lone[ms_id] = ms_changes[ms_id]

        guard = self._guard(feed, [q.record_id for q in quarantined if q.side == "crm"], ms_changes, links_by_ms,
                            link_count)
        # Records paired with an Outlook change go first: a stop after them keeps the new deltaLink. Our own
        # writes coming back (nothing changed on either side since) need no chunk: under a budget they are
        # left out, so a replayed round never spends a run on them again and again.
        fanned_only, echoes = set(fanned), {i for i in attached if i not in counted}
        ids = ([i for i in crm_ids if i in attached and i in counted]
               + [i for i in crm_ids if i not in attached and i not in fanned_only]
               + [i for i in fanned if i not in attached])
        if self.budget.seconds is None:
            ids += [i for i in crm_ids if i in echoes]
        self.stint.total = sum(1 for i in ids if i in counted) + len(lone)
        size = self.options.chunk_size
        position, fanout_after = feed.position, None
        for start in range(0, len(ids), size):
            if not self.budget.allows_another():
                position = safe_feed_position(feed.position, feed.last_seen, ids[start:])
                fanout_after = cursor.fanout_after  # still true: those contacts were synced after those entries
                undone = [i for i in ids[start:] if i in fanned_only]
                if undone:  # the account entries are read again; the contacts done so far are not fanned again
                    position = min(position, min(feed.account_positions.values()) - 1)
                    done = [i for i in fanned if i < min(undone)]
                    fanout_after = f"{feed.position}|{done[-1]}" if done else fanout_after
                self.stint.stopped = True
                break
            chunk = ids[start:start + size]
            with self.budget.chunk():
                self._crm_chunk(engine, chunk, attached, lone, guard)
            self.stint.done += sum(1 for i in chunk if i in counted)
        waiting = [] if self.stint.stopped else list(lone.values())
        for start in range(0, len(waiting), size):
            if not self.budget.allows_another():
                self.stint.stopped = True
                break
            with self.budget.chunk():
                self._ms_chunk(engine, waiting[start:start + size], guard)
            self.stint.done += len(waiting[start:start + size])
            for change in waiting[start:start + size]:
                lone.pop(change.ms_id, None)

        # Outlook changes not applied yet (a stop) are read again from the old deltaLink.
        outlook_left = self.stint.stopped and (any(i not in echoes for i in attached) or bool(lone))
        new_link = replay_link if self.tally.hold_delta or outlook_left else delta.delta_link
        self._save_cursor(cursor.model_copy(update={"folder_id": folder_id, "delta_link": new_link,
                                                    "crm_position": position, "fanout_after": fanout_after}))

    def _tags_of_unlinked(self, delta: DeltaResult, ms_changes: dict[str, MsChange], unlinked: dict[str, tuple[str, ...]],
                          crm_ids: dict[str, None]) -> dict[str, str]:
        """Our tag on each unlinked card of a full round that names a CRM record of this run (no Graph
        request in an incremental round, or when nothing is unlinked)."""
        if not delta.full:
            return {}
        wanted = [ms_id for ms_id in unlinked if ms_changes[ms_id].contact is not None]
        if not wanted:
            return {}
        return {ms_id: tag for ms_id, tag in self.microsoft.crm_ids_of(wanted).items() if tag and tag in crm_ids}

    # --- reading both sides -----------------------------------------------------------------------

    def _find_or_create_folder(self) -> str:
        folder_id = self.microsoft.ensure_folder(FOLDER_NAME, None)
        self.tally.log("contact folder looked up by name (created if missing)")
        return folder_id

    def _delta(self, folder_id: str, link: str | None) -> tuple[DeltaResult, str, str | None]:
        """The Outlook changes since `link`: (result, folder id, the link that replays this round)."""
        try:
            return self.microsoft.contact_delta(folder_id, link), folder_id, link
        except DeltaExpiredError:
            self.tally.log("deltaLink expired: full resync reconciled against the stored links")
        except NotFoundError:
            self.tally.log("contact folder gone: looked up by name again, full resync")
            folder_id = self._find_or_create_folder()
        return self.microsoft.contact_delta(folder_id, None), folder_id, None

    def _read_feed(self, after: int) -> _Feed:
        feed = _Feed({}, set(), after)
        while True:
            page = self.crm.read_changes(self.tenant_id, feed.position, self.options.feed_page_size)
            for entry in page.entries:
                if entry.kind == "contact":
                    feed.contacts.pop(entry.record_id, None)
                    feed.contacts[entry.record_id] = entry.deleted
                    feed.last_seen[entry.record_id] = entry.position
                elif entry.kind == "account":
                    feed.accounts.add(entry.record_id)
                    feed.account_positions[entry.record_id] = entry.position
            feed.position = page.last_position
            if len(page.entries) < self.options.feed_page_size:
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

    def _reconcile_full(self, delta: DeltaResult, ms_changes: dict[str, MsChange]) -> int:
        """A full round lists what is in the folder now: linked items missing from it were removed while
        we were not looking. Returns the user's LINKED link count (the scan is paid for anyway)."""
        present = {c.ms_id for c in delta.changes if c.contact is not None or c.invalid_reason}
        count = 0
        for link in self.state.iter_links(self.tenant_id, self.user_id):
            if link.state not in (LinkState.LINKED, LinkState.CRM_DELETED):
                continue
            count += link.state is LinkState.LINKED
            if link.ms_id and link.ms_id not in present:
                ms_changes[link.ms_id] = MsChange(ms_id=link.ms_id, removed_reason="missing after a full resync")
        return count

    def _guard(self, feed: _Feed, retried: list[str], ms_changes: dict[str, MsChange],
               links_by_ms: dict[str, Link], link_count: int | None) -> DeleteGuard:
        """The run's mass-delete verdict, from the deletions it is about to apply (read by the changed ids)."""
        candidates = [i for i, deleted in feed.contacts.items() if deleted]
        candidates += [i for i in retried if i not in feed.contacts]  # e.g. deletions held back last time
        crm_deletes = 0
        if candidates:
            links = self.state.get_links_by_crm(self.tenant_id, self.user_id, candidates)
            linked = [i for i, link in links.items() if link.state is LinkState.LINKED]
            if linked:
                existing = self.crm.get_contacts(self.tenant_id, linked)
                crm_deletes = sum(1 for i in linked if i not in existing)
        ms_removals = 0
        for change in ms_changes.values():
            link = links_by_ms.get(change.ms_id)
            if change.contact is None and link is not None and link.state is LinkState.LINKED:
                ms_removals += 1
        limits = self.options.limits
        if guard_needs_link_count(crm_deletes, ms_removals, limits) and link_count is None:
            link_count = sum(1 for link in self.state.iter_links(self.tenant_id, self.user_id) if link.state is LinkState.LINKED)
        return mass_delete_guard(crm_deletes, ms_removals, link_count, limits)

    # --- planning and applying, a chunk at a time -------------------------------------------------

    def _in_scope(self, account: Account | None) -> bool:
        if self.user.contact_scope is ContactScope.TENANT:
            return True
        return account is not None and account.owner_user_id == self.user_id

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

    def _crm_chunk(self, engine: Engine, ids: list[str], attached: dict[str, MsChange], lone: dict[str, MsChange],
                   guard: DeleteGuard) -> None:
        self._renew_lease()
        contacts = self.crm.get_contacts(self.tenant_id, ids)
        links = engine.resolve_pending(self.state.get_links_by_crm(self.tenant_id, self.user_id, ids))
        for crm_id, link in links.items():  # a create found again may also be in this round as a "new" item
            if link.ms_id is not None and link.ms_id in lone:
                paired = attached.get(crm_id)
                attached[crm_id] = lone.pop(link.ms_id)
                if paired is not None:  # paired by our import id: the user's own copy, now a contact of its own
                    lone[paired.ms_id] = paired
        ms = [attached.pop(crm_id) for crm_id in ids if crm_id in attached]
        engine.apply(plan(self._crm_items(engine, ids, contacts), ms, links.values(), self.user, guard=guard))

    def _ms_chunk(self, engine: Engine, changes: list[MsChange], guard: DeleteGuard) -> None:
        self._renew_lease()
        # Read again: a link may have been made during this run.
        links = self.state.get_links_by_ms(self.tenant_id, self.user_id, [c.ms_id for c in changes])
        crm_ids = [link.crm_id for link in links.values()]
        contacts = self.crm.get_contacts(self.tenant_id, crm_ids) if crm_ids else {}
        items = self._crm_items(engine, crm_ids, contacts)
        engine.apply(plan(items, changes, links.values(), self.user, guard=guard))

    # --- bookkeeping ------------------------------------------------------------------------------

    def _renew_lease(self) -> None:
        self.lease = self.state.acquire_lease(self.tenant_id, self.user_id, self.owner, self.options.lease_seconds, self.now())

    def _save_cursor(self, cursor: Cursor) -> None:
        try:
            self.state.save_cursor(cursor)
        except ConcurrencyError:
            # We hold the lease, so what we applied stands: write over the other copy, once. That copy is the
            # settings page asking for a re-evaluation (scope or mode changed while this run used the old ones):
            # keep its request, i.e. the earlier feed position and no deltaLink. Replaying is always safe.
            current = self.state.get_cursor(self.tenant_id, self.user_id)
            update: dict[str, object] = {"etag": current.etag,
                                         "crm_position": min(cursor.crm_position, current.crm_position)}
            if current.delta_link is None:
                update["delta_link"] = None
            self.state.save_cursor(cursor.model_copy(update=update))
