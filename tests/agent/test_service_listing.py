"""Services without processes: the config file, the user's verified listing (the hub's board: tests/hub)."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.agent.names import ServiceListing, ServiceUnknown, is_service_host
from ladder.agent.roster import Roster
from ladder.agent.services import Published, load_published, loopback_address, save_published
from ladder.config import ConfigError
from ladder.protocol.control import ServiceEntry
from ladder.protocol.envelope import b64
from ladder.protocol.errors import ErrorCode
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.noise import generate_keypair
from ladder.protocol.records import service_address, sign_service_record

RYAN, BOB = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def listing_entry(key, member_name, name="blog", online=True, noise=None, access=()):
    noise = noise or generate_keypair()[1]
    return ServiceEntry(id=member_id(public_bytes(key)), name=member_name, online=online,
                        pubkey=b64(public_bytes(key)),
                        **sign_service_record(key, name, f"{name} of {member_name}", "", "http", noise,
                                              list(access), 1))


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:5000", ("127.0.0.1", 5000)),
    ("localhost:80", ("127.0.0.1", 80)),
    ("[::1]:22", ("::1", 22)),
    ("5000", ("127.0.0.1", 5000)),
    ("127.9.9.9:8080", ("127.9.9.9", 8080)),
])
def test_loopback_addresses_are_published(text, expected):
    assert loopback_address(text) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:80", "10.0.0.1:80", "192.168.1.2:22", "example.com:80", "[::]:80",
                                  "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000"])
def test_anything_but_loopback_with_a_port_is_refused(text):
    with pytest.raises(ConfigError):
        loopback_address(text)


def test_services_file_round_trips_and_bad_files_say_why(tmp_path):
    assert load_published(tmp_path) == {}
    services = {"blog": Published("blog", ("127.0.0.1", 5000), "Ryan's photos 写真"),
                "ssh": Published("ssh", ("::1", 22), kind="tcp", members={"id1": "alice"})}
    save_published(tmp_path, services)
    assert load_published(tmp_path) == services
    assert (tmp_path / "services.json").stat().st_mode & 0o777 == 0o600
    (tmp_path / "services.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_published(tmp_path)
    (tmp_path / "services.json").write_text(
        json.dumps({"services": {"Bad Name": {"address": "127.0.0.1:1"}}}))
    with pytest.raises(ConfigError, match="invalid service name"):
        load_published(tmp_path)
    (tmp_path / "services.json").write_text(json.dumps({"services": {"lan": {"address": "10.1.1.1:80"}}}))
    with pytest.raises(ConfigError, match="loopback"):
        load_published(tmp_path)


def test_only_ladder_names_are_services():
    assert is_service_host("blog.ryan.ladder") and is_service_host("ABC.LADDER.")
    assert is_service_host("x.ladder")
    assert not is_service_host("ladder.example.com") and not is_service_host("notladder")


# ---------------------------------------------------------- user's listing


def test_human_and_self_certifying_names_find_the_signed_record():
    listing = ServiceListing({}, own_id="me", roster=Roster())
    listing.update([listing_entry(RYAN, "ryan"), listing_entry(RYAN, "ryan", "echo"),
                    listing_entry(BOB, "bob")])
    _, record = listing.find("blog.ryan.ladder")
    assert record.id == member_id(public_bytes(RYAN)) and record.name == "blog"
    assert listing.find("BLOG.Ryan.ladder.")[1] is record
    assert listing.find(service_address(public_bytes(RYAN), "blog"))[1] is record
    assert listing.find("blog.bob.ladder")[1].id == member_id(public_bytes(BOB))
    with pytest.raises(ServiceUnknown) as info:
        listing.find("nosuch.ryan.ladder")
    assert info.value.code == ErrorCode.NO_ROUTE
    assert [s["name"] for s in listing.status()] == [
        "blog.bob.ladder", "blog.ryan.ladder", "echo.ryan.ladder"]


def test_forged_record_is_refused_under_both_its_names():
    forged = listing_entry(RYAN, "ryan")
    fields = json.loads(base64.b64decode(forged.record))
    fields["noise_key"] = b64(generate_keypair()[1])
    forged = dataclasses.replace(forged, record=b64(json.dumps(fields).encode()))
    listing = ServiceListing({}, own_id="me", roster=Roster())
    listing.update([forged])
    address = service_address(public_bytes(RYAN), "blog")
    assert set(listing.rejected) == {"blog.ryan.ladder", address}
    for host in ("blog.ryan.ladder", address):
        with pytest.raises(ServiceUnknown) as info:
            listing.find(host)
        assert info.value.code == ErrorCode.FORBIDDEN and "hub may be lying about service" in str(info.value)
    assert listing.status() == []


def test_a_pinned_key_that_changed_is_refused():
    old_noise, new_noise = generate_keypair()[1], generate_keypair()[1]
    listing = ServiceListing({member_id(public_bytes(RYAN)): b64(old_noise)}, own_id="me", roster=Roster())
    listing.update([listing_entry(RYAN, "ryan", noise=old_noise)])
    assert listing.find("blog.ryan.ladder")
    listing.update([listing_entry(RYAN, "ryan", noise=new_noise)])
    with pytest.raises(ServiceUnknown, match="another key"):
        listing.find("blog.ryan.ladder")


def test_a_hub_relabelling_members_cannot_move_a_self_certifying_name():
    listing = ServiceListing({}, own_id="me", roster=Roster())
    listing.update([listing_entry(RYAN, "ryan"), listing_entry(BOB, "ryan")])  # the hub calls bob "ryan" too
    assert listing.find("blog.ryan.ladder")[1].id == member_id(public_bytes(RYAN))  # the first one stays
    assert listing.find(service_address(public_bytes(BOB), "blog"))[1].id == member_id(public_bytes(BOB))
    assert listing.find(service_address(public_bytes(RYAN), "blog"))[1].id == member_id(public_bytes(RYAN))


def test_access_list_is_shown_with_names():
    listing = ServiceListing({}, own_id="me", roster=Roster({"alice-id": "alice"}))
    listing.update([listing_entry(RYAN, "ryan", access=["alice-id"])])
    (service,) = listing.status()
    assert service["access"] == ["alice"] and service["allowed"] is False


def test_a_listing_verifies_only_the_signed_bytes_the_last_listing_did_not_carry(monkeypatch):
    """The hub pushes every service each time the listing changes; each agent verified them all again."""
    import ladder.agent.names as module

    checked: list[str] = []
    verify = module.verify_service_record

    def counting(entry):
        checked.append(entry["id"])
        return verify(entry)

    monkeypatch.setattr(module, "verify_service_record", counting)
    blog, wiki = listing_entry(RYAN, "ryan"), listing_entry(BOB, "bob", "wiki")
    forged = dataclasses.replace(listing_entry(BOB, "bob", "shop"), signature=blog.signature)
    listing = ServiceListing({}, "me", Roster())
    listing.update([blog, wiki, forged])
    assert len(checked) == 3
    checked.clear()
    listing.update([dataclasses.replace(blog, online=False), wiki, forged])  # the hub's part changed
    assert checked == [] and not listing.find("blog.ryan.ladder")[0].online
    with pytest.raises(ServiceUnknown, match="hub may be lying"):
        listing.find("shop.bob.ladder")
    listing.update([wiki])
    listing.update([blog, wiki])  # blog came back: only the last listing's verdicts were kept
    assert checked == [blog.id]
