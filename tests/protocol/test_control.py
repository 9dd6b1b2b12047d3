"""Control messages: each round-trips, encodes to the bytes of the dicts the modules built before they
sent these classes, refuses each malformed field naming it, and arbitrary input raises nothing but
RemoteProtocolError."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol import control
from ladder.protocol.control import (
    MAX_CONTROL,
    NAME_MAX,
    TEXT_MAX,
    TYPE_MAX,
    DeviceAdd,
    DeviceAdded,
    DeviceEntry,
    DeviceList,
    DeviceRemove,
    Devices,
    Directory,
    Done,
    ExitEntry,
    Joined,
    JoinRefused,
    ListAssembler,
    MemberJoined,
    MemberName,
    Members,
    Publish,
    Replaced,
    ServiceEntry,
    Services,
    Share,
    ShareStatus,
    SignedService,
    Unknown,
    Welcome,
    decode,
    encode,
    split_list_message,
)
from ladder.protocol.envelope import b64
from ladder.protocol.errors import RemoteProtocolError
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.noise import generate_keypair
from ladder.protocol.records import sign_exit_record, sign_service_record

KEY = Ed25519PrivateKey.generate()
ID = member_id(public_bytes(KEY))
PUBKEY = b64(public_bytes(KEY))
NOISE = generate_keypair()[1]
EXIT = sign_exit_record(KEY, "DE", NOISE, 1700000000)  # record, signature, pubkey
# record, signature:
SERVICE = sign_service_record(KEY, "blog", "Ryan's photos", "", "http", NOISE, [], 1700000000)
ENVELOPE = control.Envelope(EXIT["record"], EXIT["signature"], EXIT["pubkey"])

SAMPLES = [
    Welcome("tokyo", "alice", ID, "203.0.113.7"),
    Welcome("tokyo", "alice", ID, None),
    Joined("tokyo", "alice", ID),
    JoinRefused("this invite has expired"),
    Share(EXIT["record"], EXIT["signature"], EXIT["pubkey"]),
    ShareStatus(False, "the exit reached its daily cap"),
    ShareStatus(True, ""),
    Directory((ExitEntry(ID, "bob", "DE", 3, EXIT["record"], EXIT["signature"], PUBKEY),)),
    Directory(()),
    Replaced(),
    Publish((SignedService(SERVICE["record"], SERVICE["signature"]),), more=True),
    Services((ServiceEntry(ID, SERVICE["record"], SERVICE["signature"], PUBKEY, "ryan", True),)),
    Members((MemberName(ID, "alice"), MemberName("b" * 24, "bob"))),
    MemberJoined(ID, "carol"),
    DeviceAdd("phone", "US", "inside-cn", 5_000_000, 2 * 2**30, 1_800_000_000),
    DeviceAdd("tv"),
    DeviceRemove("phone"),
    DeviceList(),
    DeviceAdded("phone", "trojan://p@hub:443?sni=hub#alice%2Fphone", "https://hub/s/x", "pin the cert"),
    Devices((DeviceEntry("phone", True, 1234, 1_700_000_000, 0),)),
    Done(False, "no such device"),
    Unknown("hello"),
]
# Credits' messages: amounts that may be negative, envelopes and Merkle proofs, checked by their own specs.
CREDIT_SAMPLES = [
    control.Receipt(EXIT["record"], EXIT["signature"], EXIT["pubkey"]),
    control.Receipts((ENVELOPE,), hub=ID),
    control.Settled((control.SettledEntry(EXIT["record"], EXIT["signature"], EXIT["pubkey"], 4096),)),
    control.Standing(2_000_000_000, (control.StandingEntry(ID, -5),)),
    control.Balance(-5, 10, 15, 10, 15, 0),
    control.CreditsRequest(since=3, at=7, start=16),
    control.Credits(1, 2, 1, 2, 1, 0, ENVELOPE, ("ab" * 32,), 1, 0,
                    (control.LedgerItem(0, "{}", ("cd" * 32,)),)),
    control.LedgerSeen(12),
    control.LedgerHead(ENVELOPE, 12, ("ef" * 32, "01" * 32)),
    control.SearchRequest("搜索 engine", 20, 7),
    control.SearchResults((control.SearchHit("http://blog.ryan.ladder/a", "A <b>", "some words", (0, 4),
                                             1_000_000, "tokyo", True, "blog.ryan.ladder"),), 7, ("osaka",)),
]
KNOWN_TYPES = sorted({m.TYPE for m in SAMPLES + CREDIT_SAMPLES if not isinstance(m, Unknown)})


def wire(message: dict) -> bytes:
    """The bytes of a message written as a dict: compact JSON, keys in the dict's order."""
    return json.dumps(message, separators=(",", ":")).encode()


@pytest.mark.parametrize("message", SAMPLES + CREDIT_SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message):
    assert decode(encode(message)) == message


def _valid(cls):
    """Any valid message or item of `cls`, from its fields' declared types."""
    kinds = {"str": st.text(max_size=NAME_MAX), "int": st.integers(0, 2**32 - 1), "bool": st.booleans(),
             "str | None": st.none() | st.text(max_size=NAME_MAX)}
    fields = {}
    for f in dataclasses.fields(cls):
        if f.type == "tuple[str, ...]":  # a Merkle proof's hashes (which are names too)
            hashes = st.binary(min_size=32, max_size=32).map(bytes.hex)
            fields[f.name] = st.lists(hashes, max_size=3).map(tuple)
        elif f.type == "tuple[int, ...]":
            fields[f.name] = st.lists(kinds["int"], max_size=4).map(tuple)
        elif f.type == "Envelope":
            fields[f.name] = _valid(control.Envelope)
        elif f.type.startswith("tuple["):
            item = getattr(control, f.type.removeprefix("tuple[").split(",")[0])
            fields[f.name] = st.lists(_valid(item), max_size=3).map(tuple)
        else:
            fields[f.name] = st.text(min_size=1, max_size=NAME_MAX) if f.name == "id" else kinds[f.type]
    return st.builds(cls, **fields)


_unknown = st.builds(Unknown, st.text(max_size=TYPE_MAX).filter(lambda t: t not in KNOWN_TYPES))


@given(st.one_of([_valid(type(m)) for m in SAMPLES + CREDIT_SAMPLES if not isinstance(m, Unknown)]
                 + [_unknown]))
def test_any_valid_message_round_trips(message):
    assert decode(encode(message)) == message


# ------------------------------------------------ the bytes on the wire stay
#
# Each dict below is built the way the module named beside it built it
# before it sent these classes; the typed message must put the same bytes
# on the wire.

def _sent_today():
    session_record = {"record": EXIT["record"], "signature": EXIT["signature"],  # hub.Session
                      "pubkey": PUBKEY}
    service_entry = {"id": ID, "record": SERVICE["record"], "signature": SERVICE["signature"],
                     "pubkey": PUBKEY}
    return [
        ({"type": "welcome", "hub": "tokyo", "member": "alice", "id": ID,  # hub.admit
          "address": "203.0.113.7", "hub_id": "",  # the hub's id (receipts): a field older agents ignore
          "oldest": 1, "protocol": 1, "release": "0.2.0"},  # what it speaks (0.2.0): ignored by 0.1.0
         Welcome("tokyo", "alice", ID, "203.0.113.7", "", 1, 1, "0.2.0")),
        ({"type": "welcome", "hub": "tokyo", "member": "alice", "id": ID, "address": None, "hub_id": "",
          "oldest": 1, "protocol": 1, "release": ""},
         Welcome("tokyo", "alice", ID, None)),
        ({"type": "joined", "hub": "tokyo", "name": "alice", "id": ID},  # hub._join
         Joined("tokyo", "alice", ID)),
        ({"type": "join-refused", "reason": "this invite has expired"},
         JoinRefused("this invite has expired")),
        ({"type": "replaced"}, Replaced()),
        ({"type": "directory",
          "exits": [{"id": ID, "name": "bob", "country": "DE", "users": 3, **session_record,
                     "hub": "", "hops": 0}]},  # where it is (peer hubs): fields older agents ignore
         Directory((ExitEntry(ID, "bob", "DE", 3, EXIT["record"], EXIT["signature"], PUBKEY),))),
        ({"type": "share", **EXIT},  # agent.run_link
         Share(EXIT["record"], EXIT["signature"], EXIT["pubkey"])),
        ({"type": "share-status", "accepting": False,  # agent ticker
          "reason": "the exit reached its daily cap"},
         ShareStatus(False, "the exit reached its daily cap")),
        ({"type": "share-status", "accepting": True, "reason": ""}, ShareStatus(True, "")),
        ({"type": "publish", "services": [SERVICE], "more": False},  # agent/services.announce
         Publish((SignedService(SERVICE["record"], SERVICE["signature"]),))),
        ({"type": "services", "services": [{**service_entry, "name": "ryan", "online": True, "hub": "",
                                            "hops": 0}],
          "more": False},  # hub/services.services_messages
         Services((ServiceEntry(ID, SERVICE["record"], SERVICE["signature"], PUBKEY, "ryan", True),))),
        ({"type": "members", "members": [{"id": ID, "name": "alice"}], "more": False},  # .members_messages
         Members((MemberName(ID, "alice"),))),
        ({"type": "member", "id": ID, "name": "carol"},  # hub/services.members_changed
         MemberJoined(ID, "carol")),
    ]


@pytest.mark.parametrize("today,typed", _sent_today(), ids=lambda m: m["type"] if isinstance(m, dict) else "")
def test_typed_messages_put_the_same_bytes_on_the_wire(today, typed):
    assert encode(typed) == wire(today)
    assert decode(wire(today)) == typed


def test_a_welcome_from_the_first_release_speaks_protocol_1():
    first = decode(wire({"type": "welcome", "hub": "tokyo", "member": "alice", "id": ID, "address": None}))
    assert (first.oldest, first.protocol, first.release) == (1, 1, "")
    assert decode(wire({"type": "peer-welcome", "hub": "b", "id": ID})).protocol == 1


def test_control_is_compact_json_with_the_type_first():
    assert wire({"type": "hello", "n": 1}) == b'{"type":"hello","n":1}'
    assert encode(MemberJoined("i", "n")) == b'{"type":"member","id":"i","name":"n"}'


# ------------------------------------------------------ refusing bad fields

def _good(message) -> dict:
    return json.loads(encode(message))


# Where each field lives in a sample's JSON, and the bad values it must refuse.
_BAD_TEXT = [5, None, ["x"], {"x": 1}, True]
_BAD_COUNT = [True, False, -1, 1.5, "3", None, 2**32]
_BAD_FLAG = [1, 0, "true", None]
_BAD_LIST = ["x", {"x": 1}, None, 5]
_LIMITS = {"id": NAME_MAX, "name": NAME_MAX, "country": NAME_MAX, "hub": NAME_MAX, "member": NAME_MAX,
           "address": NAME_MAX, "reason": TEXT_MAX}  # signed records are bounded by the message


def _bad_fields():
    """(sample JSON, path of the field, a bad value, what the error must name) for every field."""
    for message in SAMPLES:
        if isinstance(message, Unknown):
            continue
        doc = _good(message)
        for f in dataclasses.fields(message):
            value = getattr(message, f.name)
            where = f"{message.TYPE}.{f.name}"
            path = (f.name,)
            if isinstance(value, tuple):
                for bad in _BAD_LIST + [[5]]:
                    yield doc, path, bad, where
                if value:  # the fields of its first item
                    for g in dataclasses.fields(value[0]):
                        for bad in _bad_values(g.name, getattr(value[0], g.name)):
                            yield doc, (f.name, 0, g.name), bad, f"{where}[0].{g.name}"
                continue
            for bad in _bad_values(f.name, value):
                yield doc, path, bad, where


def _bad_values(name, value):
    if isinstance(value, bool):
        return _BAD_FLAG
    if isinstance(value, int):
        return _BAD_COUNT
    bad = [v for v in _BAD_TEXT if v is not None or name != "address"]  # a welcome's address may be null
    if name in _LIMITS:
        bad.append("x" * (_LIMITS[name] + 1))
    if name == "id":
        bad.append("")
    return bad


def _replace(doc, path, value):
    doc = json.loads(json.dumps(doc))
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize("doc,path,bad,where", [pytest.param(*case, id=f"{case[3]}={case[2]!r:.20}")
                                                 for case in _bad_fields()])
def test_each_malformed_field_is_refused_naming_it(doc, path, bad, where):
    with pytest.raises(RemoteProtocolError, match="malformed control message: " + where.replace("[", r"\[")):
        decode(wire(_replace(doc, path, bad)))


@pytest.mark.parametrize("message", [m for m in SAMPLES if not isinstance(m, Unknown)], ids=lambda m: m.TYPE)
def test_each_missing_field_is_refused_naming_it(message):
    for f in dataclasses.fields(message):
        if f.default is not dataclasses.MISSING:
            continue
        doc = _good(message)
        del doc[f.name]
        missing = f"malformed control message: {message.TYPE} has no '{f.name}'"
        with pytest.raises(RemoteProtocolError, match=missing):
            decode(wire(doc))


def test_an_item_that_is_no_object_is_refused():
    with pytest.raises(RemoteProtocolError, match=r"members\.members\[1\] is not an object"):
        decode(b'{"type":"members","members":[{"id":"a","name":"b"},"c"],"more":false}')


def test_more_may_be_absent_and_means_last_piece():
    assert decode(b'{"type":"members","members":[]}') == Members(())


def test_unknown_types_and_fields_are_left_for_a_newer_peer():
    assert decode(b'{"type":"hub-record","n":1}') == Unknown("hub-record")
    assert decode(b'{"type":"replaced","why":"x"}') == Replaced()
    assert decode(b'{"type":"' + b"t" * TYPE_MAX + b'"}') == Unknown("t" * TYPE_MAX)
    with pytest.raises(RemoteProtocolError, match="type is longer"):
        decode(b'{"type":"' + b"t" * (TYPE_MAX + 1) + b'"}')


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",  # not UTF-8
        b"[1, 2]",
        b'"type"',
        b"null",
        b"{}",
        b'{"kind": "x"}',
        b'{"type": 1}',
        b'{"type": null}',
        b'{"type": ["x"]}',
        b'{"type": "x"',  # truncated
    ],
)
def test_invalid_control_messages_are_remote_errors(payload):
    with pytest.raises(RemoteProtocolError):
        control._json_object(payload)  # the JSON gate `decode` starts with
    with pytest.raises(RemoteProtocolError):
        decode(payload)


def test_control_size_limit():
    filler = MAX_CONTROL - len(b'{"type":"x","pad":""}')
    exact = b'{"type":"x","pad":"' + b"p" * filler + b'"}'
    assert len(exact) == MAX_CONTROL
    assert control._json_object(exact)["type"] == "x" and decode(exact) == Unknown("x")
    with pytest.raises(RemoteProtocolError, match="too large"):
        decode(b'{"type":"x","pad":"' + b"p" * (filler + 1) + b'"}')


@pytest.mark.parametrize(
    "payload",
    [b"[" * 50_000, b'{"type":"x","a":' + b"[" * 10_000 + b"]" * 10_000 + b"}"],
    ids=["bare-arrays", "inside-a-message"],
)
def test_deeply_nested_control_is_a_remote_error(payload):
    assert len(payload) <= MAX_CONTROL
    with pytest.raises(RemoteProtocolError):
        decode(payload)


# ------------------------------------------------------------- properties

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_known_types = st.sampled_from(KNOWN_TYPES)
_field_names = st.sampled_from(sorted({f.name for m in SAMPLES for f in dataclasses.fields(m)}
                                      | {f.name for f in dataclasses.fields(ExitEntry)}
                                      | {f.name for f in dataclasses.fields(ServiceEntry)}))


@given(st.dictionaries(st.text(max_size=10), _json_values, max_size=5), st.text(max_size=20))
def test_dicts_round_trip_through_the_json_gate(fields, type_):
    message = {**fields, "type": type_}
    assert control._json_object(wire(message)) == message


@given(st.binary(max_size=500))
def test_arbitrary_bytes_raise_only_remote_protocol_error(data):
    try:
        decode(data)
    except RemoteProtocolError:
        pass


@given(st.text(alphabet='{}[]":,0123456789 type\\', max_size=200))
def test_json_like_text_raises_only_remote_protocol_error(text):
    try:
        decode(text.encode())
    except RemoteProtocolError:
        pass


@given(_known_types, st.dictionaries(_field_names, _json_values | st.lists(
    st.dictionaries(_field_names, _json_values, max_size=8), max_size=3), max_size=8))
def test_arbitrary_fields_of_known_types_raise_only_remote_protocol_error(type_, fields):
    try:
        message = decode(wire({"type": type_, **fields}))
    except RemoteProtocolError:
        pass
    else:  # what passes the checks round-trips
        assert decode(encode(message)) == message


# ---------------------------------------------------------------- lists

ITEMS = [MemberName(f"{i:024d}", "x" * 40) for i in range(5000)]


def test_long_lists_split_into_messages_that_fit_and_reassemble():
    messages = split_list_message(Members(()), "members", ITEMS)
    assert len(messages) > 1 and all(len(encode(m)) <= MAX_CONTROL for m in messages)
    assert [m.more for m in messages] == [True] * (len(messages) - 1) + [False]
    assembler = ListAssembler("members")
    results = [assembler.add(decode(encode(m))) for m in messages]
    assert results[:-1] == [None] * (len(messages) - 1) and results[-1] == ITEMS
    assert split_list_message(Services(()), "services", []) == [Services((), more=False)]
    assert split_list_message(Publish(()), "services", []) == [Publish((), more=False)]
    capped = ListAssembler("members", max_items=3)
    a, b, c, d, e = ITEMS[:5]
    assert capped.add(Members((a, b), more=True)) is None
    assert capped.add(Members((c, d, e))) == [a, b, c]
    capped = ListAssembler("services", max_items=1)
    two = Publish((SignedService("a", "b"), SignedService("c", "d")))
    assert capped.add(two) == [SignedService("a", "b")]


def test_split_lists_put_the_bytes_of_the_dict_pieces_on_the_wire():
    def as_dict(members, more):
        return {"type": "members", "members": [{"id": m.id, "name": m.name} for m in members], "more": more}

    pieces = split_list_message(Members(()), "members", ITEMS)
    assert [encode(p) for p in pieces] == [wire(as_dict(p.members, p.more)) for p in pieces]
    # Each as full as the limit allows: cut where the dicts were.
    for piece, following in itertools.pairwise(pieces):
        assert len(wire(as_dict(piece.members + following.members[:1], True))) > MAX_CONTROL - 1000


def test_an_item_too_large_for_any_message_is_left_out():
    huge = MemberName("h" * 24, "x" * MAX_CONTROL)
    pieces = split_list_message(Members(()), "members", [MemberName("a", "b"), huge])
    assert pieces == [Members((MemberName("a", "b"),))]


def test_lists_are_bounded_before_their_items_are_read():
    payload = b'{"type":"members","members":[' + b",".join([b"{}"] * 10_001) + b"]}"
    assert len(payload) <= MAX_CONTROL
    with pytest.raises(RemoteProtocolError, match=r"members\.members has more than 10000 items"):
        decode(payload)
