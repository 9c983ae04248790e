"""The Graph side of the emulator: one `Emulator` object that every resource module plugs into, the request
pipeline every Graph call goes through (top-level or `$batch` step), and the Starlette app around it.

Pipeline, in order: request log entry, injected faults (before), Bearer token (401), mailbox (/me or
/users/{id|upn}: 404 unknown user, 403 another user's mailbox), throttling per (app, mailbox) (429),
route (400 unknown segment, 405 method), handler, injected faults (after), log.

Resource modules register routes relative to the mailbox (`emu.router.add("GET", "/contactFolders/{folder_id}",
handler)`) or at the root (`scope="root"`, e.g. /subscriptions). A module named in OPTIONAL_MODULES that exists
is installed at start-up through its `install(emu: Emulator) -> None`, where it may also add UI sections
(`emu.ui_sections`), control routes (`emu.control_routes`) and persisted state (`emu.persisted`).
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import re
import secrets
import socket
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from m365_emulator.core import Core, User
from m365_emulator.delta import DeltaSettings, TokenCodec
from m365_emulator.faults import FaultRule, Faults
from m365_emulator.graph_common import (
    ERROR_JSON,
    ODATA_JSON,
    DropConnection,
    GraphError,
    GraphRequest,
    GraphResponse,
    error_body,
    iso,
    new_request_id,
    wants_immutable_ids,
)
from m365_emulator.store import Store
from m365_emulator.throttle import Throttle, ThrottleConfig

log = logging.getLogger(__name__)

OPTIONAL_MODULES = ("m365_emulator.todo", "m365_emulator.calendar", "m365_emulator.subscriptions")
MAINTENANCE_INTERVAL = 0.5

# Open HTTP connections by client address, filled in by server.py's protocol, so a fault can drop one.
TRANSPORTS: dict[tuple[str, int], asyncio.BaseTransport] = {}


# ------------------------------------------------------------------------------------------ routing

@dataclass
class GraphContext:
    """What a handler sees: the request, the mailbox owner, and the emulator."""

    emu: Emulator
    req: GraphRequest
    params: dict[str, str]
    user: User
    client_id: str
    prefix: str  # "/me" or "/users/{id}" as the request spelled it; "" for root routes
    request_id: str

    @property
    def store(self) -> Store:
        return self.emu.store

    @property
    def immutable(self) -> bool:
        return wants_immutable_ids(self.req.headers)

    def url(self, rest: str) -> str:
        return f"{self.req.base_url}{self.prefix}{rest}"

    def context_url(self, fragment: str) -> str:
        return f"{self.req.base_url}/$metadata#{fragment}"


Handler = Callable[[GraphContext], Awaitable[GraphResponse] | GraphResponse]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    scope: str


class GraphRouter:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, scope: str = "mailbox") -> None:
        """`template` like "/contactFolders/{folder_id}/contacts"; literal segments match case-insensitively,
        as Graph's do."""
        parts = []
        for segment in template.strip("/").split("/") if template.strip("/") else []:
            parts.append(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(segment)))
        regex = "^" + "".join("/" + p for p in parts) + "$"
        self.routes.append(Route(method.upper(), re.compile(regex, re.IGNORECASE), handler, scope))

    def resolve(self, method: str, rest: str, scope: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for route in self.routes:
            if route.scope != scope:
                continue
            match = route.pattern.match(rest)
            if match is None:
                continue
            if route.method == method.upper():
                return route.handler, match.groupdict()
            allowed = True
        if allowed:
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
        segment = next((s for s in rest.split("/") if s), rest)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


_KEY_SEGMENT = re.compile(r"([A-Za-z.]+)\('([^']*)'\)")
_MAILBOX = re.compile(r"^/(?:(?P<me>me)|users/(?P<user>[^/]+))(?P<rest>/.*)?$", re.IGNORECASE)


def normalise_path(path: str) -> str:
    """`/users('x')/contactFolders('y')` → `/users/x/contactFolders/y`; no trailing slash."""
    path = _KEY_SEGMENT.sub(lambda m: f"{m.group(1)}/{m.group(2)}", path)
    return path.rstrip("/") or "/"


# ------------------------------------------------------------------------------------- request log

@dataclass
class RequestLog:
    limit: int = 200_000
    entries: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.entries.append(entry)
            if len(self.entries) > self.limit:
                del self.entries[: len(self.entries) - self.limit]

    def since(self, seq: int) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.entries if e["seq"] > seq]

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


# ----------------------------------------------------------------------------------------- emulator

@dataclass
class PersistedPart:
    """Extra state a module wants in the --state-file, beside users and mailboxes."""

    dump: Callable[[], Any]
    load: Callable[[Any], None]
    reset: Callable[[], None] | None = None


UiSection = Callable[["Emulator", str], str]  # (emulator, user id) → HTML fragment


class Emulator:
    def __init__(self, core: Core, throttle: ThrottleConfig | None = None,
                 delta_retention_seconds: float | None = None) -> None:
        self.core = core
        self.store = Store(core.clock)
        self.router = GraphRouter()
        self.throttle = Throttle(throttle or ThrottleConfig())
        self.initial_throttle = ThrottleConfig(**self.throttle.config.as_json())  # type: ignore[arg-type]
        self.faults = Faults()
        self.log = RequestLog()
        self.token_secret = secrets.token_bytes(32)
        self.codec = TokenCodec(self.token_secret)
        self.delta = DeltaSettings()
        if delta_retention_seconds is not None:
            self.delta.retention_seconds = delta_retention_seconds
        self.ui_sections: list[tuple[str, UiSection]] = []
        self.control_routes: list[Any] = []  # starlette routes mounted under /_emulator
        self.persisted: dict[str, PersistedPart] = {}
        self.on_reset: list[Callable[[], None]] = []
        # GET /_emulator/state/{userId} merges what each of these returns for the user.
        self.state_parts: list[Callable[[Emulator, str], dict[str, Any]]] = []
        self.module_errors: dict[str, str] = {}  # optional modules that failed to load (in the ready file)
        self.version_extra = 0  # bumped by control actions that change users/apps (persistence watches it)

    def set_token_secret(self, secret: bytes) -> None:
        self.token_secret = secret
        self.codec = TokenCodec(secret)

    def touch(self) -> None:
        self.version_extra += 1

    # ---------------------------------------------------------------------------------- pipeline

    async def execute(self, req: GraphRequest) -> GraphResponse:
        """Run one Graph request through faults, auth, throttling and its handler; never raises except
        DropConnection (the HTTP layer must then close the connection without an answer)."""
        request_id = new_request_id()
        client_request_id = req.headers.get("client-request-id", request_id)
        token_user, client_id, auth_error = self._authenticate(req.headers.get("authorization", ""))
        entry: dict[str, Any] = {
            "time": iso(self.core.clock.now()), "method": req.method.upper(), "path": req.path,
            "query": req.query_string, "status": None, "user_id": token_user.id if token_user else None,
            "client_id": client_id, "in_batch": req.in_batch, "batch_id": req.batch_id,
            "request_id": request_id, "dropped": False, "fault_id": None,
        }
        if not req.in_batch and normalise_path(req.path).lower() == "/$batch":
            entry["batch_id"] = request_id  # its steps carry the same batch_id
        target = req.path + (f"?{req.query_string}" if req.query else "")
        try:
            try:
                await self._fault(self.faults.match(req.method, target, req.in_batch, after=False), entry)
                if auth_error is not None:
                    raise auth_error
                assert token_user is not None and client_id is not None
                response = await self._dispatch(req, token_user, client_id, request_id)
                after = self.faults.match(req.method, target, req.in_batch, after=True)
                await self._fault(after, entry)
            except GraphError as err:
                response = GraphResponse(err.status, error_body(err, request_id, client_request_id,
                                                                self.core.clock.now()),
                                         {**err.headers, "Content-Type": ERROR_JSON})
                if err.status == 401:
                    response.headers["WWW-Authenticate"] = (
                        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize",'
                        ' client_id="00000003-0000-0000-c000-000000000000"')
            except DropConnection:
                raise
            except Exception:
                log.exception("unhandled error in %s %s", req.method, req.path)
                err = GraphError(500, "generalException", "General exception while processing.")
                response = GraphResponse(500, error_body(err, request_id, client_request_id, self.core.clock.now()),
                                         {"Content-Type": ERROR_JSON})
        except DropConnection:
            entry["dropped"] = True
            self.log.add(entry)
            raise
        response.headers.setdefault("request-id", request_id)
        response.headers.setdefault("client-request-id", client_request_id)
        if response.body is not None:
            response.headers.setdefault("Content-Type", ODATA_JSON)
            response.headers.setdefault("OData-Version", "4.0")
        entry["status"] = response.status
        self.log.add(entry)
        return response

    async def _fault(self, rule: FaultRule | None, entry: dict[str, Any]) -> None:
        if rule is None:
            return
        entry["fault_id"] = rule.id
        if rule.delay_ms:
            await asyncio.sleep(rule.delay_ms / 1000)
        if rule.drop_connection:
            raise DropConnection()
        if rule.status is not None:
            raise rule.error()

    def _authenticate(self, header: str) -> tuple[User | None, str | None, GraphError | None]:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, None, GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        with self.core.lock:
            issued = self.core.access_tokens.get(token.strip())
            user = self.core.user_for_access_token(token.strip())
        if issued is None:
            return None, None, GraphError(401, "InvalidAuthenticationToken",
                                          "CompactToken parsing failed with error code: 80049217")
        if user is None:
            return None, issued.client_id, GraphError(401, "InvalidAuthenticationToken",
                                                      "Lifetime validation failed, the token is expired.")
        return user, issued.client_id, None

    async def _dispatch(self, req: GraphRequest, token_user: User, client_id: str, request_id: str) -> GraphResponse:
        path = normalise_path(req.path)
        if path.lower() == "/$batch":
            if req.in_batch:
                raise GraphError(400, "BadRequest", "A batch request cannot contain another batch request.")
            from m365_emulator.batch import run_batch
            return await run_batch(self, req, request_id)
        mailbox = _MAILBOX.match(path)
        if mailbox:
            prefix = path[: len(path) - len(mailbox["rest"] or "")]
            owner = self._mailbox_owner(mailbox["user"], token_user)
            handler, params = self.router.resolve(req.method, mailbox["rest"] or "", "mailbox")
        else:
            prefix, owner = "", token_user
            handler, params = self.router.resolve(req.method, path, "root")
        ctx = GraphContext(self, req, params, owner, client_id, prefix, request_id)
        key = (client_id, owner.id)
        self.throttle.acquire(key)
        try:
            if self.throttle.config.service_delay_ms:
                await asyncio.sleep(self.throttle.config.service_delay_ms / 1000)
            result = handler(ctx)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            self.throttle.release(key)

    def _mailbox_owner(self, requested: str | None, token_user: User) -> User:
        if requested is None:
            return token_user
        with self.core.lock:
            user = self.core.users.get(requested) or self.core.user_by_upn(requested)
        if user is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{requested}' is invalid.")
        if user.id != token_user.id:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return user

    # ------------------------------------------------------------------------------- maintenance

    def reset(self) -> None:
        """Forget mailboxes, users, their tokens, codes and consents, the request log, faults and throttling
        counters (app registrations and the clock stay)."""
        with self.core.lock:
            self.core.users.clear()
            self.core.access_tokens.clear()
            self.core.refresh_tokens.clear()
            self.core.authorization_codes.clear()
            self.core.consents.clear()
        self.store.clear()
        self.log.clear()
        self.faults.clear()
        self.throttle.reset()
        self.throttle.config = ThrottleConfig(**self.initial_throttle.as_json())  # type: ignore[arg-type]
        for part in self.persisted.values():
            if part.reset is not None:
                part.reset()
        for hook in self.on_reset:
            hook()
        self.touch()

    def prune(self) -> None:
        # Twice the retention: a token is checked by its issue time, and its round may have begun earlier.
        self.store.prune_tombstones(self.core.clock.now() - 2 * self.delta.retention_seconds)


# --------------------------------------------------------------------------------------- user JSON

def user_json(ctx: GraphContext) -> dict[str, Any]:
    user = ctx.user
    given, _, surname = user.display_name.partition(" ")
    return {
        "@odata.context": ctx.context_url("users/$entity"),
        "businessPhones": [], "displayName": user.display_name, "givenName": given or None,
        "jobTitle": None, "mail": user.user_principal_name, "mobilePhone": None, "officeLocation": None,
        "preferredLanguage": "en-US", "surname": surname or None,
        "userPrincipalName": user.user_principal_name, "id": user.id,
    }


def _get_me(ctx: GraphContext) -> GraphResponse:
    return GraphResponse(200, user_json(ctx))


# --------------------------------------------------------------------------------------- building

def build_emulator(core: Core, throttle: ThrottleConfig | None = None,
                   delta_retention_seconds: float | None = None) -> Emulator:
    emu = Emulator(core, throttle, delta_retention_seconds)
    emu.router.add("GET", "", _get_me)
    from m365_emulator import contacts
    contacts.install(emu)
    for name in OPTIONAL_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            emu.module_errors[name] = f"{type(exc).__name__}: {exc}"
            log.exception("optional module %s could not be imported; serving without it", name)
            continue
        except Exception as exc:  # one broken module must not take the rest of the emulator down
            emu.module_errors[name] = f"{type(exc).__name__}: {exc}"
            log.exception("optional module %s could not be imported; serving without it", name)
            continue
        routes_before = len(emu.router.routes)
        try:
            module.install(emu)
        except Exception as exc:
            del emu.router.routes[routes_before:]  # no half-installed module
            emu.module_errors[name] = f"{type(exc).__name__}: {exc}"
            log.exception("optional module %s failed to install; serving without it", name)
    return emu


def build_app(emu: Emulator, persister: Any | None = None) -> Any:
    """The Starlette app: Graph under /v1.0, control API and UI under /_emulator."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount, Route as StarletteRoute

    from m365_emulator import control, ui

    async def graph_endpoint(request: Request) -> Response:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        from urllib.parse import parse_qsl
        req = GraphRequest(
            method=request.method, path=request.scope["path"][len("/v1.0"):] or "/",
            query=dict(parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)),
            headers=headers, body=await request.body(),
            base_url=f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}/v1.0",
            client=request.client and (request.client.host, request.client.port),
        )
        try:
            result = await emu.execute(req)
        except DropConnection:
            return _Dropped()
        return Response(result.content() if result.body is not None else None, result.status, result.headers)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(_maintain(emu, persister))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if persister is not None:
                persister.save_if_changed()

    methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
    routes = [
        StarletteRoute("/v1.0/{path:path}", graph_endpoint, methods=methods),
        StarletteRoute("/v1.0", graph_endpoint, methods=methods),
        Mount("/_emulator", routes=control.routes(emu, persister) + ui.routes(emu) + emu.control_routes),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _maintain(emu: Emulator, persister: Any | None) -> None:
    while True:
        await asyncio.sleep(MAINTENANCE_INTERVAL)
        emu.prune()
        if persister is not None:
            try:
                persister.save_if_changed()
            except OSError:
                log.exception("could not write the state file")


class _Dropped:
    """An ASGI 'response' that closes the client's TCP connection (with a reset) and sends nothing."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        client = scope.get("client")
        transport = TRANSPORTS.get(tuple(client)) if client else None
        if transport is None:
            raise RuntimeError("cannot drop the connection: its transport is unknown (not served by server.py)")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()  # type: ignore[attr-defined]
        # Let the server see the connection gone before the app returns, so it does not answer 500.
        for _ in range(3):
            await asyncio.sleep(0)
