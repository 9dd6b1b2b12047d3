"""Signed records: what a member says about itself, relayed by a hub that cannot forge it.

An exit publishes a record (its id, country and static Noise key) signed
with its Ed25519 member key. The hub relays the record, the signature and
the member's public key; a user accepts the record only if the public key
derives the id the record names and the signature verifies. A hub that
substitutes its own Noise key therefore cannot produce a valid record, and
without the exit's Noise key it cannot complete the channel handshake.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .hello import is_weak_key, member_id, public_bytes

_CONTEXT = b"ladder exit record v1\x00"


class RecordError(Exception):
    """A record that is malformed or not signed by the member it names."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@dataclass(frozen=True)
class ExitRecord:
    id: str
    country: str
    noise_key: bytes
    issued: int


def sign_exit_record(key: Ed25519PrivateKey, country: str, noise_key: bytes, issued: int) -> dict:
    """The fields a sharer sends the hub: record, signature, public key (all base64)."""
    pubkey = public_bytes(key)
    body = json.dumps(
        {"id": member_id(pubkey), "country": country, "noise_key": b64(noise_key), "issued": issued},
        sort_keys=True, separators=(",", ":"),
    ).encode()
    return {"record": b64(body), "signature": b64(key.sign(_CONTEXT + body)), "pubkey": b64(pubkey)}


def verify_exit_record(entry: dict) -> ExitRecord:
    """Check a directory entry; raise RecordError unless the member itself signed it."""
    try:
        body = unb64(entry["record"])
        signature = unb64(entry["signature"])
        pubkey = unb64(entry["pubkey"])
        fields = json.loads(body)
        record = ExitRecord(str(fields["id"]), str(fields["country"]), unb64(fields["noise_key"]),
                            int(fields["issued"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"malformed exit record ({exc})") from None
    if is_weak_key(pubkey):
        raise RecordError("the exit record is signed with a key of small order")
    if member_id(pubkey) != record.id or entry.get("id") != record.id:
        raise RecordError("the exit record names another member than the key that signed it")
    try:
        Ed25519PublicKey.from_public_bytes(pubkey).verify(signature, _CONTEXT + body)
    except (InvalidSignature, ValueError):
        raise RecordError("the exit record's signature does not verify") from None
    if len(record.noise_key) != 32:
        raise RecordError("the exit record's Noise key is not 32 bytes")
    return record
