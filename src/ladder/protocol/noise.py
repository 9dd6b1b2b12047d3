"""Noise Protocol Framework (revision 34) handshakes and transport ciphers, sans-IO.

Specification: https://noiseprotocol.org/noise.html (revision 34, 2018-07-11).
Section numbers in the comments refer to that text.

Theory of operation
-------------------
Noise builds a secure channel out of three objects, nested like the
specification's section 5:

* ``CipherState`` (5.1) is one key and one counter. It encrypts or decrypts
  one message at a time with an AEAD and never reuses a nonce.
* ``SymmetricState`` (5.2) adds the chaining key ``ck`` and the handshake
  hash ``h``. Every byte sent or received during the handshake is mixed into
  ``h``, and every Diffie-Hellman result into ``ck``; encryption during the
  handshake uses ``h`` as associated data, so a change to any earlier byte
  makes every later message fail to authenticate.
* ``HandshakeState`` (5.3) walks a *handshake pattern* (7): a list of
  messages, each a list of tokens ("e", "s", "ee", "es", "se", "ss",
  "psk"). ``write_message`` and ``read_message`` process one message each.
  After the last message, ``split`` yields two CipherStates: the first
  encrypts initiator-to-responder, the second responder-to-initiator.

``TransportCipher`` wraps that pair for one side of the finished session and
keeps every message within Noise's 65535-byte limit (3) by cutting long
plaintexts into several messages.

This module does no I/O. It turns bytes into bytes; framing the messages on
a wire (Noise messages carry no length) is the caller's business. The only
randomness it draws is the ephemeral key generated for an "e" token, and
tests can inject that key.

Supported: DH 25519; ciphers ChaChaPoly and AESGCM; hashes BLAKE2s, BLAKE2b,
SHA256 and SHA512; the one-way (7.4), fundamental (7.5) and deferred (7.6)
patterns; the ``pskN`` modifiers (9). Not supported: DH 448, the
``fallback`` modifier (10.2) and other compound protocols.

Errors: every exception raised on purpose is a ``NoiseError``. A peer's bad
message raises ``NoiseMessageError`` (``NoiseDecryptError`` when it fails to
authenticate); a mistake by the caller raises ``NoiseUsageError``. A
HandshakeState that raised while processing a message is dead: the
specification treats any such error as the end of the handshake.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ladder.errors import LadderError

__all__ = [
    "MAX_MESSAGE_LEN",
    "TAG_LEN",
    "DH_LEN",
    "PSK_LEN",
    "NoiseError",
    "NoiseUnsupported",
    "NoiseUsageError",
    "NoiseNonceExhausted",
    "NoiseMessageError",
    "NoiseDecryptError",
    "HandshakePattern",
    "NoiseProtocol",
    "PATTERNS",
    "parse_protocol_name",
    "generate_keypair",
    "public_key_of",
    "CipherState",
    "SymmetricState",
    "HandshakeState",
    "TransportCipher",
]

MAX_MESSAGE_LEN = 65535  # 3: "All Noise messages are less than or equal to 65535 bytes"
TAG_LEN = 16  # 4.2: AEAD authentication tag
DH_LEN = 32  # 12.1: 25519 public keys and DH outputs
PSK_LEN = 32  # 9.1: pre-shared keys are 32 bytes
MAX_NONCE = 2**64 - 1  # 5.1: reserved, never used to encrypt a message


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class NoiseError(LadderError):
    """Base class of every error this module raises on purpose."""


class NoiseUnsupported(NoiseError):
    """The protocol name is malformed or names something not implemented."""


class NoiseUsageError(NoiseError):
    """This side misused the API: out of turn, missing key, dead handshake."""


class NoiseNonceExhausted(NoiseError):
    """The CipherState's nonce reached 2^64-1 (5.1); the session must end."""


class NoiseMessageError(NoiseError):
    """The peer's message is malformed: wrong length or unusable public key."""


class NoiseDecryptError(NoiseMessageError):
    """A message failed to authenticate; no plaintext is returned."""


# --------------------------------------------------------------------------
# Crypto functions (4, 12)
# --------------------------------------------------------------------------


def generate_keypair() -> tuple[bytes, bytes]:
    """GENERATE_KEYPAIR() for 25519 (4.1): (private, public), 32 raw bytes each."""
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), private.public_key().public_bytes_raw()


def public_key_of(private_key: bytes) -> bytes:
    """The 25519 public key that belongs to a 32-byte private key."""
    return _private_key(private_key).public_key().public_bytes_raw()


def _private_key(raw: bytes) -> X25519PrivateKey:
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != DH_LEN:
        raise NoiseUsageError(f"a 25519 private key is {DH_LEN} raw bytes")
    return _loaded_private_key(bytes(raw))


@functools.lru_cache(maxsize=64)
def _loaded_private_key(raw: bytes) -> X25519PrivateKey:
    # A static key is used for every handshake: load it once, not per channel.
    return X25519PrivateKey.from_private_bytes(raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    """DH(key_pair, public_key) for 25519 (4.1, 12.1)."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:
        # The all-zero output of a low-order point; 12.1 allows rejecting it.
        raise NoiseMessageError(f"unusable 25519 public key: {exc}") from None


def _chachapoly_nonce(n: int) -> bytes:
    # 12.3: 32 bits of zeros followed by the little-endian 64-bit counter.
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _aesgcm_nonce(n: int) -> bytes:
    # 12.4: 32 bits of zeros followed by the big-endian 64-bit counter.
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "big")


# name -> (AEAD class, nonce encoder)
_CIPHERS: dict[str, tuple[type, Callable[[int], bytes]]] = {
    "ChaChaPoly": (ChaCha20Poly1305, _chachapoly_nonce),
    "AESGCM": (AESGCM, _aesgcm_nonce),
}

# name -> (hashlib constructor, HASHLEN); BLOCKLEN is known to hmac (4.3).
_HashConstructor = Callable[..., Any]  # hashlib.sha256 and kin (the blake2 ones are classes)
_HASHES: dict[str, tuple[_HashConstructor, int]] = {
    "SHA256": (hashlib.sha256, 32),
    "SHA512": (hashlib.sha512, 64),
    "BLAKE2s": (hashlib.blake2s, 32),
    "BLAKE2b": (hashlib.blake2b, 64),
}

_DHS = ("25519",)


def _hkdf(hash_cons: _HashConstructor, chaining_key: bytes, ikm: bytes, outputs: int) -> list[bytes]:
    """HKDF(chaining_key, input_key_material, num_outputs) exactly as in 4.3."""
    temp_key = hmac.new(chaining_key, ikm, hash_cons).digest()
    result: list[bytes] = []
    previous = b""
    for i in range(1, outputs + 1):
        previous = hmac.new(temp_key, previous + bytes([i]), hash_cons).digest()
        result.append(previous)
    return result


# --------------------------------------------------------------------------
# Handshake patterns (7) and protocol names (8)
# --------------------------------------------------------------------------

# Written as in the specification: "->" is initiator to responder, "<-" the
# reverse; lines above "..." are pre-messages (keys known in advance).
_PATTERN_TEXT: dict[str, str] = {
    # 7.4 One-way patterns: a single message, initiator to responder.
    "N": "<- s\n...\n-> e, es",
    "K": "-> s\n<- s\n...\n-> e, es, ss",
    "X": "<- s\n...\n-> e, es, s, ss",
    # 7.5 Interactive patterns (fundamental).
    "NN": "-> e\n<- e, ee",
    "NK": "<- s\n...\n-> e, es\n<- e, ee",
    "NX": "-> e\n<- e, ee, s, es",
    "KN": "-> s\n...\n-> e\n<- e, ee, se",
    "KK": "-> s\n<- s\n...\n-> e, es, ss\n<- e, ee, se",
    "KX": "-> s\n...\n-> e\n<- e, ee, se, s, es",
    "XN": "-> e\n<- e, ee\n-> s, se",
    "XK": "<- s\n...\n-> e, es\n<- e, ee\n-> s, se",
    "XX": "-> e\n<- e, ee, s, es\n-> s, se",
    "IN": "-> e, s\n<- e, ee, se",
    "IK": "<- s\n...\n-> e, es, s, ss\n<- e, ee, se",
    "IX": "-> e, s\n<- e, ee, se, s, es",
    # 7.6 Interactive patterns (deferred): a "1" marks the party whose
    # authentication DH is deferred to its next message.
    "NK1": "<- s\n...\n-> e\n<- e, ee, es",
    "NX1": "-> e\n<- e, ee, s\n-> es",
    "X1N": "-> e\n<- e, ee\n-> s\n<- se",
    "X1K": "<- s\n...\n-> e, es\n<- e, ee\n-> s\n<- se",
    "XK1": "<- s\n...\n-> e\n<- e, ee, es\n-> s, se",
    "X1K1": "<- s\n...\n-> e\n<- e, ee, es\n-> s\n<- se",
    "X1X": "-> e\n<- e, ee, s, es\n-> s\n<- se",
    "XX1": "-> e\n<- e, ee, s\n-> es, s, se",
    "X1X1": "-> e\n<- e, ee, s\n-> es, s\n<- se",
    "K1N": "-> s\n...\n-> e\n<- e, ee\n-> se",
    "K1K": "-> s\n<- s\n...\n-> e, es\n<- e, ee\n-> se",
    "KK1": "-> s\n<- s\n...\n-> e\n<- e, ee, se, es",
    "K1K1": "-> s\n<- s\n...\n-> e\n<- e, ee, es\n-> se",
    "K1X": "-> s\n...\n-> e\n<- e, ee, s, es\n-> se",
    "KX1": "-> s\n...\n-> e\n<- e, ee, se, s\n-> es",
    "K1X1": "-> s\n...\n-> e\n<- e, ee, s\n-> se, es",
    "I1N": "-> e, s\n<- e, ee\n-> se",
    "I1K": "<- s\n...\n-> e, es, s\n<- e, ee\n-> se",
    "IK1": "<- s\n...\n-> e, s\n<- e, ee, se, es",
    "I1K1": "<- s\n...\n-> e, s\n<- e, ee, es\n-> se",
    "I1X": "-> e, s\n<- e, ee, s, es\n-> se",
    "IX1": "-> e, s\n<- e, ee, se, s\n-> es",
    "I1X1": "-> e, s\n<- e, ee, s\n-> se, es",
}

_ONE_WAY = frozenset({"N", "K", "X"})
_TOKENS = frozenset({"e", "s", "ee", "es", "se", "ss", "psk"})


@dataclass(frozen=True)
class HandshakePattern:
    """A handshake pattern (7.1), with any psk modifiers (9.2) applied.

    ``messages[i]`` is sent by the initiator when ``i`` is even and by the
    responder when it is odd; pre-messages are the keys each side knows
    before the first message.
    """

    name: str
    initiator_pre: tuple[str, ...]
    responder_pre: tuple[str, ...]
    messages: tuple[tuple[str, ...], ...]
    one_way: bool

    @property
    def psk_count(self) -> int:
        return sum(m.count("psk") for m in self.messages)

    @property
    def is_psk(self) -> bool:
        return self.psk_count > 0

    def sender_of(self, index: int) -> str:
        """'initiator' or 'responder': who sends message ``index``.

        Past the handshake this continues the alternation, except that in a
        one-way pattern only the initiator ever sends (7.4).
        """
        if self.one_way or index % 2 == 0:
            return "initiator"
        return "responder"


def _parse_pattern_text(name: str, text: str) -> HandshakePattern:
    pre_text, _, msg_text = text.rpartition("...")
    pre: dict[str, tuple[str, ...]] = {"->": (), "<-": ()}
    for line in pre_text.strip().splitlines():
        arrow, _, tokens = line.strip().partition(" ")
        pre[arrow] = tuple(t.strip() for t in tokens.split(","))
    messages = []
    for i, line in enumerate(msg_text.strip().splitlines()):
        arrow, _, tokens = line.strip().partition(" ")
        assert arrow == ("->" if i % 2 == 0 else "<-"), f"{name}: arrows must alternate"
        messages.append(tuple(t.strip() for t in tokens.split(",")))
    return HandshakePattern(name, pre["->"], pre["<-"], tuple(messages), name in _ONE_WAY)


PATTERNS: dict[str, HandshakePattern] = {
    name: _parse_pattern_text(name, text) for name, text in _PATTERN_TEXT.items()
}


def _apply_psk_modifiers(base: HandshakePattern, modifiers: Sequence[str], name: str) -> HandshakePattern:
    """9.2: "psk0" puts a psk token first in message 1, "pskN" last in message N."""
    messages = [list(m) for m in base.messages]
    for modifier in modifiers:
        number = int(modifier[3:])
        if number == 0:
            messages[0].insert(0, "psk")
        elif number <= len(messages):
            messages[number - 1].append("psk")
        else:
            raise NoiseUnsupported(
                f"modifier {modifier!r}: pattern {base.name} has only {len(messages)} messages"
            )
    return HandshakePattern(
        name, base.initiator_pre, base.responder_pre, tuple(tuple(m) for m in messages), base.one_way
    )


@dataclass(frozen=True)
class NoiseProtocol:
    """A parsed protocol name (8): Noise_<pattern>_<DH>_<cipher>_<hash>."""

    name: str
    pattern: HandshakePattern
    dh: str
    cipher: str
    hash: str


_PATTERN_NAME = re.compile(r"^([NKXI]1?[NKX]1?|[NKX])((?:psk\d+|fallback)(?:\+(?:psk\d+|fallback))*)?$")


def parse_protocol_name(name: str) -> NoiseProtocol:
    """Split a protocol name (8) into its parts, or raise NoiseUnsupported.

    >>> parse_protocol_name("Noise_IK_25519_ChaChaPoly_BLAKE2s").pattern.name
    'IK'
    """
    if not isinstance(name, str):
        raise NoiseUnsupported(f"protocol name must be a str, not {type(name).__name__}")
    parts = name.split("_")
    if len(parts) != 5 or parts[0] != "Noise":
        raise NoiseUnsupported(
            f"{name!r} is not of the form Noise_<pattern>_<DH>_<cipher>_<hash> (section 8)"
        )
    _, pattern_name, dh, cipher, hash_name = parts
    match = _PATTERN_NAME.match(pattern_name)
    if match is None or match.group(1) not in PATTERNS:
        raise NoiseUnsupported(f"{name!r}: unknown handshake pattern {pattern_name!r}")
    base, modifier_text = match.group(1), match.group(2)
    modifiers = modifier_text.split("+") if modifier_text else []
    if "fallback" in modifiers:
        raise NoiseUnsupported(f"{name!r}: the fallback modifier is not supported")
    if len(set(modifiers)) != len(modifiers):
        raise NoiseUnsupported(f"{name!r}: repeated modifier")
    if dh not in _DHS:
        raise NoiseUnsupported(f"{name!r}: DH function {dh!r} is not supported (only 25519)")
    if cipher not in _CIPHERS:
        raise NoiseUnsupported(
            f"{name!r}: cipher {cipher!r} is not supported (only {', '.join(_CIPHERS)})"
        )
    if hash_name not in _HASHES:
        raise NoiseUnsupported(
            f"{name!r}: hash {hash_name!r} is not supported (only {', '.join(_HASHES)})"
        )
    pattern = PATTERNS[base]
    if modifiers:
        pattern = _apply_psk_modifiers(pattern, modifiers, pattern_name)
    return NoiseProtocol(name, pattern, dh, cipher, hash_name)


# --------------------------------------------------------------------------
# 5.1 CipherState
# --------------------------------------------------------------------------


class CipherState:
    """One key ``k`` and one nonce counter ``n`` (5.1).

    Without a key, encryption and decryption pass data through unchanged, as
    the specification requires during the first messages of a handshake.
    """

    def __init__(self, cipher: str = "ChaChaPoly", key: bytes | None = None) -> None:
        if cipher not in _CIPHERS:
            raise NoiseUnsupported(f"cipher {cipher!r} is not supported")
        self.cipher = cipher
        self._aead_class, self._nonce_bytes = _CIPHERS[cipher]
        self._k: bytes | None = None
        self._aead = None
        self._n = 0
        self.initialize_key(key)

    def initialize_key(self, key: bytes | None) -> None:
        """InitializeKey(key): set k (None for empty) and reset n to 0."""
        if key is not None and len(key) != 32:
            raise NoiseUsageError("a cipher key is 32 bytes")
        self._k = None if key is None else bytes(key)
        self._aead = None if key is None else self._aead_class(self._k)
        self._n = 0

    def has_key(self) -> bool:
        return self._k is not None

    @property
    def nonce(self) -> int:
        """The next nonce ``n`` this CipherState will use."""
        return self._n

    def set_nonce(self, nonce: int) -> None:
        """SetNonce(nonce), for out-of-order transports (5.1, 11.4)."""
        if not 0 <= nonce <= MAX_NONCE:
            raise NoiseUsageError("nonce must be in 0 .. 2^64-1")
        self._n = nonce

    def _check_nonce(self) -> None:
        # 5.1: n = 2^64-1 is reserved; reaching it ends this CipherState.
        if self._n >= MAX_NONCE:
            raise NoiseNonceExhausted("nonce reached 2^64-1; this session must be rekeyed or ended")

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes | memoryview) -> bytes:
        """EncryptWithAd(ad, plaintext): ciphertext and tag; n advances."""
        if self._aead is None:
            return bytes(plaintext)
        self._check_nonce()
        # The AEAD reads any buffer: no copy of a view (bulk data passes here).
        ciphertext = self._aead.encrypt(self._nonce_bytes(self._n), plaintext, ad)
        self._n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        """DecryptWithAd(ad, ciphertext): the plaintext, or NoiseDecryptError.

        On failure n is left where it was (5.1), so a forged message cannot
        knock the genuine one out of sequence.
        """
        if self._aead is None:
            return bytes(ciphertext)
        self._check_nonce()
        if len(ciphertext) < TAG_LEN:
            raise NoiseDecryptError(f"message of {len(ciphertext)} bytes is shorter than the tag")
        try:
            plaintext = self._aead.decrypt(self._nonce_bytes(self._n), ciphertext, ad)
        except InvalidTag:
            raise NoiseDecryptError(f"message {self._n} failed to authenticate") from None
        self._n += 1
        return plaintext

    def rekey(self) -> None:
        """Rekey() (4.2, 11.3): k = first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros)."""
        if self._aead is None:
            raise NoiseUsageError("cannot rekey a CipherState without a key")
        new_key = self._aead.encrypt(self._nonce_bytes(MAX_NONCE), bytes(32), b"")[:32]
        self._k = new_key
        self._aead = self._aead_class(new_key)


# --------------------------------------------------------------------------
# 5.2 SymmetricState
# --------------------------------------------------------------------------


class SymmetricState:
    """The chaining key ``ck``, handshake hash ``h`` and a CipherState (5.2)."""

    def __init__(self, protocol: NoiseProtocol | str) -> None:
        """InitializeSymmetric(protocol_name)."""
        if isinstance(protocol, str):
            protocol = parse_protocol_name(protocol)
        self.protocol = protocol
        self._hash, self.hash_len = _HASHES[protocol.hash]
        name = protocol.name.encode("ascii")
        if len(name) <= self.hash_len:
            self._h = name.ljust(self.hash_len, b"\x00")
        else:
            self._h = self._hash(name).digest()
        self._ck = self._h
        self.cipher_state = CipherState(protocol.cipher)

    def _cipher_key(self, temp_k: bytes) -> bytes:
        # 5.2: with a 64-byte HASHLEN, temp_k is truncated to 32 bytes.
        return temp_k[:32]

    def mix_key(self, input_key_material: bytes) -> None:
        """MixKey: ck, temp_k = HKDF(ck, ikm, 2); InitializeKey(temp_k)."""
        self._ck, temp_k = _hkdf(self._hash, self._ck, input_key_material, 2)
        self.cipher_state.initialize_key(self._cipher_key(temp_k))

    def mix_hash(self, data: bytes) -> None:
        """MixHash: h = HASH(h || data)."""
        self._h = self._hash(self._h + data).digest()

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        """MixKeyAndHash, used for "psk" tokens (9.2)."""
        self._ck, temp_h, temp_k = _hkdf(self._hash, self._ck, input_key_material, 3)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(self._cipher_key(temp_k))

    @property
    def handshake_hash(self) -> bytes:
        """GetHandshakeHash(): h."""
        return self._h

    def has_key(self) -> bool:
        return self.cipher_state.has_key()

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """EncryptAndHash: encrypt with h as associated data, then mix in the result."""
        ciphertext = self.cipher_state.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """DecryptAndHash: decrypt with h as associated data, then mix in the ciphertext."""
        plaintext = self.cipher_state.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Split(): (initiator-to-responder, responder-to-initiator) CipherStates."""
        temp_k1, temp_k2 = _hkdf(self._hash, self._ck, b"", 2)
        cipher = self.protocol.cipher
        return (
            CipherState(cipher, self._cipher_key(temp_k1)),
            CipherState(cipher, self._cipher_key(temp_k2)),
        )


# --------------------------------------------------------------------------
# 5.3 HandshakeState
# --------------------------------------------------------------------------


class _KeyPair:
    __slots__ = ("private", "public")

    def __init__(self, private_raw: bytes) -> None:
        self.private = _private_key(private_raw)
        self.public = self.private.public_key().public_bytes_raw()


def _public_key(raw: bytes | None, what: str) -> bytes | None:
    if raw is None:
        return None
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != DH_LEN:
        raise NoiseUsageError(f"{what} must be {DH_LEN} raw bytes")
    return bytes(raw)


class HandshakeState:
    """One side of a Noise handshake (5.3).

    Create it with ``HandshakeState.initialize(...)``; then call
    ``write_message`` and ``read_message`` in the order the pattern gives
    (``is_my_turn`` says which). When ``is_complete`` is true, ``split()``
    returns the transport CipherStates.
    """

    def __init__(
        self,
        protocol_name: str | NoiseProtocol,
        initiator: bool,
        prologue: bytes = b"",
        *,
        s: bytes | None = None,
        e: bytes | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: Iterable[bytes] = (),
    ) -> None:
        if isinstance(protocol_name, NoiseProtocol):
            protocol = protocol_name
        else:
            protocol = parse_protocol_name(protocol_name)
        self.protocol = protocol
        self.pattern = protocol.pattern
        self.initiator = bool(initiator)
        self._s = None if s is None else _KeyPair(s)
        # A preset ephemeral is used by the first "e" token instead of a fresh
        # one; only test vectors should do this (an ephemeral must never repeat).
        self._e = None if e is None else _KeyPair(e)
        self._rs = _public_key(rs, "rs")
        self._re = _public_key(re, "re")
        self._psks = [bytes(p) for p in psks]
        if any(len(p) != PSK_LEN for p in self._psks):
            raise NoiseUsageError(f"each psk must be {PSK_LEN} bytes (9.1)")
        if len(self._psks) != self.pattern.psk_count:
            raise NoiseUsageError(
                f"{self.pattern.name} needs {self.pattern.psk_count} psk(s), got {len(self._psks)}"
            )
        self._check_keys()

        self._symmetric = SymmetricState(protocol)
        self._message_index = 0
        self._transport: tuple[CipherState, CipherState] | None = None
        self._failed = False

        self._symmetric.mix_hash(bytes(prologue))  # 6: the prologue
        # 5.3: hash the pre-message public keys, initiator's first.
        pre_messages = ((True, self.pattern.initiator_pre), (False, self.pattern.responder_pre))
        for from_initiator, tokens in pre_messages:
            ours = from_initiator == self.initiator
            for token in tokens:
                key = self._ours(token).public if ours else self._theirs(token)
                self._symmetric.mix_hash(key)
                if token == "e" and self.pattern.is_psk:
                    self._symmetric.mix_key(key)  # 9.2

    @classmethod
    def initialize(
        cls,
        protocol_name: str | NoiseProtocol,
        initiator: bool,
        prologue: bytes = b"",
        *,
        s: bytes | None = None,
        e: bytes | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: Iterable[bytes] = (),
    ) -> HandshakeState:
        """Initialize() (5.3). Private keys and public keys are 32 raw bytes each.

        ``s``: our static private key; ``rs``: the peer's static public key
        (needed when the pattern has the peer send it as a pre-message, as
        the responder's key in IK and NK); ``e``/``re``: preset ephemeral
        keys, for test vectors only; ``psks``: one 32-byte key per psk token.
        """
        return cls(protocol_name, initiator, prologue, s=s, e=e, rs=rs, re=re, psks=psks)

    def _check_keys(self) -> None:
        ours_pre = self.pattern.initiator_pre if self.initiator else self.pattern.responder_pre
        theirs_pre = self.pattern.responder_pre if self.initiator else self.pattern.initiator_pre
        first_ours = 0 if self.initiator else 1
        our_tokens = {t for m in self.pattern.messages[first_ours::2] for t in m}
        if self._s is None and ("s" in ours_pre or "s" in our_tokens):
            raise NoiseUsageError(f"{self.pattern.name} needs our static key s")
        if self._e is None and "e" in ours_pre:
            raise NoiseUsageError(f"{self.pattern.name} needs our pre-message ephemeral e")
        if self._rs is None and "s" in theirs_pre:
            raise NoiseUsageError(f"{self.pattern.name} needs the peer's static public key rs")
        if self._re is None and "e" in theirs_pre:
            raise NoiseUsageError(f"{self.pattern.name} needs the peer's ephemeral public key re")

    def _ours(self, kind: str) -> _KeyPair:
        """Our key pair "e" or "s", where the pattern uses it.

        _check_keys and the order of tokens (7.3: a key is sent or pre-known
        before a DH uses it) make sure it is there.
        """
        pair = self._e if kind == "e" else self._s
        assert pair is not None, f"{self.pattern.name}: our {kind} used before it exists"
        return pair

    def _theirs(self, kind: str) -> bytes:
        """The peer's public key "e" or "s" where the pattern uses it (as `_ours`)."""
        key = self._re if kind == "e" else self._rs
        assert key is not None, f"{self.pattern.name}: the peer's {kind} used before it is known"
        return key

    # -- state ------------------------------------------------------------

    @property
    def handshake_hash(self) -> bytes:
        """h: after the handshake, a unique id for the session (11.2)."""
        return self._symmetric.handshake_hash

    @property
    def is_complete(self) -> bool:
        return self._transport is not None

    @property
    def is_my_turn(self) -> bool:
        """True when the next call should be write_message, False for read_message."""
        if self.is_complete:
            return False
        return (self._message_index % 2 == 0) == self.initiator

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, once known (rs)."""
        return self._rs

    @property
    def local_static(self) -> bytes | None:
        """Our static public key, if we have one."""
        return None if self._s is None else self._s.public

    def _begin(self, writing: bool) -> tuple[str, ...]:
        if self._failed:
            raise NoiseUsageError("this handshake already failed; start a new one")
        if self.is_complete:
            raise NoiseUsageError("the handshake is complete; use split()")
        if self.is_my_turn != writing:
            raise NoiseUsageError(
                f"message {self._message_index} is the peer's to {'write' if writing else 'read'}"
            )
        return self.pattern.messages[self._message_index]

    def _message_length(self, tokens: Sequence[str], payload_len: int) -> int:
        """Length of the message these tokens make, without touching any state."""
        has_key = self._symmetric.has_key()
        length = 0
        for token in tokens:
            if token == "e":
                length += DH_LEN
                has_key = has_key or self.pattern.is_psk
            elif token == "s":
                length += DH_LEN + (TAG_LEN if has_key else 0)
            else:  # ee, es, se, ss, psk all call MixKey
                has_key = True
        return length + payload_len + (TAG_LEN if has_key else 0)

    def _finish(self) -> None:
        self._message_index += 1
        if self._message_index == len(self.pattern.messages):
            self._transport = self._symmetric.split()

    def _dh_token(self, token: str) -> None:
        """The four DH tokens (5.3): mix DH(local, remote) into the chaining key."""
        # "es" is initiator's e with responder's s; "se" the reverse.
        local_kind, remote_kind = (token[0], token[1]) if self.initiator else (token[1], token[0])
        self._symmetric.mix_key(_dh(self._ours(local_kind).private, self._theirs(remote_kind)))

    # -- 5.3 WriteMessage / ReadMessage -------------------------------------

    def write_message(self, payload: bytes = b"") -> bytes:
        """WriteMessage(payload): the next handshake message to send."""
        tokens = self._begin(writing=True)
        payload = bytes(payload)
        if self._message_length(tokens, len(payload)) > MAX_MESSAGE_LEN:
            raise NoiseUsageError(
                f"a payload of {len(payload)} bytes makes the message exceed {MAX_MESSAGE_LEN} bytes (3)"
            )
        try:
            buffer = bytearray()
            for token in tokens:
                if token == "e":
                    if self._e is None:
                        self._e = _KeyPair(generate_keypair()[0])
                    buffer += self._e.public
                    self._symmetric.mix_hash(self._e.public)
                    if self.pattern.is_psk:
                        self._symmetric.mix_key(self._e.public)  # 9.2
                elif token == "s":
                    buffer += self._symmetric.encrypt_and_hash(self._ours("s").public)
                elif token == "psk":
                    self._symmetric.mix_key_and_hash(self._psks.pop(0))
                else:
                    self._dh_token(token)
            buffer += self._symmetric.encrypt_and_hash(payload)
        except BaseException:
            self._failed = True
            raise
        self._finish()
        return bytes(buffer)

    def read_message(self, message: bytes) -> bytes:
        """ReadMessage(message): the payload, or a NoiseMessageError.

        Any error ends the handshake (the HandshakeState is then dead).
        """
        tokens = self._begin(writing=False)
        message = bytes(message)
        try:
            if len(message) > MAX_MESSAGE_LEN:
                raise NoiseMessageError(f"message of {len(message)} bytes exceeds {MAX_MESSAGE_LEN} (3)")
            needed = self._message_length(tokens, 0)
            if len(message) < needed:
                raise NoiseMessageError(
                    f"handshake message {self._message_index} is {len(message)} bytes, "
                    f"needs at least {needed}"
                )
            offset = 0
            for token in tokens:
                if token == "e":
                    self._re = message[offset : offset + DH_LEN]
                    offset += DH_LEN
                    self._symmetric.mix_hash(self._re)
                    if self.pattern.is_psk:
                        self._symmetric.mix_key(self._re)  # 9.2
                elif token == "s":
                    size = DH_LEN + (TAG_LEN if self._symmetric.has_key() else 0)
                    self._rs = self._symmetric.decrypt_and_hash(message[offset : offset + size])
                    offset += size
                elif token == "psk":
                    self._symmetric.mix_key_and_hash(self._psks.pop(0))
                else:
                    self._dh_token(token)
            payload = self._symmetric.decrypt_and_hash(message[offset:])
        except BaseException:
            self._failed = True
            raise
        self._finish()
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """The transport CipherStates (5.2 Split): (initiator->responder, responder->initiator).

        In a one-way pattern only the first is used (7.4).
        """
        if self._transport is None:
            raise NoiseUsageError("the handshake is not complete")
        return self._transport


# --------------------------------------------------------------------------
# Transport
# --------------------------------------------------------------------------


class TransportCipher:
    """One side of a finished session: a sending and a receiving CipherState.

    ``encrypt`` cuts plaintext into as many messages as it takes for each to
    stay within 65535 bytes (3); the receiver decrypts each message in order
    and concatenates the results. Message boundaries must be kept by the
    framing layer, since Noise messages carry no length.
    """

    MAX_PLAINTEXT = MAX_MESSAGE_LEN - TAG_LEN

    def __init__(self, send: CipherState | None, receive: CipherState | None) -> None:
        self._send = send
        self._receive = receive

    @classmethod
    def from_handshake(cls, handshake: HandshakeState) -> TransportCipher:
        """The transport for ``handshake``'s side, which must be complete."""
        to_responder, to_initiator = handshake.split()
        if handshake.pattern.one_way:
            # 7.4: one-way patterns carry traffic from initiator to responder only.
            if handshake.initiator:
                return cls(to_responder, None)
            return cls(None, to_responder)
        if handshake.initiator:
            return cls(to_responder, to_initiator)
        return cls(to_initiator, to_responder)

    def encrypt(self, plaintext: bytes | memoryview, ad: bytes = b"") -> list[bytes]:
        """Messages carrying ``plaintext``, each at most 65535 bytes.

        Empty plaintext still gives one (tag-only) message.
        """
        if self._send is None:
            raise NoiseUsageError("this side of a one-way pattern cannot send")
        view = memoryview(plaintext)
        step = self.MAX_PLAINTEXT
        chunks = [view[i : i + step] for i in range(0, len(view), step)] or [view]
        return [self._send.encrypt_with_ad(ad, chunk) for chunk in chunks]

    def decrypt(self, message: bytes | memoryview, ad: bytes = b"") -> bytes:
        """The plaintext of one message, or NoiseDecryptError / NoiseMessageError."""
        if self._receive is None:
            raise NoiseUsageError("this side of a one-way pattern cannot receive")
        if len(message) > MAX_MESSAGE_LEN:
            raise NoiseMessageError(f"message of {len(message)} bytes exceeds {MAX_MESSAGE_LEN} (3)")
        return self._receive.decrypt_with_ad(ad, message)

    def rekey_send(self) -> None:
        """Rekey the sending direction (11.3); the peer must rekey_receive in step."""
        if self._send is None:
            raise NoiseUsageError("no sending CipherState")
        self._send.rekey()

    def rekey_receive(self) -> None:
        """Rekey the receiving direction (11.3)."""
        if self._receive is None:
            raise NoiseUsageError("no receiving CipherState")
        self._receive.rekey()
