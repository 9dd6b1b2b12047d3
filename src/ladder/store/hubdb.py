"""The hub's store: members, invites, devices, peer hubs and the ledger, in SQLite or PostgreSQL.

Theory of operation
-------------------
SQLite is the embedded default: one file per hub, hub.db, opened by the
running hub and, at the same time, by the `ladder` CLI (to invite or remove
people).  PostgreSQL (a ``postgresql://`` URL, `ladder hub init --db`) is for
a hub that outgrows one machine: several hub processes, on one machine or
several, and their CLIs share one database, so an invite made through any of
them is redeemable at any.  The logic and the SQL here are the same for both;
engines.py holds the few differences (connecting, placeholders, types, the
schema version: SQLite's user_version, PostgreSQL's ``ladder_meta`` row).

Every write is one short transaction that runs alone among the database's
writers (``BEGIN IMMEDIATE`` on SQLite, a row lock taken first on
PostgreSQL), so its checks and its changes cannot interleave with another
process's: two processes redeeming the same single-use invite, one wins.
Writers queue for up to 10 s instead of failing.  A process notices a change
made by another by polling ``data_version()``; the hub does so every second.

Invite tokens are 16 random bytes made here and handed to the caller once;
only their SHA-256 is stored, so a copy of hub.db cannot be used to join.

A member is identified by a key.  Its id (derived from the key elsewhere)
and its Ed25519 public key are both unique forever; its name is a label,
unique among active members only, so a removed member's name can be given
to somebody new.  Removing a member keeps its row (``revoked_at``), so the
key can never rejoin through another invite.

A device is a phone or another machine that runs a stock Trojan app, not
the agent: the hub acts as its agent, under an identity (Ed25519 and Noise
keys) that it makes at `add_device` and holds on the owner's behalf. Its
label is ``owner/name``; the name is unique among the owner's active
devices.  `add_device` returns a random token once; the Trojan password is
derived from it (`device_password`) with the hub's device key
(`device_key`: with SQLite a file beside the database, config.py; with
PostgreSQL a row in it, shared by the hub processes that must all admit the
same devices, so there a dump of the database holds the key too), and only
HMACs under that key are stored:
one of the password's 56 hex digits, which the doorway presents, and one of
the token, for the subscription URL.  A device whose owner was removed, or
that was revoked or expired, is unknown to both lookups.

The ledger (protocol/ledger.py says what an entry is) is append-only: each
entry gets the next index of its hub's log in the write transaction that
stores it, together with its leaf hash and the change to both accounts'
totals, so the totals always are the sum of the entries and a crash never
leaves a hole in the indices.  A payer's credit limit is applied there too,
against its balance at that moment.  Checkpoints are kept as the hub signed
them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, overload

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.errors import UserError
from ladder.protocol.identity import member_id as id_of_key
from ladder.protocol.identity import public_bytes
from ladder.protocol.ledger import KINDS, Entry, leaf_hash
from ladder.protocol.noise import generate_keypair
from ladder.store import engines
from ladder.store.engines import Engine, EngineError

log = logging.getLogger(__name__)

DB_FILENAME = "hub.db"
SCHEMA_VERSION = 6
DEVICE_TOKEN_LEN = 32
PUBKEY_LEN = 32
TOKEN_LEN = 16
NAME_MAX = 32
_NAME_RE = re.compile(rf"[a-z0-9_-]{{1,{NAME_MAX}}}")

# Version 1.  Times are Unix seconds (REAL).  revoked_at IS NULL means active.
_SCHEMA_V1 = """
CREATE TABLE invites (
    token_hash BLOB PRIMARY KEY CHECK (length(token_hash) = 32),
    name       TEXT NOT NULL,
    uses_left  INTEGER NOT NULL CHECK (uses_left >= 0),
    expires_at REAL,
    created    REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX invites_by_name ON invites (name);

CREATE TABLE members (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    pubkey     BLOB NOT NULL UNIQUE CHECK (length(pubkey) = 32),
    created    REAL NOT NULL,
    revoked_at REAL,
    online_as  TEXT,
    last_seen  REAL,
    invite     BLOB REFERENCES invites (token_hash)
);
-- A name is unique among active members (removed members keep theirs).
CREATE UNIQUE INDEX members_active_name ON members (name)
    WHERE revoked_at IS NULL;
"""

# Version 2: devices.  Keys are raw private bytes; the secrets are HMACs under the hub's
# device key.  Usage: bytes on `day` (UTC, YYYY-MM-DD) and in all, saved by the running hub.
_SCHEMA_V2 = """
CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL REFERENCES members (id),
    name        TEXT NOT NULL,
    created     REAL NOT NULL,
    expires_at  REAL,
    revoked_at  REAL,
    exit        TEXT NOT NULL,
    rules       TEXT,
    rate        INTEGER CHECK (rate > 0),
    daily_cap   INTEGER CHECK (daily_cap > 0),
    signing_key BLOB NOT NULL CHECK (length(signing_key) = 32),
    noise_key   BLOB NOT NULL CHECK (length(noise_key) = 32),
    door_hash   BLOB NOT NULL UNIQUE CHECK (length(door_hash) = 32),
    token_hash  BLOB NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    day         TEXT,
    day_bytes   INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER NOT NULL DEFAULT 0,
    last_seen   REAL,
    online      INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX devices_active_name ON devices (owner, name)
    WHERE revoked_at IS NULL;
"""

# Version 3: peer hubs.  An invite made here has token_hash until redeemed (then hub_id, pubkey);
# a peering redeemed from here has address and fingerprint: this hub dials that one.
_SCHEMA_V3 = """
CREATE TABLE peers (
    local       TEXT NOT NULL,
    name        TEXT NOT NULL,
    token_hash  BLOB UNIQUE CHECK (token_hash IS NULL OR length(token_hash) = 32),
    expires_at  REAL,
    hub_id      TEXT,
    pubkey      BLOB CHECK (pubkey IS NULL OR length(pubkey) = 32),
    address     TEXT,
    fingerprint TEXT,
    created     REAL NOT NULL,
    removed_at  REAL
);
CREATE UNIQUE INDEX peers_active_name ON peers (local, name) WHERE removed_at IS NULL;
CREATE UNIQUE INDEX peers_active_hub ON peers (local, hub_id) WHERE removed_at IS NULL;
"""
PEER_INVITE_LIFETIME = 7 * 86400.0  # seconds a peer invite may wait to be redeemed

# Version 4: the ledger (protocol/ledger.py), per local hub like peers.  `data` is the entry's leaf data
# and `leaf` its RFC 9162 leaf hash, kept so that proofs need no rehashing; (channel, kind, seq) is
# unique so that a receipt moves credits once, across restarts too.  ledger_accounts holds each
# account's totals, changed in the transaction of each entry: balance = earned - spent.
_SCHEMA_V4 = """
CREATE TABLE ledger (
    local   TEXT NOT NULL,
    idx     INTEGER NOT NULL CHECK (idx >= 0),
    time    INTEGER NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('transfer', 'debit', 'credit')),
    payer   TEXT NOT NULL,
    payee   TEXT NOT NULL,
    amount  INTEGER NOT NULL CHECK (amount >= 0),
    carried INTEGER NOT NULL CHECK (carried >= amount),
    channel TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    data    BLOB NOT NULL,
    leaf    BLOB NOT NULL CHECK (length(leaf) = 32),
    PRIMARY KEY (local, idx),
    UNIQUE (local, channel, kind, seq)
);
CREATE INDEX ledger_by_payer ON ledger (local, payer);
CREATE INDEX ledger_by_payee ON ledger (local, payee);

CREATE TABLE ledger_accounts (
    local        TEXT NOT NULL,
    account      TEXT NOT NULL,
    earned       INTEGER NOT NULL DEFAULT 0,
    spent        INTEGER NOT NULL DEFAULT 0,
    month        TEXT NOT NULL,
    month_earned INTEGER NOT NULL DEFAULT 0,
    month_spent  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (local, account)
);

CREATE TABLE ledger_checkpoints (
    local    TEXT NOT NULL,
    size     INTEGER NOT NULL CHECK (size >= 0),
    time     INTEGER NOT NULL,
    envelope TEXT NOT NULL,
    PRIMARY KEY (local, size)
);
"""
# Version 5: what this hub holds of each peer hub's ledger (hub/credits.py): the newest checkpoint of it
# that held, and the first one that did not (with why), kept as evidence after the peering ends.
_SCHEMA_V5 = """
CREATE TABLE peer_checkpoints (
    local    TEXT NOT NULL,
    hub_id   TEXT NOT NULL,
    envelope TEXT NOT NULL,
    checked  REAL NOT NULL,
    conflict TEXT,
    PRIMARY KEY (local, hub_id)
);
"""
# Version 6: the Ladder release each member's agent last said it runs (protocol/version.py), for the
# operator planning an upgrade; NULL: it said none (release 0.1.0) or has not connected since.
_SCHEMA_V6 = """
ALTER TABLE members ADD COLUMN agent_release TEXT;
"""
_MIGRATIONS = [(1, _SCHEMA_V1), (2, _SCHEMA_V2), (3, _SCHEMA_V3), (4, _SCHEMA_V4), (5, _SCHEMA_V5),
               (6, _SCHEMA_V6)]
LEDGER_ROWS_BATCH = 1000  # rows ledger_rows reads at a time
# The size is the next index (indices have no holes); MAX reads the primary key's index, where COUNT would
# read every row on PostgreSQL.
_LEDGER_SIZE = "SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger WHERE local = ?"


def _blob(value: object) -> bytes:
    """A BLOB column's bytes, even if someone stored text in it by hand (the ledger check then says so)."""
    return value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[call-overload]


class StoreError(UserError):
    """A request the store refuses; the message is one line for a person."""


class InviteError(StoreError):
    """An invite token that cannot be used to join."""


class InviteUnknown(InviteError):
    def __init__(self) -> None:
        super().__init__("this invite is not known to this hub")


class InviteRevoked(InviteError):
    def __init__(self) -> None:
        super().__init__("this invite has been withdrawn by the hub's operator")


class InviteExpired(InviteError):
    def __init__(self) -> None:
        super().__init__("this invite has expired")


class InviteUsed(InviteError):
    def __init__(self) -> None:
        super().__init__("this invite has already been used")


class MemberRevoked(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"this key belonged to member {name!r}, who was removed")


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    name: str
    pubkey: bytes
    created: float
    revoked: bool
    online_as: str | None
    last_seen: float | None
    release: str | None = None  # what its agent last said it runs (None: 0.1.0, or not since)

# Devices one member may hold at once: each is an identity in every member's roster and a session
# at the hub, so a member must not be able to add them without end.
DEVICES_PER_MEMBER = 32


@dataclass(frozen=True, slots=True)
class Device:
    id: str  # its identity's member id, as exits see it
    owner: str  # the owner's member id
    owner_name: str
    name: str
    created: float
    expires_at: float | None
    revoked: bool
    exit: str  # auto, a country code or a member name
    rules: str | None  # a preset's name or rules text; None: everything through `exit`
    rate: int | None  # bytes per second, both ways together
    daily_cap: int | None  # bytes a day, both ways together
    signing_key: bytes = field(repr=False)  # Ed25519 private key, raw
    noise_key: bytes = field(repr=False)  # X25519 private key, raw
    day: str | None = None
    day_bytes: int = 0
    total_bytes: int = 0
    last_seen: float | None = None
    online: bool = False  # the hub serves it now

    @property
    def label(self) -> str:
        return f"{self.owner_name}/{self.name}"

    def bytes_on(self, day: str) -> int:
        """Bytes the device carried on `day` (the stored count is of the stored day)."""
        return self.day_bytes if self.day == day else 0

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class Invite:
    name: str
    uses_left: int
    expires_at: float | None
    created: float
    revoked: bool


@dataclass(frozen=True, slots=True)
class Peer:
    name: str  # what this hub calls it
    hub_id: str | None  # None: an invite not redeemed yet
    pubkey: bytes | None
    address: str | None  # host:port this hub dials; None: the peer dials this hub
    fingerprint: str | None  # the peer's TLS key, pinned when this hub dials
    created: float
    expires_at: float | None  # an unredeemed invite's

    @property
    def pending(self) -> bool:
        return self.hub_id is None


_PEER_COLUMNS = "name, hub_id, pubkey, address, fingerprint, created, expires_at"


@dataclass(frozen=True, slots=True)
class Account:
    """One account's credits at a hub: a local member's id, or another hub's member as "id@hub"."""

    account: str
    balance: int  # earned - spent; below zero down to minus the credit limit
    earned: int
    spent: int
    month_earned: int  # in this UTC month
    month_spent: int


@dataclass(frozen=True, slots=True)
class PeerLedger:
    """What this hub holds of a peer hub's ledger."""

    checkpoint: dict[str, str]  # the newest checkpoint of it that held
    checked: float  # when one last held
    conflict: dict[str, Any] | None  # {"checkpoint", "reason", "time"}: the first one that did not


def _peer(row: tuple[Any, ...]) -> Peer:
    name, hub_id, pubkey, address, fingerprint, created, expires_at = row
    return Peer(name, hub_id, None if pubkey is None else bytes(pubkey), address, fingerprint, created,
                expires_at)


_MEMBER_COLUMNS = "id, name, pubkey, created, revoked_at, online_as, last_seen, agent_release"
_INVITE_COLUMNS = "name, uses_left, expires_at, created, revoked_at"
_DEVICE_COLUMNS = ("d.id, d.owner, m.name, d.name, d.created, d.expires_at, d.revoked_at, d.exit, d.rules,"
                   " d.rate, d.daily_cap, d.signing_key, d.noise_key, d.day, d.day_bytes, d.total_bytes,"
                   " d.last_seen, d.online")
_DEVICES = "devices d JOIN members m ON m.id = d.owner"
# Usable: neither it nor its owner removed, not expired (the query's one parameter is now).
_USABLE = "d.revoked_at IS NULL AND m.revoked_at IS NULL AND (d.expires_at IS NULL OR d.expires_at > ?)"


# A row becomes its record, and no row (a lookup that found none) None.
@overload
def _member(row: None) -> None: ...
@overload
def _member(row: tuple[Any, ...]) -> Member: ...
def _member(row: tuple[Any, ...] | None) -> Member | None:
    if row is None:
        return None
    id_, name, pubkey, created, revoked_at, online_as, last_seen, release = row
    return Member(id_, name, bytes(pubkey), created, revoked_at is not None, online_as, last_seen, release)


@overload
def _invite(row: None) -> None: ...
@overload
def _invite(row: tuple[Any, ...]) -> Invite: ...
def _invite(row: tuple[Any, ...] | None) -> Invite | None:
    if row is None:
        return None
    name, uses_left, expires_at, created, revoked_at = row
    return Invite(name, uses_left, expires_at, created, revoked_at is not None)


def _device(row: tuple[Any, ...]) -> Device:
    (id_, owner, owner_name, name, created, expires_at, revoked_at, exit_, rules, rate, daily_cap,
     signing_key, noise_key, day, day_bytes, total_bytes, last_seen, online) = row
    return Device(id_, owner, owner_name, name, created, expires_at, revoked_at is not None, exit_, rules,
                  rate, daily_cap, bytes(signing_key), bytes(noise_key), day, day_bytes, total_bytes,
                  last_seen, bool(online))


def device_password(device_key: bytes, token: str) -> str:
    """The Trojan password of the device whose token this is (what its app is given)."""
    digest = hmac.digest(device_key, b"ladder device password\0" + token.encode(), "sha256")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _keyed(device_key: bytes, secret: bytes) -> bytes:
    return hmac.digest(device_key, secret, "sha256")


def utc_day(now: float) -> str:
    """The day usage is counted on: UTC, so a hub's days do not move with its time zone."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def utc_month(now: float) -> str:
    """The month accounts' monthly totals are of (UTC, YYYY-MM)."""
    return time.strftime("%Y-%m", time.gmtime(now))


def _token_hash(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def normalize_name(name: str) -> str:
    """Lowercase `name` and check it is 1-32 of [a-z0-9-_], else StoreError."""
    if not isinstance(name, str):
        raise StoreError("a member name must be text")
    lowered = name.strip().lower()
    if not _NAME_RE.fullmatch(lowered):
        raise StoreError(
            f"invalid name {name!r}: use 1-{NAME_MAX} letters, digits, '-' or '_'")
    return lowered


def _now(now: float | None) -> float:
    return time.time() if now is None else float(now)


class HubStore:
    """Members, invites, devices, peer hubs and ledger of one hub (or of several hub processes sharing it).

    `target` is a ``postgresql://`` URL, a database file, or the hub's
    folder (then ``hub.db`` in it); a new SQLite file is created with mode
    0600.  Usable as a context manager.  Safe to share between threads (one
    lock around the connection).
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self._lock = threading.Lock()
        try:
            self._db: Engine = engines.connect(target, DB_FILENAME)
        except EngineError as exc:
            raise StoreError(str(exc)) from None
        self.where = self._db.where
        try:
            self._migrate()
        except StoreError as exc:
            self._db.close()
            raise StoreError(f"cannot use {self.where} as a hub database: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> HubStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _migrate(self) -> None:
        """Bring the schema to this release's; an older one is first copied aside (SQLite: beside the
        file, which the release that wrote it still opens; PostgreSQL: the operator's pg_dump)."""
        version = self._db.schema_version()
        if 0 < version < SCHEMA_VERSION:
            try:
                copy = self._db.copy_aside(f"schema{version}")
            except EngineError as exc:
                raise StoreError(f"cannot keep a copy before upgrading schema {version}: {exc}") from None
            if copy:
                log.info("upgrading %s from schema %d to %d; the old one is kept as %s", self.where,
                         version, SCHEMA_VERSION, copy)
        with self._write() as db:
            version = db.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(f"it has schema version {version}; this Ladder knows up to "
                                 f"{SCHEMA_VERSION} (upgrade Ladder)")
            for step, schema in _MIGRATIONS:
                if version < step:
                    for statement in schema.split(";"):
                        if statement.strip():
                            db.execute(db.ddl(statement))
            db.set_schema_version(SCHEMA_VERSION)

    @contextmanager
    def _write(self) -> Iterator[Engine]:
        """One write transaction, alone among the database's writers (engines.py says how); the
        database's errors are StoreErrors."""
        with self._lock:
            try:
                self._db.begin_write()
                try:
                    yield self._db
                except BaseException:
                    self._db.rollback()
                    raise
                self._db.commit()
            except EngineError as exc:
                raise StoreError(f"the store failed: {exc}") from None

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except EngineError as exc:
                raise StoreError(f"the store failed: {exc}") from None

    # -- invites -----------------------------------------------------------

    def create_invite(self, name: str, uses: int = 1,
                      expires_in: float | None = None,
                      now: float | None = None) -> bytes:
        """Make an invite for `name`; return its token (shown once, not stored)."""
        name = normalize_name(name)
        if isinstance(uses, bool) or not isinstance(uses, int) or uses < 1:
            raise StoreError(f"an invite needs at least one use, not {uses!r}")
        if expires_in is not None and expires_in <= 0:
            raise StoreError(f"an invite must expire in the future, not in {expires_in!r} s")
        now = _now(now)
        expires_at = None if expires_in is None else now + expires_in
        token = secrets.token_bytes(TOKEN_LEN)
        with self._write() as db:
            if self._active_by_name(db, name) is not None:
                raise StoreError(f"the name {name!r} already belongs to a member")
            db.execute(
                "INSERT INTO invites (token_hash, name, uses_left, expires_at, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (_token_hash(token), name, uses, expires_at, now))
        return token

    def invite(self, token: bytes) -> Invite | None:
        rows = self._read(f"SELECT {_INVITE_COLUMNS} FROM invites WHERE token_hash = ?",
                          (_token_hash(token),))
        return _invite(rows[0] if rows else None)

    def invites(self, now: float | None = None) -> list[Invite]:
        """Invites that can still be redeemed, by name then age."""
        return [_invite(row) for row in self._read(
            f"SELECT {_INVITE_COLUMNS} FROM invites"
            " WHERE revoked_at IS NULL AND uses_left > 0"
            " AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY name, created", (_now(now),))]

    def revoke_invite(self, token: bytes, now: float | None = None) -> Invite:
        """Withdraw one invite (idempotent); StoreError if the token is unknown."""
        now = _now(now)
        key = _token_hash(token)
        with self._write() as db:
            db.execute("UPDATE invites SET revoked_at = ?"
                       " WHERE token_hash = ? AND revoked_at IS NULL", (now, key))
            row = db.execute(f"SELECT {_INVITE_COLUMNS} FROM invites WHERE token_hash = ?",
                             (key,)).fetchone()
        if row is None:
            raise InviteUnknown()
        return _invite(row)

    def revoke_invites(self, name: str, now: float | None = None) -> int:
        """Withdraw every invite for `name` that could still be redeemed; how many there were."""
        now = _now(now)
        with self._write() as db:
            return db.execute("UPDATE invites SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL"
                              " AND uses_left > 0 AND (expires_at IS NULL OR expires_at > ?)",
                              (now, normalize_name(name), now)).rowcount

    def redeem_invite(self, token: bytes, member_id: str, pubkey: bytes,
                      now: float | None = None) -> Member:
        """Turn an invite into a member, or raise an InviteError.

        A key that is already a member gets its member back and the invite
        keeps its uses, so a join whose answer was lost can be retried with
        the same token.  This check comes right after "is the token known",
        before revoked/expired/used, for the same reason.
        """
        if not isinstance(member_id, str) or not member_id:
            raise StoreError("a member id must be a non-empty string")
        pubkey = bytes(pubkey)
        if len(pubkey) != PUBKEY_LEN:
            raise StoreError(f"a member key is {PUBKEY_LEN} bytes, not {len(pubkey)}")
        now = _now(now)
        key = _token_hash(token)
        with self._write() as db:
            row = db.execute("SELECT name, uses_left, expires_at, revoked_at"
                             " FROM invites WHERE token_hash = ?", (key,)).fetchone()
            if row is None:
                raise InviteUnknown()
            invite_name, uses_left, expires_at, revoked_at = row
            existing = _member(db.execute(
                f"SELECT {_MEMBER_COLUMNS} FROM members WHERE pubkey = ?",
                (pubkey,)).fetchone())
            if existing is not None:
                if existing.revoked:
                    raise MemberRevoked(existing.name)
                return existing
            if revoked_at is not None:
                raise InviteRevoked()
            if expires_at is not None and now >= expires_at:
                raise InviteExpired()
            if uses_left < 1:
                raise InviteUsed()
            if db.execute("SELECT 1 FROM members WHERE id = ?", (member_id,)).fetchone():
                raise StoreError(f"member id {member_id!r} already belongs to another key")
            name = self._free_name(db, invite_name)
            db.execute("UPDATE invites SET uses_left = uses_left - 1 WHERE token_hash = ?",
                       (key,))
            db.execute("INSERT INTO members (id, name, pubkey, created, invite)"
                       " VALUES (?, ?, ?, ?, ?)", (member_id, name, pubkey, now, key))
            return _member(db.execute(f"SELECT {_MEMBER_COLUMNS} FROM members WHERE id = ?",
                                      (member_id,)).fetchone())

    @staticmethod
    def _active_by_name(db: Engine, name: str) -> Member | None:
        return _member(db.execute(
            f"SELECT {_MEMBER_COLUMNS} FROM members"
            " WHERE name = ? AND revoked_at IS NULL", (name,)).fetchone())

    def _free_name(self, db: Engine, base: str) -> str:
        """`base`, or base-2, base-3 ... : the first not held by an active member."""
        candidate, n = base, 1
        while self._active_by_name(db, candidate) is not None:
            n += 1
            suffix = f"-{n}"
            candidate = base[:NAME_MAX - len(suffix)] + suffix
        return candidate

    # -- members -----------------------------------------------------------

    def member_by_pubkey(self, pubkey: bytes) -> Member | None:
        """The member with this key, removed or not (check `.revoked`)."""
        rows = self._read(f"SELECT {_MEMBER_COLUMNS} FROM members WHERE pubkey = ?",
                          (bytes(pubkey),))
        return _member(rows[0] if rows else None)

    def member_by_name(self, name: str) -> Member | None:
        """The active member with this name, else the latest removed one."""
        rows = self._read(
            f"SELECT {_MEMBER_COLUMNS} FROM members WHERE name = ?"
            " ORDER BY revoked_at IS NOT NULL, revoked_at DESC LIMIT 1",
            (name.strip().lower(),))
        return _member(rows[0] if rows else None)

    def members(self) -> list[Member]:
        """All members, removed ones included, ordered by name."""
        return [_member(row) for row in self._read(
            f"SELECT {_MEMBER_COLUMNS} FROM members"
            " ORDER BY name, revoked_at IS NOT NULL, created")]

    def revoke_member(self, name: str, now: float | None = None) -> Member:
        """Remove the member called `name` and withdraw pending invites for it.

        Removing a member who is already removed returns it unchanged.
        """
        name = name.strip().lower()
        now = _now(now)
        with self._write() as db:
            db.execute("UPDATE members SET revoked_at = ?"
                       " WHERE name = ? AND revoked_at IS NULL", (now, name))
            row = db.execute(
                f"SELECT {_MEMBER_COLUMNS} FROM members WHERE name = ?"
                " ORDER BY revoked_at DESC LIMIT 1", (name,)).fetchone()
            if row is None:
                raise StoreError(f"no member named {name!r}")
            db.execute("UPDATE invites SET revoked_at = ?"
                       " WHERE name = ? AND revoked_at IS NULL AND uses_left > 0",
                       (now, name))
        return _member(row)

    def active_revoked_ids(self) -> set[str]:
        """Ids of removed members (a hub drops their links)."""
        return {row[0] for row in self._read(
            "SELECT id FROM members WHERE revoked_at IS NOT NULL")}

    def set_online(self, member_id: str, online_as: str | None,
                   now: float | None = None) -> None:
        """Record that a member's link came up as `online_as`, or went (None)."""
        with self._write() as db:
            cursor = db.execute("UPDATE members SET online_as = ?, last_seen = ?"
                                " WHERE id = ?", (online_as, _now(now), member_id))
            if cursor.rowcount == 0:
                raise StoreError(f"no member with id {member_id!r}")

    def set_release(self, member_id: str, release: str) -> None:
        """Record the Ladder release a member's agent says it runs."""
        with self._write() as db:
            db.execute("UPDATE members SET agent_release = ? WHERE id = ?", (release, member_id))

    def clear_online(self) -> None:
        """Mark everybody and every device offline (a starting hub has no links yet)."""
        with self._write() as db:
            db.execute("UPDATE members SET online_as = NULL WHERE online_as IS NOT NULL")
            db.execute("UPDATE devices SET online = 0 WHERE online <> 0")

    def data_version(self) -> int:
        """Changes when another connection commits: SQLite's PRAGMA data_version, PostgreSQL's count of
        other connections' write transactions (engines.Postgres says why a count)."""
        with self._lock:
            try:
                return self._db.data_version()
            except EngineError as exc:
                raise StoreError(f"the store failed: {exc}") from None

    def device_key(self, fallback: Callable[[], bytes]) -> bytes:
        """The key that devices' secrets are stored under: on SQLite `fallback()` (the file beside hub.db,
        HubConfig.device_key), on PostgreSQL one kept in the database, made once by whichever process asks
        first, so that every hub process on it admits the same devices."""
        with self._lock:
            try:
                return self._db.device_key(fallback)
            except EngineError as exc:
                raise StoreError(f"the store failed: {exc}") from None

    # -- devices -----------------------------------------------------------

    def add_device(self, owner: str, name: str, device_key: bytes, *, exit: str = "auto",
                   rules: str | None = None, rate: int | None = None, daily_cap: int | None = None,
                   expires_in: float | None = None, now: float | None = None) -> tuple[Device, str]:
        """Add device `name` for the active member called `owner`; return it and its token (shown once).

        Its identity is made here; the token is not stored, only keyed hashes
        of it and of its password's digits.
        """
        name = normalize_name(name)
        if expires_in is not None and expires_in <= 0:
            raise StoreError(f"a device must expire in the future, not in {expires_in!r} s")
        for what, amount in (("rate", rate), ("daily cap", daily_cap)):
            if amount is not None and amount <= 0:
                raise StoreError(f"a device's {what} must be positive, not {amount!r}")
        now = _now(now)
        token = base64.urlsafe_b64encode(secrets.token_bytes(DEVICE_TOKEN_LEN)).rstrip(b"=").decode()
        digits = hashlib.sha224(device_password(device_key, token).encode()).hexdigest()
        signing = Ed25519PrivateKey.generate()
        noise_private, _ = generate_keypair()
        device_id = id_of_key(public_bytes(signing))
        with self._write() as db:
            member = self._active_by_name(db, normalize_name(owner))
            if member is None:
                raise StoreError(f"no active member named {owner!r}")
            if db.execute("SELECT 1 FROM devices WHERE owner = ? AND name = ? AND revoked_at IS NULL",
                          (member.id, name)).fetchone():
                raise StoreError(f"{member.name} already has a device named {name!r}")
            (count,) = db.execute("SELECT COUNT(*) FROM devices WHERE owner = ? AND revoked_at IS NULL",
                                  (member.id,)).fetchone()
            if count >= DEVICES_PER_MEMBER:
                raise StoreError(f"{member.name} has {count} devices, as many as a member may: "
                                 "remove one first")
            db.execute(
                "INSERT INTO devices (id, owner, name, created, expires_at, exit, rules, rate, daily_cap,"
                " signing_key, noise_key, door_hash, token_hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (device_id, member.id, name, now, None if expires_in is None else now + expires_in, exit,
                 rules, rate, daily_cap, signing.private_bytes_raw(), noise_private,
                 _keyed(device_key, digits.encode()), _keyed(device_key, token.encode())))
            device = _device(db.execute(f"SELECT {_DEVICE_COLUMNS} FROM {_DEVICES} WHERE d.id = ?",
                                        (device_id,)).fetchone())
        return device, token

    def _usable_by(self, column: str, digest: bytes, now: float | None) -> Device | None:
        rows = self._read(f"SELECT {_DEVICE_COLUMNS}, d.{column} FROM {_DEVICES}"
                          f" WHERE d.{column} = ? AND {_USABLE}", (digest, _now(now)))
        # Found by a keyed hash, so the lookup's timing says nothing of the secret (a prober cannot
        # choose the hash's bytes); the constant-time confirmation is the rule for secrets kept anyway.
        if rows and hmac.compare_digest(bytes(rows[0][-1]), digest):
            return _device(rows[0][:-1])
        return None

    def device_by_door(self, device_key: bytes, digits: bytes, now: float | None = None) -> Device | None:
        """The usable device whose password's SHA-224 is `digits` (56 hex digits), or None."""
        return self._usable_by("door_hash", _keyed(device_key, digits.lower()), now)

    def device_by_token(self, device_key: bytes, token: str, now: float | None = None) -> Device | None:
        """The usable device with this token (its subscription URL's secret), or None."""
        return self._usable_by("token_hash", _keyed(device_key, token.encode()), now)

    def devices(self) -> list[Device]:
        """All devices, revoked ones included, by owner and name."""
        return [_device(row) for row in self._read(
            f"SELECT {_DEVICE_COLUMNS} FROM {_DEVICES}"
            " ORDER BY m.name, d.name, d.revoked_at IS NOT NULL, d.created")]

    def revoke_device(self, label: str, now: float | None = None) -> Device:
        """Revoke the active device `owner/name`, or `name` when one owner alone has it."""
        owner, _, name = label.strip().lower().rpartition("/")
        query = (f"SELECT {_DEVICE_COLUMNS} FROM {_DEVICES}"
                 " WHERE d.name = ? AND d.revoked_at IS NULL AND m.revoked_at IS NULL")
        args: tuple = (name,)
        if owner:
            query += " AND m.name = ?"
            args += (owner,)
        with self._write() as db:
            rows = db.execute(query, args).fetchall()
            if not rows:
                raise StoreError(f"no active device {label!r}")
            if len(rows) > 1:
                labels = ", ".join(sorted(_device(row).label for row in rows))
                raise StoreError(f"{label!r} names more than one device ({labels}): say owner/name")
            device = _device(rows[0])
            db.execute("UPDATE devices SET revoked_at = ? WHERE id = ?", (_now(now), device.id))
        return device

    def unusable_device_ids(self, now: float | None = None) -> set[str]:
        """Ids of devices the hub must cut: revoked, expired, or their owner removed."""
        return {row[0] for row in self._read(
            f"SELECT d.id FROM {_DEVICES} WHERE NOT ({_USABLE})", (_now(now),))}

    def set_device_online(self, device_id: str, online: bool, now: float | None = None) -> None:
        """Record that the hub began or stopped serving the device."""
        with self._write() as db:
            db.execute("UPDATE devices SET online = ?, last_seen = ? WHERE id = ?",
                       (int(online), _now(now), device_id))

    def add_device_usage(self, device_id: str, nbytes: int, now: float | None = None) -> None:
        """Count `nbytes` more for the device today and in all; it was seen at `now`."""
        now = _now(now)
        day = utc_day(now)
        with self._write() as db:
            db.execute("UPDATE devices SET day_bytes = CASE WHEN day = ? THEN day_bytes + ? ELSE ? END,"
                       " day = ?, total_bytes = total_bytes + ?, last_seen = ? WHERE id = ?",
                       (day, nbytes, nbytes, day, nbytes, now, device_id))

    # -- peer hubs -----------------------------------------------------------

    def create_peer_invite(self, local: str, name: str, expires_in: float = PEER_INVITE_LIFETIME,
                           now: float | None = None) -> bytes:
        """A single-use invite for another hub to peer with hub `local` as `name`; its token, once."""
        name = normalize_name(name)
        now = _now(now)
        token = secrets.token_bytes(TOKEN_LEN)
        with self._write() as db:
            self._peer_name_free(db, local, name)
            db.execute("INSERT INTO peers (local, name, token_hash, expires_at, created)"
                       " VALUES (?, ?, ?, ?, ?)", (local, name, _token_hash(token), now + expires_in, now))
        return token

    def redeem_peer_invite(self, local: str, token: bytes, hub_id: str, pubkey: bytes,
                           now: float | None = None) -> Peer:
        """The peering a hub with `pubkey` redeems with `token`, or an InviteError (InviteUnknown for a
        token nobody made). The same hub redeeming again (its answer was lost) gets the same peering."""
        now = _now(now)
        with self._write() as db:
            key = _token_hash(token)
            row = db.execute("SELECT hub_id, pubkey, expires_at, removed_at FROM peers"
                             " WHERE local = ? AND token_hash = ?", (local, key)).fetchone()
            if row is None:
                raise InviteUnknown()
            redeemed_by, redeemed_key, expires_at, removed_at = row
            if removed_at is not None:
                raise InviteRevoked()
            if redeemed_by is not None:
                if bytes(redeemed_key) != bytes(pubkey):
                    raise InviteUsed()
            else:
                if expires_at is not None and now >= expires_at:
                    raise InviteExpired()
                if hub_id == local:
                    raise StoreError("a hub cannot peer with itself")
                taken = self._peer_of_hub(db, local, hub_id)
                if taken is not None:
                    raise StoreError(f"that hub already peers with this one (as {taken[0]!r})")
                db.execute("UPDATE peers SET hub_id = ?, pubkey = ?, expires_at = NULL WHERE token_hash = ?",
                           (hub_id, bytes(pubkey), key))
            row = db.execute(f"SELECT {_PEER_COLUMNS} FROM peers WHERE token_hash = ?", (key,)).fetchone()
            return _peer(row)

    def add_peer(self, local: str, name: str, hub_id: str, pubkey: bytes, address: str, fingerprint: str,
                 now: float | None = None) -> Peer:
        """A peering this hub redeemed at the hub at `address`, which it dials from now on."""
        name = normalize_name(name)
        if hub_id == local:
            raise StoreError("a hub cannot peer with itself")
        with self._write() as db:
            self._peer_name_free(db, local, name)
            taken = self._peer_of_hub(db, local, hub_id)
            if taken is not None:
                raise StoreError(f"this hub already peers with that one (as {taken[0]!r})")
            db.execute("INSERT INTO peers (local, name, hub_id, pubkey, address, fingerprint, created)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (local, name, hub_id, bytes(pubkey), address, fingerprint, _now(now)))
        return self._peers(local, "name = ?", (name,))[0]

    @staticmethod
    def _peer_of_hub(db: Engine, local: str, hub_id: str) -> tuple | None:
        return db.execute("SELECT name FROM peers WHERE local = ? AND hub_id = ? AND removed_at IS NULL",
                          (local, hub_id)).fetchone()

    @staticmethod
    def _peer_name_free(db: Engine, local: str, name: str) -> None:
        if db.execute("SELECT 1 FROM peers WHERE local = ? AND name = ? AND removed_at IS NULL",
                      (local, name)).fetchone():
            raise StoreError(f"this hub already has a peer (or a peer invite) named {name!r}")

    def _peers(self, local: str, where: str, args: tuple) -> list[Peer]:
        return [_peer(row) for row in self._read(
            f"SELECT {_PEER_COLUMNS} FROM peers WHERE local = ? AND removed_at IS NULL AND {where}"
            " ORDER BY name", (local, *args))]

    def peers(self, local: str, now: float | None = None) -> list[Peer]:
        """Hub `local`'s peerings and its peer invites still waiting, by name."""
        return self._peers(local, "(hub_id IS NOT NULL OR expires_at > ?)", (_now(now),))

    def peer_by_key(self, local: str, pubkey: bytes) -> Peer | None:
        """The redeemed peering of the hub with `pubkey`, if it is one of hub `local`'s."""
        found = self._peers(local, "pubkey = ?", (bytes(pubkey),))
        return found[0] if found else None

    def remove_peer(self, local: str, name: str, now: float | None = None) -> Peer:
        """End the peering (or withdraw the invite) named `name`; StoreError if there is none."""
        name = normalize_name(name)
        with self._write() as db:
            row = db.execute(f"SELECT {_PEER_COLUMNS} FROM peers WHERE local = ? AND name = ?"
                             " AND removed_at IS NULL", (local, name)).fetchone()
            if row is None:
                raise StoreError(f"this hub has no peer named {name!r}")
            db.execute("UPDATE peers SET removed_at = ? WHERE local = ? AND name = ? AND removed_at IS NULL",
                       (_now(now), local, name))
        return _peer(row)

    def remove_peer_by_hub(self, local: str, hub_id: str, now: float | None = None) -> Peer | None:
        """End the peering with the hub `hub_id` (it ended it on its side); None if there was none."""
        with self._write() as db:
            row = db.execute(f"SELECT {_PEER_COLUMNS} FROM peers WHERE local = ? AND hub_id = ?"
                             " AND removed_at IS NULL", (local, hub_id)).fetchone()
            if row is not None:
                db.execute("UPDATE peers SET removed_at = ? WHERE local = ? AND hub_id = ?"
                           " AND removed_at IS NULL", (_now(now), local, hub_id))
        return None if row is None else _peer(row)

    # -- ledger ----------------------------------------------------------------

    def ledger_append(self, local: str, kind: str, payer: str, payee: str, carried: int, channel: str,
                      seq: int, receipt: dict[str, str], time: int, limit: int | None,
                      amount: int | None = None) -> Entry | None:
        """Record that the exit of `payee` carried `carried` bytes for `payer` (receipt `seq` of `channel`
        says so), as the next entry of hub `local`'s ledger; the Entry, or None if that receipt is
        already recorded (nothing is written then).

        A local payer (kinds "transfer" and "debit") with a `limit` pays at most what keeps its balance
        above minus the limit; "credit" moves `amount`, what the payer's own hub debited (its limit
        applied there), at most `carried`.
        """
        if kind not in KINDS:
            raise StoreError(f"a ledger entry is one of {', '.join(KINDS)}, not {kind!r}")
        if carried < 0 or seq < 1:
            raise StoreError(f"a ledger entry carries 0 bytes or more from receipt 1 on, not {carried} "
                             f"from receipt {seq}")
        with self._write() as db:
            if db.execute("SELECT 1 FROM ledger WHERE local = ? AND channel = ? AND kind = ? AND seq = ?",
                          (local, channel, kind, seq)).fetchone():
                return None
            if amount is not None:
                amount = max(0, min(amount, carried))
            elif limit is not None and kind != "credit":
                amount = min(carried, max(0, self._balance(db, local, payer) + limit))
            else:
                amount = carried
            index = int(db.execute(_LEDGER_SIZE, (local,)).fetchone()[0])
            entry = Entry(index, time, kind, payer, payee, amount, carried, channel, seq, receipt)
            data = entry.data()
            db.execute("INSERT INTO ledger (local, idx, time, kind, payer, payee, amount, carried, channel,"
                       " seq, data, leaf) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (local, index, time, kind, payer, payee, amount, carried, channel, seq, data,
                        leaf_hash(data)))
            month = utc_month(time)
            self._add_to_account(db, local, payer, month, spent=amount)
            self._add_to_account(db, local, payee, month, earned=amount)
        return entry

    @staticmethod
    def _balance(db: Engine, local: str, account: str) -> int:
        row = db.execute("SELECT earned - spent FROM ledger_accounts WHERE local = ? AND account = ?",
                         (local, account)).fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def _add_to_account(db: Engine, local: str, account: str, month: str, earned: int = 0,
                        spent: int = 0) -> None:
        """Add to an account's totals; a later month than the stored one starts the monthly totals anew
        (an entry of an earlier month, the clock set back, counts in the stored one)."""
        db.execute(
            "INSERT INTO ledger_accounts (local, account, earned, spent, month, month_earned, month_spent)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (local, account) DO UPDATE SET"
            " earned = ledger_accounts.earned + excluded.earned,"
            " spent = ledger_accounts.spent + excluded.spent,"
            " month_earned = excluded.month_earned + CASE WHEN excluded.month > ledger_accounts.month"
            "  THEN 0 ELSE ledger_accounts.month_earned END,"
            " month_spent = excluded.month_spent + CASE WHEN excluded.month > ledger_accounts.month"
            "  THEN 0 ELSE ledger_accounts.month_spent END,"
            " month = CASE WHEN excluded.month > ledger_accounts.month"
            "  THEN excluded.month ELSE ledger_accounts.month END",
            (local, account, earned, spent, month, earned, spent))

    def ledger_size(self, local: str) -> int:
        """How many entries hub `local`'s ledger holds (its indices are 0 to size - 1)."""
        return int(self._read(_LEDGER_SIZE, (local,))[0][0])

    def ledger_rows(self, local: str, start: int = 0, stop: int | None = None
                    ) -> Iterator[tuple[int, bytes, bytes]]:
        """(index, leaf data, leaf hash) of entries `start` to `stop` (default: the size when asked), in
        order, read LEDGER_ROWS_BATCH at a time so that a long ledger is never in memory at once."""
        stop = self.ledger_size(local) if stop is None else stop
        while start < stop:
            rows = self._read("SELECT idx, data, leaf FROM ledger WHERE local = ? AND idx >= ? AND idx < ?"
                              " ORDER BY idx LIMIT ?", (local, start, stop, LEDGER_ROWS_BATCH))
            if not rows:
                return
            for index, data, leaf in rows:
                yield int(index), _blob(data), _blob(leaf)
            start = int(rows[-1][0]) + 1

    def ledger_leaves(self, local: str, start: int = 0) -> list[bytes]:
        """The leaf hashes of entries `start` on, in order (what a Merkle tree is built from)."""
        return [_blob(leaf) for (leaf,) in self._read(
            "SELECT leaf FROM ledger WHERE local = ? AND idx >= ? ORDER BY idx", (local, start))]

    def ledger_entries_of(self, local: str, account: str, limit: int = 500) -> list[Entry]:
        """The latest `limit` entries `account` paid or earned in, oldest first. A member id matches the
        member as a local account and as another hub's ("id@hub")."""
        prefix = account + "@"
        rows = self._read(
            "SELECT data FROM ledger WHERE local = ? AND (payer = ? OR payee = ?"
            " OR substr(payer, 1, ?) = ? OR substr(payee, 1, ?) = ?) ORDER BY idx DESC LIMIT ?",
            (local, account, account, len(prefix), prefix, len(prefix), prefix, limit))
        return [Entry.from_data(_blob(data)) for (data,) in reversed(rows)]

    def account(self, local: str, account: str, now: float | None = None) -> Account:
        """`account`'s credits at hub `local` (all zero for an account that never paid nor earned)."""
        found = self._accounts(local, "account = ?", (account,), now)
        return found[0] if found else Account(account, 0, 0, 0, 0, 0)

    def accounts(self, local: str, now: float | None = None) -> list[Account]:
        """Every account that paid or earned at hub `local`, richest first."""
        return self._accounts(local, "1 = 1", (), now)

    def _accounts(self, local: str, where: str, args: tuple, now: float | None) -> list[Account]:
        month = utc_month(_now(now))
        rows = self._read(
            "SELECT account, earned, spent, month, month_earned, month_spent"
            f" FROM ledger_accounts WHERE local = ? AND {where} ORDER BY earned - spent DESC, account",
            (local, *args))
        found = []
        for account, earned, spent, stored, month_earned, month_spent in rows:
            # Totals of a month gone by are this month's zero.
            this_month = (month_earned, month_spent) if stored == month else (0, 0)
            found.append(Account(account, earned - spent, earned, spent, *this_month))
        return found

    def add_checkpoint(self, local: str, size: int, time: int, envelope: dict[str, str]) -> bool:
        """Keep hub `local`'s signed checkpoint of its first `size` entries; False (nothing changed) if one
        of that size is kept already. StoreError for a size past the ledger's end."""
        with self._write() as db:
            entries = int(db.execute(_LEDGER_SIZE, (local,)).fetchone()[0])
            if not 0 <= size <= entries:
                raise StoreError(f"a checkpoint of {size} entries, but the ledger holds {entries}")
            if db.execute("SELECT 1 FROM ledger_checkpoints WHERE local = ? AND size = ?",
                          (local, size)).fetchone():
                return False
            db.execute("INSERT INTO ledger_checkpoints (local, size, time, envelope) VALUES (?, ?, ?, ?)",
                       (local, size, time, json.dumps(envelope, sort_keys=True)))
        return True

    def checkpoints(self, local: str) -> list[dict[str, str]]:
        """Hub `local`'s checkpoint envelopes, by size."""
        return [json.loads(envelope) for (envelope,) in self._read(
            "SELECT envelope FROM ledger_checkpoints WHERE local = ? ORDER BY size", (local,))]

    def latest_checkpoint(self, local: str) -> dict[str, str] | None:
        """The checkpoint of the most entries, or None before the first."""
        rows = self._read("SELECT envelope FROM ledger_checkpoints WHERE local = ?"
                          " ORDER BY size DESC LIMIT 1", (local,))
        return json.loads(rows[0][0]) if rows else None

    def peer_ledger(self, local: str, hub_id: str) -> PeerLedger | None:
        """What hub `local` holds of peer hub `hub_id`'s ledger, or None before its first checkpoint."""
        rows = self._read("SELECT envelope, checked, conflict FROM peer_checkpoints WHERE local = ?"
                          " AND hub_id = ?", (local, hub_id))
        if not rows:
            return None
        envelope, checked, conflict = rows[0]
        return PeerLedger(json.loads(envelope), float(checked),
                          None if conflict is None else json.loads(conflict))

    def keep_peer_checkpoint(self, local: str, hub_id: str, envelope: dict[str, str],
                             now: float | None = None) -> None:
        """A checkpoint of peer `hub_id`'s ledger that held against the one held before (hub/credits.py)."""
        with self._write() as db:
            db.execute("INSERT INTO peer_checkpoints (local, hub_id, envelope, checked) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (local, hub_id) DO UPDATE SET envelope = excluded.envelope,"
                       " checked = excluded.checked", (local, hub_id, json.dumps(envelope, sort_keys=True),
                                                       _now(now)))

    def peer_conflict(self, local: str, hub_id: str, envelope: dict[str, str], reason: str,
                      now: float | None = None) -> bool:
        """Keep a checkpoint of peer `hub_id` that did not hold, and why, unless one is kept already (the
        first is the evidence); False if one was. The peer's held checkpoint must exist."""
        evidence = json.dumps({"checkpoint": envelope, "reason": reason, "time": _now(now)}, sort_keys=True)
        with self._write() as db:
            changed = db.execute("UPDATE peer_checkpoints SET conflict = ? WHERE local = ? AND hub_id = ?"
                                 " AND conflict IS NULL", (evidence, local, hub_id)).rowcount
        return changed > 0
