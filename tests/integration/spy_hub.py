"""A hub with a hostile operator, for tests: it records every byte it relays, or forges exit records.

    python spy_hub.py record HUB_DIR FILE   # run the hub, append all link bytes it sees to FILE
    python spy_hub.py forge HUB_DIR         # run the hub, swapping each exit's Noise key for its own
    python spy_hub.py forge-services HUB_DIR  # the same for every published service's record
"""

import base64
import dataclasses
import json
import logging
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
    hub_class = {"forge": ForgingHub, "forge-services": ServiceForgingHub}.get(mode, Hub)
    run_async(serve(hub_class, folder))
