"""Microsoft Graph change notifications: the validation handshake, notifications and lifecycle events.

Anyone on the internet can reach these endpoints, so a body is trusted only after every item in it
names a subscription we created and carries that subscription's secret clientState (compared in
constant time). One bad item refuses the whole body (4xx) and nothing is enqueued; Graph does not
retry a 4xx, and a lost hint costs at most one timer period. A notification is never data: it only
enqueues the user's delta sync, and the answer (202) goes out well within Graph's 3 seconds.
"""
from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass

from sync_core.app import jobs, subscriptions
from sync_core.adapters.graph.session import GraphSession
from sync_core.app.services import Services
from sync_core.domain.errors import SyncError
from sync_core.domain.subscriptions import Owner
from sync_core.web.http import HttpError, WebRequest, WebResponse, text

log = logging.getLogger("sync_core.app.webhook")

MAX_BODY_BYTES = 256 * 1024
MAX_ITEMS = 1000
MAX_VALIDATION_TOKEN = 2048
MAX_CLIENT_STATE = 128
MAX_ID = 200
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
# Lifecycle work done while Graph waits must fit its 3 s; what does not is left to the timer.
INLINE_GRAPH_TIMEOUT = 2.0


@dataclass(frozen=True)
class Item:
    subscription_id: str
    client_state: str
    lifecycle_event: str | None


def validation_echo(request: WebRequest) -> WebResponse | None:
    """The subscription handshake: echo validationToken (already URL-decoded) as text/plain."""
    if "validationToken" not in request.params:
        return None
    token = request.params["validationToken"]
    if not token or len(token) > MAX_VALIDATION_TOKEN:
        raise HttpError(400, "The validation token is empty or too long.")
    return text(token, 200)


def parse_items(request: WebRequest, *, lifecycle: bool) -> list[Item]:
    """The notification items of a POST body; HttpError for anything that is not Graph's shape."""
    if request.method != "POST":
        raise HttpError(405, "Notifications are POSTed.")
    request.require_body("application/json", MAX_BODY_BYTES, "Notifications are JSON.",
                         "The notification body is too large.")
    try:
        document = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than any notification
        raise HttpError(400, "The notification body is not JSON.") from None
    values = document.get("value") if isinstance(document, dict) else None
    if not isinstance(values, list) or not values or len(values) > MAX_ITEMS:
        raise HttpError(400, "The notification body has no 'value' list of notifications.")
    items: list[Item] = []
    for value in values:
        if not isinstance(value, dict):
            raise HttpError(400, "A notification is not an object.")
        sub_id, client_state = value.get("subscriptionId"), value.get("clientState")
        if not isinstance(sub_id, str) or not sub_id or len(sub_id) > MAX_ID:
            raise HttpError(400, "A notification has no valid subscriptionId.")
        if not isinstance(client_state, str) or not client_state or len(client_state) > MAX_CLIENT_STATE:
            raise HttpError(403, "A notification has no valid clientState.")
        event = value.get("lifecycleEvent")
        if lifecycle and (not isinstance(event, str) or event not in LIFECYCLE_EVENTS):
            raise HttpError(400, "A lifecycle notification names no known lifecycleEvent.")
        if not lifecycle and event is not None:
            raise HttpError(400, "Lifecycle events go to the lifecycle URL.")
        items.append(Item(sub_id, client_state, event if lifecycle else None))
    return items


def verify(services: Services, items: list[Item]) -> list[tuple[Item, Owner]]:
    """Every item must name a known subscription and carry its secret; else 403 for the whole body."""
    store = services.subscriptions
    owners: dict[str, Owner | None] = {}
    verified: list[tuple[Item, Owner]] = []
    for item in items:
        if item.subscription_id not in owners:
            owners[item.subscription_id] = store.owner_of(item.subscription_id)
        owner = owners[item.subscription_id]
        if owner is None:
            log.warning("notification refused: unknown subscription", extra={"event": "webhook_refused",
                        "reason": "unknown_subscription"})
            raise HttpError(403, "The notification names a subscription this app does not know.")
        if not hmac.compare_digest(owner.client_state.encode(), item.client_state.encode()):
            log.warning("notification refused: clientState does not match", extra={"event": "webhook_refused",
                        "reason": "client_state", "tenant": owner.tenant_id, "user": owner.user_id})
            raise HttpError(403, "The notification's clientState does not match its subscription.")
        verified.append((item, owner))
    return verified


def _enqueue_each(services: Services, verified: list[tuple[Item, Owner]], reason: str) -> int:
    users = list(dict.fromkeys((owner.tenant_id, owner.user_id) for _, owner in verified))
    for tenant_id, user_id in users:
        jobs.enqueue_sync(services, tenant_id, user_id, reason)
    return len(users)


def handle_notification(services: Services, request: WebRequest) -> WebResponse:
    echo = validation_echo(request)
    if echo is not None:
        return echo
    verified = verify(services, parse_items(request, lifecycle=False))
    users = _enqueue_each(services, verified, "webhook")
    log.info("notifications accepted: %d item(s) for %d user(s)", len(verified), users,
             extra={"event": "webhook", "items": len(verified), "users": users})
    return WebResponse(202)


def _quick_session(services: Services, tenant_id: str, user_id: str) -> GraphSession:
    return GraphSession(services.settings.graph_base_url, services.credential_for(tenant_id, user_id),
                        timeout=INLINE_GRAPH_TIMEOUT, pacer=services.pacer_for(tenant_id, user_id), max_retries=0)


def _lifecycle(services: Services, item: Item, owner: Owner) -> None:
    record = services.subscriptions.get(owner.tenant_id, owner.user_id, owner.kind)
    if record is None or record.sub_id != item.subscription_id:
        return  # already replaced: the event concerns an old subscription
    recreate = item.lifecycle_event in ("subscriptionRemoved", "missed")
    session = _quick_session(services, owner.tenant_id, owner.user_id)
    try:
        outcome = subscriptions.refresh(services, session, record, recreate=recreate)
        log.info("lifecycle event %s for %s: %s", item.lifecycle_event, owner.user_id, outcome,
                 extra={"event": "lifecycle", "lifecycle": item.lifecycle_event, "outcome": outcome,
                        "tenant": owner.tenant_id, "user": owner.user_id})
    except SyncError as exc:  # includes ReconnectNeededError
        # Too slow or refused now: the next timer tick renews or recreates it.
        subscriptions.mark_due(services, record)
        log.warning("lifecycle event %s for %s deferred to the timer (%s)", item.lifecycle_event, owner.user_id,
                    type(exc).__name__, extra={"event": "lifecycle_deferred", "lifecycle": item.lifecycle_event,
                                               "error": type(exc).__name__, "tenant": owner.tenant_id, "user": owner.user_id})
    finally:
        session.close()


def handle_lifecycle(services: Services, request: WebRequest) -> WebResponse:
    echo = validation_echo(request)
    if echo is not None:
        return echo
    verified = verify(services, parse_items(request, lifecycle=True))
    # Notifications may have been lost (missed) or will stop (removed): catch up by delta now.
    catch_up = [(item, owner) for item, owner in verified if item.lifecycle_event != "reauthorizationRequired"]
    _enqueue_each(services, catch_up, "lifecycle")
    for item, owner in {(i.subscription_id, i.lifecycle_event): (i, o) for i, o in verified}.values():
        _lifecycle(services, item, owner)
    return WebResponse(202)

