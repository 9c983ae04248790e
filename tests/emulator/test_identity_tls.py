"""The emulator's private CA and server certificate (m365_emulator.tls).

The TLS handshake itself is exercised by test_identity.py, where requests and MSAL trust only `ca_file`.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from m365_emulator import tls
from m365_emulator.tls import make_tls_files


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_ca_signs_a_server_certificate_for_the_loopback_names(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    ca, cert = load(files.ca_file), load(files.cert_file)

    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    cert.verify_directly_issued_by(ca)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=300)

    key = serialization.load_pem_private_key(files.key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600
    # Python's own TLS stack accepts the pair and the CA as a trust anchor.
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(files.cert_file, files.key_file)
    ssl.create_default_context(cafile=str(files.ca_file))


def test_valid_files_are_reused(tmp_path: Path) -> None:
    first = make_tls_files(tmp_path)
    contents = [p.read_bytes() for p in (first.ca_file, first.cert_file, first.key_file)]
    second = make_tls_files(tmp_path)
    assert second == first
    assert [p.read_bytes() for p in (second.ca_file, second.cert_file, second.key_file)] == contents


@pytest.mark.parametrize("spoil", ["expiring", "other host", "foreign key", "garbage"])
def test_unusable_files_are_replaced(tmp_path: Path, spoil: str, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_tls_files(tmp_path)
    before = files.cert_file.read_bytes()
    host = "127.0.0.1"
    if spoil == "expiring":
        monkeypatch.setattr(tls, "RENEW_BEFORE", tls.CERT_LIFETIME + dt.timedelta(days=1))
    elif spoil == "other host":
        host = "emulator.test"
    elif spoil == "foreign key":
        other = ec.generate_private_key(ec.SECP256R1())
        files.key_file.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    else:
        files.ca_file.write_text("not a certificate")

    renewed = make_tls_files(tmp_path, host)
    assert renewed.cert_file.read_bytes() != before
    cert = load(renewed.cert_file)
    cert.verify_directly_issued_by(load(renewed.ca_file))
    if spoil == "other host":
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"emulator.test", "localhost"} <= set(san.get_values_for_type(x509.DNSName))
