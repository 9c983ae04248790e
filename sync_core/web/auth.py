"""Who is calling: CRM launch links, the session cookie, and CSRF tokens.

The CRM opens our pages for its signed-in user with a launch link signed with the shared launch
secret (HMAC-SHA256 over tenant, user, expiry and a nonce; single use, short-lived). We exchange
it for a signed session cookie. Every page and endpoint then reads the caller from the cookie,
never from a parameter, so one user can never act on another's connection.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from sync_core.domain.errors import SyncError

LAUNCH_MAX_LIFETIME = 300  # seconds a launch link may live
SESSION_LIFETIME = 8 * 3600
SESSION_COOKIE = "crm365_session"


class AuthError(SyncError):
    """The caller is not who they claim to be (bad signature, expired, replayed, no session)."""


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    user_id: str
    session_id: str
    expires_at: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant_id, self.user_id)


def _derive(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), f"crm365sync:{purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- launch links ----------------------------------------------------------------------------
def _launch_message(tenant_id: str, user_id: str, expires: int, nonce: str) -> bytes:
    return json.dumps([tenant_id, user_id, expires, nonce], separators=(",", ":")).encode()


def sign_launch(secret: str, tenant_id: str, user_id: str, *, lifetime: int = 120,
                now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """The query parameters of a launch link (what the CRM computes)."""
    expires = int((now if now is not None else time.time()) + lifetime)
    nonce = nonce or secrets.token_urlsafe(16)
    signature = hmac.new(secret.encode(), _launch_message(tenant_id, user_id, expires, nonce), hashlib.sha256)
    return {"tenant": tenant_id, "user": user_id, "exp": str(expires), "nonce": nonce, "sig": signature.hexdigest()}


def launch_url(base_url: str, secret: str, tenant_id: str, user_id: str, lifetime: int = 120) -> str:
    return f"{base_url}/api/launch?{urlencode(sign_launch(secret, tenant_id, user_id, lifetime=lifetime))}"


def verify_launch(secret: str, params: Mapping[str, str], *, use_nonce: Callable[[str, str, str, int], bool],
                  now: float | None = None) -> tuple[str, str]:
    """Check a launch link; `use_nonce(tenant, user, nonce, expires)` records the nonce (per tenant and
    user: each CRM tenant picks its own nonces) and returns False when it was already used. Returns
    (tenant_id, user_id)."""
    try:
        tenant_id, user_id = params["tenant"], params["user"]
        expires, nonce, signature = int(params["exp"]), params["nonce"], params["sig"]
    except (KeyError, ValueError):
        raise AuthError("the launch link is incomplete") from None
    if not (tenant_id and user_id and 8 <= len(nonce) <= 128 and len(tenant_id) <= 128 and len(user_id) <= 128):
        raise AuthError("the launch link is malformed")
    expected = hmac.new(secret.encode(), _launch_message(tenant_id, user_id, expires, nonce), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise AuthError("the launch link's signature is not valid")
    current = now if now is not None else time.time()
    if expires <= current:
        raise AuthError("the launch link has expired: open the integration from the CRM again")
    if expires - current > LAUNCH_MAX_LIFETIME:
        raise AuthError("the launch link lives too long to be trusted")
    if not use_nonce(tenant_id, user_id, nonce, expires):
        raise AuthError("the launch link was already used: open the integration from the CRM again")
    return tenant_id, user_id


# -- session cookie and CSRF -----------------------------------------------------------------
def issue_session(secret: str, tenant_id: str, user_id: str, *, now: float | None = None) -> str:
    payload = {"t": tenant_id, "u": user_id, "s": secrets.token_urlsafe(16),
               "e": int((now if now is not None else time.time()) + SESSION_LIFETIME)}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = _b64(hmac.new(_derive(secret, "session"), body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def read_session(secret: str, cookie: str | None, *, now: float | None = None) -> Caller:
    if not cookie or cookie.count(".") != 1:
        raise AuthError("no session: open the integration from the CRM")
    body, mac = cookie.split(".")
    expected = _b64(hmac.new(_derive(secret, "session"), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, mac):
        raise AuthError("the session is not valid: open the integration from the CRM")
    try:
        payload = json.loads(_unb64(body))
        caller = Caller(str(payload["t"]), str(payload["u"]), str(payload["s"]), int(payload["e"]))
    except (ValueError, KeyError, TypeError):
        raise AuthError("the session is not valid") from None
    if caller.expires_at <= (now if now is not None else time.time()):
        raise AuthError("the session has expired: open the integration from the CRM again")
    return caller


def csrf_token(secret: str, caller: Caller) -> str:
    return _b64(hmac.new(_derive(secret, "csrf"), caller.session_id.encode(), hashlib.sha256).digest())


def check_csrf(secret: str, caller: Caller, submitted: str | None) -> None:
    if not submitted or not hmac.compare_digest(csrf_token(secret, caller), submitted):
        raise AuthError("the form is out of date or did not come from this page; reload and try again")


def session_cookie_header(value: str, *, secure: bool, max_age: int = SESSION_LIFETIME) -> str:
    parts = [f"{SESSION_COOKIE}={value}", "Path=/", "HttpOnly", "SameSite=Lax", f"Max-Age={max_age}"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def cookie_from_header(header: str | None, name: str = SESSION_COOKIE) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
