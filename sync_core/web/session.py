"""Who is calling, for every page: launch links (single-use nonces: services.nonces), the
session cookie and CSRF checks, on top of sync_core.web.auth."""
from __future__ import annotations

from collections.abc import Mapping

from sync_core.app.services import Services
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


def secure_cookies(services: Services) -> bool:
    return services.settings.public_base_url.startswith("https://")


def start_session(services: Services, params: Mapping[str, str]) -> tuple[Caller, str]:
    """Verify a launch link; returns the caller and the Set-Cookie header value of their session."""
    present = {key: params[key] for key in _LAUNCH_PARAMS if key in params}
    secret = services.settings.crm_launch_secret
    tenant_id, user_id = verify_launch(secret, present, use_nonce=services.nonces.use)
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
