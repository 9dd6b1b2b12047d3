"""End-to-end channels: Noise IK between two members, through the hub.

A member opens one channel to each exit or publisher it uses, as one stream
of its hub link. The opener knows the far end's static key from its signed
record, so it runs Noise_IK_25519_AESGCM_BLAKE2s: message 1 rides in the
stream's OPEN, message 2 in the ACCEPT. The prologue binds both member ids,
so a hub that reroutes a handshake to someone else breaks it.

The payload of message 1 is CHANNEL_REQUEST followed by the first bytes of
the channel's inner stream (its first OPEN frames, which name targets), so
the first connection costs no extra round trip. After the handshake every
stream byte is a sealed message:

    length u16 | Noise transport message (ciphertext + 16-byte tag)

The plaintext is the byte stream of a second mux (the same frames as the hub
link's), whose streams carry the member's connections. A message that fails
to authenticate — tampered, replayed, reordered or cut — raises
ChannelError; nothing is ever decrypted into garbage.
"""

from __future__ import annotations

import struct

from .errors import ErrorCode, RemoteProtocolError
from .frames import MAX_PAYLOAD, Reassembly
from .noise import MAX_MESSAGE_LEN, TAG_LEN, HandshakeState, NoiseError, TransportCipher

# AES-GCM, not ChaChaPoly: 7.9 against 3.1 GB/s here (AES instructions are on
# every VPS, laptop and phone CPU of the last decade); the hash only runs per handshake.
PROTOCOL = "Noise_IK_25519_AESGCM_BLAKE2s"
_LEN = struct.Struct("!H")
OVERHEAD = _LEN.size + TAG_LEN  # per sealed message
SEAL_CHUNK = MAX_PAYLOAD // 4 - OVERHEAD  # plaintext per message: four messages fill one DATA frame
CHANNEL_REQUEST = b"\x20"  # the first byte of message 1's payload: "open a channel of streams" (v1)
FIRST_BYTES_MAX = 16 * 1024  # inner bytes carried in message 1 at most; the rest waits for message 2


class ChannelError(RemoteProtocolError):
    """The far end's handshake or a sealed message did not authenticate."""

    def __init__(self, message: str):
        super().__init__(message, ErrorCode.PROTOCOL_ERROR)


def prologue(opener_id: str, exit_id: str) -> bytes:
    return b"ladder channel v2\x00" + opener_id.encode() + b"\x00" + exit_id.encode()


class Initiator:
    """The opener's side: message 1 now, the sealed stream once message 2 arrives."""

    def __init__(self, static_private: bytes, exit_public: bytes, opener_id: str, exit_id: str):
        self._hs = HandshakeState.initialize(
            PROTOCOL, True, prologue(opener_id, exit_id), s=static_private, rs=exit_public
        )

    def first_message(self, payload: bytes) -> bytes:
        return self._hs.write_message(payload)

    def finish(self, message2: bytes) -> SealedStream:
        try:
            self._hs.read_message(message2)
        except NoiseError as exc:
            raise ChannelError(f"the exit's handshake answer did not authenticate ({exc})") from None
        return SealedStream(TransportCipher.from_handshake(self._hs))


class Responder:
    """The exit's side: read message 1 (the target), answer with message 2."""

    def __init__(self, static_private: bytes, opener_id: str, exit_id: str):
        self._hs = HandshakeState.initialize(PROTOCOL, False, prologue(opener_id, exit_id), s=static_private)

    def read_first(self, message1: bytes) -> bytes:
        try:
            return self._hs.read_message(message1)
        except NoiseError as exc:
            raise ChannelError(f"the opener's handshake did not authenticate ({exc})") from None

    @property
    def opener_key(self) -> bytes:
        key = self._hs.remote_static  # IK's first message carries it
        assert key is not None, "opener_key asked before read_first"
        return key

    def answer(self) -> tuple[bytes, SealedStream]:
        message2 = self._hs.write_message(b"")
        return message2, SealedStream(TransportCipher.from_handshake(self._hs))


class SealedStream:
    """Seals plaintext into length-prefixed Noise messages and opens them again."""

    def __init__(self, cipher: TransportCipher):
        self._cipher = cipher
        self._tail = Reassembly(_LEN.size, _message_size)

    def seal(self, plaintext: bytes | memoryview) -> list[bytes]:
        """The sealed stream bytes for `plaintext`, as pieces (length, message, length, ...).

        Pieces, not one joined buffer: the mux frames them as they are, and
        the link gathers a frame's worth at a time, so no large buffer is
        built per read.
        """
        out = []
        view = memoryview(plaintext)
        # Four whole messages per full DATA frame, so the far end opens each
        # frame as it arrives, without gathering pieces first.
        for start in range(0, len(view), SEAL_CHUNK):
            (message,) = self._cipher.encrypt(view[start : start + SEAL_CHUNK])
            out.append(_LEN.pack(len(message)))
            out.append(message)
        return out

    def open(self, data: bytes) -> tuple[list[bytes], int]:
        """Plaintexts of the whole messages so far, and how many stream bytes were overhead."""
        plaintexts: list[bytes] = []
        head, rest = self._tail.complete(data)
        if head is not None:
            self._open_messages(head, plaintexts)
        self._tail.keep(rest, self._open_messages(rest, plaintexts))
        return plaintexts, OVERHEAD * len(plaintexts)

    def _open_messages(self, source: memoryview, plaintexts: list[bytes]) -> int:
        """Append the plaintext of each whole message in `source`; return the bytes consumed."""
        offset, end = 0, len(source)
        while end - offset >= _LEN.size:
            (size,) = _LEN.unpack_from(source, offset)
            if size < TAG_LEN:
                raise ChannelError(f"sealed message of {size} bytes is shorter than its tag")
            stop = offset + _LEN.size + size
            if stop > end:
                break
            try:
                plaintexts.append(self._cipher.decrypt(source[offset + _LEN.size : stop]))
            except NoiseError as exc:
                raise ChannelError(f"a sealed message failed to authenticate ({exc})") from None
            offset = stop
        return offset


def _message_size(head: memoryview | bytearray) -> int:
    size: int = _LEN.unpack_from(head)[0]
    return _LEN.size + size


assert MAX_MESSAGE_LEN < 1 << 16  # the u16 length prefix holds any Noise message
