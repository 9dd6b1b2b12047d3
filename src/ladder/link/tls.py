"""TLS material for a hub's link: its self-signed certificate, key, fingerprint, contexts.

A hub is known by its key, not by a certificate authority: invite links carry
the fingerprint of the hub's public key, and an agent pins it after the
handshake.  The fingerprint covers the SubjectPublicKeyInfo only, so renewing
the certificate with the same key (``reuse_key=True``) keeps every invite and
every agent's pin valid.

The server side speaks TLS 1.2 and 1.3 like an ordinary web server, so that
browsers and scanners get the web-site face; agents insist on TLS 1.3.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ladder.errors import UserError

ALPN = ["http/1.1"]
FINGERPRINT_PREFIX = "sha256:"
VALIDITY = datetime.timedelta(days=365)
BACKDATE = datetime.timedelta(days=1)


class TLSMaterialError(UserError):
    """A certificate or key file that cannot be used; one line naming the file."""


# -- making material -----------------------------------------------------------


def generate_self_signed(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str],
                         common_name: str, alt_names: list[str], *,
                         reuse_key: bool = False) -> str:
    """Write a self-signed server certificate and its key (PEM); return the fingerprint.

    The certificate looks like a typical web server's: ECDSA P-256, X.509 v3,
    SubjectAltName with `common_name` and `alt_names` (each an IP address or
    a DNS name), valid from a day ago for a year, random serial.

    With ``reuse_key=True`` the key already in `key_path` is kept (renewal;
    the fingerprint does not change); otherwise a new key replaces it.
    Both files are replaced atomically; the key file has mode 0600.
    """
    cert_path, key_path = Path(cert_path), Path(key_path)
    if reuse_key:
        key = _load_key(key_path)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TLSMaterialError(f"{key_path} is not an ECDSA key")
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, common_name, alt_names)
    if not reuse_key:
        _write_atomically(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), 0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return _fingerprint(cert)


def _self_signed(key: ec.EllipticCurvePrivateKey, common_name: str,
                 alt_names: list[str]) -> x509.Certificate:
    names: list[x509.GeneralName] = []
    for entry in [common_name, *alt_names]:
        try:
            general: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(entry))
        except ValueError:
            general = x509.DNSName(entry)
        if general not in names:
            names.append(general)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - BACKDATE
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + BACKDATE + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a new file in path's folder with `mode`, then rename it over path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600; widen for a certificate
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# -- reading material ----------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSMaterialError(f"cannot read {what} {path}: {exc.strerror}") from None


def _load_cert(path: str | os.PathLike[str]) -> x509.Certificate:
    path = Path(path)
    try:
        return x509.load_pem_x509_certificate(_read(path, "certificate"))
    except ValueError:
        raise TLSMaterialError(f"{path} is not a PEM certificate") from None


def _load_key(path: str | os.PathLike[str]) -> PrivateKeyTypes:
    path = Path(path)
    try:
        return serialization.load_pem_private_key(_read(path, "key"), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: the key is encrypted and needs a password.
        raise TLSMaterialError(f"{path} is not an unencrypted PEM private key") from None


def _fingerprint(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(spki).digest()
    return FINGERPRINT_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def fingerprint_of_cert_der(der: bytes) -> str:
    """"sha256:" + base64url (no padding) of SHA-256 over the certificate's SPKI DER."""
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
    except ValueError:
        raise TLSMaterialError("the peer's certificate is not valid X.509 DER") from None
    return _fingerprint(cert)


def fingerprint_of_cert_file(path: str | os.PathLike[str]) -> str:
    """The fingerprint of the PEM certificate in `path`."""
    return _fingerprint(_load_cert(path))


def certificate_validity(path: str | os.PathLike[str]) -> tuple[datetime.datetime, datetime.datetime]:
    """When the PEM certificate in `path` starts and stops being valid (aware, UTC)."""
    cert = _load_cert(path)
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def check_key_matches_cert(cert_path: str | os.PathLike[str],
                           key_path: str | os.PathLike[str]) -> None:
    """Raise TLSMaterialError unless the key in `key_path` belongs to the certificate."""
    cert, key = _load_cert(cert_path), _load_key(key_path)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise TLSMaterialError(f"key {key_path} does not match certificate {cert_path}")


# -- contexts ------------------------------------------------------------------


def server_context(cert_path: str | os.PathLike[str],
                   key_path: str | os.PathLike[str]) -> ssl.SSLContext:
    """A context that answers like an ordinary HTTPS web server (TLS 1.2+)."""
    check_key_matches_cert(cert_path, key_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        raise TLSMaterialError(f"cannot load {cert_path} with {key_path}: {exc}") from None
    context.set_alpn_protocols(ALPN)
    context.verify_mode = ssl.CERT_NONE  # members prove themselves inside TLS
    return context


def presented_key(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str:
    """The fingerprint of the key the far end of a TLS connection presented ("" if it presented none)."""
    return fingerprint_of_cert_der(ssl_object.getpeercert(binary_form=True) or b"")


def client_context() -> ssl.SSLContext:
    """An agent's context: TLS 1.3 only, no CA check (the caller pins the fingerprint).

    After the handshake the caller MUST compare `presented_key(ssl_object)`
    with the hub's fingerprint before sending anything.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(ALPN)
    return context
