"""Remove integration: delete what the integration created in Microsoft 365, then everything it
keeps about the user here. CRM data is never touched.

In Microsoft: the change subscriptions, the Outlook contact folder "Really Simple Systems" (which
takes its contacts with it), the To Do list of that name, and the calendar events the task sync created
(events imported from Outlook are the user's own and stay). Here: the token cache, contact and task
links, cursors, quarantine, subscription rows; the connection returns to "not connected" (keeping the user's
settings for a later reconnect). When Microsoft cannot be reached or the sign-in is already dead,
our side is cleaned all the same and the report names what is left in Microsoft.

The user's sync lease is held throughout, so a sync cannot recreate the folder behind our back.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from sync_core.adapters.graph.session import GraphSession
from sync_core.app.services import Services
from sync_core.domain.connections import Connection, ConnectionStatus
from sync_core.domain.errors import ConcurrencyError, LeaseHeldError, NotFoundError, ReconnectNeededError, SyncError
from sync_core.domain.models import FOLDER_NAME, Cursor, Lease, TaskTarget, UserSyncSettings
from sync_core.app.subscriptions import find_contact_folder, remove_user_subscriptions
from sync_core.kinds.tasks.planner import import_task_id, key_target, split_ms_key
from sync_core.kinds.tasks.run import target_cursor_key, task_partition

log = logging.getLogger("sync_core.app.disconnect")

LEASE_OWNER = "disconnect"
LEASE_SECONDS = 300
LEASE_WAIT_SECONDS = 20.0

# What may be left behind in Microsoft, by code (the settings page explains each).
FOLDER = "folder"
TODO_LIST = "todo"
EVENTS = "events"
SUBSCRIPTIONS = "subscriptions"
LEFT_TEXT = {
    FOLDER: f"the Outlook contact folder “{FOLDER_NAME}” and the contacts in it",
    TODO_LIST: f"the Microsoft To Do list “{FOLDER_NAME}” and the tasks in it",
    EVENTS: "the calendar events this integration created for your CRM tasks",
    SUBSCRIPTIONS: "change notifications for this app (they expire by themselves within three days)",
}


class SyncRunning(SyncError):
    """The user's sync is running and did not finish in time; nothing was changed."""


@dataclass
class DisconnectReport:
    deleted: list[str] = field(default_factory=list)  # codes deleted in Microsoft
    left: list[str] = field(default_factory=list)  # codes that could not be deleted in Microsoft
    reason: str | None = None  # why not (no personal data)


def what_will_be_deleted(settings: UserSyncSettings) -> list[str]:
    """The warning page's list, in plain words."""
    items = [f"The Outlook contact folder “{FOLDER_NAME}” and every contact in it."]
    if settings.tasks_enabled and settings.task_target is TaskTarget.CALENDAR:
        items.append("The events this integration created in your Outlook calendar.")
    items.append(f"The Microsoft To Do list “{FOLDER_NAME}” and every task in it, if it exists.")
    items.append("This app's change notifications and its saved sign-in to your Microsoft account.")
    return items


def _take_lease(services: Services, tenant_id: str, user_id: str) -> Lease:
    deadline = time.monotonic() + LEASE_WAIT_SECONDS
    while True:
        try:
            return services.state.acquire_lease(tenant_id, user_id, LEASE_OWNER, LEASE_SECONDS, datetime.now(UTC))
        except LeaseHeldError:
            if time.monotonic() >= deadline:
                raise SyncRunning("a sync is running right now; try again in a minute") from None
            time.sleep(0.5)


def _save_status(services: Services, connection: Connection, **update: object) -> Connection:
    for _ in range(5):
        try:
            return services.connections.save(connection.model_copy(update=update))
        except ConcurrencyError:
            fresh = services.connections.get(connection.tenant_id, connection.user_id)
            if fresh is None:
                return connection
            connection = fresh
    raise ConcurrencyError("the connection kept changing during disconnect")


def _delete(session: GraphSession, url: str) -> None:
    try:
        session.request("DELETE", url)
    except NotFoundError:
        return  # already gone


def _delete_in_microsoft(services: Services, session: GraphSession, tenant_id: str, user_id: str,
                         report: DisconnectReport) -> None:
    left = remove_user_subscriptions(services, tenant_id, user_id, session)
    (report.left if left else report.deleted).append(SUBSCRIPTIONS)
    folder_id = find_contact_folder(services, session, tenant_id, user_id)
    if folder_id is not None:
        _delete(session, f"/me/contactFolders/{quote(folder_id, safe='')}")
    report.deleted.append(FOLDER)
    lists, _ = session.get_pages("/me/todo/lists")
    known_list = services.state.get_cursor(tenant_id, target_cursor_key(user_id, TaskTarget.TO_DO)).folder_id
    for item in lists:
        if isinstance(item, dict) and item.get("id") and (
                item.get("displayName") == FOLDER_NAME or item.get("id") == known_list):
            _delete(session, f"/me/todo/lists/{quote(str(item['id']), safe='')}")
    report.deleted.append(TODO_LIST)
    for graph_id in _created_events(services, tenant_id, user_id):
        _delete(session, f"/me/events/{quote(graph_id, safe='')}")
    report.deleted.append(EVENTS)


def _created_events(services: Services, tenant_id: str, user_id: str) -> list[str]:
    """Graph ids of the events the task sync created: linked calendar items that were not imported from
    Outlook (an import's CRM id is derived from its Microsoft key)."""
    ids: list[str] = []
    for link in services.state.iter_links(tenant_id, task_partition(user_id)):
        if not link.ms_id or key_target(link.ms_id) is not TaskTarget.CALENDAR:
            continue
        if link.crm_id == import_task_id(tenant_id, user_id, link.ms_id):
            continue  # the user's own event, copied into the CRM
        ids.append(split_ms_key(link.ms_id)[1])
    return ids


def _forget_here(services: Services, tenant_id: str, user_id: str) -> None:
    services.tokens.delete(tenant_id, user_id)
    remove_user_subscriptions(services, tenant_id, user_id, None)
    for partition in (user_id, task_partition(user_id)):
        for link in list(services.state.iter_links(tenant_id, partition)):
            try:
                services.state.delete_link(link)
            except (ConcurrencyError, NotFoundError):
                continue  # changed or gone meanwhile; the lease makes this rare
    for key in (user_id, task_partition(user_id), *(target_cursor_key(user_id, t) for t in TaskTarget)):
        cursor = services.state.get_cursor(tenant_id, key)
        if cursor.etag is not None:
            services.state.save_cursor(Cursor(tenant_id=tenant_id, user_id=key, etag=cursor.etag))
    for entry in services.state.list_quarantine(tenant_id, user_id):
        services.state.clear_quarantine(tenant_id, user_id, entry.side, entry.record_id)


def disconnect_user(services: Services, tenant_id: str, user_id: str) -> DisconnectReport:
    report = DisconnectReport()
    connection = services.connections.get(tenant_id, user_id)
    lease = _take_lease(services, tenant_id, user_id)
    try:
        if connection is not None:
            # First, so no queued job starts a sync of this user any more.
            connection = _save_status(services, connection, status=ConnectionStatus.NOT_CONNECTED)
        session = services.graph_session_for(tenant_id, user_id)
        try:
            _delete_in_microsoft(services, session, tenant_id, user_id, report)
        except SyncError as exc:
            report.reason = ("Microsoft no longer accepts the saved sign-in" if isinstance(exc, ReconnectNeededError)
                             else f"Microsoft could not be reached ({type(exc).__name__})")
            report.left = [code for code in (SUBSCRIPTIONS, FOLDER, TODO_LIST, EVENTS) if code not in report.deleted]
            log.warning("disconnect of %s left %s in Microsoft (%s)", user_id, ",".join(report.left),
                        type(exc).__name__, extra={"event": "disconnect_partial", "tenant": tenant_id, "user": user_id,
                                                   "left": ",".join(report.left), "error": type(exc).__name__})
        finally:
            session.close()
        _forget_here(services, tenant_id, user_id)
        if connection is not None:
            _save_status(services, connection, status=ConnectionStatus.NOT_CONNECTED, ms_account=None,
                         ms_user_id=None, connected_at=None, last_success_at=None, last_error=None, last_run_id=None)
    finally:
        try:
            services.state.release_lease(lease)
        except ConcurrencyError:
            log.warning("disconnect outlived its lease", extra={"event": "lease_lost", "tenant": tenant_id, "user": user_id})
    log.info("disconnected %s", user_id, extra={"event": "disconnect", "tenant": tenant_id, "user": user_id, "left": ",".join(report.left)})
    return report
