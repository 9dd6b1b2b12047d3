#!/usr/bin/env python3
"""The attacker of benchmarks/abuse.py: one scenario against one hub, in its own asyncio process.

    _abuser.py SCENARIO --hub HOST:PORT --seconds S [--connections N] [--member DIR]
               [--peer-invite LINK] [--password P] [--target-port O]

Prints one JSON line {"event": "ready", ...} once the attack is in full swing (every
connection tried, the flood started), keeps it up until S seconds after it began (or until
stdin says "exit" or closes), then closes everything and prints {"event": "done", ...} with
its counts. Every loop is bounded by S; every failure is counted by kind, never raised.

Scenarios (what the hub must survive at its shipped defaults):
  silent       N TCP connections that send nothing
  slowloris    N TLS connections dribbling an HTTP request head, a byte every --interval s
  tls-garbage  N connections sending a TLS record header and random bytes (reopened when cut)
  bad-hello    N TLS connections sending a whole member hello whose signature is wrong
  flood-TYPE   one member sending TYPE (share, share-status, publish, receipts, unknown) as
               fast as its link takes them
  streams      one member keeping N stream opens outstanding, to the exit and to no one
  records      one publisher replacing its full set of signed service records as fast as it can
  routes       one peer hub announcing ever new members, with valid signatures
  device       one device (Trojan over TLS) with N downloads it never reads
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import raise_nofile
from _loadclient import classify
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.config import PEER_SCHEME, InviteLink, MemberConfig
from ladder.link.client import dial, dial_peer
from ladder.link.connection import Endpoint, Link
from ladder.protocol import control
from ladder.protocol.hello import AUTH, HEAD, SIZES
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.messages import encode_route
from ladder.protocol.receipts import sign_receipt
from ladder.protocol.records import sign_announcement, sign_exit_record, sign_service_record
from ladder.protocol.trojan import CONNECT, password_hash, request

OPENING_AT_ONCE = 256  # connections in their TCP or TLS handshake at a time (the hub takes 256 handshakes)
REOPEN_AFTER = (1.0, 3.0)  # a slot whose connection the hub closed opens again after this (uniform)
SEND_BATCH = 64  # control messages queued before the link is given a turn to write them
WRITE_HIGH = 1024 * 1024  # the flooder waits while its socket's buffer holds more than this
HANDSHAKE_TIMEOUT = 30.0


def say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def tls_context() -> ssl.SSLContext:
    """What a scanner does: TLS without checking whose certificate it is."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Attack:
    """Shared by all scenarios: the deadline, counters, and when to say ready."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.started = time.monotonic()
        self.deadline = self.started + args.seconds
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.stop = asyncio.Event()
        self.ready_said = False

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def over(self) -> bool:
        return self.stop.is_set() or self.left() <= 0

    def ready(self, **facts) -> None:
        if not self.ready_said:
            self.ready_said = True
            say({"event": "ready", "seconds": round(time.monotonic() - self.started, 2), **facts,
                 "counts": dict(self.counts), "errors": dict(self.errors)})

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds` or until the attack is over, whichever comes first."""
        try:
            await asyncio.wait_for(self.stop.wait(), max(0.0, min(seconds, self.left())))
        except TimeoutError:
            pass

    def result(self) -> dict:
        return {"event": "done", "seconds": round(time.monotonic() - self.started, 2),
                "counts": dict(self.counts), "errors": dict(self.errors)}


# ------------------------------------------------------------ bogus connections


async def hold_until_closed(attack: Attack, reader: asyncio.StreamReader) -> None:
    """Read (and drop) what the hub says until it closes the connection or the attack ends."""
    while not attack.over():
        try:
            data = await asyncio.wait_for(reader.read(65536), max(0.01, attack.left()))
        except TimeoutError:
            return
        if not data:
            attack.counts["closed by the hub"] += 1
            return


async def silent(attack: Attack, reader, writer) -> None:
    await hold_until_closed(attack, reader)


async def slowloris(attack: Attack, reader, writer) -> None:
    head = b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: slow\r\n" + b"X-a: b\r\n" * 1000
    reading = asyncio.ensure_future(hold_until_closed(attack, reader))
    try:
        for byte in head:
            if reading.done() or attack.over():
                break
            writer.write(bytes([byte]))
            attack.counts["bytes dribbled"] += 1
            await asyncio.wait([reading], timeout=max(0.0, min(attack.args.interval, attack.left())))
    finally:
        reading.cancel()


async def tls_garbage(attack: Attack, reader, writer) -> None:
    writer.write(b"\x16\x03\x01" + os.urandom(random.randint(64, 4096)))
    await hold_until_closed(attack, reader)


def bad_hello() -> bytes:
    """A member's AUTH hello of the right shape whose key and signature are random."""
    size = SIZES[AUTH] - len(HEAD) - 1
    fields = base64.urlsafe_b64encode(os.urandom(32 + 64)).rstrip(b"=")[:size]
    return HEAD + bytes([AUTH]) + fields


async def bad_hello_connection(attack: Attack, reader, writer) -> None:
    writer.write(bad_hello())
    await hold_until_closed(attack, reader)


CONNECTION_KINDS: dict[str, tuple[bool, Callable[..., Awaitable[None]]]] = {
    "silent": (False, silent), "slowloris": (True, slowloris), "tls-garbage": (False, tls_garbage),
    "bad-hello": (True, bad_hello_connection),
}


async def bogus_connections(attack: Attack) -> None:
    """N slots, each holding one connection of the kind; a slot the hub closed opens again later."""
    use_tls, behave = CONNECTION_KINDS[attack.args.scenario]
    host, port = attack.args.hub
    context = tls_context() if use_tls else None
    opening = asyncio.Semaphore(OPENING_AT_ONCE)
    tried = 0
    live = 0

    async def slot() -> None:
        nonlocal tried, live
        first = True
        while not attack.over():
            if not first:
                await attack.pause(random.uniform(*REOPEN_AFTER))
                if attack.over():
                    return
            try:
                async with opening:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port, ssl=context,
                                                server_hostname=host if use_tls else None,
                                                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if use_tls else None),
                        HANDSHAKE_TIMEOUT + 5)
            except Exception as exc:  # counted, never raised
                attack.errors[classify(exc)] += 1
                writer = None
            finally:
                if first:
                    tried += 1
                    first = False
                    if tried == attack.args.connections:
                        attack.ready(live=live)
            if writer is None:
                await attack.pause(random.uniform(*REOPEN_AFTER))
                continue
            attack.counts["opened"] += 1
            live += 1
            try:
                await behave(attack, reader, writer)
            except Exception as exc:  # counted, never raised
                attack.errors[classify(exc)] += 1
            finally:
                live -= 1
                writer.transport.abort()

    await asyncio.gather(*(slot() for _ in range(attack.args.connections)))
    attack.counts["live at the end"] = live


# ------------------------------------------------------------------- a member


class Listener:
    """The attacker's link owner: keeps the directory, refuses streams, notes the link's end."""

    def __init__(self) -> None:
        self.exits: tuple[control.ExitEntry, ...] = ()
        self.closed: str | None = None

    def stream_opened(self, link: Link, sid: int, payload: bytes, window: int) -> None:
        link.refuse(sid, 3, "the attacker opens nothing for anyone")

    def control_received(self, link: Link, message: control.ControlMessage) -> None:
        if isinstance(message, control.Directory):
            self.exits = message.exits

    def link_closed(self, link: Link, reason: str) -> None:
        self.closed = reason


async def writable(link: Link) -> None:
    """Give the link a turn to write, then wait while its socket buffer is full (the hub not reading)."""
    await asyncio.sleep(0)
    while not link.closed and link.transport is not None and \
            link.transport.get_write_buffer_size() > WRITE_HIGH:
        await asyncio.sleep(0.005)


def service_records(key: Ed25519PrivateKey, round_: int, count: int) -> tuple[control.SignedService, ...]:
    noise = os.urandom(32)
    now = int(time.time())
    return tuple(control.SignedService(**sign_service_record(
        key, f"s{round_ % 1000}x{i}", f"title {round_} {i}", "a flood of records " * 4, "http", noise, [],
        now))
        for i in range(count))


def flood_messages(kind: str, config: MemberConfig) -> Callable[[int], control.ControlMessage]:
    """The n-th message of a flood of `kind`: each one different, so no cache spares the hub work."""
    key = config.key
    if kind == "share":
        noise = config.noise_key()
        return lambda n: control.Share(**sign_exit_record(key, "ZZ", noise, int(time.time()) + n))
    if kind == "share-status":
        return lambda n: control.ShareStatus(accepting=bool(n % 2), reason=f"flood {n}")
    if kind == "publish":
        return lambda n: control.Publish(service_records(key, n, 1))
    if kind == "receipts":
        payer = Ed25519PrivateKey.generate()
        return lambda n: control.Receipts(tuple(control.Envelope(**sign_receipt(
            payer, exit=config.id, hub="h", channel=f"{n:064x}", received=n, sent=n, frames=n, seq=1, time=n))
            for _ in range(8)))
    if kind == "unknown":
        return lambda n: control.decode(json.dumps({"type": f"x-{n % 100}", "pad": "a" * 1000}).encode())
    raise SystemExit(f"no flood of {kind!r}")


async def member_link(attack: Attack, config: MemberConfig, listener: Listener) -> Link | None:
    try:
        link, _ = await dial(config.hub_address, config.fingerprint, config.key, listener, timeout=10)
    except Exception as exc:  # counted, never raised
        attack.errors[f"dial: {classify(exc)}"] += 1
        return None
    attack.counts["links"] += 1
    return link


async def flood(attack: Attack, config: MemberConfig, make: Callable[[int], control.ControlMessage]) -> None:
    """Send `make(n)` for n = 0, 1, ... as fast as the link takes them; dial again if the hub cuts us."""
    n = 0
    while not attack.over():
        listener = Listener()
        link = await member_link(attack, config, listener)
        if link is None:
            await attack.pause(1.0)
            continue
        while not attack.over() and not link.closed:
            for _ in range(SEND_BATCH):
                link.send_control(make(n))
                n += 1
            attack.counts["messages"] = n
            attack.ready()
            await writable(link)
        if link.closed:
            attack.counts["links cut by the hub"] += 1
            attack.errors[f"cut: {(listener.closed or '?')[:80]}"] += 1
            await attack.pause(1.0)
        else:
            link.close()


async def member_flood(attack: Attack) -> None:
    config = MemberConfig.load(attack.args.member)
    if attack.args.scenario == "records":
        await flood(attack, config, lambda n: control.Publish(service_records(config.key, n, 64)))
    else:
        await flood(attack, config, flood_messages(attack.args.scenario.removeprefix("flood-"), config))


class Answer(Endpoint):
    """One stream open of the attacker: counts its answer and opens the next."""

    def __init__(self, attack: Attack, done: Callable[[], None]):
        self.attack, self.done = attack, done

    def on_accepted(self, payload: bytes, window: int) -> None:
        self.attack.counts["accepted"] += 1

    def on_refused(self, code: int, reason: str) -> None:
        self.attack.counts[f"refused: {reason[:60]}"] += 1
        self.done()

    def on_reset(self, code: int, reason: str) -> None:
        self.attack.counts[f"reset: {reason[:60]}"] += 1
        self.done()


async def streams(attack: Attack) -> None:
    """Keep N opens outstanding: to the exit (a channel's message 1 that is random bytes) and to no one."""
    config = MemberConfig.load(attack.args.member)
    listener = Listener()
    link = await member_link(attack, config, listener)
    if link is None:
        return
    for _ in range(100):
        if listener.exits:
            break
        await attack.pause(0.1)
    targets = [e.id for e in listener.exits] + [member_id(os.urandom(32)) for _ in range(3)]
    wanted = attack.args.connections
    outstanding = 0

    def answered() -> None:
        nonlocal outstanding
        outstanding -= 1

    n = 0
    while not attack.over() and not link.closed:
        while outstanding < wanted and link.can_open() and not link.closed:
            route = encode_route(targets[n % len(targets)], os.urandom(96))
            link.open_stream(route, Answer(attack, answered))
            outstanding += 1
            n += 1
        attack.counts["opens"] = n
        if outstanding >= wanted:
            attack.ready(outstanding=outstanding)
        await writable(link)
        await asyncio.sleep(0.01)
    attack.counts["outstanding at the end"] = outstanding
    if link.closed:
        attack.errors[f"cut: {(listener.closed or '?')[:80]}"] += 1
    link.close()


# ------------------------------------------------------------------ a peer hub


async def routes(attack: Attack) -> None:
    """A peer hub (peered with an invite) announcing batches of new members, each with a signed exit."""
    invite = InviteLink.parse(attack.args.peer_invite, PEER_SCHEME)
    key = Ed25519PrivateKey.generate()
    _, joined = await dial_peer(invite.address, invite.fingerprint, key, None, token=invite.token)
    if not isinstance(joined, control.PeerJoined):
        raise SystemExit(f"the hub did not take the peer invite: {joined}")
    listener = Listener()
    link, _ = await dial_peer(invite.address, invite.fingerprint, key, listener)
    me = member_id(public_bytes(key))
    n = 0
    while not attack.over() and not link.closed:
        batch = []
        for _ in range(20):
            member = Ed25519PrivateKey.generate()
            exit_ = sign_exit_record(member, "ZZ", os.urandom(32), int(time.time()))
            signed = sign_announcement(key, member_id(public_bytes(member)), public_bytes(member), f"m{n}",
                                       "flooder", time.time_ns() // 1000, int(time.time()) + 600, exit_, [])
            batch.append(control.RouteEntry(signed["record"], signed["signature"], signed["pubkey"], (me,)))
            n += 1
        link.send_control(control.Routes(tuple(batch)))
        attack.counts["routes"] = n
        attack.ready()
        await writable(link)
    if link.closed:
        attack.errors[f"cut: {(listener.closed or '?')[:80]}"] += 1
    link.close()


# ------------------------------------------------------------------- a device


async def device(attack: Attack) -> None:
    """N Trojan CONNECTs of one device to the origin's big file, none of them ever read."""
    host, port = attack.args.hub
    line = password_hash(unquote(attack.args.password)) + b"\r\n"
    ask = request(CONNECT, "127.0.0.1", attack.args.target_port)
    get = f"GET /256m HTTP/1.1\r\nHost: 127.0.0.1:{attack.args.target_port}\r\n\r\n".encode()
    writers = []
    context = tls_context()
    opening = asyncio.Semaphore(OPENING_AT_ONCE)

    async def one() -> None:
        async with opening:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host, limit=1), HANDSHAKE_TIMEOUT)
            except Exception as exc:  # counted, never raised
                attack.errors[classify(exc)] += 1
                return
        writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(line + ask + get)
        writer.transport.pause_reading()  # the slow reader: nothing more is taken off the socket
        writers.append(writer)
        attack.counts["opened"] += 1

    await asyncio.gather(*(one() for _ in range(attack.args.connections)))
    attack.ready(open=len(writers))
    await attack.pause(attack.left())
    for writer in writers:
        writer.transport.abort()


# ------------------------------------------------------------------------ main


SCENARIOS = [*CONNECTION_KINDS, "flood-share", "flood-share-status", "flood-publish", "flood-receipts",
             "flood-unknown", "streams", "records", "routes", "device"]


async def run(args: argparse.Namespace) -> dict:
    attack = Attack(args)
    loop = asyncio.get_running_loop()

    loop.add_reader(sys.stdin.fileno(), attack.stop.set)  # "exit" or end of input
    if args.scenario in CONNECTION_KINDS:
        work = bogus_connections(attack)
    elif args.scenario == "streams":
        work = streams(attack)
    elif args.scenario == "routes":
        work = routes(attack)
    elif args.scenario == "device":
        work = device(attack)
    else:
        work = member_flood(attack)
    try:
        await asyncio.wait_for(work, args.seconds + 60)
    except TimeoutError:
        attack.errors["attack did not end in time"] += 1
    attack.ready()  # even if it never got into full swing: the driver must not wait for nothing
    loop.remove_reader(sys.stdin.fileno())
    return attack.result()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--hub", type=address, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=5.0, help="slowloris: seconds between two bytes")
    parser.add_argument("--member", type=Path, help="the attacking member's folder")
    parser.add_argument("--peer-invite", help="routes: a peer invite of the hub")
    parser.add_argument("--password", help="device: the device's Trojan password")
    parser.add_argument("--target-port", type=int, default=0, help="device: the origin's port")
    args = parser.parse_args()
    raise_nofile()
    say(asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
