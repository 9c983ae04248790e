"""The whole app as users meet it: Azurite, the Microsoft 365 emulator, an app registration in the
emulator, and `python -m devhost` serving function_app.app over real HTTP (with its timer and queue
trigger) as a subprocess stopped by PID; a cookie-keeping client that signs in as a browser without
JavaScript would.

Used by the test fixtures (tests/functions/stack.py) and the benchmarks (bench/), which must not import
the tests. Callers isolate themselves by tenant: each creates its own CRM tenant and user ids and its own
emulator mailbox.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from devhost.azurite import Azurite
from devhost.procs import free_port, spawn, stop, wait_until
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.app.services import Services
from sync_core.bootstrap import build_services
from sync_core.settings import SETTING_HELP, AppSettings, load_settings
from sync_core.domain.tenants import Plan, Tenant
from sync_core.web.auth import SESSION_COOKIE, launch_url, sign_launch

ROOT = Path(__file__).resolve().parents[1]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')

# A settings form the page accepts as it is (the page's defaults, To Do, UTC): callers override fields.
VALID_FORM = {
    "mode": "two_way", "contact_scope": "owned_accounts", "task_target": "todo", "all_day_reminder": "off",
    "all_day_reminder_time": "09:00", "timed_reminder_minutes": "15", "task_import_account": "From Office 365",
    "time_zone": "UTC", "event_duration_minutes": "30",
}


class LogCollector(logging.Handler):
    """Every log record of this test process, formatted with its args and extras (what a log sink sees)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = str(record.msg)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        self.lines.append(f"{record.name} {record.levelname} {text} {extras}")
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    settings: AppSettings
    services: Services
    emulator: EmulatorProcess
    control: ControlClient
    devhost_log: Path
    log_collector: LogCollector
    secrets_to_hide: set[str] = field(default_factory=set)

    def new_tenant(self, plan: Plan = Plan.PAID) -> str:
        tenant_id = "tenant-" + uuid.uuid4().hex[:12]
        self.services.tenants.save(Tenant(id=tenant_id, name="Test tenant", plan=plan))
        return tenant_id

    def launch_link(self, tenant_id: str, user_id: str, lifetime: int = 120) -> str:
        return launch_url(self.url, self.settings.crm_launch_secret, tenant_id, user_id, lifetime)

    def launch_params(self, tenant_id: str, user_id: str, **kwargs: Any) -> dict[str, str]:
        return sign_launch(self.settings.crm_launch_secret, tenant_id, user_id, **kwargs)

    def browser(self) -> "WebClient":
        return WebClient(self)

    def remember_tokens(self, tenant_id: str, user_id: str) -> None:
        """Note every token in the user's cache (and the cache key material) as a secret no log may show."""
        serialized = self.services.tokens.load(tenant_id, user_id)
        if not serialized:
            return
        cache = json.loads(serialized)
        for section in ("AccessToken", "RefreshToken", "IdToken"):
            for entry in cache.get(section, {}).values():
                if entry.get("secret"):
                    self.secrets_to_hide.add(str(entry["secret"]))

    def devhost_lines(self) -> list[str]:
        return self.devhost_log.read_text(encoding="utf-8", errors="replace").splitlines()

    def emulator_lines(self) -> list[str]:
        return self.emulator.log_file.read_text(encoding="utf-8", errors="replace").splitlines()


class WebClient:
    """A cookie-keeping HTTP client that does what a browser without JavaScript does."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client(base_url=stack.url, timeout=30, trust_env=False, follow_redirects=False)
        self.caller: tuple[str, str] | None = None

    def close(self) -> None:
        self.http.close()

    def launch(self, tenant_id: str, user_id: str) -> httpx.Response:
        params = self.stack.launch_params(tenant_id, user_id)
        response = self.http.get("/api/launch", params=params)
        assert response.status_code == 303, response.text
        self.caller = (tenant_id, user_id)
        self.stack.secrets_to_hide.add(params["sig"])
        session = self.http.cookies.get(SESSION_COOKIE)
        if session:
            self.stack.secrets_to_hide.add(session)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def csrf(self, path: str = "/api/settings") -> str:
        page = self.http.get(path)
        found = CSRF.search(page.text)
        assert found, f"no CSRF token on {path}: {page.status_code} {page.text[:500]}"
        return found.group(1)

    def post_form(self, path: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
        return self.http.post(path, data=data, **kwargs)

    def follow(self, response: httpx.Response) -> httpx.Response:
        while response.status_code in (301, 302, 303, 307, 308):
            response = self.http.get(urljoin(str(response.url), response.headers["location"]))
        return response


def clean_environ(**overrides: str) -> dict[str, str]:
    """The subprocess sees only the settings a test gives it."""
    env = {k: v for k, v in os.environ.items()
           if k not in SETTING_HELP and not k.startswith(("DEVHOST_", "FUNCTIONS_", "AzureWebJobs"))}
    env.update(overrides)
    return env


def start_stack(azurite: Azurite, emulator: EmulatorProcess, control: ControlClient, workdir: Path,
                collector: LogCollector, extra_env: dict[str, str] | None = None) -> tuple[Stack, Callable[[], None]]:
    """The app on its own storage prefix; `extra_env` sets further app settings (e.g. a tiny run budget)."""
    port = free_port()
    env = {**app_settings(azurite.connection_string, emulator, control, port, "fn" + secrets.token_hex(3)),
           **(extra_env or {})}
    settings_file = workdir / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": env}), encoding="utf-8")
    ready, log_path = workdir / "ready.json", workdir / "devhost.log"
    proc = spawn([sys.executable, "-m", "devhost", "--port", str(port), "--ready-file", str(ready),
                  "--settings", str(settings_file), "--max-poll-interval", "0.2", "--shutdown-timeout", "10"],
                 log_path=log_path, env=clean_environ(PYTHONPATH=str(ROOT)), cwd=ROOT)
    try:
        wait_until(ready.exists, 60, "devhost", proc)
    except (RuntimeError, TimeoutError) as exc:
        stop(proc)
        raise AssertionError(f"{exc}\n{log_path.read_text(errors='replace')}") from None
    settings = load_settings(env)
    stack = Stack(env["PUBLIC_BASE_URL"], env, settings, build_services(settings), emulator, control, log_path,
                  collector, {env["GRAPH_CLIENT_SECRET"], env["TOKEN_ENCRYPTION_KEY"], env["CRM_LAUNCH_SECRET"]})
    return stack, lambda: stop(proc, timeout=15)


def app_settings(storage: str, emulator: EmulatorProcess, control: ControlClient, port: int,
                 prefix: str) -> dict[str, str]:
    """The app settings of an app served on `port`, registered in the emulator, on its own storage prefix."""
    assert emulator.authority and emulator.ca_file, "the emulator serves no identity platform"
    public = f"http://127.0.0.1:{port}"
    client_id, client_secret = str(uuid.uuid4()), "cs-" + secrets.token_urlsafe(24)
    control.register_app(client_id, client_secret, [f"{public}/api/oauth/callback"])
    return {
        "AzureWebJobsStorage": storage,
        "GRAPH_BASE_URL": emulator.graph,
        "IDENTITY_AUTHORITY": emulator.authority,
        "IDENTITY_CA_FILE": emulator.ca_file,
        "GRAPH_CLIENT_ID": client_id,
        "GRAPH_CLIENT_SECRET": client_secret,
        "TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PUBLIC_BASE_URL": public,
        "CRM_LAUNCH_SECRET": secrets.token_hex(32),
        "STORAGE_PREFIX": prefix,
        "SYNC_QUEUE_NAME": f"{prefix}-sync-jobs",
    }


def connect_with_emulator(client: WebClient, user: dict[str, Any]) -> httpx.Response:
    """Connect through the emulator's sign-in and consent pages as a browser without JavaScript would,
    returning the response of the final redirect target (the settings page)."""
    answer = client_sign_in(client, user)
    client.stack.secrets_to_hide.add(answer["fields"].get("code", ""))
    callback = client.http.post(answer["action"], data=answer["fields"])
    assert callback.status_code == 303, callback.text
    page = client.follow(callback)
    if client.caller is not None:
        client.stack.remember_tokens(*client.caller)
    return page


def client_sign_in(client: WebClient, user: dict[str, Any]) -> dict[str, Any]:
    """Connect → Microsoft's authorize → sign in → consent; returns the form_post page's form (action, fields)."""
    start = client.post_form("/api/connect", {"csrf": client.csrf()})
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    assert authorize.startswith(client.stack.emulator.authority or "")
    with httpx.Client(verify=client.stack.emulator.ca_file or True, trust_env=False, timeout=30) as microsoft:
        page = microsoft.get(authorize, follow_redirects=True)
        for _ in range(4):
            form = _form(page.text)
            if form["action"] == client.stack.url + "/api/oauth/callback" or \
                    form["action"].startswith(client.stack.url):
                return form
            fields = dict(form["fields"])
            if "passwd" in page.text:
                fields.update({"login": user["userPrincipalName"], "passwd": user["password"]})
            elif "Permissions requested" in page.text:
                fields["action"] = "accept"
            page = microsoft.post(urljoin(str(page.url), form["action"]), data=fields, follow_redirects=True)
    raise AssertionError(f"the emulator never answered with a form_post page: {page.text[:800]}")


_FORM = re.compile(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def _form(page: str) -> dict[str, Any]:
    import html as html_module
    found = _FORM.search(page)
    assert found, page[:800]
    fields = {html_module.unescape(k): html_module.unescape(v) for k, v in _HIDDEN.findall(found.group(2))}
    return {"action": html_module.unescape(found.group(1)), "fields": fields}


def wait_subscribed(stack: Stack, tenant_id: str, user_id: str, timeout: float = 60) -> Any:
    """The user's contact-folder subscription, once created (after the first sync made the folder)."""
    from sync_core.domain.subscriptions import Kind
    store = stack.services.subscriptions
    return wait_for(lambda: (r := store.get(tenant_id, user_id, Kind.CONTACTS)) and not r.owed and r, timeout,
                    "the contact folder subscription")


def started_sign_ins(stack: Stack, tenant_id: str) -> list[Any]:
    """OAuth flows begun for a tenant (OAuthFlows.start stores one per Connect)."""
    return list(stack.services.oauth.sign_ins.table.query("tenant_id eq @t", {"t": tenant_id}))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
