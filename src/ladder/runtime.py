"""How a long-running Ladder process sets itself up: logging, event loop, file limit, allocator.

Roles (hub, agent, demo) run through `serve()`; short commands use `run_async()`.
Logs go to stderr as text for a terminal, or (`--log-format json`) as one
JSON object a line for a collector (journald, Loki, a container runtime):
time (ISO 8601, UTC), level, logger, message, and exc with a traceback.
"""

from __future__ import annotations

import asyncio
import ctypes
import datetime
import json
import logging
import os
import platform
import resource
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The data path allocates and frees many 256 KiB buffers a second. With
# glibc's defaults (trim the heap once 128 KiB are free at its top) the heap
# shrank and grew again all the time, and every MB forwarded cost 100-300 page
# faults and ~0.5 ms of CPU in each process (docs/PERFORMANCE.md). Keeping up
# to 8 MiB of free heap, and mapping only blocks of 1 MiB or more separately,
# stops that; a 1 MiB threshold still cost 15% of bulk throughput.
TRIM_THRESHOLD = 8 * 1024 * 1024
MMAP_THRESHOLD = 1024 * 1024
# What a burst left free in the heap goes back to the system this often
# (malloc_trim): a hub or agent that idles should not keep a burst's peak.
TRIM_EVERY = 5.0


LOG_FORMATS = ("text", "json")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's own newlines are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry = {"time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    """A role's logging to stderr: INFO (DEBUG if `verbose`), as text or as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def run_async(coro):
    """Run a coroutine on uvloop where available, the standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def serve(coro):
    """Run a role: tune the process for many connections and fast forwarding, then run."""
    raise_file_limit()
    return run_async(_trimming(coro) if tune_allocator() else coro)


async def _trimming(coro):
    """Run `coro`, giving the heap's free memory back to the system every TRIM_EVERY seconds."""
    trim = ctypes.CDLL(None).malloc_trim
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle  # the next trim's; each re-arms it

    def tick() -> None:
        nonlocal handle
        trim(0)
        handle = loop.call_later(TRIM_EVERY, tick)

    handle = loop.call_later(TRIM_EVERY, tick)
    try:
        return await coro
    finally:
        handle.cancel()


def raise_file_limit() -> int:
    """Let the process hold as many sockets as the system allows (soft limit up to hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the open-file limit: %s", exc)
    return soft


def tune_allocator() -> bool:
    """Set glibc's heap trim and mmap thresholds; a no-op elsewhere or if the user set them."""
    if platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
