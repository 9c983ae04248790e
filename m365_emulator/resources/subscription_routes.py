"""Graph routes for change-notification subscriptions (/subscriptions, root scope) and their control routes under
/_emulator (lifecycle events, the subscription list, notification settings, the delivery log)."""
from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from m365_emulator.kernel.emulator import Emulator, GraphContext, PersistedPart
from m365_emulator.kernel.graph import GraphError, GraphResponse
from m365_emulator.resources.subscriptions import Notifier


# -------------------------------------------------------------------------------------- Graph routes

def _context(ctx: GraphContext, suffix: str = "") -> str:
    return ctx.context_url(f"subscriptions{suffix}")


def register(emu: Emulator) -> None:
    notifier = Notifier(emu)

    async def post(ctx: GraphContext) -> GraphResponse:
        sub = await notifier.create(ctx)
        return GraphResponse(201, sub.json(_context(ctx, "/$entity")))

    def list_all(ctx: GraphContext) -> GraphResponse:
        now = emu.core.clock.now()
        with notifier.lock:
            mine = [s.json() for s in notifier.subscriptions.values()
                    if s.user_id == ctx.user.id and s.client_id == ctx.client_id and s.expiration > now]
        return GraphResponse(200, {"@odata.context": _context(ctx), "value": mine})

    def get(ctx: GraphContext) -> GraphResponse:
        sub = notifier.active(ctx.params["subscription_id"], ctx.user.id, ctx.client_id)
        return GraphResponse(200, sub.json(_context(ctx, "/$entity")))

    async def patch(ctx: GraphContext) -> GraphResponse:
        sub = await notifier.update(ctx, ctx.params["subscription_id"])
        return GraphResponse(200, sub.json(_context(ctx, "/$entity")))

    def delete(ctx: GraphContext) -> GraphResponse:
        notifier.delete(ctx.params["subscription_id"], ctx.user.id, ctx.client_id)
        return GraphResponse(204)

    def reauthorize(ctx: GraphContext) -> GraphResponse:
        sub = notifier.active(ctx.params["subscription_id"], ctx.user.id, ctx.client_id)
        with notifier.lock:
            sub.reauthorization_sent_for = None
        return GraphResponse(204)

    r = emu.router
    r.add("GET", "/subscriptions", list_all, scope="root")
    r.add("POST", "/subscriptions", post, scope="root")
    r.add("GET", "/subscriptions/{subscription_id}", get, scope="root")
    r.add("PATCH", "/subscriptions/{subscription_id}", patch, scope="root")
    r.add("DELETE", "/subscriptions/{subscription_id}", delete, scope="root")
    r.add("POST", "/subscriptions/{subscription_id}/reauthorize", reauthorize, scope="root")
    emu.persisted["subscriptions"] = PersistedPart(notifier.dump, notifier.load, notifier.reset)
    emu.control_routes.extend(control_routes(notifier))


# ------------------------------------------------------------------------------------ control routes

def control_routes(notifier: Notifier) -> list[Route]:
    def endpoint(func: Any) -> Any:
        async def wrapped(request: Request) -> Response:
            try:
                return await func(request)
            except GraphError as err:
                return JSONResponse({"error": err.message, "code": err.code}, err.status)
            except ValueError as err:
                return JSONResponse({"error": str(err)}, 400)
        return wrapped

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def lifecycle(request: Request) -> Response:
        body = await body_of(request)
        delivery = notifier.lifecycle(request.path_params["subscription_id"], str(body.get("event")))
        return JSONResponse(delivery.log_json(), 202)

    async def subscriptions(request: Request) -> Response:
        with notifier.lock:
            return JSONResponse({"value": [s.json() for s in notifier.subscriptions.values()]})

    async def settings(request: Request) -> Response:
        if request.method == "POST":
            return JSONResponse(notifier.configure(await body_of(request)))
        return JSONResponse(notifier.settings_json())

    async def delivery_log(request: Request) -> Response:
        if request.method == "DELETE":
            notifier.webhooks.clear_log()
            return Response(status_code=204)
        return JSONResponse({"value": notifier.webhooks.entries(int(request.query_params.get("since", "0") or 0))})

    return [
        Route("/subscriptions/{subscription_id}/lifecycle", endpoint(lifecycle), methods=["POST"]),
        Route("/subscriptions", endpoint(subscriptions), methods=["GET"]),
        Route("/notifications", endpoint(settings), methods=["GET", "POST"]),
        Route("/notifications/log", endpoint(delivery_log), methods=["GET", "DELETE"]),
    ]
