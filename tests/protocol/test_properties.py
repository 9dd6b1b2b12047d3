"""Properties of the codecs a stranger, a member or a peer hub feeds, that the other test files leave out.

For each: what was encoded decodes back to itself (Trojan requests and UDP
packets, exit and service records, receipts, checkpoints, ledger entries,
peer routes and service requests, invite and share links), and arbitrary
input raises nothing but the parser's own error, here for the signed
records with bodies signed by a real key, so that the checks behind the
signature see every JSON value (1e999 once escaped them as OverflowError).
The router gets random sequences of peer events and routes, and must keep
its own invariants after each. Modest example counts: the whole file runs
in seconds; fuzz/run.py is where the millions go.
"""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladder.config import InviteLink
from ladder.hub.profiles import DeviceProfile, share_link
from ladder.protocol import control, envelope, ledger, messages, receipts, records, trojan
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.routing import Announcement, Router

settings.register_profile("properties", max_examples=80, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROPERTIES = settings.get_profile("properties")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY_ID = member_id(public_bytes(KEY))

names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60)
ports = st.integers(1, 65535)
host_names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){0,3}", fullmatch=True)
hosts = st.one_of(st.ip_addresses().map(str), host_names)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
counters = st.integers(0, 2**62)


# ------------------------------------------------------------------ Trojan


@PROPERTIES
@given(st.sampled_from([trojan.CONNECT, trojan.UDP_ASSOCIATE]), hosts, ports, st.binary(max_size=40))
def test_a_trojan_request_parses_back_with_its_size(command, host, port, after):
    raw = trojan.request(command, host, port)
    assert trojan.parse_request(raw + after) == (trojan.Request(command, host, port), len(raw))
    assert all(trojan.parse_request(raw[:end]) is None for end in range(len(raw)))


@PROPERTIES
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_the_password_line_raise_only_bad_request(data):
    try:
        trojan.parse_request(data)
    except RemoteProtocolError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST


@PROPERTIES
@given(st.lists(st.tuples(hosts, st.integers(0, 65535), st.binary(max_size=300)), max_size=6), st.data())
def test_trojan_packets_cut_anywhere_decode_as_they_were_encoded(packets, data):
    stream = b"".join(trojan.encode_packet(*p) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder, got = trojan.PacketDecoder(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += decoder.feed(stream[start:end])
    assert got == [trojan.Packet(*p) for p in packets]


@PROPERTIES
@given(st.lists(st.binary(max_size=100), max_size=6))
def test_arbitrary_udp_streams_raise_only_bad_request(chunks):
    decoder = trojan.PacketDecoder()
    try:
        for chunk in chunks:
            assert all(isinstance(p, trojan.Packet) for p in decoder.feed(chunk))
    except RemoteProtocolError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST


# ------------------------------------------------------------------ OPEN payloads


member_ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=255)


@PROPERTIES
@given(st.integers(0, 255), member_ids, member_ids, st.binary(max_size=100))
def test_a_peer_route_decodes_to_its_hops_destination_opener_and_inner(hops, destination, source, inner):
    payload = messages.encode_peer_route(hops, destination, source, inner)
    assert messages.decode_peer_route(payload) == (min(hops, 16), destination, source, inner)


@PROPERTIES
@given(st.text(st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=255),
       st.binary(min_size=96, max_size=96))
def test_a_service_request_decodes_to_its_name_and_proof(name, proof):
    payload = messages.encode_service_request(name, proof)
    assert messages.is_service_request(payload)
    assert messages.decode_service_request(payload) == (name, proof)


@PROPERTIES
@given(hosts, ports, st.binary(max_size=20))
def test_an_address_read_a_byte_at_a_time_waits_then_reads_as_whole(host, port, after):
    raw = messages.encode_target(host, port)
    assert all(messages.read_address(raw[:end]) is None for end in range(len(raw)))
    assert messages.read_address(raw + after) == (*messages.decode_target(raw), len(raw))


# ------------------------------------------------------------------ signed records


def _signed(context: bytes, body: bytes, with_pubkey: bool = True) -> dict[str, str]:
    """An entry whose record is `body`, signed by KEY as the member it names."""
    entry = {"record": envelope.b64(body), "signature": envelope.b64(KEY.sign(context + body)), "id": KEY_ID}
    if with_pubkey:
        entry["pubkey"] = envelope.b64(public_bytes(KEY))
    return entry


def _bodies(required: dict[str, st.SearchStrategy]) -> st.SearchStrategy[bytes]:
    """Record bodies that name KEY's member and hold any JSON in the fields, often of the right kind."""
    fields = st.fixed_dictionaries({"id": st.just(KEY_ID)},
                                   optional={k: v | json_values for k, v in required.items()})
    return fields.map(lambda f: json.dumps(f).encode())


noise_keys = st.binary(min_size=32, max_size=32).map(envelope.b64)
huge = st.sampled_from([b"1e999", b"-1e999", b"NaN", b"1" * 5000])


@PROPERTIES
@given(st.sampled_from(["DE", "JP", ""]), st.binary(min_size=32, max_size=32), counters,
       st.none() | st.frozensets(names, max_size=5))
def test_an_exit_record_verifies_as_it_was_signed(country, noise_key, issued, members):
    entry = {**records.sign_exit_record(KEY, country, noise_key, issued, members), "id": KEY_ID}
    expected = records.ExitRecord(KEY_ID, country, noise_key, issued, members)
    assert records.verify_exit_record(entry) == expected


def _refused_cleanly(verify, entry, error=envelope.RecordError) -> None:
    try:
        verify(entry)
    except error:
        pass


@PROPERTIES
@given(_bodies({"country": names, "noise_key": noise_keys, "issued": counters, "members": st.lists(names)}))
def test_any_signed_exit_record_body_verifies_or_raises_record_error(body):
    _refused_cleanly(records.verify_exit_record, _signed(b"ladder exit record v1\x00", body))


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"NaN"])
@pytest.mark.parametrize("kind, body", [
    ("exit", b'{"country":"DE","noise_key":"%s","issued":%%s,"id":"%s"}'),
    ("service", b'{"name":"blog","title":"t","description":"d","kind":"http","noise_key":"%s","access":[],'
                b'"issued":%%s,"id":"%s"}'),
])
def test_a_number_no_integer_holds_is_a_malformed_record(kind, body, number):
    raw = body % (envelope.b64(bytes(32)).encode(), KEY_ID.encode()) % number
    verify, context = ((records.verify_exit_record, b"ladder exit record v1\x00") if kind == "exit"
                       else (records.verify_service_record, b"ladder service record v1\x00"))
    with pytest.raises(envelope.RecordError, match="malformed"):
        verify(_signed(context, raw))


@PROPERTIES
@given(st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True), st.text(max_size=100), st.text(max_size=500),
       st.sampled_from(records.SERVICE_KINDS), st.binary(min_size=32, max_size=32),
       st.lists(names, max_size=5, unique=True), counters,
       st.lists(st.text(min_size=1, max_size=40), max_size=16), st.text(max_size=16), st.booleans())
def test_a_service_record_verifies_as_it_was_signed(name, title, description, kind, noise_key, access, issued,
                                                    keywords, lang, index):
    signed = records.sign_service_record(KEY, name, title, description, kind, noise_key, access, issued,
                                         tuple(keywords), lang, index)
    pubkey = envelope.b64(public_bytes(KEY))
    record = records.verify_service_record({**signed, "id": KEY_ID, "pubkey": pubkey})
    assert (record.name, record.title, record.description, record.kind, record.noise_key) == (
        name, title, description, kind, noise_key)
    assert (sorted(record.access), record.issued, record.keywords, record.lang, record.index) == (
        sorted(access), issued, tuple(keywords), lang, index)


@PROPERTIES
@given(_bodies({"name": names, "title": st.text(), "description": st.text(), "kind": st.just("http"),
                "noise_key": noise_keys, "access": st.lists(names), "issued": counters,
                "keywords": st.lists(st.text()), "lang": st.text(), "index": st.booleans()}))
def test_any_signed_service_record_body_verifies_or_raises_record_error(body):
    _refused_cleanly(records.verify_service_record, _signed(b"ladder service record v1\x00", body))


@PROPERTIES
@given(_bodies({"member": names, "key": noise_keys, "name": names, "hub": names, "seq": counters,
                "expires": counters | huge.map(float), "exit": st.none(), "services": st.lists(json_values)}))
def test_any_signed_announcement_body_verifies_or_raises_record_error(body):
    _refused_cleanly(records.verify_announcement, _signed(b"ladder hub announcement v1\x00", body))


@PROPERTIES
@given(_bodies({"member": names, "key": noise_keys, "name": names, "hub": names, "seq": counters,
                "expires": counters, "exit": st.none(), "services": st.lists(json_values)}) | st.binary())
def test_the_member_an_announcement_claims_unchecked_is_none_or_the_one_it_verifies_as(body):
    """The router refuses a full peer's new destinations by this claim alone (routing.py, "full")."""
    entry = _signed(b"ladder hub announcement v1\x00", body)
    claimed = records.announced_member(entry)
    assert claimed is None or isinstance(claimed, str)
    try:
        verified = records.verify_announcement(entry)
    except envelope.RecordError:
        return
    assert claimed == verified.member


@PROPERTIES
@given(names, counters)
def test_a_signed_announcement_claims_the_member_it_verifies_as(name, seq):
    member = Ed25519PrivateKey.generate()
    exit_ = records.sign_exit_record(member, "ZZ", bytes(32), 1)
    signed = records.sign_announcement(KEY, member_id(public_bytes(member)), public_bytes(member), name, "h",
                                       seq, 2**31, exit_, [])
    assert records.announced_member(signed) == records.verify_announcement(signed).member


# ------------------------------------------------------------------ receipts, checkpoints, ledger entries


@PROPERTIES
@given(names, st.text(max_size=255), names, *[st.integers(0, 2**53 - 1)] * 3, st.integers(1, 2**53 - 1),
       st.integers(0, 2**53 - 1))
def test_a_receipt_verifies_to_the_counters_its_payer_signed(exit, hub, channel, received, sent, frames, seq,
                                                           time):
    signed = receipts.sign_receipt(KEY, exit=exit, hub=hub, channel=channel, received=received, sent=sent,
                                   frames=frames, seq=seq, time=time)
    assert receipts.verify_receipt(signed) == receipts.Receipt(KEY_ID, exit, hub, channel, received, sent,
                                                               frames, seq, time, signed)


@PROPERTIES
@given(_bodies(dict.fromkeys(("received", "sent", "frames", "seq", "time"), counters)
               | {"exit": names, "hub": st.text(), "channel": names}))
def test_any_signed_receipt_body_verifies_or_is_refused(body):
    entry = _signed(b"ladder receipt v1\x00", body)
    _refused_cleanly(receipts.verify_receipt, entry, receipts.ReceiptRefused)


@PROPERTIES
@given(counters, st.binary(min_size=32, max_size=32), counters)
def test_a_checkpoint_verifies_to_the_size_root_and_time_signed(size, root, time):
    found = ledger.verify_checkpoint(ledger.sign_checkpoint(KEY, size, root, time))
    assert (found.hub, found.size, found.root, found.time) == (KEY_ID, size, root, time)


@PROPERTIES
@given(_bodies({"size": counters, "root": st.binary(max_size=40).map(bytes.hex), "time": counters}))
def test_any_signed_checkpoint_body_verifies_or_raises_record_error(body):
    _refused_cleanly(ledger.verify_checkpoint, _signed(b"ladder checkpoint v1\x00", body))


ledger_entries = st.builds(ledger.Entry, counters, counters, st.sampled_from(ledger.KINDS), names, names,
                           counters, counters, names, counters,
                           st.dictionaries(st.sampled_from(["record", "signature", "pubkey"]), st.text()))


@PROPERTIES
@given(ledger_entries)
def test_a_ledger_entry_reads_back_from_its_leaf_data(entry):
    assert ledger.Entry.from_data(entry.data()) == entry


@PROPERTIES
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_leaf_data_is_an_entry_or_a_value_error(data):
    try:
        entry = ledger.Entry.from_data(data)
    except ValueError:
        return
    assert ledger.Entry.from_data(entry.data()) == entry


# ------------------------------------------------------------------ routing between hubs


def _verify(entry: control.RouteEntry) -> Announcement:
    """A verifier without signatures: the record is [member, home, seq] (the router's logic is under test)."""
    try:
        member, home, seq = json.loads(entry.record)
        return Announcement(str(member), str(home), int(seq), 10_000.0)
    except (ValueError, TypeError):
        raise envelope.RecordError("malformed") from None


hub_ids = st.sampled_from(["h0", "h1", "h2", "h3"])
route_entries = st.builds(
    lambda member, home, seq, path: control.RouteEntry(json.dumps([member, home, seq]), "", "", tuple(path)),
    st.sampled_from(["alice", "bob"]), hub_ids, st.integers(0, 3), st.lists(hub_ids, min_size=1, max_size=5))
events = st.one_of(
    st.tuples(st.just("up"), hub_ids.filter(lambda h: h != "h0")),
    st.tuples(st.just("down"), hub_ids.filter(lambda h: h != "h0")),
    st.tuples(st.just("routes"), hub_ids.filter(lambda h: h != "h0"), st.lists(route_entries, max_size=3),
              st.lists(st.sampled_from(["alice", "bob", "carol"]), max_size=2)),
    st.tuples(st.just("failed"), st.sampled_from(["alice", "bob"]), hub_ids),
    st.tuples(st.just("originate"), st.sampled_from(["alice", "bob"]), st.integers(0, 3)),
    st.tuples(st.just("withdraw"), st.sampled_from(["alice", "bob"])),
)


@PROPERTIES
@given(st.lists(events, max_size=30))
def test_the_router_keeps_its_invariants_under_any_sequence_of_peer_events(sequence):
    router, up, told = Router("h0", _verify, hop_limit=3), set(), {}
    for now, event in enumerate(sequence, 1):
        kind = event[0]
        if kind == "up":
            router.peer_up(event[1], now)
            up.add(event[1])
            told[event[1]] = {}
        elif kind == "down":
            router.peer_down(event[1], now)
            up.discard(event[1])
        elif kind == "routes" and event[1] in up:
            router.receive(event[1], control.Routes(tuple(event[2]), tuple(event[3])), now)
        elif kind == "failed":
            router.failed(event[1], event[2], now)
        elif kind == "originate":
            record = json.dumps([event[1], "h0", event[2] + now * 10])
            router.originate(control.RouteEntry(record, "", "", ("h0",)), now)
        elif kind == "withdraw":
            router.withdraw(event[1])
        for peer, message in router.take_messages():
            assert peer in up, "a message for a peer that is down"
            for entry in message.routes:
                assert entry.path[-1] == "h0" and peer not in entry.path, "split horizon or our id missing"
                told[peer][_verify(entry).member] = entry
            for member in message.withdrawn:
                assert told[peer].pop(member, None) is not None, "a withdrawal of what it was never told"
        router.take_changes()
        for member in router.destinations():
            for route in router.routes(member, now):
                assert "h0" not in route.entry.path or route.via is None, "a route back through ourselves"
                assert len(route.entry.path) <= router.hop_limit
                assert route.via is None or route.via in up, "a route through a peer that is down"


# ------------------------------------------------------------------ links people paste


@PROPERTIES
@given(st.binary(min_size=16, max_size=16), hosts, ports,
       st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=80),
       st.text(max_size=40), st.sampled_from(["ladder", "ladder-peer"]))
def test_an_invite_link_parses_back_to_what_it_says(token, host, port, fingerprint, hub, scheme):
    link = InviteLink(token, (host, port), fingerprint, hub, scheme)
    parsed = InviteLink.parse(str(link), scheme)
    assert (parsed.token, parsed.address, parsed.scheme) == (token, (host.lower(), port), scheme)
    assert (parsed.fingerprint, parsed.hub_name) == (fingerprint, hub or "hub")


@PROPERTIES
@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60), hosts, ports)
def test_a_share_link_reads_back_as_the_apps_read_it(password, label, host, port):
    link = urlsplit(share_link(DeviceProfile(label, password, host, port, None, None, None)))
    assert link.scheme == "trojan" and link.port == port and link.hostname == host.lower()
    assert (unquote(link.username or ""), unquote(link.fragment)) == (password, label)
