"""The Microsoft identity platform (v2.0 endpoints), emulated over the shared `Core`.

Routes, for a tenant segment that is the core's tenant id, `common` or `organizations`:

- `GET /{tenant}/v2.0/.well-known/openid-configuration`, `GET /{tenant}/discovery/v2.0/keys`
- `GET|POST /{tenant}/oauth2/v2.0/authorize` -> sign-in page -> consent page (asked once per user and app)
  -> the app's redirect URI with `code` and `state` (response_mode query, fragment or form_post)
- `POST /{tenant}/oauth2/v2.0/token`: `authorization_code` and `refresh_token` grants
- `GET /{tenant}/oauth2/v2.0/logout`, `GET /error?code=N`

Behaviour chosen to match Microsoft's documentation:
- A refresh returns a new refresh token, and the old one keeps working until it expires: "The Microsoft
  identity platform doesn't revoke old refresh tokens when used to fetch new access tokens"
  (learn.microsoft.com/entra/identity-platform/refresh-tokens). Each refresh token expires 90 days
  (`core.refresh_token_max_inactive`) after it was issued, by the emulator clock: AADSTS700082.
- Revoking a user (`core.revoke`) fails every refresh token and unredeemed code issued before it
  (AADSTS50173) and ends the browser session; issued access tokens live until they expire.
- Codes are single use (AADSTS54005), expire after 10 minutes (AADSTS70008), and are bound to their
  client, redirect URI (AADSTS500112) and PKCE challenge (AADSTS501481).
- An unknown client or an unregistered redirect URI gets an error page, never a redirect.
"""
from __future__ import annotations


from starlette.applications import Starlette
from starlette.routing import Route

from m365_emulator.identity.authorize import SignIn
from m365_emulator.identity.token import TokenEndpoint
from m365_emulator.kernel.core import Core


class IdentityPlatform(SignIn, TokenEndpoint):
    """The whole platform: discovery (base.py), the sign-in flow (authorize.py) and the token endpoint (token.py)."""


def build_identity_app(core: Core) -> Starlette:
    """The identity platform as an ASGI app; serve it over HTTPS (see m365_emulator.tls)."""
    platform = IdentityPlatform(core)
    app = Starlette(routes=[
        Route("/{tenant}/v2.0/.well-known/openid-configuration", platform.openid_configuration, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", platform.keys, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/authorize", platform.authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/token", platform.token, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/logout", platform.logout, methods=["GET"]),
        Route("/{tenant}/login", platform.login, methods=["POST"]),
        Route("/{tenant}/consent", platform.consent, methods=["POST"]),
        Route("/error", platform.error_lookup, methods=["GET"]),
    ])
    app.state.identity = platform
    return app
