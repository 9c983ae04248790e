"""Delegated Microsoft tokens: MSAL per-user token caches, encrypted at rest, and the
azure-core TokenCredential that msgraph-sdk calls.

The cache is saved whenever MSAL changes it, because a refresh rotates the refresh token and
peers that dropped the new one broke after 90 days. `invalid_grant` becomes ReconnectNeededError.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import msal
import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sync_core.domain.errors import ReconnectNeededError, SyncError
from sync_core.redaction import register_secret
from sync_core.settings import AppSettings

GRAPH_SCOPES = [
    "https://graph.microsoft.com/Contacts.ReadWrite",
    "https://graph.microsoft.com/Tasks.ReadWrite",
    "https://graph.microsoft.com/Calendars.ReadWrite",
    "https://graph.microsoft.com/User.Read",
]


class TokenCipher:
    """AES-256-GCM with the user's id as associated data: a blob copied to another user's row
    does not decrypt."""

    VERSION = b"v1"

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("token encryption key must be 32 bytes")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, user_id: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), user_id.encode())
        return (self.VERSION + b"." + base64.urlsafe_b64encode(nonce + sealed)).decode()

    def decrypt(self, blob: str, user_id: str) -> str:
        version, _, payload = blob.encode().partition(b".")
        if version != self.VERSION:
            raise SyncError("token cache was written in an unknown format")
        raw = base64.urlsafe_b64decode(payload)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], user_id.encode()).decode()
        except InvalidTag:
            raise SyncError("token cache does not decrypt with the configured key") from None


def register_token_cache(serialized: str) -> None:
    """Every token of a user's MSAL cache becomes a secret no log record may show: refresh tokens (and
    MSA access tokens) are opaque, so no pattern can recognise them."""
    try:
        cache = json.loads(serialized)
    except ValueError:
        return  # not a cache MSAL could read either; it holds no token we could name
    for section in ("AccessToken", "RefreshToken", "IdToken"):
        entries = cache.get(section) if isinstance(cache, dict) else None
        for entry in (entries or {}).values():
            if isinstance(entry, dict) and isinstance(entry.get("secret"), str):
                register_secret(entry["secret"], runtime=True)


def http_session(settings: AppSettings) -> requests.Session:
    """requests session for MSAL: trusts the local identity emulator's CA when configured.
    trust_env=False because REQUESTS_CA_BUNDLE would otherwise override `verify`."""
    session = requests.Session()
    session.trust_env = False
    if settings.identity_ca_file:
        session.verify = settings.identity_ca_file
    return session


def msal_app(settings: AppSettings, cache: msal.SerializableTokenCache | None = None,
             session: requests.Session | None = None) -> msal.ConfidentialClientApplication:
    local = not settings.identity_authority.startswith("https://login.microsoftonline.com")
    return msal.ConfidentialClientApplication(
        settings.client_id,
        client_credential=settings.client_secret,
        authority=settings.identity_authority,
        token_cache=cache,
        http_client=session or http_session(settings),
        validate_authority=not local,
        instance_discovery=False if local else None,
    )


class MsalCredential:
    """An azure-core TokenCredential backed by one user's MSAL cache.

    `load()` returns the decrypted serialized cache (or None); `save(serialized)` persists it.
    """

    def __init__(self, settings: AppSettings, user_id: str, load: Callable[[], str | None],
                 save: Callable[[str], None], session: requests.Session | None = None) -> None:
        self.user_id = user_id
        self._save = save
        self._lock = threading.Lock()
        self.cache = msal.SerializableTokenCache()
        serialized = load()
        if serialized:
            self.cache.deserialize(serialized)
        self.app = msal_app(settings, self.cache, session)
        self._force_refresh = False

    def invalidate(self) -> None:
        """Graph rejected the cached access token (revoked, or clocks disagree): the next
        get_token redeems the refresh token instead of trusting MSAL's cache."""
        self._force_refresh = True

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        with self._lock:
            accounts = self.app.get_accounts()
            if not accounts:
                raise ReconnectNeededError("no Microsoft account is connected for this user")
            wanted = [s for s in scopes if not s.endswith("/.default")] or GRAPH_SCOPES
            result = self.app.acquire_token_silent_with_error(wanted, account=accounts[0],
                                                              force_refresh=self._force_refresh)
            self._force_refresh = False
            self._persist()
            if not result:
                raise ReconnectNeededError("Microsoft did not return a token; sign in again")
            if "access_token" not in result:
                error = str(result.get("error", "unknown_error"))
                codes = ",".join(str(c) for c in result.get("error_codes", []) or [])
                if error in ("invalid_grant", "interaction_required", "invalid_client"):
                    raise ReconnectNeededError(f"Microsoft refused the saved sign-in ({error}{' AADSTS' + codes if codes else ''})")
                raise SyncError(f"token request failed: {error}")
            expires_in = int(result.get("expires_in", 3600))
            return AccessToken(str(result["access_token"]), int(time.time()) + expires_in)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        token = self.get_token(*scopes)
        return AccessTokenInfo(token.token, token.expires_on)

    def _persist(self) -> None:
        if self.cache.has_state_changed:
            self._save(self.cache.serialize())
            self.cache.has_state_changed = False

    def close(self) -> None:
        return None


class StaticTokenCredential:
    """A TokenCredential from a callable that returns (token, expires_on). For the emulator's
    control-API tokens in tests and benchmarks."""

    def __init__(self, fetch: Callable[[], tuple[str, int]]) -> None:
        self._fetch = fetch
        self._token: AccessToken | None = None

    def invalidate(self) -> None:
        self._token = None

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        if self._token is None or self._token.expires_on - 60 < time.time():
            token, expires_on = self._fetch()
            self._token = AccessToken(token, expires_on)
        return self._token

    def close(self) -> None:
        return None
