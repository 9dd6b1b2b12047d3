"""`ladder hub ledger` and `ladder hub ledger verify` on a hub folder whose ledger holds signed receipts."""

import json
import sqlite3
import subprocess
import sys
from calendar import timegm

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rfc9162 import mth

from ladder.cli import cli
from ladder.config import HubConfig
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.ledger import sign_checkpoint
from ladder.protocol.receipts import sign_receipt
from ladder.store.hubdb import DB_FILENAME, HubStore

T0 = timegm((2026, 3, 10, 12, 0, 0))
CHANNEL = "ab" * 32
REMOTE = f"{'r' * 24}@{'o' * 24}"


@pytest.fixture
def hub(tmp_path):
    """A hub with members alice, bob and carol; alice used bob's exit (3 receipts) and one abroad."""
    config = HubConfig(tmp_path, "t", ("127.0.0.1", 443), ("hub.example", 443), tmp_path / "tls.crt",
                       tmp_path / "tls.key")
    config.save()
    local = config.hub_id()
    keys = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol")}
    ids = {name: member_id(public_bytes(key)) for name, key in keys.items()}
    with HubStore(tmp_path) as store:
        for name, key in keys.items():
            store.redeem_invite(store.create_invite(name, now=T0), ids[name], public_bytes(key), now=T0)
        covered = 0
        for seq, (received, sent) in enumerate([(1000, 100), (5000, 300), (9000, 400)], start=1):
            receipt = sign_receipt(keys["alice"], exit=ids["bob"], hub=local, channel=CHANNEL,
                                   received=received, sent=sent, frames=received + 64, seq=seq, time=T0 + seq)
            store.ledger_append(local, "transfer", ids["alice"], ids["bob"], received + sent - covered,
                                CHANNEL, seq, receipt, T0 + seq, config.credit_limit)
            covered = received + sent
        receipt = sign_receipt(keys["alice"], exit=REMOTE.partition("@")[0], hub=local, channel="cd" * 32,
                               received=600, sent=0, frames=700, seq=1, time=T0 + 5)
        store.ledger_append(local, "debit", ids["alice"], REMOTE, 600, "cd" * 32, 1, receipt, T0 + 5,
                            config.credit_limit)
        root = mth(store.ledger_leaves(local)[:3])
        store.add_checkpoint(local, 3, T0 + 4, sign_checkpoint(config.hub_key(), 3, root, T0 + 4))
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(cli, ["hub", "ledger", *args], catch_exceptions=False)


def test_the_table_names_members_shows_the_one_abroad_by_account_and_totals(hub):
    result = run("--dir", str(hub))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["MEMBER", "BALANCE"]
    assert [line.split()[0] for line in lines[1:]] == ["bob", REMOTE, "carol", "alice", "total"]
    assert lines[1].split()[1:3] == ["9.2", "KiB"]  # 9400 B: what alice's three receipts carried
    assert lines[4].split()[1:3] == ["-9.8", "KiB"]


def test_json_is_a_list_of_accounts_richest_first(hub):
    result = run("--dir", str(hub), "--json")
    rows = json.loads(result.output)
    assert [(r["name"], r["balance"], r["earned"], r["spent"]) for r in rows] == [
        ("bob", 9400, 9400, 0), (REMOTE, 600, 600, 0), ("carol", 0, 0, 0), ("alice", -10000, 0, 10000)]
    assert set(rows[0]) == {"name", "account", "balance", "earned", "spent", "month_earned", "month_spent"}


def test_verify_passes_a_sound_ledger(hub):
    result = run("verify", "--dir", str(hub))
    assert (result.exit_code, result.output) == (0, "ledger verified: 4 entries, 1 checkpoints\n")
    assert json.loads(run("verify", "--dir", str(hub), "--json").output) == {
        "verified": True, "entries": 4, "checkpoints": 1, "problem": None}


def test_verify_names_the_entry_whose_data_was_changed(hub):
    with sqlite3.connect(hub / DB_FILENAME) as db:
        (data,) = db.execute("SELECT data FROM ledger WHERE idx = 1").fetchone()
        edited = data.replace(b'"amount":4200', b'"amount":9999')
        assert edited != data
        db.execute("UPDATE ledger SET data = ? WHERE idx = 1", (edited,))
    result = run("verify", "--dir", str(hub))
    assert result.exit_code == 1 and result.output.startswith("entry 1"), result.output
    assert len(result.output.splitlines()) == 1


def test_verify_refuses_a_checkpoint_whose_signature_does_not_hold(hub):
    with sqlite3.connect(hub / DB_FILENAME) as db:
        (envelope,) = db.execute("SELECT envelope FROM ledger_checkpoints").fetchone()
        forged = {**json.loads(envelope), "signature": "A" * 86}
        db.execute("UPDATE ledger_checkpoints SET envelope = ?", (json.dumps(forged),))
    result = run("verify", "--dir", str(hub), "--json")
    report = json.loads(result.output)
    assert result.exit_code == 1 and not report["verified"]
    assert report["problem"].startswith("a stored checkpoint does not hold")


def test_verify_names_the_entry_whose_row_was_deleted(hub):
    with sqlite3.connect(hub / DB_FILENAME) as db:
        db.execute("DELETE FROM ledger WHERE idx = 1")
    result = run("verify", "--dir", str(hub))
    assert (result.exit_code, result.output) == (1, "entry 1: missing (entry 2 comes after entry 0)\n")


def test_verify_names_the_first_of_two_rows_whose_places_were_swapped(hub):
    with sqlite3.connect(hub / DB_FILENAME) as db:
        (one, leaf_one), (two, leaf_two) = db.execute(
            "SELECT data, leaf FROM ledger WHERE idx IN (1, 2) ORDER BY idx").fetchall()
        db.execute("UPDATE ledger SET data = ?, leaf = ? WHERE idx = 1", (two, leaf_two))
        db.execute("UPDATE ledger SET data = ?, leaf = ? WHERE idx = 2", (one, leaf_one))
    result = run("verify", "--dir", str(hub))
    assert (result.exit_code, result.output) == (1, "entry 1: its data is entry 2's\n")


def test_verify_of_a_folder_without_a_hub_is_one_line_and_exit_1(tmp_path):
    for args in (["verify"], ["verify", "--json"], []):
        result = subprocess.run([sys.executable, "-m", "ladder", "hub", "ledger", *args, "--dir",
                                 str(tmp_path / "nothing")], check=False, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1 and result.stdout == "", (args, result)
        assert result.stderr.startswith("ladder: error: ") and "holds no hub" in result.stderr, (args, result)
        assert len(result.stderr.splitlines()) == 1, (args, result.stderr)
