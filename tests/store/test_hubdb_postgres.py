"""What only PostgreSQL has: its schema version row, the shared device key, its types' widths, its URLs."""

import threading

import psycopg
import pytest

from ladder.store import engines, hubdb
from ladder.store.engines import Postgres, redacted
from ladder.store.hubdb import SCHEMA_VERSION, HubStore, StoreError

T0 = 1_700_000_000.0


@pytest.fixture
def url(pg_cluster):
    return pg_cluster.schema()


def test_the_schema_is_made_in_the_url_s_schema_with_its_version(url):
    HubStore(url).close()
    with psycopg.connect(url) as db:
        assert db.execute("SELECT schema_version FROM ladder_meta").fetchone()[0] == SCHEMA_VERSION
        tables = {row[0] for row in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
    assert tables == {"ladder_meta", "invites", "members", "devices", "peers", "ledger", "ledger_accounts",
                      "ledger_checkpoints", "peer_checkpoints"}


def test_refuses_newer_schema(url):
    HubStore(url).close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE ladder_meta SET schema_version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="schema version"):
        HubStore(url)


def test_a_version_1_database_gains_devices_and_peers(url):
    engine = Postgres(url)
    engine.begin_write()
    for statement in hubdb._SCHEMA_V1.split(";"):
        if statement.strip():
            engine.execute(engine.ddl(statement))
    engine.set_schema_version(1)
    engine.commit()
    engine.close()
    with HubStore(url) as s:
        s.redeem_invite(s.create_invite("alice", now=T0), "m001", bytes(32), now=T0)
        assert s.add_device("alice", "phone", bytes(32), now=T0)[0].label == "alice/phone"
        assert s.create_peer_invite("h" * 24, "other", now=T0)


def test_an_unreachable_server_is_one_line_without_the_password(pg_cluster):
    dead = f"postgresql://ladder:hunter2@127.0.0.1:{pg_cluster.port + 1}/hub?password=hunter3"
    with pytest.raises(StoreError) as caught:
        HubStore(dead)
    message = str(caught.value)
    assert message.startswith("cannot connect to postgresql://ladder:***@127.0.0.1:"), message
    assert "\n" not in message and "hunter" not in message


def test_redacted_hides_passwords_only():
    assert redacted("postgresql://u:pw@db.example:5432/hub?sslmode=require&password=x") == \
        "postgresql://u:***@db.example:5432/hub?sslmode=require&password=***"
    assert redacted("postgresql://u@db/hub") == "postgresql://u@db/hub"


def test_the_device_key_is_the_database_s_and_made_once_by_the_first_of_two_racing(url):
    def fallback() -> bytes:
        raise AssertionError("PostgreSQL's device key is not the folder's")

    stores = [HubStore(url) for _ in range(2)]
    barrier = threading.Barrier(2)
    keys: list[bytes] = [b"", b""]

    def ask(i: int) -> None:
        barrier.wait()
        keys[i] = stores[i].device_key(fallback)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert keys[0] == keys[1] and len(keys[0]) == 32
        with HubStore(url) as later:
            assert later.device_key(fallback) == keys[0]
    finally:
        for s in stores:
            s.close()


def test_sqlite_s_device_key_is_the_fallback_s(tmp_path):
    with HubStore(tmp_path) as s:
        assert s.device_key(lambda: b"k" * 32) == b"k" * 32


def test_byte_counts_past_32_bits_and_times_to_the_microsecond(url):
    with HubStore(url) as s:
        s.redeem_invite(s.create_invite("alice", now=T0), "m001", bytes(32), now=T0 + 0.000125)
        device, _ = s.add_device("alice", "phone", bytes(32), daily_cap=1 << 40, now=T0)
        s.add_device_usage(device.id, 3 << 31, now=T0)
        s.add_device_usage(device.id, 3 << 31, now=T0)
        [seen] = s.devices()
        assert (seen.daily_cap, seen.day_bytes, seen.total_bytes) == (1 << 40, 3 << 32, 3 << 32)
        assert s.member_by_name("alice").created == T0 + 0.000125


def test_a_failed_write_changes_nothing_for_others(url):
    with HubStore(url) as hub, HubStore(url) as cli:
        seen = hub.data_version()
        with pytest.raises(StoreError, match="no member named"):
            cli.revoke_member("nobody")
        assert hub.data_version() == seen
        cli.create_invite("bob", now=T0)
        assert hub.data_version() != seen


def test_a_connection_lost_between_transactions_is_made_again(url):
    with HubStore(url) as s, psycopg.connect(url, autocommit=True) as admin:
        s.create_invite("alice", now=T0)
        admin.execute("SELECT pg_terminate_backend(%s)", (s._db._db.info.backend_pid,))
        assert [i.name for i in s.invites(now=T0)] == ["alice"]
        admin.execute("SELECT pg_terminate_backend(%s)", (s._db._db.info.backend_pid,))
        s.create_invite("bob", now=T0)
        assert [i.name for i in s.invites(now=T0)] == ["alice", "bob"]


def test_processes_opening_a_new_database_at_once_make_its_schema_once(url):
    """Hub processes started together on an empty database: one creates the tables, the rest wait."""
    barrier = threading.Barrier(4)
    outcomes: list[object] = [None] * 4

    def open_(i: int) -> None:
        barrier.wait()
        try:
            HubStore(url).close()
            outcomes[i] = "ok"
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=open_, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcomes == ["ok"] * 4


def test_a_write_that_times_out_waiting_for_another_s_lock_leaves_the_store_usable(url):
    with HubStore(url) as s, psycopg.connect(url) as other:
        s._db._db.execute("SET lock_timeout = '100ms'")
        other.execute("UPDATE ladder_meta SET writes = writes")  # holds the writers' lock, uncommitted
        with pytest.raises(StoreError, match="lock timeout"):
            s.create_invite("alice", now=T0)
        other.rollback()
        s.create_invite("bob", now=T0)
        assert [i.name for i in s.invites(now=T0)] == ["bob"]


def test_connections_carry_a_statement_timeout_and_keepalives(url):
    with HubStore(url) as s:
        db = s._db._db
        assert db.execute("SHOW statement_timeout").fetchone()[0] == f"{int(engines.STATEMENT_S)}s"
        assert db.info.get_parameters()["keepalives"] == "1"
