"""The signed envelope: pinned bytes (records signed before the envelope existed verify, and are signed
the same), and every way a relay could change one is refused with RecordError."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ladder.protocol import envelope
from ladder.protocol.envelope import RecordError, b64
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.records import (
    sign_exit_record,
    sign_service_record,
    verify_exit_record,
    verify_service_record,
)

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ladder test member").digest())
ID = member_id(public_bytes(KEY))
PUBKEY = b64(public_bytes(KEY))
NOISE = hashlib.sha256(b"ladder test noise").digest()
CONTEXT = b"ladder test record v1\x00"

# Signed by records.py before the envelope was factored out of it (Ed25519 is
# deterministic): these bytes are in every agent's and hub's memory today.
EXIT_VECTOR = {
    "record": "eyJjb3VudHJ5IjoiREUiLCJpZCI6Ijc3eDdpeWIyaHVtZ3VkeGJyNndzaDVjciIsImlzc3VlZCI6MTcwMDAwMDAwMCwi"
              "bm9pc2Vfa2V5IjoiSzdKM0dlTy9UQktvczdCeXlsTWc3d2NTUlM3VlNKMkZPZUQzMnNDM0FpOD0ifQ==",
    "signature": "Ax+Uc3tmdkyNO0yMAwy2L6mWiohi32a4poMQibjTMISQ6iz2ITkWAo/BeY4mvMaIZudjBFQpB7oEZofNREO9BA==",
    "pubkey": "3zDDjcw1jVbSSmwLoe6qYOvkhlbPxRfiOFP2/hk9lgE=",
}
LIMITED_EXIT_VECTOR = {
    "record": "eyJjb3VudHJ5IjoiREUiLCJpZCI6Ijc3eDdpeWIyaHVtZ3VkeGJyNndzaDVjciIsImlzc3VlZCI6MTcwMDAwMDAwMCwi"
              "bWVtYmVycyI6WyJhbGljZSIsImJvYiJdLCJub2lzZV9rZXkiOiJLN0ozR2VPL1RCS29zN0J5eWxNZzd3Y1NSUzdWU0oy"
              "Rk9lRDMyc0MzQWk4PSJ9",
    "signature": "jMmZ2nFqebP+6fyvzwcxfyxKFv4eBnN+L7zmHiQwsjoDic5m9hoG69hVbimntrcQEOQ2aMKkRWUepHbNtLeDBw==",
    "pubkey": "3zDDjcw1jVbSSmwLoe6qYOvkhlbPxRfiOFP2/hk9lgE=",
}
SERVICE_VECTOR = {
    "record": "eyJhY2Nlc3MiOlsiYSIsImIiXSwiZGVzY3JpcHRpb24iOiJkIiwiaWQiOiI3N3g3aXliMmh1bWd1ZHhicjZ3c2g1Y3Ii"
              "LCJpc3N1ZWQiOjE3MDAwMDAwMDAsImtpbmQiOiJodHRwIiwibmFtZSI6ImJsb2ciLCJub2lzZV9rZXkiOiJLN0ozR2VP"
              "L1RCS29zN0J5eWxNZzd3Y1NSUzdWU0oyRk9lRDMyc0MzQWk4PSIsInRpdGxlIjoiUnlhbidzIHBob3RvcyJ9",
    "signature": "0x3AWOJ/FqKF2oaJaw8vp4LcI7c8Su0lSckps31sGOFUaQ+dS3tbCEqutUH/E7a/PMLtIiTlFOPiOK1OG0UmDQ==",
}


def test_records_are_signed_to_the_same_bytes_as_before():
    assert sign_exit_record(KEY, "DE", NOISE, 1700000000) == EXIT_VECTOR
    assert sign_exit_record(KEY, "DE", NOISE, 1700000000, frozenset({"bob", "alice"})) == LIMITED_EXIT_VECTOR
    assert sign_service_record(KEY, "blog", "Ryan's photos", "d", "http", NOISE, ["b", "a", "b"],
                               1700000000) == SERVICE_VECTOR


def test_records_signed_before_verify():
    exit_ = verify_exit_record({"id": ID, **EXIT_VECTOR})
    assert (exit_.id, exit_.country, exit_.noise_key, exit_.issued, exit_.members) == (ID, "DE", NOISE,
                                                                                       1700000000, None)
    assert verify_exit_record({"id": ID, **LIMITED_EXIT_VECTOR}).members == {"alice", "bob"}
    service = verify_service_record({"id": ID, "pubkey": PUBKEY, **SERVICE_VECTOR})
    assert (service.name, service.access, service.pubkey) == ("blog", ("a", "b"), public_bytes(KEY))


def test_the_body_is_canonical_json_naming_its_signer():
    signed = envelope.sign(CONTEXT, {"b": 1, "a": [2, 3]}, KEY)
    body = base64.b64decode(signed["record"])
    assert body == b'{"a":[2,3],"b":1,"id":"' + ID.encode() + b'"}'
    KEY.public_key().verify(base64.b64decode(signed["signature"]), CONTEXT + body)  # raises if not
    assert envelope.verify(CONTEXT, {"id": ID, "pubkey": PUBKEY, **signed}, "test record") == (
        {"a": [2, 3], "b": 1, "id": ID}, public_bytes(KEY))


def _entry(**changes):
    return {"id": ID, "pubkey": PUBKEY, **envelope.sign(CONTEXT, {"n": 1}, KEY), **changes}


def _rebody(fields):
    return b64(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode())


MALLORY = Ed25519PrivateKey.generate()


@pytest.mark.parametrize("changes,error", [
    ({"record": _rebody({"n": 2, "id": ID})}, "test record's signature does not verify"),
    ({"pubkey": b64(public_bytes(MALLORY))}, "names another member"),  # the relay's key, the member's id
    ({"id": member_id(public_bytes(MALLORY))}, "names another member"),  # relayed under another id
    ({"pubkey": b64(bytes(32))}, "small order"),
    ({"record": "!!"}, "malformed test record"),
    ({"record": b64(b"[1]")}, "malformed test record"),
    ({"signature": 5}, "malformed test record"),
])
def test_what_a_relay_changes_is_refused(changes, error):
    with pytest.raises(RecordError, match=error):
        envelope.verify(CONTEXT, _entry(**changes), "test record")


def test_an_envelope_does_not_verify_under_another_context():
    with pytest.raises(RecordError, match="signature does not verify"):
        envelope.verify(b"ladder exit record v1\x00", _entry(), "exit record")


def test_another_member_cannot_sign_for_an_id():
    forged = {"id": ID, "pubkey": b64(public_bytes(MALLORY)),
              "record": _rebody({"n": 1, "id": ID}),
              "signature": b64(MALLORY.sign(
                  CONTEXT + json.dumps({"id": ID, "n": 1}, separators=(",", ":")).encode()))}
    with pytest.raises(RecordError, match="names another member"):
        envelope.verify(CONTEXT, forged, "test record")


@given(st.dictionaries(st.sampled_from(["id", "record", "signature", "pubkey"]),
                       st.one_of(st.text(max_size=40), st.binary(max_size=60).map(b64), st.integers(),
                                 st.none(), st.lists(st.integers(), max_size=2))))
def test_arbitrary_entries_raise_only_record_error(entry):
    with pytest.raises(RecordError):
        envelope.verify(CONTEXT, entry, "test record")
