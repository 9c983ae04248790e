"""A framework-free request/response pair for the integration's pages and endpoints.

The Blueprints in functions/ translate azure.functions' HttpRequest/HttpResponse to and from
these, so every page handler lives in sync_core and is testable without the Functions runtime.
Every response carries the security headers; bodies that come from callers are size-limited.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from sync_core.web.auth import cookie_from_header

MAX_FORM_BYTES = 64 * 1024  # settings and CRM forms are a few hundred bytes
MAX_FIELD_CHARS = 4000


class HttpError(Exception):
    """A request we refuse, with the status and a message safe to show to the caller."""

    def __init__(self, status: int, message: str, title: str = "The request was refused") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title


@dataclass(frozen=True)
class WebRequest:
    method: str
    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    body: bytes = b""
    route: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def cookie(self, name: str) -> str | None:
        return cookie_from_header(self.header("cookie"), name)

    def require_body(self, content_type: str, max_bytes: int, wrong_type: str, too_large: str) -> None:
        """HttpError 415 (`wrong_type`) unless the body is `content_type`, 413 (`too_large`) beyond `max_bytes`."""
        sent = (self.header("content-type") or "").split(";")[0].strip().lower()
        if sent != content_type:
            raise HttpError(415, wrong_type)
        if len(self.body) > max_bytes:
            raise HttpError(413, too_large)

    def form(self, max_bytes: int = MAX_FORM_BYTES) -> dict[str, str]:
        """The url-encoded form body; a repeated field keeps its last value."""
        self.require_body("application/x-www-form-urlencoded", max_bytes,
                          "This endpoint accepts only HTML form submissions.", "The form is too large.")
        try:
            text = self.body.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=200)
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "The form could not be read.") from None
        form: dict[str, str] = {}
        for key, value in pairs:
            if len(key) > 100 or len(value) > MAX_FIELD_CHARS:
                raise HttpError(400, "A form field is too long.")
            form[key] = value
        return form


@dataclass
class WebResponse:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def security_headers(form_targets: str = "") -> dict[str, str]:
    """Sent with every response. `form_targets` are extra origins a form may lead to (the
    identity platform: Chrome applies form-action to the redirect after a form post)."""
    from sync_core.web.render import STYLE_HASH

    csp = ("default-src 'none'; img-src 'self' data:; "
           f"style-src '{STYLE_HASH}'; form-action 'self'{(' ' + form_targets) if form_targets else ''}; "
           "frame-ancestors 'none'; base-uri 'none'")
    return {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",  # launch links and OAuth states sit in URLs
        "Cache-Control": "no-store",
    }


def html(body: str, status: int = 200, headers: Mapping[str, str] | None = None) -> WebResponse:
    return WebResponse(status, body.encode("utf-8"), "text/html; charset=utf-8", dict(headers or {}))


def text(body: str, status: int = 200) -> WebResponse:
    return WebResponse(status, body.encode("utf-8"), "text/plain; charset=utf-8")


def redirect(location: str, headers: Mapping[str, str] | None = None) -> WebResponse:
    """303: the browser follows with a GET, so a reload never repeats a form post."""
    return WebResponse(303, b"", "text/plain; charset=utf-8", {"Location": location, **(headers or {})})


def with_query(path: str, **params: str) -> str:
    present = {key: value for key, value in params.items() if value}
    return f"{path}?{urlencode(present)}" if present else path
