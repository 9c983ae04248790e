"""HTTP triggers of the sample app, served by a real `python -m devhost` subprocess over real HTTP."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from devhost_harness import SampleHost


def test_route_parameters_and_precedence(sample_host: SampleHost) -> None:
    host = sample_host.host
    response = host.get("/api/users/42")
    assert response.status_code == 200
    assert response.json() == {"function": "user_by_id", "id": "42", "method": "GET"}
    # A literal segment wins over the {id:int} parameter; literals match case-insensitively.
    assert host.get("/api/users/me").json() == {"function": "current_user"}
    assert host.get("/API/Users/7").json()["id"] == "7"
    # The int constraint refuses non-numbers, so nothing matches.
    assert host.get("/api/users/abc").status_code == 404


def test_catch_all_route(sample_host: SampleHost) -> None:
    host = sample_host.host
    assert host.get("/api/files/a/b%20c/d.txt").json() == {"path": "a/b c/d.txt", "method": "GET"}
    assert host.request("PUT", "/api/files/x").json() == {"path": "x", "method": "PUT"}
    assert host.get("/api/files").json() == {"path": None, "method": "GET"}


def test_unknown_paths_404_and_wrong_methods_405(sample_host: SampleHost) -> None:
    host = sample_host.host
    assert host.get("/api/nothing-here").status_code == 404
    # Functions live under the routePrefix only.
    assert host.get("/users/42").status_code == 404
    assert host.request("DELETE", "/api/users/42").json()["method"] == "DELETE"
    response = host.request("POST", "/api/users/42")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"


def test_request_and_response_translation(sample_host: SampleHost) -> None:
    host = sample_host.host
    response = host.request("POST", "/api/echo?x=1&x=2&empty=", content="héllo".encode(),
                            headers={"X-Sample": "hi"})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-reply"] == "yes"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    document = response.json()
    assert document["body"] == "héllo"
    assert document["params"] == {"x": "1,2", "empty": ""}
    assert document["header"] == "hi"
    assert document["method"] == "POST"
    assert document["url"] == f"{host.url}/api/echo?x=1&x=2&empty="
    page = host.get("/api/page")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.content == "<p>héllo</p>".encode()


def test_function_and_admin_keys(sample_host: SampleHost) -> None:
    host, function_key, master_key = sample_host.host, sample_host.function_key, sample_host.master_key
    # "secret" sets no auth level, so the app's default (FUNCTION) applies.
    assert host.get("/api/secret").status_code == 401
    assert host.get("/api/secret", params={"code": "wrong"}).status_code == 401
    # The settings file's key lost to the environment's.
    assert host.get("/api/secret", params={"code": "key-from-file-loses"}).status_code == 401
    assert host.get("/api/secret", params={"code": function_key}).text == "function-level ok"
    assert host.get("/api/secret", headers={"x-functions-key": function_key}).status_code == 200
    assert host.get("/api/secret", headers={"x-functions-key": master_key}).status_code == 200
    assert host.get("/api/admin-only", params={"code": function_key}).status_code == 401
    assert host.get("/api/admin-only", params={"code": master_key}).text == "admin-level ok"
    assert host.get("/api/admin-only", headers={"x-functions-key": master_key}).status_code == 200
    # Requests are logged by path only: keys passed as ?code= never reach the log.
    log = host.log()
    assert "GET /api/secret -> 401" in log and "GET /api/secret -> 200" in log
    assert function_key not in log and master_key not in log


def test_unhandled_exception_is_a_generic_500_logged_server_side(sample_host: SampleHost) -> None:
    host = sample_host.host
    response = host.get("/api/boom")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    log = host.log()
    assert "kaboom: internal detail" in log
    assert "Traceback" in log


def test_sync_functions_run_on_threads_and_async_ones_concurrently(sample_host: SampleHost) -> None:
    host = sample_host.host
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        sync_replies = list(pool.map(lambda _: host.get("/api/sleep/600"), range(4)))
    sync_elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in sync_replies)
    assert all(r.json()["thread"].startswith("http") for r in sync_replies)
    # Four 0.6 s blocking calls overlapped instead of queueing behind one another.
    assert sync_elapsed < 1.8, sync_elapsed

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        async_replies = list(pool.map(lambda _: host.get("/api/wait/600"), range(4)))
    assert time.monotonic() - started < 1.8
    ids = {r.json()["invocation_id"] for r in async_replies}
    assert len(ids) == 4
    assert {r.json()["function_name"] for r in async_replies} == {"wait_async"}


def test_functions_from_the_app_and_errors_reported(sample_host: SampleHost) -> None:
    host = sample_host.host
    assert host.get("/api/app-level").text == "declared on the app itself"
    # A trigger devhost cannot run is reported by name; every other function is still served.
    assert "The 'on_blob' function is in error: devhost does not run blobTrigger functions" in host.log()
