"""What an operator needs at 3 a.m.: every user's sync health in one table, and the poison queue.

`user_statuses` reads, per connection: its state, last success, last error, the latest run (and any run
left "running" after its lease ran out: its worker died), the quarantined records with their reasons, and
when each change-notification subscription expires. `poison_report` counts the sync queue's poison
messages and names the users they were for. Storage only: no Microsoft call, no personal data beyond ids.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from sync_core.app.services import Services
from sync_core.domain.connections import Connection
from sync_core.domain.errors import StorageError
from sync_core.domain.models import QuarantineEntry, RunOutcome, RunRecord, UserSyncSettings

POISON_SUFFIX = "-poison"
POISON_PEEK = 32  # Storage Queues peek at most 32 messages


@dataclass(frozen=True)
class UserStatus:
    tenant_id: str
    user_id: str
    state: str  # a ConnectionStatus value
    mode: str
    last_success_at: datetime | None
    last_error: str | None
    latest_run: RunRecord | None
    abandoned_runs: list[RunRecord]  # still "running" after their lease expired: the worker died
    quarantined: list[QuarantineEntry]
    subscriptions: dict[str, datetime | None]  # kind → expiry (None: owed, not created yet)


@dataclass(frozen=True)
class PoisonReport:
    queue: str
    depth: int
    users: list[str] = field(default_factory=list)  # "tenant/user" of the peeked messages, when readable
    unreadable: int = 0  # peeked messages that are not sync jobs (wrong encoding, not JSON)


def iter_connections(services: Services) -> Iterator[Connection]:
    """Every stored connection, whatever its state (a partition scan of a small table)."""
    for tenant_id, user_id in services.connections.iter_keys():
        connection = services.connections.get(tenant_id, user_id)
        if connection is not None:
            yield connection


def abandoned(runs: list[RunRecord], now: datetime) -> list[RunRecord]:
    """Runs still marked running whose lease has run out: nobody is working on them any more."""
    return [r for r in runs if r.outcome is RunOutcome.RUNNING and r.lease_expires_at is not None
            and _aware(r.lease_expires_at) <= now]


def user_status(services: Services, connection: Connection, *, runs: int = 20,
                now: datetime | None = None) -> UserStatus:
    now = now or datetime.now(UTC)
    recent = services.state.latest_runs(connection.tenant_id, connection.user_id, runs)
    subs = services.subscriptions.for_user(connection.tenant_id, connection.user_id)
    return UserStatus(
        tenant_id=connection.tenant_id, user_id=connection.user_id, state=connection.status.value,
        mode=_mode(connection.settings), last_success_at=connection.last_success_at,
        last_error=connection.last_error, latest_run=recent[0] if recent else None,
        abandoned_runs=abandoned(recent, now),
        quarantined=services.state.list_quarantine(connection.tenant_id, connection.user_id),
        subscriptions={kind.value: (None if record.owed else record.expires_at) for kind, record in subs.items()},
    )


def user_statuses(services: Services, user_id: str | None = None) -> list[UserStatus]:
    connections = [c for c in iter_connections(services) if user_id is None or c.user_id == user_id]
    return [user_status(services, c) for c in sorted(connections, key=lambda c: (c.tenant_id, c.user_id))]


def poison_report(services: Services) -> PoisonReport:
    name = services.settings.sync_queue_name + POISON_SUFFIX
    client = QueueClient.from_connection_string(services.settings.storage_connection_string, name,
                                                retry_total=2, connection_timeout=5, read_timeout=15)
    try:
        try:
            depth = int(client.get_queue_properties().approximate_message_count or 0)
            peeked = client.peek_messages(max_messages=POISON_PEEK) if depth else []
        except ResourceNotFoundError:
            return PoisonReport(queue=name, depth=0)
        except AzureError as exc:
            raise StorageError(f"cannot read queue {name}: {type(exc).__name__}") from exc
        users: list[str] = []
        unreadable = 0
        for message in peeked:
            job = _job_of(str(message.content))
            if job is None:
                unreadable += 1
            else:
                users.append(job)
        return PoisonReport(queue=name, depth=depth, users=users, unreadable=unreadable)
    finally:
        client.close()


def _job_of(content: str) -> str | None:
    """"tenant/user" of a poison message: the app sends base64 JSON, a stray sender maybe plain JSON."""
    candidates = [content]
    try:
        candidates.insert(0, base64.b64decode(content.encode("ascii"), validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeError, ValueError):
        pass
    for text in candidates:
        try:
            body = json.loads(text)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("tenant_id"), str) and isinstance(body.get("user_id"), str):
            return f"{body['tenant_id']}/{body['user_id']}"
    return None


# -- rendering -----------------------------------------------------------------------------------------

def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _mode(settings: UserSyncSettings) -> str:
    tasks = f"+tasks:{settings.task_target.value}" if settings.tasks_enabled else ""
    return f"{settings.mode.value}{tasks}"


def _when(moment: datetime | None) -> str:
    return _aware(moment).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else "-"


def _one_line(text: str | None, width: int) -> str:
    if not text:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render_table(statuses: list[UserStatus], poison: PoisonReport | None) -> str:
    headers = ["tenant", "user", "state", "mode", "last success", "last run", "last error", "quarantined",
               "subscriptions"]
    rows: list[list[str]] = []
    for s in statuses:
        run = s.latest_run
        last_run = f"{run.outcome.value} {_when(run.finished_at or run.started_at)}" if run else "-"
        if s.abandoned_runs:
            last_run += f" ({len(s.abandoned_runs)} abandoned)"
        subs = ", ".join(f"{kind} {'owed' if expiry is None else 'until ' + _when(expiry)}"
                         for kind, expiry in sorted(s.subscriptions.items())) or "none"
        rows.append([s.tenant_id, s.user_id, s.state, s.mode, _when(s.last_success_at), last_run,
                     _one_line(s.last_error, 60), str(len(s.quarantined)), subs])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    if not rows:
        lines.append("(no connections)")
    if poison is not None:
        lines.append("")
        lines.append(f"poison queue {poison.queue}: {poison.depth} message(s)"
                     + (f"; for {', '.join(sorted(set(poison.users)))}" if poison.users else "")
                     + (f"; {poison.unreadable} not a sync job" if poison.unreadable else ""))
    return "\n".join(lines)


def render_user(status: UserStatus) -> str:
    """One user in detail: the table row's facts plus the latest run record and every quarantined record."""
    lines = [render_table([status], None), ""]
    if status.latest_run is not None:
        lines.append("latest run record:")
        lines.append(json.dumps(status.latest_run.model_dump(mode="json", exclude={"etag"}), indent=2))
    for run in status.abandoned_runs:
        lines.append(f"abandoned run {run.run_id}: started {_when(run.started_at)}, lease ran out "
                     f"{_when(run.lease_expires_at)}")
    if status.quarantined:
        lines.append("quarantined records:")
        for entry in status.quarantined:
            lines.append(f"  {entry.side} {entry.record_id}: {entry.reason} (attempts {entry.attempts}, "
                         f"since {_when(entry.first_seen)})")
    return "\n".join(lines)


def status_json(statuses: list[UserStatus], poison: PoisonReport | None) -> dict[str, object]:
    return {
        "users": [{
            "tenant_id": s.tenant_id, "user_id": s.user_id, "state": s.state, "mode": s.mode,
            "last_success_at": _when(s.last_success_at) if s.last_success_at else None,
            "last_error": s.last_error,
            "latest_run": s.latest_run.model_dump(mode="json", exclude={"etag"}) if s.latest_run else None,
            "abandoned_runs": [r.run_id for r in s.abandoned_runs],
            "quarantined": [q.model_dump(mode="json") for q in s.quarantined],
            "subscriptions": {k: (_when(v) if v else None) for k, v in s.subscriptions.items()},
        } for s in statuses],
        "poison": None if poison is None else {"queue": poison.queue, "depth": poison.depth, "users": poison.users,
                                               "unreadable": poison.unreadable},
    }
