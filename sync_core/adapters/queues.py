"""The sync job queue: one Storage Queue message per user to sync.

Messages are JSON, base64-encoded on the wire because that is what the Functions queue trigger
expects by default (it base64-decodes every message before handing it to the function).
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import ExponentialRetry, QueueClient, TextBase64EncodePolicy
from pydantic import BaseModel, ConfigDict, ValidationError

from sync_core.adapters.queue_bulk import BulkSender
from sync_core.domain.errors import InvalidRecordError, StorageError

# Storage Queues have no batch send; sends in flight hide the round trips (the fan-out's bulk path is
# queue_bulk.BulkSender; this is the fallback when there is no account key to sign a SAS with).
_SEND_WORKERS = 16


class SyncJob(BaseModel):
    """One queued request to sync one user."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    user_id: str
    reason: str = ""

    def to_message(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_message(cls, text: str) -> SyncJob:
        """Parse a message body as the queue trigger hands it over (already base64-decoded)."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise InvalidRecordError("the sync queue message is not a sync job") from exc


class SyncQueue:
    """Sends sync jobs to one queue, creating the queue on first use (once per instance)."""

    def __init__(self, connection_string: str, queue_name: str, *, retries: int = 3) -> None:
        self.queue_name = queue_name
        # The SDK's default backoff starts at 15 s; a sync trigger should fail within seconds.
        retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=retries, random_jitter_range=1)
        self._client = QueueClient.from_connection_string(
            connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy(),
            retry_policy=retry, connection_timeout=5, read_timeout=30,
        )
        self._created = False
        self._lock = threading.Lock()
        self._bulk = BulkSender.for_client(self._client)

    def _ensure_queue(self) -> None:
        if self._created:
            return
        with self._lock:
            if self._created:
                return
            try:
                self._client.create_queue()
            except ResourceExistsError:
                self._created = True  # created earlier or by another worker: that is all we need
            except AzureError as exc:
                raise StorageError(f"cannot create queue {self.queue_name}: {type(exc).__name__}") from exc
            self._created = True

    def _send(self, job: SyncJob, delay_seconds: int = 0) -> None:
        try:
            self._client.send_message(job.to_message(), visibility_timeout=delay_seconds or None)
        except AzureError as exc:
            raise StorageError(f"cannot send to queue {self.queue_name}: {type(exc).__name__}") from exc

    def enqueue_user(self, tenant_id: str, user_id: str, reason: str, *, delay_seconds: int = 0) -> SyncJob:
        """One job; with `delay_seconds` it becomes visible to workers only then (at most 7 days)."""
        job = SyncJob(tenant_id=tenant_id, user_id=user_id, reason=reason)
        self._ensure_queue()
        self._send(job, delay_seconds)
        return job

    def enqueue_many(self, jobs: Iterable[SyncJob]) -> int:
        """Send one message per distinct (tenant, user), keeping the first reason; returns how many
        were sent. A user listed twice would only be synced twice for nothing. `jobs` is consumed as
        the sends go, so a caller reading its users page by page overlaps the reads with the sends."""
        seen: set[tuple[str, str]] = set()

        def distinct() -> Iterator[SyncJob]:
            for job in jobs:
                if (job.tenant_id, job.user_id) not in seen:
                    seen.add((job.tenant_id, job.user_id))
                    yield job

        self._ensure_queue()
        if self._bulk is not None:
            return self._bulk.send_all(job.to_message() for job in distinct())
        with ThreadPoolExecutor(max_workers=_SEND_WORKERS) as pool:
            # list() so the first failed send raises here instead of being dropped
            return len(list(pool.map(self._send, distinct())))

    def close(self) -> None:
        if self._bulk is not None:
            self._bulk.close()
        self._client.close()
