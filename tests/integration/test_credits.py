"""Credits end to end: receipts signed by a real agent, recorded by a real hub, checked by the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time

from harness import Network, curl, free_port, ladder, peer, peers, wait_for

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

    # The sharer's own view of what its exit earned: `ladder share status`, from the balance its hub sends.
    def shared() -> dict:
        return json.loads(ladder("share", "status", "--dir", str(sharer.folder), "--json").stdout)

    wait_for(lambda: (shared().get("credits") or {}).get("earned") == earned, 30,
             "the sharer's agent to hear what it earned")
    assert shared()["credits"]["balance"] == earned
    status = ladder("share", "status", "--dir", str(sharer.folder)).stdout
    assert f"earned: {earned / 1e6:.1f} MB of credits" in status, status

    verified = ladder("credits", "verify", "--dir", str(user.folder))
    assert "verified:" in verified.stdout
    # Each exit and member dealt with, as `ladder credits verify --json` shows it: the sharer, paid it all.
    involved = json.loads(ladder("credits", "verify", "--dir", str(user.folder), "--json").stdout)["involved"]
    assert [totals["spent"] for totals in involved.values()] == [spent], involved
    assert credits(user)["involved"] == involved  # and without verifying, from all entries as well
    text = ladder("credits", "--dir", str(user.folder)).stdout
    assert "latest entries:" in text and all(other in text for other in involved), text
    verify = ladder("hub", "ledger", "verify", "--dir", str(network.hub_dir), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    table = json.loads(ladder("hub", "ledger", "--dir", str(network.hub_dir), "--json").stdout)
    assert {row["name"]: row["balance"] for row in table if row["name"] in ("user", "sharer")} == {
        "user": -spent, "sharer": earned}


def test_a_user_who_signs_no_receipts_gets_two_intervals_and_the_exit_stops(network, origin, monkeypatch):
    data = os.urandom(16 * MIB)
    (origin.dir / "c16.bin").write_bytes(data)
    network.exit("sharer", "AA", "--allow-private")
    monkeypatch.setenv("LADDER_RECEIPTS", "off")  # this user's agent signs nothing
    freeloader = network.user("freeloader")
    monkeypatch.delenv("LADDER_RECEIPTS")
    freeloader.wait_exits(1)
    got = curl("-s", "-o", "/dev/null", "-w", "%{size_download}", "--max-time", "8", "-x", freeloader.socks,
               origin.url("c16.bin"), timeout=30)
    carried = int(got.stdout or 0)
    print(f"a user signing no receipts got {carried} bytes of {len(data)}")
    assert got.returncode == 28, "the download stalled, never ended"  # curl: the time ran out
    # Two intervals (1 MiB each on a new channel), and at most the write that reached them.
    assert 0 < carried <= 2 * MIB + 64 * 1024, f"{carried} bytes unpaid: past two intervals"
    assert credits(freeloader)["spent"] == 0


def test_a_device_pays_from_its_own_account_on_receipts_its_hub_signs(network, origin):
    data = os.urandom(8 * MIB)
    (origin.dir / "d8.bin").write_bytes(data)
    sharer = network.exit("sharer", "AA", "--allow-private")
    network.join("ann")
    added = ladder("hub", "device", "add", "phone", "--owner", "ann", "--dir", str(network.hub_dir)).stdout
    password = added.strip().splitlines()[-1].removeprefix("trojan://").split("@")[0]
    port = free_port()
    config = network.root / "trojan-phone.json"
    config.write_text(json.dumps({
        "run_type": "client", "local_addr": "127.0.0.1", "local_port": port, "remote_addr": "127.0.0.1",
        "remote_port": network.hub_port, "password": [password], "log_level": 2,
        "ssl": {"verify": True, "verify_hostname": False, "cert": str(network.hub_dir / "tls.crt"),
                "sni": ""}}))
    network.start_program("trojan-phone", "trojan", "-c", str(config))
    phone = f"127.0.0.1:{port}"
    wait_for(lambda: curl("-s", "-o", "/dev/null", "--socks5-hostname", phone, origin.url("index.html"),
                          timeout=10).returncode == 0, 30, "the phone to get through")
    got = curl("-s", "--socks5-hostname", phone, origin.url("d8.bin"), timeout=60)
    assert hashlib.sha256(got.stdout).digest() == hashlib.sha256(data).digest()

    def accounts() -> dict[str, dict]:
        rows = json.loads(ladder("hub", "ledger", "--dir", str(network.hub_dir), "--json").stdout)
        return {row["name"]: row for row in rows}

    wait_for(lambda: accounts().get("ann/phone", {}).get("spent", 0) >= len(data), 30,
             "the receipts the hub signs for the phone")
    table = accounts()
    spent = table["ann/phone"]["spent"]
    assert abs(spent - len(data)) <= 0.02 * len(data), f"the phone spent {spent} for {len(data)}"
    assert table["sharer"]["earned"] == credits(sharer)["earned"] == spent
    assert table["ann"]["spent"] == 0, "a device pays from an account of its own, not its owner's"
    verify = ladder("hub", "ledger", "verify", "--dir", str(network.hub_dir), check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


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

        # Each hub keeps the other's newest checkpoint, checked against the one it held before.
        def ledger_of(net: Network, other: str) -> dict | None:
            rows = json.loads(ladder("hub", "peers", "--dir", str(net.hub_dir), "--json").stdout)["peers"]
            return next(r["ledger"] for r in rows if r["name"] == other)

        size_a = len(debits)
        wait_for(lambda: (ledger_of(c, "a") or {}).get("size") == size_a, 30, "c to hold a's checkpoint")
        wait_for(lambda: (ledger_of(a, "c") or {}).get("size") == len(credited), 30, "a to hold c's")
        assert ledger_of(c, "a")["holds"] and ledger_of(a, "c")["holds"]

        # a rewrites one entry of its history, consistently, and restarts: what it signs now cannot be
        # the log it showed c before, and c says so, keeping both checkpoints.
        a.hub.stop()
        with sqlite3.connect(a.hub_dir / "hub.db") as db:
            index, data = db.execute("SELECT idx, data FROM ledger ORDER BY idx").fetchone()
            entry = json.loads(data)
            entry["amount"] -= 1000
            edited = json.dumps(entry, sort_keys=True, separators=(",", ":"))
            db.execute("UPDATE ledger SET data = ?, leaf = ? WHERE idx = ?",
                       (edited, hashlib.sha256(b"\x00" + edited.encode()).digest(), index))
            db.execute("DELETE FROM ledger_checkpoints")
        a.hub = a.start_hub()
        wait_for(lambda: not ledger_of(c, "a")["holds"], 40, "c to catch a's rewritten history")
        conflict = ledger_of(c, "a")["conflict"]
        assert f"two different logs of {size_a} entries" in conflict["reason"]
        table = ladder("hub", "peers", "--dir", str(c.hub_dir)).stdout
        assert "FORKED" in table and "two different logs" in table
    finally:
        for net in (a, c):
            net.close()



def test_at_a_busy_exit_the_member_who_shared_gets_the_larger_share_and_the_other_is_still_served(
        network, origin):
    (origin.dir / "c32.bin").write_bytes(os.urandom(32 * MIB))
    network.hub.stop()  # a small credit limit, so that 32 MiB of balance weighs: weights 2 and 1/2
    with open(network.hub_dir / "hub.toml", "a") as toml:
        toml.write('\n[credits]\nlimit = "64M"\n')
    network.hub = network.start_hub()
    rich_port = free_port()
    rich = network.exit("rich", "AA", "--allow-private", "--proxy", f"127.0.0.1:{rich_port}",
                        "--exit", "busy")
    poor = network.user("poor", "--exit", "rich")
    poor.wait_exits(1)
    assert curl("-s", "-o", "/dev/null", "-x", poor.socks, origin.url("c32.bin")).returncode == 0
    wait_for(lambda: credits(rich)["balance"] >= 32 * MIB, 30, "the rich member's credits")

    network.exit("busy", "BB", "--allow-private", "--rate", "4M")
    poor.proc.stop()  # the poor member now goes through the busy exit too
    poor_port = free_port()
    network.start("poor-again", "up", "--dir", str(poor.folder), "--proxy", f"127.0.0.1:{poor_port}",
                  "--exit", "busy")
    proxies = {"rich": f"socks5h://127.0.0.1:{rich_port}", "poor": f"socks5h://127.0.0.1:{poor_port}"}
    wait_for(lambda: all(curl("-s", "-o", "/dev/null", "-x", proxy, origin.url("index.html"),
                              timeout=10).returncode == 0 for proxy in proxies.values()),
             30, "both members to reach the busy exit")
    time.sleep(6)  # the hub tells the exit its users' balances every 5 s
    fetches = {name: subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}",
                                       "--max-time", "8", "-x", proxy, origin.url("big.bin")],
                                      stdout=subprocess.PIPE)
               for name, proxy in proxies.items()}
    got = {name: int(fetch.communicate(timeout=30)[0] or 0) for name, fetch in fetches.items()}
    print("bytes in 8 s at a 4 MB/s exit:", got)
    assert got["poor"] > 1_000_000, got  # served, if slower
    assert got["rich"] > 2 * got["poor"], got  # weights 2 and 1/2: about four times as much


# An exit that pads: on every channel opened to it, every 5 ms, a PING and 50 KB of control padding in
# the channel's nested link (what its user's agent reads and drops), counted in a file.
PADDING_EXIT = """
import asyncio, os, sys
from ladder.agent import credits
from ladder.cli import main

answered, padded = credits.Receipts.answered, [0]

def answered_and_padded(self, channel, payer):
    answered(self, channel, payer)
    loop = asyncio.get_running_loop()
    padding = b'{"type":"padding","p":"' + b"x" * 50_000 + b'"}'

    def pad():
        if channel.closed:
            return
        channel.inner.mux.ping(loop.time())
        channel.inner.mux.send_control(padding)
        channel.inner._flush_soon()
        padded[0] += len(padding) + 2 * 9 + 8
        with open(os.environ["PADDED"] + ".new", "w") as out:
            out.write(str(padded[0]))
        os.replace(os.environ["PADDED"] + ".new", os.environ["PADDED"])  # never seen half-written
        loop.call_later(0.005, pad)

    pad()

credits.Receipts.answered = answered_and_padded
sys.argv[0] = "ladder"
main()
"""


def test_an_exit_that_pings_and_pads_earns_nothing_for_those_bytes(network, origin, monkeypatch, tmp_path):
    data = os.urandom(16 * MIB)
    (origin.dir / "c16.bin").write_bytes(data)
    padded = tmp_path / "padded"
    monkeypatch.setenv("PADDED", str(padded))
    folder = network.join("padder")
    network.start("padder", "up", "--dir", str(folder), "--share", "--country", "NL",
                  "--ports", "1-65535", "--allow-private", python_args=("-c", PADDING_EXIT))
    user = network.user("user")
    user.wait_exits(1)
    got = curl("-s", "-x", user.socks, "--limit-rate", "8M", origin.url("c16.bin"), timeout=60)
    assert got.stdout == data
    wait_for(lambda: credits(user)["spent"] >= len(data), 30, "the receipts of the download")
    time.sleep(2)  # the last quiet receipt, if padding went on after the download
    padding = int(padded.read_text())
    assert padding > len(data) // 4  # it padded a quarter or more on top
    spent = credits(user)["spent"]
    print(f"padded {padding} bytes; the user spent {spent} for {len(data)}")
    assert spent <= 1.02 * len(data), f"spent {spent} for {len(data)} of data"
