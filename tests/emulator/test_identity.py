"""The emulated Microsoft identity platform, driven by the unmodified `msal` over real HTTPS.

One identity server (uvicorn on a free port, TLS from m365_emulator.tls) and one redirect receiver (a
plain HTTP server that records what the browser or the sign-in pages send back) run for the whole
session. The main flow goes through real headless Chromium; the other cases walk the same HTML forms
over HTTP (no JavaScript, which also proves the pages work without it).
"""
from __future__ import annotations

import base64
import json
import queue
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import msal
import pytest
import requests
import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from m365_emulator.kernel.core import App, Core, User
from m365_emulator.identity.app import build_identity_app
from m365_emulator.tls import TlsFiles, make_tls_files

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "identity"
CHROMIUM = Path("/usr/bin/chromium")
GRAPH_SCOPES = ["https://graph.microsoft.com/Contacts.ReadWrite", "https://graph.microsoft.com/Tasks.ReadWrite",
                "https://graph.microsoft.com/User.Read"]
DESCRIPTION = re.compile(r"^AADSTS(\d+): .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: (\S+)\r\n"
                         r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", re.S)


# ----- servers ---------------------------------------------------------------------------------------

class UvicornThread:
    """An ASGI app on 127.0.0.1:<free port> in a background thread, over TLS when given files."""

    def __init__(self, app: Any, tls: TlsFiles | None = None) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        # A client that never closes its keep-alive connection must not hold up the session's end.
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2,
                                ssl_certfile=str(tls.cert_file) if tls else None,
                                ssl_keyfile=str(tls.key_file) if tls else None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> UvicornThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("identity server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()


class RedirectReceiver:
    """The app's redirect URIs (/callback, /other): records each GET query or form POST they receive."""

    PATHS = ("/callback", "/other")

    def __init__(self) -> None:
        received: queue.Queue[tuple[str, str, dict[str, str]]] = queue.Queue()
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                parts = urlsplit(self.path)
                self._record("GET", parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                self._record("POST", urlsplit(self.path).path, dict(parse_qsl(body, keep_blank_values=True)))

            def _record(self, method: str, path: str, fields: dict[str, str]) -> None:
                if path not in RedirectReceiver.PATHS:  # e.g. the browser's /favicon.ico
                    self.send_error(404)
                    return
                received.put((method, path, fields))
                page = b"<!doctype html><title>Signed in</title><h1>You can close this window</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RedirectReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def take(self, timeout: float = 10) -> tuple[str, str, dict[str, str]]:
        return self.received.get(timeout=timeout)

    def clear(self) -> None:
        while not self.received.empty():
            self.received.get_nowait()


@dataclass
class Identity:
    core: Core
    app: App
    tls: TlsFiles
    base: str  # https://127.0.0.1:<port>
    receiver: RedirectReceiver
    sessions: list[requests.Session]

    @property
    def authority(self) -> str:
        return f"{self.base}/{self.core.tenant_id}"

    @property
    def redirect_uri(self) -> str:
        return self.app.redirect_uris[0]

    def http(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override verify
        session.verify = str(self.tls.ca_file)
        self.sessions.append(session)
        return session

    def close_sessions(self) -> None:
        """Closing the clients' TLS connections lets the server stop at once."""
        for session in self.sessions:
            session.close()
        self.sessions.clear()

    def msal(self, cache: msal.SerializableTokenCache | None = None, secret: str | None = None,
             ) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            self.app.client_id, client_credential=secret or self.app.client_secret, authority=self.authority,
            validate_authority=False, instance_discovery=False, http_client=self.http(), token_cache=cache)

    def new_user(self) -> User:
        tag = secrets.token_hex(3)
        return self.core.add_user(f"Adele Vance {tag}", f"adele.{tag}@contoso.onmicrosoft.com")


@pytest.fixture(scope="session")
def identity_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Identity]:
    core = Core()
    tls = make_tls_files(tmp_path_factory.mktemp("tls"))
    with RedirectReceiver() as receiver, UvicornThread(build_identity_app(core), tls) as server:
        app = core.register_app(str(uuid.uuid4()), "secret-" + secrets.token_urlsafe(16),
                                tuple(receiver.base + path for path in RedirectReceiver.PATHS))
        identity = Identity(core, app, tls, f"https://127.0.0.1:{server.port}", receiver, [])
        yield identity
        identity.close_sessions()


@pytest.fixture
def identity(identity_server: Identity) -> Identity:
    identity_server.receiver.clear()
    return identity_server


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is
# open, which would break later tests that run their own loop (msgraph-sdk via asyncio.run).
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--ignore-certificate-errors"])
        yield browser
        browser.close()


# ----- walking the sign-in pages without a browser ---------------------------------------------------

class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}, "buttons": []})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms:
            self.forms[-1]["buttons"].append((a.get("name", ""), a.get("value", ""), a.get("type", "submit")))


def only_form(html: str) -> dict[str, Any]:
    parser = _Forms()
    parser.feed(html)
    assert len(parser.forms) == 1, html
    return parser.forms[0]


def walk_sign_in(identity: Identity, http: requests.Session, auth_uri: str, user: User | None,
                 consent: str = "accept") -> dict[str, str]:
    """Follows the authorize pages like a person without JavaScript and returns what would reach the
    redirect URI (the form_post fields or the query of the final redirect)."""
    response = http.get(auth_uri, allow_redirects=False)
    for _ in range(4):
        if response.status_code == 302:
            location = response.headers["Location"]
            assert location.startswith(identity.receiver.base), location
            parts = urlsplit(location)
            return dict(parse_qsl(parts.fragment or parts.query))
        assert response.status_code == 200, response.text
        form = only_form(response.text)
        if form["action"].startswith(identity.receiver.base):
            # The form_post page: its button submits without script.
            assert ("", "", "submit") in form["buttons"]
            return dict(form["fields"])
        if "passwd" in form["fields"]:
            assert user is not None
            response = http.post(urljoin(response.url, form["action"]), allow_redirects=False, data={
                **form["fields"], "login": user.user_principal_name, "passwd": user.password})
        else:
            assert ("action", consent, "submit") in form["buttons"]
            response = http.post(urljoin(response.url, form["action"]), allow_redirects=False,
                                 data={**form["fields"], "action": consent})
    raise AssertionError("the authorize pages did not finish")


def signed_in(identity: Identity, user: User, cache: msal.SerializableTokenCache | None = None,
              **flow_options: Any) -> tuple[msal.ConfidentialClientApplication, dict[str, Any], dict[str, str]]:
    app = identity.msal(cache)
    flow = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=identity.redirect_uri,
                                       response_mode="form_post", **flow_options)
    fields = walk_sign_in(identity, identity.http(), flow["auth_uri"], user)
    return app, flow, fields


def assert_microsoft_error(result: dict[str, Any], error: str, code: int) -> None:
    assert result.get("error") == error, result
    assert result["error_codes"] == [code], result
    match = DESCRIPTION.match(result["error_description"])
    assert match and match.group(1) == str(code), result["error_description"]
    assert match.group(2) == result["correlation_id"]
    assert result["trace_id"] in result["error_description"]
    assert result["error_uri"].endswith(f"/error?code={code}")


def verify_id_token(identity: Identity, id_token: str) -> dict[str, Any]:
    """Checks the RS256 signature against the published JWKS and returns the claims."""
    keys = identity.http().get(f"{identity.authority}/discovery/v2.0/keys").json()["keys"]
    header_b64, claims_b64, signature_b64 = id_token.split(".")

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    header = json.loads(decode(header_b64))
    jwk = next(k for k in keys if k["kid"] == header["kid"])
    public = rsa.RSAPublicNumbers(int.from_bytes(decode(jwk["e"]), "big"),
                                  int.from_bytes(decode(jwk["n"]), "big")).public_key()
    try:
        public.verify(decode(signature_b64), f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(),
                      hashes.SHA256())
    except InvalidSignature:
        pytest.fail("id_token signature does not verify against the JWKS")
    assert header["alg"] == "RS256"
    return dict(json.loads(decode(claims_b64)))


def refresh_tokens_in(cache: msal.SerializableTokenCache) -> set[str]:
    return {rt["secret"] for rt in cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)}


# ----- tests -----------------------------------------------------------------------------------------

def test_discovery_documents_are_built_from_the_https_base(identity: Identity) -> None:
    http = identity.http()
    tenant = http.get(f"{identity.authority}/v2.0/.well-known/openid-configuration").json()
    assert tenant["issuer"] == f"{identity.base}/{identity.core.tenant_id}/v2.0"
    assert tenant["authorization_endpoint"] == f"{identity.authority}/oauth2/v2.0/authorize"
    assert tenant["token_endpoint"] == f"{identity.authority}/oauth2/v2.0/token"
    assert tenant["jwks_uri"] == f"{identity.authority}/discovery/v2.0/keys"
    assert tenant["end_session_endpoint"] == f"{identity.authority}/oauth2/v2.0/logout"
    assert set(tenant["response_modes_supported"]) == {"query", "fragment", "form_post"}

    common = http.get(f"{identity.base}/common/v2.0/.well-known/openid-configuration").json()
    assert common["issuer"] == f"{identity.base}/{{tenantid}}/v2.0"
    assert common["token_endpoint"] == f"{identity.base}/common/oauth2/v2.0/token"

    keys = http.get(tenant["jwks_uri"]).json()["keys"]
    assert [k["kty"] for k in keys] == ["RSA"] and keys[0]["kid"] == keys[0]["x5t"]

    unknown = http.get(f"{identity.base}/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert unknown.status_code == 400
    assert_microsoft_error(unknown.json(), "invalid_tenant", 90002)


@pytest.mark.browser
def test_msal_signs_in_through_chromium_refreshes_and_is_revoked(identity: Identity, chromium: Any) -> None:
    core, user = identity.core, identity.new_user()
    cache = msal.SerializableTokenCache()
    app = identity.msal(cache)
    flow = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=identity.redirect_uri, response_mode="form_post")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    context = chromium.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(flow["auth_uri"])
        assert page.get_by_role("heading", name="Sign in").is_visible()
        page.screenshot(path=str(ARTIFACTS / "sign-in.png"))
        page.get_by_label("Email address").fill(user.user_principal_name)
        page.get_by_label("Password").fill("not-the-password")
        page.get_by_role("button", name="Sign in").click()
        assert "incorrect" in page.get_by_role("alert").inner_text()
        assert page.get_by_label("Email address").input_value() == user.user_principal_name
        page.screenshot(path=str(ARTIFACTS / "sign-in-wrong-password.png"))
        page.get_by_label("Password").fill(user.password)
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("heading", name="Permissions requested").is_visible()
        assert page.get_by_text("Have full access to your contacts").is_visible()
        page.screenshot(path=str(ARTIFACTS / "consent.png"))
        page.get_by_role("button", name="Accept").click()
        method, path, fields = identity.receiver.take()
        page.wait_for_load_state()
        assert (method, path) == ("POST", "/callback")
        assert fields["state"] == flow["state"] and fields["code"]

        result = app.acquire_token_by_auth_code_flow(flow, fields)
        assert "access_token" in result, result
        assert core.user_for_access_token(result["access_token"]) == user
        assert set(GRAPH_SCOPES) <= set(result["scope"].split())
        claims = verify_id_token(identity, result["id_token"])
        assert claims["aud"] == identity.app.client_id and claims["oid"] == user.id
        assert claims["iss"] == f"{identity.base}/{core.tenant_id}/v2.0" and claims["tid"] == core.tenant_id
        assert claims["preferred_username"] == user.user_principal_name and claims["ver"] == "2.0"
        account = app.get_accounts()[0]
        assert account["home_account_id"] == f"{user.id}.{core.tenant_id}"
        assert account["username"] == user.user_principal_name
        assert cache.has_state_changed
        cache.has_state_changed = False
        first_refresh_token = refresh_tokens_in(cache)

        cached = app.acquire_token_silent_with_error(GRAPH_SCOPES, account)
        assert cached and cached["access_token"] == result["access_token"] and not cache.has_state_changed

        core.clock.advance(core.access_token_lifetime + 1)
        assert core.user_for_access_token(result["access_token"]) is None
        # MSAL judges expiry by the machine's clock, which the emulator's clock has left behind.
        refreshed = app.acquire_token_silent_with_error(GRAPH_SCOPES, account, force_refresh=True)
        assert refreshed and "access_token" in refreshed, refreshed
        assert core.user_for_access_token(refreshed["access_token"]) == user
        assert cache.has_state_changed
        rotated = refresh_tokens_in(cache)
        assert len(rotated) == 1 and rotated != first_refresh_token

        # Microsoft does not revoke a refresh token when it is used: the old one still works (HTTP Basic here).
        old = identity.http().post(f"{identity.authority}/oauth2/v2.0/token", auth=(
            identity.app.client_id, identity.app.client_secret), data={
            "grant_type": "refresh_token", "refresh_token": first_refresh_token.pop(),
            "scope": " ".join(GRAPH_SCOPES)})
        assert old.status_code == 200 and old.json()["refresh_token"] not in rotated

        # The browser stays signed in: another authorize goes straight back to the app, no page shown.
        again = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=identity.redirect_uri,
                                            response_mode="form_post")
        page.goto(again["auth_uri"])
        _, _, again_fields = identity.receiver.take()
        assert again_fields["state"] == again["state"] and "session_state" in again_fields

        core.revoke(user.id)
        revoked = app.acquire_token_silent_with_error(GRAPH_SCOPES, account, force_refresh=True)
        assert revoked is not None
        assert_microsoft_error(revoked, "invalid_grant", 50173)
        assert core.user_for_access_token(refreshed["access_token"]) == user  # access tokens live on

        # The revoke also ended the browser's session: signing in again asks for the password.
        page.goto(app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=identity.redirect_uri,
                                              response_mode="form_post")["auth_uri"])
        assert page.get_by_role("heading", name="Sign in").is_visible()
    finally:
        context.close()


@pytest.mark.browser
def test_form_post_page_works_without_javascript(identity: Identity, chromium: Any) -> None:
    user = identity.new_user()
    app = identity.msal()
    flow = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=identity.redirect_uri, response_mode="form_post",
                                       login_hint=user.user_principal_name)
    context = chromium.new_context(ignore_https_errors=True, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(flow["auth_uri"])
        assert page.get_by_label("Email address").input_value() == user.user_principal_name  # login_hint
        page.get_by_label("Password").fill(user.password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Accept").click()
        page.get_by_role("button", name="Continue").click()
        _, _, fields = identity.receiver.take()
    finally:
        context.close()
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, fields)


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")  # query mode on purpose
def test_consent_is_asked_once_and_the_session_skips_the_password(identity: Identity) -> None:
    user, http = identity.new_user(), identity.http()
    app = identity.msal()
    first = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=identity.redirect_uri)
    fields = walk_sign_in(identity, http, first["auth_uri"], user)
    assert "access_token" in app.acquire_token_by_auth_code_flow(first, fields)

    # Same browser, same app, same scopes: straight back with a code (query mode: a 302).
    again = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=identity.redirect_uri)
    response = http.get(again["auth_uri"], allow_redirects=False)
    assert response.status_code == 302
    assert "access_token" in app.acquire_token_by_auth_code_flow(
        again, dict(parse_qsl(urlsplit(response.headers["Location"]).query)))

    # prompt=login asks for the password again, prefilled from login_hint; consent is not asked again.
    forced = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=identity.redirect_uri, prompt="login",
                                         login_hint=user.user_principal_name)
    page = http.get(forced["auth_uri"], allow_redirects=False)
    form = only_form(page.text)
    assert form["fields"]["login"] == user.user_principal_name and "passwd" in form["fields"]
    signed = http.post(urljoin(page.url, form["action"]), allow_redirects=False,
                       data={**form["fields"], "passwd": user.password})
    assert signed.status_code == 302
    # A new scope needs consent again.
    more = app.initiate_auth_code_flow(["https://graph.microsoft.com/Calendars.ReadWrite"],
                                       redirect_uri=identity.redirect_uri)
    consent = http.get(more["auth_uri"], allow_redirects=False)
    assert consent.status_code == 200 and "Have full access to your calendars" in consent.text


def test_wrong_state_is_rejected_by_msal(identity: Identity) -> None:
    app, flow, fields = signed_in(identity, identity.new_user())
    with pytest.raises(ValueError, match="state mismatch"):
        app.acquire_token_by_auth_code_flow(flow, {**fields, "state": "forged"})


def test_wrong_pkce_verifier_is_invalid_grant(identity: Identity) -> None:
    app, flow, fields = signed_in(identity, identity.new_user())
    result = app.acquire_token_by_auth_code_flow({**flow, "code_verifier": secrets.token_urlsafe(43)}, fields)
    assert_microsoft_error(result, "invalid_grant", 501481)


def test_wrong_client_secret_is_invalid_client(identity: Identity) -> None:
    _, flow, fields = signed_in(identity, identity.new_user())
    result = identity.msal(secret="not-the-secret").acquire_token_by_auth_code_flow(flow, fields)
    assert_microsoft_error(result, "invalid_client", 7000215)

    correlation = str(uuid.uuid4())
    raw = identity.http().post(f"{identity.authority}/oauth2/v2.0/token", headers={"client-request-id": correlation},
                               data={"grant_type": "authorization_code", "client_id": identity.app.client_id,
                                     "client_secret": "wrong", "code": fields["code"],
                                     "redirect_uri": identity.redirect_uri})
    assert raw.status_code == 401 and raw.headers["Cache-Control"].startswith("no-store")
    body = raw.json()
    assert set(body) == {"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id",
                         "error_uri"}
    assert body["correlation_id"] == correlation
    assert_microsoft_error(body, "invalid_client", 7000215)


def test_unregistered_redirect_uri_or_client_gets_an_error_page(identity: Identity) -> None:
    http = identity.http()
    for client_id, redirect_uri, code in [
            (identity.app.client_id, identity.receiver.base + "/evil", 50011),
            (identity.app.client_id, identity.redirect_uri + "/", 50011),  # exact match only
            (str(uuid.uuid4()), identity.redirect_uri, 700016)]:
        response = http.get(f"{identity.authority}/oauth2/v2.0/authorize", allow_redirects=False, params={
            "client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
            "scope": "openid Contacts.ReadWrite", "state": "s", "response_mode": "form_post"})
        assert response.status_code == 400 and "Location" not in response.headers
        assert response.headers["Content-Type"].startswith("text/html")
        assert f"AADSTS{code}" in response.text and "<form" not in response.text
    assert identity.receiver.received.empty()


def test_a_code_is_single_use(identity: Identity) -> None:
    app, flow, fields = signed_in(identity, identity.new_user())
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, fields)
    assert_microsoft_error(app.acquire_token_by_auth_code_flow(flow, fields), "invalid_grant", 54005)


def test_a_code_expires_after_ten_minutes(identity: Identity) -> None:
    app, flow, fields = signed_in(identity, identity.new_user())
    identity.core.clock.advance(identity.core.authorization_code_lifetime + 1)
    assert_microsoft_error(app.acquire_token_by_auth_code_flow(flow, fields), "invalid_grant", 70008)


def test_a_code_is_bound_to_its_redirect_uri(identity: Identity) -> None:
    app, flow, fields = signed_in(identity, identity.new_user())
    other = {**flow, "redirect_uri": identity.app.redirect_uris[1]}
    assert_microsoft_error(app.acquire_token_by_auth_code_flow(other, fields), "invalid_grant", 500112)


def test_cancel_on_consent_returns_access_denied(identity: Identity) -> None:
    user = identity.new_user()
    app = identity.msal()
    flow = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=identity.redirect_uri, response_mode="form_post")
    fields = walk_sign_in(identity, identity.http(), flow["auth_uri"], user, consent="cancel")
    assert fields["error"] == "access_denied" and fields["error_subcode"] == "cancel"
    assert fields["state"] == flow["state"] and "code" not in fields
    result = app.acquire_token_by_auth_code_flow(flow, fields)
    assert result["error"] == "access_denied" and result["error_description"].startswith("AADSTS65004: ")


def test_refresh_tokens_expire_after_ninety_days_without_use(identity: Identity) -> None:
    core = identity.core
    cache = msal.SerializableTokenCache()
    app, flow, fields = signed_in(identity, identity.new_user(), cache)
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, fields)
    account = app.get_accounts()[0]
    original = refresh_tokens_in(cache).pop()

    core.clock.advance(89 * 86400)
    assert "access_token" in app.acquire_token_silent_with_error(GRAPH_SCOPES, account, force_refresh=True)
    core.clock.advance(2 * 86400)
    # The token MSAL rotated to on day 89 is fresh; the original one has been idle for 91 days.
    assert "access_token" in app.acquire_token_silent_with_error(GRAPH_SCOPES, account, force_refresh=True)
    stale = identity.http().post(f"{identity.authority}/oauth2/v2.0/token", data={
        "grant_type": "refresh_token", "client_id": identity.app.client_id,
        "client_secret": identity.app.client_secret, "refresh_token": original})
    assert stale.status_code == 400
    assert_microsoft_error(stale.json(), "invalid_grant", 700082)
    assert "was inactive for 90.00:00:00" in stale.json()["error_description"]


def test_scopes_are_echoed_in_the_form_they_were_asked(identity: Identity) -> None:
    user, http = identity.new_user(), identity.http()
    app = identity.msal()
    flow = app.initiate_auth_code_flow(["contacts.readwrite", "https://graph.microsoft.com/tasks.readwrite"],
                                       redirect_uri=identity.redirect_uri, response_mode="form_post")
    result = app.acquire_token_by_auth_code_flow(flow, walk_sign_in(identity, http, flow["auth_uri"], user))
    assert result["scope"].split() == ["Contacts.ReadWrite", "https://graph.microsoft.com/Tasks.ReadWrite",
                                       "profile", "openid", "email"]
    assert "offline_access" not in result["scope"] and result["refresh_token"]
    assert identity.core.access_tokens[result["access_token"]].scopes == ("Contacts.ReadWrite", "Tasks.ReadWrite")


def test_authorize_errors_are_sent_to_a_registered_redirect_uri(identity: Identity) -> None:
    http = identity.http()
    base = {"client_id": identity.app.client_id, "redirect_uri": identity.redirect_uri, "response_type": "code",
            "state": "s-1", "response_mode": "query"}
    cases = [({"scope": "openid Contacts.Explode"}, "invalid_client", "650053"),
             ({"scope": "openid https://outlook.office.com/IMAP.AccessAsUser.All"}, "invalid_scope", "70011"),
             ({"scope": ""}, "invalid_request", "900144"),
             ({"scope": "openid User.Read", "response_type": "token"}, "unsupported_response_type", "700051"),
             ({"scope": "openid User.Read", "prompt": "none"}, "login_required", "50058")]
    for extra, error, code in cases:
        response = http.get(f"{identity.authority}/oauth2/v2.0/authorize", params={**base, **extra},
                            allow_redirects=False)
        assert response.status_code == 302, (extra, response.text)
        location = response.headers["Location"]
        assert location.startswith(identity.redirect_uri + "?")
        fields = dict(parse_qsl(urlsplit(location).query))
        assert fields["error"] == error and fields["state"] == "s-1"
        assert fields["error_description"].startswith(f"AADSTS{code}: "), fields
