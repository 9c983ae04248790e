"""Reachability checks behind GET /api/health."""
from __future__ import annotations

import time
from typing import NamedTuple

import httpx
from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient

from sync_core.settings import AppSettings


class Check(NamedTuple):
    """One reachability check: whether the service answered, what it said, and how long it took."""

    ok: bool
    detail: str
    millis: int


class HealthReport(NamedTuple):
    storage: Check
    graph: Check

    @property
    def ok(self) -> bool:
        """Healthy enough to serve: Graph may be down (syncs wait for it), storage may not."""
        return self.storage.ok

    def to_dict(self) -> dict[str, object]:
        return {
            "status": "ok" if self.storage.ok and self.graph.ok else "degraded",
            "storage": self.storage._asdict(),
            "graph": self.graph._asdict(),
        }


def check_storage(settings: AppSettings, timeout: float = 3.0) -> Check:
    started = time.monotonic()
    try:
        service = TableServiceClient.from_connection_string(
            settings.storage_connection_string, connection_timeout=timeout, read_timeout=timeout,
            retry_total=0,
        )
        next(iter(service.list_tables(results_per_page=1)), None)
        return Check(True, "table service answered", _ms(started))
    except (AzureError, ValueError) as exc:
        return Check(False, f"table service unreachable: {type(exc).__name__}", _ms(started))


def check_graph(settings: AppSettings, timeout: float = 3.0) -> Check:
    """Graph counts as reachable when it answers HTTP at all (401 without a token is expected)."""
    started = time.monotonic()
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.get(f"{settings.graph_base_url}/me")
        return Check(True, f"graph answered HTTP {response.status_code}", _ms(started))
    except httpx.HTTPError as exc:
        return Check(False, f"graph unreachable: {type(exc).__name__}", _ms(started))


def check_health(settings: AppSettings) -> HealthReport:
    return HealthReport(storage=check_storage(settings), graph=check_graph(settings))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
