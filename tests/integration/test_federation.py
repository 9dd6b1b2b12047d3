"""Four real hubs in a square (A-B, B-C, A-D, D-C): a sharer and a publisher on C, a user on A.

Every hub is its own process on loopback, peered with the CLI as two
operators would (`hub peer-invite` on one, `hub peer add` on the other).
The user's bytes cross two hubs each way, end to end encrypted from A's
member to C's; when the hub carrying them is killed, that transfer is cut
and the next fetches go around it; a revocation at C empties A's directory;
a peer hub that forges records has them refused and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import MARKER, Network, curl, ladder, peer, peers, wait_for
from test_admin import AdminPage

from ladder.config import PEER_SCHEME, InviteLink, MemberConfig
from ladder.link.client import dial_peer
from ladder.protocol import control
from ladder.protocol.envelope import b64, unb64
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.records import sign_announcement, sign_exit_record


@pytest.fixture(scope="module")
def square(tmp_path_factory, origin):
    root = tmp_path_factory.mktemp("square")
    hubs = {name: Network(root / name, name=name) for name in "abcd"}
    try:
        for inviter, redeemer in ("ab", "bc", "ad", "dc"):
            peer(hubs[inviter], hubs[redeemer], redeemer)
        for net in hubs.values():
            wait_for(lambda net=net: len(peers(net)) == 2 and all(p["up"] for p in peers(net).values()), 20,
                     "the peer links to come up")
        c = hubs["c"]
        sharer = c.exit("sharer", "DE", "--allow-private")
        ryan = c.member("ryan")
        ladder("publish", "--dir", str(ryan.folder), f"127.0.0.1:{origin.port}", "--name", "www",
               "--title", "made at C")
        alice = hubs["a"].user("alice")
        alice.wait_exits(1, timeout=20)
        yield hubs, alice, sharer
    finally:
        for net in hubs.values():
            if net.hub.alive():
                net.close()


def test_the_exit_two_hubs_away_carries_64_mib_intact_and_status_says_where(square, origin):
    hubs, alice, _ = square
    (exit_,) = alice.status()["exits"]
    assert (exit_["name"], exit_["hub"], exit_["hops"]) == ("sharer.c", "c", 2)
    text = ladder("status", "--dir", str(alice.folder)).stdout
    assert "sharer.c" in text and "at c, 2 hops" in text, text
    got = curl("-x", alice.socks, origin.url("big.bin"), timeout=120)
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(got.stdout).hexdigest() == origin.big_sha
    # It crossed a peer link, framing and all (peers.json is written every second: wait for the count).
    wait_for(lambda: max(p["bytes"] for p in peers(hubs["a"]).values()) > 64 << 20, 5,
             "a's peers.json to count the 64 MiB")
    relayed = peers(hubs["a"])
    assert all(p["routes"] >= 1 for p in relayed.values())  # the other path is kept as an alternative


def test_a_service_at_another_hub_is_reached_by_member_and_hub_name(square):
    _, alice, _ = square
    wait_for(lambda: any(s["name"] == "www.ryan.c.ladder"
                         for s in alice.status().get("services", {}).get("listed", [])), 20,
             "alice to hear of ryan's service at c")
    got = curl("-x", alice.socks, "http://www.ryan.c.ladder/")
    assert got.returncode == 0 and MARKER.encode() in got.stdout, got.stderr
    listed = ladder("services", "--dir", str(alice.folder)).stdout
    assert "www.ryan.c.ladder" in listed and "at c, 2 hops" in listed, listed


def test_the_admin_page_shows_the_peer_hubs_their_routes_and_the_exit_beyond_them(square):
    hubs, _, _ = square
    page = AdminPage(hubs["a"])
    state = page.json("/api/state")
    assert sorted((p["name"], p["up"]) for p in state["peers"]) == [("b", True), ("d", True)]
    routes = {r["member"]: r for r in state["routes"]}
    assert routes.get("sharer.c", {}).get("via") in ("b", "d"), sorted(routes)
    assert routes["sharer.c"]["hops"] == 2
    beyond = {"name": "sharer.c", "hub": "c", "accepting": True}
    assert state["exits"] == [{"country": "DE", "exits": [beyond]}]
    assert state["health"]["links"]["peer"] == 2
    assert page.metrics()[("ladder_peers", (("state", "up"),))] == 2


def test_a_forging_peer_has_its_records_refused_and_counted(square):
    hubs, alice, _ = square
    a = hubs["a"]
    link = ladder("hub", "peer-invite", "mallory", "--dir", str(a.hub_dir)).stdout.strip().splitlines()[-1]
    sharer_key = MemberConfig.load_or_create_key(hubs["c"].root / "sharer")
    asyncio.run(_forge(InviteLink.parse(link, PEER_SCHEME), public_bytes(sharer_key)))
    wait_for(lambda: sum(peers(a).get("mallory", {}).get("refused", {}).values()) >= 2, 10,
             "a to count mallory's forged records")
    assert [e["name"] for e in alice.status()["exits"]] == ["sharer.c"]  # and C's record is still the one


async def _forge(invite: InviteLink, sharer_pubkey: bytes) -> None:
    """Peer with A as a hub of our own, then offer C's sharer with a Noise key of our choosing (a record
    the sharer never signed), and an announcement whose hub signature is broken."""
    key = Ed25519PrivateKey.generate()
    _, joined = await dial_peer(invite.address, invite.fingerprint, key, None, token=invite.token)
    assert isinstance(joined, control.PeerJoined), joined
    link, welcome = await dial_peer(invite.address, invite.fingerprint, key, None)
    assert isinstance(welcome, control.PeerWelcome), welcome
    sharer_id = member_id(sharer_pubkey)
    ours = sign_exit_record(Ed25519PrivateKey.generate(), "DE", bytes(range(32)), int(time.time()))
    fields = json.loads(unb64(ours["record"]))
    fields["id"] = sharer_id  # the sharer's name on our words
    forged = {"record": b64(json.dumps(fields).encode()), "signature": ours["signature"]}
    signed = sign_announcement(key, sharer_id, sharer_pubkey, "sharer", "evil", time.time_ns() // 1000,
                               int(time.time()) + 600, forged, [])
    broken = dict(signed, signature=b64(bytes(64)))
    me = member_id(public_bytes(key))
    link.send_control(control.Routes(tuple(control.RouteEntry(s["record"], s["signature"], s["pubkey"], (me,))
                                           for s in (signed, broken))))
    await asyncio.sleep(1.5)
    link.close()


def test_killing_the_hub_that_carries_a_transfer_cuts_it_and_new_fetches_go_around(square, origin):
    hubs, alice, _ = square
    a = hubs["a"]
    slow = curl_proc(alice, origin.url("big.bin"))
    time.sleep(3)
    via = max(peers(a).items(), key=lambda item: item[1]["bytes"])[0]
    carrier = hubs[via]
    carrier.hub.stop(signal.SIGKILL)
    out, _ = slow.communicate(timeout=60)
    assert slow.returncode != 0 and len(out) < 64 << 20  # cut, never passed off as whole
    start = time.monotonic()
    wait_for(lambda: curl("-x", alice.socks, origin.url("s1.bin"), timeout=5).returncode == 0, 10,
             "a fetch to go around the dead hub")
    assert time.monotonic() - start < 10
    got = curl("-x", alice.socks, origin.url("s2.bin"))
    assert hashlib.sha256(got.stdout).hexdigest() == origin.small["s2.bin"]
    wait_for(lambda: not peers(a)[via]["up"], 10, f"a to show {via} down")
    carrier.procs.remove(carrier.hub)  # killed on purpose: its log is not checked


def test_a_sharer_revoked_at_its_hub_leaves_every_directory_within_10_s(square):
    hubs, alice, sharer = square
    ladder("hub", "revoke", "sharer", "--dir", str(hubs["c"].hub_dir))
    start = time.monotonic()
    wait_for(lambda: not alice.status().get("exits"), 10, "the revoked sharer to leave a's directory")
    assert time.monotonic() - start < 10
    sharer.proc.stop()
    hubs["c"].procs.remove(sharer.proc)


def curl_proc(member, url):
    return subprocess.Popen(["curl", "-sS", "--limit-rate", "4M", "--max-time", "60", "-x", member.socks,
                             url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
