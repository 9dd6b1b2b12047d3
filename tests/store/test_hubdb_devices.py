"""Tests for the devices in hub.db: identities, secrets stored only as keyed hashes, revocation, usage."""

import hashlib
import sqlite3

import pytest

from ladder.store import hubdb
from ladder.store.hubdb import DB_FILENAME, HubStore, StoreError, device_password, utc_day

T0 = 1_700_000_000.0
DEVICE_KEY = bytes(range(32))


def with_members(s: HubStore) -> HubStore:
    for n, name in enumerate(("alice", "bob"), 1):
        s.redeem_invite(s.create_invite(name, now=T0), f"m{n:03d}", bytes([n]) * 32, now=T0)
    return s


@pytest.fixture
def store(target):
    with HubStore(target) as s:
        yield with_members(s)


def digits_of(token: str) -> bytes:
    return hashlib.sha224(device_password(DEVICE_KEY, token).encode()).hexdigest().encode()


def test_add_makes_an_identity_and_a_token_that_opens_the_door(store):
    device, token = store.add_device("Alice", "Phone", DEVICE_KEY, exit="US", rules="inside-cn",
                                     rate=5_000_000, daily_cap=2 << 30, expires_in=86400, now=T0)
    assert device.label == "alice/phone" and device.owner == "m001"
    assert (device.exit, device.rules) == ("US", "inside-cn")
    assert (device.rate, device.daily_cap) == (5_000_000, 2 << 30)
    assert device.expires_at == T0 + 86400 and len(device.signing_key) == len(device.noise_key) == 32
    assert len(token) == 43  # 32 bytes, urlsafe base64 without padding
    found = store.device_by_door(DEVICE_KEY, digits_of(token), now=T0)
    assert found is not None and found.id == device.id
    assert store.device_by_door(DEVICE_KEY, digits_of(token).upper(), now=T0) is not None
    assert store.device_by_token(DEVICE_KEY, token, now=T0).id == device.id


def test_wrong_secrets_and_another_key_find_nothing(store):
    _, token = store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    assert store.device_by_door(DEVICE_KEY, b"0" * 56, now=T0) is None
    assert store.device_by_door(bytes(32), digits_of(token), now=T0) is None
    assert store.device_by_token(DEVICE_KEY, token + "x", now=T0) is None
    assert store.device_by_door(DEVICE_KEY, token.encode(), now=T0) is None


def secrets_of(token: str) -> list[bytes]:
    """What must not be stored: the token, the password, its digits, their unkeyed hashes."""
    password = device_password(DEVICE_KEY, token)
    assert token not in password  # the password is derived, not the token itself
    return [token.encode(), password.encode(), digits_of(token), hashlib.sha256(token.encode()).digest(),
            hashlib.sha256(digits_of(token)).digest()]


def test_only_keyed_hashes_of_the_secrets_are_stored(store):
    _, token = store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    [row] = store._db.execute("SELECT * FROM devices").fetchall()
    stored = b"".join(value if isinstance(value, bytes) else str(value).encode() for value in row)
    for secret in secrets_of(token):
        assert secret not in stored


def test_sqlite_s_files_hold_no_secret_either(tmp_path):
    """SQLite only: the bytes on disk, the write-ahead log included."""
    with with_members(HubStore(tmp_path)) as store:
        _, token = store.add_device("alice", "phone", DEVICE_KEY, now=T0)
        raw = (tmp_path / DB_FILENAME).read_bytes() + (tmp_path / f"{DB_FILENAME}-wal").read_bytes()
    for secret in secrets_of(token):
        assert secret not in raw


def test_names_are_unique_per_owner(store):
    store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    with pytest.raises(StoreError, match="already has a device named 'phone'"):
        store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    assert store.add_device("bob", "phone", DEVICE_KEY, now=T0)[0].label == "bob/phone"


@pytest.mark.parametrize("owner, name, kwargs, message", [
    ("carol", "phone", {}, "no active member named 'carol'"),
    ("alice", "my phone", {}, "invalid name"),
    ("alice", "phone", {"expires_in": 0}, "expire in the future"),
    ("alice", "phone", {"rate": 0}, "rate must be positive"),
    ("alice", "phone", {"daily_cap": -1}, "daily cap must be positive"),
])
def test_add_refusals(store, owner, name, kwargs, message):
    with pytest.raises(StoreError, match=message):
        store.add_device(owner, name, DEVICE_KEY, now=T0, **kwargs)


def test_revoked_expired_and_orphaned_devices_are_unknown(store):
    phone, phone_token = store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    tv, tv_token = store.add_device("alice", "tv", DEVICE_KEY, expires_in=60, now=T0)
    tablet, tablet_token = store.add_device("bob", "tablet", DEVICE_KEY, now=T0)
    assert store.unusable_device_ids(now=T0) == set()
    assert store.revoke_device("alice/phone", now=T0).id == phone.id
    assert store.device_by_door(DEVICE_KEY, digits_of(phone_token), now=T0) is None
    assert store.device_by_door(DEVICE_KEY, digits_of(tv_token), now=T0 + 59) is not None
    assert store.device_by_door(DEVICE_KEY, digits_of(tv_token), now=T0 + 60) is None
    store.revoke_member("bob", now=T0)
    assert store.device_by_token(DEVICE_KEY, tablet_token, now=T0) is None
    assert store.unusable_device_ids(now=T0 + 60) == {phone.id, tv.id, tablet.id}
    # the name is free again once revoked
    assert store.add_device("alice", "phone", DEVICE_KEY, now=T0)[0].id != phone.id


def test_revoke_by_name_alone_only_when_unique(store):
    store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    store.add_device("bob", "phone", DEVICE_KEY, now=T0)
    store.add_device("bob", "tv", DEVICE_KEY, now=T0)
    with pytest.raises(StoreError, match=r"more than one device \(alice/phone, bob/phone\)"):
        store.revoke_device("phone")
    assert store.revoke_device("tv").label == "bob/tv"
    with pytest.raises(StoreError, match="no active device 'bob/tv'"):
        store.revoke_device("bob/tv")
    with pytest.raises(StoreError, match="no active device"):
        store.revoke_device("carol/phone")


def test_usage_counts_per_utc_day_and_in_all(store):
    device, _ = store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    store.add_device_usage(device.id, 1000, now=T0)
    store.add_device_usage(device.id, 500, now=T0 + 1)
    [seen] = store.devices()
    assert (seen.day, seen.day_bytes, seen.total_bytes, seen.last_seen) == (utc_day(T0), 1500, 1500, T0 + 1)
    assert seen.bytes_on(utc_day(T0)) == 1500 and seen.bytes_on(utc_day(T0 + 86400)) == 0
    store.add_device_usage(device.id, 7, now=T0 + 86400)
    [seen] = store.devices()
    assert (seen.day_bytes, seen.total_bytes) == (7, 1507)


def test_keys_are_not_in_the_repr(store):
    device, _ = store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    assert device.signing_key.hex() not in repr(device) and "noise_key" not in repr(device)


def test_a_version_1_database_gains_devices(tmp_path):
    """SQLite only (test_hubdb_postgres.py migrates PostgreSQL's)."""
    db = sqlite3.connect(tmp_path / DB_FILENAME)
    db.executescript(hubdb._SCHEMA_V1 + "; PRAGMA user_version = 1;")
    db.close()
    with HubStore(tmp_path) as s:
        s.redeem_invite(s.create_invite("alice", now=T0), "m001", bytes(32), now=T0)
        assert s.add_device("alice", "phone", DEVICE_KEY, now=T0)[0].label == "alice/phone"


def test_online_is_set_by_the_hub_and_cleared_when_it_starts(store):
    device, _ = store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    store.set_device_online(device.id, True, now=T0 + 5)
    [seen] = store.devices()
    assert seen.online and seen.last_seen == T0 + 5
    store.clear_online()
    assert not store.devices()[0].online


def test_a_member_holds_at_most_devices_per_member(store, monkeypatch):
    monkeypatch.setattr(hubdb, "DEVICES_PER_MEMBER", 3)
    for n in range(3):
        store.add_device("alice", f"d{n}", DEVICE_KEY, now=T0)
    with pytest.raises(StoreError, match="as many as a member may"):
        store.add_device("alice", "d3", DEVICE_KEY, now=T0)
    store.add_device("bob", "d0", DEVICE_KEY, now=T0)  # each member's own
    store.revoke_device("alice/d0", now=T0)
    store.add_device("alice", "d3", DEVICE_KEY, now=T0)  # a removed one frees its place


def test_a_removed_member_s_devices_are_not_the_new_namesake_s(store):
    store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    store.revoke_member("alice")
    store.redeem_invite(store.create_invite("alice", now=T0), "m009", bytes([9]) * 32, now=T0)
    with pytest.raises(StoreError, match="no active device"):
        store.revoke_device("alice/phone", now=T0)  # the old alice's, not hers to remove
    store.add_device("alice", "phone", DEVICE_KEY, now=T0)
    assert store.revoke_device("alice/phone", now=T0).owner == "m009"
