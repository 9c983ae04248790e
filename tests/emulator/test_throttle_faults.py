"""Throttling and injected faults, as a client sees them over real HTTP (status, headers, body, a dropped TCP
connection). These change the emulator's global settings, so they run on the isolated emulator."""
from __future__ import annotations

import asyncio
import time
import httpx
import pytest

from tests.emulator.conftest import Isolated, new_folder


def test_rate_limit_per_app_and_mailbox(isolated: Isolated) -> None:
    control = isolated.control
    control.throttle(limit=2, window_seconds=1)
    user, token = control.new_user_with_token()
    graph = isolated.graph(token)
    assert [graph.get("/me/contacts").status_code for _ in range(2)] == [200, 200]
    throttled = graph.get("/me/contacts")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    error = throttled.json()["error"]
    assert error["code"] == "TooManyRequests" and error["message"] == "Please retry again later."
    assert error["innerError"]["code"] == "429" and error["innerError"]["status"] == "429"
    assert error["innerError"]["request-id"] == throttled.headers["request-id"]
    # Limits are per (app, mailbox): another app on the same mailbox, or another mailbox, still get in.
    assert graph.get("/me/contacts", token=control.token(user["id"], client_id="another-app")).status_code == 200
    assert isolated.graph().get("/me/contacts").status_code == 200
    time.sleep(1.05)
    assert graph.get("/me/contacts").status_code == 200


def test_concurrency_limit_answers_application_throttled(isolated: Isolated) -> None:
    control = isolated.control
    control.throttle(max_concurrency=2, service_delay_ms=400)
    _, token = control.new_user_with_token()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            return await asyncio.gather(*(client.get(isolated.process.graph + "/me/contacts",
                                                     headers={"Authorization": f"Bearer {token}"}) for _ in range(4)))

    responses = asyncio.run(burst())
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"] == {**refused.json()["error"], "code": "ApplicationThrottled",
                                       "message": "Application is over its MailboxConcurrency limit."}


def test_batch_steps_run_concurrently_like_outlook(isolated: Isolated) -> None:
    """With Outlook's 4 concurrent requests and some service time, a batch of 6 to one mailbox loses 2 steps."""
    isolated.control.throttle(service_delay_ms=300)
    graph = isolated.graph()
    answer = graph.ok("POST", "/$batch", {"requests": [{"id": str(n), "method": "GET", "url": "/me/contacts"}
                                                       for n in range(6)]})
    statuses = sorted(r["status"] for r in answer["responses"])
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_status_fault_with_retry_after_and_times(isolated: Isolated) -> None:
    graph = isolated.graph()
    rule = isolated.control.add_fault(method="GET", path_regex=r"^/me/contacts$", status=503, retry_after=2, times=1)
    first = graph.get("/me/contacts")
    assert first.status_code == 503 and first.headers["Retry-After"] == "2"
    assert first.json()["error"]["code"] == "serviceNotAvailable"
    assert graph.get("/me/contacts").status_code == 200
    assert graph.get("/me").status_code == 200
    listed = isolated.control._call("GET", "/faults")["value"]
    assert [(r["id"], r["hits"], r["times"]) for r in listed] == [(rule["id"], 1, 0)]


def test_injected_429_looks_like_microsofts(isolated: Isolated) -> None:
    graph = isolated.graph()
    isolated.control.add_fault(path_regex="/contactFolders", status=429, retry_after=3, times=1)
    response = graph.get("/me/contactFolders")
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "TooManyRequests"


def test_delay_really_sleeps(isolated: Isolated) -> None:
    graph = isolated.graph()
    isolated.control.add_fault(path_regex=r"^/me$", delay_ms=400, times=1)
    started = time.monotonic()
    assert graph.get("/me").status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    graph.get("/me")
    assert time.monotonic() - started < 0.4


def test_drop_connection_is_a_connection_error(isolated: Isolated) -> None:
    graph = isolated.graph()
    before = isolated.control.last_request_seq()
    isolated.control.add_fault(method="POST", path_regex="/contacts$", drop_connection=True, times=1)
    with httpx.Client(trust_env=False, timeout=5) as fresh:
        with pytest.raises(httpx.TransportError) as caught:
            fresh.post(graph.base + "/me/contacts", json={"givenName": "Lost"},
                       headers={"Authorization": f"Bearer {graph.token}"})
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert graph.post("/me/contacts", {"givenName": "Kept"}).status_code == 201
    log = isolated.control.requests(since=before)
    assert [(e["method"], e["dropped"], e["status"]) for e in log] == [("POST", True, None), ("POST", False, 201)]


def test_after_fault_applies_the_change_but_loses_the_answer(isolated: Isolated) -> None:
    graph = isolated.graph()
    isolated.control.add_fault(method="POST", path_regex="/contacts$", status=504, after=True, times=1)
    lost = graph.post("/me/contacts", {"givenName": "Ghost"})
    assert lost.status_code == 504
    names = [c["givenName"] for c in graph.ok("GET", "/me/contacts")["value"]]
    assert names == ["Ghost"]


def test_faults_can_target_batch_steps_only(isolated: Isolated) -> None:
    graph = isolated.graph()
    fid = new_folder(graph)
    isolated.control.add_fault(path_regex=f"/contactFolders/{fid}$", status=500, in_batch=True)
    assert graph.get(f"/me/contactFolders/{fid}").status_code == 200
    answer = graph.ok("POST", "/$batch", {"requests": [
        {"id": "a", "method": "GET", "url": f"/me/contactFolders/{fid}"},
        {"id": "b", "method": "GET", "url": "/me"}]})
    assert {r["id"]: r["status"] for r in answer["responses"]} == {"a": 500, "b": 200}
    isolated.control.clear_faults()
    isolated.control.add_fault(path_regex=r"^/me$", drop_connection=True, in_batch=True, times=1)
    with pytest.raises(httpx.TransportError):
        graph.http.post(graph.base + "/$batch", json={"requests": [{"id": "1", "method": "GET", "url": "/me"}]},
                        headers={"Authorization": f"Bearer {graph.token}"})


def test_control_api_refuses_bad_settings(isolated: Isolated) -> None:
    http = isolated.http
    base = isolated.process.control
    assert http.post(base + "/faults", json={"status": 200}).status_code == 400
    assert http.post(base + "/faults", json={"path_regex": "(", "status": 500}).status_code == 400
    assert http.post(base + "/faults", json={"surprise": 1, "status": 500}).status_code == 400
    assert http.put(base + "/throttle", json={"limit": 0}).status_code == 400
    assert http.put(base + "/throttle", json={"limit": "many"}).status_code == 400
