"""The emulator's shared core: its clock, its users, and the access tokens Graph accepts.

Graph routes (resources/), the identity platform (identity/) and the control API all
share one `Core`. Everything is in memory, guarded by one lock; `--state-file` persists it.
"""
from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field


class Clock:
    """Wall clock plus an offset that the control API can advance (token and subscription expiry)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class User:
    id: str
    display_name: str
    user_principal_name: str
    password: str
    # Bumped by /users/{id}/revoke: refresh tokens issued under an older generation fail (invalid_grant).
    token_generation: int = 0
    # When the last revoke happened (emulator clock): Microsoft quotes it as "TokensValidFrom" in AADSTS50173.
    tokens_valid_from: float = 0.0


@dataclass
class App:
    """An app registration: who may sign users in, and where codes may be sent."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    display_name: str = "crm365sync"


@dataclass
class AccessToken:
    token: str
    user_id: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class AuthorizationCode:
    """A code the authorize endpoint handed out: single use, short-lived, bound to its request."""

    code: str
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str  # the scope parameter of the authorize request, as sent
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    token_generation: int
    issued_at: float
    expires_at: float
    redeemed: bool = False


@dataclass
class RefreshToken:
    """A refresh token: bound to a user and a client, not to a resource (as at Microsoft)."""

    token: str
    user_id: str
    client_id: str
    token_generation: int
    issued_at: float


@dataclass
class Core:
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    clock: Clock = field(default_factory=Clock)
    users: dict[str, User] = field(default_factory=dict)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    access_token_lifetime: int = 3600
    authorization_codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    # Scopes each user granted each app on the consent page, keyed by (user_id, client_id).
    consents: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    authorization_code_lifetime: int = 600
    # Microsoft's default: a refresh token unused for 90 days expires (AADSTS700082).
    refresh_token_max_inactive: int = 90 * 24 * 3600

    def add_user(self, display_name: str, user_principal_name: str, password: str | None = None) -> User:
        with self.lock:
            for existing in self.users.values():
                if existing.user_principal_name.lower() == user_principal_name.lower():
                    raise ValueError(f"user {user_principal_name} already exists")
            user = User(str(uuid.uuid4()), display_name, user_principal_name, password or secrets.token_urlsafe(12))
            self.users[user.id] = user
            return user

    def register_app(self, client_id: str, client_secret: str, redirect_uris: tuple[str, ...]) -> App:
        with self.lock:
            app = App(client_id, client_secret, tuple(redirect_uris))
            self.apps[client_id] = app
            return app

    def user_by_upn(self, user_principal_name: str) -> User | None:
        with self.lock:
            return next((u for u in self.users.values()
                         if u.user_principal_name.lower() == user_principal_name.lower()), None)

    def issue_access_token(self, user_id: str, client_id: str, scopes: tuple[str, ...]) -> AccessToken:
        with self.lock:
            token = AccessToken("eyEmu." + secrets.token_urlsafe(32), user_id, client_id, scopes,
                                self.clock.now() + self.access_token_lifetime)
            self.access_tokens[token.token] = token
            return token

    def user_for_access_token(self, token: str) -> User | None:
        """The mailbox a Bearer token opens, or None when unknown or expired (by the emulator clock)."""
        with self.lock:
            found = self.access_tokens.get(token)
            if found is None or found.expires_at <= self.clock.now():
                return None
            return self.users.get(found.user_id)

    def revoke(self, user_id: str) -> None:
        """Refresh tokens issued before now fail with invalid_grant. Issued access tokens stay valid
        until they expire, as in Microsoft 365 (revoking sign-in sessions does not recall them)."""
        with self.lock:
            self.users[user_id].token_generation += 1
            self.users[user_id].tokens_valid_from = self.clock.now()

    def issue_refresh_token(self, user_id: str, client_id: str) -> RefreshToken:
        with self.lock:
            token = RefreshToken("0.AEmu." + secrets.token_urlsafe(48), user_id, client_id,
                                 self.users[user_id].token_generation, self.clock.now())
            self.refresh_tokens[token.token] = token
            return token

    def issue_authorization_code(self, *, client_id: str, user_id: str, redirect_uri: str, scope: str,
                                 nonce: str | None, code_challenge: str | None,
                                 code_challenge_method: str | None) -> AuthorizationCode:
        with self.lock:
            now = self.clock.now()
            code = AuthorizationCode("1.AEmu." + secrets.token_urlsafe(48), client_id, user_id, redirect_uri,
                                     scope, nonce, code_challenge, code_challenge_method,
                                     self.users[user_id].token_generation, now,
                                     now + self.authorization_code_lifetime)
            self.authorization_codes[code.code] = code
            return code

    def take_authorization_code(self, code: str, client_id: str) -> tuple[AuthorizationCode | None, bool]:
        """Marks a code redeemed by its own client and returns (code, was_already_redeemed), atomically,
        so two concurrent redemptions cannot both succeed. Another client's attempt does not consume it."""
        with self.lock:
            found = self.authorization_codes.get(code)
            if found is None or found.client_id != client_id:
                return found, False
            already = found.redeemed
            found.redeemed = True
            return found, already

    def grant_consent(self, user_id: str, client_id: str, scopes: set[str]) -> None:
        with self.lock:
            self.consents.setdefault((user_id, client_id), set()).update(scopes)

    def consented_scopes(self, user_id: str, client_id: str) -> set[str]:
        with self.lock:
            return set(self.consents.get((user_id, client_id), set()))
