"""The ledger's audit: a sound log of 50 entries passes, and each way of cooking it is caught and named.

The log interleaves three channels: alice pays bob here (transfers), alice
pays dave of hub "far" (debits), carol of hub "far" pays bob (credits),
each entry on a fresh receipt its payer signed. Every tampering test
changes one thing, the way a hub that cooks its books would, rehashing the
leaf unless the test is about the hash, and asserts the problem names the
entry (or the checkpoint) where the log stops holding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.protocol.envelope import b64, unb64
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.ledger import (
    STALE,
    TIME_SLACK,
    Checkpoint,
    Entry,
    Problem,
    check_entries,
    check_head,
    leaf_hash,
    sign_checkpoint,
    verify_checkpoint,
)
from ladder.protocol.merkle import MerkleTree
from ladder.protocol.receipts import sign_receipt


def key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"ladder test {name}".encode()).digest())


ALICE, BOB, CAROL, DAVE, HUB, OTHER_HUB = (key(n) for n in ("alice", "bob", "carol", "dave", "hub", "other"))
ALICE_ID, BOB_ID, CAROL_ID, DAVE_ID = (member_id(public_bytes(k)) for k in (ALICE, BOB, CAROL, DAVE))
HUB_PUBKEY = public_bytes(HUB)
T0 = 1_700_000_000
SIZE = 50


@dataclasses.dataclass
class Channel:
    kind: str
    payer_key: Ed25519PrivateKey
    payer: str  # the account, "id@hub" for another hub's member
    payee: str
    hub: str  # the payer's home hub
    id: str
    received: int = 0
    sent: int = 0
    seq: int = 0


def channels() -> list[Channel]:
    return [
        Channel("transfer", ALICE, ALICE_ID, BOB_ID, "home", "aa" * 32),
        Channel("debit", ALICE, ALICE_ID, f"{DAVE_ID}@far", "home", "bb" * 32),
        Channel("credit", CAROL, f"{CAROL_ID}@far", BOB_ID, "far", "cc" * 32),
    ]


def signed(channel: Channel, *, received: int, sent: int, seq: int, payer_key: Ed25519PrivateKey | None = None
           ) -> dict[str, str]:
    return sign_receipt(payer_key or channel.payer_key, exit=channel.payee.partition("@")[0], hub=channel.hub,
                        channel=channel.id, received=received, sent=sent, frames=received + 100 * seq,
                        seq=seq, time=T0 + seq)


def credit(channel: Channel, index: int, received: int, sent: int) -> Entry:
    """The next entry of `channel`: a receipt grown by these counts, and the entry crediting it."""
    growth = received + sent
    channel.received, channel.sent = channel.received + received, channel.sent + sent
    channel.seq += 1
    receipt = signed(channel, received=channel.received, sent=channel.sent, seq=channel.seq)
    amount = growth // 2 if index % 7 == 6 else growth  # now and then a payer past its credit limit
    return Entry(index, T0 + 10 * index, channel.kind, channel.payer, channel.payee, amount, growth,
                 channel.id, channel.seq, receipt)


def sound_log() -> tuple[list[Entry], list[Channel]]:
    chans = channels()
    log = [credit(chans[i % 3], i, 1000 * (i + 1), 10 * i) for i in range(SIZE)]
    return log, chans


LOG, _ = sound_log()


def rows(log: list[Entry]) -> list[tuple[int, bytes, bytes]]:
    """The log as a store holds it: each entry in the row of its place."""
    return [(row, e.data(), leaf_hash(e.data())) for row, e in enumerate(log)]


WITHOUT_17 = rows(LOG)[:17] + rows(LOG)[18:]
MISSING_17 = Problem(17, "missing (entry 18 comes after entry 16)")


def checkpoint(log: list[Entry], size: int, signer: Ed25519PrivateKey = HUB, root: bytes | None = None
               ) -> Checkpoint:
    tree = MerkleTree(leaf_hash(e.data()) for e in log)
    return verify_checkpoint(sign_checkpoint(signer, size, root or tree.root(size), T0 + size))


def checkpoints(log: list[Entry]) -> list[Checkpoint]:
    return [checkpoint(log, size) for size in (25, 0, 10, SIZE)]


def check(log: list[Entry], cps: list[Checkpoint] | None = None) -> Problem | None:
    return check_entries(rows(log), checkpoints(LOG) if cps is None else cps, HUB_PUBKEY)


def edited(row: int, /, **changes: object) -> list[Entry]:
    log = list(LOG)
    log[row] = dataclasses.replace(log[row], **changes)
    return log


def appended(entry_of) -> list[Entry]:
    """The sound log and one more entry, made by `entry_of(channels, index)` from the channels' state."""
    log, chans = sound_log()
    return log + [entry_of(chans, SIZE)]


# ------------------------------------------------------------------ a sound log


def test_a_sound_log_and_its_checkpoints_pass():
    assert check(LOG) is None
    assert check_entries(rows(LOG), checkpoints(LOG), None) is None
    assert check_entries([], [checkpoint([], 0)], HUB_PUBKEY) is None
    assert {e.kind for e in LOG} == {"transfer", "debit", "credit"}
    assert any(e.amount < e.carried for e in LOG)


def test_a_log_that_grew_past_its_checkpoints_passes():
    more = appended(lambda chans, i: credit(chans[0], i, 5, 5))
    assert check(more) is None


def test_an_entry_may_be_timed_a_minute_before_an_earlier_one():
    assert check(edited(17, time=LOG[16].time - TIME_SLACK), []) is None


# ------------------------------------------------------------------ rows


def test_an_edited_amount_breaks_its_leaf_hash():
    log = edited(17, amount=LOG[17].amount + 1)
    stale = rows(log)
    stale[17] = (17, log[17].data(), leaf_hash(LOG[17].data()))
    problem = check_entries(stale, checkpoints(LOG), HUB_PUBKEY)
    assert problem == Problem(17, "its leaf hash does not match its data")
    assert str(problem) == "entry 17: its leaf hash does not match its data"


def test_an_edited_leaf_hash_is_caught():
    bad = rows(LOG)
    bad[17] = (17, bad[17][1], hashlib.sha256(b"\x00something else").digest())
    assert check_entries(bad, [], None) == Problem(17, "its leaf hash does not match its data")


def test_an_amount_above_what_was_carried_is_caught():
    problem = check(edited(17, amount=LOG[17].carried + 1))
    assert problem is not None and problem.index == 17 and "credits for" in problem.reason


def test_a_rehashed_lower_amount_breaks_the_first_checkpoint_after_it():
    problem = check(edited(17, amount=LOG[17].amount - 1))
    assert problem is not None and problem.index is None
    assert str(problem).startswith(f"checkpoint of size 25 (time {T0 + 25}) does not match the log: its root")


def test_a_deleted_row_is_named():
    assert check_entries(WITHOUT_17, checkpoints(LOG), HUB_PUBKEY) == MISSING_17
    assert check_entries(rows(LOG)[1:], [], None) == Problem(0, "missing (entry 1 comes at the start)")


def test_two_rows_swapped_are_caught_however_they_are_swapped():
    in_order_of_reading = rows(LOG)
    in_order_of_reading[17], in_order_of_reading[18] = in_order_of_reading[18], in_order_of_reading[17]
    assert check_entries(in_order_of_reading, [], None) == MISSING_17
    contents = rows(LOG)
    contents[17], contents[18] = (17, *contents[18][1:]), (18, *contents[17][1:])
    assert check_entries(contents, [], None) == Problem(17, "its data is entry 18's")
    # Renumbered and rehashed: entries 14 and 17 are on one channel, and 17 now credits 14's receipt again.
    renumbered = list(LOG)
    renumbered[14], renumbered[17] = (dataclasses.replace(LOG[17], index=14),
                                      dataclasses.replace(LOG[14], index=17))
    problem = check(renumbered)
    assert problem is not None and problem.index == 14 and "carried" in problem.reason


def test_a_row_read_twice_is_out_of_order():
    twice = rows(LOG)
    problem = check_entries(twice[:18] + twice[17:], [], None)
    assert problem == Problem(17, "out of order (it comes after entry 17)")


def test_an_entry_timed_far_before_an_earlier_one_is_caught():
    problem = check(edited(17, time=LOG[16].time - TIME_SLACK - 1), [])
    assert problem == Problem(17, f"its time {LOG[16].time - TIME_SLACK - 1} is {TIME_SLACK + 1} s "
                                  "before an earlier entry's")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"kind": "gift"}, "it is of no known kind ('gift')"),
    ({"amount": -1}, "it moves -1 credits for"),
    ({"index": 15}, "its data is entry 15's"),
    ({"seq": 99}, "its receipt is for another channel or seq"),
    ({"channel": "dd" * 32}, "its receipt is for another channel or seq"),
    ({"payee": f"{CAROL_ID}@far"}, f"its receipt is {ALICE_ID}'s for exit {DAVE_ID}, not {ALICE_ID}'s for "),
    ({"payee": DAVE_ID}, "a debit is paid by a member of this hub to another hub's (id@hub)"),
    ({"kind": "transfer"}, "a transfer is between two members of this hub"),
    ({"payer": f"{ALICE_ID}@far"}, "a debit is paid by a member of this hub"),
])
def test_an_entry_that_is_not_its_receipts_is_caught(changes, reason):
    assert LOG[16].kind == "debit"
    problem = check(edited(16, **changes))
    assert problem is not None and problem.index == 16 and problem.reason.startswith(reason), problem


def test_a_credit_from_another_hub_than_the_payers_receipt_names_is_caught():
    assert LOG[17].kind == "credit"
    problem = check(edited(17, payer=f"{CAROL_ID}@near"))
    assert problem == Problem(17, "its payer is of hub near, its receipt's of far")


# ------------------------------------------------------------------ receipts


def test_a_forged_receipt_signature_is_caught():
    receipt = dict(LOG[17].receipt)
    signature = bytearray(unb64(receipt["signature"]))
    signature[0] ^= 1
    problem = check(edited(17, receipt={**receipt, "signature": b64(bytes(signature))}))
    assert problem is not None and problem.index == 17
    assert problem.reason.startswith("its receipt does not verify")


def test_a_receipt_signed_by_another_member_is_caught():
    chans = channels()
    assert LOG[16].kind == "debit"
    forged = signed(chans[1], received=1, sent=1, seq=LOG[16].seq, payer_key=CAROL)
    problem = check(edited(16, receipt=forged))
    assert problem is not None and problem.index == 16
    assert problem.reason.startswith(f"its receipt is {CAROL_ID}'s")


def test_a_replayed_receipt_is_caught():
    replay = appended(lambda chans, i: dataclasses.replace(LOG[47], index=i, time=T0 + 10 * i))
    assert check(replay) == Problem(SIZE, f"receipt {LOG[47].seq} replayed or out of order "
                                          f"(entry 47 had {LOG[47].seq})")


def test_an_earlier_receipt_after_a_later_one_is_caught():
    late = appended(lambda chans, i: dataclasses.replace(LOG[44], index=i, time=T0 + 10 * i))
    assert check(late) == Problem(SIZE, f"receipt {LOG[44].seq} replayed or out of order "
                                        f"(entry 47 had {LOG[47].seq})")


def test_a_receipt_whose_counters_went_down_is_caught():
    def shrunk(chans: list[Channel], index: int) -> Entry:
        c = chans[2]
        receipt = signed(c, received=c.received - 1, sent=c.sent + 10, seq=c.seq + 1)
        return Entry(index, T0 + 10 * index, c.kind, c.payer, c.payee, 9, 9, c.id, c.seq + 1, receipt)
    assert check(appended(shrunk)) == Problem(SIZE, "its receipt's counters went down since entry 47's")


def test_an_entry_crediting_more_than_its_receipt_grew_is_caught():
    problem = check(edited(17, carried=LOG[17].carried + 1, amount=LOG[17].carried + 1))
    carried = LOG[17].carried
    assert problem == Problem(17, f"it says {carried + 1} bytes were carried, its receipt {carried}")


def test_a_channel_taken_over_by_another_payer_is_caught():
    def other_payer(chans: list[Channel], index: int) -> Entry:
        c = dataclasses.replace(chans[0], payer_key=CAROL, payer=CAROL_ID)
        receipt = signed(c, received=c.received + 1, sent=c.sent, seq=c.seq + 1)
        return Entry(index, T0 + 10 * index, c.kind, c.payer, c.payee, 1, 1, c.id, c.seq + 1, receipt)
    problem = check(appended(other_payer))
    assert problem == Problem(SIZE, "its channel is entry 48's, of another payer or exit")


# ------------------------------------------------------------------ checkpoints


def test_a_checkpoint_signed_by_another_key_is_caught():
    cps = [*checkpoints(LOG), checkpoint(LOG, 30, signer=OTHER_HUB)]
    problem = check(LOG, cps)
    assert str(problem) == f"checkpoint of size 30 (time {T0 + 30}) is signed by another key than the hub's"
    assert check_entries(rows(LOG), cps, None) is None


def test_a_checkpoint_with_the_wrong_root_is_caught():
    wrong = checkpoint(LOG, 30, root=MerkleTree(leaf_hash(e.data()) for e in LOG).root(31))
    problem = check(LOG, [*checkpoints(LOG), wrong])
    assert problem is not None and problem.index is None
    assert str(problem).startswith(f"checkpoint of size 30 (time {T0 + 30}) does not match the log: its root")


def test_a_checkpoint_beyond_the_log_is_caught():
    problem = check(LOG[:20], [checkpoint(LOG, 10), checkpoint(LOG, 25)])
    assert problem == Problem(None, f"checkpoint of size 25 (time {T0 + 25}) does not match the log: "
                                    "the log has 20 entries")


def test_the_first_checkpoint_by_size_is_named():
    cps = [checkpoint(LOG, 40, root=bytes(32)), checkpoint(LOG, 20, root=bytes(32)), *checkpoints(LOG)]
    problem = check(LOG, cps)
    assert problem is not None and str(problem).startswith("checkpoint of size 20 ")


def test_a_checkpoint_that_is_not_its_envelope_is_caught():
    genuine = checkpoint(LOG, 10)
    root = MerkleTree(leaf_hash(e.data()) for e in LOG).root(11)
    relabelled = dataclasses.replace(genuine, size=11, root=root)
    assert check(LOG, [relabelled]) == Problem(None, f"checkpoint of size 11 (time {T0 + 10}) is not what "
                                                     "its envelope says")
    broken = dataclasses.replace(genuine, envelope={**genuine.envelope, "signature": b64(bytes(64))})
    problem = check(LOG, [broken])
    assert str(problem).startswith(f"checkpoint of size 10 (time {T0 + 10}) does not verify")


def test_an_entrys_problem_comes_before_a_checkpoints():
    assert check_entries(WITHOUT_17, [checkpoint(LOG, 5, signer=OTHER_HUB)], HUB_PUBKEY) == MISSING_17


# ------------------------------------------------------------------ leaf data


def test_an_entry_is_its_data():
    assert all(Entry.from_data(e.data()) == e for e in LOG)
    canonical = json.dumps(json.loads(LOG[0].data()), sort_keys=True, separators=(",", ":")).encode()
    assert LOG[0].data() == canonical


def _with(**changes: object) -> bytes:
    fields = json.loads(LOG[0].data())
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not ...}).encode()


@pytest.mark.parametrize("data", [
    b"not json",
    b"\xff\xfe",
    b"[1, 2]",
    b"[" * 100_000,
    _with(amount=...),  # missing
    _with(note="extra"),
    _with(amount=True),
    _with(amount=1.0),
    _with(index="0"),
    _with(seq=None),
    _with(kind=1),
    _with(payer=["a"]),
    _with(receipt="envelope"),
    _with(receipt={"record": 1}),
])
def test_from_data_refuses_anything_but_an_entry(data: bytes):
    with pytest.raises(ValueError):
        Entry.from_data(data)
    problem = check_entries([(0, data, leaf_hash(data))], [], None)
    assert problem is not None and problem.index == 0
    assert problem.reason.startswith("its data is not an entry")


# ------------------------------------------------------- a peer hub's checkpoints


def consistency(log: list[Entry], old: int, new: int) -> list[bytes]:
    return MerkleTree(leaf_hash(e.data()) for e in log).consistency_proof(old, new)


def test_a_peers_first_checkpoint_is_taken_and_one_that_extends_it_holds():
    assert check_head(None, checkpoint(LOG, 10), 0, []) is None
    assert check_head(checkpoint(LOG, 10), checkpoint(LOG, SIZE), 10, consistency(LOG, 10, SIZE)) is None
    assert check_head(checkpoint(LOG, 0), checkpoint(LOG, 25), 0, []) is None  # the empty log: no proof
    assert check_head(checkpoint(LOG, 25), checkpoint(LOG, 25), 25, []) is None  # the same one again


def test_a_proof_from_another_size_than_the_one_held_is_stale_and_asked_again():
    assert check_head(checkpoint(LOG, 10), checkpoint(LOG, SIZE), 25, consistency(LOG, 25, SIZE)) == STALE


@pytest.mark.parametrize(("held", "head", "since", "proof", "reason"), [
    (checkpoint(LOG, 25), checkpoint(LOG, 10), 25, [], "its log shrank from 25 entries to 10"),
    (checkpoint(LOG, 25), checkpoint(edited(3, amount=1), 25), 25, [],
     "it signed two different logs of 25 entries"),
    (checkpoint(LOG, 10), checkpoint(edited(3, amount=1), SIZE), 10,
     consistency(edited(3, amount=1), 10, SIZE),
     f"its log of {SIZE} entries does not extend the one of 10 it signed before"),
    (checkpoint(LOG, 10), checkpoint(LOG, SIZE), 10, consistency(LOG, 11, SIZE),
     f"its log of {SIZE} entries does not extend the one of 10 it signed before"),
    (checkpoint(LOG, 10), checkpoint(LOG, SIZE, signer=ALICE), 10, consistency(LOG, 10, SIZE),
     "the checkpoints are of two different hubs"),
])
def test_a_peer_checkpoint_that_cannot_extend_the_one_held_says_why(held, head, since, proof, reason):
    assert check_head(held, head, since, proof) == reason
