"""The exceptions of sync_core. Adapters translate SDK errors into these at the boundary,
so the core never imports an SDK exception.

    SyncError
    ├── SettingsError            a setting is missing or malformed (message: one line)
    ├── StorageError             Table/Queue storage failed or is unreachable
    │   ├── ConcurrencyError     an ETag-conditional write lost a race (stale ETag)
    │   └── AlreadyExistsError   an insert found the entity already there
    ├── NotFoundError            the record does not exist (either side)
    ├── MicrosoftError           Microsoft Graph answered with an error
    │   ├── ThrottledError       429/503 with a Retry-After (seconds)
    │   ├── DeltaExpiredError    the stored deltaLink is no longer valid (410 / syncStateNotFound)
    │   └── TransientError       timeouts, dropped connections, 5xx: worth retrying later
    ├── ReconnectNeededError     the user's refresh token is dead (invalid_grant): they must reconnect
    ├── LeaseHeldError           another worker holds this user's sync lease
    └── InvalidRecordError       a record cannot be mapped; it is quarantined with this reason
"""
from __future__ import annotations

from datetime import datetime


class SyncError(Exception):
    """Base of every error raised by sync_core."""


class SettingsError(SyncError):
    """A setting is missing or malformed; the message is one line naming it."""


class StorageError(SyncError):
    """Table or Queue storage failed or is unreachable."""


class ConcurrencyError(StorageError):
    """An ETag-conditional write found a newer version."""


class AlreadyExistsError(StorageError):
    """An insert found the entity already present."""


class NotFoundError(SyncError):
    """The record does not exist."""


class MicrosoftError(SyncError):
    """Microsoft Graph answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ThrottledError(MicrosoftError):
    """Graph throttled us; retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float, status: int = 429, code: str | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class DeltaExpiredError(MicrosoftError):
    """The stored deltaLink expired; a full resync is needed."""


class TransientError(MicrosoftError):
    """A timeout, dropped connection or 5xx: retry later."""


class ReconnectNeededError(SyncError):
    """The user's consent or refresh token is no longer valid."""


class LeaseHeldError(SyncError):
    """Another worker holds this user's sync lease (until `expires_at`, when known)."""

    def __init__(self, message: str, *, expires_at: datetime | None = None) -> None:
        super().__init__(message)
        self.expires_at = expires_at


class InvalidRecordError(SyncError):
    """A record cannot be mapped or was rejected; it is quarantined with this reason."""
