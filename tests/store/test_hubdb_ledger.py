"""The ledger in the hub's store, on both engines: indices, duplicate receipts, credit limits, accounts,
months and checkpoints."""

import threading
from calendar import timegm

import pytest
from rfc9162 import mth

from ladder.protocol.ledger import Entry, leaf_hash
from ladder.store import engines, hubdb
from ladder.store.hubdb import DB_FILENAME, Account, HubStore, StoreError

HUB, OTHER = "h" * 24, "o" * 24
ALICE, BOB, CAROL = "a" * 24, "b" * 24, "c" * 24
REMOTE = f"{'r' * 24}@{OTHER}"
RECEIPT = {"record": "e30", "signature": "c2ln", "pubkey": "a2V5"}  # the store keeps it, never reads it
JAN, FEB = timegm((2026, 1, 31, 23, 59, 59)), timegm((2026, 2, 1, 0, 0, 0))
T0 = JAN
LIMIT = 1000


@pytest.fixture
def store(target):
    with HubStore(target) as s:
        yield s


def pay(store, payer, payee, carried, channel="ch1", seq=1, kind="transfer", limit=None, time=T0,
        local=HUB):
    return store.ledger_append(local, kind, payer, payee, carried, channel, seq, RECEIPT, time, limit)


def test_entries_get_consecutive_indices_and_their_leaves_in_order(store):
    written = [pay(store, ALICE, BOB, 100 * n, seq=n) for n in range(1, 4)]
    assert [e.index for e in written] == [0, 1, 2] and store.ledger_size(HUB) == 3
    first = written[0]
    assert (first.kind, first.payer, first.payee, first.amount, first.carried, first.channel, first.seq,
            first.time, first.receipt) == ("transfer", ALICE, BOB, 100, 100, "ch1", 1, T0, RECEIPT)
    rows = list(store.ledger_rows(HUB))
    assert [(i, data, leaf) for i, data, leaf in rows] == [
        (e.index, e.data(), leaf_hash(e.data())) for e in written]
    assert [Entry.from_data(data) for _, data, _ in rows] == written
    assert [i for i, _, _ in store.ledger_rows(HUB, 1, 2)] == [1]
    assert store.ledger_leaves(HUB, 1) == [leaf for _, _, leaf in rows[1:]]
    assert mth(store.ledger_leaves(HUB)) == mth([leaf_hash(e.data()) for e in written])


def test_rows_are_read_in_batches_and_stop_at_the_size_when_asked(store, monkeypatch):
    monkeypatch.setattr(hubdb, "LEDGER_ROWS_BATCH", 2)
    for n in range(1, 6):
        pay(store, ALICE, BOB, n, seq=n)
    rows = store.ledger_rows(HUB)
    assert next(rows)[0] == 0
    pay(store, ALICE, BOB, 6, seq=6)  # appended while the reader is halfway
    assert [i for i, _, _ in rows] == [1, 2, 3, 4]
    assert [i for i, _, _ in store.ledger_rows(HUB, start=3)] == [3, 4, 5]


def test_a_receipt_moves_credits_once_even_after_a_restart(target):
    with HubStore(target) as s:
        assert pay(s, ALICE, BOB, 500, seq=1) is not None
        assert pay(s, ALICE, BOB, 900, seq=1) is None
    with HubStore(target) as s:
        assert pay(s, ALICE, BOB, 500, seq=1) is None
        assert s.ledger_size(HUB) == 1 and s.account(HUB, BOB).earned == 500
        assert pay(s, ALICE, BOB, 500, seq=2).index == 1  # the channel's next receipt
        assert pay(s, ALICE, REMOTE, 500, seq=1, kind="debit") is not None  # another kind of the same
        assert pay(s, ALICE, BOB, 500, seq=1, local=OTHER).index == 0  # another hub's ledger


def test_entries_are_refused_for_an_unknown_kind_a_negative_count_or_seq_0(store):
    for kind, carried, seq in (("gift", 1, 1), ("transfer", -1, 1), ("transfer", 1, 0)):
        with pytest.raises(StoreError):
            pay(store, ALICE, BOB, carried, seq=seq, kind=kind)
    assert store.ledger_size(HUB) == 0


# Alice's balance before (she earned, she spent), what her exit carried, her limit: what moves.
CLAMPS = [
    ("above the limit, in full", 0, 0, 300, LIMIT, 300),
    ("rich, in full", 5000, 0, 3000, LIMIT, 3000),
    ("reaching the limit, the rest", 0, 800, 300, LIMIT, 200),
    ("at the limit, nothing", 0, LIMIT, 300, LIMIT, 0),
    ("below (the limit was lowered), nothing", 0, 3 * LIMIT, 300, LIMIT, 0),
    ("no limit, in full", 0, 3 * LIMIT, 300, None, 300),
    ("a zero limit, only what she earned", 100, 0, 300, 0, 100),
]


@pytest.mark.parametrize(("earned", "spent", "carried", "limit", "amount"),
                         [c[1:] for c in CLAMPS], ids=[c[0] for c in CLAMPS])
@pytest.mark.parametrize("kind", ["transfer", "debit"])
def test_a_local_payer_past_its_limit_pays_what_is_left(store, kind, earned, spent, carried, limit, amount):
    if earned:
        pay(store, CAROL, ALICE, earned, channel="earn")
    if spent:
        pay(store, ALICE, CAROL, spent, channel="spend")
    entry = pay(store, ALICE, BOB if kind == "transfer" else REMOTE, carried, kind=kind, limit=limit)
    assert (entry.amount, entry.carried) == (amount, carried)
    assert store.account(HUB, ALICE).balance == earned - spent - amount


def test_a_credit_is_paid_in_full_whatever_the_limit(store):
    entry = pay(store, REMOTE, BOB, 5 * LIMIT, kind="credit", limit=LIMIT)
    assert entry.amount == 5 * LIMIT and store.account(HUB, REMOTE).balance == -5 * LIMIT


def test_two_members_paying_each_other_make_no_credits(store):
    for seq in range(1, 6):
        pay(store, ALICE, BOB, 10_000, channel="ab", seq=seq, limit=LIMIT)
        pay(store, BOB, ALICE, 10_000, channel="ba", seq=seq, limit=LIMIT)
    alice, bob = store.account(HUB, ALICE), store.account(HUB, BOB)
    assert alice.balance + bob.balance == 0
    assert alice.balance >= -LIMIT and bob.balance >= -LIMIT


def test_a_throwaway_member_costs_the_others_at_most_one_limit(store):
    for seq in range(1, 11):
        pay(store, "throwaway", ALICE, 700, channel="ta", seq=seq, limit=LIMIT)
        pay(store, "throwaway", BOB, 700, channel="tb", seq=seq, limit=LIMIT)
    assert store.account(HUB, "throwaway").balance == -LIMIT
    assert store.account(HUB, ALICE).earned + store.account(HUB, BOB).earned == LIMIT
    assert sum(a.balance for a in store.accounts(HUB)) == 0


def test_accounts_are_richest_first_and_an_unknown_one_is_zero(store):
    pay(store, ALICE, BOB, 300, channel="1")
    pay(store, ALICE, CAROL, 100, channel="2")
    assert store.accounts(HUB, now=T0) == [Account(BOB, 300, 300, 0, 300, 0),
                                           Account(CAROL, 100, 100, 0, 100, 0),
                                           Account(ALICE, -400, 0, 400, 0, 400)]
    assert store.account(HUB, "nobody") == Account("nobody", 0, 0, 0, 0, 0)
    assert store.accounts(OTHER) == []


def test_monthly_totals_start_anew_in_a_new_utc_month(store):
    pay(store, ALICE, BOB, 300, seq=1, time=JAN)
    assert store.account(HUB, BOB, now=JAN) == Account(BOB, 300, 300, 0, 300, 0)
    assert store.account(HUB, BOB, now=FEB) == Account(BOB, 300, 300, 0, 0, 0)  # nothing yet in February
    pay(store, ALICE, BOB, 50, seq=2, time=FEB)
    pay(store, ALICE, BOB, 7, seq=3, time=JAN)  # the clock set back: counted in the month it has
    assert store.account(HUB, BOB, now=FEB) == Account(BOB, 357, 357, 0, 57, 0)
    assert store.account(HUB, ALICE, now=FEB) == Account(ALICE, -357, 0, 357, 0, 57)


def test_entries_of_an_account_as_payer_or_payee_here_or_abroad_newest_last(store):
    mine = [pay(store, ALICE, BOB, 1, channel="1"), pay(store, CAROL, ALICE, 2, channel="2"),
            pay(store, f"{ALICE}@{OTHER}", BOB, 3, channel="3", kind="credit")]
    pay(store, BOB, CAROL, 4, channel="4")
    assert store.ledger_entries_of(HUB, ALICE) == mine
    assert store.ledger_entries_of(HUB, ALICE, limit=2) == mine[1:]
    assert store.ledger_entries_of(HUB, f"{ALICE}@{OTHER}") == mine[2:]
    assert store.ledger_entries_of(HUB, ALICE[:5]) == []  # an account is matched whole
    assert store.ledger_entries_of(OTHER, ALICE) == []


def test_checkpoints_by_size_one_of_each_size_none_past_the_end(store):
    assert store.checkpoints(HUB) == [] and store.latest_checkpoint(HUB) is None
    signed = [{"record": f"r{n}", "signature": "s", "pubkey": "k"} for n in range(3)]
    assert store.add_checkpoint(HUB, 0, T0, signed[0])
    pay(store, ALICE, BOB, 1, seq=1)
    pay(store, ALICE, BOB, 1, seq=2)
    assert store.add_checkpoint(HUB, 2, T0 + 2, signed[2])
    assert store.add_checkpoint(HUB, 1, T0 + 1, signed[1])
    assert not store.add_checkpoint(HUB, 2, T0 + 3, {"record": "other", "signature": "s", "pubkey": "k"})
    with pytest.raises(StoreError, match="holds 2"):
        store.add_checkpoint(HUB, 3, T0 + 3, signed[0])
    assert store.checkpoints(HUB) == signed and store.latest_checkpoint(HUB) == signed[2]
    assert store.checkpoints(OTHER) == []


def test_two_processes_appending_at_once_share_one_sequence_of_indices(target):
    stores = [HubStore(target) for _ in range(2)]
    barrier = threading.Barrier(2)

    def append(i: int) -> None:
        barrier.wait()
        for seq in range(1, 21):
            pay(stores[i], ALICE, BOB, 10, channel=f"ch{i}", seq=seq, limit=LIMIT)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert [i for i, _, _ in stores[0].ledger_rows(HUB)] == list(range(40))
        assert stores[1].account(HUB, ALICE).spent == 400
    finally:
        for s in stores:
            s.close()


def test_a_version_3_database_gains_the_ledger(target):
    engine = engines.connect(target, DB_FILENAME)
    engine.begin_write()
    for schema in (hubdb._SCHEMA_V1, hubdb._SCHEMA_V2, hubdb._SCHEMA_V3):
        for statement in schema.split(";"):
            if statement.strip():
                engine.execute(engine.ddl(statement))
    engine.set_schema_version(3)
    engine.commit()
    engine.close()
    with HubStore(target) as s:
        assert pay(s, ALICE, BOB, 5).index == 0 and s.account(HUB, BOB).balance == 5
    with HubStore(target) as s:  # and, at version 5, room for what it holds of its peers' ledgers
        assert s.peer_ledger(HUB, OTHER) is None


CHECKPOINT_1, CHECKPOINT_2 = ({"record": "e30", "signature": n, "pubkey": "a2V5"} for n in ("c2ln", "c2lo"))


def test_a_peers_newest_checkpoint_is_kept_and_its_first_conflict_stays_as_evidence(store):
    assert store.peer_ledger(HUB, OTHER) is None
    store.keep_peer_checkpoint(HUB, OTHER, CHECKPOINT_1, now=T0)
    store.keep_peer_checkpoint(HUB, OTHER, CHECKPOINT_2, now=T0 + 10)
    kept = store.peer_ledger(HUB, OTHER)
    assert (kept.checkpoint, kept.checked, kept.conflict) == (CHECKPOINT_2, T0 + 10, None)
    assert store.peer_ledger(OTHER, HUB) is None  # per local hub

    assert store.peer_conflict(HUB, OTHER, CHECKPOINT_1, "it signed two different logs", now=T0 + 20)
    assert not store.peer_conflict(HUB, OTHER, CHECKPOINT_2, "a later one", now=T0 + 30)
    store.keep_peer_checkpoint(HUB, OTHER, CHECKPOINT_2, now=T0 + 40)  # still checked: the evidence stays
    kept = store.peer_ledger(HUB, OTHER)
    assert kept.checked == T0 + 40 and kept.conflict == {
        "checkpoint": CHECKPOINT_1, "reason": "it signed two different logs", "time": T0 + 20}
