"""JSON batching: `POST /v1.0/$batch` with up to 20 steps, each routed through the same pipeline as an HTTP
request (faults, auth with the batch's token, throttling on its own, logging as an `in_batch` entry).

Steps without `dependsOn` run concurrently (as Graph runs them, so Outlook's concurrency limit can bite inside a
batch); a step waits for the steps it depends on, and fails with 424 when one of them failed. msgraph-core
serialises the dependency list as `depends_on`, which Graph does not recognise: it is ignored here too.
Steps may use relative URLs with or without a leading slash, or absolute URLs (msgraph-core sends those).
Answers keep the requests' order; each is `{"id", "status", "headers", "body"}` as in Microsoft's example.

Whole-batch 400s: a body that is not `{"requests": [...]}`, more than 20 steps (the message is ours: Microsoft
documents the limit, not its wording), duplicate ids, unknown or circular dependencies, and a write step
without both body and Content-Type ("Write request id : N does not contain Content-Type header or body.",
Graph's wording).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from m365_emulator.kernel.emulator import Emulator
from m365_emulator.kernel.graph import (
    DropConnection,
    GraphError,
    GraphRequest,
    GraphResponse,
    bad_request,
    error_body,
    new_request_id,
    split_url,
)


MAX_STEPS = 20
WRITE_METHODS = ("POST", "PATCH", "PUT")


@dataclass
class Step:
    id: str
    method: str
    url: str
    headers: dict[str, str]
    body: Any
    depends_on: list[str]


def _invalid(detail: str) -> GraphError:
    return bad_request(f"Invalid batch payload format. {detail}".strip())


def parse_steps(payload: Any) -> list[Step]:
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise _invalid("The body must be a JSON object with a 'requests' array.")
    raw_steps = payload["requests"]
    if not raw_steps:
        raise _invalid("The batch contains no requests.")
    if len(raw_steps) > MAX_STEPS:
        raise _invalid(f"The batch contains {len(raw_steps)} requests; at most {MAX_STEPS} are allowed.")
    steps: list[Step] = []
    seen: set[str] = set()
    for raw in raw_steps:
        if not isinstance(raw, dict):
            raise _invalid("Each request must be a JSON object.")
        sid, method, url = raw.get("id"), raw.get("method"), raw.get("url")
        if not isinstance(sid, str) or not sid or not isinstance(method, str) or not isinstance(url, str) or not url:
            raise _invalid("Each request needs string 'id', 'method' and 'url' properties.")
        if sid.lower() in seen:
            raise _invalid(f"Request id '{sid}' is not unique in the batch.")
        seen.add(sid.lower())
        headers = raw.get("headers") or {}
        if not isinstance(headers, dict):
            raise _invalid(f"The headers of request id '{sid}' must be a JSON object.")
        flat = {str(k).lower(): ", ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in headers.items()}
        depends = raw.get("dependsOn") or []
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            raise _invalid(f"dependsOn of request id '{sid}' must be an array of request ids.")
        if method.upper() in WRITE_METHODS and ("body" not in raw or "content-type" not in flat):
            raise bad_request(f"Write request id : {sid} does not contain Content-Type header or body.")
        steps.append(Step(sid, method.upper(), url, flat, raw.get("body"), list(depends)))
    ids = {s.id for s in steps}
    for step in steps:
        for dep in step.depends_on:
            if dep not in ids:
                raise _invalid(f"Request id '{step.id}' depends on unknown request id '{dep}'.")
    _check_acyclic(steps)
    return steps


def _check_acyclic(steps: list[Step]) -> None:
    deps = {s.id: s.depends_on for s in steps}
    state: dict[str, int] = {}

    def visit(sid: str) -> None:
        if state.get(sid) == 1:
            raise _invalid(f"The dependencies of request id '{sid}' form a cycle.")
        if state.get(sid) == 2:
            return
        state[sid] = 1
        for dep in deps[sid]:
            visit(dep)
        state[sid] = 2

    for sid in deps:
        visit(sid)


def _body_bytes(step: Step) -> bytes:
    if step.body is None:
        return b""
    if isinstance(step.body, str):
        # Graph carries non-JSON bodies base64-encoded; a string that is not base64 is taken as text.
        try:
            return base64.b64decode(step.body, validate=True)
        except (binascii.Error, ValueError):
            return step.body.encode()
    return json.dumps(step.body).encode()


async def run_batch(emu: Emulator, outer: GraphRequest, batch_id: str) -> GraphResponse:
    steps = parse_steps(outer.json())
    done: dict[str, asyncio.Future[GraphResponse]] = {s.id: asyncio.get_running_loop().create_future() for s in steps}

    async def run(step: Step) -> GraphResponse:
        try:
            for dep in step.depends_on:
                if (await asyncio.shield(done[dep])).status >= 400:
                    err = GraphError(424, "FailedDependency", f"Request depends on request id '{dep}', which failed.")
                    rid = new_request_id()
                    response = GraphResponse(424, error_body(err, rid, rid, emu.core.clock.now()),
                                             {"Content-Type": "application/json"})
                    break
            else:
                path, query = split_url(step.url)
                headers = dict(step.headers)
                headers["authorization"] = outer.headers.get("authorization", "")
                sub = GraphRequest(step.method, path, query, headers, _body_bytes(step), in_batch=True,
                                   batch_id=batch_id, base_url=outer.base_url, client=outer.client)
                response = await emu.execute(sub)
        except BaseException as exc:
            if not done[step.id].done():
                done[step.id].set_exception(exc)
            raise
        done[step.id].set_result(response)
        return response

    results = await asyncio.gather(*(run(s) for s in steps), return_exceptions=True)
    for result in results:
        if isinstance(result, DropConnection):
            raise result
    for result in results:
        if isinstance(result, BaseException):
            raise result
    answers = []
    for step, result in zip(steps, results):
        assert isinstance(result, GraphResponse)
        answer: dict[str, Any] = {"id": step.id, "status": result.status, "headers": dict(result.headers)}
        answer["body"] = result.body
        answers.append(answer)
    return GraphResponse(200, {"responses": answers}, {"Content-Type": "application/json"})


def register(emu: Emulator) -> None:
    emu.batch = run_batch
