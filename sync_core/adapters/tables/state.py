"""The sync state store in Table Storage (the StateStore adapter).

PartitionKey = state_partition(tenant, user): user ids repeat across CRM tenants, so a partition named
by the user id alone would mix two people's state. Every row also carries TenantId and UserId.
Tables (each name passed through the settings' storage_name, so tests never share them):

    userlinks       crm_{crm id}  and  ms_{ms id}: two full copies of each link, written in one
                    transaction, so a lookup by either id is one point read
    usercursors     cursor                        the user's deltaLink, folder id, CRM feed position
    userruns        {inverted start µs}_{run id}  newest first, so latest_runs is a top-N query
    userleases      lease                         who syncs this user right now, until when
    userquarantine  {side}_{record id}            records that failed, with reason and attempts

The previous version kept these rows in synclinks, synccursors, ... partitioned by user id alone;
sync_core.adapters.tables.state_migration moves them here.

Link ETags. Both rows of a link are rewritten by every save, so the ETag of either row is a valid
version of the whole link. `Link.etag` is an opaque token naming the row it was read from, that
row's ETag and the ms id stored at the time; a save uses If-Match on that row and knows which old
`ms_` row to delete when the ms id changes, without an extra read.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import NameFunction, Op, RequestCounter, Table, TableAdapter, etag_of, same_name
from sync_core.adapters.tables.state_rows import (
    CRM_PREFIX, CURSOR_ROW, CURSORS, LEASE_ROW, LEASES, LEGACY_TABLES, LINKS, QUARANTINE, RUNS, LinkToken, crm_row,
    cursor_from_entity, cursor_to_entity, is_expired, lease_from_entity, lease_to_entity, link_from_entity,
    link_to_entity, ms_row, quarantine_from_entity, quarantine_row, quarantine_to_entity, run_from_entity,
    run_to_entity, state_partition,
)
from sync_core.domain.errors import (
    AlreadyExistsError, ConcurrencyError, LeaseHeldError, NotFoundError, StorageError, SyncError,
)
from sync_core.domain.models import Cursor, Lease, Link, QuarantineEntry, RunRecord

# Some of the names above are here for the migration and the contract tests, which read the layout and the
# row conversions from this module.

_QUARANTINE_ATTEMPTS = 5


class TableStateStore(TableAdapter):
    """StateStore on Table Storage; see the module docstring for the layout."""

    def __init__(
        self, service: TableServiceClient | str, name: NameFunction = same_name, *,
        counter: RequestCounter | None = None,
    ) -> None:
        super().__init__(service, name, counter=counter)
        self._links = self._open(LINKS)
        self._cursors = self._open(CURSORS)
        self._runs = self._open(RUNS)
        self._leases = self._open(LEASES)
        self._quarantine = self._open(QUARANTINE)

    # ---- links ------------------------------------------------------------------------------

    def get_links_by_crm(self, tenant_id: str, user_id: str, crm_ids: Iterable[str]) -> dict[str, Link]:
        """One point read per id."""
        found = self._links.get_many(state_partition(tenant_id, user_id), (crm_row(i) for i in crm_ids))
        links = (link_from_entity(e) for e in found.values())
        return {link.crm_id: link for link in links}

    def get_links_by_ms(self, tenant_id: str, user_id: str, ms_ids: Iterable[str]) -> dict[str, Link]:
        """One point read per id (the ms_ row holds a full copy of the link)."""
        found = self._links.get_many(state_partition(tenant_id, user_id), (ms_row(i) for i in ms_ids))
        links = (link_from_entity(e) for e in found.values())
        return {link.ms_id: link for link in links if link.ms_id is not None}

    def iter_links(self, tenant_id: str, user_id: str) -> Iterator[Link]:
        """Every link of the user, page by page (a partition scan: only for full resyncs)."""
        for entity in self._links.query_prefix(state_partition(tenant_id, user_id), CRM_PREFIX):
            yield link_from_entity(entity)

    def save_link(self, link: Link) -> Link:
        """Insert when `link.etag` is None (AlreadyExistsError if the CRM id or the ms id is already
        linked), else replace If-Match (ConcurrencyError when stale or deleted meanwhile)."""
        ops = self._link_ops(link)
        try:
            etags = self._links.transact(ops)
        except NotFoundError as exc:
            raise ConcurrencyError("the link was deleted since it was read") from exc
        return self._saved(link, etags[0])

    def save_links(self, links: Sequence[Link]) -> list[Link | SyncError]:
        """Save many links of one user in as few transactions as possible (≤ 100 rows each): the
        saved link, or the error that link alone met (a failed transaction is retried link by link,
        so one stale link never costs the others)."""
        results: list[Link | SyncError] = []
        group: list[tuple[Link, list[Op]]] = []
        size = 0

        def flush() -> None:
            nonlocal group, size
            if not group:
                return
            try:
                etags = self._links.transact([op for _, ops in group for op in ops])
                offset = 0
                for link, ops in group:
                    results.append(self._saved(link, etags[offset]))
                    offset += len(ops)
            except SyncError:
                for link, _ in group:
                    try:
                        results.append(self.save_link(link))
                    except SyncError as exc:
                        results.append(exc)
            group, size = [], 0

        for link in links:
            ops = self._link_ops(link)
            if size + len(ops) > Table.MAX_BATCH or any((l.tenant_id, l.user_id) != (link.tenant_id, link.user_id) for l, _ in group[:1]):
                flush()
            group.append((link, ops))
            size += len(ops)
        flush()
        return results

    def _link_ops(self, link: Link) -> list[Op]:
        crm_entity = link_to_entity(link, crm_row(link.crm_id))
        new_ms = link.ms_id
        if link.etag is None:
            ops = [Op("create", crm_entity)]
            if new_ms is not None:
                ops.append(Op("create", link_to_entity(link, ms_row(new_ms))))
            return ops
        token = LinkToken.decode(link.etag)
        old_ms = token.ms_id
        # The row the caller read carries the If-Match; the other row only has to exist.
        ops = [Op("replace", crm_entity, token.etag if token.row == "crm" else None)]
        if old_ms is not None and old_ms != new_ms:
            ops.append(Op("delete", link_to_entity(link, ms_row(old_ms)), token.etag if token.row == "ms" else None))
        if new_ms is not None and new_ms == old_ms:
            ops.append(Op("replace", link_to_entity(link, ms_row(new_ms)), token.etag if token.row == "ms" else None))
        elif new_ms is not None:
            ops.append(Op("create", link_to_entity(link, ms_row(new_ms))))
        return ops

    @staticmethod
    def _saved(link: Link, crm_etag: str | None) -> Link:
        if crm_etag is None:
            raise StorageError("storage did not return the link's new ETag")
        return link.model_copy(update={"etag": LinkToken(row="crm", etag=crm_etag, ms_id=link.ms_id).encode()})

    def delete_link(self, link: Link) -> None:
        """Delete both rows; If-Match when `link.etag` is set (ConcurrencyError when stale)."""
        if link.etag is None:
            ops = [Op("delete", link_to_entity(link, crm_row(link.crm_id)))]
            if link.ms_id is not None:
                ops.append(Op("delete", link_to_entity(link, ms_row(link.ms_id))))
            self._links.transact(ops)
            return
        token = LinkToken.decode(link.etag)
        ops = [Op("delete", link_to_entity(link, crm_row(link.crm_id)), token.etag if token.row == "crm" else None)]
        if token.ms_id is not None:
            ops.append(Op("delete", link_to_entity(link, ms_row(token.ms_id)), token.etag if token.row == "ms" else None))
        try:
            self._links.transact(ops)
        except NotFoundError as exc:
            raise ConcurrencyError("the link was deleted since it was read") from exc

    # ---- cursor -----------------------------------------------------------------------------

    def get_cursor(self, tenant_id: str, user_id: str) -> Cursor:
        """The stored cursor, or an empty one (etag None) before the first sync."""
        entity = self._cursors.get(state_partition(tenant_id, user_id), CURSOR_ROW)
        return Cursor(tenant_id=tenant_id, user_id=user_id) if entity is None else cursor_from_entity(entity)

    def save_cursor(self, cursor: Cursor) -> Cursor:
        """Insert when etag is None, else If-Match; ConcurrencyError when another writer got there first."""
        entity = cursor_to_entity(cursor)
        try:
            etag = self._cursors.create(entity) if cursor.etag is None else self._cursors.replace(entity, cursor.etag)
        except (AlreadyExistsError, NotFoundError) as exc:
            raise ConcurrencyError("the cursor changed since it was read") from exc
        return cursor.model_copy(update={"etag": etag})

    # ---- runs -------------------------------------------------------------------------------

    def save_run(self, run: RunRecord) -> RunRecord:
        """Insert when etag is None (AlreadyExistsError if that run was saved before), else
        replace If-Match (ConcurrencyError when stale)."""
        entity = run_to_entity(run)
        try:
            etag = self._runs.create(entity) if run.etag is None else self._runs.replace(entity, run.etag)
        except NotFoundError as exc:
            raise ConcurrencyError("the run record was removed since it was read") from exc
        return run.model_copy(update={"etag": etag})

    def latest_runs(self, tenant_id: str, user_id: str, limit: int = 10) -> list[RunRecord]:
        """Newest first (by started_at): one top-N query on the inverted-time RowKey."""
        if limit <= 0:
            return []
        rows = self._runs.query("PartitionKey eq @pk", {"pk": state_partition(tenant_id, user_id)}, page_size=min(limit, 1000), max_items=limit)
        return [run_from_entity(row) for row in rows]

    # ---- lease ------------------------------------------------------------------------------

    def acquire_lease(self, tenant_id: str, user_id: str, owner: str, ttl_seconds: float, now: datetime) -> Lease:
        """Take the user's lease until now + ttl: insert, take over one expired at `now`, or renew
        one this owner holds. LeaseHeldError while another holder's lease runs, or when a racing
        worker wins."""
        expires_at = now + timedelta(seconds=ttl_seconds)
        entity = lease_to_entity(tenant_id, user_id, owner, expires_at)
        current = self._leases.get(state_partition(tenant_id, user_id), LEASE_ROW)
        try:
            if current is None:
                etag = self._leases.create(entity)
            else:
                held = lease_from_entity(current)
                if held.owner != owner and not is_expired(held.expires_at, now):
                    raise LeaseHeldError(
                        f"another worker holds this user's sync lease until {held.expires_at.isoformat()}",
                        expires_at=held.expires_at)
                etag = self._leases.replace(entity, held.etag)
        except (AlreadyExistsError, ConcurrencyError, NotFoundError) as exc:
            raise LeaseHeldError("another worker took this user's sync lease at the same moment") from exc
        return Lease(tenant_id=tenant_id, user_id=user_id, owner=owner, expires_at=expires_at, etag=etag)

    def release_lease(self, lease: Lease) -> None:
        """Delete If-Match: ConcurrencyError when someone else has taken the lease over since
        (ours had expired); releasing an already released lease does nothing."""
        self._leases.delete(state_partition(lease.tenant_id, lease.user_id), LEASE_ROW, lease.etag)

    # ---- quarantine -------------------------------------------------------------------------

    def put_quarantine(self, entry: QuarantineEntry) -> None:
        """Record a failed record; putting it again keeps first_seen, counts one more attempt and
        keeps the latest reason."""
        row = quarantine_row(entry.side, entry.record_id)
        for attempt in range(_QUARANTINE_ATTEMPTS):
            current = self._quarantine.get(state_partition(entry.tenant_id, entry.user_id), row)
            try:
                if current is None:
                    self._quarantine.create(quarantine_to_entity(entry))
                else:
                    previous = quarantine_from_entity(current)
                    again = entry.model_copy(update={"first_seen": previous.first_seen,
                                                     "attempts": previous.attempts + 1})
                    self._quarantine.replace(quarantine_to_entity(again), etag_of(current))
                return
            except (AlreadyExistsError, ConcurrencyError, NotFoundError):
                time.sleep(0.005 * (attempt + 1))  # a concurrent put won the row: read it again
        raise ConcurrencyError("the quarantine entry stayed contended")

    def list_quarantine(self, tenant_id: str, user_id: str) -> list[QuarantineEntry]:
        rows = self._quarantine.query("PartitionKey eq @pk", {"pk": state_partition(tenant_id, user_id)})
        return [quarantine_from_entity(row) for row in rows]

    def clear_quarantine(self, tenant_id: str, user_id: str, side: str, record_id: str) -> None:
        """Remove the entry; clearing one that is not there does nothing."""
        self._quarantine.delete(state_partition(tenant_id, user_id), quarantine_row(side, record_id))
