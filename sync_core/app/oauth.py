"""Connecting a CRM user's Microsoft 365 mailbox: the authorization-code flow with MSAL
(PKCE, state, nonce, form_post), kept server-side.

Microsoft answers with a cross-site form POST, which a SameSite=Lax session cookie does not
accompany. So the callback only parks the code under its (unguessable, single-use) state and
redirects; `finish` then runs on a top-level GET that carries the session, and completes the
flow only for the very session that started it.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import msal

from sync_core.adapters.tokens import GRAPH_SCOPES, http_session, msal_app
from sync_core.domain.connections import Connection, ConnectionStatus
from sync_core.domain.errors import ConcurrencyError, NotFoundError, SyncError
from sync_core.domain.sign_ins import PendingSignIn
from sync_core.ports import ConnectionStore, SignInStore, TokenStore
from sync_core.settings import AppSettings
from sync_core.web.auth import AuthError, Caller

FLOW_LIFETIME = 600
_MAX_STATE = 128


class OAuthError(SyncError):
    """Microsoft refused the sign-in, or the answer did not complete a flow."""


@dataclass(frozen=True)
class Finished:
    connection: Connection
    newly_connected: bool


class OAuthFlows:
    def __init__(self, settings: AppSettings, sign_ins: SignInStore, connections: ConnectionStore,
                 tokens: TokenStore) -> None:
        self.settings = settings
        self.sign_ins = sign_ins
        self.connections = connections
        self.tokens = tokens

    @property
    def redirect_uri(self) -> str:
        return f"{self.settings.public_base_url}/api/oauth/callback"

    def start(self, caller: Caller, login_hint: str | None = None) -> str:
        """Begin a flow for this session; returns the URL to send the browser to."""
        app = msal_app(self.settings)
        flow = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=self.redirect_uri,
                                           response_mode="form_post", login_hint=login_hint)
        self.sign_ins.create(PendingSignIn(
            state=str(flow["state"]), tenant_id=caller.tenant_id, user_id=caller.user_id,
            session_id=caller.session_id, expires=int(time.time()) + FLOW_LIFETIME, flow=json.dumps(flow)))
        return str(flow["auth_uri"])

    def receive(self, form: Mapping[str, str]) -> str:
        """The redirect from Microsoft: park its answer under the flow's state; returns the state."""
        state = form.get("state", "")
        if not state or len(state) > _MAX_STATE:
            raise AuthError("the sign-in answer carries no valid state")
        pending = self.sign_ins.get(state)
        if pending is None:
            raise AuthError("the sign-in answer does not match a sign-in we started (or it was already used)")
        if pending.expires <= time.time():
            raise AuthError("the sign-in took too long: start again with Connect")
        if pending.response:
            raise AuthError("the sign-in answer was already received (replayed)")
        answer = {k: str(v)[:8192] for k, v in form.items()
                  if k in ("code", "state", "error", "error_description", "session_state", "client_info")}
        try:
            self.sign_ins.save(replace(pending, response=json.dumps(answer)))
        except ConcurrencyError:
            raise AuthError("the sign-in answer was already received (replayed)") from None
        return state

    def finish(self, caller: Caller, state: str) -> Finished:
        """Complete the flow for the session that started it; saves the encrypted token cache."""
        if not state or len(state) > _MAX_STATE:
            raise AuthError("no sign-in to finish")
        pending = self.sign_ins.get(state)
        if pending is None:
            raise AuthError("this sign-in was already finished or never started")
        if (pending.tenant_id, pending.user_id, pending.session_id) != (
                caller.tenant_id, caller.user_id, caller.session_id):
            raise AuthError("this sign-in was started by another session")
        try:
            self.sign_ins.take(pending)  # single use, even on failure
        except (ConcurrencyError, NotFoundError):
            raise AuthError("this sign-in was already finished") from None
        if pending.expires <= time.time():
            raise AuthError("the sign-in took too long: start again with Connect")
        if not pending.response:
            raise AuthError("Microsoft has not answered this sign-in yet")
        flow = json.loads(pending.flow)
        answer = json.loads(pending.response)
        if answer.get("error"):
            raise OAuthError(_describe(answer))
        cache = msal.SerializableTokenCache()
        app = msal_app(self.settings, cache, http_session(self.settings))
        try:
            result = app.acquire_token_by_auth_code_flow(flow, answer)
        except ValueError as exc:  # MSAL's own state/nonce checks
            raise AuthError(f"the sign-in answer did not match: {exc}") from None
        if "access_token" not in result:
            raise OAuthError(_describe(result))
        claims = result.get("id_token_claims") or {}
        self.tokens.save(caller.tenant_id, caller.user_id, cache.serialize())
        current = self.connections.get_or_create(caller.tenant_id, caller.user_id)
        newly = current.status is not ConnectionStatus.CONNECTED
        updated = self.connections.save(current.model_copy(update={
            "status": ConnectionStatus.CONNECTED,
            "ms_account": str(claims.get("preferred_username") or "") or None,
            "ms_user_id": str(claims.get("oid") or "") or None,
            "connected_at": current.connected_at if not newly else datetime.now(UTC),
            "last_error": None,
        }))
        return Finished(updated, newly)


def _describe(answer: Mapping[str, object]) -> str:
    error = str(answer.get("error") or "unknown_error")
    description = str(answer.get("error_description") or "").split("\r\n")[0].split(" Trace ID")[0]
    if error == "access_denied":
        return "You cancelled the Microsoft sign-in, so nothing was connected."
    return f"Microsoft refused the sign-in ({error}): {description[:300]}".rstrip(": ")
