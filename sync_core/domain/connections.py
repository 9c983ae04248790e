"""Each CRM user's connection to Microsoft 365: status, the Microsoft account, their settings,
their encrypted token cache, and the last outcome the settings page shows. The stores are in ports.py.
"""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import Field

from sync_core.domain.errors import AlreadyExistsError
from sync_core.domain.models import Frozen, UserSyncSettings


class ConnectionStatus(StrEnum):
    NOT_CONNECTED = "not_connected"
    CONNECTED = "connected"
    RECONNECT_NEEDED = "reconnect_needed"


class Connection(Frozen):
    tenant_id: str
    user_id: str
    status: ConnectionStatus = ConnectionStatus.NOT_CONNECTED
    ms_account: str | None = None  # the Microsoft account's userPrincipalName
    ms_user_id: str | None = None
    connected_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None  # why it failed and how to fix it, shown to the user
    last_run_id: str | None = None
    settings: UserSyncSettings
    etag: str | None = Field(default=None, exclude=True)

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.user_id)


class _Stored(Protocol):
    def get(self, tenant_id: str, user_id: str) -> Connection | None: ...
    def save(self, connection: Connection) -> Connection: ...


class CreatedOnFirstUse:
    """get_or_create for a connection store, over its get and save (a mixin of every ConnectionStore)."""

    def get_or_create(self: _Stored, tenant_id: str, user_id: str) -> Connection:
        found = self.get(tenant_id, user_id)
        if found is not None:
            return found
        try:
            return self.save(Connection(tenant_id=tenant_id, user_id=user_id,
                                        settings=UserSyncSettings(tenant_id=tenant_id, user_id=user_id)))
        except AlreadyExistsError:  # created by a concurrent request meanwhile
            found = self.get(tenant_id, user_id)
            assert found is not None
            return found
