"""Run one page or endpoint handler and turn every failure into a response a person can read.

A refused request is a 4xx page with its message; storage trouble is a 503; anything unexpected is
logged (with its stack, in the log only) and answered with a plain 500 page. Every response gets
the security headers.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sync_core.app.services import Services
from sync_core.domain.errors import SettingsError, StorageError
from sync_core.web.http import HttpError, WebRequest, WebResponse, html, security_headers, text
from sync_core.web.render import render
from sync_core.web.auth import AuthError

log = logging.getLogger("sync_core.web")

Handler = Callable[[Services, WebRequest], WebResponse]
SETTINGS_PATH = "/api/settings"


@dataclass(frozen=True)
class Link:
    href: str
    text: str


def message_page(status: int, title: str, message: str, *, hint: str | None = None,
                 link: Link | None = None, plain: bool = False) -> WebResponse:
    if plain:
        return text(f"{title}: {message}", status)
    return html(render("message.html", title=title, message=message, hint=hint, link=link, banners=[]), status)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def respond(handler: Handler, request: WebRequest, services: Callable[[], Services], *,
            plain: bool = False) -> WebResponse:
    """`services` builds (or returns the process's) Services: inside the try, so a missing setting is a 503
    page. `plain`: errors as text/plain (machine endpoints such as webhooks) instead of HTML pages."""
    form_targets = ""
    try:
        built = services()
        form_targets = _origin(built.settings.identity_authority)
        response = handler(built, request)
    except HttpError as exc:
        response = message_page(exc.status, exc.title, exc.message, plain=plain,
                                link=None if plain else Link(SETTINGS_PATH, "Back to the integration settings"))
    except AuthError as exc:
        response = message_page(401, "Please open this page from the CRM", str(exc), plain=plain,
                                hint="In the CRM, go to Settings > Integrations > Contacts & Calendar Integrations.")
    except SettingsError as exc:
        log.error("the integration is not configured: %s", exc)
        response = message_page(503, "The integration is not available", "It is not configured yet.", plain=plain)
    except StorageError as exc:
        log.warning("storage failed while answering %s %s: %s", request.method, urlsplit(request.url).path, exc)
        response = message_page(503, "The integration is busy", "Storage did not answer; try again in a minute.",
                                plain=plain)
    except Exception:
        log.exception("unexpected failure answering %s %s", request.method, urlsplit(request.url).path)
        response = message_page(500, "Something went wrong", "The request failed; please try again.", plain=plain)
    response.headers = {**security_headers(form_targets), **response.headers}
    return response
