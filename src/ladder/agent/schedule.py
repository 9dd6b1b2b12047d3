"""When a sharer's exit takes new streams: a daily schedule, and whether this machine's network is metered.

A schedule is one or more windows of local time, "08:00-23:30", each from
its start (included) to its end (excluded); a window whose end comes
before its start runs past midnight ("22:00-02:00"), and "00:00-24:00" is
the whole day. Outside every window the exit is paused: new streams are
refused with a reason the user sees, open ones go on. Local time is the
machine's (the sharer's own day), read from a wall clock the caller
passes, so tests choose the hour.

A metered network (a phone's hotspot, a capped mobile plan) is as
NetworkManager says: `nmcli -t -f GENERAL.METERED device show` prints one
`GENERAL.METERED:yes|no|unknown` line per device, the "(guessed)" variants
included; any device metered makes the network metered. Without
NetworkManager, or when it does not know, the network counts as not
metered: pausing is the exception the sharer asked for, never the default.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from ladder.config import ConfigError

DAY = 24 * 60  # minutes
METERED_EVERY = 30.0  # seconds between two looks at NetworkManager
NMCLI = ("nmcli", "-t", "-f", "GENERAL.METERED", "device", "show")
NMCLI_TIMEOUT = 5.0
_WINDOW = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


@dataclass(frozen=True)
class Schedule:
    windows: tuple[tuple[int, int], ...]  # (start, end) in minutes after midnight; end may be < start
    text: str  # as the sharer wrote it, for messages

    def allows(self, wall: float) -> bool:
        """Whether unix time `wall` falls in a window, in this machine's local time."""
        local = time.localtime(wall)
        minute = local.tm_hour * 60 + local.tm_min
        for start, end in self.windows:
            if start <= end and start <= minute < end:
                return True
            if start > end and (minute >= start or minute < end):
                return True
        return False


def parse_schedule(value: object) -> Schedule | None:
    """[share] schedule: "08:00-23:30" or a list of such windows; None (absent) means always."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError('[share] schedule must be a window like "08:00-23:30" or a list of such')
    windows = []
    for item in items:
        match = _WINDOW.fullmatch(str(item).strip())
        if match is None:
            raise ConfigError(f'[share] schedule: {item!r} is not a window like "08:00-23:30"')
        h1, m1, h2, m2 = map(int, match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ConfigError(f"[share] schedule: {item!r} is not a time of day (00:00 to 24:00)")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise ConfigError(f"[share] schedule: {item!r} is empty (say 00:00-24:00 for all day)")
        windows.append((start, end))
    return Schedule(tuple(windows), ", ".join(map(str, items)))


def read_metered(output: str) -> bool | None:
    """nmcli's GENERAL.METERED lines → metered (any device yes), not (some no), or None (unknown)."""
    values = [line.partition(":")[2].strip().split()[0] for line in output.splitlines()
              if line.startswith("GENERAL.METERED:") and line.partition(":")[2].strip()]
    if "yes" in values:
        return True
    if "no" in values:
        return False
    return None


async def nmcli_metered() -> bool | None:
    """Whether NetworkManager calls this machine's network metered; None where it cannot say."""
    try:
        process = await asyncio.create_subprocess_exec(*NMCLI, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.DEVNULL)
    except OSError:  # no nmcli here
        return None
    try:
        output, _ = await asyncio.wait_for(process.communicate(), NMCLI_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    return read_metered(output.decode(errors="replace")) if process.returncode == 0 else None
