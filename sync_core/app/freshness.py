"""What keeps every user fresh without anyone pressing a button: the timer tick and the queue worker.

- tick (every 5 minutes): enqueue one sync per connected user (no Graph call), renew subscriptions
  expiring within 24 hours (and create owed ones), and drop used launch nonces that have expired.
  Each step runs even when an earlier one failed.
- run_job (queue trigger): the user's sync through jobs.handle_sync_message, then any subscription
  of that user that is owed or due (one storage query; Graph only when something is owed).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from sync_core.app import jobs, subscriptions
from sync_core.adapters.queues import SyncJob
from sync_core.app.services import Services
from sync_core.domain.connections import ConnectionStatus
from sync_core.domain.errors import SyncError
from sync_core.app.subscriptions import RENEW_WITHIN, contacts_path
from sync_core.domain.subscriptions import Kind, Subscription

log = logging.getLogger("sync_core.app.freshness")

MAX_MESSAGE_BYTES = 16 * 1024


@dataclass
class TickReport(subscriptions.Report):
    """The subscriptions' report of the tick, with what the tick's other steps did."""

    enqueued: int = 0
    nonces_purged: int = 0


def tick(services: Services) -> TickReport:
    report = TickReport()
    try:
        report.enqueued = jobs.fan_out(services)
    except SyncError as exc:
        report.failed.append(f"fan-out: {type(exc).__name__}")
        log.error("timer fan-out failed (%s)", type(exc).__name__,
                  extra={"event": "fan_out_failed", "error": type(exc).__name__})
    try:
        renewed = subscriptions.renew_due(services)
        report.renewed, report.created = renewed.renewed, renewed.created
        report.deleted, report.owed = renewed.deleted, renewed.owed
        report.failed.extend(renewed.failed)
    except SyncError as exc:
        report.failed.append(f"renewals: {type(exc).__name__}")
        log.error("subscription renewal failed (%s)", type(exc).__name__,
                  extra={"event": "renew_failed", "error": type(exc).__name__})
    try:
        report.nonces_purged = services.nonces.purge_expired()
    except SyncError as exc:
        report.failed.append(f"nonces: {type(exc).__name__}")
    return report


def parse_job(body: bytes | str) -> SyncJob | None:
    """The queue message as a sync job, or None when it can never be one (dropped, not retried)."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_MESSAGE_BYTES:
        return None
    try:
        return SyncJob.model_validate_json(raw)
    except ValidationError:
        return None


def settle_subscriptions(services: Services, tenant_id: str, user_id: str) -> str:
    """After a sync: create what is missing or owed, renew what is due, and follow the contact folder
    when the sync had to make a new one (the old subscription watches a folder that is gone).
    Returns what happened, in a word; storage only (two reads) when nothing is to be done."""
    connection = services.connections.get(tenant_id, user_id)
    if connection is None or connection.status is not ConnectionStatus.CONNECTED:
        return "not connected"
    records = services.subscriptions.for_user(tenant_id, user_id)
    tasks_on = connection.settings.tasks_enabled
    missing = Kind.CONTACTS not in records or tasks_on != (Kind.TASKS in records)
    folder_id = services.state.get_cursor(tenant_id, user_id).folder_id
    soon = datetime.now(UTC) + RENEW_WITHIN
    work: list[tuple[Subscription, bool]] = []
    for record in records.values():
        moved = (record.kind is Kind.CONTACTS and folder_id is not None and not record.owed
                 and record.resource != contacts_path(folder_id))
        if record.owed or record.expires_at < soon or moved:
            work.append((record, moved))
    if not missing and not work:
        return "nothing due"
    session = services.graph_session_for(tenant_id, user_id)
    try:
        if missing:
            subscriptions.subscribe_user(services, session, connection.settings)
            return "subscribed"
        for record, recreate in work:
            subscriptions.refresh(services, session, record, recreate=recreate)
        return "refreshed"
    finally:
        session.close()


def run_job(services: Services, body: bytes | str) -> None:
    job = parse_job(body)
    if job is None:
        log.warning("queue message dropped: not a sync job", extra={"event": "bad_message"})
        return
    jobs.handle_sync_message(services, job.model_dump())
    tenant_id, user_id = job.tenant_id, job.user_id
    try:
        settle_subscriptions(services, tenant_id, user_id)
    except SyncError as exc:
        # The sync itself went through; the timer retries the subscriptions.
        log.warning("subscriptions of %s not settled after sync (%s: %s)", user_id, type(exc).__name__, exc,
                    extra={"event": "settle_failed", "tenant": tenant_id, "user": user_id, "error": type(exc).__name__})
