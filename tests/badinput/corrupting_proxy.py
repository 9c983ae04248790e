"""A Graph that answers badly: an HTTP proxy in front of the emulator (uvicorn on a free port, in a thread) that
passes every request through and, for the requests a rule picks, breaks the answer in one chosen way. The
emulator's own URLs in answers (nextLink, deltaLink) are rewritten to the proxy, so paging stays on it."""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devhost.procs import free_port

# How an answer can be broken. Each takes the real (status, body) and gives what the client receives.
MUTATIONS = (
    "not_json", "truncated", "array", "value_not_a_list", "garbage_items", "no_delta_link", "next_link_elsewhere",
    "next_link_loop", "html_502", "empty_200", "batch_garbage", "batch_missing_items", "batch_bad_status",
    "batch_created_without_body", "wrong_types", "huge_field", "null",
)
TARGETS = {
    "delta": r"/contacts/delta",
    "batch": r"/\$batch$",
    "folders": r"/contactFolders(\?|$)",
    "find": r"/contacts\?\$filter=singleValueExtendedProperties",
}


@dataclass
class Rule:
    target: str
    mutation: str
    times: int = 1


class CorruptingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")  # http://127.0.0.1:P/v1.0
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1.0"
        self.rule: Rule | None = None
        self.hits = 0
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v1.0/{path:path}", self._forward, methods=["GET", "POST", "PATCH", "DELETE"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name="corrupting-proxy", daemon=True)
        self.client = httpx.AsyncClient(timeout=60, trust_env=False)

    def start(self) -> CorruptingProxy:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("the corrupting proxy did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def set(self, rule: Rule | None) -> None:
        with self._lock:
            self.rule, self.hits = rule, 0

    def _picks(self, target: str) -> Rule | None:
        with self._lock:
            rule = self.rule
            if rule is None or rule.times <= 0 or not re.search(TARGETS[rule.target], target):
                return None
            rule.times -= 1
            self.hits += 1
            return rule

    async def _forward(self, request: Request) -> Response:
        path = request.url.path[len("/v1.0"):]
        query = request.url.query
        target = path + (f"?{query}" if query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        upstream = await self.client.request(request.method, self.upstream + target, headers=headers,
                                             content=await request.body())
        body = upstream.content.replace(self.upstream.encode(), self.base.encode())
        status = upstream.status_code
        kept = {k: v for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "content-encoding", "transfer-encoding", "connection")}
        rule = self._picks(target)
        if rule is not None:
            status, body, kept = mutate(rule.mutation, status, body, kept, self.base + target)
        return Response(body, status, kept)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def mutate(kind: str, status: int, body: bytes, headers: dict[str, str], url: str) -> tuple[int, bytes, dict[str, str]]:
    doc = _json(body)
    as_json = {**headers, "content-type": "application/json"}
    if kind == "not_json":
        return 200, b"<html><body>Service unavailable</body></html>", {**headers, "content-type": "text/html"}
    if kind == "truncated":
        return status, body[: max(1, len(body) // 2)], headers
    if kind == "array":
        return 200, b"[]", as_json
    if kind == "null":
        return 200, b"null", as_json
    if kind == "html_502":
        return 502, b"<html><h1>502 Bad Gateway</h1></html>", {**headers, "content-type": "text/html"}
    if kind == "empty_200":
        return 200, b"", headers
    if kind == "huge_field" and isinstance(doc, dict):
        doc["junk"] = "x" * 3_000_000
    elif kind == "value_not_a_list" and isinstance(doc, dict):
        doc["value"] = {"not": "a list"}
    elif kind == "garbage_items" and isinstance(doc, dict):
        doc["value"] = [1, "x", None, {}, {"id": 5}, {"id": ""}, {"id": "ghost", "@removed": "yes"},
                        *(doc.get("value") or [])]
    elif kind == "no_delta_link" and isinstance(doc, dict):
        doc.pop("@odata.deltaLink", None)
        doc.pop("@odata.nextLink", None)
    elif kind == "next_link_elsewhere" and isinstance(doc, dict):
        doc.pop("@odata.deltaLink", None)
        doc["@odata.nextLink"] = "http://127.0.0.1:9/v1.0/nowhere"
    elif kind == "next_link_loop" and isinstance(doc, dict):
        doc.pop("@odata.deltaLink", None)
        doc["@odata.nextLink"] = url  # the same page again, for ever
    elif kind == "wrong_types" and isinstance(doc, dict):
        for item in doc.get("value") or doc.get("responses") or []:
            if isinstance(item, dict):
                item.update({"changeKey": 12, "givenName": {"a": 1}, "emailAddresses": "x@y.z", "status": "201"})
    elif kind == "batch_garbage" and isinstance(doc, dict):
        doc["responses"] = [{"id": "0"}, {"status": "abc", "id": "1"}, 7, None, {"id": "2", "status": 200,
                                                                             "headers": "nope", "body": "text"}]
    elif kind == "batch_missing_items" and isinstance(doc, dict):
        doc["responses"] = (doc.get("responses") or [])[::2]
    elif kind == "batch_bad_status" and isinstance(doc, dict):
        for item in doc.get("responses") or []:
            if isinstance(item, dict):
                item["status"] = 999
    elif kind == "batch_created_without_body" and isinstance(doc, dict):
        for item in doc.get("responses") or []:
            if isinstance(item, dict):
                item["body"] = None
    else:
        return status, body, headers  # the mutation does not apply to this answer's shape: pass it on
    return status, json.dumps(doc).encode(), as_json
