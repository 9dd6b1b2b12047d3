"""The user's directory: only exits that signed their own record, pinned on first use."""

from __future__ import annotations

import base64
import dataclasses
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.agent.directory import REFUSAL_MEMORY, Directory
from ladder.protocol.control import ExitEntry
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.noise import generate_keypair
from ladder.protocol.records import sign_exit_record


def exit_entry(key, name, country="US", users=0, noise_public=None):
    noise_public = noise_public or generate_keypair()[1]
    return ExitEntry(id=member_id(public_bytes(key)), name=name, country=country, users=users,
                     **sign_exit_record(key, country, noise_public, 1))


def test_choice_by_country_name_or_auto_least_loaded_first(tmp_path):
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    directory = Directory(tmp_path / "pins.json", own_id="me", own_name="me")
    directory.update([exit_entry(keys[0], "a", "US", 5), exit_entry(keys[1], "b", "US", 1),
                      exit_entry(keys[2], "c", "CN", 0)])
    assert [e.name for e, _ in directory.candidates("US")] == ["b", "a"]
    assert [e.name for e, _ in directory.candidates("us")] == ["b", "a"]
    assert [e.name for e, _ in directory.candidates("auto")] == ["c", "b", "a"]
    assert [e.name for e, _ in directory.candidates("a")] == ["a"]
    assert directory.candidates("ZZ") == [] and "no exit online matches --exit ZZ" in directory.why_none("ZZ")
    directory.opened(directory.records[exit_entry(keys[2], "c").id].id, +9)
    assert [e.name for e, _ in directory.candidates("auto")][-1] == "c"


def test_own_exit_is_never_a_candidate(tmp_path):
    key = Ed25519PrivateKey.generate()
    entry = exit_entry(key, "me")
    directory = Directory(tmp_path / "pins.json", own_id=entry.id, own_name="me")
    directory.update([entry])
    assert directory.candidates("auto") == []


def test_a_forged_record_is_set_aside_with_the_reason(tmp_path):
    entry = exit_entry(Ed25519PrivateKey.generate(), "alice")
    body = json.loads(base64.b64decode(entry.record))
    body["noise_key"] = base64.b64encode(generate_keypair()[1]).decode()
    entry = dataclasses.replace(entry, record=base64.b64encode(json.dumps(body).encode()).decode())
    directory = Directory(tmp_path / "pins.json", own_id="me", own_name="me")
    directory.update([entry])
    assert directory.candidates("auto") == []
    assert "hub may be lying about exit alice" in directory.why_none("alice")


def test_a_pinned_exit_whose_key_changes_is_refused_loudly(tmp_path, caplog):
    key = Ed25519PrivateKey.generate()
    pins = tmp_path / "pins.json"
    first = Directory(pins, own_id="me", own_name="me")
    first.update([exit_entry(key, "alice")])
    (_, record), = first.candidates("alice")
    first.pin(record)
    assert oct(pins.stat().st_mode & 0o777) == "0o600"

    later = Directory(pins, own_id="me", own_name="me")  # a new session reads the pins back
    later.update([exit_entry(key, "alice")])  # same member, new Noise key: a hub substitution
    assert later.candidates("alice") == []
    assert "key changed since it was first used" in later.why_none("alice")
    assert any("WARNING" in r.getMessage() for r in caplog.records)
    later.update([exit_entry(key, "alice", noise_public=record.noise_key)])
    assert len(later.candidates("alice")) == 1, "the pinned key is accepted again"


def test_failed_exits_go_last_and_faster_exits_first(tmp_path):
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    directory = Directory(tmp_path / "pins.json", own_id="me", own_name="me")
    directory.update([exit_entry(k, n) for k, n in zip(keys, "abc", strict=True)])
    ids = {e.name: r.id for e, r in directory.candidates("auto")}
    directory.observe(ids["a"], 0.050)
    directory.observe(ids["b"], 0.010)
    directory.observe(ids["c"], 0.020)
    assert [e.name for e, _ in directory.candidates("auto")] == ["b", "c", "a"]
    directory.failed(ids["b"])
    assert [e.name for e, _ in directory.candidates("auto")] == ["c", "a", "b"]
    directory.observe(ids["b"], 0.010)  # it answered again: healthy
    assert next(e.name for e, _ in directory.candidates("auto")) == "b"


def test_an_exit_whose_record_serves_others_is_never_a_candidate(tmp_path):
    noise = generate_keypair()[1]
    closed_key, open_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    closed = ExitEntry(id=member_id(public_bytes(closed_key)), name="closed", country="CC", users=0,
                       **sign_exit_record(closed_key, "CC", noise, 1, frozenset({"alice"})))
    directory = Directory(tmp_path / "pins.json", own_id="me", own_name="Bob")
    directory.update([closed, exit_entry(open_key, "open", "OO", users=50)])
    assert [e.name for e, _ in directory.candidates("auto")] == ["open"]
    assert directory.candidates("CC") == []
    assert "closed" in directory.why_none("CC") and "listed members only" in directory.why_none("CC")
    alice = Directory(tmp_path / "pins.json", own_id="alice-id", own_name="Alice")
    alice.update([closed])
    assert [e.name for e, _ in alice.candidates("auto")] == ["closed"]


def test_an_exit_that_refused_us_is_skipped_for_a_while_or_until_it_signs_a_new_record(tmp_path):
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    noise = generate_keypair()[1]
    old_style = exit_entry(key, "old", "OO", noise_public=noise)  # no members field, but a policy
    directory = Directory(tmp_path / "pins.json", own_id="me", own_name="me")
    directory.update([old_style, exit_entry(other, "open", "OO", users=50)])
    assert directory.candidates("auto")[0][0].name == "old"
    directory.refused(old_style.id)
    assert [e.name for e, _ in directory.candidates("auto")] == ["open"]
    issued, when = directory.refused_me[old_style.id]
    directory.refused_me[old_style.id] = issued, when - REFUSAL_MEMORY  # ten minutes later: ask again
    assert directory.candidates("auto")[0][0].name == "old"
    directory.refused(old_style.id)
    renewed = dataclasses.replace(old_style, **sign_exit_record(key, "OO", noise, 2))
    directory.update([renewed])
    assert [e.name for e, _ in directory.candidates("auto")] == ["old"]


def test_a_mistyped_exit_name_is_told_with_what_is_online(tmp_path):
    directory = Directory(tmp_path / "pins.json", own_id="me", own_name="me")
    directory.update([exit_entry(Ed25519PrivateKey.generate(), "alice", "DE")])
    assert directory.why_none("alcie") == "no exit online matches --exit alcie; online: alice (DE)"


def test_a_push_verifies_only_the_signed_bytes_the_last_push_did_not_carry(tmp_path, monkeypatch):
    """Each push carries the whole directory (60 KB, ~130 exits when a peer hub offers thousands):
    verifying all of it again, twice a second, was most of what an agent did under a route flood."""
    import ladder.agent.directory as module

    checked: list[str] = []
    verify = module.verify_exit_record

    def counting(entry):
        checked.append(entry["id"])
        return verify(entry)

    monkeypatch.setattr(module, "verify_exit_record", counting)
    keys = [Ed25519PrivateKey.generate() for _ in range(3)]
    a, b, c = exit_entry(keys[0], "a"), exit_entry(keys[1], "b"), exit_entry(keys[2], "c")
    forged = dataclasses.replace(c, signature=b.signature)
    directory = Directory(tmp_path / "pins.json", own_id="me", own_name="me")
    directory.update([a, b, forged])
    assert sorted(checked) == sorted([a.id, b.id, c.id])
    checked.clear()
    directory.update([dataclasses.replace(a, users=4, hops=1), b, forged])  # what the hub adds may change
    assert checked == [] and set(directory.records) == {a.id, b.id}
    assert "hub may be lying about exit c" in directory.why_none("c")  # a forgery stays refused
    assert directory.candidates("a")[0][0].users == 4
    directory.update([b, c])  # c's own record now; a left
    assert checked == [c.id] and set(directory.records) == {b.id, c.id}
    checked.clear()
    directory.update([a, b, c])  # a came back: only the last push's verdicts were kept
    assert checked == [a.id]
