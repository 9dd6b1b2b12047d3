"""The hub's pushes are paced: a member repeating a change cannot make the hub repeat a list to everyone.

Driven by a fake clock: the pacer's timer fires when the test moves time past it.
"""

from __future__ import annotations

import itertools

from fakeclock import FakeClock

from ladder.hub.pacing import Pacer


class Timers:
    """`call_later` on a FakeClock: `advance` moves the clock and fires every timer due by then, in order."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self._timers: list[Timer] = []

    def call_later(self, delay, callback):
        timer = Timer(self.clock() + delay, callback)
        self._timers.append(timer)
        return timer

    @property
    def armed(self) -> int:
        return sum(not t.cancelled for t in self._timers)

    def advance(self, seconds: float) -> None:
        end = self.clock() + seconds
        while due := sorted((t for t in self._timers if not t.cancelled and t.when <= end),
                            key=lambda t: t.when):
            timer = due[0]
            self._timers.remove(timer)
            self.clock.advance(timer.when - self.clock())
            timer.callback()
        self.clock.advance(end - self.clock())
        self._timers = [t for t in self._timers if not t.cancelled]


class Timer:
    def __init__(self, when, callback):
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


def paced(every: float):
    clock = FakeClock()
    timers = Timers(clock)
    sent: list[float] = []
    pacer = Pacer(lambda: sent.append(clock()), clock, timers.call_later, every=every)
    return pacer, timers, sent, clock


def test_a_first_request_sends_at_once_and_a_burst_after_it_sends_once_more():
    pacer, timers, sent, clock = paced(every=1.0)
    start = clock()
    pacer.request()
    assert sent == [start]  # nothing was sent lately: no wait
    for _ in range(1000):  # a member repeating `share`
        pacer.request()
    assert len(sent) == 1 and timers.armed == 1
    timers.advance(0.999)
    assert len(sent) == 1
    timers.advance(0.001)
    assert sent == [start, start + 1.0]  # the burst cost one more send, carrying its newest state
    timers.advance(5.0)
    assert len(sent) == 2


def test_requests_all_the_time_send_once_per_interval():
    pacer, timers, sent, _ = paced(every=0.5)
    for _ in range(990):  # a request every 10 ms for 9.9 simulated seconds
        pacer.request()
        timers.advance(0.01)
    assert len(sent) == 20  # one at once, then one every 0.5 s: at 0.0, 0.5, ... 9.5
    assert all(abs(b - a - 0.5) < 1e-9 for a, b in itertools.pairwise(sent))


def test_a_later_request_with_a_delay_never_postpones_a_sooner_one():
    pacer, timers, sent, clock = paced(every=0.0)
    start = clock()
    pacer.request(delay=0.2)
    pacer.request(delay=5.0)  # only load changed: it rides with the send already due
    timers.advance(0.4)
    assert sent == [start + 0.2]
    pacer.request(delay=5.0)
    pacer.request(delay=0.0)  # urgent: the slow send is replaced by one now
    assert sent == [start + 0.2, start + 0.4] and timers.armed == 0
    timers.advance(10.0)
    assert len(sent) == 2


def test_cancel_drops_the_send_that_was_due():
    pacer, timers, sent, _ = paced(every=0.2)
    pacer.request()
    pacer.request()
    pacer.cancel()
    timers.advance(0.4)
    assert len(sent) == 1 and timers.armed == 0
