"""A hub with a hostile operator, for tests: it records every byte it relays, or forges exit records.

    python spy_hub.py record HUB_DIR FILE   # run the hub, append all link bytes it sees to FILE
    python spy_hub.py forge HUB_DIR         # run the hub, swapping each exit's Noise key for its own
    python spy_hub.py forge-services HUB_DIR  # the same for every published service's record
    python spy_hub.py hold HUB_DIR FILE     # while FILE exists, hold what far ends send back on streams
"""

import base64
import dataclasses
import json
import logging
import os
import sys

from ladder.config import HubConfig
from ladder.hub.hub import Hub
from ladder.hub.services import ServiceBoard
from ladder.protocol.mux import Mux
from ladder.protocol.noise import generate_keypair
from ladder.runtime import run_async
from ladder.store.hubdb import HubStore

_, HUB_NOISE_KEY = generate_keypair()


def forged(record: str) -> str:
    """A signed record (base64) with its Noise key swapped for the hub's own, its signature left as it was."""
    fields = json.loads(base64.b64decode(record))
    fields["noise_key"] = base64.b64encode(HUB_NOISE_KEY).decode()
    return base64.b64encode(json.dumps(fields).encode()).decode()


class ForgingHub(Hub):
    """Hands out each exit's record with the Noise key replaced by one the hub holds."""

    def directory_message(self):
        message = super().directory_message()
        exits = tuple(dataclasses.replace(entry, record=forged(entry.record)) for entry in message.exits)
        return dataclasses.replace(message, exits=exits)


class ForgingBoard(ServiceBoard):
    """Lists each service with the publisher's Noise key replaced by the hub's own."""

    def entries(self):
        entries = super().entries()
        for entry in entries:
            entry["record"] = forged(entry["record"])
        return entries


class ServiceForgingHub(Hub):
    def __init__(self, *args):
        super().__init__(*args)
        self.services = ForgingBoard(self.directory)


def record_everything(path: str) -> None:
    """After TLS, the hub's view of every link, both directions, appended to one file."""
    out = open(path, "ab")  # noqa: SIM115 -- open as long as the hub runs
    receive, send = Mux.receive_data, Mux.data_to_send

    def spied_receive(self, data, now):
        out.write(data)
        out.flush()
        return receive(self, data, now)

    def spied_send(self, amount=None):
        data = send(self, amount)
        out.write(data)
        out.flush()
        return data

    Mux.receive_data, Mux.data_to_send = spied_receive, spied_send


HOLD_MAX, HOLD_POLL = 20.0, 0.05  # a hold ends by itself after HOLD_MAX seconds, whatever the file says
log = logging.getLogger("spy")


def hold_answers(gate: str) -> None:
    """While the file `gate` exists, what the far end of a splice (the exit) sends back waits at the hub.

    Its answer, data, end or reset are kept in order and passed on once the
    file is gone (or HOLD_MAX seconds after the hold began); what the opener
    sends still goes on, and each such arrival is logged, so a test sees a
    client's bytes leave before the exit's answer reached it.
    """
    from ladder.hub.switch import SpliceEnd

    held: list[tuple] = []
    started = [0.0]

    def release_when_open(loop) -> None:
        if os.path.exists(gate) and loop.time() - started[0] < HOLD_MAX:
            loop.call_later(HOLD_POLL, release_when_open, loop)
            return
        log.info("spy: passing on %d held events", len(held))
        while held:
            method, end, args = held.pop(0)
            method(end, *args)

    def holding(method):
        def kept(self, *args):
            if self.opener and held and method.__name__ == "on_data":
                log.info("spy: %d bytes from an opener while its far end's answer is held", len(args[0]))
            if self.opener or (not held and not os.path.exists(gate)):
                return method(self, *args)
            if not held:
                loop = self.link.loop
                started[0] = loop.time()
                loop.call_later(HOLD_POLL, release_when_open, loop)
            held.append((method, self, args))
        return kept

    for name in ("on_accepted", "on_refused", "on_data", "on_end", "on_reset"):
        setattr(SpliceEnd, name, holding(getattr(SpliceEnd, name)))


async def serve(hub_class, folder):
    config = HubConfig.load(folder)
    with HubStore(config.store_target) as store:
        hub = hub_class(config, store)
        await hub.start()
        await hub.server.serve_forever()


if __name__ == "__main__":
    from pathlib import Path

    logging.basicConfig(level=logging.INFO)
    mode, folder = sys.argv[1], Path(sys.argv[2])
    if mode == "record":
        record_everything(sys.argv[3])
    elif mode == "hold":
        hold_answers(sys.argv[3])
    hub_class = {"forge": ForgingHub, "forge-services": ServiceForgingHub}.get(mode, Hub)
    run_async(serve(hub_class, folder))
