"""A Microsoft sign-in in progress (the OAuth authorization-code flow of app/oauth.py), kept server-side
under its state until the session that started it finishes it."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PendingSignIn:
    state: str
    tenant_id: str
    user_id: str
    session_id: str
    expires: int  # epoch seconds
    flow: str = field(repr=False)  # MSAL's flow as JSON: secrets (PKCE verifier, nonce), sealed when stored
    response: str = field(default="", repr=False)  # Microsoft's answer as JSON once received ("" before)
    etag: str | None = None
