"""Service records, self-certifying names, proofs of membership and service requests: feed bytes,
check verdicts."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol.channel import Initiator, Responder
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.messages import (
    decode_service_request,
    decode_target,
    encode_service_request,
    is_service_request,
)
from ladder.protocol.noise import generate_keypair
from ladder.protocol.records import (
    RecordError,
    service_address,
    sign_access,
    sign_exit_record,
    sign_service_record,
    valid_service_name,
    verify_access,
    verify_exit_record,
    verify_service_record,
)

KEY = Ed25519PrivateKey.generate()
PUBKEY = public_bytes(KEY)
ID = member_id(PUBKEY)
NOISE = generate_keypair()[1]


def entry(key=KEY, name="blog", access=(), **changes):
    signed = sign_service_record(key, name, "Ryan's photos", "", "http", NOISE, list(access), 7)
    result = {"id": member_id(public_bytes(key)), "pubkey": base64.b64encode(public_bytes(key)).decode(),
              **signed}
    result.update(changes)
    return result


def tampered(field, value):
    good = entry()
    fields = json.loads(base64.b64decode(good["record"]))
    fields[field] = value
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return {**good, "record": base64.b64encode(body).decode()}


def test_signed_record_verifies_and_names_itself():
    record = verify_service_record(entry(access=["bob-id", "alice-id", "bob-id"]))
    assert (record.id, record.name, record.title, record.kind, record.noise_key) == (
        ID, "blog", "Ryan's photos", "http", NOISE)
    assert record.access == ("alice-id", "bob-id")  # sorted, once each
    assert record.admits("alice-id") and record.admits(ID) and not record.admits("mallory-id")
    assert verify_service_record(entry()).admits("anyone")
    assert record.address == service_address(PUBKEY, "blog")


@pytest.mark.parametrize("field,value", [
    ("noise_key", base64.b64encode(generate_keypair()[1]).decode()),  # the hub's own key
    ("access", ["mallory-id"]),  # someone let in
    ("name", "bank"),
    ("title", "Something else"),
])
def test_any_change_by_the_hub_breaks_the_signature(field, value):
    with pytest.raises(RecordError, match="signature does not verify"):
        verify_service_record(tampered(field, value))


def test_record_of_another_key_or_an_exit_record_is_refused():
    other = Ed25519PrivateKey.generate()
    with pytest.raises(RecordError, match="names another member"):
        verify_service_record(entry(other, id=ID))  # a hub's own key, claiming ryan's id
    with pytest.raises(RecordError, match="names another member"):
        verify_service_record({**entry(), "pubkey": base64.b64encode(public_bytes(other)).decode()})
    exit_record = {"id": ID, "pubkey": base64.b64encode(PUBKEY).decode(),
                   **sign_exit_record(KEY, "US", NOISE, 7)}
    with pytest.raises(RecordError):
        verify_service_record(exit_record)


@given(st.dictionaries(st.sampled_from(["id", "record", "signature", "pubkey", "name"]),
                       st.one_of(st.text(max_size=40), st.binary(max_size=40).map(
                           lambda b: base64.b64encode(b).decode()), st.integers(), st.none())))
def test_arbitrary_entries_raise_only_record_error(data):
    with pytest.raises(RecordError):
        verify_service_record(data)


def test_self_certifying_address_depends_on_key_and_name_only():
    address = service_address(PUBKEY, "blog")
    assert address == service_address(PUBKEY, "blog")
    label = address.removesuffix(".ladder")
    assert len(label) == 32 and label.isalnum() and label == label.lower()
    assert service_address(PUBKEY, "blog2") != address
    assert service_address(public_bytes(Ed25519PrivateKey.generate()), "blog") != address


@pytest.mark.parametrize("name,ok", [("blog", True), ("a", True), ("my-site-2", True), ("x" * 32, True),
                                     ("x" * 33, False), ("-blog", False), ("blog-", False), ("Blog", False),
                                     ("bl_og", False), ("bl.og", False), ("", False), ("bløg", False),
                                     (5, False)])
def test_service_names_are_one_dns_label(name, ok):
    assert valid_service_name(name) is ok


def test_proof_of_membership_binds_the_channel_key():
    alice = Ed25519PrivateKey.generate()
    _, alice_noise = generate_keypair()
    proof = sign_access(alice, alice_noise, ID, "blog")
    assert verify_access(proof, alice_noise, ID, "blog") == member_id(public_bytes(alice))
    for args in ((generate_keypair()[1], ID, "blog"), (alice_noise, "other-id", "blog"),
                 (alice_noise, ID, "bank")):
        with pytest.raises(RecordError, match="does not verify"):
            verify_access(proof, *args)
    with pytest.raises(RecordError, match="malformed"):
        verify_access(proof[:-1], alice_noise, ID, "blog")


def test_service_request_rides_in_message_1_and_reaches_the_publisher():
    alice = Ed25519PrivateKey.generate()
    alice_private, alice_public = generate_keypair()
    ryan_private, ryan_public = generate_keypair()
    alice_id = member_id(public_bytes(alice))
    request = encode_service_request("blog", sign_access(alice, alice_public, ID, "blog"))
    message1 = Initiator(alice_private, ryan_public, alice_id, ID).first_message(request)
    assert b"blog" not in message1
    responder = Responder(ryan_private, alice_id, ID)
    got = responder.read_first(message1)
    assert is_service_request(got)
    name, proof = decode_service_request(got)
    assert name == "blog" and verify_access(proof, responder.opener_key, ID, name) == alice_id


def test_service_requests_and_targets_never_pass_for_each_other():
    request = encode_service_request("blog", bytes(96))
    assert is_service_request(request) and decode_service_request(request) == ("blog", bytes(96))
    with pytest.raises(RemoteProtocolError):
        decode_target(request)
    with pytest.raises(ValueError):
        encode_service_request("blog", bytes(95))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_bad_request(data):
    try:
        name, proof = decode_service_request(data)
    except RemoteProtocolError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST
    else:
        assert encode_service_request(name, proof) == data


def test_exit_record_names_the_members_it_serves_and_old_records_serve_everyone():
    pubkey = base64.b64encode(PUBKEY).decode()
    limited = verify_exit_record({"id": ID, "pubkey": pubkey,
                                  **sign_exit_record(KEY, "US", NOISE, 7, frozenset({"alice", "bob"}))})
    assert limited.members == {"alice", "bob"}
    # Names, in any case, as the exit checks them:
    assert limited.admits("Alice") and not limited.admits("carol")
    body = json.dumps({"id": ID, "country": "US", "noise_key": base64.b64encode(NOISE).decode(), "issued": 7},
                      sort_keys=True, separators=(",", ":")).encode()  # as signed before the members field
    old = {"id": ID, "pubkey": pubkey, "record": base64.b64encode(body).decode(),
           "signature": base64.b64encode(KEY.sign(b"ladder exit record v1\x00" + body)).decode()}
    assert verify_exit_record(old).members is None and verify_exit_record(old).admits("carol")
    signed = sign_exit_record(KEY, "US", NOISE, 7, frozenset({"alice"}))
    fields = json.loads(base64.b64decode(signed["record"]))
    fields["members"] = ["alice", "mallory"]  # the hub letting someone in
    forged = {**signed, "id": ID, "pubkey": pubkey,
              "record": base64.b64encode(json.dumps(fields).encode()).decode()}
    with pytest.raises(RecordError, match="signature does not verify"):
        verify_exit_record(forged)


def signed_for_search(**search):
    signed = sign_service_record(KEY, "blog", "Ryan's photos", "", "http", NOISE, [], 7, **search)
    return {"id": ID, "pubkey": base64.b64encode(PUBKEY).decode(), **signed}


def test_what_a_record_says_for_search_is_signed_and_an_old_record_says_index_me():
    record = verify_service_record(signed_for_search(keywords=("film", "照片"), lang="zh-CN", index=False))
    assert (record.keywords, record.lang, record.index) == (("film", "照片"), "zh-CN", False)
    old = verify_service_record(entry())  # signed without them, as Ladder did before search
    assert (old.keywords, old.lang, old.index) == ((), "", True)
    assert "keywords" not in json.loads(base64.b64decode(entry()["record"]))


@pytest.mark.parametrize("search,why", [
    ({"keywords": tuple(f"w{i}" for i in range(17))}, "says too much for search"),
    ({"keywords": ("x" * 41,)}, "says too much for search"),
    ({"lang": "x" * 17}, "says too much for search"),
])
def test_a_record_saying_too_much_for_search_is_refused(search, why):
    with pytest.raises(RecordError, match=why):
        verify_service_record(signed_for_search(**search))


@pytest.mark.parametrize("field,value",
                         [("keywords", "film"), ("keywords", [1]), ("lang", 5), ("index", "no")])
def test_malformed_search_fields_are_refused(field, value):
    good = signed_for_search()
    fields = {**json.loads(base64.b64decode(good["record"])), field: value}
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    resigned = {**good, "record": base64.b64encode(body).decode(),
                "signature": base64.b64encode(KEY.sign(b"ladder service record v1\x00" + body)).decode()}
    with pytest.raises(RecordError, match="malformed service record"):
        verify_service_record(resigned)
