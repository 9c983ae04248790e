"""Table Storage plumbing shared by the Table adapters.

Every storage call of an adapter goes through `Table`, which
- creates its table once per process (on first use, not at import or construction),
- counts each request it sends (reads and writes apart), so a benchmark can show that a sync's
  storage reads do not grow with the number of contacts,
- translates azure.core exceptions into sync_core.domain.errors at this boundary (storage_errors.py),
  so nothing above the adapters ever sees an SDK exception.

Keys and stored values: codec.py (re-exported here, where the adapters have always found them).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from azure.core import MatchConditions
from azure.data.tables import TableClient, TableEntity, TableServiceClient, UpdateMode

from sync_core.adapters.tables.codec import (
    as_int, etag_of, from_iso, int64, iso, key_part, prefix_upper_bound, unescape_key_part,
)
from sync_core.adapters.tables.storage_errors import failed_op_index, storage_call, translate
from sync_core.domain.errors import AlreadyExistsError, InvalidRecordError, NotFoundError

if TYPE_CHECKING:
    from sync_core.settings import AppSettings


Entity = dict[str, Any]
NameFunction = Callable[[str], str]

# Parallel point reads: enough to hide latency, few enough for a 2-core Functions worker.
_READ_WORKERS = 8
_KEYS_PER_QUERY = 14


class RequestCounter:
    """Storage requests sent by the adapters that share it (thread safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads = 0
        self._writes = 0

    def add(self, kind: str) -> None:
        with self._lock:
            if kind == "read":
                self._reads += 1
            else:
                self._writes += 1

    @property
    def reads(self) -> int:
        with self._lock:
            return self._reads

    @property
    def writes(self) -> int:
        with self._lock:
            return self._writes

    @property
    def total(self) -> int:
        with self._lock:
            return self._reads + self._writes

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"reads": self._reads, "writes": self._writes}

    def reset(self) -> None:
        with self._lock:
            self._reads = 0
            self._writes = 0


def connect(service: TableServiceClient | str) -> TableServiceClient:
    """A TableServiceClient from a connection string, with bounded retries so a dead storage
    account fails a run within seconds instead of minutes."""
    if isinstance(service, TableServiceClient):
        return service
    return TableServiceClient.from_connection_string(
        service, retry_total=3, retry_backoff_factor=0.4, connection_timeout=5, read_timeout=30
    )


def _if_match(etag: str | None) -> dict[str, Any]:
    """The SDK's arguments for If-Match `etag`; none (unconditional) when etag is None."""
    if etag is None:
        return {}
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}

# Tables known to exist, per storage endpoint: created once per process, not per adapter.
_created_tables: set[tuple[str, str]] = set()
_created_lock = threading.Lock()


@dataclass(frozen=True)
class Op:
    """One operation of an entity group transaction (all on one PartitionKey).

    kind: "create" (fails if present), "replace" (If-Match `etag`, or must exist when etag is
    None), "upsert" (replace or insert), "delete" (If-Match `etag`, or must exist when None).
    """

    kind: str
    entity: Entity
    etag: str | None = None

    def as_sdk(self) -> tuple[str, Entity, dict[str, Any]]:
        conditional = _if_match(self.etag)
        if self.kind == "create":
            return ("create", self.entity, {})
        if self.kind == "replace":
            return ("update", self.entity, {"mode": UpdateMode.REPLACE, **conditional})
        if self.kind == "upsert":
            return ("upsert", self.entity, {"mode": UpdateMode.REPLACE})
        if self.kind == "delete":
            keys = {"PartitionKey": self.entity["PartitionKey"], "RowKey": self.entity["RowKey"]}
            return ("delete", keys, conditional)
        raise ValueError(f"unknown table operation {self.kind!r}")


class Table:
    """One table: created on first use, every request counted and its errors translated."""

    MAX_BATCH = 100  # Table Storage's limit on operations per entity group transaction

    def __init__(self, service: TableServiceClient, name: str, counter: RequestCounter) -> None:
        self._service = service
        self.name = name
        self.counter = counter
        self._client: TableClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> TableClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._ensure_table()
                    self._client = self._service.get_table_client(self.name)
        return self._client

    def _ensure_table(self) -> None:
        key = (self._service.url, self.name)
        with _created_lock:
            if key in _created_tables:
                return
            self.counter.add("write")
            # Already there (another process, an earlier run) is exactly what we wanted.
            with suppress(AlreadyExistsError), storage_call(f"create table {self.name}"):
                self._service.create_table(self.name)
            _created_tables.add(key)

    def get(self, partition_key: str, row_key: str) -> TableEntity | None:
        """Point read; None when the entity does not exist."""
        client = self.client
        self.counter.add("read")
        try:
            with storage_call(f"read from {self.name}"):
                return client.get_entity(partition_key, row_key)
        except NotFoundError:
            return None

    def get_many(self, partition_key: str, row_keys: Iterable[str]) -> dict[str, TableEntity]:
        """The entities of these keys (missing keys are absent). Up to two keys are point reads;
        more go as OR-queries of 14 keys each (Table Storage allows 15 comparisons per filter),
        a few in parallel: a chunk of 500 ids costs 36 requests, not 500."""
        keys = list(dict.fromkeys(row_keys))
        if len(keys) <= 2:
            found = {key: self.get(partition_key, key) for key in keys}
            return {key: entity for key, entity in found.items() if entity is not None}
        groups = [keys[i:i + _KEYS_PER_QUERY] for i in range(0, len(keys), _KEYS_PER_QUERY)]

        def fetch(group: list[str]) -> list[TableEntity]:
            clauses = " or ".join(f"RowKey eq @k{i}" for i in range(len(group)))
            parameters: dict[str, Any] = {"pk": partition_key, **{f"k{i}": key for i, key in enumerate(group)}}
            return list(self.query(f"PartitionKey eq @pk and ( {clauses} )", parameters))  # spaces: the SDK splits on them

        if len(groups) == 1:
            pages = [fetch(groups[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(groups))) as pool:
                pages = list(pool.map(fetch, groups))
        return {str(entity["RowKey"]): entity for page in pages for entity in page}

    def query(
        self,
        filter_: str,
        parameters: Mapping[str, Any],
        *,
        page_size: int | None = None,
        max_items: int | None = None,
        select: Sequence[str] | None = None,
    ) -> Iterator[TableEntity]:
        """Lazily yield matches page by page (one counted request per page); stop after max_items."""
        client = self.client
        yielded = 0
        with storage_call(f"query {self.name}"):
            pages = client.query_entities(
                filter_, parameters=dict(parameters), results_per_page=page_size,
                select=list(select) if select else None,
            ).by_page()
            while True:
                try:
                    page = next(pages)  # a request only while the service returned a continuation
                except StopIteration:
                    return
                self.counter.add("read")
                for entity in page:
                    yield entity
                    yielded += 1
                    if max_items is not None and yielded >= max_items:
                        return

    def query_prefix(
        self, partition_key: str, prefix: str, *, after: str | None = None, max_items: int | None = None,
        extra_filter: str = "", extra_parameters: Mapping[str, Any] | None = None,
    ) -> Iterator[TableEntity]:
        """RowKeys starting with `prefix` (and greater than `after`), in RowKey order: a range
        query inside one partition, never a scan of other rows."""
        lower_op, lower = ("gt", after) if after is not None else ("ge", prefix)
        filter_ = f"PartitionKey eq @pk and RowKey {lower_op} @lo and RowKey lt @hi{extra_filter}"
        parameters = {"pk": partition_key, "lo": lower, "hi": prefix_upper_bound(prefix), **(extra_parameters or {})}
        page_size = min(max_items, 1000) if max_items else None
        return self.query(filter_, parameters, page_size=page_size, max_items=max_items)

    def create(self, entity: Entity) -> str:
        client = self.client
        self.counter.add("write")
        with storage_call(f"insert into {self.name}"):
            return str(client.create_entity(entity)["etag"])

    def replace(self, entity: Entity, etag: str | None) -> str:
        """Replace; If-Match `etag` when given (ConcurrencyError when stale)."""
        client = self.client
        self.counter.add("write")
        with storage_call(f"update {self.name}"):
            return str(client.update_entity(entity, mode=UpdateMode.REPLACE, **_if_match(etag))["etag"])

    def upsert(self, entity: Entity) -> str:
        client = self.client
        self.counter.add("write")
        with storage_call(f"upsert into {self.name}"):
            return str(client.upsert_entity(entity, mode=UpdateMode.REPLACE)["etag"])

    def delete(self, partition_key: str, row_key: str, etag: str | None = None) -> None:
        """Delete; a missing entity is not an error (the SDK answers 404 with success)."""
        client = self.client
        self.counter.add("write")
        with storage_call(f"delete from {self.name}"):
            client.delete_entity(partition_key, row_key, **_if_match(etag))

    def transact(self, ops: Sequence[Op]) -> list[str | None]:
        """Commit `ops` atomically (one entity group transaction): all or nothing.

        Returns the new ETag of each operation (None for deletes). A rejected operation raises the
        translated error with `failed_op_index(exc)` naming it; nothing of the batch is applied.
        """
        if not ops:
            return []
        if len(ops) > self.MAX_BATCH:
            raise InvalidRecordError(f"a transaction of {len(ops)} operations exceeds {self.MAX_BATCH}")
        client = self.client
        self.counter.add("write")
        with storage_call(f"transaction on {self.name}"):
            results = client.submit_transaction([op.as_sdk() for op in ops])
        return [None if op.kind == "delete" else _etag_or_none(meta) for op, meta in zip(ops, results)]


def _etag_or_none(meta: Mapping[str, Any]) -> str | None:
    etag = meta.get("etag")
    return str(etag) if etag else None


def same_name(base: str) -> str:
    """The default NameFunction: table names as they are (settings add a prefix)."""
    return base


class TableAdapter:
    """What every Table adapter starts from: a shared request counter, the service, and its tables'
    names passed through the settings' storage_name (so tests never share them)."""

    def __init__(
        self, service: TableServiceClient | str, name: NameFunction = same_name, *,
        counter: RequestCounter | None = None,
    ) -> None:
        self.counter = counter or RequestCounter()
        self._service = connect(service)
        self._name = name

    def _open(self, base_name: str) -> Table:
        return Table(self._service, self._name(base_name), self.counter)

    @classmethod
    def from_settings(cls, settings: AppSettings, counter: RequestCounter | None = None) -> Self:
        return cls(settings.storage_connection_string, settings.storage_name, counter=counter)
