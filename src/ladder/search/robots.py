"""robots.txt as RFC 9309 reads it, for one crawler: which paths it may fetch and how often.

`parse_robots` never raises: a line it cannot read is skipped, as §2.2
asks. Groups start with one or more user-agent lines; rules before any
user-agent line belong to no group. The groups that name our product token
(case-insensitively, §2.2.1) are combined into one; only when none does,
the `*` groups are. Within the chosen rules the longest matching pattern
wins, counted in octets, and allow wins a tie (§2.2.2); no matching rule,
or no group, allows. A pattern's `*` matches any run of characters and a
final `$` anchors it at the end; both pattern and path are compared with
their percent-escapes in upper case and non-ASCII characters escaped as
UTF-8, so `/ä` and `/%c3%a4` are one path. `/robots.txt` itself is always
allowed (§2.2.2).

Matching a pattern with many stars is done without backtracking (the
leftmost occurrence of each literal piece is always a safe choice), so a
hostile file cannot make one check cost more than the pattern's length times the path's.

Crawl-delay is not in RFC 9309; read as most crawlers read it, a number of
seconds in the chosen group. What to do when robots.txt cannot be fetched
(§2.3.1.3, §2.3.1.4) is the crawler's: `Robots.allow_all()` and
`Robots.disallow_all()` say it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import quote

from .text import AGENT

_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_PRODUCT = re.compile(r"[A-Za-z_-]+")  # §2.2.1: the product token's characters
_PATH_SAFE = "!$&'()*+,;=:@/?-._~%"  # RFC 3986 §2.2, §2.3 and the escapes already there


@dataclass(frozen=True)
class Rule:
    allow: bool
    pattern: str  # normalised as paths are; may hold '*' and end in '$'

    def matches(self, path: str) -> bool:
        anchored = self.pattern.endswith("$")
        pieces = (self.pattern[:-1] if anchored else self.pattern).split("*")
        if not path.startswith(pieces[0]):
            return False
        at = len(pieces[0])
        if len(pieces) == 1:
            return not anchored or at == len(path)
        for piece in pieces[1:-1]:
            found = path.find(piece, at)
            if found < 0:
                return False
            at = found + len(piece)
        last = pieces[-1]
        if anchored:
            return len(path) - len(last) >= at and path.endswith(last)
        return path.find(last, at) >= 0


@dataclass(frozen=True)
class Robots:
    rules: tuple[Rule, ...] = ()
    crawl_delay: float | None = None  # seconds, as the chosen group said; None if it said nothing usable
    everything_disallowed: bool = False  # robots.txt was unreachable (§2.3.1.4): fetch nothing

    @classmethod
    def allow_all(cls) -> Robots:
        """robots.txt is unavailable (4xx, §2.3.1.3): crawl as if it allowed everything."""
        return cls()

    @classmethod
    def disallow_all(cls) -> Robots:
        """robots.txt is unreachable (5xx, a failed connection, §2.3.1.4): fetch nothing."""
        return cls(everything_disallowed=True)

    def allowed(self, path: str) -> bool:
        """Whether the crawler may fetch `path` (the path and query of a URL, from its first '/')."""
        if self.everything_disallowed:
            return False
        path = _normalise(path or "/")
        if path == "/robots.txt":
            return True
        best: Rule | None = None
        for rule in self.rules:
            if not rule.matches(path):
                continue
            if best is None or (_length(rule), rule.allow) > (_length(best), best.allow):
                best = rule
        return best is None or best.allow


def parse_robots(text: str, agent: str = AGENT) -> Robots:
    """The rules of `text` that apply to `agent` (a product token); never raises, whatever `text` holds."""
    agent = agent.lower()
    groups: list[tuple[set[str], list[Rule], list[float]]] = []
    in_agents = False  # the lines just read were user-agent lines, so another one joins their group
    for raw in text.removeprefix("\ufeff").splitlines():
        key, colon, value = raw.split("#", 1)[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if not colon:
            continue
        if key in ("user-agent", "useragent", "user agent"):
            if not in_agents:
                groups.append((set(), [], []))
            token = _PRODUCT.match(value)
            if value.startswith("*"):
                groups[-1][0].add("*")
            elif token:
                groups[-1][0].add(token.group().lower())
            in_agents = True
            continue
        in_agents = False
        if not groups:
            continue  # §2.1: rules before the first user-agent line belong to no group
        if key in ("allow", "disallow") and value:  # an empty pattern matches nothing (§2.2.2)
            groups[-1][1].append(Rule(key == "allow", _normalise(value)))
        elif key in ("crawl-delay", "crawl_delay"):
            delay = _seconds(value)
            if delay is not None:
                groups[-1][2].append(delay)
    chosen = [g for g in groups if agent in g[0]] or [g for g in groups if "*" in g[0]]
    rules = tuple(rule for g in chosen for rule in g[1])
    delays = [delay for g in chosen for delay in g[2]]
    return Robots(rules, max(delays) if delays else None)


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _normalise(path: str) -> str:
    """Escapes in upper case, other characters a URI cannot hold escaped as UTF-8 (RFC 9309 §2.2.2)."""
    escaped = quote(path, safe=_PATH_SAFE + "*$")
    return _ESCAPE.sub(lambda m: m.group().upper(), escaped)


def _length(rule: Rule) -> int:
    return len(rule.pattern.encode())
