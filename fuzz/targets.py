"""Fuzz targets: one function per parser of what a stranger or a member can send, taking bytes.

Each target drives one parser (or decoder, or sans-IO object) with the
bytes it is given and lets through only the errors that parser is
documented to raise: the protocol's own (RemoteProtocolError, RecordError,
RequestError, ConfigError, ValueError where that is the API). Anything
else escaping a target is a crash, and so is an `assert` failing: where a
parser has an encoder, the target also checks that what it decoded encodes
and decodes back to the same thing, and where it is incremental, that bytes
cut anywhere give what they give whole.

`fuzz/run.py` runs these under atheris; tests/protocol/test_fuzz_regressions.py
runs every one on the seed corpus and on every input that once crashed it,
without atheris (nothing here imports it). Keys and times are fixed, so a
target is a pure function of its bytes and a crash replays.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.agent.front import ProxyConnection
from ladder.agent.rules import parse_rules
from ladder.config import ConfigError, InviteLink, ProxyAuth, parse_address, parse_amount, parse_duration
from ladder.hub.profiles import FORMATS, DeviceProfile, share_link, subscription, subscription_format
from ladder.link.webface import WebFace
from ladder.protocol import control, envelope, hello, http1, ledger, messages, receipts, records, trojan
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.frames import FrameDecoder
from ladder.protocol.mux import Mux, StreamState
from ladder.protocol.routing import Announcement, Router

# One key for what targets sign themselves, so that a fuzzed record body gets past its signature
# to the field checks behind it (a fuzzer cannot forge Ed25519).
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
HUB_FINGERPRINT = "sha256:" + "ab" * 32
BINDING = bytes(32)
ENTRY = b"E"  # the first byte of a record target's input that says a whole entry follows


def pieces(data: bytes) -> Iterator[bytes]:
    """`data[1:]` cut where its first byte says: 0 whole, else pieces of 1 to 37 bytes (a fixed walk)."""
    if not data:
        return
    step, body = data[0], data[1:]
    if step == 0:
        yield body
        return
    offset, i = 0, 0
    while offset < len(body):
        size = (step * (i + 1)) % 37 + 1
        yield body[offset:offset + size]
        offset += size
        i += 1


def _json(data: bytes) -> Any:
    """The JSON value of `data`, or None for bytes that are none (the callers' own JSON gate)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


# ------------------------------------------------------------------ frames and the mux


def frames(data: bytes) -> None:
    """The frame decoder, fed in pieces: the same frames as whole, or RemoteProtocolError."""
    whole = FrameDecoder()
    try:
        expected = whole.feed(data[1:])
    except RemoteProtocolError:
        expected = None
    decoder = FrameDecoder()
    got = []
    try:
        for piece in pieces(data):
            got += decoder.feed(piece)
    except RemoteProtocolError:
        assert expected is None or whole.error is not None, "a split stream failed where the whole did not"
        return
    if expected is not None and whole.error is None:
        assert got == expected, "frames differ when their bytes are split"


def _mux(client: bool, data: bytes) -> None:
    """A fresh mux fed pieces of `data`; it accepts, refuses, acknowledges and answers what it hears."""
    mux = Mux(client=client, window=1000, max_streams=4, max_pending_opens=2)
    if data[:1] and data[0] & 1 and mux.can_open():
        mux.open_stream(b"open", window=64)
    now = 0.0
    for i, piece in enumerate(pieces(data)):
        now += 1.0
        try:
            events = mux.receive_data(piece, now)
        except RemoteProtocolError:
            assert mux.terminated, "a mux that raised a protocol error is not terminated"
            mux.data_to_send()
            return
        for event in events:
            sid = getattr(event, "stream_id", None)
            if sid is None or mux.terminated:
                continue
            name = type(event).__name__
            if name == "StreamOpened" and mux.state(sid) is StreamState.PENDING:  # not reset since
                mux.accept(sid, b"ok", window=32) if i % 2 else mux.refuse(sid, ErrorCode.NO_ROUTE, "no")
            elif name == "DataReceived":
                mux.acknowledge(sid, len(event.data))
                if mux.state(sid) in (StreamState.OPEN, StreamState.REMOTE_ENDED):
                    mux.send_data(sid, event.data[:50])
        mux.data_to_send()
        mux.handle_timer(now)


def mux_client(data: bytes) -> None:
    _mux(True, data)


def mux_server(data: bytes) -> None:
    _mux(False, data)


# ------------------------------------------------------------------ a member's first words


def hello_(data: bytes) -> None:
    """hello_size on every prefix agrees with the whole; parse and verify never raise."""
    size = hello.hello_size(data)
    if size is not None and size <= len(data):
        assert hello.hello_size(data[:size]) == size
    parsed = hello.parse_hello(data)
    if parsed is not None:
        assert hello.verify_hello(parsed, HUB_FINGERPRINT, BINDING) in (True, False)


def control_(data: bytes) -> None:
    """A CONTROL payload: RemoteProtocolError, or a message that encodes and decodes to itself."""
    try:
        message = control.decode(data)
    except RemoteProtocolError:
        return
    if not isinstance(message, control.Unknown):
        assert control.decode(control.encode(message)) == message, "a decoded message does not round-trip"


# ------------------------------------------------------------------ signed records


def _envelope(data: bytes, context: bytes, with_pubkey: bool = True) -> dict[str, Any] | None:
    """The entry a target verifies: after ENTRY, the entry's JSON as it travels; else `data` as a
    record body signed here with KEY (so that the checks behind the signature run)."""
    if data[:1] == ENTRY:
        entry = _json(data[1:])
        return entry if isinstance(entry, dict) else None
    body = data
    pubkey = envelope.b64(KEY.public_key().public_bytes_raw())
    entry = {"record": envelope.b64(body), "signature": envelope.b64(KEY.sign(context + body)),
             "id": envelope.signer({"record": envelope.b64(body)})}
    if with_pubkey:
        entry["pubkey"] = pubkey
    return entry


def exit_record(data: bytes) -> None:
    entry = _envelope(data, b"ladder exit record v1\x00")
    if entry is not None:
        try:
            records.verify_exit_record(entry)
        except envelope.RecordError:
            pass


def service_record(data: bytes) -> None:
    entry = _envelope(data, b"ladder service record v1\x00")
    if entry is None:
        return
    try:
        record = records.verify_service_record(entry)
    except envelope.RecordError:
        return
    assert record.address.endswith(".ladder")


def announcement(data: bytes) -> None:
    entry = _envelope(data, b"ladder hub announcement v1\x00")
    if entry is not None:
        try:
            records.verify_announcement(entry)
        except envelope.RecordError:
            pass


def receipt(data: bytes) -> None:
    """A receipt's envelope, then the checker a hub holds per channel."""
    entry = _envelope(data, b"ladder receipt v1\x00")
    if entry is None:
        return
    try:
        found = receipts.verify_receipt(entry)
    except receipts.ReceiptRefused:
        return
    checker = receipts.ReceiptChecker(found.payer, found.exit, found.channel)
    for to_payer, from_payer in ((0, 0), (2**40, 2**40)):
        try:
            assert checker.check(found, to_payer, from_payer) >= 0
        except receipts.ReceiptRefused:
            pass


def ledger_entry(data: bytes) -> None:
    """A ledger leaf: ValueError, or an entry whose canonical data reads back as itself."""
    try:
        entry = ledger.Entry.from_data(data)
    except ValueError:
        return
    assert ledger.Entry.from_data(entry.data()) == entry
    problem = ledger.check_entries([(0, data, ledger.leaf_hash(data))], [], None)
    assert problem is None or problem.index == 0


def checkpoint(data: bytes) -> None:
    entry = _envelope(data, b"ladder checkpoint v1\x00")
    if entry is None:
        return
    try:
        found = ledger.verify_checkpoint(entry)
    except envelope.RecordError:
        return
    assert ledger.check_head(found, found, found.size, []) is None


# ------------------------------------------------------------------ routing from peers


def _announced(entry: control.RouteEntry) -> Announcement:
    """The verifier of the routing target: the record is JSON naming member, home, seq and expiry
    (the hub's verifier checks signatures; this one lets the fuzzer reach the router's decisions)."""
    try:
        fields = _json(envelope.unb64(entry.record))
        if not isinstance(fields, dict):
            raise ValueError("not an object")
        return Announcement(str(fields["m"]), str(fields["h"]), int(fields["s"]), float(fields["e"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise envelope.RecordError("malformed") from None


def routing(data: bytes) -> None:
    """Lines of peer events and peers' CONTROL messages into one hub's router.

    Each line: a letter, a peer digit, the rest. `u` peer up, `d` peer down,
    `r` that peer's CONTROL payload (a `routes` message, else skipped), `f`
    an open via it failed, `x` time passes and routes expire, `o` this hub
    originates the rest's member, `w` withdraws it.
    """
    router = Router("hub0", _announced, hop_limit=4)
    up: set[str] = set()
    now = 1000.0
    for line in data.split(b"\n")[:64]:
        if len(line) < 2:
            continue
        op, peer, rest = line[:1], "hub" + chr(line[1] % 4), line[2:]
        now += 1.0
        if op == b"u":
            router.peer_up(peer, now)
            up.add(peer)
        elif op == b"d":
            router.peer_down(peer, now)
            up.discard(peer)
        elif op == b"r" and peer in up:
            try:
                message = control.decode(rest)
            except RemoteProtocolError:
                continue
            if isinstance(message, control.Routes):
                router.receive(peer, message, now)
        elif op == b"f":
            router.failed(rest.decode("latin-1"), peer, now)
        elif op == b"x":
            now += 100.0 * (rest[:1] or b"\1")[0]
            router.expire(now)
        elif op in (b"o", b"w"):
            member = rest.decode("latin-1")
            if op == b"w":
                router.withdraw(member)
                continue
            fields = {"m": member, "h": "hub0", "s": int(now), "e": now + 500}
            record = envelope.b64(json.dumps(fields).encode())
            router.originate(control.RouteEntry(record, "", "", ("hub0",)), now)
        for peer_id, message in router.take_messages():
            assert all("hub0" in e.path and peer_id not in e.path for e in message.routes), "split horizon"
        router.take_changes()
        for member in list(router.destinations()):
            best = router.best(member, now)
            assert best is None or best.via is None or len(best.entry.path) <= router.hop_limit


# ------------------------------------------------------------------ OPEN payloads


def open_payload(data: bytes) -> None:
    """Routes, peer routes, targets (whole and read a byte at a time), service requests, UDP packets."""
    for decode in (messages.decode_route, messages.decode_peer_route, messages.decode_service_request):
        try:
            decode(data)
        except RemoteProtocolError:
            pass
    try:
        host, port = messages.decode_target(data)
    except RemoteProtocolError:
        pass
    else:
        again = messages.encode_target(host, port)  # what an exit or a hub re-encodes must encode
        assert messages.decode_target(again)[1] == port
    _incremental_address(data)
    if data[:1] == bytes([messages.UDP_REQUEST]):
        _packets(data[1:])


def _incremental_address(data: bytes) -> None:
    """read_address on every prefix: None until the whole address is there, then the same answer."""
    try:
        whole = messages.read_address(data)
    except RemoteProtocolError:
        whole = None
    for end in range(min(len(data), 300) + 1):
        try:
            got = messages.read_address(data[:end])
        except RemoteProtocolError:
            return
        if got is not None:
            assert got == whole and got[2] == end, "an address read early differs from the whole"
            return


def _packets(data: bytes) -> None:
    """The packets of a UDP stream cut as `pieces` cuts it, each re-encoded and decoded back."""
    decoder = trojan.PacketDecoder()
    got: list[trojan.Packet] = []
    try:
        for piece in pieces(data):
            got += decoder.feed(piece)
    except RemoteProtocolError:
        return
    for packet in got:
        try:
            again = trojan.encode_packet(packet.host, packet.port, packet.payload)
        except ValueError:
            continue  # a name of a kind encode_address refuses (it is never sent on)
        (back,) = trojan.PacketDecoder().feed(again)
        assert (back.port, back.payload) == (packet.port, packet.payload)


def trojan_(data: bytes) -> None:
    """A device's first flight: the password line, the request after it, then UDP packets."""
    line = trojan.password_line(data)
    assert line is None or line == b"" or len(line) == trojan.HASH_SIZE
    rest = data[trojan.PASSWORD_LINE:] if line else data
    try:
        parsed = trojan.parse_request(rest)
    except RemoteProtocolError:
        return
    if parsed is None:
        return
    request, size = parsed
    again = trojan.parse_request(trojan.request(request.command, request.host, request.port))
    assert again is not None and (again[0].command, again[0].port) == (request.command, request.port)
    if request.command == trojan.UDP_ASSOCIATE:
        _packets(rest[size:])


# ------------------------------------------------------------------ HTTP/1.1


def http1_head(data: bytes) -> None:
    """Request heads one after another, fed in pieces, and the framing of each."""
    reader, buf = http1.HeadReader(2048), bytearray()
    try:
        for piece in pieces(data):
            buf += piece
            while (head := reader.read_head(buf)) is not None:
                line, fields = head
                version = http1.check_version(line.version)
                http1.body_framing(fields, version)
                http1.persists(fields, version)
                http1.preferred_language(",".join(fields.get("accept-language")), ("en", "zh"))
    except http1.RequestError as exc:
        assert 400 <= exc.status < 600


def http1_chunked(data: bytes) -> None:
    """A chunked body fed in pieces reads as the whole does: done, unfinished, or refused."""
    def read(parts: Iterator[bytes]) -> tuple[str, bytes]:
        body, buf = http1.ChunkedBody(1024), bytearray()
        try:
            for part in parts:
                buf += part
                if body.feed(buf):
                    return "done", bytes(buf)
        except http1.RequestError:
            return "refused", b""
        return "unfinished", b""
    whole = read(iter([data[1:]]))
    split = read(pieces(data))
    if whole[0] != "unfinished" and split[0] != "unfinished":
        assert whole[0] == split[0], f"a chunked body is {whole[0]} whole but {split[0]} split"


def webface(data: bytes) -> None:
    """The web face answers anything in pieces with bytes; once closing, it says nothing more."""
    face = WebFace(clock=lambda: 1.7e9, plain_on_https_port=bool(data[:1]) and data[0] & 1 == 1)
    for piece in pieces(data):
        closing = face.closing
        out = face.receive_data(piece)
        assert isinstance(out, bytes) and not (closing and out)
        assert not (face.awaiting_request and face.reading_body)


# ------------------------------------------------------------------ the agent's proxy front


class _Transport(asyncio.Transport):
    """What ProxyConnection writes to and closes, in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "the front wrote after closing"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name in ("peername", "sockname") else default


_LOOP = asyncio.new_event_loop()
_AUTH = ProxyAuth(b"user", b"secret")


class _Stream:
    """A stream the opener gives the front for one target: the front sends on it only for that target."""

    def __init__(self, relay: ProxyConnection, host: str, port: int) -> None:
        self.relay = relay
        self.target = host, port

    def send(self, data: bytes | memoryview) -> None:
        assert self.relay.target in (None, self.target), (
            f"bytes for {self.relay.target} went to the stream for {self.target}")

    def end(self) -> None:
        pass

    def reset(self, code: int, reason: str = "") -> None:
        pass

    def acknowledge(self, nbytes: int) -> None:
        pass

    def pending(self) -> int:
        return 0


def front(data: bytes) -> None:
    """The proxy front's SOCKS5, SOCKS4/4a and HTTP parsing: bytes in pieces (cut as the second byte
    says), then EOF.

    The first byte's bits: 1 asks for a password; 2 makes the opener refuse
    (as a block rule does); 4 makes it attach each stream at once (as an
    exit's channel does), else once the bytes are in (as a direct
    connection does). What the front sends on a stream must be for that
    stream's target: a pipelined request for another host never goes to
    the first one's.
    """
    _LOOP.run_until_complete(_front(data))


async def _front(data: bytes) -> None:
    flags = data[0] if data else 0
    waiting: list[tuple[ProxyConnection, _Stream]] = []

    def opener(host: str, port: int, relay: ProxyConnection) -> None:
        messages.encode_target(host, port)  # the front refuses what the agent could not send on
        if flags & 2:
            return relay.on_refused(ErrorCode.FORBIDDEN, "blocked")
        stream = _Stream(relay, host, port)
        if flags & 4:
            relay.attach(stream)
            relay.on_accepted(b"", 0)
        else:
            waiting.append((relay, stream))

    def pac(reached: tuple[str, int]) -> str:
        return "function FindProxyForURL(u, h) { return 'DIRECT'; }"

    connection = ProxyConnection(opener, pac=pac, auth=_AUTH if flags & 1 else None)
    transport = _Transport()
    connection.connection_made(transport)
    try:
        for piece in pieces(data[1:]):
            if transport.closed:
                break
            if piece:  # asyncio never hands a protocol empty data
                connection.data_received(piece)
        while waiting and not connection.done:
            relay, stream = waiting.pop(0)
            relay.attach(stream)
            relay.on_accepted(b"", 0)
        if not transport.closed:
            connection.eof_received()
    finally:
        connection.connection_lost(None)


# ------------------------------------------------------------------ what members and devices paste


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def invite(data: bytes) -> None:
    """Invite links (both schemes), addresses, durations, amounts and proxy credentials from user text."""
    text = _text(data)
    for scheme in ("ladder", "ladder-peer"):
        try:
            link = InviteLink.parse(text, scheme)
        except ConfigError:
            continue
        try:
            assert InviteLink.parse(str(link), scheme) == link, "an invite link does not round-trip"
        except ConfigError:
            raise AssertionError(f"a parsed invite link does not parse again: {link}") from None
    for parse in (parse_address, parse_duration, lambda t: parse_amount(t, "cap"),
                  lambda t: ProxyAuth.parse(t, "--proxy-auth")):
        try:
            parse(text)
        except ConfigError:
            pass


def profiles(data: bytes) -> None:
    """A subscription request's target, a device's rules, and the profiles made from fuzzed fields.

    The share link must read back (by urllib, as the apps read it) as the
    password, host, port and label that went in.
    """
    text = _text(data)
    target, _, rest = text.partition("\n")
    url = urlsplit(target)
    try:
        form = subscription_format(parse_qs(url.query).get("format", [None])[0])
    except ValueError:
        form = "links"
    rules_text, _, fields = rest.partition("\n\n")
    try:
        rules = parse_rules(rules_text.splitlines())
    except ConfigError:
        rules = []
    password, label, host = (fields.split("\n") + ["", "", ""])[:3]
    # The host is the hub's public address from its config: a name, or an IP (IPv6 bracketed in the link).
    host = "".join(c for c in host if c.isascii() and (c.isalnum() or c in ".-:"))
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            host = host.replace(":", "")
    profile = DeviceProfile(label or "a/phone · hub", password or "pw", host or "hub.example", 443,
                            None, None, None)
    link = urlsplit(share_link(profile))
    assert unquote(link.username or "") == profile.password
    assert unquote(link.fragment) == profile.label
    assert link.port == 443
    if form in FORMATS:
        subscription(profile, form, rules)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frames": frames,
    "mux_client": mux_client,
    "mux_server": mux_server,
    "hello": hello_,
    "control": control_,
    "exit_record": exit_record,
    "service_record": service_record,
    "announcement": announcement,
    "receipt": receipt,
    "ledger_entry": ledger_entry,
    "checkpoint": checkpoint,
    "routing": routing,
    "open_payload": open_payload,
    "trojan": trojan_,
    "http1_head": http1_head,
    "http1_chunked": http1_chunked,
    "webface": webface,
    "front": front,
    "invite": invite,
    "profiles": profiles,
}
