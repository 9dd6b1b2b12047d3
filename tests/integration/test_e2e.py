"""End-to-end encryption against a hostile hub: it sees no site and no content, and cannot impersonate
an exit."""

from __future__ import annotations

import json
import socket
import struct

from harness import HERE, MARKER, Network, curl, ladder, wait_for

from ladder.agent.pool import CHANNEL_IDLE


def test_hub_relays_neither_the_site_nor_the_content(tmp_path, origin):
    capture = tmp_path / "relayed.bin"
    net = Network(tmp_path,
                  hub_command=[str(HERE / "spy_hub.py"), "record", str(tmp_path / "hub"), str(capture)])
    try:
        net.exit("alpha", "AA", "--allow-private")
        user = net.user("user")
        user.wait_exits(1)
        host = "localhost"  # a name, so the exit resolves it: the name must cross the hub hidden
        result = curl("-x", user.http, origin.url("index.html", host=host) + "?q=" + MARKER[::-1])
        assert result.returncode == 0 and MARKER in result.stdout.decode(), result.stderr
        relayed = capture.read_bytes()
        assert len(relayed) > 2000, "the spy captured nothing: the test would prove nothing"
        for secret in (MARKER.encode(), MARKER[::-1].encode(), b"localhost", b"index.html", b"GET /"):
            assert secret not in relayed, f"the hub saw {secret!r} in the bytes it relayed"
        hub_log = net.hub.output()
        assert "localhost" not in hub_log and MARKER not in hub_log, "the hub's log names the target"
    finally:
        net.close()


def test_the_hub_sees_one_channel_however_many_connections_cross_it(network, origin):
    """Connections ride inside one channel per pair of members: the hub cannot count or time them."""
    network.exit("alpha", "AA", "--allow-private")
    user = network.user("user")
    user.wait_exits(1)
    held = []
    try:
        for _ in range(12):  # open connections, each through the exit to the origin, held idle
            s = socket.create_connection(user.proxy, timeout=30)
            held.append(s)
            s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", origin.port))
            reply = s.recv(12, socket.MSG_WAITALL)
            assert reply[:2] == b"\x05\x00", f"SOCKS5 refused: {reply!r}"
            s.sendall(b"GET /index.html HTTP/1.0\r\n")  # the request's first line only: it stays open

        def streams_at_exit():
            share = json.loads(
                ladder("share", "status", "--dir", str(network.root / "alpha"), "--json").stdout)
            return [u["streams"] for u in share["users"].values()]

        wait_for(lambda: streams_at_exit() == [12], 10, "the exit to count 12 streams from the user")
        # The hub counts one member on the exit (its directory tells every member); only the user
        # knows its 12:
        wait_for(lambda: [(e["users"], e["streams"]) for e in user.status()["exits"]] == [(1, 12)], 10,
                 "the hub to count 1 channel and the user its 12 streams")
        held[0].sendall(b"\r\n")
        assert MARKER.encode() in b"".join(iter(lambda: held[0].recv(65536), b""))
    finally:
        for s in held:
            s.close()
    # Once the user's connections are gone its channel is closed after a while: the count never goes stale.
    wait_for(lambda: [(e["users"], e["streams"]) for e in user.status()["exits"]] == [(0, 0)],
             CHANNEL_IDLE * 2, "the idle channel to close")


def test_user_refuses_an_exit_record_forged_by_the_hub(tmp_path, origin):
    net = Network(tmp_path, hub_command=[str(HERE / "spy_hub.py"), "forge", str(tmp_path / "hub")])
    try:
        net.exit("alpha", "AA", "--allow-private")
        user = net.user("user")
        result = curl("-i", "-x", user.http, origin.url("index.html"))
        text = result.stdout.decode()
        assert text.startswith("HTTP/1.1 503"), text[:300]
        assert "signature does not verify" in text and "hub may be lying about exit alpha" in text
        assert MARKER not in text
        assert "WARNING" in user.proc.output()
        status = user.status()
        assert status["exits"] == [] and "alpha" in status["refused_exits"]
    finally:
        net.close()


def test_selftest_runs_the_published_noise_vectors():
    vectors = HERE.parents[2] / "shared" / "vectors" / "noise" / "cacophony.json"
    result = ladder("selftest", "noise-vectors", str(vectors))
    last = result.stdout.strip().splitlines()[-1]
    passed, failed, skipped = (int(part.split()[0]) for part in last.split(", "))
    assert last == f"{passed} passed, {failed} failed, {skipped} skipped"
    assert failed == 0 and passed >= 400
    missing = ladder("selftest", "noise-vectors", str(HERE / "no-such-file.json"), check=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr + missing.stdout
