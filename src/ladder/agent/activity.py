"""What the proxy front carries now: its open connections, their traffic, and the totals that outlive a run.

Every connection the front opens registers here (`Activity.opened`) with
where it goes ("direct", "service", "exit" until the pool has picked one,
then that exit) and a way to cut it. The relay counts bytes on its
`Tracked` as they pass (`count`: a few integer adds per chunk, nothing
else), so the hot path never takes a lock, allocates or reads the clock.
Everything time-shaped happens in `tick`, which the agent calls once a
second: the front's rate for that second goes into a ring of the last
SERIES_SECONDS, each open connection's byte counts into its own short
ring (its rate is the average over RATE_SECONDS), and the totals of today
and this month, by the local calendar, are saved to traffic.json every
SAVE_EVERY seconds and at stop, so a restart does not reset them.

Refusals are counted by reason (the ErrorCode's name, or "blocked" for a
block rule and "disconnected" while the member has switched Ladder off),
for the metrics page beside the byte and connection counters.

The clock is wall time (unix seconds), injected so tests move it by hand.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ladder.config import write_file

log = logging.getLogger(__name__)
SERIES_SECONDS = 300  # the traffic graph's span
RATE_SECONDS = 5  # a connection's rate is its bytes over this many of the last ticks
_ZERO = (0, 0)
LISTED = 200  # connections() lists at most this many, newest first
SAVE_EVERY = 30.0


class Tracked:
    """One connection of the front, as it is listed; the relay counts its bytes here."""

    __slots__ = ("id", "host", "port", "route", "exit_id", "up", "down", "opened", "cut", "_activity",
                 "_history")

    def __init__(self, activity: Activity, id: int, host: str, port: int, route: str,
                 cut: Callable[[], None], opened: float):
        self.id, self.host, self.port, self.route = id, host, port, route
        self.exit_id: str | None = None  # set once the pool picked the exit that carries it
        self.up = self.down = 0
        self.opened = opened
        self.cut = cut
        self._activity = activity
        # (up, down) at each of the last RATE_SECONDS + 1 ticks, oldest first: a list, not a deque
        # with maxlen (760 bytes empty), since a proxy holds many idle connections.
        self._history: list[tuple[int, int]] = [_ZERO]

    def count(self, up: int = 0, down: int = 0) -> None:
        """Bytes the client sent (`up`) or was sent (`down`)."""
        self.up += up
        self.down += down
        activity = self._activity
        activity.up += up
        activity.down += down

    def refused(self, reason: str) -> None:
        self._activity.refused(reason)

    def closed(self) -> None:
        self._activity.closed(self)


class Activity:
    def __init__(self, clock: Callable[[], float] = time.time, path: Path | None = None):
        """`clock` gives unix seconds; `path` (traffic.json) keeps today's and this month's totals."""
        self.clock = clock
        self.path = path
        self.exit_name: Callable[[str], str] = str  # exit id → its name, for routes (the agent sets it)
        self.open: dict[int, Tracked] = {}
        self.up = self.down = 0  # bytes since this process started
        self.opened_total = 0
        self.refusals: dict[str, int] = {}
        self._next_id = 1
        self._series: deque[tuple[float, int, int]] = deque(maxlen=SERIES_SECONDS)
        self._last = (clock(), 0, 0)  # (time, up, down) at the last tick
        self._saved = clock()
        self._totals = self._load()
        self._counted = (0, 0)  # (up, down) already added to the totals

    # ----------------------------------------------------- the front's side

    def opened(self, host: str, port: int, route: str, cut: Callable[[], None]) -> Tracked:
        """A connection to (host, port) starts; `cut()` resets the client's connection."""
        tracked = Tracked(self, self._next_id, host, port, route, cut, self.clock())
        self._next_id += 1
        self.opened_total += 1
        self.open[tracked.id] = tracked
        return tracked

    def closed(self, tracked: Tracked) -> None:
        self.open.pop(tracked.id, None)

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def close(self, id: int) -> bool:
        """Cut the connection `id` (the client sees a reset); False if it is not open."""
        tracked = self.open.get(id)
        if tracked is None:
            return False
        tracked.cut()
        self.closed(tracked)
        return True

    # ------------------------------------------------------------ each second

    def tick(self) -> None:
        """Once a second: the second's rate, each connection's history, the totals (saved now and then)."""
        now = self.clock()
        then, up, down = self._last
        elapsed = now - then
        if elapsed > 0:
            self._series.append((now, round((self.up - up) / elapsed), round((self.down - down) / elapsed)))
        self._last = (now, self.up, self.down)
        for tracked in self.open.values():
            history = tracked._history
            last = history[-1]
            # An idle connection's tick repeats the last pair rather than making a new one.
            history.append(last if last[0] == tracked.up and last[1] == tracked.down else
                           (tracked.up, tracked.down))
            if len(history) > RATE_SECONDS + 1:
                del history[0]
        self._add_to_totals()
        if now - self._saved >= SAVE_EVERY:
            self.save()

    def series(self) -> list[list[float]]:
        """[unix time, up B/s, down B/s] for each of the last SERIES_SECONDS ticks, oldest first."""
        return [list(point) for point in self._series]

    def last(self) -> list[float] | None:
        """The newest tick of the series, or None before the first."""
        return list(self._series[-1]) if self._series else None

    # ------------------------------------------------------------------ views

    def connections(self) -> list[dict]:
        """The open connections, newest first, at most LISTED."""
        now = self.clock()
        newest = sorted(self.open.values(), key=lambda t: t.id, reverse=True)[:LISTED]
        return [self._view(tracked, now) for tracked in newest]

    def _view(self, tracked: Tracked, now: float) -> dict:
        history = tracked._history
        (first_up, first_down), span = history[0], len(history) - 1
        route = tracked.route
        if tracked.exit_id is not None:
            route = f"exit:{self.exit_name(tracked.exit_id)}"
        return {
            "id": tracked.id, "host": tracked.host, "port": tracked.port, "route": route,
            "up": tracked.up, "down": tracked.down,
            "rate_up": round((history[-1][0] - first_up) / span) if span else 0,
            "rate_down": round((history[-1][1] - first_down) / span) if span else 0,
            "opened": tracked.opened, "age": round(now - tracked.opened, 1),
        }

    def totals(self) -> dict:
        """Bytes up and down today and this month (the local calendar), across restarts."""
        self._add_to_totals()
        t = self._totals
        return {"day": t["day"], "today": {"up": t["day_up"], "down": t["day_down"]},
                "month": t["month"], "this_month": {"up": t["month_up"], "down": t["month_down"]}}

    def counters(self) -> dict:
        """Plain numbers for /metrics: bytes each way, connections opened and open, refusals by reason."""
        return {"bytes_up": self.up, "bytes_down": self.down, "connections_opened": self.opened_total,
                "connections_open": len(self.open), "refusals": dict(self.refusals)}

    # ----------------------------------------------------------- traffic.json

    def _calendar(self) -> tuple[str, str]:
        local = time.localtime(self.clock())
        return time.strftime("%Y-%m-%d", local), time.strftime("%Y-%m", local)

    def _load(self) -> dict:
        totals: dict = {}
        if self.path is not None:
            try:
                loaded = json.loads(self.path.read_text())
            except (OSError, ValueError):
                loaded = {}
            if isinstance(loaded, dict):
                totals = {k: v for k, v in loaded.items() if isinstance(v, (int, str))}
        return self._rolled(totals)

    def _rolled(self, totals: dict) -> dict:
        """The totals with a new day or month started at zero (and any missing or mistyped number as 0)."""
        day, month = self._calendar()
        if totals.get("month") != month:
            totals.update(month=month, month_up=0, month_down=0)
        if totals.get("day") != day:
            totals.update(day=day, day_up=0, day_down=0)
        for key in ("day_up", "day_down", "month_up", "month_down"):
            if not isinstance(totals.get(key), int):
                totals[key] = 0
        return totals

    def _add_to_totals(self) -> None:
        totals = self._totals = self._rolled(self._totals)
        up, down = self.up - self._counted[0], self.down - self._counted[1]
        self._counted = (self.up, self.down)
        totals["day_up"] += up
        totals["month_up"] += up
        totals["day_down"] += down
        totals["month_down"] += down

    def save(self) -> None:
        """Write traffic.json now (the agent calls this at stop too)."""
        self._saved = self.clock()
        if self.path is None:
            return
        self._add_to_totals()
        try:
            write_file(self.path, json.dumps(self._totals).encode())
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)
