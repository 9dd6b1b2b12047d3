"""Pacing the hub's pushes: what one member changes reaches every member at most so often.

Each exit that comes or goes, each `publish`, each member that reconnects
makes the hub send a list to every online member. Sent at once, a member
repeating `share` or reconnecting in a loop would make the hub send N
lists per message it sends: an amplifier. A `Pacer` coalesces: a request
while a send is due changes nothing, and a send runs no sooner than
`every` seconds after the last one, so it always carries the newest state
and the hub's pushes cost at most N messages per `every`, whatever any
member does.

The pacer reads time from `clock` and arms its one timer with `call_later`
(the loop's own in the hub), so tests drive it with a fake clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

PUSH_EVERY = 0.5  # any list reaches every member at most this often, whatever a member repeats


class Timer(Protocol):
    def cancel(self) -> None: ...


class Pacer:
    def __init__(self, send: Callable[[], None], clock: Callable[[], float],
                 call_later: Callable[[float, Callable[[], None]], Timer], every: float = PUSH_EVERY):
        self.send = send
        self.every = every
        self._clock = clock  # monotonic seconds
        self._call_later = call_later
        self._last = -math.inf  # when the last send ran
        self._due = math.inf  # when the scheduled send runs
        self._timer: Timer | None = None

    def request(self, delay: float = 0.0) -> None:
        """Send within `delay` seconds, or as soon after the last send as pacing allows (now, if it does)."""
        now = self._clock()
        when = max(now + delay, self._last + self.every)
        if self._timer is not None:
            if self._due <= when:
                return  # a send is due sooner already: it will carry this change too
            self._timer.cancel()
            self._timer = None
        if when <= now:
            return self._fire()
        self._due = when
        self._timer = self._call_later(when - now, self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._last = self._clock()
        self.send()
