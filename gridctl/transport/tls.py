"""The community's own certificate authority and the broker's server certificate (PEM files).

``community_tls(folder, hostname)`` keeps in ``folder``::

    ca.pem, ca.key          the community CA (EC P-256), made once and kept: every client trusts
                            ca.pem (``broker: {tls: true, cafile: ca.pem}``); ca.key is private
    server.pem, server.key  the broker's certificate for ``hostname`` (a DNS name or an IP
                            address), made again when missing, for another name, or within
                            ``RENEW_DAYS`` of its end; the CA stays, so clients need nothing new

``issue`` makes a certificate signed by the CA (the server's, or a client's for a listener that
requires client certificates).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridctl.core import GridctlError

CA_DAYS = 3650
"""How long the community CA is valid, days."""
RENEW_DAYS = 30
"""A server certificate this close to its end is made again, days."""

Key = ec.EllipticCurvePrivateKey


class TlsError(GridctlError):
    """TLS files that cannot be read, or a name that cannot be certified."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_name(hostname: str) -> x509.GeneralName:
    """An IP address or a DNS name, as the certificate's subject alternative name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    if not hostname or len(hostname) > 253 or any(c in hostname for c in " /\\@:*\0"):
        raise TlsError(f"--tls-generate {hostname!r}: not a host name or IP address")
    return x509.DNSName(hostname)


def _builder(subject: x509.Name, issuer: x509.Name, key: Key, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def make_ca(community: str) -> tuple[x509.Certificate, Key]:
    """A new CA certificate and key for ``community``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"gridctl {community} community CA")
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False)  # fmt: skip
    cert = (
        _builder(name, name, key, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(usage, True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(
    ca: x509.Certificate, ca_key: Key, name: str, server: bool
) -> tuple[x509.Certificate, Key]:
    """A certificate and key for ``name`` signed by the CA, valid as long as the CA: a server's
    (``name`` is its host name or IP address) or a client's (``name`` is its user)."""
    key = ec.generate_private_key(ec.SECP256R1())
    days = (ca.not_valid_after_utc - dt.datetime.now(dt.UTC)).days
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        _builder(_name(name), ca.subject, key, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([usage]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([_alt_name(name)]), False)
    return builder.sign(ca_key, hashes.SHA256()), key


def pem(item: x509.Certificate | Key) -> bytes:
    """A certificate or an unencrypted private key as PEM."""
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())  # fmt: skip


def load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, Key]:
    """A PEM certificate and the EC private key that belongs to it; TlsError if either cannot
    be read, or they do not belong together."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as e:
        raise TlsError(f"{e.filename}: {e.strerror}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise TlsError(f"{cert_path.name} / {key_path.name}: not a PEM certificate and "
                       f"unencrypted key ({e})") from None  # fmt: skip
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise TlsError(f"{key_path}: not the EC key of {cert_path}")
    return cert, key


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``, mode ``mode`` whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)


def _fits(cert: x509.Certificate, hostname: str) -> bool:
    """Whether a server certificate names ``hostname`` and has over RENEW_DAYS to run."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return _alt_name(hostname) in names and left > dt.timedelta(days=RENEW_DAYS)


def community_tls(folder: Path, community: str, hostname: str) -> tuple[Path, Path, Path]:
    """The community CA and a server certificate for ``hostname`` in ``folder`` (made as the
    module says, private keys mode 0600); returns the paths of ca.pem, server.pem, server.key."""
    _alt_name(hostname)  # a bad name: nothing written
    folder.mkdir(parents=True, exist_ok=True)
    ca_pem, ca_key_path = folder / "ca.pem", folder / "ca.key"
    cert_pem, key_pem = folder / "server.pem", folder / "server.key"
    kept = ca_pem.exists() or ca_key_path.exists()
    if kept:
        ca, ca_key = load_pair(ca_pem, ca_key_path)
    else:
        ca, ca_key = make_ca(community)
        _write(ca_key_path, pem(ca_key), 0o600)
        _write(ca_pem, pem(ca), 0o644)
    if kept and cert_pem.exists() and key_pem.exists():
        cert = load_pair(cert_pem, key_pem)[0]
        if cert.issuer == ca.subject and _fits(cert, hostname):
            return ca_pem, cert_pem, key_pem
    cert, key = issue(ca, ca_key, hostname, server=True)
    _write(key_pem, pem(key), 0o600)
    _write(cert_pem, pem(cert), 0o644)
    return ca_pem, cert_pem, key_pem
