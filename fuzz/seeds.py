"""The seed corpus: a few valid inputs per target, made by Ladder's own encoders.

A coverage-guided fuzzer mutates what it is given; starting from real
frames, hellos, signed records and requests it reaches the checks behind
the first length field or signature in seconds instead of never.
`python3 fuzz/run.py --seed` writes these under fuzz/corpus/<target>/.
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from targets import ENTRY, HUB_FINGERPRINT, KEY

from ladder.config import InviteLink
from ladder.protocol import control, envelope, hello, ledger, messages, receipts, records, trojan
from ladder.protocol.frames import FrameType, encode, encode_code, encode_window
from ladder.protocol.identity import member_id, public_bytes

_OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
_NOISE = bytes(range(32))


def _body(signed: dict[str, str]) -> bytes:
    """A signed envelope's record body: what the record targets sign themselves."""
    return envelope.unb64(signed["record"])


def _entry(signed: dict[str, str], key: Ed25519PrivateKey = KEY) -> bytes:
    pubkey = envelope.b64(public_bytes(key))
    return ENTRY + json.dumps({"pubkey": pubkey, **signed, "id": member_id(public_bytes(key))}).encode()


def _frames(client_peer: bool) -> list[bytes]:
    """Frames a peer sends: the other side's streams are odd when it is the client."""
    sid = 1 if client_peer else 2
    opened = encode(FrameType.OPEN, sid, encode_window(64, b"hi"))
    data = encode(FrameType.DATA, sid, b"hello") + encode(FrameType.DATA, sid, b"", flags=1)
    link = (encode(FrameType.PING, 0, bytes(8)) + encode(FrameType.CONTROL, 0, b'{"type":"replaced"}')
            + encode(FrameType.GOAWAY, 0, encode_code(0, "bye")))
    ours = 2 if client_peer else 1  # the stream this side opens when the first byte is odd
    answer = (encode(FrameType.ACCEPT, ours, encode_window(32))
              + encode(FrameType.WINDOW, ours, encode_window(9)))
    return [b"\0" + opened + data, b"\x07" + opened + data + link, b"\x01" + answer + data,
            b"\x05" + encode(FrameType.REFUSE, ours, encode_code(17, "no")), b"\x03" + opened
            + encode(FrameType.RESET, sid, encode_code(16, "cancel"))]


def _routes() -> bytes:
    record = envelope.b64(json.dumps({"m": "alice", "h": "hub2", "s": 3, "e": 5000}).encode())
    routes = control.Routes((control.RouteEntry(record, "", "", ("hub2", "hub1")),), ("bob",))
    return control.encode(routes)


def seeds() -> dict[str, list[bytes]]:
    exit_signed = records.sign_exit_record(KEY, "DE", _NOISE, 1_700_000_000, frozenset({"alice"}))
    service_signed = records.sign_service_record(KEY, "blog", "A blog", "words", "http", _NOISE, ["x"],
                                                 1_700_000_000, ("news",), "en")
    member_key = public_bytes(_OTHER)
    other_exit = records.sign_exit_record(_OTHER, "JP", _NOISE, 1_700_000_000)
    announced = records.sign_announcement(KEY, member_id(member_key), member_key, "carol", "berlin", 4,
                                          1_700_003_600, other_exit, [])
    receipt_signed = receipts.sign_receipt(KEY, exit="bob", hub="hub1", channel="ab" * 32, received=1 << 20,
                                           sent=4096, frames=30, seq=1, time=1_700_000_000)
    checkpoint_signed = ledger.sign_checkpoint(KEY, 5, bytes(32), 1_700_000_000)
    entry = ledger.Entry(0, 1_700_000_000, "transfer", member_id(public_bytes(KEY)), "bob", 10, 1_052_672,
                         "ab" * 32, 1, receipt_signed)
    packet = (trojan.encode_packet("1.1.1.1", 53, b"\x12\x34query")
              + trojan.encode_packet("dns.example", 53, b"q"))
    line = trojan.password_hash("secret") + trojan.CRLF
    hellos = [hello.make_hello(KEY, HUB_FINGERPRINT, bytes(32)),
              hello.make_hello(KEY, HUB_FINGERPRINT, bytes(32), token=bytes(16)),
              hello.make_hello(KEY, HUB_FINGERPRINT, bytes(32), command=True),
              hello.make_hello(KEY, HUB_FINGERPRINT, bytes(32), token=bytes(16), peer=True)]
    invite = InviteLink(bytes(range(16)), ("hub.example", 8443), "sha256:" + "ab" * 32, "berlin")
    peer_invite = InviteLink(bytes(16), ("2001:db8::1", 443), "sha256:" + "cd" * 32, "tokyo", "ladder-peer")
    get = b"GET / HTTP/1.1\r\nHost: hub.example\r\nAccept-Language: zh-CN,en;q=0.8\r\n\r\n"
    chunked = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    return {
        "frames": _frames(True)[:2] + [b"\x00" + encode(FrameType.DATA, 7, bytes(300))],
        "mux_client": _frames(False),
        "mux_server": _frames(True),
        "hello": hellos + [h[:40] for h in hellos[:2]],
        "control": [_routes(), control.encode(control.Welcome("hub", "alice", "id1", None, "hubid")),
                    control.encode(control.Share(**exit_signed)),
                    control.encode(control.Publish((control.SignedService(**service_signed),), True)),
                    control.encode(control.Receipts((control.Envelope(**receipt_signed),)))],
        "exit_record": [_body(exit_signed), _entry(exit_signed)],
        "service_record": [_body(service_signed), _entry(service_signed)],
        "announcement": [_body(announced), ENTRY + json.dumps(announced).encode()],
        "receipt": [_body(receipt_signed), ENTRY + json.dumps(receipt_signed).encode()],
        "ledger_entry": [entry.data()],
        "checkpoint": [_body(checkpoint_signed), ENTRY + json.dumps(checkpoint_signed).encode()],
        "routing": [b"u1\nr1" + _routes() + b"\nu2\nf1alice\nx2\nd1",
                    b"u3\noalice\nu1\nwalice\nr3" + _routes()],
        "open_payload": [messages.encode_route("alice", b"inner"),
                         messages.encode_peer_route(16, "alice", "bob", b"inner"),
                         messages.encode_target("example.com", 443), messages.encode_target("::1", 80),
                         messages.encode_service_request("blog", bytes(96)),
                         bytes([messages.UDP_REQUEST, 0]) + packet],
        "trojan": [line + trojan.request(trojan.CONNECT, "example.com", 443) + b"GET /",
                   line + trojan.request(trojan.UDP_ASSOCIATE, "0.0.0.0", 0) + b"\x00" + packet,
                   line[:30]],
        "http1_head": [b"\x00" + get, b"\x05" + chunked,
                       b"\x00GET /x HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"],
        "http1_chunked": [b"\x00" + chunked.split(b"\r\n\r\n", 1)[1],
                          b"\x03a;ext=1\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"],
        "webface": [b"\x00" + get + get, b"\x01" + get, b"\x02" + chunked,
                    b"\x04GET /index.html HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\n"
                    b"If-None-Match: \"x\"\r\n\r\n",
                    b"\x00GET /\r\n"],
        "front": [b"\x00\x00\x05\x01\x00\x05\x01\x00\x03\x0bexample.com\x01\xbbGET /",
                  b"\x01\x00\x05\x01\x02\x01\x04user\x06secret\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
                  b"\x00\x00\x04\x01\x00\x50\x00\x00\x00\x01me\x00example.com\x00",
                  b"\x02\x00CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                  b"\x00\x00GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n"
                  b"GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
                  b"\x01\x00GET /proxy.pac HTTP/1.1\r\n\r\n",
                  b"\x04\x05GET http://a.example/ HTTP/1.1\r\n\r\nGET http://b.example/ HTTP/1.1\r\n\r\n",
                  b"\x03\x00CONNECT h:1 HTTP/1.1\r\nProxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n\r\n"],
        "invite": [str(invite).encode(), str(peer_invite).encode(), b"[::1]:8443", b"12h", b"20M",
                   b"user:pw"],
        "profiles": [b"/s/tok?format=clash\ndomain example.cn -> direct\nip-cidr 10.0.0.0/8 -> block\n"
                     b"default -> exit\n\npass word\nalice/phone \xc2\xb7 hub\n2001:db8::1",
                     b"/s/tok?format=sing-box\ndefault -> exit:DE\n\npw\nlabel\nhub.example",
                     b"/s/tok\n\n\np@ss#?\nl/a\nhost"],
    }
