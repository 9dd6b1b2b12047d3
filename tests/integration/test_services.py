"""Network-only services: one member publishes a web site and a TCP echo, others reach them by name.

Real processes (a hub, the publisher's agent, users' agents) and curl; the
services themselves run in this test process, bound to loopback. No exit is
online anywhere: a .ladder name never needs one.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import socketserver
import struct
import threading
import time
from pathlib import Path

import pytest
from harness import HERE, Member, Network, curl, free_port, ladder, wait_for

BODY = os.urandom(8 * 1024 * 1024)
BODY_SHA = hashlib.sha256(BODY).hexdigest()
SITE_MARKER = "ladder-site-marker-51e2"


class Site(http.server.BaseHTTPRequestHandler):
    """/host answers the Host header it got, /big 8 MiB, POST the sha256 of the body."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/host":
            self._answer(self.headers.get("Host", "").encode())
        elif self.path == "/big":
            self._answer(BODY)
        else:
            self._answer(f"<html><body>{SITE_MARKER}</body></html>\n".encode())

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(hashlib.sha256(data).hexdigest().encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(1 << 16):
            self.request.sendall(data)
        self.request.shutdown(socket.SHUT_WR)


class Servers:
    """The publisher's local services, on loopback only."""

    def __init__(self):
        self.site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.echo = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
        self.echo.daemon_threads = True
        for server in (self.site, self.echo):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def site_address(self) -> str:
        return f"127.0.0.1:{self.site.server_address[1]}"

    @property
    def echo_address(self) -> str:
        return f"127.0.0.1:{self.echo.server_address[1]}"

    def close(self):
        for server in (self.site, self.echo):
            server.shutdown()
            server.server_close()


def publish(member_dir: Path, *args: str, check: bool = True):
    return ladder("publish", "--dir", str(member_dir), *args, check=check)


def start_member(net: Network, name: str, folder: Path) -> Member:
    port = free_port()
    member = Member(name, folder, net.start(name, "up", "--dir", str(folder), "--proxy", f"127.0.0.1:{port}"))
    member.proxy = ("127.0.0.1", port)
    member.wait_up()
    return member


def listed(member: Member) -> dict[str, dict]:
    return {s["name"]: s for s in (member.status().get("services") or {}).get("listed", [])}


def wait_listed(member: Member, name: str, online: bool = True, timeout: float = 20) -> dict:
    wait_for(lambda: listed(member).get(name, {}).get("online") is online, timeout,
             f"{member.name} to see {name} {'online' if online else 'offline'}")
    return listed(member)[name]


def socks_connect(proxy: tuple[str, int], host: str, port: int) -> socket.socket:
    s = socket.create_connection(proxy, timeout=30)
    name = host.encode()
    s.sendall(b"\x05\x01\x00\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
    reply = b""
    while len(reply) < 12:
        chunk = s.recv(12 - len(reply))
        if not chunk:
            break
        reply += chunk
    if reply[:2] != b"\x05\x00" or reply[3] != 0:
        s.close()
        raise ConnectionRefusedError(f"SOCKS5 refused {host}: {reply!r}")
    return s


def echo_through(s: socket.socket, data: bytes) -> bytes:
    sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
    sender.start()
    received = bytearray()
    while chunk := s.recv(1 << 20):
        received += chunk
    sender.join()
    return bytes(received)


def listening_addresses(pid: int) -> set[str]:
    """The local addresses a process listens on (TCP, from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address = bytes.fromhex(fields[1].split(":")[0])
                if table == "tcp":
                    found.add(socket.inet_ntop(socket.AF_INET, address[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(address[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


@pytest.fixture(scope="module")
def servers():
    s = Servers()
    yield s
    s.close()


@pytest.fixture(scope="module")
def town(tmp_path_factory, servers):
    """ryan publishes blog (a web site) and echo (TCP) before his agent starts, private for alice after."""
    net = Network(tmp_path_factory.mktemp("services"))
    try:
        ryan_dir = net.join("ryan")
        publish(ryan_dir, servers.site_address, "--name", "blog", "--title", "Ryan's photos")
        publish(ryan_dir, servers.echo_address, "--name", "echo", "--tcp", "--title", "echo")
        ryan = start_member(net, "ryan", ryan_dir)
        alice, mallory = net.user("alice"), net.user("mallory")
        wait_for(lambda: "alice" in (ryan.status().get("services") or {}).get("members", {}).values(), 20,
                 "ryan's agent to learn the member names")
        out = publish(ryan_dir, servers.site_address, "--name", "private", "--members", "alice").stdout
        assert "for alice (" in out and "private.ryan.ladder" in out, out
        for user in (alice, mallory):
            for name in ("blog", "echo", "private"):
                wait_listed(user, f"{name}.ryan.ladder")
        yield net, ryan, alice, mallory
    finally:
        net.close()


def test_web_site_by_human_and_self_certifying_name_with_8_mib_intact(town, tmp_path):
    _, ryan, alice, _ = town
    blog = listed(alice)["blog.ryan.ladder"]
    selfcert = blog["address"]
    assert selfcert.endswith(".ladder") and len(selfcert) == 32 + len(".ladder")
    assert blog["title"] == "Ryan's photos" and blog["publisher"] == "ryan" and blog["kind"] == "http"
    for proxy in (alice.socks, alice.http):
        for host in ("blog.ryan.ladder", selfcert):
            out = tmp_path / "big.bin"
            result = curl("-x", proxy, "-o", str(out), f"http://{host}/big")
            assert result.returncode == 0, (proxy, host, result.stderr)
            assert hashlib.sha256(out.read_bytes()).hexdigest() == BODY_SHA, f"8 MiB from {host} altered"
            seen = curl("-x", proxy, f"http://{host}/host")
            assert seen.stdout.decode() == host, f"the site saw Host {seen.stdout!r}, the user typed {host}"
    upload = tmp_path / "up.bin"
    upload.write_bytes(BODY)
    posted = curl("-x", alice.http, "--data-binary", f"@{upload}", "http://blog.ryan.ladder/upload")
    assert posted.stdout.decode() == BODY_SHA, "an 8 MiB upload arrived altered"
    own = curl("-x", ryan.socks, "http://blog.ryan.ladder/")  # the publisher tries its own site
    assert SITE_MARKER in own.stdout.decode(), own.stderr


def test_tcp_echo_by_both_names_with_8_mib_intact(town):
    _, _, alice, _ = town
    selfcert = listed(alice)["echo.ryan.ladder"]["address"]
    for host in ("echo.ryan.ladder", selfcert):
        with socks_connect(alice.proxy, host, 7) as s:
            back = echo_through(s, BODY)
        assert hashlib.sha256(back).hexdigest() == BODY_SHA, f"the echo through {host} came back altered"


def test_member_not_on_the_access_list_is_refused_by_the_publisher(town):
    _, _, alice, mallory = town
    assert listed(mallory)["private.ryan.ladder"]["allowed"] is False
    refused = curl("-i", "-x", mallory.http, "http://private.ryan.ladder/")
    text = refused.stdout.decode()
    assert text.startswith("HTTP/1.1 502"), text[:300]
    assert "this member is not on the service's access list (private.ryan.ladder:80)" in text
    assert SITE_MARKER not in text
    socks = curl("-x", mallory.socks, "http://private.ryan.ladder/")
    assert socks.returncode != 0 and SITE_MARKER not in socks.stdout.decode()
    allowed = curl("-x", alice.socks, "http://private.ryan.ladder/")
    assert SITE_MARKER in allowed.stdout.decode(), allowed.stderr
    unknown = curl("-i", "-x", alice.http, "http://nosuch.ryan.ladder/")
    assert unknown.stdout.decode().startswith("HTTP/1.1 503")
    text = unknown.stdout.decode()
    assert "no service by that name is published in the network (nosuch.ryan.ladder:80)" in text, text


def test_services_command_lists_who_publishes_what(town):
    _, ryan, alice, _ = town
    human = ladder("services", "--dir", str(alice.folder)).stdout
    assert "blog.ryan.ladder" in human and "online" in human and "Ryan's photos" in human
    assert listed(alice)["blog.ryan.ladder"]["address"] in human
    data = json.loads(ladder("services", "--dir", str(alice.folder), "--json").stdout)
    private = next(s for s in data["listed"] if s["name"] == "private.ryan.ladder")
    assert private["access"] == ["alice"] and private["allowed"] is True
    own = ladder("publish", "--dir", str(ryan.folder)).stdout
    assert "blog.ryan.ladder" in own and "echo.ryan.ladder" in own and "for alice" in own


def test_publisher_opens_no_port_and_publishes_only_loopback(town, servers):
    _, ryan, _, _ = town
    addresses = listening_addresses(ryan.proc.pid)
    assert addresses and all(a in ("127.0.0.1", "::1") for a in addresses), addresses
    for address in ("0.0.0.0:8080", "192.168.1.10:80", "example.com:80"):
        result = publish(ryan.folder, address, "--name", "leak", check=False)
        assert result.returncode != 0 and "loopback" in result.stderr, result.stderr
    assert "leak" not in (ryan.folder / "services.json").read_text()
    bad = publish(ryan.folder, servers.site_address, "--name", "Bad_Name", check=False)
    assert bad.returncode != 0 and "invalid service name" in bad.stderr


def test_publish_remove_takes_it_down_at_once(town, servers):
    _, ryan, alice, _ = town
    publish(ryan.folder, servers.echo_address, "--name", "temp", "--tcp")
    wait_listed(alice, "temp.ryan.ladder", timeout=5)
    s = socks_connect(alice.proxy, "temp.ryan.ladder", 7)
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    publish(ryan.folder, "--remove", "temp")
    started = time.monotonic()
    s.settimeout(5)
    try:
        assert s.recv(4) == b"", "the open connection survived the takedown"
    except ConnectionResetError:
        pass
    s.close()
    wait_for(lambda: "temp.ryan.ladder" not in listed(alice), 5, "temp to leave alice's listing")
    assert time.monotonic() - started < 3, "the takedown took longer than a couple of seconds"
    with pytest.raises(ConnectionRefusedError):
        socks_connect(alice.proxy, "temp.ryan.ladder", 7)
    missing = publish(ryan.folder, "--remove", "temp", check=False)
    assert missing.returncode != 0 and "not published" in missing.stderr


def test_publishing_survives_the_publisher_reconnecting(network, servers):
    ryan_dir = network.join("ryan")
    publish(ryan_dir, servers.site_address, "--name", "blog")
    ryan = start_member(network, "ryan", ryan_dir)
    alice = network.user("alice")
    wait_listed(alice, "blog.ryan.ladder")
    network.hub.stop()
    wait_for(lambda: ryan.status().get("state") != "up", 20, "ryan to notice the hub is gone")
    network.hub = network.start_hub()
    ryan.wait_up(40)
    alice.wait_up(40)
    wait_listed(alice, "blog.ryan.ladder", timeout=20)
    result = curl("-x", alice.socks, "http://blog.ryan.ladder/")
    assert SITE_MARKER in result.stdout.decode(), result.stderr


def test_service_record_forged_by_the_hub_is_refused(tmp_path, servers):
    net = Network(tmp_path, hub_command=[str(HERE / "spy_hub.py"), "forge-services", str(tmp_path / "hub")])
    try:
        ryan_dir = net.join("ryan")
        publish(ryan_dir, servers.site_address, "--name", "blog")
        start_member(net, "ryan", ryan_dir)
        alice = net.user("alice")
        wait_for(lambda: "blog.ryan.ladder" in (alice.status().get("services") or {}).get("refused", {}), 20,
                 "alice to refuse the forged record")
        refused = alice.status()["services"]["refused"]
        # Both names of ryan's blog, and both of the hub's search page (forged alike): nothing usable.
        assert len(refused) == 4 and "search.testhub.ladder" in refused and listed(alice) == {}, refused
        for host in refused:
            result = curl("-i", "-x", alice.http, f"http://{host}/")
            text = result.stdout.decode()
            assert text.startswith("HTTP/1.1 502"), text[:300]
            assert "signature does not verify" in text and f"hub may be lying about service {host}" in text
            assert SITE_MARKER not in text
        assert "WARNING" in alice.proc.output()
    finally:
        net.close()


def test_hub_relays_neither_the_service_name_nor_the_content(tmp_path, servers):
    capture = tmp_path / "relayed.bin"
    net = Network(tmp_path,
                  hub_command=[str(HERE / "spy_hub.py"), "record", str(tmp_path / "hub"), str(capture)])
    try:
        ryan_dir = net.join("ryan")
        # Not indexed: the hub's own search member would read the site as any member may, in the hub's
        # process; what is checked here is the relay.
        publish(ryan_dir, servers.site_address, "--name", "blog", "--no-index")
        start_member(net, "ryan", ryan_dir)
        alice = net.user("alice")
        selfcert = wait_listed(alice, "blog.ryan.ladder")["address"]
        for host in ("blog.ryan.ladder", selfcert):
            result = curl("-x", alice.http, f"http://{host}/page?q={SITE_MARKER[::-1]}")
            assert SITE_MARKER in result.stdout.decode(), result.stderr
        relayed = capture.read_bytes()
        assert len(relayed) > 2000, "the spy captured nothing: the test would prove nothing"
        for secret in (SITE_MARKER, SITE_MARKER[::-1], "blog.ryan.ladder", selfcert, "GET /", "/page"):
            assert secret.encode() not in relayed, f"the hub saw {secret!r} in the bytes it relayed"
    finally:
        net.close()


def test_publishing_again_changes_only_what_is_given(network, servers):
    ryan_dir = network.join("ryan")
    publish(ryan_dir, servers.site_address, "--name", "blog", "--title", "Ryan's photos",
            "--description", "cats")
    publish(ryan_dir, servers.site_address, "--name", "blog")  # e.g. after moving it: the title stays
    out = publish(ryan_dir, "--name", "blog", "--description", "dogs").stdout  # no address: an update
    assert out.startswith("updated blog"), out
    saved = json.loads((ryan_dir / "services.json").read_text())["services"]["blog"]
    assert (saved["title"], saved["description"], saved["kind"]) == ("Ryan's photos", "dogs", "http"), saved
    missing = publish(ryan_dir, "--name", "nosuch", check=False)
    assert missing.returncode != 0 and "not published yet" in missing.stderr, missing.stderr
