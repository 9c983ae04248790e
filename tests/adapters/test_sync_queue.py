"""SyncQueue sends one base64-encoded JSON message per user, as the Functions queue trigger
expects by default (against the session's Azurite)."""
from __future__ import annotations

import base64
import json

import pytest
from azure.storage.queue import QueueClient

from sync_core.adapters.queues import SyncJob, SyncQueue
from sync_core.domain.errors import InvalidRecordError, StorageError
from sync_core.settings import load_settings


def raw_bodies(connection_string: str, queue_name: str) -> list[str]:
    """Message bodies exactly as stored on the queue (no decoding policy)."""
    client = QueueClient.from_connection_string(connection_string, queue_name)
    bodies = [m.content for m in client.receive_messages(messages_per_page=32, visibility_timeout=30)]
    client.close()
    return bodies


def test_enqueue_user_sends_base64_json(app_env: dict[str, str]) -> None:
    settings = load_settings(app_env)
    queue = SyncQueue(settings.storage_connection_string, settings.sync_queue_name)
    job = queue.enqueue_user("tenant-1", "user-1", "webhook")
    assert job == SyncJob(tenant_id="tenant-1", user_id="user-1", reason="webhook")

    [body] = raw_bodies(settings.storage_connection_string, settings.sync_queue_name)
    decoded = base64.b64decode(body, validate=True).decode()
    assert json.loads(decoded) == {"tenant_id": "tenant-1", "user_id": "user-1", "reason": "webhook"}
    assert SyncJob.from_message(decoded) == job


def test_enqueue_many_sends_each_user_once(app_env: dict[str, str]) -> None:
    settings = load_settings(app_env)
    jobs = [SyncJob(tenant_id="t", user_id=f"u{i % 7}", reason=f"timer-{i}") for i in range(12)]
    jobs.append(SyncJob(tenant_id="other", user_id="u1", reason="timer"))
    # A second instance finds the queue already there: creating it again is not an error.
    SyncQueue(settings.storage_connection_string, settings.sync_queue_name).enqueue_many([])
    queue = SyncQueue(settings.storage_connection_string, settings.sync_queue_name)
    assert queue.enqueue_many(jobs) == 8
    assert queue.enqueue_user("t", "u0", "again").user_id == "u0"

    received = [SyncJob.from_message(base64.b64decode(b).decode())
                for b in raw_bodies(settings.storage_connection_string, settings.sync_queue_name)]
    assert sorted((j.tenant_id, j.user_id, j.reason) for j in received) == sorted(
        [("t", f"u{i}", f"timer-{i}") for i in range(7)] + [("other", "u1", "timer"), ("t", "u0", "again")])


def test_bad_messages_and_dead_storage_become_sync_errors(app_env: dict[str, str]) -> None:
    with pytest.raises(InvalidRecordError):
        SyncJob.from_message('{"user_id": "u1"}')
    with pytest.raises(InvalidRecordError):
        SyncJob.from_message("not json")
    dead = app_env["AzureWebJobsStorage"].replace(
        app_env["AzureWebJobsStorage"].split("QueueEndpoint=http://127.0.0.1:")[1].split("/")[0], "9")
    with pytest.raises(StorageError):
        SyncQueue(dead, "jobs", retries=0).enqueue_user("t", "u", "r")


def test_enqueue_many_without_an_account_key_sends_through_the_sdk(app_env: dict[str, str]) -> None:
    """Identity- or SAS-based storage: no key to sign the bulk path's SAS with, the SDK sends each job."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.queue import AccountSasPermissions, ResourceTypes, generate_account_sas

    settings = load_settings(app_env)
    parts = dict(p.split("=", 1) for p in settings.storage_connection_string.split(";") if p)
    sas = generate_account_sas(parts["AccountName"], parts["AccountKey"],
                               ResourceTypes(container=True, object=True, service=True),
                               AccountSasPermissions(read=True, write=True, add=True, create=True, process=True, list=True),
                               expiry=datetime.now(UTC) + timedelta(hours=1))
    keyless = f"QueueEndpoint={parts['QueueEndpoint']};SharedAccessSignature={sas}"
    queue = SyncQueue(keyless, settings.sync_queue_name)
    assert queue._bulk is None  # noqa: SLF001
    assert queue.enqueue_many([SyncJob(tenant_id="t", user_id=f"u{i}", reason="timer") for i in range(3)]) == 3
    received = [SyncJob.from_message(base64.b64decode(b).decode())
                for b in raw_bodies(settings.storage_connection_string, settings.sync_queue_name)]
    assert sorted(j.user_id for j in received) == ["u0", "u1", "u2"]
    queue.close()
