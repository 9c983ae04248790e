"""Moves the sync state of the previous version into the per-tenant tables.

The previous version kept links, cursors, runs, leases and quarantine in synclinks, synccursors,
syncruns, syncleases and syncquarantine with PartitionKey = the user id alone (and "{user}|tasks...",
for the task sync's scopes). User ids repeat across CRM tenants, so that key mixed two people's state.
state_tables now keeps them in user* tables keyed by (tenant, user).

A legacy partition is moved when exactly one tenant has a connection row for its user id: that
person's state. When several tenants have one, the rows are already a mix of two people's state (the
very failure this fixes): they are left where they are and reported, and each of those users starts
afresh (a first sync pairs the items it finds by our tag, so nothing is created twice). A partition
whose user has no connection anywhere is reported as orphaned and left alone too.

Moving is copy-then-delete, 100 rows per transaction: running it again after a crash copies the rows
not yet deleted once more (an upsert of the same row) and deletes them, so it is idempotent and
resumable. Leases are not copied: they only say who syncs right now, and they expire.
`migrate_user` does the same for one user, on first access (the queue worker, before a sync).
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.state import CURSOR_ROW, CURSORS, LEASES, LEGACY_TABLES, state_partition
from sync_core.adapters.tables.common import Entity, NameFunction, Op, RequestCounter, Table, storage_call
from sync_core.domain.errors import NotFoundError, SyncError
from sync_core.ports import ConnectionStore

log = logging.getLogger("sync_core.adapters.tables.state_migration")

TASK_SCOPE = "|tasks"
_CHUNK = Table.MAX_BATCH


def legacy_user_of(partition: str) -> str:
    """The user id of a legacy partition: "{user}", "{user}|tasks" or "{user}|tasks|{target}"."""
    head, marker, rest = partition.rpartition(TASK_SCOPE)
    if marker and (rest == "" or (rest.startswith("|") and "|" not in rest[1:])):
        return head
    return partition


@dataclass
class MigrationReport:
    moved: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # rows per legacy table
    users: set[tuple[str, str]] = field(default_factory=set)  # (tenant, user) whose state moved
    ambiguous: dict[str, list[str]] = field(default_factory=dict)  # user id -> the tenants that have it
    orphaned: set[str] = field(default_factory=set)  # user ids with no connection in any tenant

    def as_dict(self) -> dict[str, Any]:
        return {"moved_rows": dict(sorted(self.moved.items())), "users_moved": len(self.users),
                "ambiguous": {u: t for u, t in sorted(self.ambiguous.items())},
                "orphaned": sorted(self.orphaned)}


class StateMigration:
    """Legacy tables → per-tenant tables; `connections` says which tenants have each user id."""

    def __init__(self, service: TableServiceClient, name: NameFunction, connections: ConnectionStore,
                 counter: RequestCounter | None = None) -> None:
        self._service = service
        self._name = name
        self._counter = counter or RequestCounter()
        self._connections = connections

    def _all_owners(self) -> dict[str, list[str]]:
        owners: dict[str, set[str]] = defaultdict(set)
        for tenant_id, user_id in self._connections.iter_keys():
            owners[user_id].add(tenant_id)
        return {user: sorted(tenants) for user, tenants in owners.items()}

    def _legacy_rows(self, table: str, partitions: Iterable[str] | None) -> Iterator[Mapping[str, Any]]:
        """Rows of a legacy table (all, or those of some partitions), without creating the table."""
        client = self._service.get_table_client(self._name(LEGACY_TABLES[table]))
        filters = [("PartitionKey ge @pk", {"pk": ""})] if partitions is None else \
            [("PartitionKey eq @pk", {"pk": p}) for p in partitions]
        for filter_, parameters in filters:
            try:
                with storage_call(f"read legacy {table}"):
                    pages = client.query_entities(filter_, parameters=parameters, results_per_page=1000).by_page()
                    for page in pages:
                        self._counter.add("read")
                        yield from page
            except NotFoundError:
                return  # no legacy table: nothing was ever written by the previous version

    def run(self, *, only_user: tuple[str, str] | None = None) -> MigrationReport:
        """Move every legacy partition (or, with only_user=(tenant, user), that user's) that belongs to
        exactly one tenant."""
        report = MigrationReport()
        if only_user is None:
            owners = self._all_owners()
            partitions: list[str] | None = None
        else:
            tenant, user = only_user
            owners = {user: self._connections.tenants_of(user)}
            partitions = [user, f"{user}{TASK_SCOPE}", *(f"{user}{TASK_SCOPE}|{t}" for t in ("todo", "calendar"))]
        for table in LEGACY_TABLES:
            target = Table(self._service, self._name(table), self._counter)
            legacy = Table(self._service, self._name(LEGACY_TABLES[table]), self._counter)
            chunk: list[Mapping[str, Any]] = []
            for row in self._legacy_rows(table, partitions):
                if chunk and (chunk[0]["PartitionKey"] != row["PartitionKey"] or len(chunk) == _CHUNK):
                    self._move(table, target, legacy, chunk, owners, report)
                    chunk = []
                chunk.append(row)
            if chunk:
                self._move(table, target, legacy, chunk, owners, report)
        if report.users or report.ambiguous:
            log.info("legacy state migrated", extra={"event": "state_migration", **report.as_dict()})
        return report

    def _move(self, table: str, target: Table, legacy: Table, rows: list[Mapping[str, Any]],
              owners: Mapping[str, list[str]], report: MigrationReport) -> None:
        scope = str(rows[0]["PartitionKey"])
        user = legacy_user_of(scope)
        tenants = owners.get(user, [])
        if len(tenants) != 1:
            if tenants:
                report.ambiguous[user] = tenants
            else:
                report.orphaned.add(user)
            return
        tenant = tenants[0]
        if table != LEASES:
            target.transact([Op("upsert", _moved(row, tenant, scope)) for row in rows])
        deletes = [Op("delete", {"PartitionKey": scope, "RowKey": row["RowKey"]}) for row in rows]
        try:
            legacy.transact(deletes)
        except SyncError:
            for op in deletes:  # another migrator deleted some of them meanwhile: the rest one by one
                legacy.delete(scope, str(op.entity["RowKey"]))
        report.moved[LEGACY_TABLES[table]] += len(rows)
        report.users.add((tenant, user))


def _moved(row: Mapping[str, Any], tenant: str, scope: str) -> Entity:
    entity: Entity = {k: v for k, v in row.items() if k not in ("PartitionKey", "etag", "Timestamp")}
    entity.update({"PartitionKey": state_partition(tenant, scope), "TenantId": tenant, "UserId": scope})
    return entity


_checked: set[tuple[str, str, str]] = set()
_checked_lock = threading.Lock()


def migrate_user(service: TableServiceClient, name: NameFunction, connections: ConnectionStore, tenant_id: str,
                 user_id: str, counter: RequestCounter | None = None) -> MigrationReport | None:
    """On first access (once per process and user): move this user's legacy rows when the previous
    version left a cursor for them. One point read when there is nothing to move."""
    key = (name(CURSORS), tenant_id, user_id)
    with _checked_lock:
        if key in _checked:
            return None
    client = service.get_table_client(name(LEGACY_TABLES[CURSORS]))
    try:
        with storage_call("read legacy cursor"):
            client.get_entity(user_id, CURSOR_ROW)
        found = True
    except NotFoundError:  # no legacy table, or no cursor of this user in it
        found = False
    report = StateMigration(service, name, connections, counter).run(only_user=(tenant_id, user_id)) if found else None
    with _checked_lock:
        _checked.add(key)
    return report
