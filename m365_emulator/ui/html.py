"""What every screen of /_emulator/ui shares: escaping, URL path segments, and the answer to a form post (back to
the page at the changed item, or a short page saying why the change was refused)."""
from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from starlette.responses import HTMLResponse, RedirectResponse, Response

from m365_emulator.kernel.graph import GraphError


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def segment(value: str) -> str:
    """`value` as one URL path segment of a form's action."""
    return quote(value, safe="")


def refused(err: GraphError | ValueError | KeyError) -> Response:
    message = err.message if isinstance(err, GraphError) else str(err)
    return HTMLResponse(f'<!doctype html><p>Could not do that: {esc(message)}</p>'
                        f'<p><a href="/_emulator/ui">Back</a></p>', 400)


def back_to(anchor: str) -> Response:
    return RedirectResponse(f"/_emulator/ui#{anchor}", 303)
