"""Peer hubs in hub.db: single-use invites, the dialled side's pin, removal, hubs sharing a store."""

import pytest

from ladder.store.hubdb import HubStore, InviteExpired, InviteUnknown, InviteUsed, StoreError

T0 = 1_700_000_000.0
HUB, OTHER, THIRD = "h" * 24, "o" * 24, "t" * 24
KEY, KEY2 = bytes([1]) * 32, bytes([2]) * 32


@pytest.fixture
def store(target):
    with HubStore(target) as s:
        yield s


def test_an_invite_is_redeemed_once_by_one_hub_and_then_known_by_its_key(store):
    token = store.create_peer_invite(HUB, "Hub-B", now=T0)
    [pending] = store.peers(HUB, now=T0)
    assert pending.name == "hub-b" and pending.pending and store.peer_by_key(HUB, KEY) is None
    peer = store.redeem_peer_invite(HUB, token, OTHER, KEY, now=T0 + 1)
    assert (peer.name, peer.hub_id, peer.pubkey, peer.address) == ("hub-b", OTHER, KEY, None)
    assert not peer.pending and store.peer_by_key(HUB, KEY) == peer
    assert store.redeem_peer_invite(HUB, token, OTHER, KEY, now=T0 + 2) == peer  # a lost answer, retried
    with pytest.raises(InviteUsed):
        store.redeem_peer_invite(HUB, token, THIRD, KEY2, now=T0 + 2)
    with pytest.raises(InviteUnknown):
        store.redeem_peer_invite(HUB, b"x" * 16, THIRD, KEY2, now=T0)
    with pytest.raises(InviteUnknown):  # another hub's invite, in a store they share
        store.redeem_peer_invite(THIRD, token, OTHER, KEY, now=T0)


def test_an_invite_expires_and_a_hub_cannot_peer_twice_or_with_itself(store):
    old = store.create_peer_invite(HUB, "late", expires_in=60, now=T0)
    assert store.peers(HUB, now=T0 + 61) == []
    with pytest.raises(InviteExpired):
        store.redeem_peer_invite(HUB, old, OTHER, KEY, now=T0 + 61)
    with pytest.raises(StoreError, match="itself"):
        store.redeem_peer_invite(HUB, store.create_peer_invite(HUB, "me", now=T0), HUB, KEY, now=T0)
    store.redeem_peer_invite(HUB, store.create_peer_invite(HUB, "b", now=T0), OTHER, KEY, now=T0)
    with pytest.raises(StoreError, match="already peers"):
        store.redeem_peer_invite(HUB, store.create_peer_invite(HUB, "b2", now=T0), OTHER, KEY, now=T0)
    with pytest.raises(StoreError, match="already has a peer"):
        store.create_peer_invite(HUB, "B", now=T0)


def test_the_dialled_side_keeps_address_and_pin_and_removal_frees_the_name(store):
    peer = store.add_peer(OTHER, "hub-a", HUB, KEY, "hub-a.example:443", "sha256:ab", now=T0)
    assert (peer.address, peer.fingerprint, peer.hub_id) == ("hub-a.example:443", "sha256:ab", HUB)
    with pytest.raises(StoreError, match="already peers"):
        store.add_peer(OTHER, "again", HUB, KEY, "x:1", "sha256:ab", now=T0)
    assert store.peers(HUB) == []  # rows are per local hub
    assert store.remove_peer(OTHER, "HUB-A").hub_id == HUB
    assert store.peers(OTHER) == [] and store.peer_by_key(OTHER, KEY) is None
    with pytest.raises(StoreError, match="no peer named"):
        store.remove_peer(OTHER, "hub-a")
    store.add_peer(OTHER, "hub-a", HUB, KEY, "hub-a.example:443", "sha256:ab", now=T0)
    assert store.remove_peer_by_hub(OTHER, HUB).name == "hub-a"
    assert store.remove_peer_by_hub(OTHER, HUB) is None
