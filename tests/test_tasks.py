"""The tasks a role owns: failures are logged, stop cancels everything."""

from __future__ import annotations

import asyncio
import logging

from fakeclock import FakeClock

from ladder.tasks import Tasks


def test_a_failing_task_is_logged_and_the_others_go_on(caplog):
    async def main():
        tasks = Tasks(logging.getLogger("test.tasks"))

        async def fail():
            raise RuntimeError("boom")

        survivor = tasks.spawn(asyncio.sleep(10), name="survivor")
        tasks.spawn(fail(), name="doomed")
        await asyncio.sleep(0.01)
        assert not survivor.done()
        await tasks.stop()
        assert survivor.cancelled() and len(tasks) == 0

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    assert "task doomed failed" in caplog.text and "RuntimeError: boom" in caplog.text


def test_every_keeps_ticking_after_a_failed_tick(caplog):
    ticks = []

    def tick():
        ticks.append(1)
        if len(ticks) == 1:
            raise ValueError("first tick fails")

    async def main():
        tasks = Tasks(logging.getLogger("test.tasks"))
        tasks.every(0.001, tick)
        for _ in range(200):  # bounded: a few ms in all
            if len(ticks) >= 3:
                break
            await asyncio.sleep(0.002)
        await tasks.stop()

    with caplog.at_level(logging.ERROR):
        asyncio.run(main())
    assert len(ticks) >= 3 and "first tick fails" in caplog.text


def test_a_task_spawned_after_stop_never_runs():
    ran = []

    async def main():
        tasks = Tasks(logging.getLogger("test.tasks"))
        await tasks.stop()

        async def work():
            ran.append(1)

        task = tasks.spawn(work())
        await asyncio.sleep(0)
        assert task.cancelled()

    asyncio.run(main())
    assert not ran


def test_the_fake_clock_moves_only_when_told():
    clock = FakeClock(5.0)
    assert clock() == 5.0
    clock.advance(1.5)
    assert clock() == 6.5
