"""Sharing safely and choosing well: exit policy, limits, failover, routing rules and PAC."""

from __future__ import annotations

import json
import signal
import socket
import struct
import time

import pytest
from harness import MARKER, curl, ladder, wait_for


def http_status(user, url: str) -> tuple[str, str]:
    result = curl("-i", "-x", user.http, url, timeout=30)
    text = result.stdout.decode(errors="replace")
    return text.split("\r\n", 1)[0], text


def test_each_forbidden_kind_of_destination_is_refused_with_the_rule_named(network):
    network.member("strict", "--share", "--country", "CC", "--ports", "80,443,8000-8100",
                   "--members", "user,other")
    network.user("other")
    user = network.user("user")
    user.wait_exits(1)
    cases = {
        "http://127.0.0.1/": "private, loopback or local",
        "http://10.1.2.3/": "private, loopback or local",
        "http://169.254.169.254/latest/meta-data/": "private, loopback or local",
        "http://100.64.0.1/": "private, loopback or local",
        "http://[::1]/": "private, loopback or local",
        "http://[::ffff:127.0.0.1]/": "private, loopback or local",
        "http://224.0.0.1/": "multicast",
        "http://localhost/": "private, loopback or local",  # a name resolving to a private address
        "http://93.184.216.34:22/": "allows ports 80, 443, 8000-8100 only",
    }
    for url, reason in cases.items():
        status, text = http_status(user, url)
        assert status == "HTTP/1.1 502 Bad Gateway", f"{url}: {status}"
        body = text.split("\r\n\r\n", 1)[1]
        assert reason in body and len(body.strip().splitlines()) == 1, f"{url}: {body!r}"
    outsider = network.user("outsider")
    outsider.wait_exits(1)
    status, text = http_status(outsider, "http://93.184.216.34/")
    assert "(strict) serve listed members only, not you" in text, text  # told without asking the exit


def download_rate(proxy, port: int, path: str, skip: int) -> tuple[float, int]:
    """Bytes per second after the first `skip` bytes (past any burst), and the total read."""
    with socket.create_connection(proxy, timeout=60) as s:
        s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", port))
        s.sendall(f"GET /{path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        total, started = 0, None
        while chunk := s.recv(1 << 16):
            total += len(chunk)
            if started is None and total >= skip:
                started, mark = time.monotonic(), total
    return (total - mark) / (time.monotonic() - started), total


def test_per_member_rate_limit_holds_and_others_are_unaffected(network, origin):
    network.exit("alpha", "AA", "--allow-private", "--user-rate", "2M")
    slow = network.user("slow")
    slow.wait_exits(1)
    rate, total = download_rate(slow.proxy, origin.port, "big.bin", skip=4_000_000)
    assert total > 64 * 1024 * 1024 * 0.99 or rate < 2.3e6  # sanity: we measured something
    assert 1.7e6 <= rate <= 2.3e6, f"a member limited to 2 MB/s got {rate / 1e6:.2f} MB/s"


def test_limits_are_per_member(network, origin):
    network.exit("alpha", "AA", "--allow-private", "--user-rate", "1M")
    first, second = network.user("first"), network.user("second")
    second.wait_exits(1)
    with socket.create_connection(first.proxy, timeout=60) as hog:  # first member saturates its share
        hog.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", origin.port))
        hog.sendall(b"GET /big.bin HTTP/1.0\r\nHost: x\r\n\r\n")
        hog.recv(1 << 16)
        rate, _ = download_rate(second.proxy, origin.port, "s1.bin", skip=0)
    # One second of burst at 1 MB/s covers the whole 1 MiB file: the second member is not slowed by the first.
    assert rate > 3e6, f"the other member got {rate / 1e6:.2f} MB/s"


def test_daily_cap_stops_new_streams_and_says_so(network, origin, tmp_path):
    alpha = network.exit("alpha", "AA", "--allow-private", "--daily-cap", "3M")
    user = network.user("user")
    user.wait_exits(1)
    out = tmp_path / "s.bin"
    for name in ("s1.bin", "s2.bin", "s3.bin"):  # ~3 MiB in all: over the cap
        assert curl("-x", user.socks, "-o", str(out), origin.url(name)).returncode == 0
    status, text = http_status(user, origin.url("index.html"))
    assert status.startswith("HTTP/1.1 503"), status
    assert "daily cap" in text or "no exit online" in text, text
    def share_status() -> dict:
        return json.loads(ladder("share", "status", "--dir", str(alpha.folder), "--json").stdout)

    share = wait_for(lambda: (s := share_status())["capped"] and s, 10, "the exit to report its cap")
    assert share["capped"] == "the exit reached its daily cap"
    assert share["today_bytes"] >= 3_000_000
    assert any(u["name"] == "user" and u["bytes_today"] >= 3_000_000 for u in share["users"].values())
    human = ladder("share", "status", "--dir", str(alpha.folder)).stdout
    assert "daily cap" in human and "user" in human


def test_a_vanished_exit_is_skipped_without_the_user_seeing_an_error(network, origin):
    alpha = network.exit("alpha", "AA", "--allow-private")
    network.exit("bravo", "BB", "--allow-private")
    user = network.user("user")
    user.wait_exits(2)
    alpha.proc.stop(signal.SIGKILL)
    for i in range(12):
        result = curl("-x", user.socks, origin.url("index.html"), timeout=30)
        assert result.returncode == 0 and MARKER in result.stdout.decode(), f"request {i}: {result.stderr}"


def test_rules_send_destinations_three_ways_in_one_session(network, origin, tmp_path):
    alpha = network.exit("alpha", "AA", "--allow-private")
    rules = tmp_path / "test.rules"
    rules.write_text(
        "ip-cidr 127.0.0.0/8 -> direct      # our own machine: no exit needed\n"
        "domain localhost -> exit:AA\n"
        "domain-suffix blocked.test -> block\n"
        "default -> exit\n"
    )
    user = network.user("user", "--rules", str(rules))
    user.wait_exits(1)

    def carried() -> int:
        status = json.loads(ladder("share", "status", "--dir", str(alpha.folder), "--json").stdout)
        return status["today_bytes"]

    before = carried()
    direct = curl("-x", user.socks, origin.url("index.html", host="127.0.0.1"))
    assert direct.returncode == 0 and MARKER in direct.stdout.decode()
    time.sleep(2.5)  # the exit publishes its counters every 2 s
    assert carried() == before, "the direct request went through the exit"
    via_exit = curl("-x", user.socks, origin.url("index.html", host="localhost"))
    assert via_exit.returncode == 0 and MARKER in via_exit.stdout.decode()
    wait_for(lambda: carried() > before, 10, "the exit to count the bytes it carried")
    status, text = http_status(user, "http://www.blocked.test/")
    assert status.startswith("HTTP/1.1 502")
    assert "blocked by your rule `domain-suffix blocked.test -> block`" in text

    pac = curl(f"{user.http}/proxy.pac").stdout.decode()
    assert "function FindProxyForURL" in pac
    assert 'isInNet(host, "127.0.0.0", "255.0.0.0")) return "DIRECT"' in pac
    route = ladder("route", "test", "www.blocked.test", "--dir", str(user.folder),
                   "--rules", str(rules)).stdout
    assert "block" in route and "line 3" in route


@pytest.mark.parametrize("preset", ["inside-cn", "abroad"])
def test_route_test_explains_the_presets(preset):
    result = ladder("route", "test", "news.example.cn", "--rules", preset)
    expected = "directly" if preset == "inside-cn" else "through an exit (CN)"
    assert expected in result.stdout, result.stdout


def test_auto_never_prefers_an_exit_whose_policy_refuses_this_member(network, origin):
    network.exit("closed", "CC", "--allow-private", "--members", "somebody")
    open_exit = network.exit("open", "NL", "--allow-private")
    user = network.user("user")
    user.wait_exits(2)
    for i in range(12):
        result = curl("-x", user.socks, origin.url("index.html"), timeout=30)
        assert result.returncode == 0 and MARKER in result.stdout.decode(), f"request {i}: {result.stderr}"

    def carried_for_user() -> bool:  # the exit saves its figures every 2 s
        share = json.loads(ladder("share", "status", "--dir", str(open_exit.folder), "--json").stdout)
        return any(u["name"] == "user" and u["bytes_today"] > 12 * len(MARKER)
                   for u in share["users"].values())

    wait_for(carried_for_user, 10, "the open exit to show the 12 requests")
    listed = {e["name"]: e for e in user.status()["exits"]}
    assert listed["closed"]["users"] == 0 and listed["closed"]["admits_me"] is False, listed  # never opened



def test_route_test_knows_network_only_services():
    result = ladder("route", "test", "blog.ryan.ladder", "--rules", "abroad")
    assert "network-only service" in result.stdout and "ryan" in result.stdout, result.stdout
    assert "through an exit" not in result.stdout, result.stdout


def test_a_mistyped_exit_is_told_once_the_directory_arrives(network, tmp_path):
    network.exit("alpha", "AA", "--allow-private")
    rules = tmp_path / "jp.rules"
    rules.write_text("domain-suffix example -> exit:JP\n")
    user = network.user("user", "--exit", "aplha", "--rules", str(rules))
    lines = ["`domain-suffix example -> exit:JP` (line 1 of the rules): no exit online matches --exit JP; "
             "online: alpha (AA)", "--exit aplha: no exit online matches --exit aplha; online: alpha (AA)"]
    wait_for(lambda: all(line in user.proc.output() for line in lines), 20, "the warnings about exits")
    time.sleep(2.5)  # the directory comes again with every load change: said once all the same
    assert all(user.proc.output().count(line) == 1 for line in lines), user.proc.output()
    shown = ladder("status", "--dir", str(user.folder)).stdout
    assert "WARNING: `domain-suffix example -> exit:JP`" in shown, shown
    assert "--exit aplha: no exit online" in shown, shown
