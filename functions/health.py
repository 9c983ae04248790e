"""GET /api/health: storage and Microsoft Graph reachability."""
from __future__ import annotations

import json

import azure.functions as func

from sync_core.app.health import check_health
from sync_core.settings import get_settings

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    report = check_health(get_settings())
    return func.HttpResponse(
        json.dumps(report.to_dict()),
        status_code=200 if report.ok else 503,
        mimetype="application/json",
    )
