"""Every HTTP endpoint of function_app (enumerated from app.get_functions(), in a child process: the library lets
each app object list its functions only once), with and without a session, against bodies that are not what it
expects: not JSON, not UTF-8, oversized, garbage forms, hostile JSON. Always a 2xx/3xx or a 4xx with a message;
never a 500 or any 5xx. Webhook bodies that are not Graph's shape are refused with a 4xx."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.functions.stack import Stack, WebClient
from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401
from tests.functions.stack import log_collector, stack  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
_LIST = """
import json, function_app
out = []
for f in function_app.app.get_functions():
    for b in f.get_bindings_dict()["bindings"]:
        if str(b.get("type", "")).endswith("httpTrigger"):
            out.append({"name": f.get_function_name(), "route": b.get("route") or f.get_function_name(),
                        "methods": [str(getattr(m, "value", m)).upper() for m in (b.get("methods") or [])]})
print(json.dumps(out))
"""


def _endpoints() -> list[dict[str, Any]]:
    listed = subprocess.run([sys.executable, "-c", _LIST], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert listed.returncode == 0, listed.stderr[-2000:]
    return list(json.loads(listed.stdout.strip().splitlines()[-1]))


ENDPOINTS = _endpoints()
CALLS = [(e["name"], "/api/" + re.sub(r"\{[^}]+\}", lambda m: "x" + uuid.uuid4().hex[:6], e["route"]), method)
         for e in ENDPOINTS for method in (e["methods"] or ["GET", "POST"])]
OVERSIZED = b"{" + b'"a":' * 600_000 + b"1}"  # 2.4 MB, JSON-looking
BODIES: dict[str, tuple[bytes, str]] = {
    "not_json": (b"this is not json", "application/json"),
    "invalid_utf8": (b"\xff\xfe\xfa{\x00\x80", "application/json"),
    "oversized": (OVERSIZED, "application/json"),
    "oversized_form": (b"csrf=x&" + b"a" * 2_500_000, "application/x-www-form-urlencoded"),
    "json_array": (b"[1, 2, 3]", "application/json"),
    "deep_json": (b"[" * 5000 + b"]" * 5000, "application/json"),
    "form_garbage": (b"%%%=&&==&\xff=\x00&mode=nonsense&time_zone=Mars/Olympus", "application/x-www-form-urlencoded"),
    "multipart_lies": (b"--x\r\nContent-Disposition: form-data\r\n\r\n", "multipart/form-data; boundary=y"),
    "xml": (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>", "text/xml"),
    "empty": (b"", ""),
}


@pytest.fixture(scope="module")
def session_client(stack: Stack) -> Iterator[WebClient]:  # noqa: F811
    client = stack.browser()
    client.launch(stack.new_tenant(), "user-" + uuid.uuid4().hex[:8])
    yield client
    client.close()


def _assert_clean(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.text[:300]}"
    if 400 <= response.status_code < 500 and response.status_code != 405:
        assert response.text.strip(), f"{what} -> {response.status_code} without a message"


def test_the_enumeration_found_every_kind_of_endpoint() -> None:
    routes = {e["route"] for e in ENDPOINTS}
    assert {"health", "launch", "settings", "graph/notifications", "graph/lifecycle", "oauth/callback",
            "crm/contacts/{contact_id}"} <= routes, routes


@pytest.mark.parametrize(("name", "path", "method"), CALLS, ids=[f"{m} {p}" for _, p, m in CALLS])
def test_every_endpoint_answers_bad_bodies_cleanly(stack: Stack, session_client: WebClient,  # noqa: F811
                                                   name: str, path: str, method: str) -> None:
    csrf = session_client.csrf()
    anonymous = httpx.Client(base_url=stack.url, timeout=60, trust_env=False, follow_redirects=False)
    try:
        for kind, (body, content_type) in BODIES.items():
            headers = {"content-type": content_type} if content_type else {}
            for who, client in (("anonymous", anonymous), ("session", session_client.http)):
                sent = body
                if who == "session" and content_type.startswith("application/x-www-form-urlencoded"):
                    sent = f"csrf={csrf}&".encode() + body  # past the CSRF check, into the form's own parsing
                response = client.request(method, path, content=sent, headers=headers,
                                          params={"validationToken": "x" * 5000} if kind == "empty" else None)
                _assert_clean(response, f"{method} {path} {kind} ({who})")
    finally:
        anonymous.close()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=30,
)
NOTIFICATIONS = st.fixed_dictionaries({"value": st.lists(st.dictionaries(
    st.sampled_from(["subscriptionId", "clientState", "changeType", "resource", "lifecycleEvent", "tenantId",
                     "resourceData", "subscriptionExpirationDateTime"]), JSONISH, max_size=8), max_size=4)}) | JSONISH


@settings(max_examples=60, deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(document=NOTIFICATIONS, lifecycle=st.booleans())
def test_malformed_notification_bodies_are_refused_with_a_4xx(stack: Stack, document: Any,  # noqa: F811
                                                              lifecycle: bool) -> None:
    path = "/api/graph/lifecycle" if lifecycle else "/api/graph/notifications"
    response = httpx.post(stack.url + path, content=json.dumps(document).encode(), trust_env=False, timeout=30,
                          headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500 and response.text.strip(), (response.status_code, response.text[:200])


@settings(max_examples=40, deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(call=st.sampled_from(CALLS), body=st.binary(max_size=4096),
       content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""]))
def test_random_bytes_to_any_endpoint(stack: Stack, session_client: WebClient, call: tuple[str, str, str],  # noqa: F811
                                      body: bytes, content_type: str) -> None:
    _, path, method = call
    headers = {"content-type": content_type} if content_type else {}
    _assert_clean(session_client.http.request(method, path, content=body, headers=headers), f"{method} {path}")
