"""The firewall lab's checks (issue 4): Ladder across a simulated national firewall, behind NATs.

Each test is one line of the issue; docs/LAB.md says what each proves.
Needs root and the lab's tools; otherwise every test skips with one line.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
import urllib.parse

import gfw
import pcap
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ladderlab import (
    BLOCKED_NAME,
    FACE_PORT,
    KEYWORD,
    LAN_SERVICE_PORT,
    MAINLAND_MARKER,
    MAINLAND_NAME,
    MARKER,
    Member,
)
from netlab import ADDR, ADDRESS_RULE, KEYWORD_RULE, ban, listening, rule_packets, run_in, unban, wait_for

from ladder.protocol.hello import make_hello
from ladder.protocol.trojan import CONNECT, password_hash
from ladder.protocol.trojan import request as trojan_request

BIG_TIMEOUT = 120
IMPAIRED_TIMEOUT = 180  # check 8: 64 MiB with 150 ms delay and 1% loss each way
PROBE_WAIT = 5.0  # check 6: how long a probe watches for a reaction
SEGMENT = 1448  # check 6: the most payload one TCP segment carries on the lab's links (MTU 1500)
INBOUND_PORTS = [1080, LAN_SERVICE_PORT, 22, 80, 443, 8080]  # check 7
HUB = (ADDR["hub"], 443)


def _said(result) -> str:
    return (result.stderr.decode(errors="replace").strip() or result.stdout[:300].decode(errors="replace"))


def _ok(result, marker: str, what: str, lab=None) -> None:
    """`result` (curl's) succeeded with `marker` in the body; else fail saying what, with Ladder's logs."""
    body = result.stdout.decode(errors="replace")
    assert result.returncode == 0 and marker in body, (
        f"{what} failed (curl exit {result.returncode}): {_said(result)}"
        + (f"\n{lab.ladder_logs()}" if lab is not None else ""))


def test_1_without_ladder_the_phone_cannot_reach_the_blocked_site(lab):
    blocked_before = rule_packets("border", "LAD-BLOCK")
    for url in (f"http://{ADDR['usweb']}/", f"https://{ADDR['usweb']}/"):
        result = lab.curl("phone", "--cacert", str(lab.ca.cert_path), url, timeout=4)
        assert result.returncode != 0, (
            f"the phone fetched {url} without Ladder: the border does not block the site's address")
    blocked_after = rule_packets("border", "LAD-BLOCK")
    assert blocked_after[ADDRESS_RULE] > blocked_before[ADDRESS_RULE], (
        "the phone's requests to the blocked address failed, but not at the border's block rule")

    resolved = run_in("phone", "getent", "hosts", BLOCKED_NAME, check=False).stdout.decode().split()
    assert resolved[:1] == [ADDR["poisoned"]], (
        f"inside, {BLOCKED_NAME} should resolve to the poisoned {ADDR['poisoned']}, got {resolved}")
    result = lab.curl("phone", f"http://{BLOCKED_NAME}/", timeout=4)
    assert result.returncode != 0, f"the phone fetched http://{BLOCKED_NAME}/ by name without Ladder"

    # The outside as such is reachable (an unblocked address), and the ban chain works.
    mirror = f"http://{ADDR['usweb-mirror']}/"
    _ok(lab.curl("phone", mirror, timeout=5), MARKER, f"control: the phone fetching the unblocked {mirror}")
    ban(ADDR["usweb-mirror"])
    try:
        banned = lab.curl("phone", mirror, timeout=3)
    finally:
        unban(ADDR["usweb-mirror"])
    assert banned.returncode != 0, \
        f"the border's LAD-BAN chain did not stop traffic to a banned address ({mirror})"


def test_2_through_ladder_the_phone_fetches_the_blocked_site(lab):
    _ok(lab.curl("phone", *lab.proxy(f"http://{BLOCKED_NAME}/")), MARKER,
        f"the phone fetching http://{BLOCKED_NAME}/ through Ladder", lab)
    _ok(lab.curl("phone", *lab.proxy("--cacert", str(lab.ca.cert_path), f"https://{BLOCKED_NAME}/")), MARKER,
        f"the phone fetching https://{BLOCKED_NAME}/ through Ladder (lab CA)", lab)
    digest, seconds, result = lab.fetch_big("phone", BIG_TIMEOUT)
    assert result.returncode == 0, (
        f"the 64 MiB download through Ladder failed after {seconds:.1f} s: {_said(result)}\n"
        f"{lab.ladder_logs()}")
    assert digest == lab.blocked.big_sha, \
        "the 64 MiB file arrived through Ladder, but corrupted (sha256 differs)"
    print(f"64 MiB through Ladder in {seconds:.1f} s ({64 / seconds:.1f} MiB/s)")


def test_3_the_keyword_filter_never_matches_ladder_traffic(lab):
    site = lab.blocked
    for path in (site.keyword_path, site.keyword_page):
        result = lab.curl("phone", *lab.proxy(f"http://{BLOCKED_NAME}{path}"))
        _ok(result, KEYWORD,
            f"the phone fetching http://{BLOCKED_NAME}{path} (keyword in cleartext) through Ladder", lab)

    # Control: the same requests without Ladder, to an address the border does not block, are dropped.
    mirror = f"http://{ADDR['usweb-mirror']}"
    _ok(lab.curl("phone", f"{mirror}/", timeout=5), MARKER,
        "control: a page without the keyword, without Ladder")
    dropped_before = rule_packets("border", "LAD-BLOCK")[KEYWORD_RULE]
    for path, where in ((site.keyword_path, "in the URL"), (site.keyword_page, "in the page")):
        result = lab.curl("phone", f"{mirror}{path}", timeout=4)
        assert result.returncode != 0, (
            f"control: {mirror}{path} (keyword {where}) arrived without Ladder: "
            "the keyword filter does not work")
    assert rule_packets("border", "LAD-BLOCK")[KEYWORD_RULE] > dropped_before, \
        "the keyword rule dropped nothing"


def test_4_two_way_sharing_outside_reaches_mainland_only_content(lab):
    url = f"http://{MAINLAND_NAME}/"
    _ok(lab.curl("phone", url), MAINLAND_MARKER,
        "control: the phone (inside) fetching the mainland-only site")
    direct = lab.curl("laptop", "-o", "/dev/null", "-w", "%{http_code}", url)
    assert direct.stdout.decode() == "403", (
        f"without Ladder the laptop (outside) should get 403 from {url}, "
        f"got {direct.stdout!r} {_said(direct)}")
    _ok(lab.curl("laptop", *lab.proxy(url)), MAINLAND_MARKER,
        f"the laptop fetching {url} through the inside member's exit (--exit CN)", lab)


def test_5_the_link_across_the_border_looks_like_https(lab):
    small = lab.root / "small-through-capture.bin"
    with lab.capture("cn") as capture:
        lab.restart_member("laptop")  # a new link, so its handshake crosses the border during the capture
        page = lab.curl("phone", *lab.proxy(f"http://{BLOCKED_NAME}{lab.blocked.keyword_path}"))
        https = lab.curl("phone", *lab.proxy("--cacert", str(lab.ca.cert_path), "-o", str(small),
                                             f"https://{BLOCKED_NAME}/small.bin"))
        mainland = lab.curl("laptop", *lab.proxy(f"http://{MAINLAND_NAME}/"))
    _ok(page, KEYWORD, "the keyword page through Ladder during the capture", lab)
    small_sha = hashlib.sha256(small.read_bytes()).hexdigest()
    assert https.returncode == 0 and small_sha == lab.blocked.small_sha, (
        f"the 1 MiB file through Ladder during the capture: {_said(https)}")
    _ok(mainland, MAINLAND_MARKER, "the mainland page through Ladder during the capture", lab)

    _, new, problems = _border_problems(capture.path)
    if capture.crossed < len(small.read_bytes()):
        problems.append(f"only {capture.crossed} bytes crossed the border, less than the 1 MiB "
                        "file: Ladder's traffic did not go through the captured link")
    assert not problems, "the border saw more than HTTPS:\n" + "\n".join(problems[:20])
    lab.remember_handshake(new)


def _border_problems(path, opened: bool = True, servers: tuple = (HUB,)) -> tuple[list, list, list[str]]:
    """What the border would flag in a capture: (packets, connections opened, problems).

    Only TCP to the hub's 443 (or to another of `servers`) may cross; every new connection's bytes are
    TLS records both ways, each side's first data packet exempt under the
    GFW's rules for fully encrypted traffic; no protocol banner and no
    secret of the lab (keyword, markers, names, a request line) in clear.
    With `opened`, the capture must hold a connection opened during it, or
    it would prove nothing of handshakes.
    """
    packets = pcap.read_pcap(path)
    assert packets, "the border capture is empty"
    not_tcp = [p for p in packets if not p.is_tcp]
    assert not not_tcp, "packets other than TCP crossed the border: " + ", ".join(
        f"proto {p.proto} {p.src}:{p.sport} -> {p.dst}:{p.dport}" for p in not_tcp[:5])
    connections = pcap.tcp_connections(packets)
    elsewhere = [c for c in connections if c.server not in servers]
    assert not elsewhere, (
        "TCP connections crossed the border to something other than the hub's port 443: "
        + ", ".join(f"{c.client} -> {c.server}" for c in elsewhere[:5]))
    new = [c for c in connections if c.saw_syn]
    assert new or not opened, ("no connection was opened across the border during the capture: "
                               "the test proves nothing")

    problems = []
    for conn in new:
        for side, who in ((conn.client, "client"), (conn.server, "hub")):
            try:
                records = gfw.tls_records(conn.stream(side))
            except gfw.NotTLS as exc:
                problems.append(f"{conn.client}->{conn.server} {who}'s bytes are not TLS records: {exc}")
                continue
            if not records:
                problems.append(f"{conn.client}->{conn.server}: the {who} sent nothing")
            first = conn.first_data(side)
            if first is not None and not gfw.is_exempt(first):
                problems.append(
                    f"{conn.client}->{conn.server}: the {who}'s first data packet ({len(first)} bytes, "
                    f"{gfw.popcount_per_byte(first):.2f} bits/byte, starts {first[:8].hex()}) is exempt "
                    "under none of Ex1-Ex5: the GFW would flag it as fully encrypted")
    for packet in packets:
        found = gfw.banners(packet.payload)
        if found:
            problems.append(f"{packet.src}:{packet.sport} -> {packet.dst}:{packet.dport} carries {found}")
    cleartext = b"".join(p.payload for p in packets)
    print(f"border capture: {len(packets)} packets, {len(connections)} connections ({len(new)} opened), "
          f"{len(cleartext)} payload bytes; first packets exempt by "
          + ", ".join("/".join(gfw.exemptions(c.first_data(c.client) or b"")) for c in new))
    for secret in (KEYWORD, MARKER, BLOCKED_NAME, MAINLAND_NAME, MAINLAND_MARKER, "GET /"):
        if secret.encode() in cleartext:
            problems.append(f"{secret!r} crossed the border in cleartext")
    return packets, new, problems


def _either_close(probe: dict, hub: dict, nginx: dict) -> bool:
    """A refused flight of several segments: nginx itself closes with FIN or RST, by timing.

    It reads what has arrived, refuses it and closes; a segment still on the
    way then meets a reset, one already read leaves a FIN. So either ending
    from the hub is one nginx also shows for the same bytes.
    """
    return len(probe.get("send", "")) // 2 > SEGMENT and {hub["class"], nginx["class"]} == {"FIN", "RST"}


def _probes(handshake: list[bytes]) -> dict[str, dict]:
    """Check 6's probes: (name -> probes.py spec, plus "bytes": whether answers must match byte for byte).

    Random bytes of every length 1-64 and a seeded sample up to 1000 (and
    4096): nginx peeks at the first byte, so each is either an HTTP request
    gone wrong (a 400 page at the first bad byte, or a wait) or TLS garbage
    (OpenSSL's alert, or a silent close). Their answers, like the error pages
    and alerts below, are the same bytes from any nginx; a handshake's or a
    site's are not, so those compare by class only.
    """
    rng = random.Random(20230809)
    lengths = [*range(1, 65), *sorted(rng.sample(range(65, 1000), 24)), 1000, 4096]
    probes: dict[str, dict] = {"no data": {"bytes": True}}
    for length in lengths:
        probes[f"{length} random bytes"] = {"send": rng.randbytes(length).hex(), "bytes": True}
    for length in (5, 50, 300):
        probes[f"TLS record header and {length} random bytes"] = {
            "send": (b"\x16\x03\x01" + rng.randbytes(length)).hex(), "bytes": True}
        probes[f"SSLv2-looking {length} random bytes"] = {
            "send": (bytes([0x80 | rng.randrange(128)]) + rng.randbytes(length - 1)).hex(), "bytes": True}
    for name, request in (("HTTP GET", b"GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n"),
                          ("HTTP HEAD", b"HEAD / HTTP/1.1\r\nHost: www.example.org\r\n\r\n"),
                          ("HTTP/1.1 GET without Host", b"GET / HTTP/1.1\r\n\r\n"),
                          ("HTTP/0.9 GET", b"GET /\r\n"),
                          ("half an HTTP request", b"GET / HTTP/1.1\r\nHost: www.exa")):
        probes[name] = {"send": request.hex(), "bytes": True}
    probes["TLS with a wrong SNI, then HTTP GET"] = {
        "tls_sni": "wrong.example", "send": b"GET / HTTP/1.1\r\nHost: wrong.example\r\n\r\n".hex()}
    probes["TLS with a wrong SNI, then garbage"] = {
        "tls_sni": "wrong.example", "send": rng.randbytes(40).hex(), "bytes": True}
    probes["TLS, then nothing"] = {"tls_sni": "www.example.org", "bytes": True}
    # Inside TLS: random bytes, the first bytes of the hellos of old (0xA1, 0xA2), and a member's
    # hello cut anywhere: nginx waits on an unfinished request line, and so must the hub.
    inside = {f"{length} random bytes": rng.randbytes(length) for length in (1, 2, 7, 9, 33, 50, 221, 1000)}
    inside |= {"byte 0xA1": b"\xa1", "byte 0xA2": b"\xa2"}
    key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    for kind, hello in (("AUTH", make_hello(key, "sha256:x", rng.randbytes(32))),
                        ("JOIN", make_hello(key, "sha256:x", rng.randbytes(32), rng.randbytes(16))),
                        ("COMMAND", make_hello(key, "sha256:x", rng.randbytes(32), command=True))):
        for cut in (1, 4, 5, 6, 7, 40, len(hello) - 1):
            inside[f"{kind} hello's first {cut} bytes"] = hello[:cut]
        inside[f"whole {kind} hello"] = hello
        inside[f"whole {kind} hello, then a NUL"] = hello + b"\x00"
        inside[f"{kind} hello's first 60 bytes, then a dot"] = hello[:60] + b"."
        # a refused hello is a URI: ended, it gets nginx's 404 page (byte for byte: an error page)
        inside[f"whole {kind} hello ending a request line"] = hello + b" HTTP/1.1\r\nHost: a\r\n\r\n"
        inside[f"whole {kind} hello as HTTP/0.9"] = hello + b"\r\n"
    # A device's first line is 56 hex digits and CRLF: one that matches no device, cut anywhere
    # or whole with a request behind it, is a stranger's request line like any other.
    line = password_hash("no such device") + b"\r\n"
    for cut in (1, 30, 56, 57):
        inside[f"Trojan line of no device, first {cut} bytes"] = line[:cut]
    inside["Trojan line of no device"] = line
    inside["Trojan line of no device and a CONNECT"] = line + trojan_request(CONNECT, BLOCKED_NAME, 80)
    inside["57 hex digits"] = password_hash("x") + b"0"
    # a subscription's path with a token of no device: nginx's 404, as any path nobody serves
    inside["a subscription of no device"] = (b"GET /s/" + rng.randbytes(32).hex()[:43].encode()
                                             + b"?format=sing-box HTTP/1.1\r\nHost: www.example.org\r\n\r\n")
    for name, data in inside.items():
        probes[f"TLS, then {name}"] = {"tls_sni": "www.example.org", "send": data.hex(), "bytes": True}
    probes["replayed member ClientHello"] = {"send": handshake[0].hex()}
    probes["replayed member first flight"] = {"send": b"".join(handshake[:3]).hex()}
    return probes


def _masked(reaction: dict) -> bytes:
    return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: -\r\n", bytes.fromhex(reaction["data"]))


def test_6_probes_get_the_same_reaction_from_the_hub_as_from_nginx(lab):
    """Both hubs against a reference nginx: with --web-backend/--raw-backend, and the built-in face."""
    probes = _probes(lab.member_handshake())
    targets = {"hub": (ADDR["hub"], 443), "face": (ADDR["hub"], FACE_PORT), "nginx": (ADDR["ref"], 443)}
    spec = {f"{name} @{who}": {"host": host, "port": port, "wait": PROBE_WAIT,
                               **{k: v for k, v in probe.items() if k != "bytes"}}
            for name, probe in probes.items() for who, (host, port) in targets.items()}
    started = time.monotonic()
    reactions = lab.probes("react", "border", spec, timeout=120)
    print(f"{len(spec)} probes in {time.monotonic() - started:.1f} s")
    differ = []
    for name, probe in probes.items():
        nginx = reactions[f"{name} @nginx"]
        line = [f"{name:<45} nginx {nginx['class']:<7}"]
        for who in ("hub", "face"):
            hub = reactions[f"{name} @{who}"]
            line.append(f"{who} {hub['class']:<7}")
            if hub["class"] != nginx["class"] and not _either_close(probe, hub, nginx):
                differ.append(f"{name} @{who}: {hub['class']} ({hub['end']}), "
                              f"nginx {nginx['class']} ({nginx['end']})")
            elif probe.get("bytes") and _masked(hub) != _masked(nginx):
                differ.append(f"{name} @{who}: answered {_masked(hub)[:120]!r}, "
                              f"nginx {_masked(nginx)[:120]!r}")
        print("  ".join(line))
    assert not differ, (f"a prober tells a hub from nginx on {len(differ)} of {2 * len(probes)} probes:\n"
                        + "\n".join(differ[:40]) + f"\n{lab.ladder_logs()}")
    for proc in (lab.hub_proc, lab.face_hub_proc):
        assert "Traceback" not in proc.output(10**7), \
            f"{proc.name} logged a traceback during the probes:\n{proc.output()}"


def test_7_both_nats_stay_closed_to_inbound_connections(lab):
    # Controls: the LAN services exist and answer inside their own home.
    control = {"phone": ("cnhome", ADDR["phone"]), "laptop": ("ushome", ADDR["laptop"])}
    for name, (router, address) in control.items():
        reached = lab.probes("connect", router, {"x": {"host": address, "port": LAN_SERVICE_PORT}})["x"]
        assert reached == "connected", \
            f"control: the LAN service on the {name} does not answer its own router"

    targets = {"phone": ADDR["phone"], "cnsharer": ADDR["cnsharer"], "cnhome WAN": ADDR["cnhome-wan"],
               "laptop": ADDR["laptop"], "ushome WAN": ADDR["ushome-wan"]}
    spec = {f"{name}:{port}": {"host": address, "port": port, "timeout": 2.0}
            for name, address in targets.items() for port in INBOUND_PORTS}
    opened = []
    for origin in ("border", "usweb", "hub"):
        for target, outcome in lab.probes("connect", origin, spec).items():
            if outcome == "connected":
                opened.append(f"{origin} -> {target}")
    assert not opened, "inbound connections got through a home NAT: " + ", ".join(opened)

    for router, rules in lab.nat_rules.items():
        now = lab.nat_table(router)
        assert now == rules and not re.search(r"DNAT|REDIRECT", now), (
            f"{router}'s NAT table changed during the run (port forwarding?):\n{now}")

    for name in ("phone", "laptop", "cnsharer"):
        member = lab.members[name]
        sockets = run_in(member.host, "ss", "-Hanptu").stdout.decode().splitlines()
        own = [line for line in sockets if f"pid={member.proc.pid}," in line]
        assert own, \
            f"ss shows no socket of {name}'s agent (pid {member.proc.pid}): the check would prove nothing"
        wide = [line for line in own if line.split()[0] == "udp" or
                (line.split()[1] == "LISTEN" and not line.split()[4].startswith("127.0.0.1:"))]
        assert not wide, f"{name}'s agent opened sockets beyond loopback and its link:\n" + "\n".join(wide)


def test_8_the_big_file_survives_delay_and_loss_at_the_border(lab):
    with lab.impaired_border(delay_ms=150, loss_percent=1, max_seconds=IMPAIRED_TIMEOUT + 120) as line:
        lab.members["phone"].wait_ready("US")
        digest, seconds, result = lab.fetch_big("phone", IMPAIRED_TIMEOUT)
        baseline = ""
        if result.returncode != 0:  # for the message: what plain TCP does on the same path
            plain = lab.curl("phone", "-o", "/dev/null", "-w", "%{speed_download}",
                             f"http://{ADDR['usweb-mirror']}/big.bin", timeout=30)
            baseline = (f"; plain TCP on the same path (no Ladder, an unblocked address) ran at "
                        f"{float(plain.stdout or 0) / 2**20:.2f} MiB/s")
    counts = re.search(r"forwarded (\d+) dropped (\d+)", line.output())
    assert result.returncode == 0, (
        f"the 64 MiB download through Ladder with 150 ms delay and 1% loss each way at the border "
        f"failed after {seconds:.1f} s: {_said(result)}{baseline}")
    assert digest == lab.blocked.big_sha, "the 64 MiB file arrived through a lossy border, but corrupted"
    assert counts and int(counts[2]) > 0, \
        f"the delay line lost no packet: the loss was not applied\n{line.output()}"
    print(f"64 MiB through Ladder, 150 ms + 1% loss each way, in {seconds:.1f} s ({64 / seconds:.2f} MiB/s); "
          f"delay line {counts[0]}")


def test_9_default_inside_rules_send_blocked_sites_abroad_and_mainland_sites_directly(lab):
    """Issue 6: the phone runs `--rules inside-cn --exit US`: one session, two ways."""
    def carried() -> int:  # bytes the laptop's US exit has carried today, published every 2 s
        return lab.members["laptop"].status()["share"]["today_bytes"]

    time.sleep(2.5)  # let earlier checks' traffic be published first
    before = carried()
    _ok(lab.curl("phone", *lab.proxy(f"http://{BLOCKED_NAME}/")), MARKER,
        "the phone fetching the blocked site through its rules (exit US)", lab)
    time.sleep(2.5)
    after_blocked = carried()
    assert after_blocked > before, "the blocked site did not go through the US exit"
    _ok(lab.curl("phone", *lab.proxy(f"http://{MAINLAND_NAME}/")), MAINLAND_MARKER,
        "the phone fetching the mainland-only site through its rules (direct)", lab)
    route = lab.ladder("route", "test", MAINLAND_NAME, "--rules", "inside-cn").stdout
    assert "directly" in route, route
    time.sleep(2.5)
    assert carried() == after_blocked, "the mainland-only site went through the US exit instead of directly"


def test_10_the_phone_opens_a_site_published_outside_by_name(lab):
    """Issue 7: a web server on the laptop's loopback, published, reached from inside across the border."""
    site = lab.root / "laptop-site"
    site.mkdir(exist_ok=True)
    (site / "index.html").write_text(f"<html>{MARKER}-published</html>\n")
    server = lab.spawn("laptop-site", "laptop", sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                       "--directory", str(site), "5000")
    try:
        wait_for(lambda: run_in("laptop", "ss", "-ltn").stdout.decode().count("127.0.0.1:5000") > 0, 10,
                 "the laptop's site to listen")
        lab.ladder_in("laptop", "publish", "127.0.0.1:5000", "--name", "photos", "--title", "Photos",
                      "--dir", str(lab.members["laptop"].folder))
        url = "http://photos.laptop.ladder/"
        wait_for(lambda: lab.curl("phone", *lab.proxy(url)).returncode == 0, 20, "the service to be listed")
        _ok(lab.curl("phone", *lab.proxy(url)), f"{MARKER}-published",
            "the phone opening the laptop's published site by name", lab)
    finally:
        server.stop()


def test_11_a_phone_with_only_a_stock_trojan_app_reaches_the_blocked_site(lab):
    """Issue 13: the handset runs Debian's trojan client and no agent; the hub acts as its agent.

    The handset's connection ends at the hub (inside), which carries it in a
    channel to the US exit over the exit's own link: what crosses the border
    is that link's TLS, and nothing is flagged.
    """
    added = lab.ladder("hub", "device", "add", "handset", "--owner", "phone", "--exit", "US",
                       "--dir", str(lab.hub_dir))
    link = urllib.parse.urlsplit(added.stdout.strip().splitlines()[-1])
    assert link.scheme == "trojan", f"`hub device add` did not end with a share link:\n{added.stdout}"
    config = lab.root / "handset-trojan.json"
    config.write_text(json.dumps({
        "run_type": "client", "local_addr": "127.0.0.1", "local_port": 1080,
        "remote_addr": link.hostname, "remote_port": link.port,
        "password": [urllib.parse.unquote(link.username)], "log_level": 1,
        "ssl": {"verify": False, "verify_hostname": False},  # the hub's self-signed default
    }))
    client = lab.spawn("handset-trojan", "handset", "trojan", "-c", str(config))
    try:
        wait_for(lambda: listening("handset", "127.0.0.1", 1080) or not client.alive(), 10,
                 "the trojan client to listen")
        assert client.alive(), f"Debian's trojan client died:\n{client.output()}"
        via = ["--socks5-hostname", "127.0.0.1:1080"]
        big = lab.root / "handset-small.bin"
        with lab.capture("cn") as capture:
            page = lab.curl("handset", *via, f"http://{BLOCKED_NAME}/")
            https = lab.curl("handset", *via, "--cacert", str(lab.ca.cert_path), "-o", str(big),
                             f"https://{BLOCKED_NAME}/small.bin")
        _ok(page, MARKER, f"the handset fetching http://{BLOCKED_NAME}/ through the hub's Trojan door", lab)
        digest = hashlib.sha256(big.read_bytes()).hexdigest() if big.exists() else "(no file)"
        assert https.returncode == 0 and digest == lab.blocked.small_sha, (
            f"the 1 MiB file over HTTPS through the Trojan door: {_said(https)}\n{lab.ladder_logs()}")
        _, _, problems = _border_problems(capture.path, opened=False)
        assert capture.crossed >= len(big.read_bytes()), (
            f"only {capture.crossed} bytes crossed the border: the handset's traffic did not go abroad")
        assert not problems, "the border saw more than HTTPS:\n" + "\n".join(problems[:20])
    finally:
        client.stop()


def test_12_hubs_peered_across_the_border_carry_the_phone_to_a_sharer_of_the_hub_outside(lab):
    """Issue 14: a second hub outside (a VPS abroad), peered with the hub inside; its sharer, behind the
    laptop's home NAT, is reached by a member of the inside hub over the hub-to-hub link, which the
    inside hub dials and which looks like any member's link at the border."""
    outside = (ADDR["usvps"], 443)
    us_dir, address = lab.root / "ushub", f"{outside[0]}:{outside[1]}"
    lab.ladder("hub", "init", "--dir", str(us_dir), "--name", "ushub", "--listen", address,
               "--public-address", address)
    ushub = lab.spawn("ushub", "usvps", sys.executable, "-m", "ladder", "hub", "run", "--dir", str(us_dir))
    wait_for(lambda: listening("usvps", *outside) or not ushub.alive(), 20, "the outside hub to listen")
    assert ushub.alive(), f"the outside hub died:\n{ushub.output()}"
    invite = lab.ladder("hub", "invite", "--dir", str(us_dir), "gbsharer").stdout.strip()
    sharer_dir = lab.root / "gbsharer"
    lab.ladder_in("laptop", "join", invite, "--dir", str(sharer_dir))
    lab.spawn("gbsharer", "laptop", sys.executable, "-m", "ladder", "up", "--dir", str(sharer_dir),
              "--share", "--country", "GB", "--allow-private")
    user = Member(lab, "phone-gb", "phone", ["--proxy", "127.0.0.1:1081", "--exit", "GB"])
    user.join()
    user.start()
    lab.procs.append(user.proc)
    link = lab.ladder("hub", "peer-invite", "cnhub", "--dir", str(us_dir)).stdout.strip().splitlines()[-1]
    with lab.capture("cn") as capture:
        lab.ladder_in("hub", "hub", "peer", "add", link, "--dir", str(lab.hub_dir))  # the inside hub dials
        user.wait_ready("GB", timeout=30)
        page = lab.curl("phone", "-x", "socks5h://127.0.0.1:1081", f"http://{BLOCKED_NAME}/")
    _ok(page, MARKER, "the phone's member of the inside hub fetching the blocked site through the sharer "
        "of the hub outside", lab)
    (exit_,) = [e for e in user.status()["exits"] if e["country"] == "GB"]
    assert (exit_["name"], exit_["hub"], exit_["hops"]) == ("gbsharer.ushub", "ushub", 1), exit_
    _, new, problems = _border_problems(capture.path, servers=(HUB, outside))
    assert any(c.server == outside for c in new), "the hub-to-hub link did not cross the captured border"
    assert not problems, "the border saw more than HTTPS:\n" + "\n".join(problems[:20])
