"""The authorization endpoint and the pages behind it: validate an authorize request, sign the user in (or reuse
the browser session), ask consent once per user and app, and send the code (or the error) to the redirect URI."""
from __future__ import annotations

import hmac
import secrets
import uuid
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from m365_emulator.identity import pages
from m365_emulator.identity.base import (
    CHALLENGE,
    NO_STORE,
    PAGE_HEADERS,
    PENDING_LIFETIME,
    RESPONSE_MODES,
    SESSION_COOKIE,
    BrowserSession,
    PendingSignIn,
    PlatformBase,
)
from m365_emulator.identity.errors import IdentityError
from m365_emulator.identity.scopes import describe, parse_scopes
from m365_emulator.kernel.core import App, User


class SignIn(PlatformBase):
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
            if not CHALLENGE.match(challenge) or (method == "S256" and len(challenge) != 43):
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
