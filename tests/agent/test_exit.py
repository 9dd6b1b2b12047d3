"""The exit's guard against IPv6 forms that carry an IPv4 address, and the per-member stream slots."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from ladder.agent import sharing as sharing_module
from ladder.agent.exit import ExitGuard, embedded_ipv4
from ladder.agent.sharing import ExitRelay, SharePolicy, Sharing
from ladder.config import ConfigError

HUB = ipaddress.ip_address("45.33.32.1")
GUARD = ExitGuard(hub={(HUB, 443)}, deny_networks=(ipaddress.ip_network("151.102.0.0/16"),))


@pytest.mark.parametrize("address, refused", [
    ("::127.0.0.1", "private, loopback or local"),             # IPv4-compatible (::/96)
    ("::10.0.0.1", "private, loopback or local"),
    ("::ffff:0:127.0.0.1", "private, loopback or local"),      # IPv4-translated (::ffff:0:0:0/96)
    ("64:ff9b::127.0.0.1", "private, loopback or local"),      # NAT64 well-known prefix
    ("64:ff9b::169.254.169.254", "private, loopback or local"),
    ("64:ff9b::45.33.32.1", "hub's own address"),
    ("64:ff9b::151.102.3.4", "denies 151.102.0.0/16"),
    ("64:ff9b:1::7f00:1", "private, loopback or local"),       # NAT64 local-use prefix (RFC 8215)
    ("64:ff9b:1:808:8:800::", "private, loopback or local"),   # ... even with a global address inside
    ("2002:7f00:1::1", "private, loopback or local"),          # 6to4 of 127.0.0.1
    ("2002:c0a8:101::1", "private, loopback or local"),        # 6to4 of 192.168.1.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private, loopback or local"),  # Teredo
    ("::", "unspecified"),
    ("64:ff9b::8.8.8.8", None),                                # NAT64 to a global address: a real site
    ("2002:808:808::1", None),                                 # 6to4 of 8.8.8.8
    ("2606:4700::1111", None),                                 # ordinary global IPv6
])
def test_ipv6_forms_embedding_ipv4_are_checked_as_that_address(address, refused):
    why = GUARD.refusal(ipaddress.ip_address(address), 443)
    assert (why is None) if refused is None else (why is not None and refused in why), why


def test_embedded_addresses_are_found_where_each_form_keeps_them():
    def found(text: str) -> list[str]:
        return [str(a) for a in embedded_ipv4(ipaddress.ip_address(text))]

    assert found("::ffff:0:127.0.0.1") == ["127.0.0.1"]
    assert found("2002:7f00:1::") == ["127.0.0.1"]
    assert found("2001:0:4136:e378:8000:63bf:3fff:fdd2") == ["65.54.227.120", "192.0.2.45"]
    assert found("2606:4700::1111") == []


def test_allow_private_still_keeps_the_hub_port_behind_every_form():
    lab = ExitGuard(allow_private=True, hub={(ipaddress.ip_address("127.0.0.1"), 443)})
    for form in ("127.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::127.0.0.1", "2002:7f00:1::"):
        assert "hub's own" in lab.refusal(ipaddress.ip_address(form), 443), form
        assert lab.refusal(ipaddress.ip_address(form), 8080) is None, form


# ---------------------------------------------------------------- stream slots per member

def slots(tmp_path, limit: int) -> Sharing:
    return Sharing(SharePolicy(user_streams=limit), tmp_path / "usage.json")


class Outcome:
    def __init__(self, sharing: Sharing, member: str = "m1"):
        self.relay = ExitRelay(sharing, member, member)
        self.started = False
        self.refused: str | None = None

    def ask(self, sharing: Sharing) -> Outcome:
        sharing.take_slot(self.relay, self._start, self._refuse)
        return self

    def _start(self) -> None:
        self.started = True

    def _refuse(self, why: str) -> None:
        self.refused = why


def test_streams_over_the_limit_wait_for_a_slot_in_order(tmp_path):
    async def scenario():
        sharing = slots(tmp_path, 2)
        first, second, third, fourth = (Outcome(sharing).ask(sharing) for _ in range(4))
        other = Outcome(sharing, "m2").ask(sharing)  # another member's slots are its own
        assert (first.started, second.started, third.started, fourth.started, other.started) == (
            True, True, False, False, True)
        first.relay.stream_gone()
        assert third.started and not fourth.started
        third.relay.stream_gone()
        assert fourth.started and sharing.users["m1"].streams == 2
        assert all(o.refused is None for o in (first, second, third, fourth, other))
    asyncio.run(scenario())


def test_a_withdrawn_stream_gives_up_its_place(tmp_path):
    async def scenario():
        sharing = slots(tmp_path, 1)
        holder, gone, next_one = (Outcome(sharing).ask(sharing) for _ in range(3))
        gone.relay.on_reset(0, "the opener withdrew")  # as the link delivers a RST
        holder.relay.stream_gone()
        assert next_one.started and not gone.started and sharing.users["m1"].streams == 1
    asyncio.run(scenario())


def test_waiting_is_bounded_in_time_and_in_count(tmp_path, monkeypatch):
    monkeypatch.setattr(sharing_module, "WAIT_FOR_SLOT", 0.05)
    monkeypatch.setattr(sharing_module, "MAX_WAITING", 2)

    async def scenario():
        sharing = slots(tmp_path, 1)
        outcomes = [Outcome(sharing).ask(sharing) for _ in range(4)]
        assert "1 streams per member, and 2 wait already" in outcomes[3].refused
        assert outcomes[1].refused is None and outcomes[2].refused is None
        await asyncio.sleep(0.3)
        for waited in outcomes[1:3]:
            assert not waited.started and "none freed within 0.05 s" in waited.refused
        assert not sharing.users["m1"].waiting
    asyncio.run(scenario())


def test_the_default_limit_holds_a_browser_and_a_phone():
    assert SharePolicy().user_streams == SharePolicy.from_table({}).user_streams >= 1024
    with pytest.raises(ConfigError):
        SharePolicy.from_table({"user_streams": 0})
