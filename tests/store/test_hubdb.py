"""Tests for ladder.store.hubdb: members and invites in hub.db."""

import os
import sqlite3
import stat
import threading

import pytest

from ladder.store.hubdb import (
    DB_FILENAME,
    SCHEMA_VERSION,
    HubStore,
    Invite,
    InviteError,
    InviteExpired,
    InviteRevoked,
    InviteUnknown,
    InviteUsed,
    Member,
    MemberRevoked,
    StoreError,
)

T0 = 1_700_000_000.0


def key(n: int) -> bytes:
    return bytes([n]) * 32


def mid(n: int) -> str:
    return f"m{n:03d}"


@pytest.fixture
def store(target):
    with HubStore(target) as s:
        yield s


# -- opening: SQLite's file (PostgreSQL's own in test_hubdb_postgres.py) --------


def test_folder_path_uses_hub_db(tmp_path):
    with HubStore(tmp_path):
        pass
    assert (tmp_path / DB_FILENAME).exists()


def test_file_mode_is_0600(tmp_path):
    old = os.umask(0)
    try:
        with HubStore(tmp_path / "x.db") as s:
            s.create_invite("alice", now=T0)
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_pragmas_and_schema_version(tmp_path):
    HubStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_FILENAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    with HubStore(tmp_path) as s:
        assert s._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_refuses_newer_schema(tmp_path):
    HubStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_FILENAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="schema version"):
        HubStore(tmp_path)


def test_refuses_non_database_file(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        HubStore(path)


def test_unopenable_path(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        HubStore(tmp_path / "missing-dir" / "hub.db")


# -- opening, on both engines ---------------------------------------------------


def test_close_is_idempotent(target):
    s = HubStore(target)
    s.close()
    s.close()


# -- create_invite -------------------------------------------------------------


@pytest.mark.parametrize("name, kwargs, message", [
    ("", {}, "invalid name"),
    ("a" * 33, {}, "invalid name"),
    ("bob smith", {}, "invalid name"),
    ("bob.smith", {}, "invalid name"),
    ("bøb", {}, "invalid name"),
    ("bob\n", {"uses": 0}, "at least one use"),
    ("bob", {"uses": 0}, "at least one use"),
    ("bob", {"uses": -3}, "at least one use"),
    ("bob", {"uses": True}, "at least one use"),
    ("bob", {"uses": 1.5}, "at least one use"),
    ("bob", {"expires_in": 0}, "expire in the future"),
    ("bob", {"expires_in": -1}, "expire in the future"),
    ("alice", {}, "already belongs to a member"),
    ("ALICE", {}, "already belongs to a member"),
])
def test_create_invite_refusals(store, name, kwargs, message):
    store.redeem_invite(store.create_invite("alice", now=T0), mid(1), key(1), now=T0)
    with pytest.raises(StoreError, match=message) as info:
        store.create_invite(name, now=T0, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("given, stored", [
    ("bob", "bob"),
    ("Bob", "bob"),
    ("  Bob-2_x ", "bob-2_x"),
    ("a" * 32, "a" * 32),
    ("0", "0"),
])
def test_create_invite_names(store, given, stored):
    token = store.create_invite(given, uses=2, expires_in=60, now=T0)
    assert isinstance(token, bytes) and len(token) == 16
    assert store.invite(token) == Invite(stored, 2, T0 + 60, T0, False)


def test_tokens_are_random_and_only_hash_stored(store):
    tokens = {store.create_invite("bob", now=T0) for _ in range(20)}
    assert len(tokens) == 20
    stored = {row[0] for row in store._db.execute("SELECT token_hash FROM invites")}
    assert not tokens & stored
    assert all(len(h) == 32 for h in stored)


def test_invite_for_removed_members_name_is_allowed(store):
    store.redeem_invite(store.create_invite("bob", now=T0), mid(1), key(1), now=T0)
    store.revoke_member("bob", now=T0)
    token = store.create_invite("bob", now=T0)
    member = store.redeem_invite(token, mid(2), key(2), now=T0)
    assert member.name == "bob" and not member.revoked
    assert store.member_by_name("bob").id == mid(2)
    assert [m.id for m in store.members()] == [mid(2), mid(1)]


# -- redeem_invite -------------------------------------------------------------


def test_redeem_creates_member(store):
    token = store.create_invite("Alice", now=T0)
    member = store.redeem_invite(token, mid(1), bytearray(key(1)), now=T0 + 5)
    assert member == Member(mid(1), "alice", key(1), T0 + 5, False, None, None)
    assert store.invite(token).uses_left == 0
    assert store.member_by_pubkey(key(1)) == member
    assert store.member_by_name("ALICE") == member


def _used(store, token):
    store.redeem_invite(token, mid(9), key(9), now=T0)


def _revoked(store, token):
    store.revoke_invite(token, now=T0)


def _revoked_via_member(store, token):
    store.redeem_invite(store.create_invite("carol", now=T0), mid(8), key(8), now=T0)
    store.revoke_member("carol", now=T0)


@pytest.mark.parametrize("invite_kwargs, prepare, now, error, message", [
    ({}, _used, T0, InviteUsed, "this invite has already been used"),
    ({"expires_in": 10}, None, T0 + 10, InviteExpired, "this invite has expired"),
    ({"expires_in": 10}, None, T0 + 1e6, InviteExpired, "expired"),
    ({}, _revoked, T0, InviteRevoked, "withdrawn"),
    # revoked wins over expired and used: the most deliberate reason is shown
    ({"expires_in": 10}, _revoked, T0 + 20, InviteRevoked, "withdrawn"),
    ({}, _revoked_via_member, T0, InviteRevoked, "withdrawn"),
    ({"expires_in": 10}, _used, T0 + 20, InviteExpired, "expired"),
])
def test_redeem_refusals(store, invite_kwargs, prepare, now, error, message):
    name = "carol" if prepare is _revoked_via_member else "bob"
    token = store.create_invite(name, now=T0, **invite_kwargs)
    if prepare:
        prepare(store, token)
    before = store.members()
    with pytest.raises(error, match=message):
        store.redeem_invite(token, mid(1), key(1), now=now)
    assert issubclass(error, InviteError)
    assert store.members() == before


def test_redeem_unknown_token(store):
    with pytest.raises(InviteUnknown, match="not known"):
        store.redeem_invite(b"\0" * 16, mid(1), key(1), now=T0)


@pytest.mark.parametrize("member_id, pubkey, message", [
    ("", key(1), "member id"),
    (None, key(1), "member id"),
    (mid(1), b"\1" * 31, "32 bytes"),
    (mid(1), b"\1" * 33, "32 bytes"),
])
def test_redeem_bad_arguments(store, member_id, pubkey, message):
    token = store.create_invite("bob", now=T0)
    with pytest.raises(StoreError, match=message):
        store.redeem_invite(token, member_id, pubkey, now=T0)
    assert store.invite(token).uses_left == 1


def test_redeem_id_of_another_key(store):
    store.redeem_invite(store.create_invite("a", now=T0), mid(1), key(1), now=T0)
    token = store.create_invite("b", now=T0)
    with pytest.raises(StoreError, match="another key"):
        store.redeem_invite(token, mid(1), key(2), now=T0)
    assert store.invite(token).uses_left == 1


def test_rejoin_same_key_is_idempotent(store):
    token = store.create_invite("alice", uses=1, now=T0)
    first = store.redeem_invite(token, mid(1), key(1), now=T0)
    # The same token again (answer lost), even though it has no uses left.
    assert store.redeem_invite(token, mid(1), key(1), now=T0 + 1) == first
    # Another invite does not rename the member nor lose a use.
    other = store.create_invite("zed", uses=3, now=T0)
    assert store.redeem_invite(other, mid(1), key(1), now=T0 + 2) == first
    assert store.invite(other).uses_left == 3
    assert len(store.members()) == 1


def test_rejoin_of_removed_key_is_refused(store):
    store.redeem_invite(store.create_invite("alice", now=T0), mid(1), key(1), now=T0)
    store.revoke_member("alice", now=T0)
    token = store.create_invite("newcomer", now=T0)
    with pytest.raises(MemberRevoked, match="removed"):
        store.redeem_invite(token, mid(1), key(1), now=T0)
    assert store.invite(token).uses_left == 1


def test_multi_use_invite_numbers_names(store):
    token = store.create_invite("team", uses=4, now=T0)
    names = [store.redeem_invite(token, mid(i), key(i), now=T0).name for i in range(1, 5)]
    assert names == ["team", "team-2", "team-3", "team-4"]
    with pytest.raises(InviteUsed):
        store.redeem_invite(token, mid(5), key(5), now=T0)
    assert [m.name for m in store.members()] == names


def test_numbered_names_fit_32_chars(store):
    base = "x" * 32
    token = store.create_invite(base, uses=3, now=T0)
    names = [store.redeem_invite(token, mid(i), key(i), now=T0).name for i in range(1, 4)]
    assert names == [base, "x" * 30 + "-2", "x" * 30 + "-3"]


def test_two_invites_same_name(store):
    a = store.create_invite("bob", now=T0)
    b = store.create_invite("bob", now=T0)
    assert store.redeem_invite(a, mid(1), key(1), now=T0).name == "bob"
    assert store.redeem_invite(b, mid(2), key(2), now=T0).name == "bob-2"


# -- invites listing and revoke_invite -----------------------------------------


def test_invites_lists_only_redeemable(store):
    live = store.create_invite("b-live", now=T0)
    store.create_invite("a-expiring", expires_in=10, now=T0)
    store.revoke_invite(store.create_invite("c-revoked", now=T0), now=T0)
    _used(store, store.create_invite("d-used", now=T0))
    assert [i.name for i in store.invites(now=T0)] == ["a-expiring", "b-live"]
    assert [i.name for i in store.invites(now=T0 + 10)] == ["b-live"]
    assert store.revoke_invite(live, now=T0).revoked
    assert store.revoke_invite(live, now=T0 + 1).revoked  # idempotent
    assert store.invites(now=T0) == [Invite("a-expiring", 1, T0 + 10, T0, False)]


def test_revoke_invites_by_name_withdraws_only_that_names_open_ones(store):
    first, second = store.create_invite("family", uses=3, now=T0), store.create_invite("family", now=T0)
    other = store.create_invite("bob", now=T0)
    store.create_invite("family-old", expires_in=5, now=T0)
    assert store.revoke_invites("Family", now=T0 + 1) == 2  # names are case-folded, as at creation
    assert store.revoke_invites("family", now=T0 + 2) == 0  # nothing open is left
    assert store.invite(first).revoked and store.invite(second).revoked and not store.invite(other).revoked
    assert [i.name for i in store.invites(now=T0 + 2)] == ["bob", "family-old"]


def test_revoke_unknown_invite(store):
    with pytest.raises(InviteUnknown):
        store.revoke_invite(b"nope")
    assert store.invite(b"nope") is None


# -- members, revoke_member, online ------------------------------------------


def test_lookups_of_unknown(store):
    assert store.member_by_pubkey(key(1)) is None
    assert store.member_by_name("nobody") is None
    assert store.members() == []
    assert store.active_revoked_ids() == set()


def test_members_ordered_by_name(store):
    for i, name in enumerate(["zoe", "adam", "mia"], 1):
        store.redeem_invite(store.create_invite(name, now=T0), mid(i), key(i), now=T0)
    assert [m.name for m in store.members()] == ["adam", "mia", "zoe"]


def test_revoke_member(store):
    pending = store.create_invite("bob", uses=2, now=T0)  # made before bob joined
    store.redeem_invite(store.create_invite("bob", now=T0), mid(1), key(1), now=T0)
    other = store.create_invite("eve", now=T0)
    member = store.revoke_member("Bob", now=T0 + 1)
    assert member.revoked and member.id == mid(1)
    assert store.member_by_pubkey(key(1)).revoked
    assert store.active_revoked_ids() == {mid(1)}
    assert store.invite(pending).revoked
    assert not store.invite(other).revoked
    assert store.revoke_member("bob") == member  # idempotent
    with pytest.raises(InviteRevoked):
        store.redeem_invite(pending, mid(2), key(2), now=T0)


def test_revoke_unknown_member(store):
    store.create_invite("ghost", now=T0)
    with pytest.raises(StoreError, match="no member named 'ghost'"):
        store.revoke_member("ghost")


def test_set_online_and_clear(store):
    store.redeem_invite(store.create_invite("a", now=T0), mid(1), key(1), now=T0)
    store.redeem_invite(store.create_invite("b", now=T0), mid(2), key(2), now=T0)
    store.set_online(mid(1), "exit+user", now=T0 + 1)
    store.set_online(mid(2), "user", now=T0 + 2)
    assert store.member_by_name("a").online_as == "exit+user"
    assert store.member_by_name("a").last_seen == T0 + 1
    store.set_online(mid(2), None, now=T0 + 3)
    assert (store.member_by_name("b").online_as, store.member_by_name("b").last_seen) == (None, T0 + 3)
    store.clear_online()
    a = store.member_by_name("a")
    assert (a.online_as, a.last_seen) == (None, T0 + 1)
    with pytest.raises(StoreError, match="no member with id"):
        store.set_online("nobody", "user")


# -- persistence and two processes --------------------------------------------


def test_persists_across_reopen(target):
    with HubStore(target) as s:
        token = s.create_invite("alice", uses=2, now=T0)
        s.redeem_invite(token, mid(1), key(1), now=T0)
        s.set_online(mid(1), "exit", now=T0)
    with HubStore(target) as s:
        assert s.member_by_pubkey(key(1)) == Member(mid(1), "alice", key(1), T0, False, "exit", T0)
        assert s.invite(token).uses_left == 1
        s.redeem_invite(token, mid(2), key(2), now=T0)
        assert [m.name for m in s.members()] == ["alice", "alice-2"]


def test_data_version_sees_other_connection(target):
    with HubStore(target) as hub, HubStore(target) as cli:
        hub.redeem_invite(hub.create_invite("bob", now=T0), mid(1), key(1), now=T0)
        seen = hub.data_version()
        hub.set_online(mid(1), "user")  # own writes do not count
        assert hub.data_version() == seen
        assert cli.member_by_name("bob").online_as == "user"
        cli.revoke_member("bob")
        assert hub.data_version() != seen
        assert hub.active_revoked_ids() == {mid(1)}


def _race_to_redeem(stores: list[HubStore], token: bytes, first_member: int) -> list[object]:
    """Each store redeems `token` at once, for members `first_member` and the next: what each got."""
    barrier = threading.Barrier(2)
    results: list[object] = [None, None]

    def join(i: int) -> None:
        barrier.wait()
        try:
            n = first_member + i
            results[i] = stores[i].redeem_invite(token, mid(n), key(n), now=T0)
        except Exception as exc:  # anything but InviteUsed fails below
            results[i] = exc

    threads = [threading.Thread(target=join, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_concurrent_redeem_of_single_use_invite(target):
    """Two connections race for one single-use invite: exactly one member results."""
    stores = [HubStore(target) for _ in range(2)]
    try:
        for round_ in range(8):
            token = stores[0].create_invite(f"solo{round_}", now=T0)
            results = _race_to_redeem(stores, token, first_member=10 * round_ + 1)
            members = [r for r in results if isinstance(r, Member)]
            losers = [r for r in results if isinstance(r, InviteUsed)]
            assert len(members) == 1 and len(losers) == 1, results
            assert stores[1].member_by_name(f"solo{round_}") == members[0]
        assert len(stores[0].members()) == 8
    finally:
        for s in stores:
            s.close()


def test_an_older_schema_is_copied_aside_before_it_is_upgraded(tmp_path):
    """SQLite keeps the old file beside the new one, so the release that wrote it can go on with it."""
    HubStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_FILENAME)  # what release 0.1.0 (schema 5) left
    db.execute("ALTER TABLE members DROP COLUMN agent_release")
    db.execute("INSERT INTO members (id, name, pubkey, created) VALUES (?, 'alice', ?, ?)",
               (mid(1), key(1), T0))
    db.execute("PRAGMA user_version = 5")
    db.commit()
    db.close()
    with HubStore(tmp_path) as s:
        [alice] = s.members()
        assert (alice.name, alice.release) == ("alice", None)
        s.set_release(alice.id, "0.2.0")
        assert s.member_by_name("alice").release == "0.2.0"
    old = sqlite3.connect(tmp_path / f"{DB_FILENAME}.schema5")
    assert old.execute("PRAGMA user_version").fetchone()[0] == 5
    assert old.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert old.execute("SELECT name FROM members").fetchall() == [("alice",)]
    assert "agent_release" not in {row[1] for row in old.execute("PRAGMA table_info(members)")}
    old.close()
    assert stat.S_IMODE((tmp_path / f"{DB_FILENAME}.schema5").stat().st_mode) == 0o600
    HubStore(tmp_path).close()  # at the current schema: no copy made again
    assert sorted(p.name for p in tmp_path.iterdir() if ".schema" in p.name) == [f"{DB_FILENAME}.schema5"]
