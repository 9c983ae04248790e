"""What a subscription is: the resources it may watch, its limits (Settings) and its Graph JSON."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from m365_emulator.kernel.graph import GraphError
from m365_emulator.kernel.timezones import iso7

CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
WRITABLE_ON_PATCH = ("expirationDateTime", "notificationUrl")

# What a subscription watches: the kind of item and, optionally, one collection of that kind.
RESOURCE_FORMS: tuple[tuple[re.Pattern[str], str, str | None], ...] = tuple(
    (re.compile(rx, re.IGNORECASE), kind, group) for rx, kind, group in (
        (r"^/contacts$", "contact", None),
        (r"^/contactFolders/(?P<coll>[^/]+)/contacts$", "contact", "coll"),
        (r"^/events$", "event", None),
        (r"^/calendar/events$", "event", "default"),
        (r"^/calendars/(?P<coll>[^/]+)/events$", "event", "coll"),
        (r"^/todo/lists/(?P<coll>[^/]+)/tasks$", "todoTask", "coll"),
    ))
COLLECTION_KINDS = {"contact": "contactFolder", "event": "calendar", "todoTask": "todoTaskList"}
# The store's collection resource paths (store.py, contacts.py, calendars.py, todo.py) → (kind, user, collection).
STORE_RESOURCE = re.compile(r"^/users/(?P<user>[^/]+)/(?:contactFolders/(?P<contact>[^/]+)/contacts|"
                            r"calendars/(?P<event>[^/]+)/events|todo/lists/(?P<todoTask>[^/]+)/tasks)$")
ODATA_TYPES = {"contact": "#Microsoft.Graph.Contact", "event": "#Microsoft.Graph.Event",
               "todoTask": "#Microsoft.Graph.TodoTask"}


def invalid(message: str, code: str = "InvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def missing_subscription() -> GraphError:
    return GraphError(404, "ResourceNotFound", "The object was not found.")


@dataclass
class Settings:
    validation_timeout_seconds: float = 10.0  # Graph's handshake timeout
    reauthorize_before_seconds: float = 3600.0
    min_lifetime_minutes: float = 45.0
    max_lifetime_minutes: dict[str, float] = field(
        default_factory=lambda: {"contact": 10_070.0, "event": 10_070.0, "todoTask": 4_230.0})
    max_per_mailbox: int = 1000


@dataclass
class Subscription:
    id: str
    user_id: str
    client_id: str
    resource: str
    kind: str
    collection_id: str | None
    change_types: list[str]
    notification_url: str
    lifecycle_url: str | None
    expiration: float
    client_state: str | None
    tls_version: str
    immutable_ids: bool
    reauthorization_sent_for: float | None = None

    def json(self, context: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.context": context} if context else {}
        out.update({
            "id": self.id, "resource": self.resource, "applicationId": self.client_id,
            "changeType": ",".join(self.change_types), "clientState": self.client_state,
            "notificationUrl": self.notification_url, "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url, "expirationDateTime": iso7(self.expiration),
            "creatorId": self.user_id, "includeResourceData": False, "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None, "encryptionCertificateId": None, "notificationUrlAppId": None,
            "notificationContentType": "application/json",
        })
        return out
