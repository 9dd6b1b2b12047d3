"""The hub's pushes of the directory and the services: sent when what members would hear changed, only.

A peer hub flooding routes changed the routing table many times a second
behind the exits that fit one `directory`, and every change pushed the same
60 KB to every member, each of which parsed and verified it
(benchmarks/abuse.py, routes). A real `Hub` (not started: no socket) with
fake member links.
"""

from __future__ import annotations

import pytest
from hub_fakes import FakeLink, hub_config, joined

from ladder.hub.directory import ExitListing, Origin
from ladder.hub.hub import Hub
from ladder.protocol import control
from ladder.runtime import run_async
from ladder.store.hubdb import HubStore, Member

FAR = Origin("peer", "far-hub-id")


def far_exit(n: int) -> ExitListing:
    record = {"record": f"r{n}", "signature": f"s{n}", "pubkey": "k"}
    return ExitListing(f"far{n}-id", f"far{n}.far", "FF", record, FAR, hub="far", hops=1)


@pytest.fixture
def hub_parts(tmp_path):
    config = hub_config(tmp_path)
    with HubStore(tmp_path / "hub.db") as store:
        yield config, store, [joined(store, name) for name in ("alice", "bob", "carol")]


def heard(link: FakeLink, kind: type) -> list:
    return [message for message in link.sent if isinstance(message, kind)]


def in_a_hub(hub_parts, scenario) -> None:
    config, store, members = hub_parts

    async def main():
        hub = Hub(config, store)
        try:
            scenario(hub, members)
        finally:
            await hub.stop()

    run_async(main())


def test_the_directory_is_pushed_when_what_members_would_hear_changed_and_not_again(hub_parts):
    def scenario(hub: Hub, members: list[Member]) -> None:
        alice, bob = FakeLink(), FakeLink()
        hub.member_online(members[0], alice, None)
        hub.member_online(members[1], bob, None)
        hub.directory.set_remote("far1-id", far_exit(1), None)
        hub._push_directory()
        assert [len(heard(link, control.Directory)) for link in (alice, bob)] == [2, 2]
        assert [x.id for x in heard(alice, control.Directory)[-1].exits] == ["far1-id"]
        hub._push_directory()  # nothing changed
        hub.directory.set_remote("far1-id", far_exit(1), None)  # a route replaced by an equal one
        hub._push_directory()
        assert [len(heard(link, control.Directory)) for link in (alice, bob)] == [2, 2]
        hub.directory.set_remote("far2-id", far_exit(2), None)
        hub._push_directory()
        assert [len(heard(link, control.Directory)) for link in (alice, bob)] == [3, 3]

    in_a_hub(hub_parts, scenario)


def test_a_member_that_came_online_between_a_change_and_its_push_hears_the_push(hub_parts):
    """It heard the newer directory on coming online; the change undone before the push leaves the
    others' directory as it was, but not the newcomer's."""
    def scenario(hub: Hub, members: list[Member]) -> None:
        alice, carol = FakeLink(), FakeLink()
        hub.member_online(members[0], alice, None)
        hub.directory.set_remote("far1-id", far_exit(1), None)
        hub._push_directory()
        hub.directory.set_remote("far1-id", None, None)
        hub.member_online(members[2], carol, None)
        assert heard(carol, control.Directory)[-1].exits == ()
        hub.directory.set_remote("far1-id", far_exit(1), None)
        hub._push_directory()
        assert [x.id for x in heard(carol, control.Directory)[-1].exits] == ["far1-id"]

    in_a_hub(hub_parts, scenario)


def test_the_services_are_pushed_again_only_when_they_changed_or_someone_came_online(hub_parts):
    def scenario(hub: Hub, members: list[Member]) -> None:
        alice, bob = FakeLink(), FakeLink()
        hub.member_online(members[0], alice, None)
        hub._push_services()
        pushed = len(heard(alice, control.Services))
        hub._push_services()  # nothing changed
        assert len(heard(alice, control.Services)) == pushed
        hub.member_online(members[1], bob, None)
        hub._push_services()  # bob may have heard another listing than alice: said again
        assert len(heard(alice, control.Services)) == pushed + 1
        hub._push_services()
        assert len(heard(alice, control.Services)) == pushed + 1

    in_a_hub(hub_parts, scenario)
