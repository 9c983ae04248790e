"""What the token endpoint signs and encodes: the RS256 signing key and its JWKS, ID tokens, client_info
and the PKCE check.

ID tokens follow Microsoft's v2.0 claims (aud, iss, iat, nbf, exp, name, nonce, oid, preferred_username,
sub, tid, uti, ver). `sub` is pairwise as at Microsoft: the same user has a different `sub` in every app;
`oid` is the user's id everywhere. `client_info` ({"uid", "utid"}) is what MSAL builds its account id from.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from m365_emulator.kernel.core import User

ID_TOKEN_LIFETIME = 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class SigningKey:
    """An RSA key with a self-signed certificate, published in the JWKS as Microsoft publishes its keys
    (`kid` and `x5t` are both the certificate's SHA-1 thumbprint, `x5c` carries the certificate)."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "m365_emulator token signing")])
        self._cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                      .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
                      .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
                      .sign(self._key, hashes.SHA256()))
        der = self._cert.public_bytes(serialization.Encoding.DER)
        self.kid = b64url(hashlib.sha1(der).digest())  # noqa: S324 - x5t is SHA-1 by definition (RFC 7517)
        self._x5c = base64.b64encode(der).decode()

    def jwk(self, issuer: str) -> dict[str, object]:
        numbers = self._key.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid, "n": _uint(numbers.n),
                "e": _uint(numbers.e), "x5c": [self._x5c], "issuer": issuer}

    def sign(self, claims: dict[str, object]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(signature)


def pairwise_subject(user_id: str, client_id: str) -> str:
    return b64url(hashlib.sha256(f"{client_id}:{user_id}".encode()).digest())


def id_token_claims(*, user: User, client_id: str, issuer: str, tenant_id: str, now: float,
                    nonce: str | None, scopes: frozenset[str]) -> dict[str, object]:
    issued = int(now)
    claims: dict[str, object] = {"aud": client_id, "iss": issuer, "iat": issued, "nbf": issued,
                                 "exp": issued + ID_TOKEN_LIFETIME}
    if "profile" in scopes:
        claims["name"] = user.display_name
        claims["preferred_username"] = user.user_principal_name
    if "email" in scopes or "openid" in scopes:
        claims["email"] = user.user_principal_name
    if nonce:
        claims["nonce"] = nonce
    claims.update({"oid": user.id, "sub": pairwise_subject(user.id, client_id), "tid": tenant_id,
                   "uti": secrets.token_urlsafe(16), "ver": "2.0"})
    return claims


def client_info(user_id: str, tenant_id: str) -> str:
    return b64url(json.dumps({"uid": user_id, "utid": tenant_id}, separators=(",", ":")).encode())


def pkce_matches(verifier: str | None, challenge: str, method: str) -> bool:
    if not verifier:
        return False
    derived = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest()) if method == "S256" else verifier
    return hmac.compare_digest(derived, challenge)
