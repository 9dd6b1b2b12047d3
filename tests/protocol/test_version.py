"""Two sides talk if their protocol ranges meet, and otherwise part with one line naming both releases."""

from ladder.protocol.version import FIRST_RELEASE, OLDEST, PROTOCOL, THIS, Speaks, mismatch


def test_this_release_talks_to_itself_and_to_the_first_release():
    assert mismatch(THIS, "this agent", "the hub home") is None
    first = Speaks.said(1, 1, "")
    assert first.release == FIRST_RELEASE
    assert OLDEST <= 1 <= PROTOCOL and mismatch(first, "this agent", "the hub home") is None


def test_a_hub_that_moved_on_tells_the_older_agent_to_upgrade():
    hub = Speaks(3, 4, "0.9.0")
    line = mismatch(hub, "this agent", "the hub home", ours=Speaks(1, 2, "0.2.0"))
    assert line == ("the hub home runs Ladder 0.9.0 (protocol 3-4) and this agent runs Ladder 0.2.0 "
                    "(protocol 1-2): they have no protocol in common; upgrade this agent to the release "
                    "the hub home runs or later")
    assert "\n" not in line


def test_a_newer_agent_names_the_hub_as_the_one_to_upgrade():
    line = mismatch(Speaks(1, 1, "0.1.0"), "this agent", "the hub home", ours=Speaks(2, 2, "0.5.0"))
    assert line is not None and line.endswith("upgrade the hub home to the release this agent runs or later")
    assert "protocol 1)" in line and "protocol 2)" in line


def test_ranges_that_overlap_at_one_version_talk():
    assert mismatch(Speaks(2, 3, "b"), "us", "them", ours=Speaks(1, 2, "a")) is None
    assert mismatch(Speaks(3, 3, "b"), "us", "them", ours=Speaks(1, 2, "a")) is not None
