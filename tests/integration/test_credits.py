"""Credits end to end: receipts signed by a real agent, recorded by a real hub, checked by the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3

from harness import Network, curl, ladder, wait_for
from test_federation import peer, peers

MIB = 1024 * 1024


def credits(member) -> dict:
    return json.loads(ladder("credits", "--dir", str(member.folder), "--json").stdout)


def test_a_download_moves_its_bytes_from_the_user_to_the_sharer_and_the_ledger_proves_it(network, origin):
    data = os.urandom(32 * MIB)
    (origin.dir / "c32.bin").write_bytes(data)
    sharer = network.exit("sharer", "AA", "--allow-private")
    user = network.user("user")
    user.wait_exits(1)
    got = curl("-s", "-x", f"socks5h://{user.proxy[0]}:{user.proxy[1]}", origin.url("c32.bin"), timeout=120)
    assert hashlib.sha256(got.stdout).digest() == hashlib.sha256(data).digest()

    carried = len(data)
    wait_for(lambda: credits(user)["spent"] >= carried, 30, "the user's receipts to cover the download")
    spent, earned = credits(user)["spent"], credits(sharer)["earned"]
    assert abs(spent - carried) <= 0.02 * carried, f"spent {spent} for {carried} carried"
    assert earned == spent  # a transfer: what one pays the other earns, no more
    assert credits(user)["balance"] == -spent and credits(sharer)["balance"] == earned

    verified = ladder("credits", "verify", "--dir", str(user.folder))
    assert "verified:" in verified.stdout
    verify = ladder("hub", "ledger", "verify", "--dir", str(network.hub_dir), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    table = json.loads(ladder("hub", "ledger", "--dir", str(network.hub_dir), "--json").stdout)
    assert {row["name"]: row["balance"] for row in table if row["name"] in ("user", "sharer")} == {
        "user": -spent, "sharer": earned}


def test_an_edited_row_fails_ledger_verify_and_a_rewritten_history_fails_the_members_verify(network, origin):
    (origin.dir / "c4.bin").write_bytes(os.urandom(4 * MIB))
    network.exit("sharer", "AA", "--allow-private")
    user = network.user("user")
    user.wait_exits(1)
    assert curl("-s", "-o", "/dev/null", "-x", f"socks5h://{user.proxy[0]}:{user.proxy[1]}",
                origin.url("c4.bin")).returncode == 0
    wait_for(lambda: credits(user)["spent"] >= 4 * MIB, 30, "the receipts of the download")
    ladder("credits", "verify", "--dir", str(user.folder))  # the checkpoint seen, kept in ledger.json

    network.hub.stop()
    db = sqlite3.connect(network.hub_dir / "hub.db")
    rows = db.execute("SELECT idx, data FROM ledger ORDER BY idx").fetchall()
    assert len(rows) >= 2
    index, data = rows[1]
    entry = json.loads(data)
    entry["amount"] -= 1000  # a hub operator quietly shaving an entry
    edited = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    db.execute("UPDATE ledger SET data = ? WHERE idx = ?", (edited, index))
    db.commit()
    verify = ladder("hub", "ledger", "verify", "--dir", str(network.hub_dir), check=False)
    assert verify.returncode == 1 and f"entry {index}" in verify.stdout + verify.stderr, verify

    # The same edit made consistent (its leaf hash too, the old checkpoints gone), and the hub restarted:
    # the log it signs now is no extension of the one the member saw.
    leaf = hashlib.sha256(b"\x00" + edited.encode()).digest()
    db.execute("UPDATE ledger SET leaf = ? WHERE idx = ?", (leaf, index))
    db.execute("DELETE FROM ledger_checkpoints")
    db.commit()
    db.close()
    network.hub = network.start_hub()
    user.wait_up(30)
    caught = ladder("credits", "verify", "--dir", str(user.folder), check=False)
    assert caught.returncode == 1, caught.stdout
    assert "rewrote or forked its history" in caught.stderr + caught.stdout


def test_across_two_peered_hubs_the_payers_hub_debits_and_the_exits_hub_credits_the_same_receipt(
        tmp_path, origin):
    (origin.dir / "c8.bin").write_bytes(os.urandom(8 * MIB))
    a, c = Network(tmp_path / "a", name="a"), Network(tmp_path / "c", name="c")
    try:
        peer(a, c, "c")
        wait_for(lambda: all(p["up"] for p in peers(a).values()) and peers(a), 20, "the peer link")
        sharer = c.exit("sharer", "DE", "--allow-private")
        alice = a.user("alice")
        alice.wait_exits(1, timeout=20)
        assert curl("-s", "-o", "/dev/null", "-x", alice.socks, origin.url("c8.bin")).returncode == 0
        wait_for(lambda: credits(sharer)["earned"] >= 8 * MIB, 30, "c to credit the sharer")
        spent, earned = credits(alice)["spent"], credits(sharer)["earned"]
        assert spent == earned and abs(spent - 8 * MIB) <= 0.02 * 8 * MIB

        def entries(net: Network, kind: str) -> set[tuple[str, int, int]]:
            with sqlite3.connect(net.hub_dir / "hub.db") as db:
                return set(db.execute("SELECT channel, seq, amount FROM ledger WHERE kind = ?", (kind,)))

        debits, credited = entries(a, "debit"), entries(c, "credit")
        assert debits and debits == credited  # each receipt: debited at a, credited at c, the same amount
        assert not entries(a, "transfer") and not entries(c, "transfer")
        for net in (a, c):
            verify = ladder("hub", "ledger", "verify", "--dir", str(net.hub_dir), check=False)
            assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        for net in (a, c):
            net.close()
