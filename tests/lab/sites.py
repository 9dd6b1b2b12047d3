"""The lab's web sites: a lab CA and its certificates, site folders, and nginx configs.

Every nginx the lab runs is Debian's, started in the foreground with a
config rendered here into the lab's temp folder (its own pid file, logs and
temp paths), so nothing under /etc/nginx or /var is used or changed.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BIG_SIZE = 64 * 1024 * 1024
SMALL_SIZE = 1024 * 1024


# -- certificates --------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class LabCA:
    """A certificate authority that exists only for this lab run."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Ladder Lab CA"))
            .issuer_name(_name("Ladder Lab CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = folder / "lab-ca.crt"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, names: list[str]) -> tuple[Path, Path]:
        """A server certificate for `names` (DNS names or IP addresses): (cert path, key path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        alt = []
        for entry in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(entry)))
            except ValueError:
                alt.append(x509.DNSName(entry))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return cert_path, key_path


def self_signed(folder: Path, stem: str, name: str) -> tuple[Path, Path]:
    """A self-signed certificate, as a small site's operator would make with openssl."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


# -- site content --------------------------------------------------------------


@dataclass
class BlockedSite:
    """The outside site the border blocks: pages, pages with the keyword, files with known hashes."""

    root: Path
    keyword: str
    marker: str
    big_sha: str
    small_sha: str

    @property
    def keyword_path(self) -> str:
        """A URL path with the keyword in it, whose page holds the keyword too."""
        return f"/news/{self.keyword}.html"

    @property
    def keyword_page(self) -> str:
        """An innocent URL path whose page holds the keyword."""
        return "/report.html"


def make_blocked_site(root: Path, keyword: str, marker: str) -> BlockedSite:
    (root / "news").mkdir(parents=True)
    (root / "index.html").write_text(f"<html><body><h1>Blocked news</h1><p>{marker}</p></body></html>\n")
    (root / "news" / f"{keyword}.html").write_text(
        f"<html><body><h1>{keyword}</h1><p>{marker} {keyword}</p></body></html>\n")
    (root / "report.html").write_text(f"<html><body><p>{marker}: a report on {keyword}</p></body></html>\n")
    big = os.urandom(BIG_SIZE)
    (root / "big.bin").write_bytes(big)
    small = os.urandom(SMALL_SIZE)
    (root / "small.bin").write_bytes(small)
    return BlockedSite(root, keyword, marker, hashlib.sha256(big).hexdigest(),
                       hashlib.sha256(small).hexdigest())


def make_plain_site(root: Path, text: str) -> None:
    root.mkdir(parents=True)
    (root / "index.html").write_text(f"<html><body><p>{text}</p></body></html>\n")


# -- nginx -----------------------------------------------------------------------


def nginx_config(folder: Path, servers: str) -> Path:
    """Write a complete nginx.conf around `servers` (server blocks); return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / "temp"
    temp.mkdir(exist_ok=True)
    conf = folder / "nginx.conf"
    # The http block is Debian's /etc/nginx/nginx.conf as shipped, less its includes and logs,
    # and with server_tokens off (the version in the Server header and error pages), as the
    # hub's built-in face answers: so their answers can be compared byte for byte.
    conf.write_text(f"""\
daemon off;
user root;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 768; }}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    server_tokens off;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {folder}/access.log;
    gzip on;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{servers}
}}
""")
    return conf


def server_block(listen: list[str], root: Path, *, cert: Path | None = None, key: Path | None = None,
                 allow: list[str] | None = None, name: str = "_") -> str:
    """One nginx server block: `listen` lines as given, a static root, optional allow list."""
    lines = [f"    listen {entry};" for entry in listen]
    lines.append(f"    server_name {name};")
    lines.append(f"    root {root};")
    if cert is not None:
        lines += [f"    ssl_certificate {cert};", f"    ssl_certificate_key {key};"]
    if allow is not None:
        lines += [f"    allow {net};" for net in allow] + ["    deny all;"]
    body = "\n".join("    " + line for line in lines)
    return f"    server {{\n{body}\n    }}\n"
