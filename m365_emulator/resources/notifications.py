"""Webhook delivery, as Microsoft Graph does it for change and lifecycle notifications: a queue, a background
worker, retries, and a log tests can read (GET /_emulator/notifications/log).

A delivery is one POST of `{"value": [...]}` to one URL. Change notifications queued within `batch_window_ms`
for the same URL travel in one POST (at most 100). Different URLs are served in parallel; one URL gets one POST
at a time, in queue order, so a subscriber sees its notifications in the order the changes happened.
2xx within `delivery_timeout_seconds` (Graph: 3 s) is delivered. 5xx, 429, timeouts and connection errors are
retried with exponential backoff (`retry_base_ms` doubling up to `retry_max_ms`) until `max_attempts` or
`max_retry_seconds` by the emulator clock (Graph: 4 hours) — then the delivery is "dropped"; any other answer
"failed" at once. Either way the owner's `on_undelivered` callback hears of it (subscriptions.py sends `missed`).

Chaos knobs: `duplicate_probability` (a delivered change POST is sent again) and `delay_ms` (every delivery
waits that long before its first attempt).
"""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from m365_emulator.kernel.timezones import iso7

log = logging.getLogger(__name__)

MAX_BATCH = 100
SENDERS = 8
LOG_LIMIT = 10_000


@dataclass
class DeliverySettings:
    duplicate_probability: float = 0.0
    delay_ms: int = 0
    batch_window_ms: int = 50
    retry_base_ms: int = 500
    retry_max_ms: int = 30_000
    max_attempts: int = 8
    max_retry_seconds: float = 4 * 3600.0
    delivery_timeout_seconds: float = 3.0


@dataclass
class Delivery:
    """One POST to a subscriber (maybe several notifications), retried as a unit."""

    id: str
    kind: str  # "change" | "lifecycle" | "validation"
    url: str
    notifications: list[dict[str, Any]]
    created: float  # emulator clock
    due: float  # monotonic
    attempts: list[dict[str, Any]] = field(default_factory=list)
    state: str = "pending"  # pending | delivered | failed | dropped
    duplicate: bool = False
    seq: int = 0

    def log_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "id": self.id, "kind": self.kind, "url": self.url, "state": self.state,
                "duplicate": self.duplicate, "created": iso7(self.created),
                "subscriptionIds": sorted({n["subscriptionId"] for n in self.notifications}),
                "attempts": list(self.attempts), "payload": {"value": self.notifications}}


class Webhooks:
    def __init__(self, now: Callable[[], float], on_undelivered: Callable[[Delivery], None],
                 tick: Callable[[], None]) -> None:
        """`now` is the emulator clock; `tick` runs on the worker at least every 0.2 s (expiry sweeps)."""
        self.now = now
        self.on_undelivered = on_undelivered
        self.tick = tick
        self.settings = DeliverySettings()
        self.lock = threading.RLock()
        self.log: list[Delivery] = []
        self._seq = 0
        self._queue: list[Delivery] = []
        self._busy: set[str] = set()  # URLs with a POST in flight
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._random = random.Random()

    # ----------------------------------------------------------------------------------- public

    def send(self, kind: str, url: str, notifications: list[dict[str, Any]]) -> Delivery:
        delivery = Delivery(uuid.uuid4().hex, kind, url, notifications, self.now(),
                            time.monotonic() + self.settings.delay_ms / 1000)
        self.record(delivery)
        with self.lock:
            self._queue.append(delivery)
        self.start()
        self._wake.set()
        return delivery

    def record(self, delivery: Delivery) -> None:
        with self.lock:
            self._seq += 1
            delivery.seq = self._seq
            self.log.append(delivery)
            if len(self.log) > LOG_LIMIT:
                del self.log[: LOG_LIMIT // 10]

    def entries(self, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [d.log_json() for d in self.log if d.seq > since]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    def reset(self) -> None:
        with self.lock:
            self._queue.clear()
            self.log.clear()
            self.settings = DeliverySettings()

    def start(self) -> None:
        with self.lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="m365-webhooks", daemon=True)
                self._thread.start()

    # ----------------------------------------------------------------------------------- worker

    def _run(self) -> None:
        with httpx.Client(trust_env=False) as client, ThreadPoolExecutor(SENDERS, "m365-webhook") as senders:
            while True:
                self._wake.wait(timeout=self._idle_timeout())
                self._wake.clear()
                try:
                    self.tick()
                    due = self._take_due()
                    if due and self.settings.batch_window_ms:
                        time.sleep(self.settings.batch_window_ms / 1000)  # let close changes join the batch
                        due += self._take_due()
                    by_url: dict[str, list[Delivery]] = {}
                    for batch in self._batches(due):
                        by_url.setdefault(batch.url, []).append(batch)
                    for url, batches in by_url.items():
                        with self.lock:
                            self._busy.add(url)
                        senders.submit(self._send_all, client, url, batches)
                except Exception:  # the worker must survive any one bad delivery or sweep
                    log.exception("webhook worker iteration failed")

    def _send_all(self, client: httpx.Client, url: str, batches: list[Delivery]) -> None:
        try:
            for batch in batches:
                self._attempt(client, batch)
        except Exception:
            log.exception("delivery to %s failed", url)
        finally:
            with self.lock:
                self._busy.discard(url)
            self._wake.set()

    def _take_due(self) -> list[Delivery]:
        """Deliveries due now, except to a URL that is still being sent to (its order is kept)."""
        now = time.monotonic()
        with self.lock:
            ready = [d.due <= now and d.url not in self._busy for d in self._queue]
            due = [d for d, go in zip(self._queue, ready) if go]
            self._queue = [d for d, go in zip(self._queue, ready) if not go]
        return due

    def _idle_timeout(self) -> float:
        """Sleep until the next delivery is due, but tick at least every 0.2 s."""
        with self.lock:  # a busy URL's deliveries wait for its sender, which wakes the loop when done
            next_due = min((d.due for d in self._queue if d.url not in self._busy), default=None)
        if next_due is None:
            return 0.2
        return min(0.2, max(0.005, next_due - time.monotonic()))

    def _batches(self, due: list[Delivery]) -> list[Delivery]:
        """Fresh change notifications for the same URL travel together; retries and lifecycle events alone."""
        batches: list[Delivery] = []
        open_batch: dict[str, Delivery] = {}
        for delivery in due:
            fresh = delivery.kind == "change" and not delivery.attempts
            target = open_batch.get(delivery.url) if fresh else None
            if target is not None and len(target.notifications) + len(delivery.notifications) <= MAX_BATCH:
                target.notifications.extend(delivery.notifications)
                with self.lock:  # the batch's own log entry now stands for this one
                    self.log = [d for d in self.log if d is not delivery]
                continue
            batches.append(delivery)
            if fresh:
                open_batch[delivery.url] = delivery
        return batches

    def _attempt(self, client: httpx.Client, delivery: Delivery) -> None:
        attempt: dict[str, Any] = {"time": iso7(self.now())}
        retry = False
        try:
            answer = client.post(delivery.url, json={"value": delivery.notifications},
                                 headers={"Content-Type": "application/json; charset=utf-8"},
                                 timeout=self.settings.delivery_timeout_seconds)
            attempt["status"] = answer.status_code
            if 200 <= answer.status_code < 300:
                delivery.state = "delivered"
            else:
                retry = answer.status_code >= 500 or answer.status_code == 429
        except httpx.TimeoutException:
            attempt["error"] = "timeout"
            retry = True
        except httpx.HTTPError as exc:
            attempt["error"] = type(exc).__name__
            retry = True
        delivery.attempts.append(attempt)
        if delivery.state == "delivered":
            if delivery.kind == "change" and self._random.random() < self.settings.duplicate_probability:
                copy = Delivery(uuid.uuid4().hex, delivery.kind, delivery.url, list(delivery.notifications),
                                self.now(), time.monotonic(), duplicate=True)
                self.record(copy)
                self._attempt(client, copy)
            return
        age = self.now() - delivery.created
        if retry and len(delivery.attempts) < self.settings.max_attempts and age < self.settings.max_retry_seconds:
            backoff = min(self.settings.retry_max_ms, self.settings.retry_base_ms * 2 ** (len(delivery.attempts) - 1))
            delivery.due = time.monotonic() + backoff / 1000
            with self.lock:
                self._queue.append(delivery)
            return
        delivery.state = "dropped" if retry else "failed"
        self.on_undelivered(delivery)
