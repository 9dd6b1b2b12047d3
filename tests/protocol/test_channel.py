"""Channels and signed records: feed bytes, check what comes out or what is refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.protocol.channel import OVERHEAD, SEAL_CHUNK, ChannelError, Initiator, Responder
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.messages import decode_target, encode_target
from ladder.protocol.noise import generate_keypair
from ladder.protocol.records import RecordError, sign_exit_record, verify_exit_record

USER, EXIT = "user-id", "exit-id"


def handshake(target=("example.com", 443)):
    user_private, _ = generate_keypair()
    exit_private, exit_public = generate_keypair()
    initiator = Initiator(user_private, exit_public, USER, EXIT)
    message1 = initiator.first_message(encode_target(*target))
    responder = Responder(exit_private, USER, EXIT)
    assert decode_target(responder.read_first(message1)) == target
    message2, exit_side = responder.answer()
    return initiator.finish(message2), exit_side, message1


def test_target_is_not_visible_in_the_first_message():
    _, _, message1 = handshake(("secret-site.example", 443))
    assert b"secret-site" not in message1


def test_sealed_bytes_round_trip_with_exact_overhead():
    user, exit_, _ = handshake()
    data = bytes(range(256)) * 1000  # 256,000 bytes: several Noise messages
    sealed = b"".join(user.seal(data))
    messages = -(-len(data) // SEAL_CHUNK)
    assert len(sealed) == len(data) + messages * OVERHEAD
    # Delivered in awkward pieces, the plaintext and the overhead add up exactly.
    out, overhead = [], 0
    for i in range(0, len(sealed), 7777):
        plain, extra = exit_.open(sealed[i : i + 7777])
        out += plain
        overhead += extra
    assert b"".join(out) == data and overhead + len(data) == len(sealed)
    reply = b"".join(exit_.seal(b"pong"))
    assert user.open(reply) == ([b"pong"], OVERHEAD)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 140_000), max_size=12))
def test_sealed_stream_opens_the_same_however_it_is_cut(cuts):
    user, exit_, _ = handshake()
    data = bytes(range(256)) * 500
    sealed = b"".join(user.seal(data) + user.seal(b"tail"))
    out, overhead, start = [], 0, 0
    for cut in sorted({c % (len(sealed) + 1) for c in cuts}) + [len(sealed)]:
        plain, extra = exit_.open(sealed[start:cut])
        out += plain
        overhead += extra
        start = cut
    assert b"".join(out) == data + b"tail" and overhead + len(data) + 4 == len(sealed)


def test_wrong_exit_key_or_wrong_route_breaks_the_handshake():
    user_private, _ = generate_keypair()
    _, exit_public = generate_keypair()
    impostor_private, _ = generate_keypair()
    message1 = Initiator(user_private, exit_public, USER, EXIT).first_message(b"x")
    with pytest.raises(ChannelError):
        Responder(impostor_private, USER, EXIT).read_first(message1)
    exit_private, exit_public = generate_keypair()
    message1 = Initiator(user_private, exit_public, USER, EXIT).first_message(b"x")
    with pytest.raises(ChannelError):  # the hub rerouted it as if from someone else
        Responder(exit_private, "other-user", EXIT).read_first(message1)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_tampered_replayed_reordered_or_truncated_messages_are_refused(data):
    user, exit_, _ = handshake()
    first, second = (b"".join(user.seal(m)) for m in (b"first message", b"second message"))
    attack = data.draw(st.sampled_from(["flip", "replay", "reorder", "truncate"]))
    if attack == "flip":
        index = data.draw(st.integers(2, len(first) - 1))  # any byte after the length
        stream = first[:index] + bytes([first[index] ^ data.draw(st.integers(1, 255))]) + first[index + 1 :]
    elif attack == "replay":
        stream = first + first
    elif attack == "reorder":
        stream = second + first
    else:  # the message cut short, its length prefix adjusted to match
        body = first[2 : len(first) - data.draw(st.integers(1, len(first) - 2))]
        stream = len(body).to_bytes(2, "big") + body
    received = []
    with pytest.raises(ChannelError):
        plain, _ = exit_.open(stream)
        received += plain
        raise AssertionError(f"{attack}: accepted {received}")
    assert all(p in (b"first message",) for p in received), f"{attack} produced garbage: {received}"


def test_exit_record_verifies_and_a_forged_one_does_not():
    key = Ed25519PrivateKey.generate()
    _, noise_public = generate_keypair()
    entry = {"id": member_id(public_bytes(key)), **sign_exit_record(key, "US", noise_public, 1700000000)}
    record = verify_exit_record(entry)
    assert (record.country, record.noise_key) == ("US", noise_public)

    body = json.loads(base64.b64decode(entry["record"]))
    body["noise_key"] = base64.b64encode(b"\x01" * 32).decode()
    swapped = {**entry, "record": base64.b64encode(json.dumps(body).encode()).decode()}
    with pytest.raises(RecordError, match="signature"):
        verify_exit_record(swapped)

    mallory = Ed25519PrivateKey.generate()  # signs a record claiming to be the exit
    claimed = {**sign_exit_record(mallory, "US", noise_public, 1), "id": entry["id"]}
    with pytest.raises(RecordError, match="another member"):
        verify_exit_record(claimed)
    with pytest.raises(RecordError, match="malformed"):
        verify_exit_record({"id": entry["id"], "record": "!!", "signature": "", "pubkey": ""})
