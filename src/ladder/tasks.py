"""Background work that a role owns: started under one group, cancelled together, failures logged.

asyncio's own TaskGroup ends everything at the first failure; a hub must
not stop because one member's handler failed. Here a failure is logged
with its traceback (so it is never lost, and a test that reads the log
fails on it) and the rest goes on; `stop()` cancels what is left and waits
for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any


class Tasks:
    """The tasks of one role (a hub, an agent)."""

    def __init__(self, log: logging.Logger):
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Run `coro` in the background; if it raises, the error is logged with its traceback."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        if self._stopping:
            task.cancel()
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def every(self, interval: float, tick: Callable[[], Awaitable[None] | None], name: str | None = None
              ) -> asyncio.Task[Any]:
        """Call `tick` every `interval` seconds until stopped; a failing tick is logged, the next one runs."""
        return self.spawn(self._repeat(interval, tick), name=name)

    async def _repeat(self, interval: float, tick: Callable[[], Awaitable[None] | None]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = tick()
                if result is not None:
                    await result
            except Exception:
                self._log.exception("periodic task %s failed", getattr(tick, "__qualname__", tick))

    def cancel(self) -> list[asyncio.Task[Any]]:
        """Cancel every task, and any spawned from now on; returns those that were running."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    async def stop(self) -> None:
        """Cancel every task and wait until all have ended."""
        await asyncio.gather(*self.cancel(), return_exceptions=True)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            self._log.error("task %s failed", task.get_name(), exc_info=exc)
