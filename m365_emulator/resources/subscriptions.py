"""Change-notification subscriptions (`/v1.0/subscriptions`) and the webhook deliveries they cause.

Creating. POST /subscriptions validates the body (changeType of created|updated|deleted, clientState at most 128
characters, a supported Outlook resource of the caller's own mailbox), then performs Graph's validation handshake:
POST `{url}?validationToken={url-encoded token}` (Content-Type text/plain, 10 s timeout) to the notificationUrl
and, when given, the lifecycleNotificationUrl. The subscriber must answer 200 with the decoded token as the body;
otherwise 400 InvalidRequest "Subscription validation request failed. ..." (Graph's wording, as reported by
clients that met it). notificationUrl must be https except on the loopback interface.

Lifetimes. Outlook contact and event subscriptions live at most 10,080 minutes per learn.microsoft.com's current
subscription table (change-notifications-overview / subscription resource, as quoted by several 2025-26 projects;
older copies of microsoftgraph/microsoft-graph-docs-contrib concepts/includes/
change-notifications-subscription-lifetime.md say 4,230). Live Graph refuses more than 10,070 with
"Subscription expiration can only be 10070 minutes in the future." (ExtensionError, as reported by clients), so
that is the enforced default. todoTask: 4,230 minutes in every copy of the table. An expiry less than 45 minutes
ahead is raised to 45 minutes (secondary summaries of Microsoft's Outlook notification docs). All limits are
configurable (POST /_emulator/notifications). Expiry follows the emulator clock: an expired subscription stops
delivering and is removed. At most 1,000 subscriptions per mailbox, all apps together.

Delivering. A `Store.on_change` listener turns each change matching an active subscription into a notification
`{subscriptionId, subscriptionExpirationDateTime, changeType, resource ("Users/{uid}/Contacts/{id}"), resourceData
{@odata.type, @odata.id, @odata.etag, id}, clientState, tenantId}` and hands it to notifications.py, which POSTs,
batches and retries as Graph does. Ids follow the subscription's `Prefer: IdType` at creation. A change
notification given up on makes Graph send a `missed` lifecycle event, and so does the emulator.

Lifecycle events (`reauthorizationRequired`, `subscriptionRemoved`, `missed`) go to the lifecycleNotificationUrl
(the notificationUrl when there is none); `reauthorizationRequired` is also sent on its own once a subscription
is within `reauthorize_before_seconds` (default 60 minutes) of expiring, again after each renewal.

Control (under /_emulator): POST /subscriptions/{id}/lifecycle {"event"}; GET /subscriptions (all, for tests);
GET|POST /notifications (settings: duplicate_probability, delay_ms, batch_window_ms, retry_base_ms,
retry_max_ms, max_attempts, max_retry_seconds, reauthorize_before_seconds, min_lifetime_minutes,
max_lifetime_minutes {contact, event, todoTask}, max_per_mailbox, validation_timeout_seconds,
delivery_timeout_seconds); GET /notifications/log[?since=seq] and
DELETE /notifications/log.
"""
from __future__ import annotations

import ipaddress
import re
import threading
import time
import uuid
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

import httpx

from m365_emulator.kernel.emulator import Emulator, GraphContext
from m365_emulator.kernel.graph import GraphError, etag, wants_immutable_ids
from m365_emulator.kernel.router import normalise_path
from m365_emulator.kernel.timezones import UTC, iso7, parse_local
from m365_emulator.resources.calendars import ensure_default_calendar
from m365_emulator.resources.notifications import Delivery, DeliverySettings, Webhooks
from m365_emulator.resources.subscription_model import (
    CHANGE_TYPES,
    COLLECTION_KINDS,
    LIFECYCLE_EVENTS,
    ODATA_TYPES,
    RESOURCE_FORMS,
    STORE_RESOURCE,
    TLS_VERSIONS,
    WRITABLE_ON_PATCH,
    Settings,
    Subscription,
    invalid,
    missing_subscription,
)


# ------------------------------------------------------------------------------------------ service

class Notifier:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.settings = Settings()
        self.lock = threading.RLock()
        self.subscriptions: dict[str, Subscription] = {}
        self.webhooks = Webhooks(emu.core.clock.now, self._report_missed, self._sweep)
        emu.store.on_change(self.on_change)

    # -------------------------------------------------------------------------- subscriptions

    def active(self, sub_id: str, user_id: str | None = None, client_id: str | None = None) -> Subscription:
        with self.lock:
            sub = self.subscriptions.get(sub_id)
            if sub is None or sub.expiration <= self.emu.core.clock.now():
                raise missing_subscription()
            if (user_id is not None and sub.user_id != user_id) or (client_id is not None and sub.client_id != client_id):
                raise missing_subscription()
            return sub

    def _expiration(self, value: Any, kind: str) -> float:
        if not isinstance(value, str):
            raise invalid("expirationDateTime is required.")
        try:
            local, offset = parse_local(value)
        except GraphError:
            raise invalid(f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'.",
                          "BadRequest") from None
        when = local.replace(tzinfo=offset or UTC).timestamp()
        now = self.emu.core.clock.now()
        if when <= now:
            raise invalid("Subscription expiration can only be in the future.", "ExtensionError")
        limit = self.settings.max_lifetime_minutes.get(kind, 4230.0)
        if when - now > limit * 60 + 1:  # a second's grace for clocks and rounding
            raise invalid(f"Subscription expiration can only be {limit:g} minutes in the future.", "ExtensionError")
        return max(when, now + self.settings.min_lifetime_minutes * 60)

    def _target(self, ctx: GraphContext, resource: Any) -> tuple[str, str | None]:
        if not isinstance(resource, str) or not resource.strip():
            raise invalid("resource is required.")
        path = normalise_path("/" + resource.strip().split("?", 1)[0].lstrip("/"))
        match = re.match(r"^/(?:(?P<me>me)|users/(?P<user>[^/]+))(?P<rest>/.*)$", path, re.IGNORECASE)
        if match is None:
            raise invalid(f"Resource '{resource}' is not supported for change notifications.", "ExtensionError")
        if match["user"] is not None:
            with self.emu.core.lock:
                owner = self.emu.core.users.get(match["user"]) or self.emu.core.user_by_upn(match["user"])
            if owner is None:
                raise GraphError(404, "ErrorInvalidUser", f"The requested user '{match['user']}' is invalid.")
            if owner.id != ctx.user.id:
                raise GraphError(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; "
                                                        "Reason: Access is denied. Check credentials and try again.]")
        for pattern, kind, group in RESOURCE_FORMS:
            found = pattern.match(match["rest"])
            if found is None:
                continue
            collection_id: str | None = None
            if group == "default":
                collection_id = ensure_default_calendar(self.emu, ctx.user.id)
            elif group is not None:
                collection_id = found[group]
                if ctx.store.collection(ctx.user.id, collection_id, COLLECTION_KINDS[kind]) is None:
                    raise GraphError(404, "ExtensionError", f"Operation: Create; Exception: [Status Code: NotFound; "
                                                            f"Reason: The resource '{resource}' was not found.]")
            return kind, collection_id
        raise invalid(f"Resource '{resource}' is not supported for change notifications.", "ExtensionError")

    @staticmethod
    def _check_url(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise invalid(f"{name} is required.")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid(f"Invalid {name} '{value}'.")
        if parts.scheme == "http":
            host = parts.hostname
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise invalid(f"The {name} must use the HTTPS protocol.")
        return value

    async def _handshake(self, url: str) -> None:
        """Graph's validation request; raises Graph's 400 unless the subscriber echoes the token in time."""
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        entry: dict[str, Any] = {"time": iso7(self.emu.core.clock.now()), "url": url}
        try:
            async with httpx.AsyncClient(timeout=self.settings.validation_timeout_seconds, trust_env=False) as client:
                answer = await client.post(url, params={"validationToken": token},
                                           headers={"Content-Type": "text/plain; charset=utf-8"}, content=b"")
        except httpx.TimeoutException:
            self._log_validation(url, entry | {"error": "timeout"}, "failed")
            raise invalid("Subscription validation request timeout.") from None
        except httpx.HTTPError as exc:
            self._log_validation(url, entry | {"error": type(exc).__name__}, "failed")
            raise invalid("Subscription validation request failed. Notification endpoint must respond with 200 OK "
                          "to validation request.") from None
        entry["status"] = answer.status_code
        if answer.status_code != 200:
            self._log_validation(url, entry, "failed")
            raise invalid("Subscription validation request failed. Notification endpoint must respond with 200 OK "
                          "to validation request.")
        if answer.text != token:
            self._log_validation(url, entry, "failed")
            raise invalid("Subscription validation request failed. Response must exactly match validationToken "
                          "query parameter.")
        self._log_validation(url, entry, "delivered")

    def _log_validation(self, url: str, attempt: dict[str, Any], state: str) -> None:
        self.webhooks.record(Delivery(uuid.uuid4().hex, "validation", url, [], self.emu.core.clock.now(),
                                      time.monotonic(), [attempt], state))

    async def create(self, ctx: GraphContext) -> Subscription:
        body = ctx.req.json_object()
        allowed = {"changeType", "notificationUrl", "lifecycleNotificationUrl", "resource", "expirationDateTime",
                   "clientState", "latestSupportedTlsVersion", "includeResourceData", "encryptionCertificate",
                   "encryptionCertificateId", "notificationQueryOptions", "notificationUrlAppId",
                   "notificationContentType"}
        for name in body:
            if not name.startswith("@odata.") and name not in allowed:
                raise GraphError(400, "BadRequest", f"The property '{name}' does not exist on type "
                                                    "'microsoft.graph.subscription'.")
        change_types = self._change_types(body.get("changeType"))
        kind, collection_id = self._target(ctx, body.get("resource"))
        expiration = self._expiration(body.get("expirationDateTime"), kind)
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            raise invalid("clientState must be a string of at most 128 characters.")
        if body.get("includeResourceData"):
            raise invalid("Change notifications with resource data (includeResourceData) are not supported by "
                          "this emulator.")
        tls = body.get("latestSupportedTlsVersion") or "v1_2"
        if tls not in TLS_VERSIONS:
            raise invalid(f"Invalid latestSupportedTlsVersion '{tls}'.")
        notification_url = self._check_url("notificationUrl", body.get("notificationUrl"))
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if lifecycle_url is not None:
            lifecycle_url = self._check_url("lifecycleNotificationUrl", lifecycle_url)
        with self.lock:
            now = self.emu.core.clock.now()
            count = sum(1 for s in self.subscriptions.values() if s.user_id == ctx.user.id and s.expiration > now)
            if count >= self.settings.max_per_mailbox:
                raise GraphError(403, "ExtensionError", f"The maximum number of subscriptions "
                                                        f"({self.settings.max_per_mailbox}) for this mailbox has been "
                                                        "reached.")
        await self._handshake(notification_url)
        if lifecycle_url is not None:
            await self._handshake(lifecycle_url)
        sub = Subscription(str(uuid.uuid4()), ctx.user.id, ctx.client_id, body["resource"], kind, collection_id,
                           change_types, notification_url, lifecycle_url, expiration, client_state, tls,
                           wants_immutable_ids(ctx.req.headers))
        with self.lock:
            self.subscriptions[sub.id] = sub
        self.emu.touch()
        self.webhooks.start()  # its tick expires subscriptions and sends reauthorizationRequired
        return sub

    @staticmethod
    def _change_types(value: Any) -> list[str]:
        if not isinstance(value, str) or not value.strip():
            raise invalid("changeType is required.")
        types: list[str] = []
        for part in (p.strip() for p in value.split(",")):
            if part not in CHANGE_TYPES:
                raise invalid(f"'{part}' is not a valid changeType. Valid values are created, updated and deleted.")
            if part not in types:
                types.append(part)
        return types

    async def update(self, ctx: GraphContext, sub_id: str) -> Subscription:
        sub = self.active(sub_id, ctx.user.id, ctx.client_id)
        body = ctx.req.json_object()
        for name in body:
            if not name.startswith("@odata.") and name not in WRITABLE_ON_PATCH:
                raise invalid(f"The property '{name}' of a subscription cannot be updated; only expirationDateTime "
                              "and notificationUrl can.")
        expiration = self._expiration(body["expirationDateTime"], sub.kind) if "expirationDateTime" in body else None
        url = self._check_url("notificationUrl", body["notificationUrl"]) if "notificationUrl" in body else None
        if url is not None and url != sub.notification_url:
            await self._handshake(url)
        with self.lock:
            if expiration is not None:
                sub.expiration = expiration
                sub.reauthorization_sent_for = None
            if url is not None:
                sub.notification_url = url
        self.emu.touch()
        return sub

    def delete(self, sub_id: str, user_id: str | None = None, client_id: str | None = None) -> None:
        sub = self.active(sub_id, user_id, client_id)
        with self.lock:
            self.subscriptions.pop(sub.id, None)
        self.emu.touch()

    # ------------------------------------------------------------------------------ notifications

    def on_change(self, user_id: str, resource: str, change_type: str, item_id: str) -> None:
        """Store listener (runs in the request's thread): queue a notification per matching subscription."""
        match = STORE_RESOURCE.match(resource)
        if match is None:
            return
        kind = next(k for k in ("contact", "event", "todoTask") if match[k] is not None)
        collection_id = match[kind]
        now = self.emu.core.clock.now()
        with self.lock:
            targets = [s for s in self.subscriptions.values()
                       if s.user_id == user_id and s.kind == kind and s.expiration > now
                       and change_type in s.change_types and s.collection_id in (None, collection_id)]
        if not targets:
            return
        regular_id, change_key = item_id, None
        if change_type == "deleted":
            # The id the item had in this collection (a moved item lives on elsewhere under a new regular id).
            with self.emu.store.lock:
                coll = self.emu.store.mailbox(user_id).collections.get(collection_id)
                stone = next((t for t in reversed(coll.tombstones) if t.immutable_id == item_id), None) if coll else None
            if stone is not None:
                regular_id = stone.regular_id
        else:
            found = self.emu.store.find(user_id, item_id)
            if found is not None:
                regular_id, change_key = found[1].regular_id, found[1].change_key
        for sub in targets:
            reported = item_id if sub.immutable_ids else regular_id
            path = {"contact": f"Users/{user_id}/Contacts/{reported}", "event": f"Users/{user_id}/Events/{reported}",
                    "todoTask": f"Users/{user_id}/todo/lists/{collection_id}/tasks/{reported}"}[kind]
            data: dict[str, Any] = {"@odata.type": ODATA_TYPES[kind], "@odata.id": path}
            if change_key is not None:
                data["@odata.etag"] = etag(change_key)
            data["id"] = reported
            notification = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": iso7(sub.expiration),
                            "changeType": change_type, "resource": path, "resourceData": data,
                            "clientState": sub.client_state, "tenantId": self.emu.core.tenant_id}
            self.webhooks.send("change", sub.notification_url, [notification])

    def lifecycle(self, sub_id: str, event: str) -> Delivery:
        if event not in LIFECYCLE_EVENTS:
            raise invalid(f"event must be one of {', '.join(LIFECYCLE_EVENTS)}")
        sub = self.active(sub_id)
        delivery = self._send_lifecycle(sub, event)
        if event == "subscriptionRemoved":
            with self.lock:
                self.subscriptions.pop(sub.id, None)
            self.emu.touch()
        return delivery

    def _send_lifecycle(self, sub: Subscription, event: str) -> Delivery:
        notification = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": iso7(sub.expiration),
                        "tenantId": self.emu.core.tenant_id, "clientState": sub.client_state, "lifecycleEvent": event}
        return self.webhooks.send("lifecycle", sub.lifecycle_url or sub.notification_url, [notification])

    def _report_missed(self, delivery: Delivery) -> None:
        """A change notification Graph gave up on makes it send `missed` to the subscription's lifecycle URL."""
        if delivery.kind != "change":
            return
        for sub_id in sorted({n["subscriptionId"] for n in delivery.notifications}):
            with self.lock:
                sub = self.subscriptions.get(sub_id)
            if sub is not None and sub.lifecycle_url is not None:
                self._send_lifecycle(sub, "missed")

    def _sweep(self) -> None:
        """Expire subscriptions by the emulator clock; warn those about to expire (reauthorizationRequired)."""
        now = self.emu.core.clock.now()
        warn: list[Subscription] = []
        with self.lock:
            for sub in list(self.subscriptions.values()):
                if sub.expiration <= now:
                    del self.subscriptions[sub.id]
                    self.emu.touch()
                elif (sub.lifecycle_url is not None and sub.reauthorization_sent_for != sub.expiration
                      and sub.expiration - now <= self.settings.reauthorize_before_seconds):
                    sub.reauthorization_sent_for = sub.expiration
                    warn.append(sub)
        for sub in warn:
            self._send_lifecycle(sub, "reauthorizationRequired")

    # ---------------------------------------------------------------------------- persistence

    def dump(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(s) for s in self.subscriptions.values()]

    def load(self, data: Any) -> None:
        with self.lock:
            self.subscriptions = {s["id"]: Subscription(**s) for s in data or []}
        if self.subscriptions:
            self.webhooks.start()

    def reset(self) -> None:
        with self.lock:
            self.subscriptions.clear()
            self.settings = Settings()
        self.webhooks.reset()

    def settings_json(self) -> dict[str, Any]:
        return {**asdict(self.webhooks.settings), **asdict(self.settings)}

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        """Update subscription and delivery settings by name (POST /_emulator/notifications)."""
        mine, delivery = asdict(self.settings), asdict(self.webhooks.settings)
        for name, value in body.items():
            target = mine if name in mine else delivery if name in delivery else None
            if target is None:
                raise invalid(f"unknown setting {name}")
            if name == "max_lifetime_minutes":
                if not isinstance(value, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in value.values()):
                    raise invalid("max_lifetime_minutes must map kinds to positive numbers")
                target[name] = {**target[name], **value}
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise invalid(f"{name} must be a non-negative number")
            elif name == "duplicate_probability" and value > 1:
                raise invalid("duplicate_probability must be between 0 and 1")
            else:
                target[name] = type(target[name])(value)
        with self.lock:
            self.settings = Settings(**mine)
            self.webhooks.settings = DeliverySettings(**delivery)
        return self.settings_json()
