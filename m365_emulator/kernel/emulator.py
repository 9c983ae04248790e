"""The Graph side of the emulator: one `Emulator` object that every resource module plugs into, and the request
pipeline every Graph call goes through (top-level or `$batch` step).

Pipeline, in order: request log entry, injected faults (before), Bearer token (401), mailbox (/me or
/users/{id|upn}: 404 unknown user, 403 another user's mailbox), throttling per (app, mailbox) (429),
route (400 unknown segment, 405 method), handler, injected faults (after), log.

Resource modules (m365_emulator.resources) register routes on `emu.router` and may add UI sections
(`emu.ui_sections`), control routes (`emu.control_routes`), persisted state (`emu.persisted`) and the `$batch`
runner (`emu.batch`); this module imports none of them.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from m365_emulator.kernel.core import Core, User
from m365_emulator.kernel.delta import DeltaSettings, TokenCodec
from m365_emulator.kernel.faults import FaultRule, Faults
from m365_emulator.kernel.graph import (
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
from m365_emulator.kernel.router import MAILBOX, GraphRouter, normalise_path
from m365_emulator.kernel.store import Store
from m365_emulator.kernel.throttle import Throttle, ThrottleConfig

log = logging.getLogger(__name__)

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

BatchRunner = Callable[["Emulator", GraphRequest, str], Awaitable[GraphResponse]]  # (emulator, outer request, batch id)



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
        self.router: GraphRouter[Handler] = GraphRouter()
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
        self.batch: BatchRunner | None = None  # set by resources.batch
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
            if self.batch is None:
                raise GraphError(400, "BadRequest", "Resource not found for the segment '$batch'.")
            return await self.batch(self, req, request_id)
        mailbox = MAILBOX.match(path)
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
