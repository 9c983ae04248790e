"""GET /me (and /users/{id}): the mailbox owner as Graph's user resource."""
from __future__ import annotations

from typing import Any

from m365_emulator.kernel.emulator import Emulator, GraphContext
from m365_emulator.kernel.graph import GraphResponse


def user_json(ctx: GraphContext) -> dict[str, Any]:
    user = ctx.user
    given, _, surname = user.display_name.partition(" ")
    return {
        "@odata.context": ctx.context_url("users/$entity"),
        "businessPhones": [], "displayName": user.display_name, "givenName": given or None,
        "jobTitle": None, "mail": user.user_principal_name, "mobilePhone": None, "officeLocation": None,
        "preferredLanguage": "en-US", "surname": surname or None,
        "userPrincipalName": user.user_principal_name, "id": user.id,
    }


def _get_me(ctx: GraphContext) -> GraphResponse:
    return GraphResponse(200, user_json(ctx))


def register(emu: Emulator) -> None:
    emu.router.add("GET", "", _get_me)
