"""Wiring: builds the emulator from an explicit list of resource modules and puts the Starlette app around it
(Graph under /v1.0, the control API and the UI under /_emulator).

The kernel (m365_emulator.kernel) knows no resource; each resource module exposes `register(emu)`, which adds its
routes to `emu.router` and may add UI sections, control routes, persisted state and state parts. The modules of
one group are registered together; a group that fails to register is rolled back out of the router and reported
in the ready file (`module_errors`), so one broken resource does not take the rest of the emulator down.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route as StarletteRoute

from m365_emulator.kernel.core import Core
from m365_emulator.kernel.emulator import Emulator
from m365_emulator.kernel.graph import DropConnection, GraphRequest
from m365_emulator.kernel.throttle import ThrottleConfig
from m365_emulator.resources import (
    batch,
    calendar_routes,
    calendar_view,
    contact_routes,
    control,
    subscription_routes,
    todo_routes,
    users,
)
from m365_emulator.ui import contacts as ui_contacts, todo_calendar as ui_todo_calendar

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 0.5

# Open HTTP connections by client address, filled in by serve.py's protocol, so a fault can drop one.
TRANSPORTS: dict[tuple[str, int], asyncio.BaseTransport] = {}

Register = Callable[[Emulator], None]

# Registered first, in this order; the emulator does not start without them.
REQUIRED: tuple[Register, ...] = (users.register, batch.register, contact_routes.register)
# Then each group, in this order (routes, UI sections and control routes keep it).
GROUPS: tuple[tuple[str, tuple[Register, ...]], ...] = (
    ("todo", (todo_routes.register, ui_todo_calendar.register_todo)),
    ("calendar", (calendar_routes.register, calendar_view.register, ui_todo_calendar.register_calendar)),
    ("subscriptions", (subscription_routes.register,)),
)


def build_emulator(core: Core, throttle: ThrottleConfig | None = None,
                   delta_retention_seconds: float | None = None) -> Emulator:
    emu = Emulator(core, throttle, delta_retention_seconds)
    for register in REQUIRED:
        register(emu)
    for name, registers in GROUPS:
        routes_before = len(emu.router.routes)
        try:
            for register in registers:
                register(emu)
        except Exception as exc:  # one broken resource must not take the rest of the emulator down
            del emu.router.routes[routes_before:]  # no half-registered resource
            emu.module_errors[name] = f"{type(exc).__name__}: {exc}"
            log.exception("resource %s failed to register; serving without it", name)
    return emu


def build_app(emu: Emulator, persister: Any | None = None) -> Any:
    """The Starlette app: Graph under /v1.0, control API and UI under /_emulator."""
    async def graph_endpoint(request: Request) -> Response:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
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
        Mount("/_emulator", routes=control.routes(emu, persister) + ui_contacts.routes(emu) + emu.control_routes),
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
            raise RuntimeError("cannot drop the connection: its transport is unknown (not served by serve.py)")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()  # type: ignore[attr-defined]
        # Let the server see the connection gone before the app returns, so it does not answer 500.
        for _ in range(3):
            await asyncio.sleep(0)
