"""StateStore in memory, with Table Storage's rules: ETag-conditional writes (a stale or missing ETag raises
ConcurrencyError), inserts of an existing row raise AlreadyExistsError, at most one link per Microsoft id, a
lease held by another owner until it expires. tests/contracts runs the same suites against it and
TableStateStore on Azurite.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from sync_core.adapters.memory.changes import Ids
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError, LeaseHeldError, SyncError
from sync_core.domain.models import Cursor, Lease, Link, QuarantineEntry, RunRecord


def _check_write(stored_etag: str | None, exists: bool, etag: str | None, what: str) -> None:
    """Table Storage's answer to an insert (no ETag) or an If-Match replace."""
    if etag is None and exists:
        raise AlreadyExistsError(f"the {what} exists")
    if etag is not None and (not exists or stored_etag != etag):
        raise ConcurrencyError(f"the {what} changed or was deleted since it was read")


class MemoryStateStore:
    """StateStore in memory, with Table Storage's rules (ETags, insert conflicts, one link per ms id)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = Ids("state")
        self.links: dict[tuple[str, str, str], Link] = {}
        self._by_ms: dict[tuple[str, str, str], str] = {}
        self.cursors: dict[tuple[str, str], Cursor] = {}
        self.runs: dict[tuple[str, str, str], RunRecord] = {}
        self.leases: dict[tuple[str, str], Lease] = {}
        self.quarantine: dict[tuple[str, str, str, str], QuarantineEntry] = {}

    # -- links
    def get_links_by_crm(self, tenant_id: str, user_id: str, crm_ids: Iterable[str]) -> dict[str, Link]:
        with self._lock:
            found = (self.links.get((tenant_id, user_id, i)) for i in crm_ids)
            return {link.crm_id: link for link in found if link is not None}

    def get_links_by_ms(self, tenant_id: str, user_id: str, ms_ids: Iterable[str]) -> dict[str, Link]:
        with self._lock:
            found = {}
            for ms_id in ms_ids:
                crm_id = self._by_ms.get((tenant_id, user_id, ms_id))
                if crm_id is not None:
                    found[ms_id] = self.links[(tenant_id, user_id, crm_id)]
            return found

    def iter_links(self, tenant_id: str, user_id: str) -> Iterator[Link]:
        with self._lock:
            chosen = [link for (t, u, _), link in sorted(self.links.items()) if (t, u) == (tenant_id, user_id)]
        return iter(chosen)

    def save_link(self, link: Link) -> Link:
        with self._lock:
            key = (link.tenant_id, link.user_id, link.crm_id)
            current = self.links.get(key)
            _check_write(current.etag if current else None, current is not None, link.etag, "link")
            if link.ms_id is not None:
                holder = self._by_ms.get((link.tenant_id, link.user_id, link.ms_id))
                if holder is not None and holder != link.crm_id:
                    raise AlreadyExistsError("the Microsoft item is linked to another CRM record")
            if current is not None and current.ms_id is not None:
                del self._by_ms[(link.tenant_id, link.user_id, current.ms_id)]
            saved = link.model_copy(update={"etag": self._ids("etag-")})
            self.links[key] = saved
            if saved.ms_id is not None:
                self._by_ms[(link.tenant_id, link.user_id, saved.ms_id)] = saved.crm_id
            return saved

    def save_links(self, links: Sequence[Link]) -> list[Link | SyncError]:
        results: list[Link | SyncError] = []
        for link in links:
            try:
                results.append(self.save_link(link))
            except (AlreadyExistsError, ConcurrencyError) as exc:
                results.append(exc)
        return results

    def delete_link(self, link: Link) -> None:
        with self._lock:
            current = self.links.get((link.tenant_id, link.user_id, link.crm_id))
            if current is None or current.etag != link.etag:
                raise ConcurrencyError("the link changed or was deleted since it was read")
            del self.links[(link.tenant_id, link.user_id, link.crm_id)]
            if current.ms_id is not None:
                del self._by_ms[(link.tenant_id, link.user_id, current.ms_id)]

    # -- cursor
    def get_cursor(self, tenant_id: str, user_id: str) -> Cursor:
        with self._lock:
            return self.cursors.get((tenant_id, user_id)) or Cursor(tenant_id=tenant_id, user_id=user_id)

    def save_cursor(self, cursor: Cursor) -> Cursor:
        with self._lock:
            current = self.cursors.get((cursor.tenant_id, cursor.user_id))
            if (current.etag if current else None) != cursor.etag:
                raise ConcurrencyError("the cursor changed since it was read")
            saved = cursor.model_copy(update={"etag": self._ids("etag-")})
            self.cursors[(cursor.tenant_id, cursor.user_id)] = saved
            return saved

    # -- runs
    def save_run(self, run: RunRecord) -> RunRecord:
        with self._lock:
            key = (run.tenant_id, run.user_id, run.run_id)
            current = self.runs.get(key)
            _check_write(current.etag if current else None, current is not None, run.etag, "run record")
            saved = run.model_copy(update={"etag": self._ids("etag-")})
            self.runs[key] = saved
            return saved

    def latest_runs(self, tenant_id: str, user_id: str, limit: int = 10) -> list[RunRecord]:
        with self._lock:
            mine = [r for (t, u, _), r in self.runs.items() if (t, u) == (tenant_id, user_id)]
            return sorted(mine, key=lambda r: (r.started_at, r.run_id), reverse=True)[:limit]

    # -- lease
    def acquire_lease(self, tenant_id: str, user_id: str, owner: str, ttl_seconds: float, now: datetime) -> Lease:
        with self._lock:
            current = self.leases.get((tenant_id, user_id))
            if current is not None and current.owner != owner and current.expires_at > now:
                raise LeaseHeldError("another worker is syncing this user", expires_at=current.expires_at)
            lease = Lease(tenant_id=tenant_id, user_id=user_id, owner=owner, expires_at=now + timedelta(seconds=ttl_seconds),
                          etag=self._ids("etag-"))
            self.leases[(tenant_id, user_id)] = lease
            return lease

    def release_lease(self, lease: Lease) -> None:
        with self._lock:
            current = self.leases.get((lease.tenant_id, lease.user_id))
            if current is None:
                return
            if current.etag != lease.etag:
                raise ConcurrencyError("the lease was taken over")
            del self.leases[(lease.tenant_id, lease.user_id)]

    # -- quarantine
    def put_quarantine(self, entry: QuarantineEntry) -> None:
        with self._lock:
            key = (entry.tenant_id, entry.user_id, entry.side, entry.record_id)
            current = self.quarantine.get(key)
            if current is not None:
                entry = entry.model_copy(update={"first_seen": current.first_seen, "attempts": current.attempts + 1})
            self.quarantine[key] = entry

    def list_quarantine(self, tenant_id: str, user_id: str) -> list[QuarantineEntry]:
        with self._lock:
            return [q for (t, u, _, _), q in sorted(self.quarantine.items()) if (t, u) == (tenant_id, user_id)]

    def clear_quarantine(self, tenant_id: str, user_id: str, side: str, record_id: str) -> None:
        with self._lock:
            self.quarantine.pop((tenant_id, user_id, side, record_id), None)
