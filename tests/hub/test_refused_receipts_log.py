"""A flood of bad receipts is counted exactly and logged in a few lines: the first few per sender in each
minute one line each, then one line with how many more (issue 18: one exit flooding refused receipts
wrote 200 INFO lines a second, a way to fill the hub's disk slowly)."""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fakeclock import FakeClock
from hub_fakes import FakeLink, make_member

from ladder.agent.credits import REFUSALS_LOGGED, REFUSALS_SUMMED, RefusalLog
from ladder.hub.credits import Credits
from ladder.hub.ports import MemberPort
from ladder.protocol import control
from ladder.store.hubdb import HubStore

HUB = "h" * 24
FORGED = control.Envelope(record="e30", signature="c2ln", pubkey="a2V5")  # verifies as nobody's receipt
LOGGER = "ladder.hub.credits"


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


class Owner:
    """What a MemberPort hands on; nothing here."""

    def stream_opened(self, *args) -> None: ...
    def control_received(self, *args) -> None: ...
    def port_closed(self, *args) -> None: ...


def test_a_flooding_exit_is_counted_exactly_and_logged_in_first_plus_one_lines_a_minute(tmp_path, caplog):
    clock = FakeClock()
    with HubStore(tmp_path) as store, caplog.at_level(logging.INFO, logger=LOGGER):
        credits = Credits(store, Ed25519PrivateKey.generate(), HUB, None, clock=clock)
        mallory = MemberPort(make_member("mallory"), FakeLink(), Owner())  # type: ignore[arg-type]
        carol = MemberPort(make_member("carol"), FakeLink(), Owner())  # type: ignore[arg-type]
        for _ in range(3):  # three minutes of 200 bad receipts a second, 8 to a message
            for message in range(60 * 25):
                credits.from_exit(mallory, control.Receipts((FORGED,) * 8))
                clock.advance(1 / 25)
                if message % 25 == 24:
                    credits.tick([], [])  # the hub's tick, every second
        credits.from_exit(carol, control.Receipts((FORGED,)))
        clock.advance(REFUSALS_SUMMED)
        credits.tick([], [])

        assert credits.refused == 3 * 60 * 200 + 1, "every refusal counted"
        logged = lines(caplog)
        from_mallory = [line for line in logged if "from mallory" in line]
        assert len(from_mallory) == 3 * (REFUSALS_LOGGED + 1), logged
        assert from_mallory[0].startswith("receipt from mallory refused: ")
        assert "summed up in one line" in from_mallory[REFUSALS_LOGGED - 1]
        summaries = [line for line in from_mallory if " more receipts from mallory refused in " in line]
        assert len(summaries) == 3
        total = sum(int(line.split()[0]) for line in summaries)
        assert total + 3 * REFUSALS_LOGGED == 3 * 60 * 200, "the lines add up to the count"
        assert [line for line in logged if "from carol" in line] == [
            f"receipt from carol refused: {from_mallory[0].partition('refused: ')[2]}"], "others still heard"


def test_a_few_refusals_are_each_one_line_and_no_summary(caplog):
    clock = FakeClock()
    log = logging.getLogger("test refusals")
    refusals = RefusalLog(log, "receipt", clock, first=3, every=60.0)
    with caplog.at_level(logging.INFO, logger="test refusals"):
        for n in range(3):
            refusals.refused("alice", f"reason {n}")
        clock.advance(60.0)
        refusals.flush()
        refusals.refused("alice", "later")  # a new minute: logged again
    assert [r.getMessage() for r in caplog.records] == [
        "receipt from alice refused: reason 0",
        "receipt from alice refused: reason 1",
        "receipt from alice refused: reason 2 (any more in the next 60 s are summed up in one line)",
        "receipt from alice refused: later"]


def test_the_summary_comes_at_the_end_of_the_minute_even_if_the_flood_stopped(caplog):
    clock = FakeClock()
    log = logging.getLogger("test refusals")
    refusals = RefusalLog(log, "checkpoint", clock, first=2, every=60.0)
    with caplog.at_level(logging.INFO, logger="test refusals"):
        for n in range(10):
            refusals.refused("berlin", f"reason {n}")
            clock.advance(1.0)
        refusals.flush()  # 10 s in: not yet
        assert len(caplog.records) == 2
        clock.advance(50.0)
        refusals.flush()
        refusals.flush()  # once only
    assert [r.getMessage() for r in caplog.records][2:] == [
        "8 more checkpoints from berlin refused in 60 s (the last: reason 9)"]
    assert not refusals._windows, "nothing kept of a source after its minute"
