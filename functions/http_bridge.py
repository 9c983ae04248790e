"""azure.functions HttpRequest/HttpResponse ⇄ sync_core.web's WebRequest/WebResponse."""
from __future__ import annotations

import azure.functions as func

from sync_core.bootstrap import build_services
from sync_core.web.http import WebRequest, WebResponse
from sync_core.web.respond import Handler, respond


def to_web(req: func.HttpRequest) -> WebRequest:
    return WebRequest(
        method=req.method.upper(), url=req.url, params=dict(req.params),
        headers={name.lower(): value for name, value in req.headers.items()},
        body=req.get_body() or b"", route=dict(req.route_params),
    )


def to_http(response: WebResponse) -> func.HttpResponse:
    headers = {"Content-Type": response.content_type, **response.headers}
    return func.HttpResponse(body=response.body, status_code=response.status, headers=headers)


def serve(handler: Handler, req: func.HttpRequest, *, plain: bool = False) -> func.HttpResponse:
    return to_http(respond(handler, to_web(req), build_services, plain=plain))
