"""Sharing safely: who may use this exit, how much, how fast — and what it carried.

`SharePolicy` is the sharer's say, from the [share] table of the member's
ladder.toml and from flags. `Sharing` applies it to every stream the exit
serves: it admits or refuses (naming the rule), gives each stream one of its
member's slots, meters bytes per member per day and for the whole exit per
day and month (kept in share-usage.json so a restart does not reset a cap),
and throttles with token buckets, for the whole exit and per member.
`ExitRelay` is the relay that asks it before passing bytes on. Time comes
from a clock it is given (monotonic seconds for the buckets, the wall
clock for the day a cap counts), so limits are tested at simulated times.

Slots: a member may hold `user_streams` open streams. The default is sized
for a browser with many tabs plus a phone in global mode, not for a handful
of downloads: what a stream holds is bounded by its credit window, and an
idle one costs the exit a socket and about 3.5 KiB (4,000 measured with
benchmarks/many_streams.py: 14 MiB). A
stream over the limit waits for a slot, in order, up to WAIT_FOR_SLOT
seconds and MAX_WAITING streams per member; only then is it refused, as
busy, with the rule named. A page that opens more connections than the
limit at once then loads a little later instead of losing the rest.
A UDP association (udp.py) holds a slot as a stream does.

Priority at a busy exit: the hub tells the exit the credit balances of the
members using it (`set_balances`). When the exit has a rate, each member
that carried bytes within the last ACTIVE seconds holds a share of it, in
proportion to its weight, `share_weight`: 2 ** (2 · balance / limit), kept
between 1/4 (a member at its credit limit) and 4 (one a whole limit in
credit), 1 for a balance not known. Doubling per half a limit makes the
order of balances count at every scale; the bounds keep the richest within
16 times the poorest, so a member who used up its credit is slowed, never
cut off. A share is a floor, not a ceiling: while the exit's own bucket has
rate to spare, anyone goes on, so a member that uses less than its share
leaves the rest to the others.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ladder.config import DEFAULT_CREDIT_LIMIT, ConfigError, parse_amount, write_file
from ladder.protocol.errors import ErrorCode

from .exit import DEFAULT_PORTS, DEFAULT_UDP_PORTS, ExitGuard, Refusal
from .relay import MeteredRelay
from .schedule import Schedule, parse_schedule

log = logging.getLogger(__name__)
SAVE_EVERY = 5.0
USER_STREAMS = 4096  # open streams per member by default
WAIT_FOR_SLOT = 20.0  # seconds a stream over the limit waits: within the opener's 30 s, so it hears why
MAX_WAITING = 512  # streams per member waiting for a slot; each holds at most its early data (16 KiB)
ACTIVE = 1.0  # seconds since its last bytes that a member still holds a share of a busy exit's rate
WEIGHT_BOUND = 2.0  # a weight is 2 ** e with e in [-WEIGHT_BOUND, WEIGHT_BOUND]
# What the exit answers when its policy refuses a member: the opener knows it by
# this and skips the exit for a while (pool.py); caps are busy, not forbidden.
MEMBERS_ONLY = Refusal(ErrorCode.FORBIDDEN, "the exit's policy serves listed members only")
DAILY_CAP = Refusal(ErrorCode.BUSY, "the exit reached its daily cap")
MONTHLY_CAP = Refusal(ErrorCode.BUSY, "the exit reached its monthly cap")
OUTSIDE_SCHEDULE = Refusal(ErrorCode.BUSY, "outside the sharing schedule")
METERED = Refusal(ErrorCode.BUSY, "sharing is paused on a metered network")


def parse_ports(value, what: str = "ports") -> tuple[tuple[int, int], ...]:
    """[80, 443, "8000-8100"] or "80,443" → ranges; `what` names the setting in errors."""
    items = value.split(",") if isinstance(value, str) else list(value)
    ranges = []
    for item in items:
        low, _, high = str(item).strip().partition("-")
        try:
            pair = (int(low), int(high or low))
        except ValueError:
            raise ConfigError(f"{what}: {item!r} is not a port or a range like 8000-8100") from None
        if not 0 < pair[0] <= pair[1] < 65536:
            raise ConfigError(f"{what}: {item!r} is out of range")
        ranges.append(pair)
    return tuple(ranges)


@dataclass
class SharePolicy:
    members: frozenset[str] | None = None  # names allowed; None = everyone in the network
    ports: tuple[tuple[int, int], ...] = DEFAULT_PORTS
    udp_ports: tuple[tuple[int, int], ...] = DEFAULT_UDP_PORTS  # where UDP associations' datagrams may go
    deny_domains: tuple[str, ...] = ()
    deny_networks: tuple = ()
    rate: int | None = None  # bytes/s for the whole exit
    user_rate: int | None = None  # bytes/s per member
    daily_cap: int | None = None  # bytes per day for the whole exit
    monthly_cap: int | None = None
    user_streams: int = USER_STREAMS
    schedule: Schedule | None = None  # when the exit takes new streams; None = always
    pause_on_metered: bool = False  # no new streams while this machine's network is metered

    @classmethod
    def from_table(cls, table: dict) -> SharePolicy:
        """The [share] table of ladder.toml (flags are merged in as the same keys)."""
        known = {"members", "groups", "ports", "udp_ports", "deny", "rate", "user_rate", "daily_cap",
                 "monthly_cap", "user_streams", "schedule", "pause_on_metered"}
        unknown = set(table) - known
        if unknown:
            raise ConfigError(f"[share] has unknown keys: {', '.join(sorted(unknown))}")
        members = table.get("members", "everyone")
        if isinstance(members, str):
            members = None if members == "everyone" else [m for m in members.split(",") if m]
        if members is not None:
            members = cls._expand_groups(members, table.get("groups", {}))
        domains, networks = [], []
        for item in table.get("deny", []):
            try:
                networks.append(ipaddress.ip_network(str(item), strict=False))
            except ValueError:
                domains.append(str(item).lower().strip(".").encode("idna").decode())
        try:
            user_streams = int(table.get("user_streams", USER_STREAMS))
        except (TypeError, ValueError):
            raise ConfigError("user_streams must be a number") from None
        if user_streams < 1:
            raise ConfigError("user_streams must be at least 1")
        pause_on_metered = table.get("pause_on_metered", False)
        if not isinstance(pause_on_metered, bool):
            raise ConfigError("[share] pause_on_metered must be true or false")
        return cls(
            members=None if members is None else frozenset(str(m).lower() for m in members),
            ports=parse_ports(table["ports"]) if "ports" in table else DEFAULT_PORTS,
            udp_ports=(parse_ports(table["udp_ports"], "udp_ports") if "udp_ports" in table
                       else DEFAULT_UDP_PORTS),
            deny_domains=tuple(domains),
            deny_networks=tuple(networks),
            rate=parse_amount(table.get("rate"), "rate"),
            user_rate=parse_amount(table.get("user_rate"), "user_rate"),
            daily_cap=parse_amount(table.get("daily_cap"), "daily_cap"),
            monthly_cap=parse_amount(table.get("monthly_cap"), "monthly_cap"),
            user_streams=user_streams,
            schedule=parse_schedule(table.get("schedule")),
            pause_on_metered=pause_on_metered,
        )

    @staticmethod
    def _expand_groups(members: list, groups) -> list[str]:
        """'@friends' in the members list stands for the names in groups.friends."""
        if not isinstance(groups, dict):
            raise ConfigError("[share] groups must be a table like { friends = [\"alice\", \"bob\"] }")
        names: list[str] = []
        for member in map(str, members):
            if member.startswith("@"):
                if member[1:] not in groups:
                    raise ConfigError(f"[share] members names the group {member}, "
                                      "which groups does not define")
                names.extend(map(str, groups[member[1:]]))
            else:
                names.append(member)
        return names

    def guard(self, allow_private: bool) -> ExitGuard:
        return ExitGuard(allow_private=allow_private, ports=self.ports, udp_ports=self.udp_ports,
                         deny_domains=self.deny_domains, deny_networks=self.deny_networks)


class TokenBucket:
    """`rate` bytes per second with one second of burst; `take` says how long to wait.

    `clock` gives monotonic seconds.
    """

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.clock = clock
        self.tokens = float(rate)
        self.stamp = clock()

    def take(self, nbytes: int) -> float:
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate) - nbytes
        self.stamp = now
        return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def set_rate(self, rate: int) -> None:
        """A new rate from now on (what came in until now came at the old one)."""
        self.take(0)
        self.rate = rate

    def forgive(self) -> None:
        """Drop what was taken beyond the tokens: no wait is owed for it."""
        self.tokens = max(self.tokens, 0.0)


def share_weight(balance: int | None, limit: int) -> float:
    """A member's weight in a busy exit's rate: 2 ** (2 · balance / limit), from 1/4 to 4; 1 if not known.

    A balance never goes below -limit (the hub moves no more credits past
    it), where the weight reaches its floor. `limit` is positive.
    """
    if balance is None:
        return 1.0
    exponent = WEIGHT_BOUND * balance / limit
    return 2.0 ** max(-WEIGHT_BOUND, min(WEIGHT_BOUND, exponent))


class SlotHolder(Protocol):
    """What takes one of its member's slots: an `ExitRelay`, or a UDP association (udp.py)."""

    user_id: str
    user_name: str
    slot: bool  # holds one of its member's slots (Sharing sets it)


@dataclass
class _Waiting:
    """A stream waiting for one of its member's slots."""

    holder: SlotHolder
    start: Callable[[], None]
    refuse: Callable[[str], None]
    timer: asyncio.TimerHandle = field(init=False)  # armed as it joins the queue


@dataclass
class _User:
    name: str
    streams: int = 0  # streams holding a slot
    bucket: TokenBucket | None = None
    waiting: deque[_Waiting] = field(default_factory=deque)


@dataclass
class Sharing:
    policy: SharePolicy
    usage_path: Path
    clock: Callable[[], float] = time.monotonic  # for the rates and how often usage is saved
    wall: Callable[[], float] = time.time  # for the day and month a cap counts
    users: dict[str, _User] = field(default_factory=dict)  # by member id
    usage: dict = field(default_factory=dict)
    _bucket: TokenBucket | None = None
    _balances: dict[str, int] = field(default_factory=dict)  # credits by member id, as the hub said
    _credit_limit: int = DEFAULT_CREDIT_LIMIT
    _shares: dict[str, TokenBucket] = field(default_factory=dict)  # of the exit's rate, by member id
    _active: dict[str, float] = field(default_factory=dict)  # member id → when it last carried bytes
    _reweigh: bool = False  # the balances changed since the shares were derived
    _dirty: bool = False
    _saved: float = 0.0
    served: int = 0  # bytes carried for others by this process, both ways (a counter for /metrics)
    metered: bool = False  # this machine's network is metered, as the agent last read it
    user_rates: dict[str, int] = field(default_factory=dict)  # member id → bytes/s at the last measure
    _rate_mark: tuple[float, dict[str, int]] = field(default_factory=lambda: (0.0, {}))  # (when, bytes) then

    def __post_init__(self) -> None:
        if self.policy.rate:
            self._bucket = TokenBucket(self.policy.rate, self.clock)
        try:
            self.usage = json.loads(self.usage_path.read_text())
        except (OSError, ValueError):
            self.usage = {}
        self._roll()

    # ----------------------------------------------------------- admission

    def admit(self, user_id: str, user_name: str) -> Refusal | None:
        """Why this member (or a device of a member: `owner/name`, served as its owner) may not open a
        stream now, or None."""
        policy = self.policy
        if policy.members is not None and user_name.lower().partition("/")[0] not in policy.members:
            return MEMBERS_ONLY
        return self.stopped()

    def stopped(self) -> Refusal | None:
        """Why the exit takes no new streams now (a cap, the schedule, a metered network), or None."""
        return self.capped() or self.paused()

    def paused(self) -> Refusal | None:
        """The sharer's pause that holds now, if one does: outside the schedule, or on a metered network."""
        policy = self.policy
        if policy.schedule is not None and not policy.schedule.allows(self.wall()):
            return OUTSIDE_SCHEDULE
        if policy.pause_on_metered and self.metered:
            return METERED
        return None

    def set_policy(self, policy: SharePolicy) -> None:
        """A new policy from now on (the dashboard's): the rates start over; streams open go on."""
        self.policy = policy
        self._bucket = TokenBucket(policy.rate, self.clock) if policy.rate else None
        self._shares.clear()
        for user in self.users.values():
            user.bucket = TokenBucket(policy.user_rate, self.clock) if policy.user_rate else None

    def capped(self) -> Refusal | None:
        """The cap that stops new streams now, if one does: a cap holds from its last byte on."""
        self._roll()
        if self.policy.daily_cap and self.usage["day_bytes"] >= self.policy.daily_cap:
            return DAILY_CAP
        if self.policy.monthly_cap and self.usage["month_bytes"] >= self.policy.monthly_cap:
            return MONTHLY_CAP
        return None

    def take_slot(self, holder: SlotHolder, start: Callable[[], None], refuse: Callable[[str], None]) -> None:
        """Call `start` once `holder` holds one of its member's slots: now, or when one frees.

        `refuse(reason)` instead if none frees within WAIT_FOR_SLOT or too
        many wait already. A holder that is gone before (its opener withdrew)
        gives its place up through `release`.
        """
        user = self._user(holder.user_id, holder.user_name)
        limit = self.policy.user_streams
        if user.streams < limit and not user.waiting:
            return self._start(user, holder, start)
        if len(user.waiting) >= MAX_WAITING:
            return refuse(f"the exit's policy allows {limit} streams per member, "
                          f"and {MAX_WAITING} wait already")
        waiting = _Waiting(holder, start, refuse)
        waiting.timer = asyncio.get_running_loop().call_later(WAIT_FOR_SLOT, self._expire, user, waiting)
        user.waiting.append(waiting)

    def release(self, holder: SlotHolder) -> None:
        """`holder`'s stream is over: its slot goes to the next stream waiting, or its place in the queue."""
        user = self.users.get(holder.user_id)
        if user is None:
            return
        if holder.slot:
            holder.slot = False
            user.streams -= 1
        else:
            for waiting in user.waiting:
                if waiting.holder is holder:
                    waiting.timer.cancel()
                    user.waiting.remove(waiting)
                    break
        while user.waiting and user.streams < self.policy.user_streams:
            waiting = user.waiting.popleft()
            waiting.timer.cancel()
            self._start(user, waiting.holder, waiting.start)

    def _start(self, user: _User, holder: SlotHolder, start: Callable[[], None]) -> None:
        user.streams += 1
        holder.slot = True
        start()

    def _expire(self, user: _User, waiting: _Waiting) -> None:
        user.waiting.remove(waiting)
        waiting.refuse(f"the exit's policy allows {self.policy.user_streams} streams per member, "
                       f"and none freed within {WAIT_FOR_SLOT:g} s")

    def _user(self, user_id: str, user_name: str) -> _User:
        user = self.users.get(user_id)
        if user is None:
            rate = self.policy.user_rate
            bucket = TokenBucket(rate, self.clock) if rate else None
            user = self.users[user_id] = _User(user_name, bucket=bucket)
        return user

    # ----------------------------------------------------------- metering

    def carried(self, user_id: str, nbytes: int) -> float:
        """Count bytes carried for a member; returns how long to pause (rate limits)."""
        self.served += nbytes
        usage = self.usage
        usage["day_bytes"] += nbytes
        usage["month_bytes"] += nbytes
        usage["users"][user_id] = usage["users"].get(user_id, 0) + nbytes
        usage["month_users"][user_id] = usage["month_users"].get(user_id, 0) + nbytes
        self._dirty = True
        delay = self._shared(user_id, nbytes, self._bucket.take(nbytes)) if self._bucket else 0.0
        user = self.users.get(user_id)
        if user is not None and user.bucket is not None:
            delay = max(delay, user.bucket.take(nbytes))
        if self.clock() - self._saved > SAVE_EVERY:
            self.save()
        return delay

    def set_balances(self, balances: dict[str, int], limit: int) -> None:
        """The hub's word on the credit balances of members using this exit (by member id; those
        not named count as unknown), with its credit limit: the weights of their shares. A hub
        without a limit says 0; its balances are weighed against the default limit."""
        self._balances = dict(balances)
        self._credit_limit = limit or DEFAULT_CREDIT_LIMIT
        self._reweigh = True

    def weight(self, user_id: str) -> float:
        """The member's weight in the shares of a busy exit's rate (share_weight)."""
        return share_weight(self._balances.get(user_id), self._credit_limit)

    def _shared(self, user_id: str, nbytes: int, exit_delay: float) -> float:
        """How long a member waits at an exit with a rate, given the exit-wide bucket's wait.

        With rate to spare, none: the member borrows what the others leave
        and owes its share nothing for it. Otherwise until both the exit's
        bucket and the member's share allow more.
        """
        share = self._share(user_id)
        share_delay = share.take(nbytes)
        if exit_delay == 0:
            share.forgive()
            return 0.0
        return max(exit_delay, share_delay)

    def _share(self, user_id: str) -> TokenBucket:
        """The member's share bucket, its rate re-derived whenever the active set or the balances change."""
        now, active = self.clock(), self._active
        changed = user_id not in active or self._reweigh
        active[user_id] = now
        for uid in [uid for uid, last in active.items() if now - last > ACTIVE]:
            del active[uid]
            changed = True
        if changed:
            self._reweigh = False
            assert self._bucket is not None  # shares are of the exit's rate
            weights = {uid: self.weight(uid) for uid in active}
            total = sum(weights.values())
            for uid, weight in weights.items():
                rate = max(1, round(self._bucket.rate * weight / total))
                if uid in self._shares:
                    self._shares[uid].set_rate(rate)
                else:
                    self._shares[uid] = TokenBucket(rate, self.clock)
        return self._shares[user_id]

    def measure_rates(self) -> None:
        """Each member's bytes per second since the last measure (the agent measures every few seconds)."""
        now, carried = self.clock(), self.usage["month_users"]
        then, before = self._rate_mark
        if now > then:
            self.user_rates = {uid: round((n - before.get(uid, 0)) / (now - then))
                               for uid, n in carried.items() if n > before.get(uid, 0)}
        self._rate_mark = (now, dict(carried))

    def save(self) -> None:
        if self._dirty:
            self._dirty = False
            self._saved = self.clock()
            try:
                write_file(self.usage_path, json.dumps(self.usage).encode(), 0o600)
            except OSError as exc:
                log.warning("cannot save %s: %s", self.usage_path, exc)

    def _roll(self) -> None:
        today = time.localtime(self.wall())
        day, month = time.strftime("%Y-%m-%d", today), time.strftime("%Y-%m", today)
        usage = self.usage
        if usage.get("month") != month:
            usage.update(month=month, month_bytes=0, month_users={})
        usage.setdefault("month_users", {})  # share-usage.json from before it was kept
        if usage.get("day") != day:
            usage.update(day=day, day_bytes=0, users={})

    def status(self) -> dict:
        names = {uid: u.name for uid, u in self.users.items()}
        policy = self.policy
        capped = self.capped()
        return {
            "today_bytes": self.usage["day_bytes"],
            "month_bytes": self.usage["month_bytes"],
            "capped": capped.reason if capped else None,
            "paused": paused.reason if (paused := self.paused()) else None,
            "users": {uid: self._user_status(uid, names.get(uid, uid), count)
                      for uid, count in self.usage["users"].items()},
            "limits": {"members": sorted(policy.members) if policy.members else "everyone",
                       "ports": _port_list(policy.ports), "udp_ports": _port_list(policy.udp_ports),
                       "rate": policy.rate, "user_rate": policy.user_rate, "daily_cap": policy.daily_cap,
                       "monthly_cap": policy.monthly_cap, "user_streams": policy.user_streams,
                       "schedule": policy.schedule.text if policy.schedule else None,
                       "pause_on_metered": policy.pause_on_metered},
        }

    def _user_status(self, user_id: str, name: str, bytes_today: int) -> dict:
        user = self.users.get(user_id)
        status = {"name": name, "streams": user.streams if user else 0,
                  "waiting": len(user.waiting) if user else 0, "bytes_today": bytes_today,
                  "bytes_month": self.usage["month_users"].get(user_id, bytes_today)}
        if user_id in self._balances:
            status.update(balance=self._balances[user_id], weight=self.weight(user_id))
        return status


def _port_list(ports: tuple[tuple[int, int], ...]) -> list[str]:
    return [f"{a}-{b}" if a != b else str(a) for a, b in ports]


class ExitRelay(MeteredRelay):
    """The exit's relay: every byte is metered, and rate limits pause the flow.

    It is the stream's endpoint from the OPEN on, so early data and a reset
    reach it while it waits for a slot or connects.
    """

    def __init__(self, sharing: Sharing, user_id: str, user_name: str):
        super().__init__()
        self.sharing = sharing
        self.user_id = user_id
        self.user_name = user_name
        self.slot = False  # holds one of its member's slots (Sharing sets it)
        self._over = False

    def carried(self, nbytes: int) -> float:
        return self.sharing.carried(self.user_id, nbytes)

    def stream_gone(self) -> None:
        if not self._over:
            self._over = True
            self.sharing.release(self)
