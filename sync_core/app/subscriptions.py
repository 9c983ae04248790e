"""Graph change-notification subscriptions: one for the user's contact folder, and one for the task
target when task sync is on. A notification is only a hint to run the user's delta sync.

Each subscription has its own random clientState secret (stored sealed: adapters/tables/subscriptions.py);
the webhook looks its id up and compares in constant time. A record whose `sub_id` is empty is an owed
subscription: wanted, but its creation failed or had to wait (the To Do list does not exist before the
first task sync). Owed records are stored already expired, so the timer's "expiring within 24 h" query
retries them with no extra bookkeeping.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from sync_core.adapters.graph.session import GraphSession
from sync_core.app.services import Services
from sync_core.domain.connections import ConnectionStatus
from sync_core.domain.errors import ConcurrencyError, MicrosoftError, NotFoundError, ReconnectNeededError, SyncError
from sync_core.domain.models import FOLDER_NAME, TaskTarget, UserSyncSettings
from sync_core.domain.subscriptions import Kind, Subscription
from sync_core.kinds.tasks.run import target_cursor_key

log = logging.getLogger("sync_core.app.subscriptions")

# Outlook resources accept at most 4,230 minutes (some sources say 10,080): stay under the smaller.
LIFETIME = timedelta(minutes=4200)
RENEW_WITHIN = timedelta(hours=24)
CHANGE_TYPES = "created,updated,deleted"
MAX_RENEWALS_PER_TICK = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_graph_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Graph writes 7 fractional digits; fromisoformat takes at most 6.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- talking to Graph --------------------------------------------------------------------------------

def notification_urls(services: Services) -> tuple[str, str]:
    base = services.settings.public_base_url
    return f"{base}/api/graph/notifications", f"{base}/api/graph/lifecycle"


def contacts_path(folder_id: str) -> str:
    return f"/me/contactFolders/{folder_id}/contacts"


def find_contact_folder(services: Services, session: GraphSession, tenant_id: str, user_id: str) -> str | None:
    """The id of the folder the sync uses, or None while it does not exist. Never creates it: only the
    sync does, since two creators at the same moment could make a second folder."""
    known = services.state.get_cursor(tenant_id, user_id).folder_id
    if known:
        try:
            session.request("GET", f"/me/contactFolders/{quote(known, safe='')}?$select=id")
            return known
        except NotFoundError:
            pass  # deleted in Outlook: the sync finds or makes another one by name
    quoted = FOLDER_NAME.replace("'", "''")
    answer = session.request("GET", f"/me/contactFolders?$filter=displayName eq '{quoted}'&$select=id,displayName")
    ids = sorted(str(f["id"]) for f in (answer or {}).get("value", [])
                 if isinstance(f, dict) and f.get("displayName") == FOLDER_NAME and f.get("id"))
    # Several of that name (made by hand): the sync settles on the lowest id, and so do we.
    return ids[0] if ids else None


def contacts_resource(services: Services, session: GraphSession, tenant_id: str, user_id: str) -> str | None:
    folder_id = find_contact_folder(services, session, tenant_id, user_id)
    return contacts_path(folder_id) if folder_id else None


def tasks_resource(services: Services, session: GraphSession, settings: UserSyncSettings) -> str | None:
    """The task target to watch: the calendar, or the To Do list the task sync uses (its cursor's, else the
    lowest id of that name, as the sync picks); None while that list does not exist (the sync creates it)."""
    if settings.task_target is TaskTarget.CALENDAR:
        return "/me/events"
    known = services.state.get_cursor(settings.tenant_id, target_cursor_key(settings.user_id, TaskTarget.TO_DO)).folder_id
    lists, _ = session.get_pages("/me/todo/lists")
    ids = {str(item["id"]): item.get("displayName") for item in lists if isinstance(item, dict) and item.get("id")}
    if known and known in ids:
        return f"/me/todo/lists/{known}/tasks"
    named = sorted(list_id for list_id, name in ids.items() if name == FOLDER_NAME)
    return f"/me/todo/lists/{named[0]}/tasks" if named else None


def _create_on_graph(services: Services, session: GraphSession, resource: str,
                     client_state: str) -> tuple[str, datetime]:
    notification_url, lifecycle_url = notification_urls(services)
    wanted = datetime.now(UTC) + LIFETIME
    body = {"changeType": CHANGE_TYPES, "notificationUrl": notification_url, "lifecycleNotificationUrl": lifecycle_url,
            "resource": resource, "expirationDateTime": graph_time(wanted), "clientState": client_state}
    # Not retried blindly: a replayed POST would leave a second subscription behind.
    answer = session.request("POST", "/subscriptions", body, retry=False)
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str) or not answer["id"]:
        raise MicrosoftError("Graph created a subscription but did not return its id", status=201)
    return answer["id"], parse_graph_time(answer.get("expirationDateTime")) or wanted


def _delete_on_graph(session: GraphSession, sub_id: str) -> None:
    try:
        session.request("DELETE", f"/subscriptions/{quote(sub_id, safe='')}")
    except NotFoundError:
        return  # already gone is what we wanted


def _put(services: Services, session: GraphSession, current: Subscription | None, tenant_id: str, user_id: str,
         kind: Kind, resource: str) -> Subscription:
    """Create a subscription on `resource` with a fresh secret and store it in place of `current`."""
    client_state = secrets.token_urlsafe(48)  # 64 characters; Graph allows 128
    sub_id, expires_at = _create_on_graph(services, session, resource, client_state)
    record = Subscription(tenant_id, user_id, kind, sub_id, resource, expires_at, client_state,
                          current.etag if current else None)
    try:
        saved = services.subscriptions.save(record, current)
    except ConcurrencyError:
        _delete_on_graph(session, sub_id)  # someone else replaced it meanwhile: theirs wins
        raise
    if current is not None and current.sub_id and current.sub_id != sub_id:
        try:
            _delete_on_graph(session, current.sub_id)
        except SyncError as exc:
            log.info("old subscription not deleted (%s); it expires by itself", type(exc).__name__)
    return saved


def _owe(services: Services, session: GraphSession | None, current: Subscription | None, tenant_id: str,
         user_id: str, kind: Kind) -> Subscription:
    """Record that this subscription is wanted but missing (any old one is dropped); the timer creates it."""
    if current is not None and current.owed:
        return current
    if current is not None and session is not None:
        try:
            _delete_on_graph(session, current.sub_id)
        except SyncError as exc:
            log.info("old subscription not deleted (%s); it expires by itself", type(exc).__name__)
    record = Subscription(tenant_id, user_id, kind, "", "", _EPOCH, secrets.token_urlsafe(48),
                          current.etag if current else None)
    return services.subscriptions.save(record, current)


def _wanted_resource(services: Services, session: GraphSession, kind: Kind, settings: UserSyncSettings) -> str | None:
    if kind is Kind.CONTACTS:
        return contacts_resource(services, session, settings.tenant_id, settings.user_id)
    return tasks_resource(services, session, settings) if settings.tasks_enabled else None


@dataclass
class Report:
    created: int = 0
    renewed: int = 0
    deleted: int = 0
    owed: int = 0
    failed: list[str] = field(default_factory=list)


def subscribe_user(services: Services, session: GraphSession, settings: UserSyncSettings) -> Report:
    """Make the user's subscriptions match their settings (on connect and after a sync): contacts
    always, tasks when on; a resource that changed (new folder, other target) gets a new subscription.
    What cannot be created yet (no folder or list before the first sync) or fails is stored as owed,
    created after the next sync or by the timer; this never raises for Graph errors."""
    report = Report()
    tenant_id, user_id = settings.tenant_id, settings.user_id
    existing = services.subscriptions.for_user(tenant_id, user_id)
    for kind in Kind:
        current = existing.get(kind)
        if kind is Kind.TASKS and not settings.tasks_enabled:
            if current is not None:
                _remove(services, session, current, report)
            continue
        try:
            resource = _wanted_resource(services, session, kind, settings)
            if resource is None:
                _owe(services, session, current, tenant_id, user_id, kind)
                report.owed += 1
            elif current is None or current.owed or current.resource != resource:
                _put(services, session, current, tenant_id, user_id, kind, resource)
                report.created += 1
        except ReconnectNeededError:
            raise
        except SyncError as exc:
            log.warning("%s subscription of %s not created (%s); retried later", kind.value, user_id,
                        type(exc).__name__, extra={"event": "subscribe_failed", "tenant": tenant_id, "user": user_id,
                                                   "kind": kind.value, "error": type(exc).__name__})
            try:
                _owe(services, session, current, tenant_id, user_id, kind)
            except ConcurrencyError:
                continue  # another request replaced this subscription meanwhile: theirs stands
            report.owed += 1
            report.failed.append(f"{kind.value}: {exc}")
    return report


def _remove(services: Services, session: GraphSession | None, record: Subscription, report: Report) -> None:
    if session is not None and record.sub_id:
        _delete_on_graph(session, record.sub_id)
    services.subscriptions.delete(record)
    report.deleted += 1


def remove_user_subscriptions(services: Services, tenant_id: str, user_id: str,
                              session: GraphSession | None) -> list[str]:
    """Delete the user's subscriptions in Graph (when `session`) and here; returns what could not be
    deleted in Microsoft (our rows are deleted regardless)."""
    problems: list[str] = []
    report = Report()
    for record in services.subscriptions.for_user(tenant_id, user_id).values():
        try:
            _remove(services, session, record, report)
        except (MicrosoftError, ReconnectNeededError) as exc:
            problems.append(f"the {record.kind.value} change subscription ({type(exc).__name__}); it expires by itself")
            services.subscriptions.delete(record)
    return problems


def _renew(services: Services, session: GraphSession, record: Subscription) -> Subscription:
    wanted = datetime.now(UTC) + LIFETIME
    answer = session.request("PATCH", f"/subscriptions/{quote(record.sub_id, safe='')}",
                             {"expirationDateTime": graph_time(wanted)})
    expires = parse_graph_time(answer.get("expirationDateTime") if isinstance(answer, dict) else None) or wanted
    return services.subscriptions.save(replace(record, expires_at=expires), record)


def refresh(services: Services, session: GraphSession, record: Subscription, *, recreate: bool = False) -> str:
    """Bring one subscription back to health: renew it, or create it anew when it is owed, gone in
    Graph, or `recreate` (subscriptionRemoved / missed). Returns what was done."""
    connection = services.connections.get(record.tenant_id, record.user_id)
    if connection is None or connection.status is not ConnectionStatus.CONNECTED:
        services.subscriptions.delete(record)
        return "dropped"
    settings = connection.settings
    if record.kind is Kind.TASKS and not settings.tasks_enabled:
        _remove(services, session, record, Report())
        return "dropped"
    if not record.owed and not recreate:
        try:
            _renew(services, session, record)
            return "renewed"
        except NotFoundError:
            pass  # Graph removed it (expired or deleted): create it again below
    resource = _wanted_resource(services, session, record.kind, settings)
    if resource is None:
        return "owed"
    _put(services, session, record, record.tenant_id, record.user_id, record.kind, resource)
    return "created"


def mark_due(services: Services, record: Subscription) -> None:
    """Let the next timer tick take care of it (expires now)."""
    try:
        services.subscriptions.save(replace(record, expires_at=_EPOCH), record)
    except ConcurrencyError:
        return  # it was just renewed or replaced: nothing is due any more


def renew_due(services: Services, *, within: timedelta = RENEW_WITHIN, limit: int = MAX_RENEWALS_PER_TICK) -> Report:
    """Timer: renew subscriptions expiring within `within`, create owed ones; per user one Graph session."""
    report = Report()
    by_user: dict[tuple[str, str], list[Subscription]] = {}
    for record in services.subscriptions.iter_due(datetime.now(UTC) + within, limit):
        by_user.setdefault((record.tenant_id, record.user_id), []).append(record)
    for (tenant_id, user_id), records in by_user.items():
        session = services.graph_session_for(tenant_id, user_id)
        try:
            for record in records:
                try:
                    outcome = refresh(services, session, record)
                except ReconnectNeededError:
                    report.failed.append(f"{user_id}: reconnect needed")
                    break  # the user's sign-in is dead: their other subscriptions cannot be renewed either
                except SyncError as exc:
                    report.failed.append(f"{user_id}/{record.kind.value}: {type(exc).__name__}")
                    continue
                if outcome == "renewed":
                    report.renewed += 1
                elif outcome == "created":
                    report.created += 1
                elif outcome == "dropped":
                    report.deleted += 1
                else:
                    report.owed += 1
        finally:
            session.close()
    if by_user:
        log.info("subscriptions: %d renewed, %d created, %d failed", report.renewed, report.created,
                 len(report.failed), extra={"event": "renew", "renewed": report.renewed,
                                            "recreated": report.created, "failed": len(report.failed)})
    return report
