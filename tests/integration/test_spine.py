"""One hub, exits and users as real processes; curl and sockets drive the proxy."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import struct
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import MARKER, curl, ladder, recv_exact, wait_for


def socks_fetch(proxy: tuple[str, int], host: str, port: int, path: str) -> bytes:
    """HTTP/1.0 GET through SOCKS5 with a domain-name address; returns the body."""
    with socket.create_connection(proxy, timeout=60) as s:
        name = host.encode()
        s.sendall(b"\x05\x01\x00\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
        reply = recv_exact(s, 12)
        assert reply[:2] == b"\x05\x00" and reply[3] == 0, f"SOCKS5 refused: {reply!r}"
        s.sendall(f"GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = bytearray()
        while chunk := s.recv(1 << 20):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head[:200]
    return body


@pytest.fixture(scope="module")
def spine(shared_network):
    net = shared_network
    net.exit("alpha", "AA", "--allow-private")
    net.exit("bravo", "BB", "--allow-private")
    users = {"auto": net.user("u-auto"), "nowhere": net.user("u-nowhere", "--exit", "ZZ")}
    for user in users.values():
        user.wait_exits(2)
    return net, users


def test_page_through_socks5_and_http_proxy(spine, origin):
    _, users = spine
    user = users["auto"]
    via_socks = curl("-x", user.socks, origin.url("index.html"))
    assert via_socks.returncode == 0, via_socks.stderr
    assert MARKER in via_socks.stdout.decode()
    via_http = curl("-x", user.http, origin.url("index.html"))
    assert via_http.returncode == 0, via_http.stderr
    assert MARKER in via_http.stdout.decode()
    via_connect = curl("-p", "-x", user.http, origin.url("index.html"))
    assert via_connect.returncode == 0, via_connect.stderr
    assert MARKER in via_connect.stdout.decode()


def test_64_mib_download_arrives_intact(spine, origin, tmp_path):
    _, users = spine
    out = tmp_path / "big.bin"
    result = curl("-x", users["auto"].socks, "-o", str(out), origin.url("big.bin"))
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == origin.big_sha, "the 64 MiB file arrived altered"


def test_fifty_concurrent_downloads_all_intact(spine, origin):
    _, users = spine
    proxy = users["auto"].proxy
    with ThreadPoolExecutor(50) as pool:
        bodies = dict(zip(origin.small, pool.map(
            lambda name: socks_fetch(proxy, "localhost", origin.port, name), origin.small), strict=True))
    bad = [name for name, body in bodies.items() if hashlib.sha256(body).hexdigest() != origin.small[name]]
    assert not bad, f"{len(bad)} of 50 concurrent downloads arrived altered: {bad[:5]}"


def test_http_proxy_keeps_one_connection_across_hosts(spine, origin):
    _, users = spine
    conn = http.client.HTTPConnection(*users["auto"].proxy, timeout=30)
    bodies = []
    for host in ("127.0.0.1", "localhost", "127.0.0.1"):
        conn.request("GET", origin.url("index.html", host=host))
        response = conn.getresponse()
        assert response.status == 200, (host, response.status, response.read())
        bodies.append(response.read().decode())
    conn.request("POST", origin.url("index.html"), body=b"x" * 5000)
    response = conn.getresponse()
    response.read()
    assert response.status == 501  # http.server has no POST: the request reached it whole
    conn.close()
    assert all(MARKER in body for body in bodies)


def test_stranger_sees_an_ordinary_web_site(spine):
    net, _ = spine
    base = f"https://127.0.0.1:{net.hub_port}"
    home = curl("-k", "-i", base + "/")
    assert home.returncode == 0, home.stderr
    text = home.stdout.decode()
    assert text.startswith("HTTP/1.1 200") and "<html" in text.lower()
    assert "server: nginx" in text.lower()
    missing = curl("-k", "-i", base + "/no/such/page")
    assert missing.stdout.decode().startswith("HTTP/1.1 404")


def test_exit_refuses_private_addresses_and_says_why(network, origin):
    network.exit("strict", "CC")
    strict = network.user("u-strict", "--exit", "CC")
    strict.wait_exits(1)
    result = curl("-i", "-x", strict.http, origin.url("index.html"))
    text = result.stdout.decode()
    assert text.startswith("HTTP/1.1 502"), text[:200]
    assert "private, loopback or local" in text and MARKER not in text
    # CONNECT and SOCKS5 are answered before the exit does (the client's first bytes ride with the
    # open), so a refusal cuts the connection; the agent's log and its counters say why.
    tunnel = curl("-p", "-x", strict.http, origin.url("index.html"))
    assert tunnel.returncode != 0 and MARKER not in tunnel.stdout.decode()
    assert b"reset" in tunnel.stderr, tunnel.stderr
    socks = curl("-x", strict.socks, origin.url("index.html"))
    assert socks.returncode != 0 and MARKER not in socks.stdout.decode()
    assert b"reset" in socks.stderr, socks.stderr
    target = f"(127.0.0.1:{origin.port})"
    wait_for(lambda: strict.proc.output().count(f"private, loopback or local addresses {target}") >= 3, 5,
             "the agent to log why, with the target")
    metrics = agent_metrics(strict)
    assert re.search(r'^ladder_agent_refusals_total\{reason="FORBIDDEN"\} 3(\.0)?$', metrics, re.M), metrics


def agent_metrics(member) -> str:
    """The member's dashboard's /metrics (Prometheus text), reached with the secret its URL carries."""
    state = json.loads(ladder("status", "--json", "--dir", str(member.folder)).stdout)
    page = urllib.parse.urlsplit(state["dashboard"])
    result = curl(f"{page.scheme}://{page.netloc}/metrics?{page.query}")
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def test_unresolvable_name_and_missing_exit_get_clear_errors(spine):
    _, users = spine
    unresolved = curl("-i", "-x", users["auto"].http, "http://no-such-host.invalid/")
    assert unresolved.stdout.decode().startswith("HTTP/1.1 502")
    assert "could not resolve the name (no-such-host.invalid:80)" in unresolved.stdout.decode()
    nowhere = curl("-i", "-x", users["nowhere"].http, "http://example.com/")
    assert nowhere.stdout.decode().startswith("HTTP/1.1 503")
    assert "no exit online matches --exit ZZ" in nowhere.stdout.decode()


def test_status_and_members_tell_who_is_online(spine):
    net, users = spine
    result = ladder("status", "--dir", str(users["auto"].folder), "--json")
    status = json.loads(result.stdout)
    assert status["state"] == "up" and status["hub"] == "testhub"
    assert {e["name"] for e in status["exits"]} == {"alpha", "bravo"}
    human = ladder("status", "--dir", str(users["auto"].folder)).stdout
    assert "link:   up" in human and "2 online" in human
    listed = json.loads(ladder("hub", "members", "--dir", str(net.hub_dir), "--json").stdout)
    members = {m["name"]: m for m in listed}
    assert members["alpha"]["online"] == "exit"
    assert members["u-auto"]["online"] == "user"
