"""The member roster: the hub's list in pieces, one joiner at a time, and the names a member types."""

from __future__ import annotations

import pytest

from ladder.agent.roster import Roster, UnknownMember, is_member_id
from ladder.protocol.control import MemberJoined, MemberName, Members

ALICE, BOB = "a" * 24, "b" * 23 + "2"


def test_the_list_comes_whole_after_its_last_piece_and_joiners_one_by_one():
    roster = Roster()
    roster.take(Members(members=(MemberName(ALICE, "alice"),), more=True))
    assert roster.names == {}, "half a list is no list"
    roster.take(Members(members=(MemberName(BOB, "bob"),)))
    assert roster.names == {ALICE: "alice", BOB: "bob"}
    roster.take(MemberJoined(id="c" * 24, name="carol"))
    assert roster.name_of("c" * 24) == "carol" and roster.name_of("nobody") == "nobody"
    roster.take(Members(members=(MemberName(ALICE, "alice"),), more=True))
    roster.new_link()  # the rest of that list will never come
    roster.take(Members(members=(MemberName(BOB, "bob"),)))
    assert roster.names == {BOB: "bob"}


def test_names_and_ids_a_member_types_become_ids():
    roster = Roster({ALICE: "alice"})
    assert roster.resolve(" Alice, ,bbbbbbbbbbbbbbbbbbbbbbb2") == {ALICE: "alice", BOB: BOB}
    assert roster.resolve(ALICE) == {ALICE: "alice"}
    with pytest.raises(UnknownMember) as unknown:
        roster.resolve("alice,mallory")
    assert unknown.value.token == "mallory"


@pytest.mark.parametrize("text, shaped", [("a" * 24, True), ("a" * 23, False), ("a" * 23 + "1", False),
                                          ("A" * 24, False), ("", False)])
def test_a_member_id_is_24_base32_characters(text, shaped):
    assert is_member_id(text) is shaped


def test_a_device_counts_as_its_owner_and_a_member_as_itself():
    roster = Roster({"a" * 24: "alice", "d" * 24: "alice/phone", "e" * 24: "zed/phone"})
    assert roster.owner_of("d" * 24) == ("a" * 24, "alice")
    assert roster.owner_of("a" * 24) == ("a" * 24, "alice")
    assert roster.owner_of("e" * 24) == ("e" * 24, "zed/phone")  # its owner not listed: on its own
    assert roster.owner_of("x" * 24) == ("x" * 24, "x" * 24)
