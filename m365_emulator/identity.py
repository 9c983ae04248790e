"""The Microsoft identity platform (v2.0 endpoints), emulated over the shared `Core`.

Routes, for a tenant segment that is the core's tenant id, `common` or `organizations`:

- `GET /{tenant}/v2.0/.well-known/openid-configuration`, `GET /{tenant}/discovery/v2.0/keys`
- `GET|POST /{tenant}/oauth2/v2.0/authorize` -> sign-in page -> consent page (asked once per user and app)
  -> the app's redirect URI with `code` and `state` (response_mode query, fragment or form_post)
- `POST /{tenant}/oauth2/v2.0/token`: `authorization_code` and `refresh_token` grants
- `GET /{tenant}/oauth2/v2.0/logout`, `GET /error?code=N`

Behaviour chosen to match Microsoft's documentation:
- A refresh returns a new refresh token, and the old one keeps working until it expires: "The Microsoft
  identity platform doesn't revoke old refresh tokens when used to fetch new access tokens"
  (learn.microsoft.com/entra/identity-platform/refresh-tokens). Each refresh token expires 90 days
  (`core.refresh_token_max_inactive`) after it was issued, by the emulator clock: AADSTS700082.
- Revoking a user (`core.revoke`) fails every refresh token and unredeemed code issued before it
  (AADSTS50173) and ends the browser session; issued access tokens live until they expire.
- Codes are single use (AADSTS54005), expire after 10 minutes (AADSTS70008), and are bound to their
  client, redirect URI (AADSTS500112) and PKCE challenge (AADSTS501481).
- An unknown client or an unregistered redirect URI gets an error page, never a redirect.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from m365_emulator import identity_pages as pages
from m365_emulator.core import App, Core, User
from m365_emulator.identity_errors import MESSAGES, IdentityError, duration, iso
from m365_emulator.identity_scopes import ScopeRequest, describe, parse_scopes
from m365_emulator.identity_tokens import SigningKey, client_info, id_token_claims, pkce_matches

TENANT_ALIASES = ("common", "organizations")
SESSION_COOKIE = "ESTSAUTH"
RESPONSE_MODES = ("query", "fragment", "form_post")
PENDING_LIFETIME = 3600  # how long a sign-in page stays usable
NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
# The sign-in pages must not be framed by another site (clickjacking), as at login.microsoftonline.com.
PAGE_HEADERS = {**NO_STORE, "X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
# RFC 7636: an S256 challenge is a base64url SHA-256 digest; a plain one is the 43-128 character verifier.
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


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


class IdentityPlatform:
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

    # ----- authorize -------------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        params = {k: str(v) for k, v in
                  (request.query_params if request.method == "GET" else await request.form()).items()}
        try:
            tenant = self._tenant(request, "invalid_request")
            app = self._app(params.get("client_id"), tenant)
            redirect_uri = self._registered_redirect(app, params.get("redirect_uri"))
        except IdentityError as err:
            # The redirect URI is not trusted: the person sees the error, the app hears nothing.
            return self._error_page(request, err)
        response_mode = params.get("response_mode") or "query"
        if response_mode not in RESPONSE_MODES:
            return self._send_error(request, redirect_uri, "query", params.get("state"),
                                    IdentityError("invalid_request", 9002313))
        try:
            pending = self._pending_from(tenant, app, redirect_uri, response_mode, params)
        except IdentityError as err:
            return self._send_error(request, redirect_uri, response_mode, params.get("state"), err)

        session = self._session(request)
        user = self.core.users.get(session.user_id) if session else None
        hint = pending.login_hint.lower()
        if user and pending.prompt not in ("login", "select_account") \
                and (not hint or hint == user.user_principal_name.lower()):
            pending.user_id = user.id
            return self._after_sign_in(request, pending, session)
        if pending.prompt == "none":
            return self._send_error(request, redirect_uri, response_mode, pending.state,
                                    IdentityError("login_required", 50058))
        self._remember(pending)
        return HTMLResponse(pages.sign_in_page(action=f"{self._base(request)}/{tenant}/login", flow=pending.id,
                                               app_name=app.display_name, login=pending.login_hint),
                            headers=PAGE_HEADERS)

    def _app(self, client_id: str | None, tenant: str) -> App:
        if not client_id:
            raise IdentityError("invalid_request", 900144, parameter="client_id")
        app = self.core.apps.get(client_id)
        if app is None:
            raise IdentityError("unauthorized_client", 700016, client_id=client_id, tenant=tenant)
        return app

    @staticmethod
    def _registered_redirect(app: App, redirect_uri: str | None) -> str:
        if not redirect_uri:
            # Without a redirect_uri Microsoft uses the registration's only one; with several it cannot choose.
            if len(app.redirect_uris) == 1:
                return app.redirect_uris[0]
            raise IdentityError("invalid_request", 900971)
        # Exact match, case and trailing slash included, as Microsoft compares them.
        if redirect_uri not in app.redirect_uris:
            raise IdentityError("invalid_request", 50011, redirect_uri=redirect_uri, client_id=app.client_id)
        return redirect_uri

    def _pending_from(self, tenant: str, app: App, redirect_uri: str, response_mode: str,
                      params: dict[str, str]) -> PendingSignIn:
        response_type = params.get("response_type")
        if not response_type:
            raise IdentityError("invalid_request", 900144, parameter="response_type")
        if response_type != "code":
            raise IdentityError("unsupported_response_type", 700051, response_type=response_type)
        scope = params.get("scope", "")
        scopes = parse_scopes(scope, app.client_id)
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or ("plain" if challenge else None)
        if challenge:
            if method not in ("S256", "plain"):
                raise IdentityError("invalid_request", 9002313)
            if not _CHALLENGE.match(challenge) or (method == "S256" and len(challenge) != 43):
                raise IdentityError("invalid_request", 501491)
        return PendingSignIn(
            id=secrets.token_urlsafe(24), tenant=tenant, app=app, redirect_uri=redirect_uri,
            response_mode=response_mode, state=params.get("state"), nonce=params.get("nonce") or None,
            scope=scope, scopes=scopes, code_challenge=challenge, code_challenge_method=method if challenge else None,
            prompt=params.get("prompt", "").lower(), login_hint=params.get("login_hint", ""),
            created_at=self.core.clock.now())

    def _after_sign_in(self, request: Request, pending: PendingSignIn, session: BrowserSession | None) -> Response:
        assert pending.user_id is not None
        consented = self.core.consented_scopes(pending.user_id, pending.app.client_id)
        items = pending.scopes.consent_items(consented)
        if pending.prompt == "consent" or any(item not in consented for item in items):
            if pending.prompt == "none":
                return self._send_error(request, pending.redirect_uri, pending.response_mode, pending.state,
                                        IdentityError("consent_required", 65001, client_id=pending.app.client_id))
            self._remember(pending)
            user = self.core.users[pending.user_id]
            return HTMLResponse(pages.consent_page(
                action=f"{self._base(request)}/{pending.tenant}/consent", flow=pending.id,
                app_name=pending.app.display_name, account=user.user_principal_name,
                items=[(item, describe(item)) for item in items]), headers=PAGE_HEADERS)
        return self._send_code(pending, session)

    def _send_code(self, pending: PendingSignIn, session: BrowserSession | None) -> Response:
        assert pending.user_id is not None
        self._forget(pending.id)
        code = self.core.issue_authorization_code(
            client_id=pending.app.client_id, user_id=pending.user_id, redirect_uri=pending.redirect_uri,
            scope=pending.scope, nonce=pending.nonce, code_challenge=pending.code_challenge,
            code_challenge_method=pending.code_challenge_method)
        fields = {"code": code.code}
        if pending.state is not None:
            fields["state"] = pending.state
        if session:
            fields["session_state"] = str(uuid.uuid5(uuid.NAMESPACE_URL, session.id))
        return self._respond(pending.redirect_uri, pending.response_mode, fields)

    def _send_error(self, request: Request, redirect_uri: str, response_mode: str, state: str | None,
                    err: IdentityError, **extra: str) -> Response:
        body = err.body(now=self.core.clock.now(), correlation_id=self._correlation(request),
                        base_url=self._base(request))
        fields = {"error": err.error, **extra, "error_description": str(body["error_description"]),
                  "error_uri": str(body["error_uri"])}
        if state is not None:
            fields["state"] = state
        return self._respond(redirect_uri, response_mode, fields)

    @staticmethod
    def _respond(redirect_uri: str, response_mode: str, fields: dict[str, str]) -> Response:
        if response_mode == "form_post":
            return HTMLResponse(pages.form_post_page(redirect_uri=redirect_uri, fields=fields), headers=PAGE_HEADERS)
        if response_mode == "fragment":
            return RedirectResponse(f"{redirect_uri}#{urlencode(fields)}", status_code=302, headers=NO_STORE)
        joiner = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{joiner}{urlencode(fields)}", status_code=302, headers=NO_STORE)

    # ----- the sign-in and consent pages ----------------------------------------------------------

    async def login(self, request: Request) -> Response:
        form = await request.form()
        pending = self._recall(str(form.get("flow", "")))
        if pending is None:
            return self._stale_page()
        login = str(form.get("login", "")).strip()
        password = str(form.get("passwd", ""))
        user = self.core.user_by_upn(login) if login else None
        if user is None:
            error = "We couldn't find an account with that username. (AADSTS50034)"
        elif not hmac.compare_digest(user.password.encode(), password.encode()):
            error = "Your account or password is incorrect. (AADSTS50126)"
        else:
            session = self._start_session(user)
            pending.user_id = user.id
            response = self._after_sign_in(request, pending, session)
            response.set_cookie(SESSION_COOKIE, session.id, httponly=True, secure=True, samesite="lax", path="/")
            return response
        return HTMLResponse(pages.sign_in_page(action=f"{self._base(request)}/{pending.tenant}/login",
                                               flow=pending.id, app_name=pending.app.display_name, login=login,
                                               error=error), headers=PAGE_HEADERS)

    async def consent(self, request: Request) -> Response:
        form = await request.form()
        pending = self._recall(str(form.get("flow", "")))
        if pending is None or pending.user_id is None:
            return self._stale_page()
        if form.get("action") != "accept":
            self._forget(pending.id)
            return self._send_error(request, pending.redirect_uri, pending.response_mode, pending.state,
                                    IdentityError("access_denied", 65004), error_subcode="cancel")
        consented = self.core.consented_scopes(pending.user_id, pending.app.client_id)
        self.core.grant_consent(pending.user_id, pending.app.client_id, set(pending.scopes.consent_items(consented)))
        return self._send_code(pending, self._session(request))

    async def logout(self, request: Request) -> Response:
        session_id = request.cookies.get(SESSION_COOKIE)
        with self._lock:
            self._sessions.pop(session_id or "", None)
        target = request.query_params.get("post_logout_redirect_uri")
        registered = any(target in app.redirect_uris for app in self.core.apps.values()) if target else False
        response: Response
        if target and registered:
            response = RedirectResponse(target, status_code=302)
        else:
            response = HTMLResponse(pages.message_page(title="You signed out of your account",
                                                       message="It's a good idea to close all browser windows."))
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @staticmethod
    def _stale_page() -> HTMLResponse:
        return HTMLResponse(pages.message_page(
            title="This sign-in page has expired",
            message="Go back to the application and start signing in again."), status_code=400)

    def _remember(self, pending: PendingSignIn) -> None:
        now = self.core.clock.now()
        with self._lock:
            for key in [k for k, p in self._pending.items() if now - p.created_at > PENDING_LIFETIME]:
                del self._pending[key]
            self._pending[pending.id] = pending

    def _recall(self, flow_id: str) -> PendingSignIn | None:
        with self._lock:
            pending = self._pending.get(flow_id)
        if pending is None or self.core.clock.now() - pending.created_at > PENDING_LIFETIME:
            return None
        return pending

    def _forget(self, flow_id: str) -> None:
        with self._lock:
            self._pending.pop(flow_id, None)

    def _start_session(self, user: User) -> BrowserSession:
        session = BrowserSession(secrets.token_urlsafe(32), user.id, user.token_generation)
        with self._lock:
            self._sessions[session.id] = session
        return session

    def _session(self, request: Request) -> BrowserSession | None:
        with self._lock:
            session = self._sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        user = self.core.users.get(session.user_id) if session else None
        # A revoke ends browser sessions too (Microsoft revokes session cookies with refresh tokens).
        if session is None or user is None or user.token_generation != session.token_generation:
            return None
        return session

    # ----- token -----------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        try:
            tenant = self._tenant(request, "invalid_request")
            form = {k: str(v) for k, v in (await request.form()).items()}
            app = self._authenticate_client(request, form, tenant)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise IdentityError("invalid_request", 900144, parameter="grant_type")
            if grant_type == "authorization_code":
                body = self._redeem_code(request, app, form)
            elif grant_type == "refresh_token":
                body = self._redeem_refresh_token(request, app, form)
            else:
                raise IdentityError("unsupported_grant_type", 70003, grant_type=grant_type)
        except IdentityError as err:
            return self._error_json(request, err)
        return JSONResponse(body, headers=NO_STORE)

    def _authenticate_client(self, request: Request, form: dict[str, str], tenant: str) -> App:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise IdentityError("invalid_request", 9002313) from None
            basic_id, _, basic_secret = decoded.partition(":")
            # RFC 6749 2.3.1: both parts are form-urlencoded before base64.
            client_id, secret = unquote_plus(basic_id), unquote_plus(basic_secret)
        app = self._app(client_id, tenant)
        if not secret:
            raise IdentityError("invalid_client", 7000218)
        if not hmac.compare_digest(secret.encode(), app.client_secret.encode()):
            raise IdentityError("invalid_client", 7000215, client_id=app.client_id)
        return app

    def _redeem_code(self, request: Request, app: App, form: dict[str, str]) -> dict[str, Any]:
        value = form.get("code")
        if not value:
            raise IdentityError("invalid_request", 900144, parameter="code")
        code, already_redeemed = self.core.take_authorization_code(value, app.client_id)
        if code is None:
            raise IdentityError("invalid_grant", 9002313)
        if code.client_id != app.client_id:
            raise IdentityError("invalid_grant", 70000, parameter="code")
        if already_redeemed:
            raise IdentityError("invalid_grant", 54005)
        if self.core.clock.now() > code.expires_at:
            raise IdentityError("invalid_grant", 70008)
        redirect_uri = form.get("redirect_uri")
        if not redirect_uri:
            raise IdentityError("invalid_request", 900144, parameter="redirect_uri")
        if redirect_uri != code.redirect_uri:
            raise IdentityError("invalid_grant", 500112, redirect_uri=redirect_uri, expected=code.redirect_uri)
        if code.code_challenge and not pkce_matches(form.get("code_verifier"), code.code_challenge,
                                                    code.code_challenge_method or "plain"):
            raise IdentityError("invalid_grant", 501481)
        user = self._current_user(code.user_id, code.token_generation, code.issued_at)
        granted = parse_scopes(code.scope, app.client_id)
        requested = parse_scopes(form["scope"], app.client_id) if form.get("scope") else granted
        oidc = granted.oidc | requested.oidc
        return self._token_response(request, app, user, requested, oidc=oidc, nonce=code.nonce, form=form,
                                    with_refresh_token="offline_access" in oidc)

    def _redeem_refresh_token(self, request: Request, app: App, form: dict[str, str]) -> dict[str, Any]:
        value = form.get("refresh_token")
        if not value:
            raise IdentityError("invalid_request", 900144, parameter="refresh_token")
        with self.core.lock:
            token = self.core.refresh_tokens.get(value)
        if token is None:
            raise IdentityError("invalid_grant", 9002313)
        if token.client_id != app.client_id:
            raise IdentityError("invalid_grant", 70000, parameter="refresh_token' or 'assertion")
        user = self._current_user(token.user_id, token.token_generation, token.issued_at)
        limit = self.core.refresh_token_max_inactive
        if self.core.clock.now() - token.issued_at > limit:
            raise IdentityError("invalid_grant", 700082, issued=iso(token.issued_at), inactive=duration(limit))
        # Refresh tokens are not tied to a resource: without a scope, renew what the user granted the app.
        requested = parse_scopes(form.get("scope") or "https://graph.microsoft.com/.default openid profile offline_access",
                                 app.client_id)
        return self._token_response(request, app, user, requested, oidc=requested.oidc, nonce=None, form=form,
                                    with_refresh_token=True)

    def _current_user(self, user_id: str, generation: int, issued_at: float) -> User:
        user = self.core.users.get(user_id)
        if user is None:
            raise IdentityError("invalid_grant", 50034, username=user_id, tenant=self.core.tenant_id)
        if user.token_generation != generation:
            raise IdentityError("invalid_grant", 50173, issued=iso(issued_at), valid_from=iso(user.tokens_valid_from))
        return user

    def _token_response(self, request: Request, app: App, user: User, requested: ScopeRequest, *,
                        oidc: frozenset[str], nonce: str | None, form: dict[str, str],
                        with_refresh_token: bool) -> dict[str, Any]:
        consented = self.core.consented_scopes(user.id, app.client_id)
        graph = requested.graph_names(consented)
        if any(name not in consented for name in graph):
            raise IdentityError("invalid_grant", 65001, suberror="consent_required", client_id=app.client_id)
        access = self.core.issue_access_token(user.id, app.client_id, tuple(graph))
        now = self.core.clock.now()
        expires_in = max(0, int(access.expires_at - now))
        body: dict[str, Any] = {"token_type": "Bearer", "scope": requested.response_scope(consented),
                                "expires_in": expires_in, "ext_expires_in": expires_in,
                                "access_token": access.token}
        if with_refresh_token:
            body["refresh_token"] = self.core.issue_refresh_token(user.id, app.client_id).token
        if "openid" in oidc:
            body["id_token"] = self.key.sign(id_token_claims(
                user=user, client_id=app.client_id, issuer=self._issuer(self._base(request)),
                tenant_id=self.core.tenant_id, now=now, nonce=nonce, scopes=oidc))
        if form.get("client_info") == "1":
            body["client_info"] = client_info(user.id, self.core.tenant_id)
        return body


def build_identity_app(core: Core) -> Starlette:
    """The identity platform as an ASGI app; serve it over HTTPS (see m365_emulator.tls)."""
    platform = IdentityPlatform(core)
    app = Starlette(routes=[
        Route("/{tenant}/v2.0/.well-known/openid-configuration", platform.openid_configuration, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", platform.keys, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/authorize", platform.authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/token", platform.token, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/logout", platform.logout, methods=["GET"]),
        Route("/{tenant}/login", platform.login, methods=["POST"]),
        Route("/{tenant}/consent", platform.consent, methods=["POST"]),
        Route("/error", platform.error_lookup, methods=["GET"]),
    ])
    app.state.identity = platform
    return app
