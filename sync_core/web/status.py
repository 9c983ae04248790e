"""Section 1 of the settings page: what the user's connection is doing, in words.

Built from the stored Connection and the user's latest run record; the page shows exactly this,
so the status logic is testable without HTML.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sync_core.domain.connections import Connection, ConnectionStatus
from sync_core.domain.models import RunOutcome, RunRecord

AWAITING_FIRST_SYNC = "Awaiting first sync"

_OUTCOME_TEXT = {
    RunOutcome.RUNNING: "running now",
    RunOutcome.SUCCEEDED: "succeeded",
    RunOutcome.PARTIAL: "finished; some records could not be synced and will be retried",
    RunOutcome.FAILED: "failed; it will be retried automatically",
    RunOutcome.RECONNECT_NEEDED: "stopped: Microsoft needs you to sign in again",
    RunOutcome.CONTINUING: "paused at its time limit; it continues by itself",
}


@dataclass(frozen=True)
class StatusView:
    state: str  # a ConnectionStatus value
    headline: str
    account: str | None = None
    problem: str | None = None
    fix: str | None = None
    last_success: str | None = None  # formatted in the user's time zone; None: awaiting first sync
    last_run: str | None = None  # the latest run's outcome, in words
    counts: list[tuple[str, int]] = field(default_factory=list)
    progress: str | None = None  # a sync that runs over several invocations, while it continues
    can_sync_now: bool = False
    can_connect: bool = True

    @property
    def last_success_text(self) -> str:
        return self.last_success or AWAITING_FIRST_SYNC


def format_time(moment: datetime, time_zone: str) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    local = aware.astimezone(ZoneInfo(time_zone))
    return f"{local:%d %b %Y, %H:%M} ({time_zone})"


def run_counts(run: RunRecord) -> list[tuple[str, int]]:
    return [
        ("Created in Microsoft 365", run.microsoft.created),
        ("Updated in Microsoft 365", run.microsoft.updated),
        ("Deleted in Microsoft 365", run.microsoft.deleted),
        ("Created in the CRM", run.crm.created),
        ("Updated in the CRM", run.crm.updated),
        ("Conflicts (the CRM won)", run.conflicts),
        ("Errors", run.microsoft.errors + run.crm.errors),
        ("Waiting to be retried", run.quarantined),
    ]


def progress_text(run: RunRecord) -> str | None:
    """"Continuing: 2,000 of 5,000 contacts synced so far" while a large sync goes on over several runs."""
    if run.outcome not in (RunOutcome.CONTINUING, RunOutcome.RUNNING) or run.progress is None:
        return None  # a running run has progress when it continues an earlier one
    p = run.progress
    parts = [f"{p.contacts_done:,} of {p.contacts_total:,} contacts"] if p.contacts_total or not p.tasks_total else []
    if p.tasks_total:
        parts.append(f"{p.tasks_done:,} of {p.tasks_total:,} tasks")
    return f"Continuing: {' and '.join(parts)} synced so far"


def status_view(connection: Connection | None, latest_run: RunRecord | None) -> StatusView:
    if connection is None or connection.status is ConnectionStatus.NOT_CONNECTED:
        return StatusView(state=ConnectionStatus.NOT_CONNECTED.value,
                          headline="Not connected to Microsoft 365",
                          fix="Connect to Microsoft to sync your CRM contacts with Outlook.")
    zone = connection.settings.time_zone
    last_success = format_time(connection.last_success_at, zone) if connection.last_success_at else None
    last_run = None
    progress = None
    counts: list[tuple[str, int]] = []
    if latest_run is not None:
        progress = progress_text(latest_run)
        when = format_time(latest_run.finished_at or latest_run.started_at, zone)
        last_run = f"{when}: {_OUTCOME_TEXT.get(latest_run.outcome, latest_run.outcome.value)}"
        counts = run_counts(latest_run)
    account = connection.ms_account or "your Microsoft account"
    if connection.status is ConnectionStatus.RECONNECT_NEEDED:
        return StatusView(
            state=connection.status.value, headline=f"Syncing with {account} has stopped",
            account=connection.ms_account,
            problem=connection.last_error or "Microsoft no longer accepts the saved sign-in.",
            fix="Reconnect to Microsoft to sign in again; syncing resumes where it stopped.",
            last_success=last_success, last_run=last_run, counts=counts, progress=progress, can_sync_now=False,
            can_connect=True,
        )
    problem = connection.last_error
    return StatusView(
        state=connection.status.value, headline=f"Connected to {account}", account=connection.ms_account,
        problem=problem,
        fix="The next sync retries automatically; use Sync now to try at once." if problem else None,
        last_success=last_success, last_run=last_run, counts=counts, progress=progress, can_sync_now=True,
        can_connect=False,
    )
