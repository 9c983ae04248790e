"""The token endpoint: the authorization_code and refresh_token grants, client authentication, and the token
response (access, refresh and id tokens, client_info)."""
from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from m365_emulator.identity.base import NO_STORE, PlatformBase
from m365_emulator.identity.errors import IdentityError, duration, iso
from m365_emulator.identity.scopes import ScopeRequest, parse_scopes
from m365_emulator.identity.tokens import client_info, id_token_claims, pkce_matches
from m365_emulator.kernel.core import App, User


class TokenEndpoint(PlatformBase):
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
