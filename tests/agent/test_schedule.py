"""A sharer's pauses: the schedule's windows, a metered network (a faked NetworkManager), and the switch."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fakeclock import FakeClock

from ladder.agent.agent import Agent
from ladder.agent.schedule import parse_schedule, read_metered
from ladder.agent.sharing import METERED, OUTSIDE_SCHEDULE, SharePolicy, Sharing
from ladder.config import ConfigError, MemberConfig
from ladder.errors import UserError
from ladder.protocol import control


def at(hour: int, minute: int = 0) -> float:
    """Unix time of that local time of day (3 December 2026)."""
    return time.mktime((2026, 12, 3, hour, minute, 0, 0, 0, -1))


def test_a_window_holds_from_its_start_to_just_before_its_end():
    day = parse_schedule("08:00-23:30")
    assert day is not None
    assert not day.allows(at(7, 59)) and day.allows(at(8)) and day.allows(at(23, 29))
    assert not day.allows(at(23, 30))


def test_windows_may_cross_midnight_or_be_several_and_24_00_ends_the_day():
    night = parse_schedule("22:00-02:00")
    assert night is not None and night.allows(at(23)) and night.allows(at(1, 59)) and not night.allows(at(2))
    both = parse_schedule(["07:00-09:00", "18:00-24:00"])
    assert both is not None and both.allows(at(8)) and both.allows(at(23, 59)) and not both.allows(at(12))
    assert both.text == "07:00-09:00, 18:00-24:00"


@pytest.mark.parametrize("bad", ["8-23", "25:00-26:00", "08:00-08:00", "08:61-09:00", "24:30-01:00", [], 7,
                                 ["08:00-09:00", "noon"]])
def test_a_schedule_that_is_no_time_of_day_is_one_config_error(bad):
    with pytest.raises(ConfigError, match=r"\[share\] schedule"):
        SharePolicy.from_table({"schedule": bad})


def test_outside_the_schedule_new_streams_are_refused_saying_so(tmp_path):
    wall = [at(12)]
    sharing = Sharing(SharePolicy.from_table({"schedule": "08:00-23:30"}), tmp_path / "u.json", FakeClock(),
                      lambda: wall[0])
    assert sharing.admit("a" * 24, "alice") is None
    wall[0] = at(3)
    assert sharing.admit("a" * 24, "alice") == OUTSIDE_SCHEDULE
    assert OUTSIDE_SCHEDULE.reason == "outside the sharing schedule"
    assert sharing.status()["paused"] == "outside the sharing schedule"


def test_nmcli_output_says_metered_when_any_device_is_and_unknown_otherwise():
    assert read_metered("GENERAL.METERED:no (guessed)\nGENERAL.METERED:yes\n") is True
    assert read_metered("GENERAL.METERED:no\nGENERAL.METERED:unknown\n") is False
    assert read_metered("GENERAL.METERED:unknown\n") is None and read_metered("") is None
    with pytest.raises(ConfigError, match="pause_on_metered must be true or false"):
        SharePolicy.from_table({"pause_on_metered": "yes"})


class FakeHub:
    label = "hub test"
    closed = False

    def __init__(self):
        self.sent: list[object] = []

    def send_control(self, message):
        self.sent.append(message)


def sharer_agent(tmp_path, metered, **kwargs) -> Agent:
    config = MemberConfig(tmp_path, Ed25519PrivateKey.generate(), ("127.0.0.1", 9), "fp", "hub", "me")
    return Agent(config, country="DE", metered=metered, **kwargs)


def test_on_a_metered_network_the_exit_pauses_and_the_hub_hears_it(tmp_path):
    answers: list[bool | None] = [True, None]

    async def probe() -> bool | None:
        return answers.pop(0)

    async def main():
        agent = sharer_agent(tmp_path, probe, share=True, policy=SharePolicy(pause_on_metered=True))
        hub = agent.link = FakeHub()  # type: ignore[assignment]
        assert agent.sharer is not None
        agent.sharer.link = hub  # type: ignore[assignment]
        await agent.probe_metered()
        assert agent.sharer.sharing.admit("a" * 24, "alice") == METERED
        assert hub.sent[-1] == control.ShareStatus(False, METERED.reason)
        await agent.probe_metered()  # NetworkManager cannot say: not metered
        assert agent.sharer.sharing.admit("a" * 24, "alice") is None
        assert hub.sent[-1] == control.ShareStatus(True, "")

    asyncio.run(main())


def test_the_probe_is_not_asked_unless_the_policy_pauses_on_metered_networks(tmp_path):
    async def probe() -> bool | None:
        raise AssertionError("asked NetworkManager for a policy that does not pause")

    async def main():
        agent = sharer_agent(tmp_path, probe, share=True)
        await agent.probe_metered()

    asyncio.run(main())


def test_sharing_switched_off_and_on_tells_the_hub_and_is_remembered(tmp_path):
    async def probe() -> bool | None:
        return None

    async def main():
        agent = sharer_agent(tmp_path, probe)
        hub = agent.link = FakeHub()  # type: ignore[assignment]
        agent.set_sharing(True, "fr")
        sharer = agent.sharer
        assert sharer is not None and sharer.country == "FR"
        assert isinstance(hub.sent[0], control.Share)
        agent.set_sharing(False)
        assert agent.sharer is None and hub.sent[-1] == control.ShareStatus(False, "sharing is switched off")
        assert agent.sharing_view()["on"] is False
        settings = json.loads((tmp_path / "settings.json").read_text())
        assert settings == {"sharing": False, "country": "FR"}
        agent.set_sharing(True)  # the last country
        assert agent.sharer is not None and agent.sharer.country == "FR"
        assert hub.sent[-1] == control.ShareStatus(True, "")
        await agent.tasks.stop()

    asyncio.run(main())
    assert sharer_agent(tmp_path, probe).sharer is not None, "a restart shares again"


def test_sharing_needs_a_country_and_a_policy_must_be_a_good_share_table(tmp_path):
    async def probe() -> bool | None:
        return None

    config = MemberConfig(tmp_path, Ed25519PrivateKey.generate(), ("127.0.0.1", 9), "fp", "hub", "me")
    agent = Agent(config, metered=probe)
    with pytest.raises(UserError, match="needs the country"):
        agent.set_sharing(True)
    with pytest.raises(ConfigError, match="unknown keys: colour"):
        agent.set_policy({"colour": "red"})
    with pytest.raises(ConfigError, match="is not an ISO 3166-1 country code"):
        agent.set_sharing(True, "Atlantis")
    table = {"members": "alice", "schedule": "08:00-23:30", "daily_cap": "1G"}
    agent.set_policy(table)
    assert agent.sharing_view()["policy"] == table
    assert agent.policy.members == frozenset({"alice"})
