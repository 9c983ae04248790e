"""Sync jobs: enqueue (coalescing), run one user's sync under the lease, fan out on the timer.

Coalescing, so a burst of webhooks and CRM edits never stacks up runs:
- a per-user flag row says whether a job is queued and whether more work arrived meanwhile;
- enqueue_sync sends a message only when none is queued (else it marks the user dirty);
- a worker that finds the user's lease held marks the user dirty and finishes the message;
- the worker holding the lease runs one more pass while the user is dirty;
- and in case that worker is dead (killed mid-run, its lease left to run out), one follow-up job is
  scheduled for the moment the lease expires, so the work is never left to wait for the next timer tick.

A job works within SYNC_RUN_BUDGET_SECONDS (issue 10), extra passes included: a run that stops at the budget
(CONTINUING) ends the job, which asks for a continuation through enqueue_sync, so it coalesces with a job
already queued (that one continues the sync just as well) instead of adding a second.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sync_core.adapters.queues import SyncJob
from sync_core.app.services import Services
from sync_core.sync.budget import Budget, chunk_size_for
from sync_core.domain.connections import Connection, ConnectionStatus
from sync_core.domain.errors import (
    AlreadyExistsError,
    ConcurrencyError,
    LeaseHeldError,
    ReconnectNeededError,
    StorageError,
)
from sync_core.domain.models import RunOutcome, RunRecord
from sync_core.domain.sync_flags import SyncFlags
from sync_core.sync.user import SyncOptions, sync_user
from sync_core.adapters.tables.state_migration import migrate_user

log = logging.getLogger("sync_core.app.jobs")

QUEUED_FRESH_SECONDS = 600  # a "queued" mark older than this is stale (message lost): send again
MAX_PASSES = 3
OWNER = f"{socket.gethostname()}:{os.getpid()}"
ABANDONED = "abandoned: the worker running it stopped before it finished; a later run took over"


def _update_flags(services: Services, tenant_id: str, user_id: str,
                  only_if: Callable[[SyncFlags], bool] | None = None, **change: Any) -> bool:
    """Apply `change` to the user's flags (ETag-checked, retried on races). `only_if(flags)` may veto
    the change; returns whether it was applied."""
    for _ in range(8):
        stored = services.flags.get(tenant_id, user_id)
        current = stored if stored is not None else SyncFlags(tenant_id, user_id)
        if only_if is not None and not only_if(current):
            return False
        try:
            services.flags.save(replace(current, **change))
            return True
        except (ConcurrencyError, AlreadyExistsError):
            continue
    raise ConcurrencyError(f"sync flags of user {user_id} kept changing")


def enqueue_sync(services: Services, tenant_id: str, user_id: str, reason: str) -> bool:
    """Ask for a sync of this user; returns False when it coalesced into a queued or running one."""
    now = time.time()

    def not_queued(flags: SyncFlags) -> bool:
        return not flags.queued or now - flags.queued_at > QUEUED_FRESH_SECONDS

    if _update_flags(services, tenant_id, user_id, only_if=not_queued, queued=True, queued_at=now, dirty=False):
        services.queue.enqueue_user(tenant_id, user_id, reason)
        log.info("sync enqueued (%s)", reason, extra={"event": "enqueue", "tenant": tenant_id, "user": user_id,
                                                      "reason": reason})
        return True
    _update_flags(services, tenant_id, user_id, dirty=True)
    log.info("sync already queued", extra={"event": "enqueue_coalesced", "tenant": tenant_id, "user": user_id, "reason": reason})
    return False


def fan_out(services: Services) -> int:
    """Timer: one job per connected user (batched sends); makes no Graph call."""
    now = time.time()
    allowed: dict[str, bool] = {}

    def paid(tenant_id: str) -> bool:
        if tenant_id not in allowed:
            allowed[tenant_id] = services.tenants.get(tenant_id).integration_allowed
        return allowed[tenant_id]

    # A generator: the sends start with the first page of connections instead of after the last.
    jobs = (SyncJob(tenant_id=t, user_id=u, reason="timer") for t, u in services.connections.iter_connected() if paid(t))
    sent = services.queue.enqueue_many(jobs)
    log.info("fan-out", extra={"event": "fan_out", "users": sent, "seconds": round(time.time() - now, 3)})
    return sent


def handle_sync_message(services: Services, body: dict[str, Any] | str) -> RunRecord | None:
    """The queue worker: run the user's sync (sync_user holds the per-user lease), with coalesced
    extra passes while more work arrived during the run."""
    job = SyncJob.from_message(body if isinstance(body, str) else SyncJob.model_validate(body).to_message())
    budget = job_budget(services)
    _update_flags(services, job.tenant_id, job.user_id, queued=False)
    run: RunRecord | None = None
    passes = 0
    for _ in range(MAX_PASSES):
        if passes and not budget.allows_another():
            enqueue_sync(services, job.tenant_id, job.user_id, "continuation")  # the extra pass, in a fresh job
            break
        _update_flags(services, job.tenant_id, job.user_id, dirty=False)
        try:
            run = run_user_sync(services, job.tenant_id, job.user_id, budget)
        except LeaseHeldError as exc:
            # Someone is syncing this user now: make them do one more pass instead of waiting here.
            _update_flags(services, job.tenant_id, job.user_id, dirty=True)
            log.info("sync coalesced", extra={"event": "coalesced", "tenant": job.tenant_id, "user": job.user_id, "reason": job.reason})
            _follow_lease(services, job, exc)
            return None
        passes += 1
        if run is not None and run.outcome is RunOutcome.CONTINUING:
            enqueue_sync(services, job.tenant_id, job.user_id, "continuation")
            break
        if run is None or run.outcome in (RunOutcome.RECONNECT_NEEDED, RunOutcome.FAILED):
            break
        flags = services.flags.get(job.tenant_id, job.user_id)
        if not (flags and flags.dirty):
            break
    log.info("sync job done", extra={"event": "job", "tenant": job.tenant_id, "user": job.user_id, "reason": job.reason, "passes": passes,
                                     "run_id": run.run_id if run else None,
                                     "outcome": run.outcome.value if run else "not_run"})
    return run


def _follow_lease(services: Services, job: SyncJob, held: LeaseHeldError) -> None:
    """A job for when the held lease runs out: a live holder's extra pass makes it a cheap no-op sync, a
    dead holder's work is picked up at the earliest moment it may be. At most one is waiting at a time: one
    that finds the lease renewed by a live holder schedules the next."""
    if held.expires_at is None:
        return
    expiry = held.expires_at.timestamp()

    def not_scheduled(flags: SyncFlags) -> bool:
        return (flags.follow_at or 0.0) <= time.time()

    if not _update_flags(services, job.tenant_id, job.user_id, only_if=not_scheduled, follow_at=expiry):
        return
    delay = max(1, math.ceil(expiry - time.time()) + 1)
    services.queue.enqueue_user(job.tenant_id, job.user_id, "lease_expiry", delay_seconds=delay)
    log.info("sync scheduled after the lease", extra={"event": "lease_follow", "tenant": job.tenant_id, "user": job.user_id,
                                                      "delay_seconds": delay})


def job_budget(services: Services) -> Budget:
    """The time budget of one queue job (SYNC_RUN_BUDGET_SECONDS), started now."""
    settings = services.settings
    size = chunk_size_for(SyncOptions().chunk_size, settings.sync_run_budget_seconds, settings.graph_rate_limit,
                          settings.graph_rate_window_seconds)
    return Budget(settings.sync_run_budget_seconds, chunk_cost=size)


def run_user_sync(services: Services, tenant_id: str, user_id: str, budget: Budget | None = None) -> RunRecord | None:
    """One sync of one user, recording its outcome on the connection. None when not connected."""
    connection = services.connections.get(tenant_id, user_id)
    if connection is None or connection.status is not ConnectionStatus.CONNECTED:
        return None
    if not services.tenants.get(tenant_id).integration_allowed:
        return None  # the tenant moved to the free plan: no Microsoft call
    # State the previous version kept under the user id alone moves to this (tenant, user) first.
    migrate_user(services.table_service, services.settings.storage_name, services.connections,
                 tenant_id, user_id, services.counter)
    session = services.graph_session_for(tenant_id, user_id)
    if budget is not None:
        budget.pacing = getattr(session, "pacer", None)  # the mailbox's pacer: how long the next chunk would be held back
    try:
        # One owner per run, not per process: a worker runs several queue messages at once, and two
        # runs of one user under the same owner would both "hold" the lease.
        limit, window = services.settings.graph_rate_limit, services.settings.graph_rate_window_seconds
        seconds = budget.seconds if budget is not None else None
        options = SyncOptions(chunk_size=chunk_size_for(SyncOptions().chunk_size, seconds, limit, window))
        run = sync_user(connection.settings, services.crm, services.contacts_for(session), services.state,
                        owner=f"{OWNER}:{uuid.uuid4().hex[:8]}", tasks=services.tasks_for(session, connection.settings),
                        options=options, budget=budget,
                        task_chunk_size=chunk_size_for(SyncOptions().chunk_size, seconds, limit, window))
    except ReconnectNeededError as exc:
        _record(services, connection, error=f"{exc} — reconnect on this page to resume syncing.",
                status=ConnectionStatus.RECONNECT_NEEDED)
        log.warning("reconnect needed", extra={"event": "reconnect_needed", "tenant": tenant_id, "user": user_id})
        return None
    finally:
        session.close()
    try:
        close_abandoned_runs(services, tenant_id, user_id, run)
    except StorageError as exc:  # housekeeping only: the next run closes them
        log.warning("abandoned runs not closed (%s)", type(exc).__name__,
                    extra={"event": "run_abandoned_failed", "tenant": tenant_id, "user": user_id, "run_id": run.run_id})
    if run.outcome is RunOutcome.RECONNECT_NEEDED:
        reason = run.error or "Microsoft no longer accepts the saved sign-in"
        _record(services, connection, run=run, error=f"{reason} — reconnect on this page to resume syncing.",
                status=ConnectionStatus.RECONNECT_NEEDED)
        log.warning("reconnect needed", extra={"event": "reconnect_needed", "tenant": tenant_id, "user": user_id, "run_id": run.run_id})
        return run
    ok = run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.PARTIAL, RunOutcome.CONTINUING)
    _record(services, connection, run=run, error=None if ok else (run.error or "the last sync failed; it will retry"))
    log.info("sync finished", extra={"event": "run", "tenant": tenant_id, "user": user_id, "run_id": run.run_id,
                                     "outcome": run.outcome.value, **run_figures(run)})
    return run


def run_figures(run: RunRecord) -> dict[str, Any]:
    """A run's counts for its log line: numbers only, never a record's content."""
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {"ms_created": run.microsoft.created, "ms_updated": run.microsoft.updated,
            "ms_deleted": run.microsoft.deleted, "crm_created": run.crm.created, "crm_updated": run.crm.updated,
            "errors": run.microsoft.errors + run.crm.errors, "conflicts": run.conflicts,
            "quarantined": run.quarantined, "graph_requests": run.graph_requests,
            "seconds": round(seconds, 3) if seconds is not None else None}


def close_abandoned_runs(services: Services, tenant_id: str, user_id: str, current: RunRecord) -> int:
    """Runs left "running" by a worker that died (killed, storage gone mid-run). `current` held the user's
    lease, so nobody was running the older ones any more: they are closed as failed, never left running."""
    closed = 0
    for run in services.state.latest_runs(tenant_id, user_id, 20):
        if run.outcome is not RunOutcome.RUNNING or run.run_id == current.run_id or run.started_at >= current.started_at:
            continue
        try:
            services.state.save_run(run.model_copy(update={"outcome": RunOutcome.FAILED, "error": ABANDONED,
                                                           "finished_at": current.started_at}))
        except ConcurrencyError:
            continue  # it finished after all, just now
        closed += 1
        log.warning("abandoned run closed", extra={"event": "run_abandoned", "tenant": tenant_id, "user": user_id, "run_id": run.run_id,
                                                   "by_run_id": current.run_id})
    return closed


def _record(services: Services, connection: Connection, *, run: RunRecord | None = None, error: str | None = None,
            status: ConnectionStatus | None = None) -> None:
    for _ in range(5):
        update: dict[str, Any] = {"last_error": error}
        if status is not None:
            update["status"] = status
        if run is not None:
            update["last_run_id"] = run.run_id
            if run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.PARTIAL):
                update["last_success_at"] = run.finished_at or datetime.now(UTC)
        try:
            services.connections.save(connection.model_copy(update=update))
            return
        except ConcurrencyError:
            fresh = services.connections.get(connection.tenant_id, connection.user_id)
            if fresh is None:
                return  # disconnected meanwhile
            connection = fresh
