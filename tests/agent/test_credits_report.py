"""`ladder credits` without verify: a member with more entries than the hub sends in one page still sees its
newest entries and its totals per exit or member from all of them (it once saw its oldest page only)."""

from __future__ import annotations

import asyncio
import hashlib
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.agent import credits
from ladder.agent.credits import LedgerMismatch, credits_of
from ladder.protocol import control
from ladder.protocol.ledger import Entry, sign_checkpoint

HUB = Ed25519PrivateKey.generate()
ME, BOB, CAROL = "m" * 24, "b" * 24, "c" * 24
PAGE = 16  # what the hub sends at most in one answer (hub/credits.py)
RECEIPT = {"record": "e30", "signature": "c2ln", "pubkey": "a2V5"}


def entries(n: int) -> list[Entry]:
    """n entries of ME: paying bob on even indices, earning from carol on odd ones, amount = index + 1."""
    return [Entry(i, 1_700_000_000 + i, "transfer", ME if i % 2 == 0 else CAROL, BOB if i % 2 == 0 else ME,
                  i + 1, i + 1, f"{i:064x}", 1, RECEIPT) for i in range(n)]


class FakeHub:
    """Answers credits-requests as a hub does: a page of PAGE entries from `start`, oldest first."""

    def __init__(self, log: list[Entry], data=lambda e: e.data().decode()):
        self.log, self.data, self.asked = log, data, []
        self.checkpoint = control.Envelope(**sign_checkpoint(HUB, len(log), hashlib.sha256(b"").digest(), 1))

    async def __call__(self, config, request: control.CreditsRequest) -> control.Credits:
        self.asked.append(request)
        page = self.log[request.start:request.start + PAGE]
        return control.Credits(0, 0, 0, 0, 0, 0, self.checkpoint, (), len(self.log), request.start,
                               tuple(control.LedgerItem(e.index, self.data(e), ()) for e in page))


def report(monkeypatch, tmp_path, hub: FakeHub) -> dict:
    monkeypatch.setattr(credits, "_ask_credits", hub)
    config = SimpleNamespace(id=ME, ledger_path=tmp_path / "ledger.json")
    return asyncio.run(credits_of(config))  # type: ignore[arg-type]


def test_the_newest_entries_and_the_totals_of_all_of_them_over_several_pages(monkeypatch, tmp_path):
    hub = FakeHub(entries(40))
    got = report(monkeypatch, tmp_path, hub)
    assert [r["index"] for r in got["recent"]] == list(range(24, 40))
    assert [request.start for request in hub.asked] == [0, 16, 32]
    assert got["involved"] == {BOB: {"earned": 0, "spent": sum(range(1, 41, 2))},
                               CAROL: {"earned": sum(range(2, 41, 2)), "spent": 0}}
    assert got["recent"][-1] == {"index": 39, "time": 1_700_000_039, "kind": "transfer", "amount": 40,
                                 "with": CAROL, "carried": 40}


def test_one_page_is_one_request(monkeypatch, tmp_path):
    hub = FakeHub(entries(3))
    got = report(monkeypatch, tmp_path, hub)
    assert len(hub.asked) == 1 and [r["index"] for r in got["recent"]] == [0, 1, 2]


def test_an_entry_the_hub_garbled_is_one_line_naming_it(monkeypatch, tmp_path):
    hub = FakeHub(entries(20), data=lambda e: "not json" if e.index == 17 else e.data().decode())
    with pytest.raises(LedgerMismatch, match=r"^entry 17 does not hold: "):
        report(monkeypatch, tmp_path, hub)
