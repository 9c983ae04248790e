"""A tiny FunctionApp for devhost's tests. devhost knows none of these functions: they reach it only through
`app.get_functions()`, mostly from a Blueprint registered into the app, as function_app.py does.

Functions write what they saw as JSON lines to $SAMPLE_EVENTS_FILE, so tests can observe timers and queues.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import azure.functions as func

bp = func.Blueprint()
_write_lock = threading.Lock()


def record(kind: str, **data: object) -> None:
    line = json.dumps({"kind": kind, "at": time.time(), **data})
    with _write_lock, open(os.environ["SAMPLE_EVENTS_FILE"], "a", encoding="utf-8") as events:
        events.write(line + "\n")


def _json(document: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(document), status_code=status, mimetype="application/json")


@bp.route(route="users/{id:int}", methods=["GET", "DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
def user_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"function": "user_by_id", "id": req.route_params["id"], "method": req.method})


@bp.route(route="users/me", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def current_user(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"function": "current_user"})


@bp.route(route="files/{*path}", auth_level=func.AuthLevel.ANONYMOUS)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"path": req.route_params.get("path"), "method": req.method})


@bp.route(route="echo", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    response = _json({
        "body": req.get_body().decode("utf-8"),
        "params": dict(req.params),
        "header": req.headers.get("x-sample"),
        "url": req.url,
        "method": req.method,
    }, status=201)
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; HttpOnly")
    response.headers["X-Reply"] = "yes"
    return response


@bp.route(route="page", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def page(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("<p>héllo</p>", mimetype="text/html", charset="utf-8")


@bp.route(route="secret", methods=["GET"])  # no auth level: the app's default (FUNCTION) applies
def secret(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("function-level ok")


@bp.route(route="admin-only", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin-level ok")


@bp.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom: internal detail that must not reach the client")


@bp.route(route="wait/{ms:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def wait_async(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await asyncio.sleep(int(req.route_params["ms"]) / 1000)
    return _json({"function_name": context.function_name, "invocation_id": context.invocation_id})


@bp.route(route="sleep/{ms:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def sleep_sync(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(int(req.route_params["ms"]) / 1000)
    return _json({"thread": threading.current_thread().name})


@bp.timer_trigger(schedule="%SAMPLE_TICK_SCHEDULE%", arg_name="timer", run_on_startup=True)
def tick(timer: func.TimerRequest) -> None:
    record("tick", past_due=timer.past_due, next=timer.schedule_status.get("Next"))


@bp.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="SAMPLE_STORAGE")
def work(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode("utf-8")
    seen = {
        "id": msg.id, "body": body, "dequeue_count": msg.dequeue_count, "pop_receipt": msg.pop_receipt,
        "insertion_time": msg.insertion_time.isoformat() if msg.insertion_time else None,
        "expiration_time": msg.expiration_time.isoformat() if msg.expiration_time else None,
    }
    if body.startswith("fail-always") or (body.startswith("fail-once") and msg.dequeue_count == 1):
        record("work-failed", **seen)
        raise ValueError(f"sample failure for {body}")
    if body.startswith("sleep"):
        record("work-start", **seen)
        time.sleep(0.6)
    record("work", **seen)


@bp.blob_trigger(arg_name="blob", path="samples/{name}", connection="SAMPLE_STORAGE")
def on_blob(blob: func.InputStream) -> None:
    record("blob", name=blob.name)


app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(bp)


@app.route(route="app-level", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def app_level(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("declared on the app itself")
