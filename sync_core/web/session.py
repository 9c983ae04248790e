"""Who is calling, for every page: launch links (single-use nonces in Table Storage), the
session cookie and CSRF checks, on top of sync_core.web.auth."""
from __future__ import annotations

import time
from collections.abc import Mapping

from sync_core.adapters.tables.common import Table, key_part
from sync_core.app.per_services import per_services
from sync_core.bootstrap import Services
from sync_core.domain.errors import AlreadyExistsError
from sync_core.web.http import HttpError, WebRequest
from sync_core.web.auth import (
    SESSION_COOKIE,
    AuthError,
    Caller,
    check_csrf,
    csrf_token,
    issue_session,
    read_session,
    session_cookie_header,
    verify_launch,
)

_LAUNCH_PARAMS = ("tenant", "user", "exp", "nonce", "sig")


class LaunchNonces:
    """Nonces of launch links already used (table "launchnonces"), per tenant and user: the CRM of each
    tenant picks its nonces, so one tenant's nonce never blocks another's link. A nonce row is written
    with insert-only semantics, so two concurrent uses of one link cannot both succeed."""

    def __init__(self, services: Services) -> None:
        self.table = Table(services.table_service, services.settings.storage_name("launchnonces"), services.counter)

    @staticmethod
    def _partition(nonce: str) -> str:
        return "n" + key_part(nonce[:2])

    def use(self, tenant_id: str, user_id: str, nonce: str, expires: int) -> bool:
        row = f"{key_part(tenant_id)}_{key_part(user_id)}_{key_part(nonce)}"
        try:
            self.table.create({"PartitionKey": self._partition(nonce), "RowKey": row, "expires": expires})
        except AlreadyExistsError:
            return False
        return True

    def purge_expired(self, now: float | None = None, limit: int = 1000) -> int:
        """Delete nonces whose link has expired (they can no longer be replayed anyway)."""
        cutoff = int(now if now is not None else time.time())
        removed = 0
        for entity in self.table.query("expires lt @now", {"now": cutoff}, page_size=min(limit, 1000),
                                       max_items=limit, select=["PartitionKey", "RowKey"]):
            self.table.delete(str(entity["PartitionKey"]), str(entity["RowKey"]))
            removed += 1
        return removed


def launch_nonces(services: Services) -> LaunchNonces:
    return per_services(services, "_launch_nonces", LaunchNonces)


def secure_cookies(services: Services) -> bool:
    return services.settings.public_base_url.startswith("https://")


def start_session(services: Services, params: Mapping[str, str]) -> tuple[Caller, str]:
    """Verify a launch link; returns the caller and the Set-Cookie header value of their session."""
    present = {key: params[key] for key in _LAUNCH_PARAMS if key in params}
    secret = services.settings.crm_launch_secret
    tenant_id, user_id = verify_launch(secret, present, use_nonce=launch_nonces(services).use)
    cookie = issue_session(secret, tenant_id, user_id)
    caller = read_session(secret, cookie)
    return caller, session_cookie_header(cookie, secure=secure_cookies(services))


def current_caller(services: Services, request: WebRequest) -> Caller:
    """The caller named by the session cookie; AuthError (401) when there is none or it is invalid."""
    return read_session(services.settings.crm_launch_secret, request.cookie(SESSION_COOKIE))


def csrf_for(services: Services, caller: Caller) -> str:
    return csrf_token(services.settings.crm_launch_secret, caller)


def require_csrf(services: Services, caller: Caller, form: Mapping[str, str]) -> None:
    try:
        check_csrf(services.settings.crm_launch_secret, caller, form.get("csrf"))
    except AuthError as exc:
        raise HttpError(403, str(exc), "The form could not be accepted") from None
