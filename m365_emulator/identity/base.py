"""What every part of the identity platform shares: the platform's state (signing key, pending sign-ins, browser
sessions), the request context (tenant segment, issuer, correlation id, error answers) and discovery."""
from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from m365_emulator.identity import pages
from m365_emulator.identity.errors import MESSAGES, IdentityError
from m365_emulator.identity.scopes import ScopeRequest
from m365_emulator.identity.tokens import SigningKey
from m365_emulator.kernel.core import App, Core

TENANT_ALIASES = ("common", "organizations")
SESSION_COOKIE = "ESTSAUTH"
RESPONSE_MODES = ("query", "fragment", "form_post")
PENDING_LIFETIME = 3600  # how long a sign-in page stays usable
NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
# The sign-in pages must not be framed by another site (clickjacking), as at login.microsoftonline.com.
PAGE_HEADERS = {**NO_STORE, "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
# RFC 7636: an S256 challenge is a base64url SHA-256 digest; a plain one is the 43-128 character verifier.
CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


@dataclass
class PendingSignIn:
    """A validated authorize request waiting on the sign-in or consent page. The pages refer to it by
    an unguessable id, so a form post cannot change what was asked for."""

    id: str
    tenant: str
    app: App
    redirect_uri: str
    response_mode: str
    state: str | None
    nonce: str | None
    scope: str
    scopes: ScopeRequest
    code_challenge: str | None
    code_challenge_method: str | None
    prompt: str
    login_hint: str
    created_at: float
    user_id: str | None = None


@dataclass
class BrowserSession:
    """The signed-in browser (Microsoft's ESTSAUTH cookie): later authorize requests skip the password."""

    id: str
    user_id: str
    token_generation: int


class PlatformBase:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.key = SigningKey()
        self._lock = threading.Lock()
        self._pending: dict[str, PendingSignIn] = {}
        self._sessions: dict[str, BrowserSession] = {}

    # ----- request context -------------------------------------------------------------------------

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @staticmethod
    def _correlation(request: Request) -> str:
        # MSAL sends client-request-id; Microsoft reports it back as the correlation id.
        return request.headers.get("client-request-id") or str(uuid.uuid4())

    def _tenant(self, request: Request, error: str) -> str:
        tenant = str(request.path_params["tenant"])
        if tenant.lower() in TENANT_ALIASES or tenant.lower() == self.core.tenant_id.lower():
            return tenant
        raise IdentityError(error, 90002, tenant=tenant)

    def _issuer(self, base: str) -> str:
        return f"{base}/{self.core.tenant_id}/v2.0"

    def _error_json(self, request: Request, err: IdentityError) -> JSONResponse:
        body = err.body(now=self.core.clock.now(), correlation_id=self._correlation(request),
                        base_url=self._base(request))
        return JSONResponse(body, status_code=err.status, headers=NO_STORE)

    def _error_page(self, request: Request, err: IdentityError) -> HTMLResponse:
        body = err.body(now=self.core.clock.now(), correlation_id=self._correlation(request),
                        base_url=self._base(request))
        html = pages.error_page(message=err.message, trace_id=str(body["trace_id"]),
                                correlation_id=str(body["correlation_id"]), timestamp=str(body["timestamp"]))
        return HTMLResponse(html, status_code=400, headers=PAGE_HEADERS)

    # ----- discovery -------------------------------------------------------------------------------

    async def openid_configuration(self, request: Request) -> Response:
        try:
            tenant = self._tenant(request, "invalid_tenant")
        except IdentityError as err:
            return self._error_json(request, err)
        base = self._base(request)
        # Like Microsoft: the multi-tenant documents carry an issuer template, a tenant's its own issuer.
        issuer = f"{base}/{{tenantid}}/v2.0" if tenant.lower() in TENANT_ALIASES else self._issuer(base)
        return JSONResponse({
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": list(RESPONSE_MODES),
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer,
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "name", "nonce", "oid",
                                 "preferred_username", "email", "tid", "ver", "uti"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "tenant_region_scope": None,
        })

    async def keys(self, request: Request) -> Response:
        try:
            self._tenant(request, "invalid_tenant")
        except IdentityError as err:
            return self._error_json(request, err)
        return JSONResponse({"keys": [self.key.jwk(self._issuer(self._base(request)))]})

    async def error_lookup(self, request: Request) -> Response:
        """Where `error_uri` points: the AADSTS code's meaning."""
        code = request.query_params.get("code", "").removeprefix("AADSTS")
        if not code.isdigit() or int(code) not in MESSAGES:
            return HTMLResponse(pages.message_page(title="Unknown error code",
                                                   message=f"No AADSTS code '{code}' is known here."), 404)
        return HTMLResponse(pages.message_page(title=f"AADSTS{code}", message=MESSAGES[int(code)]))


    def _app(self, client_id: str | None, tenant: str) -> App:
        if not client_id:
            raise IdentityError("invalid_request", 900144, parameter="client_id")
        app = self.core.apps.get(client_id)
        if app is None:
            raise IdentityError("unauthorized_client", 700016, client_id=client_id, tenant=tenant)
        return app
