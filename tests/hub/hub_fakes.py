"""Members and links without sockets, for the hub's unit tests."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.config import HubConfig
from ladder.link.tls import generate_self_signed
from ladder.protocol.control import ControlMessage
from ladder.protocol.identity import member_id, public_bytes
from ladder.store.hubdb import HubStore, Member


def hub_config(folder: Path) -> HubConfig:
    """A hub's config in `folder`, on loopback ports, with a fresh self-signed certificate."""
    cert, key = folder / "tls.crt", folder / "tls.key"
    generate_self_signed(cert, key, "127.0.0.1", ["127.0.0.1"])
    return HubConfig(folder, "t", ("127.0.0.1", 0), ("127.0.0.1", 0), cert, key)


def joined(store: HubStore, name: str, key: Ed25519PrivateKey | None = None) -> Member:
    """A member who redeemed an invite to `store`, with `key` (a fresh one if None)."""
    pubkey = public_bytes(key or Ed25519PrivateKey.generate())
    return store.redeem_invite(store.create_invite(name), member_id(pubkey), pubkey)


def make_member(name: str, key: Ed25519PrivateKey | None = None) -> Member:
    pubkey = public_bytes(key or Ed25519PrivateKey.generate())
    return Member(member_id(pubkey), name, pubkey, 0.0, False, None, None)


class FakeLink:
    """The public side of `Link` the hub uses, recording what the hub does with it."""

    def __init__(self, room: bool = True):
        self.owner = None
        self.label = "fake link"
        self.room = room  # whether the peer would take one more stream
        self.closed = False
        self.close_code: int | None = None
        self.sent: list[ControlMessage] = []
        self.refused: dict[int, tuple[int, str]] = {}
        self.claimed: dict[int, object] = {}
        self.opened: list[tuple[bytes, object, int | None]] = []  # (payload, endpoint, window)

    def send_control(self, message: ControlMessage) -> None:
        if not self.closed:
            self.sent.append(message)

    def refuse(self, sid: int, code: int, reason: str) -> None:
        self.refused[sid] = (code, reason)

    def can_open(self) -> bool:
        return self.room and not self.closed

    def claim(self, sid: int, endpoint) -> None:
        self.claimed[sid] = endpoint

    def open_stream(self, payload: bytes, endpoint, window: int | None = None) -> int:
        self.opened.append((payload, endpoint, window))
        return 2 * len(self.opened)

    def close(self, code: int = 0, reason: str = "") -> None:
        if not self.closed:
            self.closed, self.close_code = True, code
            if self.owner is not None:
                self.owner.link_closed(self, reason)
