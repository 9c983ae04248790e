"""The rows of the sync state tables (see state.py for the layout): keys and entity ⇄ model conversions."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sync_core.adapters.tables.codec import as_int, etag_of, from_iso, int64, iso, key_part
from sync_core.adapters.tables.common import Entity
from sync_core.domain.errors import ConcurrencyError
from sync_core.domain.models import (
    ContactFields, Cursor, Lease, Link, LinkState, Progress, QuarantineEntry, RunOutcome, RunRecord, SideCounts,
)

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


def is_expired(expires_at: datetime, now: datetime) -> bool:
    if (expires_at.tzinfo is None) != (now.tzinfo is None):
        # Mixed naive/aware values: naive ones are taken as UTC rather than failing the comparison.
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=timezone.utc)
        now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    return expires_at <= now
