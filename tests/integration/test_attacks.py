"""Members attacking the hub and exits, with a raw client built from Ladder's own protocol code.

Each attack runs against real hub and agent processes. The attacker is a
real member (joined with an invite); the tests bound what it makes the hub
or the exit hold (RSS from /proc), check that it alone is cut or refused,
and that another member's download through an exit still arrives intact.
The figures measured are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import socket
import sys
import time

import pytest
from harness import BIG, Network, curl, rss, wait_for

from ladder.config import MemberConfig
from ladder.link.client import dial
from ladder.link.connection import Endpoint
from ladder.link.tls import client_context, fingerprint_of_cert_der
from ladder.protocol import control
from ladder.protocol.channel import CHANNEL_REQUEST, Initiator
from ladder.protocol.errors import ErrorCode
from ladder.protocol.frames import FrameType, encode
from ladder.protocol.hello import make_hello
from ladder.protocol.messages import encode_route
from ladder.protocol.records import verify_exit_record

MiB = 1024 * 1024


def download(user, origin, path) -> tuple[float, str]:
    """The other member's download of the origin's 64 MiB file: (MB/s, sha256 of what arrived)."""
    started = time.monotonic()
    result = curl("-x", user.socks, "-o", str(path), origin.url("big.bin"), timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    data = path.read_bytes()
    path.unlink()
    assert len(data) == BIG
    return BIG / elapsed / 1e6, hashlib.sha256(data).hexdigest()


def member_tls_socket(config: MemberConfig, receive_buffer: int) -> socket.socket:
    """A member's TLS connection to the hub after its AUTH hello, as link/client.py makes it."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: a small window
    raw.settimeout(10)
    raw.connect(config.hub_address)
    tls = client_context().wrap_socket(raw, server_hostname=config.hub_address[0])
    assert fingerprint_of_cert_der(tls.getpeercert(binary_form=True)) == config.fingerprint
    tls.sendall(make_hello(config.key, config.fingerprint, tls.get_channel_binding("tls-unique")))
    return tls


def test_a_member_flooding_pings_without_reading_is_stopped_and_cut_while_others_download(network, origin,
                                                                                           tmp_path):
    network.exit("alpha", "AA", "--allow-private")
    user = network.user("user")
    user.wait_exits(1)
    mallory = MemberConfig.load(network.join("mallory"))
    hub_pid = network.hub.pid
    speed_before, sha = download(user, origin, tmp_path / "before")
    assert sha == origin.big_sha
    baseline = rss(hub_pid)

    tls = member_tls_socket(mallory, 16 * 1024)
    tls.settimeout(3)
    batch = b"".join(encode(FrameType.PING, 0, i.to_bytes(8, "big")) for i in range(1000))
    sent, peak, started = 0, baseline, time.monotonic()
    try:
        while sent < 4_000_000 and time.monotonic() - started < 60:  # the pings of the finding, at most
            tls.sendall(batch)  # never a read: every answer stays with the hub
            sent += 1000
            if sent % 50_000 == 0:
                peak = max(peak, rss(hub_pid))
        stalled = False
    except TimeoutError:  # the hub stopped reading this member
        stalled = True
    stalled_at = time.monotonic()
    peak = max(peak, rss(hub_pid))
    assert stalled, f"the hub read {sent} pings without ever pausing"

    # Held back but not yet cut: another member's download goes on meanwhile.
    speed_during, sha = download(user, origin, tmp_path / "during")
    assert sha == origin.big_sha
    peak = max(peak, rss(hub_pid))
    wait_for(lambda: "mallory went offline" in network.hub.output(), 30, "the hub to drop mallory")
    cut_after = time.monotonic() - stalled_at
    time.sleep(6)  # the runtime gives free heap back every 5 s
    after = rss(hub_pid)
    tls.close()
    print(f"\nping flood: {sent} pings ({sent * 17 / MiB:.1f} MiB) before the hub stopped reading; "
          f"cut {cut_after:.1f} s later; hub RSS {baseline / MiB:.0f} -> peak {peak / MiB:.0f} -> "
          f"{after / MiB:.0f} MiB after; other member {speed_before:.0f} MB/s before, "
          f"{speed_during:.0f} MB/s during", file=sys.stderr)
    assert peak - baseline < 32 * MiB, f"the hub grew by {(peak - baseline) / MiB:.0f} MiB"
    assert after - baseline < 16 * MiB
    assert "member mallory: the peer read none of its answers for 15 s" in network.hub.output()
    assert "Traceback" not in network.hub.output()
    for other in ("user", "alpha"):
        assert f"{other} went offline" not in network.hub.output()


class _Directory:
    """Owner of the attacker's link: keeps the latest directory."""

    def __init__(self):
        self.exits: tuple[control.ExitEntry, ...] = ()

    def stream_opened(self, link, sid, payload, window):
        link.refuse(sid, ErrorCode.FORBIDDEN, "no")

    def control_received(self, link, message):
        if isinstance(message, control.Directory):
            self.exits = message.exits

    def link_closed(self, link, reason): ...


class _Answer(Endpoint):
    def __init__(self, future: asyncio.Future):
        self.future = future

    def on_accepted(self, payload, window):
        self.future.set_result(("accepted", None, ""))

    def on_refused(self, code, reason):
        if not self.future.done():
            self.future.set_result(("refused", code, reason))

    on_reset = on_refused


async def open_channels(config: MemberConfig, at_most: int, refusals_wanted: int) :
    """Open valid Noise channels to the one exit until refused `refusals_wanted` times (or `at_most`).

    Returns the answers in order, whether the attacker's link is still up and
    how long it took; the accepted channels stay open until the link closes.
    """
    owner = _Directory()
    link, _ = await dial(config.hub_address, config.fingerprint, config.key, owner)
    for _ in range(100):
        if owner.exits:
            break
        await asyncio.sleep(0.1)
    record = verify_exit_record(dataclasses.asdict(owner.exits[0]))
    noise_private = config.noise_key()
    answers, started = [], time.monotonic()
    while len(answers) < at_most and sum(a[0] == "refused" for a in answers) < refusals_wanted:
        futures = []
        for _ in range(32):  # a burst of opens, then their answers
            future = asyncio.get_running_loop().create_future()
            message1 = Initiator(noise_private, record.noise_key, config.id, record.id).first_message(
                CHANNEL_REQUEST)
            link.open_stream(encode_route(record.id, message1), _Answer(future))
            futures.append(future)
        answers += await asyncio.wait_for(asyncio.gather(*futures), 30)
        if time.monotonic() - started > 60:
            break
    elapsed = time.monotonic() - started
    up = not link.closed
    await asyncio.sleep(1)  # the exit holds the accepted channels: measure it now
    return answers, up, elapsed, link


LENIENT_HUB = ("import ladder.hub.hub as hub; hub.STREAMS_PER_DESTINATION = 1 << 30; "
               "from ladder.cli import main; main()")


@pytest.mark.parametrize("hub", ["hub", "exit"])
def test_a_member_opening_channels_to_an_exit_is_refused_past_the_limit_and_others_get_through(
        hub, tmp_path, origin):
    """The hub refuses a member's ninth stream to one exit; behind a hub that does not, the exit does."""
    command = None if hub == "hub" else ["-c", LENIENT_HUB, "hub", "run", "--dir", str(tmp_path / "hub")]
    network = Network(tmp_path, command)
    try:
        exit_ = network.exit("alpha", "AA", "--allow-private")
        user = network.user("user")
        user.wait_exits(1)
        mallory = MemberConfig.load(network.join("mallory"))
        baseline = rss(exit_.proc.pid)

        async def attack():
            answers, up, elapsed, link = await open_channels(mallory, 4000, 500)
            held = rss(exit_.proc.pid)
            speed, sha = await asyncio.to_thread(download, user, origin, tmp_path / "during")
            link.close()
            return answers, up, elapsed, held, speed, sha

        answers, up, elapsed, held, speed, sha = asyncio.run(attack())
        accepted = [a for a in answers if a[0] == "accepted"]
        refused = [a for a in answers if a[0] == "refused"]
        print(f"\nchannel flood through the {hub}'s limit: {len(answers)} opens in {elapsed:.1f} s, "
              f"{len(accepted)} accepted, {len(refused)} refused ({refused[0][1:] if refused else None}); "
              f"exit RSS {baseline / MiB:.0f} -> {held / MiB:.0f} MiB; other member {speed:.0f} MB/s",
              file=sys.stderr)
        assert len(accepted) == 8 and answers[:8] == accepted, answers[:12]
        reason = "you already hold 8 streams to that member" if hub == "hub" else \
            "you already hold 8 channels to this member"
        assert len(refused) >= 500 and set(refused) == {("refused", ErrorCode.MEMBER_LIMIT, reason)}
        assert up, "the attacker's link was closed instead of its opens refused"
        assert sha == origin.big_sha
        assert held - baseline < 32 * MiB, f"the exit grew by {(held - baseline) / MiB:.0f} MiB"
        for proc in (network.hub, exit_.proc, user.proc):
            assert "Traceback" not in proc.output()
    finally:
        network.close()
