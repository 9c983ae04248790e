"""Connect to Microsoft: start the sign-in, receive Microsoft's answer, finish with the session."""
from __future__ import annotations

import azure.functions as func

from functions.http_bridge import serve
from sync_core.web import pages

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.route(route="connect", methods=["POST"], auth_level=ANONYMOUS)
def oauth_connect(req: func.HttpRequest) -> func.HttpResponse:
    return serve(pages.connect, req)


# Microsoft posts here (form_post) without our session cookie: it only parks the answer.
@bp.route(route="oauth/callback", methods=["GET", "POST"], auth_level=ANONYMOUS)
def oauth_callback(req: func.HttpRequest) -> func.HttpResponse:
    return serve(pages.oauth_callback_route, req)


@bp.route(route="oauth/finish", methods=["GET"], auth_level=ANONYMOUS)
def oauth_finish(req: func.HttpRequest) -> func.HttpResponse:
    return serve(pages.oauth_finish, req)
