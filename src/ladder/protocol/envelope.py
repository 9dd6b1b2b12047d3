"""One signed envelope for what a member says and others relay: context · canonical body → signature.

A member signs `context + body`. The body is the canonical JSON of the
record's fields (sorted keys, no spaces) and always names its signer by
member id; the context string (b"ladder exit record v1\\0", ...) says what
kind of record it is, so that one kind never passes for another. On the wire
an envelope is base64 text: `record` (the body's bytes, exactly as signed),
`signature`, and `pubkey`, the signer's key, which a hub fills in with the
key it vouched for at join time. A relay can pass the envelope on but not
change a byte of it unnoticed, nor pass one member's words off as
another's. Exit and service records (records.py) use it; receipts and hub
records will too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ladder.errors import LadderError

from .identity import is_weak_key, member_id, public_bytes


class RecordError(LadderError):
    """A record that is malformed or not signed by the member it names."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def sign(context: bytes, fields: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, str]:
    """`fields` and the signer's id, signed: the envelope's record and signature (base64)."""
    signed = {**fields, "id": member_id(public_bytes(key))}
    body = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    return {"record": b64(body), "signature": b64(key.sign(context + body))}


def signer(entry: Mapping[str, Any]) -> str:
    """The member id an envelope's record names ("" if none): for an envelope that travels without its
    id beside it (receipts, checkpoints), so that `verify` checks the key derives it."""
    try:
        fields = json.loads(unb64(entry["record"]))
        return fields["id"] if isinstance(fields, dict) and isinstance(fields.get("id"), str) else ""
    except (KeyError, TypeError, ValueError, RecursionError):
        return ""


def verify(context: bytes, entry: Mapping[str, Any], what: str) -> tuple[dict[str, Any], bytes]:
    """The signed fields and the signer's public key; RecordError unless the member `entry` names signed them.

    `entry` holds the envelope (record, signature, pubkey) and the id it is
    relayed under; `what` names the kind of record in the errors.
    """
    try:
        body = unb64(entry["record"])
        signature = unb64(entry["signature"])
        pubkey = unb64(entry["pubkey"])
        fields = json.loads(body)
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise RecordError(f"malformed {what} ({exc})") from None
    if is_weak_key(pubkey):
        raise RecordError(f"the {what} is signed with a key of small order")
    signer = member_id(pubkey)
    if fields.get("id") != signer or entry.get("id") != signer:
        raise RecordError(f"the {what} names another member than the key that signed it")
    try:
        Ed25519PublicKey.from_public_bytes(pubkey).verify(signature, context + body)
    except (InvalidSignature, ValueError):
        raise RecordError(f"the {what}'s signature does not verify") from None
    return fields, pubkey
