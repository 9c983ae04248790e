"""The steps of one kind's run, the same for every kind (contacts, tasks); the kind supplies what differs.

    cursor → Microsoft delta (expired → full resync; container gone → looked up by name, full resync)
    → the CRM side → malformed items quarantined → a full round reconciled against the links
    → pairing (attached to a CRM id, or lone) → the mass-delete verdict
    → chunks of CRM ids, then of lone Microsoft changes, under the time budget → cursor saved

With a time budget (issue 10) a pass stops between two chunks once another would not fit. The deltaLink is
kept only when every Microsoft change of the round was applied (else the old one: the round is replayed,
judged against the links). A cursor is saved only after what was read was applied, so a run that dies
anywhere is replayed by the next one; replays are harmless because "changed" is judged against the links,
and creates are idempotent.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Generic, Protocol, TypeVar

from sync_core.domain.errors import ConcurrencyError, DeltaExpiredError, NotFoundError
from sync_core.domain.models import Cursor, FeedEntry, Link, LinkState, MsChange, QuarantineEntry, UserSyncSettings
from sync_core.ports import CrmPort, StateStore
from sync_core.sync.budget import Budget, Stint
from sync_core.sync.guard import DeleteGuard, GuardLimits, guard_needs_link_count, mass_delete_guard
from sync_core.sync.tally import EngineConfig, Tally


@dataclass(frozen=True)
class SyncOptions:
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: GuardLimits = field(default_factory=GuardLimits)
    chunk_size: int = 500  # records planned and applied together: bounds memory on a large first sync
    feed_page_size: int = 1000
    lease_seconds: float = 900.0  # renewed before every chunk


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class RunPart:
    """What `sync_user` hands a kind: the user, the CRM and the state, the run's lease (`renew`), budget and
    tally, which quarantine entries are the kind's (`owns`), and the kind's own Stint to report progress on."""

    user: UserSyncSettings
    crm: CrmPort
    state: StateStore
    options: SyncOptions
    now: Callable[[], datetime]
    sleep: Callable[[float], None]
    renew: Callable[[], None]
    budget: Budget
    tally: Tally
    owns: Callable[[QuarantineEntry], bool]
    stint: Stint = field(default_factory=Stint)


I = TypeVar("I", bound="Versioned")  # the kind's Microsoft item
D = TypeVar("D")


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


def read_delta(read: Callable[[str, str | None], D], container: str, link: str | None, log: Callable[[str], None],
               *, expired: str, gone: str | None, relocate: Callable[[], str]) -> tuple[D, str, str | None]:
    """The Microsoft changes since `link`: (result, container, the link that replays this round). An expired
    link means a full round; a container gone is looked up by name again (`gone` None: it cannot be)."""
    try:
        return read(container, link), container, link
    except DeltaExpiredError:
        log(expired)
    except NotFoundError:
        if gone is None:
            raise
        log(gone)
        container = relocate()
    return read(container, None), container, None


def save_cursor(state: StateStore, cursor: Cursor,
                keep: Callable[[Cursor, Cursor], dict[str, object]] | None = None) -> Cursor:
    """Save `cursor`; on a concurrent write, over the other copy, once: we hold the lease, so what we
    applied stands. `keep(ours, theirs)` names what of the other copy must survive."""
    try:
        return state.save_cursor(cursor)
    except ConcurrencyError:
        current = state.get_cursor(cursor.tenant_id, cursor.user_id)
        return state.save_cursor(cursor.model_copy(update={"etag": current.etag,
                                                           **(keep(cursor, current) if keep else {})}))


def fold_tally(into: Tally, part: Tally, label: str) -> None:
    """A part's counts join the run's counts per side; the run log gets one summary line, then its lines."""
    for side, counts in ((into.crm, part.crm), (into.microsoft, part.microsoft)):
        for name, value in counts.items():
            side[name] += value
    into.conflicts += part.conflicts
    into.quarantined += part.quarantined
    into.guarded = into.guarded or part.guarded
    into.log(f"{label}: Microsoft created {part.microsoft['created']}, updated "
             f"{part.microsoft['updated']}, deleted {part.microsoft['deleted']}; CRM created {part.crm['created']}, "
             f"updated {part.crm['updated']}; errors {part.crm['errors'] + part.microsoft['errors']}, "
             f"quarantined {part.quarantined}, conflicts {part.conflicts}")
    for line in part.lines:
        into.log(line)
    into.dropped_lines += part.dropped_lines


class KindRun(ABC, Generic[I]):
    """The shared steps of one kind's pass over a delta round; links live in the state partition `partition`."""

    def __init__(self, part: RunPart, partition: str, tally: Tally) -> None:
        self.part, self.partition, self.tally = part, partition, tally
        self.user, self.state, self.options = part.user, part.state, part.options
        self.budget, self.stint = part.budget, part.stint
        self.now, self.sleep, self.renew = part.now, part.sleep, part.renew

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id

    @staticmethod
    def _version(change: MsChange[I]) -> str | None:
        """The item's version as Microsoft reports it; None when the change is a removal."""
        return change.item.version if change.item is not None else None

    @staticmethod
    def _removal(ms_id: str) -> MsChange[I]:
        """A removal of the item `ms_id` (a linked item a full round no longer lists)."""
        return MsChange(ms_id=ms_id, removed_reason="missing after a full resync")

    def _own_quarantine(self) -> list[QuarantineEntry]:
        # The user's list is shared by the kinds: another kind's entry read as ours is looked up for nothing.
        return [q for q in self.state.list_quarantine(self.tenant_id, self.user.user_id) if self.part.owns(q)]

    def _feed_since(self, after: int, take: Callable[[FeedEntry], None]) -> int:
        """Each CRM feed entry after position `after` to `take`, read a page at a time; returns the position
        read up to, to store once what was taken is applied."""
        while True:
            page = self.part.crm.read_changes(self.tenant_id, after, self.options.feed_page_size)
            for entry in page.entries:
                take(entry)
            after = page.last_position
            if len(page.entries) < self.options.feed_page_size:
                return after

    def _latest(self, changes: Iterable[MsChange[I]], quarantine: Callable[[MsChange[I]], None]) -> dict[str, MsChange[I]]:
        """The round's changes by item: an item may come twice in a round, its last state wins; malformed
        items are quarantined, never taken for removals."""
        latest: dict[str, MsChange[I]] = {}
        for change in changes:
            latest[change.ms_id] = change
        for change in [c for c in latest.values() if c.invalid_reason]:
            quarantine(change)
            del latest[change.ms_id]
        return latest

    def _reconcile_full(self, listed: Iterable[str], changes: dict[str, MsChange[I]],
                        mine: Callable[[str], bool] = lambda _: True) -> int:
        """A full round lists what is there now: linked items (of ours, `mine`) missing from it were removed
        while we were not looking. Returns the LINKED link count (the scan is paid for anyway)."""
        present = set(listed)
        count = 0
        for link in self.state.iter_links(self.tenant_id, self.partition):
            if link.state not in (LinkState.LINKED, LinkState.CRM_DELETED):
                continue
            count += link.state is LinkState.LINKED
            if link.ms_id and link.ms_id not in present and mine(link.ms_id):
                changes.setdefault(link.ms_id, self._removal(link.ms_id))
        return count

    def _attach(self, link: Link, change: MsChange[I], crm_ids: dict[str, None], attached: dict[str, MsChange[I]],
                counted: set[str]) -> None:
        """A change of a linked item joins its CRM record; progress counts it unless it is our own write
        coming back (nothing to do)."""
        crm_ids.setdefault(link.crm_id, None)
        attached[link.crm_id] = change
        version = self._version(change)
        if not (link.state is LinkState.LINKED and version is not None and link.ms_version == version):
            counted.add(link.crm_id)

    def _guard(self, candidates: Sequence[str], kept: Callable[[list[str]], set[str]], changes: dict[str, MsChange[I]],
               links_by_ms: dict[str, Link], link_count: int | None) -> DeleteGuard:
        """The run's mass-delete verdict, from the deletions it is about to apply (read by the changed ids):
        linked `candidates` the CRM no longer holds for the user (`kept`: those it does) and linked items
        removed in Microsoft."""
        crm_deletes = 0
        if candidates:
            links = self.state.get_links_by_crm(self.tenant_id, self.partition, candidates)
            linked = [i for i, link in links.items() if link.state is LinkState.LINKED]
            if linked:
                still = kept(linked)
                crm_deletes = sum(1 for i in linked if i not in still)
        ms_removals = sum(1 for key, change in changes.items()
                          if self._version(change) is None and (link := links_by_ms.get(key)) is not None
                          and link.state is LinkState.LINKED)
        limits = self.options.limits
        if guard_needs_link_count(crm_deletes, ms_removals, limits) and link_count is None:
            link_count = sum(1 for link in self.state.iter_links(self.tenant_id, self.partition)
                             if link.state is LinkState.LINKED)
        return mass_delete_guard(crm_deletes, ms_removals, link_count, limits)

    def _paired_first(self, crm_ids: dict[str, None], attached: dict[str, MsChange[I]], echoes: set[str],
                      skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Records paired with a Microsoft change first: a stop after them keeps the new deltaLink."""
        return ([i for i in crm_ids if i in attached and i not in echoes]
                + [i for i in crm_ids if i not in attached and i not in skip])

    def _echo_tail(self, crm_ids: dict[str, None], echoes: set[str], stoppable: bool = True) -> list[str]:
        # Our own writes coming back (nothing changed on either side since) need no chunk: under a budget
        # they are left out, so a replayed round never spends a run on them again and again.
        return [] if stoppable and self.budget.seconds is not None else [i for i in crm_ids if i in echoes]

    def _apply_round(self, ids: list[str], counted: set[str], lone: dict[str, MsChange[I]],
                     crm_chunk: Callable[[list[str]], None], ms_chunk: Callable[[list[MsChange[I]]], None],
                     *, stoppable: bool = True) -> list[str] | None:
        """Chunks of CRM ids, then of the lone Microsoft changes, each under the budget when `stoppable`.
        Returns None when all was applied, else the CRM ids not applied (empty: a stop among the lone)."""
        if stoppable:
            self.stint.total += sum(1 for i in ids if i in counted) + len(lone)
        left: list[str] | None = None
        size = self.options.chunk_size
        for start in range(0, len(ids), size):
            if stoppable and not self.budget.allows_another():
                left = ids[start:]
                break
            chunk = ids[start:start + size]
            with self.budget.chunk():
                crm_chunk(chunk)
            self.stint.done += sum(1 for i in chunk if i in counted)
        waiting = [] if left is not None else list(lone.values())
        for start in range(0, len(waiting), size):
            if stoppable and not self.budget.allows_another():
                left = []
                break
            batch = waiting[start:start + size]
            with self.budget.chunk():
                ms_chunk(batch)
            self.stint.done += len(batch)
            for change in batch:
                lone.pop(change.ms_id, None)
        self.stint.stopped = self.stint.stopped or left is not None
        return left

    def _lone_chunk(self, changes: list[MsChange[I]], apply: Callable[[list[str], list[MsChange[I]], list[Link]], None]) -> None:
        """Lone Microsoft changes, planned with the CRM records their links name now (read again: a link
        may have been made during this run)."""
        self.renew()
        links = self.state.get_links_by_ms(self.tenant_id, self.partition, [c.ms_id for c in changes])
        apply([link.crm_id for link in links.values()], changes, list(links.values()))

    def _next_delta_link(self, left: list[str] | None, attached: dict[str, MsChange[I]], lone: dict[str, MsChange[I]],
                         echoes: set[str], replay: str | None, fresh: str) -> str | None:
        """Microsoft changes not applied (a stop, or one held back) are read again from the old deltaLink."""
        outlook_left = left is not None and (any(i not in echoes for i in attached) or bool(lone))
        return replay if self.tally.hold_delta or outlook_left else fresh
