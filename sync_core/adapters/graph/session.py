"""One user's Microsoft Graph session: msgraph-sdk's request adapter, raw JSON I/O, pacing, batching.

We drive msgraph-sdk's GraphRequestAdapter with RequestInformation objects and read raw bytes:
the SDK handles auth, URL building and errors, while we skip its model deserialisation (50,000
contacts as kiota models cost seconds and hundreds of MB) and its retry handler (which replays
POSTs on 429/503 and so duplicates creates). Retries are ours, explicit and counted.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from azure.core.credentials import TokenCredential

from sync_core.domain.errors import (
    DeltaExpiredError,
    MicrosoftError,
    NotFoundError,
    ThrottledError,
    TransientError,
)

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation

# msgraph-sdk and kiota are imported where a session is opened, not with this module: the app imports
# this module at start-up, and most invocations (pages, webhooks, the timer) never talk to Graph.
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BATCH_LIMIT = 20
PREFER_IMMUTABLE = 'IdType="ImmutableId"'
_DELTA_EXPIRED_CODES = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}


class Pacer:
    """Keeps a mailbox under Outlook's request ceiling (every batch item counts) and honours
    Retry-After for everything sent after a 429, so a large sync rides the limit instead of
    hammering it."""

    def __init__(self, limit: int, window_seconds: float, headroom: float = 0.97,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.capacity = max(1, int(limit * headroom))
        self.window = window_seconds
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    def acquire(self, cost: int) -> None:
        cost = min(cost, self.capacity)
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                wait = max(0.0, self._blocked_until - now)
                if not wait and len(self._sent) + cost <= self.capacity:
                    self._sent.extend([now] * cost)
                    return
                if not wait:
                    wait = self._sent[len(self._sent) + cost - self.capacity - 1] + self.window - now
            wait = max(wait, 0.01)
            self.waited_seconds += wait
            self._sleep(wait)

    def delay_for(self, cost: int) -> float:
        """How long from now until `cost` more requests may all have gone (a run's time budget asks this
        before a chunk: after a burst, the window frees nothing until its first request is a window old)."""
        cost = min(cost, self.capacity)
        with self._lock:
            now = self._clock()
            live = [sent for sent in self._sent if sent > now - self.window]
            blocked = max(0.0, self._blocked_until - now)
            over = len(live) + cost - self.capacity
            return blocked if over <= 0 else max(blocked, live[over - 1] + self.window - now)

    def block_for(self, seconds: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)


@dataclass
class SubResponse:
    id: str
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def error_text(self) -> str:
        """Graph's error code and message (clipped), for the user's quarantine list."""
        body = self.body if isinstance(self.body, dict) else {}
        error = body.get("error")
        error = error if isinstance(error, dict) else {}
        return f"HTTP {self.status} {error.get('code', '')}: {str(error.get('message', ''))[:200]}".strip()

    @property
    def retry_after(self) -> float | None:
        value = next((v for k, v in self.headers.items() if k.lower() == "retry-after"), None)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


@dataclass
class SubRequest:
    id: str
    method: str
    url: str  # relative to the Graph base, e.g. /me/contacts/{id}
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class GraphSession:
    """A user's Graph connection. Not thread-safe: one sync run uses one session."""

    def __init__(self, base_url: str, credential: TokenCredential, *, timeout: float = 30.0,
                 pacer: Pacer | None = None, max_retries: int = 6) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.pacer = pacer or Pacer(10_000, 600)
        self.max_retries = max_retries
        self.requests_sent = 0
        self.retries = 0
        self.credential = credential
        # The SDK is async and our engine is not: the session's event loop runs on its own thread,
        # so it works from any caller, including one that already runs a loop (Functions, Playwright).
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="graph-session", daemon=True)
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from kiota_http.middleware import ParametersNameDecodingHandler, RedirectHandler, UrlReplaceHandler
        from msgraph import GraphRequestAdapter, GraphServiceClient
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError
        from msgraph_core import GraphClientFactory

        self._error_map = {"4XX": ODataError.create_from_discriminator_value,
                           "5XX": ODataError.create_from_discriminator_value}
        self._thread.start()
        host = httpx.URL(self.base_url).host
        auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=[host])
        http_client = GraphClientFactory.create_with_custom_middleware(
            middleware=[RedirectHandler(), ParametersNameDecodingHandler(), UrlReplaceHandler()],
            client=httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=False, http2=False),
        )
        self.adapter = GraphRequestAdapter(auth, client=http_client)
        self.adapter.base_url = self.base_url
        self.client = GraphServiceClient(request_adapter=self.adapter)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self.adapter._http_client.aclose())  # noqa: SLF001 - the SDK offers no close
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    # -- single requests -------------------------------------------------------------------
    def request(self, method: str, url: str, body: dict[str, Any] | None = None, *,
                headers: dict[str, str] | None = None, retry: bool = True) -> Any:
        """Send one request and return its parsed JSON (None for 204). Retries 429/503/504 and
        transport errors after Retry-After (or backoff) when `retry` is true; never a POST whose
        outcome is unknown. A rejected access token is renewed once (MSAL judges expiry by its own
        clock, so a token the server already considers dead can still look valid)."""
        attempt = 0
        reauthenticated = False
        while True:
            self.pacer.acquire(1)
            try:
                return self._run(self._send(method, url, body, headers or {}))
            except ThrottledError as exc:
                self.pacer.block_for(exc.retry_after)
                if not retry or attempt >= self.max_retries:
                    raise
            except TransientError:
                if not retry or attempt >= self.max_retries or method == "POST":
                    raise
                time.sleep(min(8.0, 0.25 * 2 ** attempt))
            except MicrosoftError as exc:
                invalidate = getattr(self.credential, "invalidate", None)
                if exc.status != 401 or reauthenticated or invalidate is None:
                    raise
                invalidate()
                reauthenticated = True
                continue
            attempt += 1
            self.retries += 1

    def get_pages(self, url: str, *, headers: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """Follow @odata.nextLink to the end; returns (items, deltaLink)."""
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        delta_link: str | None = None
        while next_url:
            page = self.request("GET", next_url, headers=headers)
            if not isinstance(page, dict) or not isinstance(page.get("value", []), list):
                raise MicrosoftError("Graph returned a malformed page (no 'value' list)", status=200)
            items.extend(page.get("value", []))
            next_url = page.get("@odata.nextLink")
            delta_link = page.get("@odata.deltaLink", delta_link)
        return items, delta_link

    # -- batches ---------------------------------------------------------------------------
    def batch(self, requests: Sequence[SubRequest], *, idempotent: bool) -> dict[str, SubResponse]:
        """Run sub-requests in $batch calls of ≤ 20; items throttled inside a batch are retried
        after the longest Retry-After. When a whole batch fails in a way that may have executed
        some items (timeout, 5xx), non-idempotent items are reported with status 0 (outcome
        unknown) instead of being replayed."""
        results: dict[str, SubResponse] = {}
        pending = list(requests)
        attempt = 0
        reauthenticated = False
        while pending:
            chunk, pending = pending[:BATCH_LIMIT], pending[BATCH_LIMIT:]
            retry_items: list[SubRequest] = []
            longest = 0.0
            try:
                self.pacer.acquire(len(chunk))
                answered = self._run(self._send_batch(chunk))
            except ThrottledError as exc:  # the whole batch was refused before running
                self.pacer.block_for(exc.retry_after)
                pending = chunk + pending
                attempt += 1
                self.retries += 1
                if attempt > self.max_retries:
                    raise
                continue
            except (TransientError, MicrosoftError) as exc:
                invalidate = getattr(self.credential, "invalidate", None)
                if exc.status == 401 and invalidate is not None and not reauthenticated:
                    invalidate()  # refused before running anything: safe to send again
                    reauthenticated = True
                    pending = chunk + pending
                    continue
                if idempotent and attempt < self.max_retries:
                    attempt += 1
                    self.retries += 1
                    time.sleep(min(8.0, 0.25 * 2 ** attempt))
                    pending = chunk + pending
                    continue
                for sub in chunk:
                    results[sub.id] = SubResponse(sub.id, 0, {}, {"error": {"code": "outcomeUnknown", "message": str(exc)}})
                continue
            for sub in chunk:
                response = answered.get(sub.id)
                if response is None:
                    results[sub.id] = SubResponse(sub.id, 0, {}, {"error": {"code": "missingResponse", "message": "no response for this item"}})
                elif response.status in (429, 503) and attempt < self.max_retries:
                    retry_items.append(sub)
                    longest = max(longest, response.retry_after or 1.0)
                else:
                    results[sub.id] = response
            if retry_items:
                attempt += 1
                self.retries += len(retry_items)
                self.pacer.block_for(longest)
                pending = retry_items + pending
        return results

    # -- internals -------------------------------------------------------------------------
    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _info(self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str]) -> RequestInformation:
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation

        info = RequestInformation(Method[method])
        info.url = url if url.startswith("http") else f"{self.base_url}{url}"
        info.headers.try_add("Prefer", PREFER_IMMUTABLE)
        for name, value in headers.items():
            info.headers.add(name, value)
        if body is not None:
            info.set_stream_content(json.dumps(body).encode(), "application/json")
        return info

    async def _send(self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Any:
        from kiota_abstractions.api_error import APIError
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        self.requests_sent += 1
        try:
            raw = await self.adapter.send_primitive_async(self._info(method, url, body, headers), "bytes",
                                                          self._error_map)
        except ODataError as exc:
            raise translate_error(exc.response_status_code or 0, dict(exc.response_headers or {}),
                                  getattr(exc.error, "code", None) if exc.error else None,
                                  getattr(exc.error, "message", None) if exc.error else str(exc)) from None
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TransientError(f"Graph request failed: {type(exc).__name__}") from None
        except APIError as exc:  # an error body the SDK could not parse as OData
            raise translate_error(exc.response_status_code or 0, dict(exc.response_headers or {}), None,
                                  exc.message) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise MicrosoftError("Graph returned a body that is not JSON", status=200) from None

    async def _send_batch(self, chunk: Sequence[SubRequest]) -> dict[str, SubResponse]:
        payload = {"requests": [
            {"id": s.id, "method": s.method, "url": s.url,
             "headers": {"Prefer": PREFER_IMMUTABLE, **({"Content-Type": "application/json"} if s.body is not None else {}), **s.headers},
             **({"body": s.body} if s.body is not None else {})}
            for s in chunk]}
        answer = await self._send("POST", "/$batch", payload, {})
        responses = answer.get("responses") if isinstance(answer, dict) else None
        if not isinstance(responses, list):
            raise MicrosoftError("Graph returned a malformed $batch response", status=200)
        out: dict[str, SubResponse] = {}
        for item in responses:
            if isinstance(item, dict) and "id" in item:
                headers = item.get("headers")
                out[str(item["id"])] = SubResponse(str(item["id"]), _status_of(item.get("status")),
                                                   dict(headers) if isinstance(headers, dict) else {}, item.get("body"))
        return out


def _status_of(value: object) -> int:
    """A batch item's status; 0 (outcome unknown) when Graph did not say it as a number."""
    try:
        return int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else 0
    except ValueError:
        return 0


def translate_error(status: int, headers: dict[str, str], code: str | None, message: str | None) -> Exception:
    """Graph's status/code → the sync_core error vocabulary."""
    text = f"Graph {status} {code or ''}: {message or ''}".strip()
    retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if status == 410 or (code or "").lower() in _DELTA_EXPIRED_CODES:
        return DeltaExpiredError(text, status=status, code=code)
    if status in (429, 503, 504) and retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError:
            seconds = 5.0
        return ThrottledError(text, retry_after=seconds, status=status, code=code)
    if status == 404:
        return NotFoundError(text)
    if status >= 500 or status in (408, 429):
        return TransientError(text, status=status, code=code)
    return MicrosoftError(text, status=status, code=code)
