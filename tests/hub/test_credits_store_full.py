"""A hub whose store cannot be written (its disk is full) goes on signing ledger checkpoints and says so
in one line, instead of a periodic task failing with a traceback every ten seconds (found by the fault
run, tests/integration/test_faults.py, filling hub A's disk)."""

import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.hub.credits import CHECKPOINT_EVERY, Credits
from ladder.protocol.ledger import verify_checkpoint
from ladder.store.hubdb import HubStore, StoreError

HUB = "h" * 24


def test_a_checkpoint_the_store_cannot_keep_is_a_warning_and_kept_once_it_can(tmp_path, caplog, monkeypatch):
    now = [1000.0]
    with HubStore(tmp_path) as store:
        credits = Credits(store, Ed25519PrivateKey.generate(), HUB, None, clock=lambda: now[0])

        def full(*args) -> None:
            raise StoreError("the store failed: database or disk is full")

        monkeypatch.setattr(store, "add_checkpoint", full)
        with caplog.at_level(logging.WARNING, logger="ladder.hub.credits"):
            credits.tick([], [])
        assert [r.getMessage() for r in caplog.records] == [
            "cannot keep a checkpoint: the store failed: database or disk is full"]
        assert store.latest_checkpoint(HUB) is None
        given = credits.checkpoint()  # what a member asking for its credits is shown meanwhile
        assert given is not None and verify_checkpoint(given).size == 0

        monkeypatch.undo()
        now[0] += CHECKPOINT_EVERY
        credits.tick([], [])
        kept = store.latest_checkpoint(HUB)
        assert kept is not None and verify_checkpoint(kept).size == 0
