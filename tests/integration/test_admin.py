"""The hub's admin page and /metrics against a real hub process, its exits and users.

Each check asks the admin listener as an operator (or Prometheus) would,
then looks outside it for the effect: `ladder join` with the invite it
made, the CLI's own listing, curl through a member's proxy for the bytes a
counter must show. And the public port must know nothing of any of it.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import Network, curl, ladder, wait_for
from prometheus_client.parser import text_string_to_metric_families

from ladder.app.web import Guard
from ladder.link.tls import fingerprint_of_cert_der
from ladder.protocol.hello import make_hello


@pytest.fixture(scope="module")
def town(shared_network, origin):
    aa = shared_network.exit("aa", "AA", "--allow-private")
    ed = shared_network.user("ed")
    ed.wait_exits(1)
    return shared_network, aa, ed


class AdminPage:
    def __init__(self, net: Network):
        found = json.loads(ladder("hub", "admin-url", "--dir", str(net.hub_dir), "--json").stdout)
        self.url = found["url"]
        self.base, _, self.secret = self.url.partition("/?k=")
        self.csrf = Guard(self.secret, set()).csrf

    def ask(self, path: str, body: dict | None = None, headers: dict | None = None,
            auth: bool = True) -> tuple[int, bytes]:
        fields = {"Authorization": f"Bearer {self.secret}"} if auth else {}
        if body is not None:
            fields |= {"Content-Type": "application/json", "X-Ladder-CSRF": self.csrf}
        fields |= headers or {}
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data, fields)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, path: str, body: dict | None = None) -> dict:
        status, data = self.ask(path, body)
        assert status == 200, (path, status, data)
        return json.loads(data)

    def metrics(self) -> dict[tuple[str, tuple], float]:
        status, data = self.ask(f"/metrics?k={self.secret}", auth=False)
        assert status == 200, data
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(data.decode()) for sample in family.samples}


def test_admin_url_prints_the_running_pages_address_and_its_state_shows_the_network(town):
    net, _, _ = town
    page = AdminPage(net)
    assert page.url.startswith("http://127.0.0.1:") and ladder(
        "hub", "admin-url", "--dir", str(net.hub_dir)).stdout.strip() == page.url
    state = page.json("/api/state")
    members = {m["name"]: m for m in state["members"]}
    assert members["aa"]["online"] == "exit" and members["ed"]["online"] == "user", members
    assert [c["country"] for c in state["exits"]] == ["AA"] and state["exits"][0]["exits"][0]["name"] == "aa"
    health = state["health"]
    assert health["store_ok"] and health["links"]["member"] >= 3  # aa, ed and the hub's search member
    assert health["certificate_days"] > 300 and health["fingerprint"].startswith("sha256:")
    assert state["ledger"]["checkpoint"] is not None and state["ledger"]["refused"] == 0


def test_an_invite_made_on_the_page_lets_a_real_member_join_and_a_withdrawn_one_does_not(town, tmp_path):
    net, _, _ = town
    page = AdminPage(net)
    made = page.json("/api/invites", {"name": "fay", "uses": 2, "expires": "1h"})
    assert made["link"].startswith("ladder://") and made["qr"].startswith("data:image/svg+xml")
    listed = {i["name"]: i for i in page.json("/api/state")["invites"]}
    assert listed["fay"]["uses_left"] == 2
    ladder("join", made["link"], "--dir", str(tmp_path / "fay"))
    assert any(m["name"] == "fay" for m in page.json("/api/state")["members"])

    second = page.json("/api/invites", {"name": "gus"})
    assert page.json("/api/invites/revoke", {"name": "gus"})["withdrawn"] == 1
    refused = ladder("join", second["link"], "--dir", str(tmp_path / "gus"), check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    bad = page.ask("/api/invites", {"name": "fay"})  # a member's name already
    assert bad[0] == 400 and "already belongs" in json.loads(bad[1])["error"]


def test_a_device_revoked_on_the_page_is_revoked_in_the_store(town):
    net, _, _ = town
    ladder("hub", "device", "add", "tablet", "--owner", "ed", "--dir", str(net.hub_dir))
    page = AdminPage(net)
    devices = {f"{d['owner']}/{d['name']}": d for d in page.json("/api/state")["devices"]}
    assert not devices["ed/tablet"]["revoked"]
    assert page.json("/api/devices/revoke", {"name": "ed/tablet"}) == {"revoked": "ed/tablet"}
    listed = json.loads(ladder("hub", "devices", "--dir", str(net.hub_dir), "--json").stdout)
    assert [d["revoked"] for d in listed if d["name"] == "tablet"] == [True]
    assert page.ask("/api/devices/revoke", {"name": "ed/nothing"})[0] == 400


def test_metrics_parse_with_the_prometheus_parser_and_count_the_traffic(town, origin):
    net, _, ed = town
    page = AdminPage(net)
    before = page.metrics()
    result = curl("-s", "-x", ed.socks, "-o", "/dev/null", "-w", "%{size_download}", origin.url("s1.bin"))
    assert result.stdout == b"1048576", result.stderr
    after = page.metrics()
    down = ("ladder_relayed_bytes_total", (("direction", "down"),))
    up = ("ladder_relayed_bytes_total", (("direction", "up"),))
    # Inside the end-to-end channel: the file, and the framing and encryption around it.
    assert after[down] - before[down] >= 1048576, (before[down], after[down])
    assert after[up] > before[up]
    assert after[("ladder_streams_spliced_total", ())] > before[("ladder_streams_spliced_total", ())]
    assert after[("ladder_links", (("kind", "member"),))] >= 3
    assert after[("ladder_directory_exits", ())] == 1
    for name in ("ladder_up_seconds", "ladder_handshakes_total", "ladder_ledger_entries",
                 "ladder_receipts_refused_total", "ladder_search_pages"):
        assert (name, ()) in after, name
    assert after[("ladder_hellos_total", (("result", "accepted"),))] >= 3


def test_metrics_count_a_strangers_hello(town):
    net, _, _ = town
    page = AdminPage(net)
    before = page.metrics()
    # A stranger's well-formed hello from a key the hub does not know: refused, answered by the web face.
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", net.hub_port), 5) as raw, \
            context.wrap_socket(raw) as tls:
        fingerprint = fingerprint_of_cert_der(tls.getpeercert(binary_form=True))
        binding = tls.get_channel_binding("tls-unique")
        tls.sendall(make_hello(Ed25519PrivateKey.generate(), fingerprint, binding))
        refused = ("ladder_hellos_total", (("result", "refused"),))
        wait_for(lambda: page.metrics().get(refused, 0) > before.get(refused, 0), 5, "the refused hello")
    assert page.metrics()[("ladder_handshakes_total", ())] > before[("ladder_handshakes_total", ())]


ADMIN_PATHS = ("/", "/metrics", "/api/state", "/admin", "/static/admin.js", "/api/invites")


def test_the_public_port_answers_admin_paths_as_the_web_face_answers_any_unknown_path(town):
    net, _, _ = town
    page = AdminPage(net)

    def public(path: str, *args: str) -> tuple[bytes, bytes]:
        result = curl("-sk", "-D", "-", "-o", "-", "--resolve", f"hub.test:{net.hub_port}:127.0.0.1", *args,
                      f"https://hub.test:{net.hub_port}{path}")
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        return head.split(b"\r\n")[0], body

    unknown, home = public("/no-such-page-here"), public("/")
    assert unknown[0].startswith(b"HTTP/1.1 404") and home[0].startswith(b"HTTP/1.1 200")
    assert b"ladder" not in home[1].lower()  # the web face's own home page, not the admin page
    for path in (*ADMIN_PATHS, f"/?k={page.secret}", f"/metrics?k={page.secret}"):
        for extra in ((), ("-H", f"Authorization: Bearer {page.secret}"), ("-H", "Host: 127.0.0.1:8444")):
            expected = home if path.partition("?")[0] == "/" else unknown
            assert public(path, *extra) == expected, (path, extra)


def test_the_admin_listener_refuses_a_wrong_host_no_secret_and_a_cross_site_post(town):
    net, _, _ = town
    page = AdminPage(net)
    assert page.ask("/api/state", headers={"Host": "rebind.attacker.test"})[0] == 421
    assert page.ask("/api/state", auth=False)[0] == 401
    assert page.ask("/metrics", auth=False)[0] == 401
    forged = page.ask("/api/invites", {"name": "mallory"}, headers={"X-Ladder-CSRF": "guess"})
    assert forged[0] == 403
    cross = page.ask("/api/invites", {"name": "mallory"}, headers={"Origin": "https://evil.example"})
    assert cross[0] == 403
    assert all(i["name"] != "mallory" for i in page.json("/api/state")["invites"])


def test_a_hub_whose_admin_port_is_taken_says_so_in_one_line_and_serves_on(tmp_path, origin):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    net = Network(tmp_path, hub_command=["-m", "ladder", "hub", "run", "--dir", str(tmp_path / "hub"),
                                         "--admin", f"127.0.0.1:{port}"])
    try:
        user = net.user("ivy")
        assert user.status()["state"] == "up"
        wait_for(lambda: "no admin page" in net.hub.output(), 10, "the hub's warning")
        assert f"no admin page: cannot listen on 127.0.0.1:{port}: Address already in use" in net.hub.output()
        missing = ladder("hub", "admin-url", "--dir", str(net.hub_dir), check=False)
        assert missing.returncode == 1 and "no admin page runs" in missing.stderr
    finally:
        held.close()
        net.close()
