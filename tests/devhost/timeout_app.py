"""A FunctionApp whose functions take as long as they are told, for the functionTimeout tests.

Events go to $SAMPLE_EVENTS_FILE through the sample app's `record`, so a late-finishing function is observable.
"""
from __future__ import annotations

import asyncio
import json
import time

import azure.functions as func

from tests.devhost.sample_app import record

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.queue_trigger(arg_name="msg", queue_name="%TIMEOUT_QUEUE%", connection="TIMEOUT_STORAGE")
def slow_queue(msg: func.QueueMessage) -> None:
    # Body: "<seconds to sleep> <label>".
    body = msg.get_body().decode("utf-8")
    record("start", body=body, dequeue_count=msg.dequeue_count)
    time.sleep(float(body.split()[0]))
    record("end", body=body, dequeue_count=msg.dequeue_count)


@app.route(route="hang/{ms:int}", methods=["GET"])
def hang(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(int(req.route_params["ms"]) / 1000)
    record("hang-end", body=req.route_params["ms"])
    return func.HttpResponse("finished")


@app.route(route="hang-async/{ms:int}", methods=["GET"])
async def hang_async(req: func.HttpRequest) -> func.HttpResponse:
    try:
        await asyncio.sleep(int(req.route_params["ms"]) / 1000)
    except asyncio.CancelledError:
        record("cancelled", body=req.route_params["ms"])
        raise
    return func.HttpResponse("finished")


@app.route(route="ok", methods=["GET"])
def ok(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({
        "invocation_id": context.invocation_id,
        "thread_local_invocation_id": getattr(context.thread_local_storage, "invocation_id", None),
    }), mimetype="application/json")


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
def slow_timer(timer: func.TimerRequest) -> None:
    time.sleep(3)
    record("timer-end", body="")
