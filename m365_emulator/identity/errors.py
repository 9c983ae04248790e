"""Errors of the emulated identity platform, in Microsoft's shapes.

Every failure is an `IdentityError(error, code, **details)`: `error` is the OAuth error string
(invalid_grant, invalid_client, ...), `code` the AADSTS number. The token endpoint answers it as JSON::

    {"error", "error_description": "AADSTS<code>: <message>\\r\\nTrace ID: ...\\r\\nCorrelation ID: ...
     \\r\\nTimestamp: YYYY-MM-DD hh:mm:ssZ", "error_codes": [code], "timestamp", "trace_id",
     "correlation_id", "error_uri"}

The authorize endpoint sends the same fields to the app's redirect URI, or shows an error page when the
redirect URI itself cannot be trusted. Messages follow Microsoft's AADSTS reference
(learn.microsoft.com/entra/identity-platform/reference-error-codes) and the errors Microsoft's
documentation and support answers quote.
"""
from __future__ import annotations

import datetime as dt
import uuid

# code -> message template (str.format with the error's details).
MESSAGES: dict[int, str] = {
    900144: "The request body must contain the following parameter: '{parameter}'.",
    900971: "No reply address provided.",
    90002: "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
           "into the correct cloud.",
    700016: "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen "
            "if the application has not been installed by the administrator of the tenant or consented to by any "
            "user in the tenant. You may have sent your authentication request to the wrong tenant.",
    50011: "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured "
           "for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to "
           "your application in the Azure portal.",
    500112: "The reply address '{redirect_uri}' does not match the reply address '{expected}' provided when "
            "requesting Authorization code.",
    700051: "response_type '{response_type}' is not enabled for the application.",
    70011: "The provided value for the input parameter 'scope' is not valid. The scope '{scope}' is not valid.",
    650053: "The application '{client_id}' asked for scope '{scope}' that doesn't exist on the resource "
            "'00000003-0000-0000-c000-000000000000'. Contact the app vendor.",
    501491: "Invalid size of Code_Challenge parameter.",
    9002313: "Invalid request. Request is malformed or invalid.",
    50058: "A silent sign-in request was sent but no user is signed in.",
    65001: "The user or administrator has not consented to use the application with ID '{client_id}'. Send an "
           "interactive authorization request for this user and resource.",
    65004: "User declined to consent to access the app.",
    50034: "The user account {username} does not exist in the {tenant} directory. To sign into this application, "
           "the account must be added to the directory.",
    50126: "Error validating credentials due to invalid username or password.",
    7000218: "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    7000215: "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
             "value, not the client secret ID, for a secret added to app '{client_id}'.",
    70003: "The app requested an unsupported grant type '{grant_type}'.",
    70000: "The provided value for the input parameter '{parameter}' is not valid.",
    54005: "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
           "existing refresh token.",
    70008: "The provided authorization code or refresh token has expired due to inactivity. Send a new "
           "interactive authorization request for this user and resource.",
    501481: "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
    50173: "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might "
           "have changed or reset their password. The grant was issued on '{issued}' and the TokensValidFrom date "
           "(before which tokens are not valid) for this user is '{valid_from}'.",
    700082: "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive "
            "for {inactive}.",
}

# Failures of client authentication are 401 at Microsoft; everything else on the token endpoint is 400.
UNAUTHORIZED = {"invalid_client"}


class IdentityError(Exception):
    """One failure of the identity platform: OAuth error string, AADSTS code, message details."""

    def __init__(self, error: str, code: int, suberror: str | None = None, **details: str) -> None:
        super().__init__(f"{error}: AADSTS{code}")
        self.error, self.code, self.suberror, self.details = error, code, suberror, details

    @property
    def message(self) -> str:
        return f"AADSTS{self.code}: " + MESSAGES[self.code].format(**self.details)

    @property
    def status(self) -> int:
        return 401 if self.error in UNAUTHORIZED else 400

    def body(self, *, now: float, correlation_id: str, base_url: str) -> dict[str, object]:
        """The JSON the token endpoint answers (also the fields of an authorize error redirect)."""
        trace_id = str(uuid.uuid4())
        stamp = timestamp(now)
        body: dict[str, object] = {
            "error": self.error,
            "error_description": f"{self.message}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
                                 f"\r\nTimestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{base_url}/error?code={self.code}",
        }
        if self.suberror:
            body["suberror"] = self.suberror
        return body


def timestamp(epoch: float) -> str:
    """Microsoft's error timestamp format: `2013-12-31 06:31:41Z`."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(epoch: float) -> str:
    """The ISO form AADSTS messages quote dates in (`2018-10-19T17:26:59.8511467Z`)."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration(seconds: float) -> str:
    """.NET TimeSpan format, as in `was inactive for 90.00:00:00`."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}.{hours:02d}:{minutes:02d}:{secs:02d}"
