"""Tests for ladder.link.tls: certificate, key, fingerprint and contexts."""

import asyncio
import base64
import datetime
import ipaddress
import os
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ladder.link.tls import (
    TLSMaterialError,
    check_key_matches_cert,
    client_context,
    fingerprint_of_cert_der,
    fingerprint_of_cert_file,
    generate_self_signed,
    server_context,
)


@pytest.fixture
def material(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    fp = generate_self_signed(cert, key, "example.org", ["www.example.org", "203.0.113.7", "::1"])
    return cert, key, fp


def load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificate_looks_like_a_web_servers(material):
    cert_path, _, _ = material
    cert = load(cert_path)
    assert cert.version == x509.Version.v3
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "example.org"
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.org", "www.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("203.0.113.7"), ipaddress.ip_address("::1")]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    now = datetime.datetime.now(datetime.UTC)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert datetime.timedelta(hours=23) < now - start < datetime.timedelta(hours=25)
    assert datetime.timedelta(days=364) < end - now < datetime.timedelta(days=366)
    assert cert.serial_number > 2 ** 64


def test_key_file_mode_and_format(material, tmp_path):
    _, key_path, _ = material
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # Also when the file existed before with a looser mode.
    loose = tmp_path / "loose.pem"
    loose.write_bytes(b"old")
    os.chmod(loose, 0o644)
    generate_self_signed(tmp_path / "c2.pem", loose, "h", [])
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fingerprint_format_and_stability(material):
    cert_path, _, fp = material
    assert fp.startswith("sha256:")
    raw = base64.urlsafe_b64decode(fp[len("sha256:"):] + "=")
    assert len(raw) == 32 and "=" not in fp
    assert fingerprint_of_cert_file(cert_path) == fp
    assert fingerprint_of_cert_file(cert_path) == fp
    der = load(cert_path).public_bytes(serialization.Encoding.DER)
    assert fingerprint_of_cert_der(der) == fp


def test_reissue_with_same_key_keeps_fingerprint(material, tmp_path):
    cert_path, key_path, fp = material
    old = load(cert_path)
    new_cert = tmp_path / "renewed.pem"
    assert generate_self_signed(new_cert, key_path, "other.example", [], reuse_key=True) == fp
    assert fingerprint_of_cert_file(new_cert) == fp
    assert load(new_cert).serial_number != old.serial_number
    check_key_matches_cert(new_cert, key_path)


def test_new_key_changes_fingerprint(material, tmp_path):
    _, _, fp = material
    other = generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "example.org", [])
    assert other != fp
    assert fingerprint_of_cert_file(tmp_path / "c.pem") == other


def test_key_mismatch_detected(material, tmp_path):
    cert_path, _, _ = material
    generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "x", [])
    with pytest.raises(TLSMaterialError, match="does not match"):
        check_key_matches_cert(cert_path, tmp_path / "k.pem")
    with pytest.raises(TLSMaterialError, match="does not match"):
        server_context(cert_path, tmp_path / "k.pem")


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", ["missing", "garbage", "key-as-cert", "directory"])
def test_bad_cert_files(material, tmp_path, case):
    _, key_path, _ = material
    bad = {
        "missing": tmp_path / "nope.pem",
        "garbage": _write(tmp_path / "garbage.pem", b"\x00\x01 not pem"),
        "key-as-cert": key_path,
        "directory": tmp_path,
    }[case]
    with pytest.raises(TLSMaterialError) as info:
        fingerprint_of_cert_file(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TLSMaterialError, match=str(bad)):
        check_key_matches_cert(bad, key_path)
    with pytest.raises(TLSMaterialError):
        server_context(bad, key_path)


def test_bad_key_files(material, tmp_path):
    cert_path, _, _ = material
    encrypted = _write(tmp_path / "enc.pem", ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    for bad in [tmp_path / "nope.pem", _write(tmp_path / "g.pem", b"junk"), cert_path, encrypted]:
        with pytest.raises(TLSMaterialError, match=str(bad)):
            check_key_matches_cert(cert_path, bad)
        with pytest.raises(TLSMaterialError, match=str(bad)):
            generate_self_signed(tmp_path / "c.pem", bad, "x", [], reuse_key=True)


def test_reuse_of_non_ecdsa_key_refused(tmp_path):
    key = _write(tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(TLSMaterialError, match="not an ECDSA key"):
        generate_self_signed(tmp_path / "c.pem", key, "x", [], reuse_key=True)


def test_bad_der():
    with pytest.raises(TLSMaterialError, match=r"not valid X\.509"):
        fingerprint_of_cert_der(b"\x30\x03\x02\x01\x00")


def test_context_settings(material):
    cert_path, key_path, _ = material
    server = server_context(cert_path, key_path)
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server.verify_mode == ssl.CERT_NONE
    client = client_context()
    assert client.minimum_version == client.maximum_version == ssl.TLSVersion.TLSv1_3
    assert client.verify_mode == ssl.CERT_NONE and not client.check_hostname


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, **open_kwargs):
    async def answer(reader, writer):
        writer.write(await reader.readexactly(5))
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client, **open_kwargs), 10)
        ssl_object = writer.get_extra_info("ssl_object")
        facts = (fingerprint_of_cert_der(ssl_object.getpeercert(binary_form=True)),
                 ssl_object.version(), ssl_object.selected_alpn_protocol())
        writer.write(b"hello")
        echoed = await asyncio.wait_for(reader.readexactly(5), 10)
        writer.close()
        return facts + (echoed,)
    finally:
        listener.close()
        await listener.wait_closed()


def test_real_handshake_pins_fingerprint(material):
    cert_path, key_path, fp = material
    got_fp, version, alpn, echoed = asyncio.run(_handshake(
        server_context(cert_path, key_path), client_context(),
        server_hostname="www.example.org"))
    assert got_fp == fp == fingerprint_of_cert_file(cert_path)
    assert version == "TLSv1.3"
    assert alpn == "http/1.1"
    assert echoed == b"hello"


def test_server_answers_tls12_browsers(material):
    cert_path, key_path, fp = material
    browser = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    browser.check_hostname = False
    browser.verify_mode = ssl.CERT_NONE
    browser.maximum_version = ssl.TLSVersion.TLSv1_2
    browser.set_alpn_protocols(["h2", "http/1.1"])
    got_fp, version, alpn, _ = asyncio.run(_handshake(server_context(cert_path, key_path), browser))
    assert (got_fp, version, alpn) == (fp, "TLSv1.2", "http/1.1")


def test_agent_refuses_tls12_server(material):
    cert_path, key_path, _ = material
    old_server = server_context(cert_path, key_path)
    old_server.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(OSError):  # an SSLError or a reset, depending on timing
        asyncio.run(_handshake(old_server, client_context()))
