"""Priority by balance at a busy exit, at simulated times: shares of the exit's rate follow the weights,
nobody is starved, and what one member leaves unused goes to the others."""

from __future__ import annotations

import pytest
from fakeclock import FakeClock, send_for

from ladder.agent.sharing import ExitRelay, SharePolicy, Sharing, share_weight
from ladder.config import DEFAULT_CREDIT_LIMIT

LIMIT = DEFAULT_CREDIT_LIMIT  # 2 GB
RATE = 3_000_000


def saturating(sharing: Sharing, *members: str) -> dict:
    """Relays that always have bytes to carry for each member, honouring the waits the exit gives."""
    return {m: (lambda n, m=m: sharing.carried(m, n)) for m in members}


def busy_exit(tmp_path, balances: dict[str, int], **policy) -> tuple[Sharing, FakeClock]:
    clock = FakeClock()
    sharing = Sharing(SharePolicy(rate=RATE, **policy), tmp_path / "usage.json", clock)
    sharing.set_balances(balances, LIMIT)
    return sharing, clock


def test_weights_grow_with_the_balance_within_bounds_and_an_unknown_balance_weighs_one():
    balances = [-LIMIT, -LIMIT // 2, 0, LIMIT // 4, LIMIT, 10 * LIMIT]
    weights = [share_weight(b, LIMIT) for b in balances]
    assert weights == sorted(weights)
    assert weights[0] == 0.25 and weights[2] == 1.0 and weights[-2] == weights[-1] == 4.0
    assert share_weight(-10 * LIMIT, LIMIT) == 0.25, "never 0, whatever the hub says"
    assert share_weight(None, LIMIT) == 1.0


@pytest.mark.parametrize("rich, poor", [(LIMIT, -LIMIT), (LIMIT // 2, 0), (0, -LIMIT // 4)])
def test_two_members_saturating_a_busy_exit_share_its_rate_by_their_weights(tmp_path, rich, poor):
    sharing, clock = busy_exit(tmp_path, {"alice": rich, "bob": poor})
    sent = send_for(60, clock, saturating(sharing, "alice", "bob"))
    want = share_weight(rich, LIMIT) / share_weight(poor, LIMIT)
    assert sent["alice"] / sent["bob"] == pytest.approx(want, rel=0.1)
    assert sum(sent.values()) / 60 == pytest.approx(RATE, rel=0.05), "the exit's rate, all of it"


def test_equal_balances_share_equally_and_unknown_ones_count_as_zero(tmp_path):
    sharing, clock = busy_exit(tmp_path, {"alice": LIMIT // 3, "bob": LIMIT // 3})
    sent = send_for(60, clock, saturating(sharing, "alice", "bob"))
    assert sent["alice"] == pytest.approx(sent["bob"], rel=0.05)
    sharing, clock = busy_exit(tmp_path, {"alice": 0})
    sent = send_for(60, clock, saturating(sharing, "alice", "carol"))
    assert sent["alice"] == pytest.approx(sent["carol"], rel=0.05)


def test_a_hub_without_a_credit_limit_has_its_balances_weighed_against_the_default_one(tmp_path):
    sharing, _ = busy_exit(tmp_path, {})
    sharing.set_balances({"alice": LIMIT // 2, "bob": -3 * LIMIT}, 0)
    assert sharing.weight("alice") == 2.0 and sharing.weight("bob") == 0.25


def test_a_lone_member_at_its_credit_limit_gets_the_whole_rate(tmp_path):
    sharing, clock = busy_exit(tmp_path, {"bob": -LIMIT})
    sent = send_for(60, clock, saturating(sharing, "bob"))
    assert sent["bob"] / 60 == pytest.approx(RATE, rel=0.05)


def test_the_lowest_weight_progresses_every_second_at_its_share(tmp_path):
    sharing, clock = busy_exit(tmp_path, {"alice": LIMIT, "bob": -LIMIT})
    seconds: dict[int, int] = {}

    def bob(nbytes: int) -> float:
        second = int(clock() - 1000)
        seconds[second] = seconds.get(second, 0) + nbytes
        return sharing.carried("bob", nbytes)

    send_for(30, clock, {"alice": saturating(sharing, "alice")["alice"], "bob": bob})
    share = RATE * share_weight(-LIMIT, LIMIT) / (share_weight(-LIMIT, LIMIT) + share_weight(LIMIT, LIMIT))
    assert sorted(seconds) == list(range(30)), "bob carried bytes in every second"
    assert min(seconds.values()) >= 0.8 * share, seconds


def test_what_a_light_member_leaves_unused_goes_to_the_others(tmp_path):
    sharing, clock = busy_exit(tmp_path, {"alice": -LIMIT, "bob": LIMIT})

    def bob_browsing(nbytes: int) -> float:
        sharing.carried("bob", nbytes)
        return 0.5  # a chunk every half second, well under its share

    sent = send_for(60, clock, {"alice": saturating(sharing, "alice")["alice"], "bob": bob_browsing})
    assert sent["bob"] / 60 == pytest.approx(2 * 16 * 1024, rel=0.05), "the light member is not slowed"
    assert sum(sent.values()) / 60 == pytest.approx(RATE, rel=0.05), "the heavy one takes the rest"


def test_new_balances_move_the_shares_at_once(tmp_path):
    sharing, clock = busy_exit(tmp_path, {"alice": 0, "bob": 0})
    send_for(10, clock, saturating(sharing, "alice", "bob"))
    sharing.set_balances({"alice": LIMIT // 2, "bob": 0}, LIMIT)
    sent = send_for(60, clock, saturating(sharing, "alice", "bob"))
    assert sent["alice"] / sent["bob"] == pytest.approx(2, rel=0.1)


def test_a_member_s_own_rate_still_holds_and_its_unused_share_goes_to_the_other(tmp_path):
    sharing, clock = busy_exit(tmp_path, {"alice": LIMIT, "bob": -LIMIT}, user_rate=1_000_000)
    for member in ("alice", "bob"):  # each holds a slot, as a member whose stream the exit admitted
        sharing.take_slot(ExitRelay(sharing, member, member), start=lambda: None, refuse=pytest.fail)
    sent = send_for(60, clock, saturating(sharing, "alice", "bob"))
    assert sent["alice"] / 60 == pytest.approx(1_000_000, rel=0.05), "alice's share is more than her rate"
    assert sent["bob"] / 60 == pytest.approx(1_000_000, rel=0.05), "bob takes what alice may not"


def test_status_shows_a_member_s_balance_and_weight_when_the_hub_said_them(tmp_path):
    sharing, _ = busy_exit(tmp_path, {"alice": -LIMIT})
    sharing.carried("alice", 10)
    sharing.carried("bob", 10)
    users = sharing.status()["users"]
    assert users["alice"]["balance"] == -LIMIT and users["alice"]["weight"] == 0.25
    assert "balance" not in users["bob"] and "weight" not in users["bob"]
