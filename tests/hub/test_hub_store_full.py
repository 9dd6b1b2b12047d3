"""A hub whose disk is full keeps serving: who is online as what is bookkeeping.

Before, the hub wrote "who is online as what" to its store in the middle of
admitting a member, listing an exit and withdrawing one; on a full disk the
StoreError escaped from the doorway's callback (a traceback, and a member
that never got its welcome), or left an exit that had gone in everyone's
directory. A real `Hub` (not started: no socket) with fake member links and
a store whose writes fail as SQLite's do on a full disk. (The search
index's writes: tests/hub/test_search_listing.py.)
"""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hub_fakes import FakeLink, hub_config, joined

from ladder.hub.hub import Hub
from ladder.protocol import control
from ladder.protocol.records import sign_exit_record
from ladder.runtime import run_async
from ladder.store.hubdb import HubStore, StoreError

FULL = "the store failed: database or disk is full"


@pytest.fixture
def hub_parts(tmp_path):
    config = hub_config(tmp_path)
    with HubStore(tmp_path / "hub.db") as store:
        members = []
        for name in ("alice", "bob"):
            key = Ed25519PrivateKey.generate()
            members.append((joined(store, name, key), key))
        yield config, store, members


def full_disk(monkeypatch, store: HubStore) -> None:
    def fails(*args, **kwargs):
        raise StoreError(FULL)

    monkeypatch.setattr(store, "set_online", fails)


def exits_heard(link: FakeLink) -> list[str]:
    directories = [m for m in link.sent if isinstance(m, control.Directory)]
    return [entry.name for entry in directories[-1].exits] if directories else []


def test_on_a_full_disk_members_come_online_exits_are_listed_and_withdrawn(hub_parts, monkeypatch, caplog):
    config, store, [(alice, alice_key), (bob, _)] = hub_parts

    async def main() -> None:
        hub = Hub(config, store)
        try:
            full_disk(monkeypatch, store)
            alice_link, bob_link = FakeLink(), FakeLink()
            with caplog.at_level(logging.WARNING, logger="ladder.hub.hub"):
                alice_port = hub.member_online(alice, alice_link, None)
                hub.member_online(bob, bob_link, None)
                assert [type(m) for m in bob_link.sent][:2] == [control.Welcome, control.Directory]
                record = sign_exit_record(alice_key, "ZZ", bytes(32), 1)
                hub.control_received(alice_port, control.Share(**record))
                hub._push_directory()
                assert exits_heard(bob_link) == ["alice"]  # listed, and pushed
                alice_link.close(0, "gone")
                hub._push_directory()
                assert exits_heard(bob_link) == []  # withdrawn, though the store kept none of it
            assert f"cannot save that alice is online as user: {FULL}" in caplog.messages
            assert f"cannot save that alice is online as exit: {FULL}" in caplog.messages
            assert f"cannot save that alice is offline: {FULL}" in caplog.messages
        finally:
            await hub.stop()

    run_async(main())
