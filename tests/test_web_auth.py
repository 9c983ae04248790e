from __future__ import annotations

import pytest

from sync_core.web.auth import (
    AuthError,
    check_csrf,
    cookie_from_header,
    csrf_token,
    issue_session,
    read_session,
    session_cookie_header,
    sign_launch,
    verify_launch,
)

SECRET = "s" * 40


class Nonces:
    def __init__(self) -> None:
        self.used: set[tuple[str, str, str]] = set()

    def __call__(self, tenant_id: str, user_id: str, nonce: str, expires: int) -> bool:
        if (tenant_id, user_id, nonce) in self.used:
            return False
        self.used.add((tenant_id, user_id, nonce))
        return True


def test_launch_link_accepted_once() -> None:
    nonces = Nonces()
    params = sign_launch(SECRET, "tenant", "user", now=1000)
    assert verify_launch(SECRET, params, use_nonce=nonces, now=1001) == ("tenant", "user")
    with pytest.raises(AuthError, match="already used"):
        verify_launch(SECRET, params, use_nonce=nonces, now=1002)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda p: {**p, "user": "other"}, "signature"),
        (lambda p: {**p, "sig": "0" * 64}, "signature"),
        (lambda p: {k: v for k, v in p.items() if k != "sig"}, "incomplete"),
        (lambda p: {**p, "exp": "abc"}, "incomplete"),
    ],
)
def test_tampered_launch_links_are_refused(tamper, message: str) -> None:  # type: ignore[no-untyped-def]
    params = tamper(sign_launch(SECRET, "tenant", "user", now=1000))
    with pytest.raises(AuthError, match=message):
        verify_launch(SECRET, params, use_nonce=Nonces(), now=1001)


def test_expired_and_overlong_links_are_refused() -> None:
    with pytest.raises(AuthError, match="expired"):
        verify_launch(SECRET, sign_launch(SECRET, "t", "u", now=1000, lifetime=60), use_nonce=Nonces(), now=1061)
    with pytest.raises(AuthError, match="too long"):
        verify_launch(SECRET, sign_launch(SECRET, "t", "u", now=1000, lifetime=3600), use_nonce=Nonces(), now=1001)
    with pytest.raises(AuthError, match="signature"):
        verify_launch("x" * 40, sign_launch(SECRET, "t", "u", now=1000), use_nonce=Nonces(), now=1001)


def test_session_round_trip_tamper_and_expiry() -> None:
    cookie = issue_session(SECRET, "tenant", "user", now=1000)
    caller = read_session(SECRET, cookie, now=1001)
    assert caller.key == ("tenant", "user")
    body, mac = cookie.split(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    for bad in (forged, None, "", "x", issue_session("o" * 40, "tenant", "user", now=1000)):
        with pytest.raises(AuthError):
            read_session(SECRET, bad, now=1001)
    with pytest.raises(AuthError, match="expired"):
        read_session(SECRET, cookie, now=1000 + 9 * 3600)


def test_csrf_is_bound_to_the_session() -> None:
    one = read_session(SECRET, issue_session(SECRET, "t", "u", now=1), now=2)
    two = read_session(SECRET, issue_session(SECRET, "t", "u", now=1), now=2)
    check_csrf(SECRET, one, csrf_token(SECRET, one))
    for bad in (None, "", csrf_token(SECRET, two)):
        with pytest.raises(AuthError):
            check_csrf(SECRET, one, bad)


def test_cookie_header_flags() -> None:
    header = session_cookie_header("abc", secure=True)
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" in header
    assert "Secure" not in session_cookie_header("abc", secure=False)
    assert cookie_from_header("a=1; crm365_session=abc.def; b=2") == "abc.def"
