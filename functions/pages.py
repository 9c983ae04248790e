"""The integration's pages: launch link, settings, sync now, remove integration.

Anonymous at the Functions level on purpose: a browser cannot present a function key; every page
checks the CRM session itself (sync_core.web.session).
"""
from __future__ import annotations

import azure.functions as func

from functions.http_bridge import serve
from sync_core.web import pages

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.route(route="launch", methods=["GET"], auth_level=ANONYMOUS)
def launch(req: func.HttpRequest) -> func.HttpResponse:
    return serve(pages.launch, req)


@bp.route(route="settings", methods=["GET", "POST"], auth_level=ANONYMOUS)
def settings_page(req: func.HttpRequest) -> func.HttpResponse:
    return serve(pages.settings_route, req)


@bp.route(route="sync-now", methods=["POST"], auth_level=ANONYMOUS)
def sync_now(req: func.HttpRequest) -> func.HttpResponse:
    return serve(pages.sync_now, req)


@bp.route(route="disconnect", methods=["GET", "POST"], auth_level=ANONYMOUS)
def remove_integration(req: func.HttpRequest) -> func.HttpResponse:
    return serve(pages.disconnect_route, req)
