"""A private certificate authority and a server certificate for the emulator's HTTPS identity endpoint.

MSAL refuses `http://` authorities, even on 127.0.0.1, so the identity platform must speak TLS with a
certificate that clients can trust explicitly: they trust `ca_file` (requests: `verify=ca_file`), never
the system store. The CA's private key is never written to disk: when the server certificate needs
replacing, a new CA is made with it.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "emulator-ca.pem"
CERT_FILE = "identity-cert.pem"
KEY_FILE = "identity-key.pem"
CA_LIFETIME = dt.timedelta(days=3650)
CERT_LIFETIME = dt.timedelta(days=397)  # the longest lifetime browsers accept for a server certificate
# Regenerate a little before expiry so a long-running emulator never serves an expired certificate.
RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path  # server certificate (PEM), for uvicorn's ssl_certfile
    key_file: Path  # its private key (PEM, unencrypted, mode 0600), for ssl_keyfile
    ca_file: Path  # the CA certificate that clients trust


def make_tls_files(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """Returns the CA and server certificate files in `directory`, creating them when missing,
    expiring, or not valid for `host` (plus 127.0.0.1 and localhost)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / CERT_FILE, directory / KEY_FILE, directory / CA_FILE)
    # Two emulators starting together on one directory must not interleave a cert and another's key.
    with open(directory / ".tls.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _still_valid(files, host):
            _generate(files, host)
    return files


def _names_for(host: str) -> tuple[set[ipaddress.IPv4Address | ipaddress.IPv6Address], set[str]]:
    ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = {ipaddress.ip_address("127.0.0.1")}
    dns = {"localhost"}
    try:
        ips.add(ipaddress.ip_address(host))
    except ValueError:
        dns.add(host.lower())
    return ips, dns


def _still_valid(files: TlsFiles, host: str) -> bool:
    try:
        ca = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
        cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
        key = serialization.load_pem_private_key(files.key_file.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    now = dt.datetime.now(dt.timezone.utc)
    for certificate in (ca, cert):
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc - RENEW_BEFORE:
            return False
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
            != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    ips, dns = _names_for(host)
    return ips <= set(san.get_values_for_type(x509.IPAddress)) and dns <= set(san.get_values_for_type(x509.DNSName))


def _generate(files: TlsFiles, host: str) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    # Backdated a little: a client whose clock runs slightly behind must not see "not yet valid".
    start = now - dt.timedelta(hours=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "m365_emulator"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "m365_emulator local CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(now + CA_LIFETIME)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    ips, dns = _names_for(host)
    san = x509.SubjectAlternativeName([*(x509.DNSName(d) for d in sorted(dns)),
                                       *(x509.IPAddress(i) for i in sorted(ips, key=str))])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + CERT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(san, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))

    _write(files.key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), private=True)
    _write(files.cert_file, cert.public_bytes(serialization.Encoding.PEM))
    _write(files.ca_file, ca.public_bytes(serialization.Encoding.PEM))


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write-then-rename, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
