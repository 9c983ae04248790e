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

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import (
    Entity,
    NameFunction,
    Op,
    RequestCounter,
    Table,
    as_int,
    connect,
    etag_of,
    from_iso,
    int64,
    iso,
    key_part,
)
from sync_core.domain.errors import (
    AlreadyExistsError,
    ConcurrencyError,
    LeaseHeldError,
    NotFoundError,
    StorageError,
    SyncError,
)
from sync_core.domain.models import (
    ContactFields,
    Cursor,
    Lease,
    Link,
    LinkState,
    Progress,
    QuarantineEntry,
    RunOutcome,
    RunRecord,
    SideCounts,
)
from sync_core.settings import AppSettings

LINKS, CURSORS, RUNS, LEASES, QUARANTINE = "userlinks", "usercursors", "userruns", "userleases", "userquarantine"
LEGACY_TABLES = {LINKS: "synclinks", CURSORS: "synccursors", RUNS: "syncruns", LEASES: "syncleases",
                 QUARANTINE: "syncquarantine"}
CURSOR_ROW = "cursor"
LEASE_ROW = "lease"
CRM_PREFIX = "crm_"
MS_PREFIX = "ms_"
# Table Storage strings hold at most 32K UTF-16 characters: longer text is split over several
# properties (Synced, Synced1, ...); a run log beyond one property is cut, an error message too.
MAX_PROPERTY_CHARS = 30_000
MAX_LOG_CHARS = MAX_PROPERTY_CHARS
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_MICROS = 10**19 - 1  # inverted timestamps stay 19 digits wide for centuries
_QUARANTINE_ATTEMPTS = 5


def _identity(base: str) -> str:
    return base


def put_long_text(entity: Entity, name: str, text: str) -> None:
    """Store `text` under `name`, continued in `name1`, `name2`, ... when it is too long for one."""
    chunks = [text[i:i + MAX_PROPERTY_CHARS] for i in range(0, len(text), MAX_PROPERTY_CHARS)] or [""]
    entity[name] = chunks[0]
    for index, chunk in enumerate(chunks[1:], start=1):
        entity[f"{name}{index}"] = chunk


def get_long_text(entity: Mapping[str, Any], name: str) -> str:
    chunks = [str(entity.get(name) or "")]
    index = 1
    while f"{name}{index}" in entity:
        chunks.append(str(entity[f"{name}{index}"]))
        index += 1
    return "".join(chunks)


def state_partition(tenant_id: str, user_id: str) -> str:
    """Injective: key_part escapes "_", so no other (tenant, user) pair gives the same partition."""
    return f"{key_part(tenant_id)}_{key_part(user_id)}"


def _owner(tenant_id: str, user_id: str) -> Entity:
    return {"PartitionKey": state_partition(tenant_id, user_id), "TenantId": tenant_id, "UserId": user_id}


def _owner_of(entity: Mapping[str, Any]) -> dict[str, str]:
    return {"tenant_id": str(entity["TenantId"]), "user_id": str(entity["UserId"])}


def crm_row(crm_id: str) -> str:
    return f"{CRM_PREFIX}{key_part(crm_id)}"


def ms_row(ms_id: str) -> str:
    return f"{MS_PREFIX}{key_part(ms_id)}"


# ---- links ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkToken:
    """What `Link.etag` carries: the row read, its ETag, and the ms id stored then."""

    row: str  # "crm" | "ms"
    etag: str
    ms_id: str | None

    def encode(self) -> str:
        return json.dumps([self.row, self.etag, self.ms_id], separators=(",", ":"))

    @classmethod
    def decode(cls, value: str) -> LinkToken:
        try:
            row, etag, ms_id = json.loads(value)
        except (ValueError, TypeError) as exc:
            raise ConcurrencyError("the link's etag was not issued by this store") from exc
        if row not in ("crm", "ms") or not isinstance(etag, str):
            raise ConcurrencyError("the link's etag was not issued by this store")
        return cls(row=row, etag=etag, ms_id=ms_id)


def link_to_entity(link: Link, row_key: str) -> Entity:
    entity: Entity = {
        **_owner(link.tenant_id, link.user_id),
        "RowKey": row_key,
        "CrmId": link.crm_id,
        "MsId": link.ms_id or "",
        "State": link.state.value,
        "CrmVersion": link.crm_version,
        "MsVersion": link.ms_version,
        "SyncedHash": link.synced_hash,
    }
    if link.pending_since is not None:
        entity["PendingSince"] = link.pending_since
    # Long notes would not fit one property; the merge base must survive whole.
    put_long_text(entity, "Synced", link.synced.model_dump_json() if link.synced is not None else "")
    return entity


def link_from_entity(entity: Mapping[str, Any]) -> Link:
    ms_id = entity.get("MsId") or None
    row = "crm" if str(entity["RowKey"]).startswith(CRM_PREFIX) else "ms"
    synced = get_long_text(entity, "Synced")
    return Link(
        **_owner_of(entity),
        crm_id=entity["CrmId"],
        ms_id=ms_id,
        state=LinkState(entity["State"]),
        crm_version=entity.get("CrmVersion", ""),
        ms_version=entity.get("MsVersion", ""),
        synced=ContactFields.model_validate_json(synced) if synced else None,
        synced_hash=entity.get("SyncedHash", ""),
        pending_since=entity.get("PendingSince") or None,
        etag=LinkToken(row=row, etag=etag_of(entity), ms_id=ms_id).encode(),
    )


# ---- cursors, runs, leases, quarantine ------------------------------------------------------

def cursor_to_entity(cursor: Cursor) -> Entity:
    return {
        **_owner(cursor.tenant_id, cursor.user_id),
        "RowKey": CURSOR_ROW,
        "FolderId": cursor.folder_id or "",
        "DeltaLink": cursor.delta_link or "",
        "CrmPosition": int64(cursor.crm_position),
        "FanoutAfter": cursor.fanout_after or "",
    }


def cursor_from_entity(entity: Mapping[str, Any]) -> Cursor:
    return Cursor(
        **_owner_of(entity),
        folder_id=entity.get("FolderId") or None,
        delta_link=entity.get("DeltaLink") or None,
        crm_position=as_int(entity.get("CrmPosition", 0)),
        fanout_after=entity.get("FanoutAfter") or None,  # rows written before issue 10 have none
        etag=etag_of(entity),
    )


def run_row(run: RunRecord) -> str:
    started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=timezone.utc)
    micros = (started - _EPOCH) // timedelta(microseconds=1)
    return f"{_MAX_MICROS - micros:019d}_{key_part(run.run_id)}"


def _bounded_log(log: tuple[str, ...]) -> str:
    """The log as JSON, cut (with a note saying how much) to fit one Table Storage property."""
    lines = list(log)
    encoded = json.dumps(lines)
    dropped = 0
    while len(encoded) > MAX_LOG_CHARS and lines:
        cut = max(1, len(lines) // 10)
        lines = lines[:-cut]
        dropped += cut
        encoded = json.dumps([*lines, f"... {dropped} more log lines not stored"])
    return encoded


def run_to_entity(run: RunRecord) -> Entity:
    return {
        **_owner(run.tenant_id, run.user_id),
        "RowKey": run_row(run),
        "RunId": run.run_id,
        "StartedAt": iso(run.started_at),
        "FinishedAt": iso(run.finished_at),
        "Outcome": run.outcome.value,
        "Crm": run.crm.model_dump_json(),
        "Microsoft": run.microsoft.model_dump_json(),
        "Conflicts": run.conflicts,
        "Quarantined": run.quarantined,
        "GraphRequests": run.graph_requests,
        "Log": _bounded_log(run.log),
        "Error": (run.error or "")[:MAX_PROPERTY_CHARS],
        "LeaseExpiresAt": iso(run.lease_expires_at),
        "Progress": run.progress.model_dump_json() if run.progress is not None else "",
    }


def run_from_entity(entity: Mapping[str, Any]) -> RunRecord:
    started = from_iso(entity["StartedAt"])
    assert started is not None  # written by run_to_entity, which always stores it
    return RunRecord(
        **_owner_of(entity),
        run_id=entity["RunId"],
        started_at=started,
        finished_at=from_iso(entity.get("FinishedAt")),
        outcome=RunOutcome(entity["Outcome"]),
        crm=SideCounts.model_validate_json(entity["Crm"]),
        microsoft=SideCounts.model_validate_json(entity["Microsoft"]),
        conflicts=as_int(entity.get("Conflicts", 0)),
        quarantined=as_int(entity.get("Quarantined", 0)),
        graph_requests=as_int(entity.get("GraphRequests", 0)),
        log=tuple(json.loads(entity.get("Log") or "[]")),
        error=entity.get("Error") or None,
        lease_expires_at=from_iso(entity.get("LeaseExpiresAt")),
        # Rows written before issue 10 have no progress.
        progress=Progress.model_validate_json(entity["Progress"]) if entity.get("Progress") else None,
        etag=etag_of(entity),
    )


def lease_to_entity(tenant_id: str, user_id: str, owner: str, expires_at: datetime) -> Entity:
    return {**_owner(tenant_id, user_id), "RowKey": LEASE_ROW, "Owner": owner, "ExpiresAt": iso(expires_at)}


def lease_from_entity(entity: Mapping[str, Any], etag: str | None = None) -> Lease:
    expires = from_iso(entity["ExpiresAt"])
    assert expires is not None  # written by lease_to_entity, which always stores it
    return Lease(**_owner_of(entity), owner=entity["Owner"], expires_at=expires,
                 etag=etag or etag_of(entity))


def quarantine_row(side: str, record_id: str) -> str:
    return f"{key_part(side)}_{key_part(record_id)}"


def quarantine_to_entity(entry: QuarantineEntry) -> Entity:
    return {
        **_owner(entry.tenant_id, entry.user_id),
        "RowKey": quarantine_row(entry.side, entry.record_id),
        "Side": entry.side,
        "RecordId": entry.record_id,
        "Reason": entry.reason,
        "FirstSeen": iso(entry.first_seen),
        "Attempts": entry.attempts,
    }


def quarantine_from_entity(entity: Mapping[str, Any]) -> QuarantineEntry:
    first_seen = from_iso(entity["FirstSeen"])
    assert first_seen is not None  # written by quarantine_to_entity, which always stores it
    return QuarantineEntry(
        **_owner_of(entity),
        side=entity["Side"],
        record_id=entity["RecordId"],
        reason=entity["Reason"],
        first_seen=first_seen,
        attempts=as_int(entity["Attempts"]),
    )


def _is_expired(expires_at: datetime, now: datetime) -> bool:
    if (expires_at.tzinfo is None) != (now.tzinfo is None):
        # Mixed naive/aware values: naive ones are taken as UTC rather than failing the comparison.
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=timezone.utc)
        now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    return expires_at <= now


class TableStateStore:
    """StateStore on Table Storage; see the module docstring for the layout."""

    def __init__(
        self,
        service: TableServiceClient | str,
        name: NameFunction = _identity,
        *,
        counter: RequestCounter | None = None,
    ) -> None:
        self.counter = counter or RequestCounter()
        client = connect(service)
        self._links = Table(client, name(LINKS), self.counter)
        self._cursors = Table(client, name(CURSORS), self.counter)
        self._runs = Table(client, name(RUNS), self.counter)
        self._leases = Table(client, name(LEASES), self.counter)
        self._quarantine = Table(client, name(QUARANTINE), self.counter)

    @classmethod
    def from_settings(cls, settings: AppSettings, counter: RequestCounter | None = None) -> TableStateStore:
        return cls(settings.storage_connection_string, settings.storage_name, counter=counter)

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
                if held.owner != owner and not _is_expired(held.expires_at, now):
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
