"""Timer and queue triggers of the sample app (declared in a Blueprint devhost knows nothing about)."""
from __future__ import annotations

import base64
import secrets
import time
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy
from devhost_harness import SampleHost

Events = list[dict[str, Any]]


def _sender(sample: SampleHost, *, base64_bodies: bool = True) -> QueueClient:
    policy = TextBase64EncodePolicy() if base64_bodies else None
    return QueueClient.from_connection_string(sample.connection_string, sample.queue, message_encode_policy=policy)


def _of(events: Events, kind: str, body: str) -> Events:
    return [e for e in events if e["kind"] == kind and e["body"] == body]


def _queue_length(sample: SampleHost, name: str) -> int:
    client = QueueClient.from_connection_string(sample.connection_string, name)
    return int(client.get_queue_properties().approximate_message_count)


def test_timer_fires_on_its_seconds_schedule(sample_host: SampleHost) -> None:
    host = sample_host.host
    events = host.wait_for(lambda ev: len([e for e in ev if e["kind"] == "tick"]) >= 3, 10, "three timer ticks")
    ticks = [e for e in events if e["kind"] == "tick"]
    # The first tick is run_on_startup (at any time); scheduled ones land on even seconds ("*/2 * * * * *").
    scheduled = ticks[1:]
    for tick in scheduled:
        fired = datetime.fromtimestamp(tick["at"])
        assert fired.second % 2 == 0 and fired.microsecond < 500_000, tick
        assert tick["past_due"] is False
    gaps = [b["at"] - a["at"] for a, b in zip(scheduled, scheduled[1:], strict=False)]
    assert all(1.5 < gap < 2.5 for gap in gaps), gaps
    # Each invocation is told when the next one is due, two seconds on.
    assert scheduled[0]["next"] is not None
    assert datetime.fromisoformat(scheduled[0]["next"]).timestamp() - round(scheduled[0]["at"]) in (2.0, 1.0, 3.0)


def test_queue_messages_with_base64_bodies_reach_the_function(sample_host: SampleHost) -> None:
    body = f"héllo {secrets.token_hex(4)} ✓"
    sent = _sender(sample_host).send_message(body)
    events = sample_host.host.wait_for(lambda ev: bool(_of(ev, "work", body)), 10, "the message to be processed")
    (seen,) = _of(events, "work", body)
    assert seen["id"] == sent.id
    assert seen["dequeue_count"] == 1
    assert seen["pop_receipt"]
    assert datetime.fromisoformat(seen["insertion_time"]) < datetime.fromisoformat(seen["expiration_time"])
    # Deleted after success.
    deadline = time.monotonic() + 5
    while _queue_length(sample_host, sample_host.queue) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _queue_length(sample_host, sample_host.queue) == 0


def test_a_batch_is_processed_concurrently(sample_host: SampleHost) -> None:
    marker = secrets.token_hex(4)
    bodies = [f"sleep {marker} {i}" for i in range(4)]
    sender = _sender(sample_host)
    for body in bodies:
        sender.send_message(body)
    events = sample_host.host.wait_for(
        lambda ev: all(_of(ev, "work", b) for b in bodies), 15, "four slow messages")
    spans = [(_of(events, "work-start", b)[0]["at"], _of(events, "work", b)[0]["at"]) for b in bodies]
    most_at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert most_at_once >= 2, spans


def test_failures_are_retried_after_the_visibility_timeout_then_poisoned(sample_host: SampleHost) -> None:
    marker = secrets.token_hex(4)
    always, once, garbage = f"fail-always {marker}", f"fail-once {marker}", f"not base64 {marker}!"
    sender = _sender(sample_host)
    sender.send_message(always)
    sender.send_message(once)
    # Stored as plain text while the host expects base64: the binding fails it without calling the function.
    _sender(sample_host, base64_bodies=False).send_message(garbage)
    host = sample_host.host

    events = host.wait_for(lambda ev: bool(_of(ev, "work", once)), 15, "the fail-once message to succeed")
    assert [e["dequeue_count"] for e in _of(events, "work-failed", once)] == [1]
    assert _of(events, "work", once)[0]["dequeue_count"] == 2

    poison = QueueClient.from_connection_string(sample_host.connection_string, f"{sample_host.queue}-poison")
    stored: list[str] = []
    deadline = time.monotonic() + 20
    while len(stored) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            received = list(poison.receive_messages(max_messages=32, visibility_timeout=60))
        except ResourceNotFoundError:
            continue  # the host creates the poison queue with the first poisoned message
        stored += [m.content for m in received if marker in m.content or marker in _decoded(m.content)]
    failures = _of(host.events(), "work-failed", always)
    # Five deliveries, numbered by the host, each at least the 1 s visibility timeout after the last.
    assert [e["dequeue_count"] for e in failures] == [1, 2, 3, 4, 5], failures
    assert all(b["at"] - a["at"] >= 0.9 for a, b in zip(failures, failures[1:], strict=False))
    # Same encoding in the poison queue: base64 stays base64, the undecodable text stays as it was.
    assert sorted(stored) == sorted([base64.b64encode(always.encode()).decode(), garbage]), stored
    assert "moved to" in host.log()
    time.sleep(1.5)
    assert len(_of(host.events(), "work-failed", always)) == 5, "a poisoned message was delivered again"
    assert not [e for e in host.events() if marker in e.get("body", "") and "not base64" in e["body"]]


def _decoded(content: str) -> str:
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except ValueError:
        return ""
