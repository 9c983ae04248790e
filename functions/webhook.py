"""Microsoft Graph change notifications and lifecycle events (anonymous: Graph presents no key;
each item is checked against its subscription's secret clientState)."""
from __future__ import annotations

import azure.functions as func

from functions.http_bridge import serve
from sync_core.app import webhook

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.route(route="graph/notifications", methods=["POST"], auth_level=ANONYMOUS)
def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    return serve(webhook.handle_notification, req, plain=True)


@bp.route(route="graph/lifecycle", methods=["POST"], auth_level=ANONYMOUS)
def graph_lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    return serve(webhook.handle_lifecycle, req, plain=True)
