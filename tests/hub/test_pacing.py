"""The hub's pushes are paced: a member repeating a change cannot make the hub repeat a list to everyone."""

from __future__ import annotations

import asyncio

from ladder.hub.pacing import Pacer


def run(coro):
    return asyncio.run(coro)


def test_a_first_request_sends_at_once_and_a_burst_after_it_sends_once_more():
    async def main():
        sent = []
        pacer = Pacer(lambda: sent.append(1), every=1.0)
        pacer.request()
        assert sent == [1]  # nothing was sent lately: no wait
        for _ in range(1000):  # a member repeating `share`
            pacer.request()
        assert sent == [1]
        await asyncio.sleep(1.3)
        assert sent == [1, 1]  # the burst cost one more send, carrying its newest state
        await asyncio.sleep(1.2)
        assert sent == [1, 1]

    run(main())


def test_a_later_request_with_a_delay_never_postpones_a_sooner_one():
    async def main():
        sent = []
        pacer = Pacer(lambda: sent.append(asyncio.get_running_loop().time()), every=0.0)
        pacer.request(delay=0.2)
        pacer.request(delay=5.0)  # only load changed: it rides with the send already due
        await asyncio.sleep(0.4)
        assert len(sent) == 1
        pacer.request(delay=5.0)
        pacer.request(delay=0.0)  # urgent: the slow send is replaced by one now
        assert len(sent) == 2
        await asyncio.sleep(0.2)
        assert len(sent) == 2
        pacer.cancel()

    run(main())


def test_cancel_drops_the_send_that_was_due():
    async def main():
        sent = []
        pacer = Pacer(lambda: sent.append(1), every=0.2)
        pacer.request()
        pacer.request()
        pacer.cancel()
        await asyncio.sleep(0.4)
        assert sent == [1]

    run(main())
