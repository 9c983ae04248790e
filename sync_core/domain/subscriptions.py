"""Graph change-notification subscriptions as the app keeps them: one per user and kind. A record
whose `sub_id` is empty is owed: wanted, but its creation failed or had to wait."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Kind(StrEnum):
    CONTACTS = "contacts"
    TASKS = "tasks"


@dataclass(frozen=True)
class Subscription:
    tenant_id: str
    user_id: str
    kind: Kind
    sub_id: str  # "" while owed
    resource: str
    expires_at: datetime
    client_state: str = field(repr=False)
    etag: str | None = None  # of the user's record

    @property
    def owed(self) -> bool:
        return not self.sub_id


@dataclass(frozen=True)
class Owner:
    """Whose subscription an id is (what the webhook needs to check a notification)."""

    tenant_id: str
    user_id: str
    kind: Kind
    client_state: str = field(repr=False)
