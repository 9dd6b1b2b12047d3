"""Limits that read time, at simulated times: rates, caps, the reconnect backoff, how exits' failures age."""

from __future__ import annotations

import random
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fakeclock import FakeClock, send_for

from ladder.agent.directory import FAILURE_MEMORY, REFUSAL_MEMORY, Directory
from ladder.agent.reconnect import BACKOFF_MAX, BACKOFF_MIN, GOOD_LINK, Backoff
from ladder.agent.sharing import (
    DAILY_CAP,
    MEMBERS_ONLY,
    MONTHLY_CAP,
    ExitRelay,
    SharePolicy,
    Sharing,
    TokenBucket,
)
from ladder.protocol.control import ExitEntry
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.noise import generate_keypair
from ladder.protocol.records import sign_exit_record


def test_a_token_bucket_holds_its_rate_over_simulated_minutes():
    for rate in (50_000, 1_000_000, 20_000_000):
        clock = FakeClock()
        bucket = TokenBucket(rate, clock)
        sent = send_for(120, clock, {"one": bucket.take})["one"]
        assert sent / 120 == pytest.approx(rate, rel=0.05), rate


def test_the_exit_rate_is_shared_and_the_member_rate_is_each_member_s(tmp_path):
    clock = FakeClock()
    sharing = Sharing(SharePolicy(rate=3_000_000, user_rate=2_000_000), tmp_path / "usage.json", clock)
    for member in ("alice", "bob"):  # each holds a slot, as a member whose stream the exit admitted
        sharing.take_slot(ExitRelay(sharing, member, member), start=lambda: None, refuse=pytest.fail)
    alone = send_for(60, clock, {"alice": lambda n: sharing.carried("alice", n)})
    assert alone["alice"] / 60 == pytest.approx(2_000_000, rel=0.05), "one member: its own rate"
    both = send_for(60, clock, {m: (lambda n, m=m: sharing.carried(m, n)) for m in ("alice", "bob")})
    assert sum(both.values()) / 60 == pytest.approx(3_000_000, rel=0.05), "two members: the exit's rate"
    assert both["alice"] == pytest.approx(both["bob"], rel=0.05), "shared evenly"


def test_caps_hold_from_their_last_byte_and_the_daily_one_lifts_the_next_day(tmp_path):
    day = time.mktime((2031, 5, 30, 12, 0, 0, 0, 0, -1))  # noon on 30 May: a day and a month roll soon
    wall = FakeClock(day)
    sharing = Sharing(SharePolicy(daily_cap=1000, monthly_cap=1800), tmp_path / "usage.json", FakeClock(),
                      wall)
    sharing.carried("alice", 999)
    assert sharing.capped() is None and sharing.admit("alice", "alice") is None
    sharing.carried("alice", 1)
    assert sharing.capped() is DAILY_CAP and sharing.admit("alice", "alice") is DAILY_CAP
    assert sharing.status()["capped"] == DAILY_CAP.reason
    wall.advance(86400)  # 31 May
    assert sharing.capped() is None
    sharing.carried("bob", 799)
    assert sharing.capped() is None
    sharing.carried("bob", 1)
    assert sharing.capped() is MONTHLY_CAP, "1000 + 800 bytes this month"
    wall.advance(86400)  # 1 June
    assert sharing.capped() is None and sharing.usage["month_bytes"] == 0


def test_a_cap_survives_a_restart_on_the_byte(tmp_path):
    wall = FakeClock(time.time())
    first = Sharing(SharePolicy(daily_cap=5000), tmp_path / "usage.json", FakeClock(), wall)
    first.carried("alice", 4999)
    first.save()
    again = Sharing(SharePolicy(daily_cap=5000), tmp_path / "usage.json", FakeClock(), wall)
    assert again.capped() is None
    again.carried("alice", 1)
    assert again.capped() is DAILY_CAP


def test_a_policy_refusal_is_typed(tmp_path):
    sharing = Sharing(SharePolicy(members=frozenset({"alice"})), tmp_path / "usage.json", FakeClock())
    assert sharing.admit("id-bob", "Bob") is MEMBERS_ONLY
    assert sharing.admit("id-alice", "Alice") is None


def test_a_device_is_admitted_as_its_owner(tmp_path):
    sharing = Sharing(SharePolicy(members=frozenset({"alice"})), tmp_path / "usage.json", FakeClock())
    assert sharing.admit("id-phone", "alice/phone") is None
    assert sharing.admit("id-tv", "bob/alice") is MEMBERS_ONLY


def test_the_backoff_doubles_within_its_bounds_and_starts_over_after_a_good_link():
    for seed in range(20):
        clock = FakeClock()
        backoff = Backoff(clock, random.Random(seed))
        ceilings = [min(BACKOFF_MIN * 2**i, BACKOFF_MAX) for i in range(8)]
        for ceiling in ceilings:  # dials that fail at once
            backoff.dialling()
            assert ceiling / 2 <= backoff.delay() <= ceiling
        backoff.dialling()
        clock.advance(GOOD_LINK - 0.1)  # a link that flapped: the wait stays long
        assert BACKOFF_MAX / 2 <= backoff.delay() <= BACKOFF_MAX
        backoff.dialling()
        clock.advance(GOOD_LINK + 0.1)  # a link that held
        assert BACKOFF_MIN / 2 <= backoff.delay() <= BACKOFF_MIN
        backoff.dialling()
        assert BACKOFF_MIN <= backoff.delay() <= 2 * BACKOFF_MIN


def exit_entry(key, name, users=0):
    return ExitEntry(id=member_id(public_bytes(key)), name=name, country="ZZ", users=users,
                     **sign_exit_record(key, "ZZ", generate_keypair()[1], 1))


def test_a_failed_exit_goes_last_for_a_minute_and_a_refusal_counts_for_ten(tmp_path):
    clock = FakeClock()
    directory = Directory(tmp_path / "pins.json", own_id="me", own_name="me", clock=clock)
    entries = [exit_entry(Ed25519PrivateKey.generate(), name, users) for name, users in (("a", 0), ("b", 1))]
    directory.update(entries)
    a, _ = (entry.id for entry in entries)

    def order() -> list[str]:
        return [e.name for e, _ in directory.candidates("auto")]

    directory.failed(a)
    assert order() == ["b", "a"]
    clock.advance(FAILURE_MEMORY - 1)
    assert order() == ["b", "a"]
    clock.advance(2)
    assert order() == ["a", "b"], "the failure is forgotten"
    directory.refused(a)
    clock.advance(REFUSAL_MEMORY - 1)
    assert order() == ["b"] and not directory.admits_me(a)
    clock.advance(2)
    assert order() == ["a", "b"], "asked again after ten minutes"
