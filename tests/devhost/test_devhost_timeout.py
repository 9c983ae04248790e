"""host.json's functionTimeout, enforced by a real devhost over real Azurite (overridden to 2 s for the test)."""
from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy
from devhost_harness import RunningHost, clean_environ, start_devhost

from devhost.azurite import Azurite
from devhost.hostjson import (
    DEFAULT_FUNCTION_TIMEOUT, HostConfig, HostJsonError, load_host_json, override_function_timeout,
)

TIMEOUT_APP = "tests.devhost.timeout_app:app"
TIMEOUT = 2.0
MAX_DEQUEUE = 3
Events = list[dict[str, Any]]


@dataclass(frozen=True)
class TimeoutHost:
    host: RunningHost
    queue: str
    connection_string: str


def _start(azurite: Azurite, workdir: Path) -> TimeoutHost:
    queue = "to" + secrets.token_hex(4)
    settings = {"IsEncrypted": False, "Values": {"TIMEOUT_QUEUE": queue, "TIMEOUT_STORAGE": azurite.connection_string}}
    # host.json says ten minutes, as the project's does; the setting must win.
    host_json = {
        "version": "2.0", "functionTimeout": "00:10:00",
        "extensions": {"queues": {"maxDequeueCount": MAX_DEQUEUE, "visibilityTimeout": "00:00:00", "batchSize": 4}},
    }
    env = clean_environ(DEVHOST_FUNCTION_TIMEOUT=str(TIMEOUT))
    host = start_devhost(workdir, env, app=TIMEOUT_APP, settings=settings, host_json=host_json, events=True)
    return TimeoutHost(host, queue, azurite.connection_string)


@pytest.fixture(scope="module")
def timeout_host(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimeoutHost]:
    running = _start(azurite, tmp_path_factory.mktemp("timeout-host"))
    try:
        yield running
    finally:
        code = running.host.terminate()
        assert code == 0, running.host.log()


def _of(events: Events, kind: str, body: str) -> Events:
    return [e for e in events if e["kind"] == kind and e.get("body") == body]


def _poisoned(target: TimeoutHost, marker: str) -> list[str]:
    poison = QueueClient.from_connection_string(target.connection_string, target.queue + "-poison")
    try:
        peeked = poison.peek_messages(max_messages=32)
    except ResourceNotFoundError:
        return []  # the host creates the poison queue with the first poisoned message
    bodies = [base64.b64decode(m.content).decode("utf-8") for m in peeked]
    return [b for b in bodies if marker in b]


def _waiting_in_queue(target: TimeoutHost, marker: str) -> list[str]:
    client = QueueClient.from_connection_string(target.connection_string, target.queue)
    return [m.content for m in client.peek_messages(max_messages=32) if marker in base64.b64decode(m.content).decode()]


def _send(target: TimeoutHost, body: str) -> None:
    QueueClient.from_connection_string(target.connection_string, target.queue,
                                       message_encode_policy=TextBase64EncodePolicy()).send_message(body)


def test_a_queue_message_past_the_timeout_is_retried_at_the_deadline_then_poisoned(timeout_host: TimeoutHost) -> None:
    host = timeout_host.host
    body = f"6 slow {secrets.token_hex(4)}"
    _send(timeout_host, body)
    deadline = time.monotonic() + 25
    while not _poisoned(timeout_host, body) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _poisoned(timeout_host, body) == [body], host.log()
    starts = _of(host.events(), "start", body)
    assert [e["dequeue_count"] for e in starts] == [1, 2, 3], starts
    gaps = [b["at"] - a["at"] for a, b in zip(starts, starts[1:], strict=False)]
    # Released for retry at the 2 s deadline (plus at most a 0.5 s poll), not when the 6 s sleep returned.
    assert all(TIMEOUT - 0.1 <= gap < 4.0 for gap in gaps), gaps
    assert host.log().count("Timeout value of 00:00:02 exceeded by function 'Functions.slow_queue'") >= 3

    # The abandoned invocations finish later; that neither deletes nor re-delivers anything.
    host.wait_for(lambda ev: len(_of(ev, "end", body)) == 3, 15, "the three abandoned invocations to return")
    time.sleep(1.0)
    assert len(_of(host.events(), "start", body)) == 3
    assert _poisoned(timeout_host, body) == [body]
    assert _waiting_in_queue(timeout_host, body) == []
    assert "returned" in host.log() and "after its timeout; that outcome is ignored" in host.log()


def test_a_queue_message_finished_in_time_is_deleted(timeout_host: TimeoutHost) -> None:
    host = timeout_host.host
    body = f"0.3 quick {secrets.token_hex(4)}"
    _send(timeout_host, body)
    events = host.wait_for(lambda ev: bool(_of(ev, "end", body)), 10, "the quick message to be processed")
    assert [e["dequeue_count"] for e in _of(events, "end", body)] == [1]
    # Longer than a timeout plus a poll: a message not deleted would have been delivered again by now.
    time.sleep(TIMEOUT + 1.0)
    assert len(_of(host.events(), "start", body)) == 1
    assert _waiting_in_queue(timeout_host, body) == []
    assert _poisoned(timeout_host, body) == []


def test_an_http_function_past_the_timeout_answers_500_and_the_host_stays_healthy(timeout_host: TimeoutHost) -> None:
    host = timeout_host.host
    started = time.monotonic()
    reply = host.get("/api/hang/6000")
    elapsed = time.monotonic() - started
    assert reply.status_code == 500 and reply.text == "Internal Server Error"
    assert TIMEOUT - 0.1 <= elapsed < TIMEOUT + 1.5, elapsed
    assert "Timeout value of 00:00:02 exceeded by function 'Functions.hang'" in host.log()

    # While the abandoned sync function still sleeps, the host serves other requests normally.
    healthy = host.get("/api/ok")
    assert healthy.status_code == 200
    ids = healthy.json()
    # The worker's thread-local invocation id is set on the thread that runs the function.
    assert ids["thread_local_invocation_id"] == ids["invocation_id"]

    # An async function is cancelled at the deadline, as Azure cancels the invocation.
    started = time.monotonic()
    reply = host.get("/api/hang-async/30000")
    assert reply.status_code == 500
    assert time.monotonic() - started < TIMEOUT + 1.5
    host.wait_for(lambda ev: bool(_of(ev, "cancelled", "30000")), 5, "the async function to be cancelled")
    assert host.get("/api/ok").status_code == 200


def test_a_timer_past_the_timeout_is_logged_failed(timeout_host: TimeoutHost) -> None:
    host = timeout_host.host
    # slow_timer runs on startup and sleeps 3 s.
    deadline = time.monotonic() + 10
    while "Executed 'Functions.slow_timer' (Failed" not in host.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = host.log()
    assert "Timeout value of 00:00:02 exceeded by function 'Functions.slow_timer'" in log
    assert "Executed 'Functions.slow_timer' (Failed" in log
    assert "Function timeout: 00:00:02" in log


def test_shutdown_does_not_wait_for_an_abandoned_function(azurite: Azurite, tmp_path: Path) -> None:
    running = _start(azurite, tmp_path)
    try:
        assert running.host.get("/api/hang/60000").status_code == 500
    finally:
        started = time.monotonic()
        code = running.host.terminate()
    assert code == 0, running.host.log()
    # Far less than the 60 s the abandoned function still sleeps.
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("document", "expected"), [
    ({}, DEFAULT_FUNCTION_TIMEOUT),
    ({"functionTimeout": "00:10:00"}, 600.0),
    ({"functionTimeout": "01:30:00"}, 5400.0),
    ({"functionTimeout": "00:00:02.500"}, 2.5),
    ({"functionTimeout": "-1"}, None),
])
def test_function_timeout_formats(tmp_path: Path, document: dict[str, object], expected: float | None) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0", **document}), encoding="utf-8")
    assert load_host_json(path).function_timeout == expected


@pytest.mark.parametrize("value", ["00:00:00", "10 minutes", 600])
def test_malformed_function_timeouts_are_refused(tmp_path: Path, value: object) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0", "functionTimeout": value}), encoding="utf-8")
    with pytest.raises(HostJsonError, match="functionTimeout"):
        load_host_json(path)


@pytest.mark.parametrize(("text", "expected"), [
    ("2", 2.0), ("0.5", 0.5), ("00:00:03", 3.0), ("-1", None),
])
def test_the_override_accepts_seconds_timespans_and_unlimited(text: str, expected: float | None) -> None:
    assert override_function_timeout(HostConfig(function_timeout=600.0), text).function_timeout == expected


@pytest.mark.parametrize("text", ["0", "-5", "nan", "inf", "soon", "00:00:00"])
def test_the_override_refuses_nonsense(text: str) -> None:
    with pytest.raises(HostJsonError, match="DEVHOST_FUNCTION_TIMEOUT"):
        override_function_timeout(HostConfig(), text)
