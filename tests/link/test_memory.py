"""Two links joined in memory (link/memory.py): streams, pauses and closes as over a socket."""

from __future__ import annotations

import asyncio

from ladder.link.connection import Endpoint, Link
from ladder.link.memory import link_pair
from ladder.protocol import control


class Collect(Endpoint):
    def __init__(self):
        self.data, self.accepted, self.ended = bytearray(), asyncio.Event(), False

    def on_accepted(self, payload, window):
        self.accepted.set()

    def on_data(self, data):
        self.data += data

    def on_end(self):
        self.ended = True


class Owner:
    def __init__(self):
        self.streams: list[tuple[int, bytes]] = []
        self.controls: list = []
        self.closed: list[str] = []
        self.ends: dict[int, Collect] = {}

    def stream_opened(self, link, sid, payload, window):
        self.streams.append((sid, payload))
        self.ends[sid] = end = Collect()
        link.accept(sid, end)

    def control_received(self, link, message):
        self.controls.append(message)

    def link_closed(self, link, reason):
        self.closed.append(reason)


async def pair():
    left_owner, right_owner = Owner(), Owner()
    left = Link(left_owner, client=True, label="left")
    right = Link(right_owner, client=False, label="right")
    link_pair(left, right)
    return left, right, left_owner, right_owner


async def turns(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_streams_and_control_messages_pass_both_ways():
    async def main():
        left, right, left_owner, right_owner = await pair()
        end = Collect()
        sid = left.open_stream(b"hello", end)
        left.send(sid, b"x" * 100_000)
        right.send_control(control.Replaced())
        await asyncio.wait_for(end.accepted.wait(), 2)
        await turns()
        assert right_owner.streams == [(sid, b"hello")]
        assert bytes(right_owner.ends[sid].data) == b"x" * 100_000
        assert left_owner.controls == [control.Replaced()]
        right.send(sid, b"back", end=True)
        await turns()
        assert bytes(end.data) == b"back" and end.ended

    asyncio.run(main())


def test_a_link_that_paused_reading_gets_nothing_until_it_resumes():
    async def main():
        left, right, _, right_owner = await pair()
        right.transport.pause_reading()  # type: ignore[union-attr]
        left.send_control(control.Replaced())
        await turns()
        assert right_owner.controls == []
        right.transport.resume_reading()  # type: ignore[union-attr]
        await turns()
        assert right_owner.controls == [control.Replaced()]

    asyncio.run(main())


def test_closing_one_link_says_goaway_and_ends_both():
    async def main():
        left, right, left_owner, right_owner = await pair()
        end = Collect()
        left.open_stream(b"open", end)
        await turns()
        right.close(reason="done here")
        await turns()
        assert left.closed and right.closed
        assert right_owner.closed == ["done here"]
        assert len(left_owner.closed) == 1 and "done here" in left_owner.closed[0]

    asyncio.run(main())


def test_abort_drops_what_was_queued_and_ends_both_at_once():
    async def main():
        left, right, left_owner, right_owner = await pair()
        left.send_control(control.Replaced())
        left.abort("gone")
        await turns()
        assert right_owner.controls == [] and right.closed and left_owner.closed == ["gone"]

    asyncio.run(main())
