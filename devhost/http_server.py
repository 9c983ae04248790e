"""An ASGI app that serves the HTTP-triggered functions: routing, methods, keys, HttpRequest/HttpResponse.

Keys (the Functions host keeps these in its key store; locally they are app settings):
    DEVHOST_FUNCTION_KEY  accepted for auth level "function"
    DEVHOST_MASTER_KEY    accepted for "function" and "admin"
A caller passes a key as `?code=KEY` or in the `x-functions-key` header; a missing or wrong key is a 401.
"""
from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

import azure.functions as func

from devhost.catalog import HttpFunction
from devhost.invocation import FunctionTimeoutError, start_daemon

log = logging.getLogger("devhost")

FUNCTION_KEY_SETTING = "DEVHOST_FUNCTION_KEY"
MASTER_KEY_SETTING = "DEVHOST_MASTER_KEY"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Keys:
    function_key: str | None
    master_key: str | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Keys":
        return cls(environ.get(FUNCTION_KEY_SETTING) or None, environ.get(MASTER_KEY_SETTING) or None)

    def allows(self, level: str, presented: str | None) -> bool:
        if level == "anonymous":
            return True
        if not presented:
            return False
        accepted = [self.master_key] if level == "admin" else [self.function_key, self.master_key]
        # Compare against every key so timing does not reveal which one nearly matched.
        results = [hmac.compare_digest(presented.encode(), key.encode()) for key in accepted if key]
        return any(results)


@dataclass
class _Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _plain(status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> _Reply:
    body = text.encode()
    return _Reply(status, [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])], body)


def _content_type(response: func.HttpResponse) -> str:
    # The Python worker's rule: text/* types carry the charset, others go as given.
    if response.mimetype.startswith("text/"):
        return f"{response.mimetype}; charset={response.charset}"
    return str(response.mimetype)


def _reply_from(result: object) -> _Reply:
    if result is None:
        return _Reply(204, [], b"")
    if isinstance(result, str | bytes):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"an HTTP function returned {type(result).__name__}, not func.HttpResponse")
    # The body's length is set by the host; a function's own framing headers would contradict it.
    headers = [(name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in result.headers.items()
               if name.lower() not in ("content-length", "transfer-encoding")]
    if not any(name == b"content-type" for name, _ in headers):
        headers.append((b"content-type", _content_type(result).encode("latin-1")))
    return _Reply(int(result.status_code), headers, result.get_body())


class HttpHost:
    """The ASGI callable. `prefix` is host.json's routePrefix ("" for none)."""

    def __init__(self, functions: list[HttpFunction], prefix: str, keys: Keys, threads: int = 32,
                 function_timeout: float | None = None) -> None:
        # Most specific routes first, as ASP.NET orders them.
        self.functions = sorted(functions, key=lambda f: (f.route.precedence, f.route.template.lower()))
        self.prefix = prefix.strip("/")
        self.keys = keys
        self.function_timeout = function_timeout
        # Sync functions run on daemon threads, at most `threads` at once. Not a ThreadPoolExecutor: the
        # interpreter joins its threads at exit, so one function abandoned at its timeout could hold devhost
        # open forever. An abandoned thread keeps its slot until it ends: it is still running.
        self.slots = asyncio.Semaphore(threads)
        self.thread_numbers = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await self._read_body(receive)
        started = time.monotonic()
        reply = await self._handle(scope, body)
        # The path only: query strings can carry keys (?code=) and OAuth codes, which must never be logged.
        log.info("%s %s -> %d (%d ms)", scope["method"], scope["path"], reply.status,
                 (time.monotonic() - started) * 1000)
        headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else reply.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # uvicorn has drained the requests by now; threads still running were abandoned at their timeout.
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _read_body(receive: Receive) -> bytes:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    def _function_path(self, path: str) -> str | None:
        """The path below the route prefix, or None when the request is outside it."""
        if not self.prefix:
            return path
        head = "/" + self.prefix
        lowered = path.lower()
        if lowered == head.lower() or lowered.startswith(head.lower() + "/"):
            return path[len(head):]
        return None

    def _route(self, path: str, method: str) -> tuple[HttpFunction, dict[str, str]] | _Reply:
        allowed: set[str] = set()
        for function in self.functions:
            values = function.route.match(path)
            if values is None:
                continue
            if function.methods is None or method in function.methods:
                return function, values
            allowed |= function.methods
        if allowed:
            return _plain(405, "Method Not Allowed", [(b"allow", ", ".join(sorted(allowed)).encode())])
        return _plain(404, "Not Found")

    async def _handle(self, scope: Scope, body: bytes) -> _Reply:
        method = str(scope["method"]).upper()
        raw_path = scope.get("raw_path")
        # Route values are unescaped per segment, so match on the still-escaped path ("a%2Fb" stays one segment).
        path = raw_path.decode("latin-1") if raw_path else str(scope["path"])
        function_path = self._function_path(path)
        if function_path is None:
            return _plain(404, "Not Found")
        routed = self._route(function_path, method)
        if isinstance(routed, _Reply):
            return routed
        function, route_values = routed
        request = self._request(scope, method, route_values, body)
        presented = request.params.get("code") or request.headers.get("x-functions-key")
        if not self.keys.allows(function.auth_level, presented):
            log.info("401 for %s %s: %s-level function '%s' needs a valid key", method, unquote(path),
                     function.auth_level, function.name)
            return _Reply(401, [], b"")
        try:
            result = await function.invoker.call_async(request, "HTTP request", self._run_sync, self.function_timeout)
            return _reply_from(result)
        except FunctionTimeoutError:
            # Azure answers a timed-out HTTP invocation with a 500 too; the invoker has logged the timeout.
            return _plain(500, "Internal Server Error")
        except Exception:
            log.exception("Function '%s' failed on %s %s", function.name, method, unquote(path))
            return _plain(500, "Internal Server Error")

    async def _run_sync(self, call: Callable[[], Any]) -> Any:
        await self.slots.acquire()
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            self.slots.release()
            if outcome.done():
                return  # the request was cancelled (shutdown) while the function ran
            if error is not None:
                outcome.set_exception(error)
            else:
                outcome.set_result(result)

        def run() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = call()
            except BaseException as exc:  # handed to the event loop, which raises it in the request
                error = exc
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:
                log.warning("A function thread ended after the HTTP server stopped; its outcome is dropped")

        start_daemon(run, f"http-{next(self.thread_numbers)}")
        return await outcome

    @staticmethod
    def _request(scope: Scope, method: str, route_values: dict[str, str], body: bytes) -> func.HttpRequest:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            separator = "; " if name == "cookie" else ", "
            headers[name] = f"{headers[name]}{separator}{value}" if name in headers else value
        query = scope.get("query_string", b"").decode("latin-1")
        params: dict[str, str] = {}
        # Repeated query keys reach the function joined by commas, as ASP.NET's query collection renders them.
        for key, value in parse_qsl(query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        host = headers.get("host") or "{}:{}".format(*scope.get("server") or ("127.0.0.1", 80))
        url = f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{scope['path']}"
        if query:
            url += f"?{query}"
        return func.HttpRequest(method, url, headers=headers, params=params, route_params=route_values, body=body)
