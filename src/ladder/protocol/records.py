"""Signed records: what a member says about itself, relayed by a hub that cannot forge it.

An exit publishes a record (its id, country, static Noise key and, when its
policy serves listed members only, their names) signed with its Ed25519
member key in the envelope of envelope.py. The hub relays the record, the
signature and the member's public key; a user accepts the record only if the
public key derives the id the record names and the signature verifies. A hub that
substitutes its own Noise key therefore cannot produce a valid record, and
without the exit's Noise key it cannot complete the channel handshake.
Published services sign their records the same way (see below).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import envelope
from .envelope import RecordError, b64, unb64
from .identity import is_weak_key, member_id, public_bytes

_CONTEXT = b"ladder exit record v1\x00"


@dataclass(frozen=True)
class ExitRecord:
    id: str
    country: str
    noise_key: bytes
    issued: int
    members: frozenset[str] | None = None  # names (lower case) of the members it serves; None: every member

    def admits(self, name: str) -> bool:
        """Whether the exit's signed policy lets the member of that name use it (as the exit checks it)."""
        return self.members is None or name.lower() in self.members


def sign_exit_record(key: Ed25519PrivateKey, country: str, noise_key: bytes, issued: int,
                     members: frozenset[str] | None = None) -> dict[str, str]:
    """The fields a sharer sends the hub: record, signature, public key (all base64).

    `members` limits the exit to those names; without it the record has no
    such field, as records did before it existed, and serves everyone.
    """
    fields = {"country": country, "noise_key": b64(noise_key), "issued": issued}
    if members is not None:
        fields["members"] = sorted(members)
    return {**envelope.sign(_CONTEXT, fields, key), "pubkey": b64(public_bytes(key))}


def verify_exit_record(entry: dict[str, Any]) -> ExitRecord:
    """Check a directory entry; raise RecordError unless the member itself signed it."""
    fields, _ = envelope.verify(_CONTEXT, entry, "exit record")
    try:
        members = fields.get("members")
        if members is not None and (not isinstance(members, list)
                                    or not all(isinstance(m, str) for m in members)):
            raise ValueError("members is not a list of names")
        record = ExitRecord(fields["id"], str(fields["country"]), unb64(fields["noise_key"]),
                            int(fields["issued"]), None if members is None else frozenset(members))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: int() of 1e999
        raise RecordError(f"malformed exit record ({exc})") from None
    if len(record.noise_key) != 32:
        raise RecordError("the exit record's Noise key is not 32 bytes")
    return record


# ------------------------------------------------------------------ services
#
# A publisher signs one record per service (its name, title, description,
# kind, access list and the publisher's static Noise key) with the context
# below, distinct from exits' so that no exit record can pass for a service
# record. Its self-certifying address hashes the publisher's Ed25519 key and
# the service name, so a name bookmarked once cannot be redirected by a hub.

_SERVICE_CONTEXT = b"ladder service record v1\x00"
_ADDRESS_CONTEXT = b"ladder service address v1\x00"
_ACCESS_CONTEXT = b"ladder service access v1\x00"
SERVICE_KINDS = ("http", "tcp")
SERVICE_NAME_MAX = 32
TITLE_MAX, DESCRIPTION_MAX, ACCESS_MAX = 100, 500, 256
KEYWORDS_MAX, KEYWORD_MAX, LANG_MAX = 16, 40, 16  # what a record says for the network's search engine
ACCESS_PROOF_SIZE = 32 + 64  # opener's Ed25519 public key and signature


def valid_service_name(name: object) -> bool:
    """1-32 of [a-z0-9-], not starting or ending with '-': one DNS label."""
    return (isinstance(name, str) and 0 < len(name) <= SERVICE_NAME_MAX and name.isascii()
            and all(c.isdigit() or "a" <= c <= "z" or c == "-" for c in name)
            and not name.startswith("-") and not name.endswith("-"))


def service_address(pubkey: bytes, name: str) -> str:
    """The self-certifying host name: base32 of SHA-256(context · Ed25519 key · name), 160 bits."""
    digest = hashlib.sha256(_ADDRESS_CONTEXT + pubkey + name.encode("ascii")).digest()
    return base64.b32encode(digest[:20]).decode().lower() + ".ladder"


@dataclass(frozen=True)
class ServiceRecord:
    id: str  # the publisher's member id
    name: str
    title: str
    description: str
    kind: str  # "http" or "tcp"
    noise_key: bytes  # the publisher's static X25519 key
    access: tuple[str, ...]  # member ids allowed in; empty: every member
    issued: int  # when it was signed: a newer record of a service says what it is anew (search recrawls)
    pubkey: bytes  # the publisher's Ed25519 key, which signed the record
    keywords: tuple[str, ...] = ()
    lang: str = ""  # the language of its pages ("en", "zh-CN"), if the publisher said
    index: bool = True  # False: the publisher asked search engines to leave it out

    @property
    def address(self) -> str:
        return service_address(self.pubkey, self.name)

    def admits(self, member: str) -> bool:
        return not self.access or member in self.access or member == self.id


def sign_service_record(key: Ed25519PrivateKey, name: str, title: str, description: str, kind: str,
                        noise_key: bytes, access: list[str], issued: int, keywords: tuple[str, ...] = (),
                        lang: str = "", index: bool = True) -> dict[str, str]:
    """The fields a publisher sends the hub for one service: record and signature (base64).

    What is only for search (keywords, lang, index) is left out when unset, so a record without them
    is the one older Ladders sign and read."""
    fields: dict[str, Any] = {"name": name, "title": title, "description": description, "kind": kind,
                              "noise_key": b64(noise_key), "access": sorted(set(access)), "issued": issued}
    if keywords:
        fields["keywords"] = list(keywords)
    if lang:
        fields["lang"] = lang
    if not index:
        fields["index"] = False
    return envelope.sign(_SERVICE_CONTEXT, fields, key)


def verify_service_record(entry: dict[str, Any]) -> ServiceRecord:
    """Check a listing entry ({id, record, signature, pubkey}); RecordError unless its publisher signed it."""
    fields, pubkey = envelope.verify(_SERVICE_CONTEXT, entry, "service record")
    try:
        access, keywords = fields["access"], fields.get("keywords", [])
        if not isinstance(access, list) or not all(isinstance(a, str) for a in access):
            raise ValueError("access is not a list of member ids")
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise ValueError("keywords is not a list of words")
        if not isinstance(fields.get("lang", ""), str) or not isinstance(fields.get("index", True), bool):
            raise ValueError("lang is not text or index not true or false")
        record = ServiceRecord(fields["id"], fields["name"], str(fields["title"]),
                               str(fields["description"]), fields["kind"], unb64(fields["noise_key"]),
                               tuple(access), int(fields["issued"]), pubkey, tuple(keywords),
                               fields.get("lang", ""), fields.get("index", True))
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: int() of 1e999
        raise RecordError(f"malformed service record ({exc})") from None
    if (len(record.keywords) > KEYWORDS_MAX or any(len(k) > KEYWORD_MAX for k in record.keywords)
            or len(record.lang) > LANG_MAX):
        raise RecordError("the service record says too much for search (keywords or lang)")
    if not valid_service_name(record.name) or record.kind not in SERVICE_KINDS:
        raise RecordError("the service record has an invalid name or kind")
    if len(record.noise_key) != 32:
        raise RecordError("the service record's Noise key is not 32 bytes")
    if len(record.title) > TITLE_MAX or len(record.description) > DESCRIPTION_MAX or len(access) > ACCESS_MAX:
        raise RecordError("the service record is too large")
    return record


def _access_signed(noise_key: bytes, publisher_id: str, name: str) -> bytes:
    return _ACCESS_CONTEXT + noise_key + publisher_id.encode("ascii") + b"\x00" + name.encode("ascii")


def sign_access(key: Ed25519PrivateKey, noise_key: bytes, publisher_id: str, name: str) -> bytes:
    """The opener's proof that its channel key belongs to its member key: public key · signature.

    The publisher reads the opener's static Noise key from the handshake, so
    the proof cannot be lifted onto another channel: the hub's word on who
    opened a stream is never what grants access.
    """
    return public_bytes(key) + key.sign(_access_signed(noise_key, publisher_id, name))


def verify_access(proof: bytes, noise_key: bytes, publisher_id: str, name: str) -> str:
    """The member id the proof speaks for; raise RecordError unless it binds `noise_key`."""
    pubkey, signature = proof[:32], proof[32:]
    if len(proof) != ACCESS_PROOF_SIZE or is_weak_key(pubkey):
        raise RecordError("malformed proof of membership")
    try:
        signed = _access_signed(noise_key, publisher_id, name)
        Ed25519PublicKey.from_public_bytes(pubkey).verify(signature, signed)
    except (InvalidSignature, ValueError):
        raise RecordError("the opener's proof of membership does not verify") from None
    return member_id(pubkey)


# ------------------------------------------------------------ announcements
#
# Between peer hubs a member's records travel in an announcement that its
# home hub signs with the hub's own key: who the member is there (id, name,
# the hub's name), its exit record and service records exactly as the member
# signed them, a sequence number that grows with every announcement, and an
# expiry. The hub's signature vouches only for what the hub adds (the name,
# the number, the expiry): the records inside still verify against the
# member's key, so no hub on the way, the home hub included, can forge an
# exit's Noise key or a service. protocol/routing.py passes them on.

_ANNOUNCEMENT_CONTEXT = b"ladder hub announcement v1\x00"
ANNOUNCEMENT_MAX = 40_000  # bytes of an announcement's body: it must fit one control message


@dataclass(frozen=True)
class MemberAnnouncement:
    """A verified announcement: the member's records as its home hub relays them."""

    member: str  # member id
    name: str  # the member's name at its home hub
    hub: str  # the home hub's name
    home: str  # the home hub's id (the signer)
    seq: int
    expires: int  # Unix seconds
    exit: dict[str, Any] | None  # {id, record, signature, pubkey}, verified
    exit_record: ExitRecord | None
    services: tuple[dict[str, Any], ...]  # {id, record, signature, pubkey} each, verified


def sign_announcement(hub_key: Ed25519PrivateKey, member: str, member_key: bytes, name: str, hub: str,
                      seq: int, expires: int, exit: dict[str, str] | None,
                      services: list[dict[str, str]]) -> dict[str, str]:
    """The home hub's envelope (record, signature, pubkey) over a member's records; ValueError if the
    body would not fit ANNOUNCEMENT_MAX (the caller leaves services out)."""
    fields = {"member": member, "key": b64(member_key), "name": name, "hub": hub, "seq": seq,
              "expires": expires,
              "exit": None if exit is None else {"record": exit["record"], "signature": exit["signature"]},
              "services": [{"record": s["record"], "signature": s["signature"]} for s in services]}
    signed = {**envelope.sign(_ANNOUNCEMENT_CONTEXT, fields, hub_key), "pubkey": b64(public_bytes(hub_key))}
    if len(signed["record"]) > ANNOUNCEMENT_MAX:
        raise ValueError("the announcement is too large")
    return signed


def announced_member(entry: dict[str, Any]) -> str | None:
    """The member id an announcement's record names, read without checking anything (None if it cannot
    be read): only for refusing one that would be refused whatever its signatures prove."""
    try:
        member = json.loads(unb64(entry["record"]))["member"]
    except (KeyError, TypeError, ValueError, RecursionError):
        return None
    return member if isinstance(member, str) else None


def verify_announcement(entry: dict[str, Any]) -> MemberAnnouncement:
    """Check a peer's route entry ({record, signature, pubkey}): the home hub's signature and every record
    inside against the member's key. RecordError names what fails."""
    try:
        hub_id = member_id(unb64(entry["pubkey"]))
    except (KeyError, TypeError, ValueError):
        raise RecordError("malformed announcement (its key)") from None
    fields, _ = envelope.verify(_ANNOUNCEMENT_CONTEXT, {**entry, "id": hub_id}, "announcement")
    try:
        member, key = str(fields["member"]), unb64(fields["key"])
        exit_fields, service_fields = fields["exit"], fields["services"]
        seq, expires = int(fields["seq"]), int(fields["expires"])
        name, hub = str(fields["name"]), str(fields["hub"])
        if not isinstance(service_fields, list) or not isinstance(exit_fields, (dict, type(None))):
            raise ValueError("exit or services of the wrong type")
        if member_id(key) != member or len(service_fields) > 64:
            raise ValueError("the member's key and id differ")
        exit = None if exit_fields is None else {**exit_fields, "id": member, "pubkey": b64(key)}
        services = tuple({**s, "id": member, "pubkey": b64(key)} for s in service_fields)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # int() of 1e999
        raise RecordError(f"malformed announcement ({exc})") from None
    exit_record = None if exit is None else verify_exit_record(exit)
    for service in services:
        verify_service_record(service)
    return MemberAnnouncement(member, name, hub, hub_id, seq, expires, exit, exit_record, services)
