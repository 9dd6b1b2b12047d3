"""Tests of ladder.protocol.noise and the Noise vector runner in ladder.selftest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.protocol.noise import (
    MAX_MESSAGE_LEN,
    CipherState,
    HandshakeState,
    NoiseDecryptError,
    NoiseError,
    NoiseMessageError,
    NoiseNonceExhausted,
    NoiseUnsupported,
    NoiseUsageError,
    TransportCipher,
    generate_keypair,
    parse_protocol_name,
    public_key_of,
)
from ladder.selftest import main, run_noise_vectors

VECTORS = Path(__file__).resolve().parents[3] / "shared/vectors/noise/cacophony.json"
IK = "Noise_IK_25519_ChaChaPoly_BLAKE2s"
REQUIRED = re.compile(r"^Noise_(IK|NN|XX|NK)_25519_(ChaChaPoly|AESGCM)_(BLAKE2s|BLAKE2b|SHA256|SHA512)$")


# -- helpers ------------------------------------------------------------------


def ik_handshake(payload: bytes = b"", prologue: bytes = b"ladder"):
    """An IK handshake between fresh keys; returns both finished HandshakeStates."""
    client_s, _ = generate_keypair()
    exit_s, exit_pub = generate_keypair()
    client = HandshakeState.initialize(IK, True, prologue, s=client_s, rs=exit_pub)
    exit_ = HandshakeState.initialize(IK, False, prologue, s=exit_s)
    assert exit_.read_message(client.write_message(payload)) == payload
    client.read_message(exit_.write_message(b""))
    return client, exit_


def ik_transports() -> tuple[TransportCipher, TransportCipher]:
    client, exit_ = ik_handshake()
    return TransportCipher.from_handshake(client), TransportCipher.from_handshake(exit_)


def send_one(sender: TransportCipher, plaintext: bytes) -> bytes:
    [message] = sender.encrypt(plaintext)
    return message


# -- published vectors ----------------------------------------------------------


@pytest.fixture(scope="module")
def cacophony_report():
    assert VECTORS.exists(), f"cacophony vectors missing at {VECTORS}"
    return run_noise_vectors(VECTORS)


def test_cacophony_vectors_all_pass(cacophony_report):
    assert cacophony_report.failures == []
    assert cacophony_report.failed == 0
    assert cacophony_report.passed > 0


def test_cacophony_required_protocols_run_with_handshake_hash(cacophony_report):
    required = [r for r in cacophony_report.results if REQUIRED.match(r.protocol_name)]
    assert {r.protocol_name for r in required} == {
        f"Noise_{p}_25519_{c}_{h}"
        for p in ("IK", "NN", "XX", "NK")
        for c in ("ChaChaPoly", "AESGCM")  # AESGCM seals the channels (protocol/channel.py)
        for h in ("BLAKE2s", "BLAKE2b", "SHA256", "SHA512")
    }
    for result in required:
        assert result.status == "passed", result
        assert result.handshake_hash_checked, result


def test_cacophony_only_448_is_skipped(cacophony_report):
    skipped = {r.protocol_name.split("_")[2] for r in cacophony_report.results if r.status == "skipped"}
    assert skipped <= {"448"}


# -- protocol names ---------------------------------------------------------------


def test_parse_protocol_name():
    protocol = parse_protocol_name("Noise_XXpsk3_25519_AESGCM_SHA512")
    assert (protocol.dh, protocol.cipher, protocol.hash) == ("25519", "AESGCM", "SHA512")
    assert protocol.pattern.messages == (("e",), ("e", "ee", "s", "es"), ("s", "se", "psk"))
    assert parse_protocol_name("Noise_NNpsk0+psk2_25519_ChaChaPoly_BLAKE2s").pattern.messages == (
        ("psk", "e"),
        ("e", "ee", "psk"),
    )


@pytest.mark.parametrize(
    "name",
    [
        "Noise_IK_448_ChaChaPoly_BLAKE2s",
        "Noise_XXfallback_25519_ChaChaPoly_BLAKE2s",
        "Noise_ZZ_25519_ChaChaPoly_BLAKE2s",
        "Noise_IK_25519_Rot13_BLAKE2s",
        "Noise_IK_25519_ChaChaPoly_MD5",
        "Noise_NNpsk3_25519_ChaChaPoly_BLAKE2s",
        "Noise_IK_25519_ChaChaPoly",
        "NoiseIK",
    ],
)
def test_unsupported_protocol_names(name):
    with pytest.raises(NoiseUnsupported):
        parse_protocol_name(name)


# -- handshakes -------------------------------------------------------------------


def test_ik_round_trip_with_payload_then_both_directions():
    client, exit_ = ik_handshake(payload=b"CONNECT example.org:443")
    assert client.is_complete and exit_.is_complete
    assert client.handshake_hash == exit_.handshake_hash
    assert exit_.remote_static == client.local_static
    to_exit, to_client = TransportCipher.from_handshake(client), TransportCipher.from_handshake(exit_)
    for i in range(3):
        assert to_client.decrypt(send_one(to_exit, b"request %d" % i)) == b"request %d" % i
        assert to_exit.decrypt(send_one(to_client, b"response %d" % i)) == b"response %d" % i


def test_large_plaintext_is_split_into_noise_sized_messages():
    to_exit, to_client = ik_transports()
    plaintext = (bytes(range(251)) * 800)[:200_000]
    assert len(plaintext) == 200_000
    messages = to_exit.encrypt(plaintext)
    assert len(messages) == 4
    assert all(len(m) <= MAX_MESSAGE_LEN for m in messages)
    assert b"".join(to_client.decrypt(m) for m in messages) == plaintext


def test_empty_plaintext_is_one_message():
    to_exit, to_client = ik_transports()
    assert to_client.decrypt(send_one(to_exit, b"")) == b""


def test_oversized_message_is_rejected():
    _, to_client = ik_transports()
    with pytest.raises(NoiseMessageError):
        to_client.decrypt(bytes(MAX_MESSAGE_LEN + 1))


def test_out_of_turn_and_after_completion_are_usage_errors():
    s, pub = generate_keypair()
    client = HandshakeState.initialize(IK, True, b"", s=generate_keypair()[0], rs=pub)
    exit_ = HandshakeState.initialize(IK, False, b"", s=s)
    assert client.is_my_turn and not exit_.is_my_turn
    with pytest.raises(NoiseUsageError):
        exit_.write_message(b"")
    with pytest.raises(NoiseUsageError):
        client.split()
    exit_.read_message(client.write_message(b""))
    client.read_message(exit_.write_message(b""))
    with pytest.raises(NoiseUsageError):
        client.write_message(b"")


def test_missing_keys_are_usage_errors():
    with pytest.raises(NoiseUsageError):
        HandshakeState.initialize(IK, True, b"", s=generate_keypair()[0])  # no rs
    with pytest.raises(NoiseUsageError):
        HandshakeState.initialize(IK, False, b"")  # no s
    with pytest.raises(NoiseUsageError):
        HandshakeState.initialize("Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s", True, b"")  # no psk


def test_prologue_mismatch_fails_the_handshake():
    s, pub = generate_keypair()
    client = HandshakeState.initialize(IK, True, b"v1", s=generate_keypair()[0], rs=pub)
    exit_ = HandshakeState.initialize(IK, False, b"v2", s=s)
    with pytest.raises(NoiseDecryptError):
        exit_.read_message(client.write_message(b"hello"))


def test_wrong_responder_key_fails_the_handshake():
    _, wrong_pub = generate_keypair()
    s, _ = generate_keypair()
    client = HandshakeState.initialize(IK, True, b"", s=generate_keypair()[0], rs=wrong_pub)
    exit_ = HandshakeState.initialize(IK, False, b"", s=s)
    with pytest.raises(NoiseDecryptError):
        exit_.read_message(client.write_message(b"hello"))
    with pytest.raises(NoiseUsageError):  # a failed handshake stays failed
        exit_.write_message(b"")


def test_one_way_pattern_only_initiator_sends():
    s, pub = generate_keypair()
    sender = HandshakeState.initialize("Noise_N_25519_ChaChaPoly_SHA256", True, b"", rs=pub)
    receiver = HandshakeState.initialize("Noise_N_25519_ChaChaPoly_SHA256", False, b"", s=s)
    assert receiver.read_message(sender.write_message(b"sealed")) == b"sealed"
    out, into = TransportCipher.from_handshake(sender), TransportCipher.from_handshake(receiver)
    assert into.decrypt(send_one(out, b"more")) == b"more"
    with pytest.raises(NoiseUsageError):
        into.encrypt(b"reply")


def test_public_key_of_matches_generate_keypair():
    private, public = generate_keypair()
    assert public_key_of(private) == public and len(private) == len(public) == 32


# -- CipherState --------------------------------------------------------------------


def test_nonce_exhaustion():
    cipher = CipherState("ChaChaPoly", bytes(32))
    cipher.set_nonce(2**64 - 2)
    cipher.encrypt_with_ad(b"", b"last")  # n = 2^64-2 is the last usable nonce
    with pytest.raises(NoiseNonceExhausted):
        cipher.encrypt_with_ad(b"", b"one too many")
    receiver = CipherState("ChaChaPoly", bytes(32))
    receiver.set_nonce(2**64 - 1)
    with pytest.raises(NoiseNonceExhausted):
        receiver.decrypt_with_ad(b"", bytes(32))


def test_failed_decrypt_does_not_advance_nonce():
    sender, receiver = CipherState("AESGCM", bytes(range(32))), CipherState("AESGCM", bytes(range(32)))
    message = sender.encrypt_with_ad(b"ad", b"payload")
    with pytest.raises(NoiseDecryptError):
        receiver.decrypt_with_ad(b"other ad", message)
    assert receiver.nonce == 0
    assert receiver.decrypt_with_ad(b"ad", message) == b"payload"
    assert receiver.nonce == 1


def test_rekey_in_step():
    to_exit, to_client = ik_transports()
    to_exit.rekey_send()
    message = send_one(to_exit, b"after rekey")
    with pytest.raises(NoiseDecryptError):
        to_client.decrypt(message)
    to_client.rekey_receive()
    assert to_client.decrypt(message) == b"after rekey"


# -- properties: a bad transport message never yields plaintext --------------------------


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(max_size=300), data=st.data())
def test_bit_flip_anywhere_is_rejected(plaintext, data):
    to_exit, to_client = ik_transports()
    message = send_one(to_exit, plaintext)
    bit = data.draw(st.integers(0, len(message) * 8 - 1), label="bit")
    tampered = bytearray(message)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(NoiseDecryptError):
        to_client.decrypt(bytes(tampered))
    assert to_client.decrypt(message) == plaintext  # the genuine one still reads


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=200))
def test_replayed_message_is_rejected(plaintext):
    to_exit, to_client = ik_transports()
    message = send_one(to_exit, plaintext)
    assert to_client.decrypt(message) == plaintext
    with pytest.raises(NoiseDecryptError):
        to_client.decrypt(message)


@settings(max_examples=50, deadline=None)
@given(first=st.binary(max_size=200), second=st.binary(max_size=200))
def test_reordered_messages_are_rejected(first, second):
    to_exit, to_client = ik_transports()
    m1, m2 = send_one(to_exit, first), send_one(to_exit, second)
    with pytest.raises(NoiseDecryptError):
        to_client.decrypt(m2)
    assert to_client.decrypt(m1) == first
    assert to_client.decrypt(m2) == second


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=200), data=st.data())
def test_truncated_message_is_rejected(plaintext, data):
    to_exit, to_client = ik_transports()
    message = send_one(to_exit, plaintext)
    cut = data.draw(st.integers(0, len(message) - 1), label="keep")
    with pytest.raises(NoiseDecryptError):
        to_client.decrypt(message[:cut])


@settings(max_examples=50, deadline=None)
@given(junk=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_noise_errors(junk):
    _, to_client = ik_transports()
    with pytest.raises(NoiseError):
        to_client.decrypt(junk)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=100), data=st.data())
def test_tampered_handshake_message_1_is_rejected(payload, data):
    s, pub = generate_keypair()
    client = HandshakeState.initialize(IK, True, b"", s=generate_keypair()[0], rs=pub)
    exit_ = HandshakeState.initialize(IK, False, b"", s=s)
    message = client.write_message(payload)
    tampered = bytearray(message)
    bit = data.draw(st.integers(0, len(message) * 8 - 1), label="bit")
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(NoiseMessageError):
        exit_.read_message(bytes(tampered))
    assert not exit_.is_complete


@settings(max_examples=50, deadline=None)
@given(cut=st.integers(0, 200))
def test_truncated_handshake_message_1_is_rejected(cut):
    s, pub = generate_keypair()
    client = HandshakeState.initialize(IK, True, b"", s=generate_keypair()[0], rs=pub)
    exit_ = HandshakeState.initialize(IK, False, b"", s=s)
    message = client.write_message(b"x" * 100)
    with pytest.raises(NoiseMessageError):
        exit_.read_message(message[: min(cut, len(message) - 1)])


# -- the vector runner's command-line face ---------------------------------------------


def _write_vectors(tmp_path: Path, vectors) -> Path:
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps(vectors))
    return path


def _some_vectors() -> list[dict]:
    vectors = json.loads(VECTORS.read_text())["vectors"]
    wanted = [
        "Noise_IK_25519_ChaChaPoly_BLAKE2s",
        "Noise_XX_25519_AESGCM_SHA256",
        "Noise_IK_448_ChaChaPoly_BLAKE2s",
    ]
    return [next(v for v in vectors if v["protocol_name"] == name) for name in wanted]


def test_main_passes_on_good_vectors(tmp_path):
    lines: list[str] = []
    status = main(_write_vectors(tmp_path, {"vectors": _some_vectors()}), out=lines.append)
    assert lines == ["2 passed, 0 failed, 1 skipped"]
    assert status == 0


def test_main_reports_a_corrupted_vector(tmp_path):
    vectors = _some_vectors()
    corrupted = vectors[0]["messages"][3]
    first_byte = "00" if corrupted["ciphertext"][:2] != "00" else "11"
    corrupted["ciphertext"] = first_byte + corrupted["ciphertext"][2:]
    vectors[1]["handshake_hash"] = "00" * 32
    lines: list[str] = []
    status = main(_write_vectors(tmp_path, vectors), out=lines.append)  # top-level list form
    assert status == 1
    assert lines[-1] == "0 passed, 2 failed, 1 skipped"
    assert re.fullmatch(r"\d+ passed, \d+ failed, \d+ skipped", lines[-1])
    assert lines[0].startswith("Noise_IK_25519_ChaChaPoly_BLAKE2s #0: message 3")
    assert "ciphertext" in lines[0]
    assert lines[1].startswith("Noise_XX_25519_AESGCM_SHA256 #1: handshake hash")
    report = run_noise_vectors(tmp_path / "vectors.json")
    assert (report.passed, report.failed, report.skipped) == (0, 2, 1)


def test_main_with_nothing_supported_fails(tmp_path):
    lines: list[str] = []
    status = main(_write_vectors(tmp_path, {"vectors": _some_vectors()[2:]}), out=lines.append)
    assert (status, lines) == (1, ["0 passed, 0 failed, 1 skipped"])


def test_main_missing_file_and_bad_json(tmp_path):
    lines: list[str] = []
    assert main(tmp_path / "nope.json", out=lines.append) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(bad, out=lines.append) == 2
    assert len(lines) == 2
    assert "not found" in lines[0] and "not valid JSON" in lines[1]
