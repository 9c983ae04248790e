"""Outlook's throttling, per (app, mailbox): at most `max_concurrency` requests in flight and `limit` requests
per sliding `window_seconds` (Microsoft documents 4 concurrent and 10,000 per 10 minutes). Each `$batch`
step counts on its own.

What a throttled request gets, as Microsoft sends it:
- over the request rate: 429, `Retry-After` (whole seconds until the window has room), and the body of
  Microsoft's throttling sample (concepts/throttling.md): code "TooManyRequests", message
  "Please retry again later.", innerError {code "429", status "429", message "Please retry after", ...}.
- over the concurrency limit: 429, `Retry-After: 1`, code "ApplicationThrottled", message
  "Application is over its MailboxConcurrency limit." (what Outlook returns, widely reported).
Rejected requests do not count against the window. Time here is real (monotonic) time: throttling is about
real load, not the emulator clock.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

from m365_emulator.kernel.graph import GraphError

DEFAULT_LIMIT = 10_000
DEFAULT_WINDOW_SECONDS = 600.0
DEFAULT_MAX_CONCURRENCY = 4

Key = tuple[str, str]  # (client id, mailbox user id)


@dataclass
class ThrottleConfig:
    limit: int = DEFAULT_LIMIT
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    # Simulated service time per request: lets batches overlap in time like Outlook's, so the concurrency
    # limit bites inside a batch as it does in Microsoft 365. 0 by default (tests stay fast).
    service_delay_ms: int = 0

    def as_json(self) -> dict[str, float | int]:
        return asdict(self)


def rate_limited(retry_after: int) -> GraphError:
    return GraphError(429, "TooManyRequests", "Please retry again later.", {"Retry-After": str(retry_after)},
                      {"code": "429", "message": "Please retry after", "status": "429"})


def concurrency_limited() -> GraphError:
    return GraphError(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.",
                      {"Retry-After": "1"})


class Throttle:
    def __init__(self, config: ThrottleConfig, now: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._now = now
        self._lock = threading.Lock()
        self._recent: dict[Key, deque[float]] = {}
        self._in_flight: dict[Key, int] = {}

    def configure(self, limit: int | None = None, window_seconds: float | None = None,
                  max_concurrency: int | None = None, service_delay_ms: int | None = None) -> ThrottleConfig:
        with self._lock:
            if limit is not None:
                self.config.limit = int(limit)
            if window_seconds is not None:
                self.config.window_seconds = float(window_seconds)
            if max_concurrency is not None:
                self.config.max_concurrency = int(max_concurrency)
            if service_delay_ms is not None:
                self.config.service_delay_ms = int(service_delay_ms)
            return self.config

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._in_flight.clear()

    def acquire(self, key: Key) -> None:
        """Admit one request or raise the 429 Outlook would send. Pair every success with `release`."""
        with self._lock:
            now = self._now()
            recent = self._recent.setdefault(key, deque())
            while recent and recent[0] <= now - self.config.window_seconds:
                recent.popleft()
            if len(recent) >= self.config.limit:
                wait = recent[0] + self.config.window_seconds - now
                raise rate_limited(max(1, math.ceil(wait)))
            if self._in_flight.get(key, 0) >= self.config.max_concurrency:
                raise concurrency_limited()
            recent.append(now)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def release(self, key: Key) -> None:
        with self._lock:
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)
