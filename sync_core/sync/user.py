"""`sync_user`: one user's sync run, from lease to run record, over every enabled kind in turn.

    lease → run record (RUNNING) → each enabled kind of KINDS (its own run: sync/run.py and kinds/*/run.py)
    → run record (outcome, counts, progress, Graph requests) → lease released

The kinds share the lease (renewed before every chunk), the time budget and the run record. A kind that stops
at the budget ends the run as CONTINUING (the caller queues a continuation) and the kinds after it wait for
that continuation; every kind after the first still gets its first chunk (`Budget.new_part`).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sync_core.domain.errors import ConcurrencyError, ReconnectNeededError, SyncError
from sync_core.domain.models import Lease, QuarantineEntry, RunOutcome, RunRecord, UserSyncSettings
from sync_core.kinds.contacts.run import sync_contacts
from sync_core.kinds.tasks.run import is_task_entry, sync_tasks
from sync_core.ports import CrmPort, MicrosoftContactsPort, MicrosoftTasksPort, StateStore
from sync_core.sync.budget import Budget, Stint, carried_progress, run_progress
from sync_core.sync.run import RunPart, SyncOptions, utc_now
from sync_core.sync.tally import Tally

__all__ = ["KINDS", "SyncOptions", "sync_user", "utc_now"]


@dataclass(frozen=True)
class Mailbox:
    """The user's Microsoft ports for this run (tasks: None when the caller has none)."""

    contacts: MicrosoftContactsPort
    tasks: MicrosoftTasksPort | None


@dataclass(frozen=True)
class Kind:
    """A kind of item the run syncs: whether it is on for the user, its run, and which entries of the user's
    shared quarantine list are its own (None: those no other kind claims)."""

    name: str
    enabled: Callable[[UserSyncSettings, Mailbox], bool]
    run: Callable[[RunPart, Mailbox], None]
    owns: Callable[[QuarantineEntry], bool] | None = None


def _run_tasks(part: RunPart, mailbox: Mailbox) -> None:
    assert mailbox.tasks is not None  # enabled only with a tasks port
    sync_tasks(part, mailbox.tasks)


# In this order; progress is reported per kind (Progress: contacts, tasks).
KINDS: tuple[Kind, ...] = (
    Kind("contacts", lambda user, mailbox: True, lambda part, mailbox: sync_contacts(part, mailbox.contacts)),
    Kind("tasks", lambda user, mailbox: mailbox.tasks is not None and user.tasks_enabled, _run_tasks,
         owns=is_task_entry),
)


def sync_user(
    user: UserSyncSettings,
    crm: CrmPort,
    microsoft: MicrosoftContactsPort,
    state: StateStore,
    *,
    now: Callable[[], datetime] = utc_now,
    owner: str | None = None,
    options: SyncOptions = SyncOptions(),
    sleep: Callable[[float], None] = time.sleep,
    tasks: MicrosoftTasksPort | None = None,
    budget: Budget | None = None,
    task_chunk_size: int | None = None,
) -> RunRecord:
    """Run one sync of `user`: the contacts, then (with `tasks` and the user's task sync switched on) the tasks,
    in the same run; returns the finished run record (also saved).

    LeaseHeldError propagates (another worker is on it). Sync errors end the run as FAILED or
    RECONNECT_NEEDED with the error recorded; anything else is recorded as FAILED and re-raised.
    """
    budget = budget or Budget.unlimited()
    hold = _Hold(state, user, owner or f"sync-{uuid.uuid4().hex[:12]}", options.lease_seconds, now)
    try:
        carried = carried_progress(state, user.tenant_id, user.user_id) if budget.seconds is not None else None
        started = now()
        run = state.save_run(RunRecord(tenant_id=user.tenant_id, user_id=user.user_id, run_id=f"{started:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}",
                                       started_at=started, lease_expires_at=hold.lease.expires_at, progress=carried))
        tally = Tally(log_limit=options.engine.log_limit)
        mailbox = Mailbox(microsoft, tasks)
        # The kinds after the first run with the default engine and guard settings, and their own chunk size.
        later = SyncOptions(chunk_size=task_chunk_size or SyncOptions().chunk_size)
        stints: dict[str, Stint] = {}
        requests_before = _requests(microsoft) + _requests(tasks)
        outcome, error, unexpected = RunOutcome.SUCCEEDED, None, None
        try:
            for kind in [k for k in KINDS if k.enabled(user, mailbox)]:
                if any(s.stopped for s in stints.values()):
                    break  # the rest waits for the continuation
                if stints:
                    budget.new_part()
                part = RunPart(user, crm, state, later if stints else options, now, sleep, hold.renew, budget, tally,
                               _owner_test(kind))
                stints[kind.name] = part.stint
                kind.run(part, mailbox)
            if any(s.stopped for s in stints.values()):
                outcome = RunOutcome.CONTINUING
            elif tally.failures:
                outcome = RunOutcome.PARTIAL
        except ReconnectNeededError as exc:
            outcome, error = RunOutcome.RECONNECT_NEEDED, f"{type(exc).__name__}: {exc}"
        except SyncError as exc:
            outcome, error = RunOutcome.FAILED, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug: recorded for the settings page, then raised to the caller
            outcome, error, unexpected = RunOutcome.FAILED, f"{type(exc).__name__}: {exc}", exc
        finished = tally.fold_into(run).model_copy(update={
            "finished_at": now(), "outcome": outcome, "error": error[:500] if error else None,
            "graph_requests": _requests(microsoft) + _requests(tasks) - requests_before,
            "lease_expires_at": hold.lease.expires_at,
            "progress": run_progress(carried, stints.get("contacts", Stint()), stints.get("tasks"), outcome)})
        saved = state.save_run(finished)
        if unexpected is not None:
            raise unexpected
        return saved
    finally:
        try:
            state.release_lease(hold.lease)
        except ConcurrencyError:
            pass  # the lease ran out and another worker took it over: it is theirs to release


class _Hold:
    """The user's lease for the run: taken at the start, renewed before every chunk of every kind."""

    def __init__(self, state: StateStore, user: UserSyncSettings, owner: str, seconds: float,
                 now: Callable[[], datetime]) -> None:
        self.state, self.user, self.owner, self.seconds, self.now = state, user, owner, seconds, now
        self.lease: Lease = state.acquire_lease(user.tenant_id, user.user_id, owner, seconds, now())

    def renew(self) -> None:
        self.lease = self.state.acquire_lease(self.user.tenant_id, self.user.user_id, self.owner, self.seconds,
                                              self.now())


def _owner_test(kind: Kind) -> Callable[[QuarantineEntry], bool]:
    if kind.owns is not None:
        return kind.owns
    claimed = [k.owns for k in KINDS if k.owns is not None]
    return lambda entry: not any(owns(entry) for owns in claimed)


def _requests(microsoft: object) -> int:
    # Adapters that count their Graph requests expose `request_count`; others report 0.
    return int(getattr(microsoft, "request_count", 0))
