"""The Graph router: route templates relative to the mailbox (`/contactFolders/{folder_id}`) or the root
(`scope="root"`, e.g. /subscriptions), matched case-insensitively as Graph matches literal segments."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from m365_emulator.kernel.graph import GraphError

H = TypeVar("H")  # the handler type (the emulator's handlers take a GraphContext)


@dataclass
class Route(Generic[H]):
    method: str
    pattern: re.Pattern[str]
    handler: H
    scope: str


class GraphRouter(Generic[H]):
    def __init__(self) -> None:
        self.routes: list[Route[H]] = []

    def add(self, method: str, template: str, handler: H, scope: str = "mailbox") -> None:
        """`template` like "/contactFolders/{folder_id}/contacts"; literal segments match case-insensitively,
        as Graph's do."""
        parts = []
        for segment in template.strip("/").split("/") if template.strip("/") else []:
            parts.append(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(segment)))
        regex = "^" + "".join("/" + p for p in parts) + "$"
        self.routes.append(Route(method.upper(), re.compile(regex, re.IGNORECASE), handler, scope))

    def resolve(self, method: str, rest: str, scope: str) -> tuple[H, dict[str, str]]:
        allowed = False
        for route in self.routes:
            if route.scope != scope:
                continue
            match = route.pattern.match(rest)
            if match is None:
                continue
            if route.method == method.upper():
                return route.handler, match.groupdict()
            allowed = True
        if allowed:
            raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
        segment = next((s for s in rest.split("/") if s), rest)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


_KEY_SEGMENT = re.compile(r"([A-Za-z.]+)\('([^']*)'\)")
MAILBOX = re.compile(r"^/(?:(?P<me>me)|users/(?P<user>[^/]+))(?P<rest>/.*)?$", re.IGNORECASE)


def normalise_path(path: str) -> str:
    """`/users('x')/contactFolders('y')` → `/users/x/contactFolders/y`; no trailing slash."""
    path = _KEY_SEGMENT.sub(lambda m: f"{m.group(1)}/{m.group(2)}", path)
    return path.rstrip("/") or "/"
