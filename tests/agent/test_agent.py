"""The supervisor's edge: each control message from the hub is checked once, then goes to what reads it."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.agent.agent import Agent
from ladder.config import MemberConfig
from ladder.protocol.errors import ErrorCode

ALICE = "a" * 24


class FakeLink:
    label = "hub test"

    def __init__(self):
        self.closed: list[tuple[int, str]] = []

    def close(self, code, reason):
        self.closed.append((code, reason))


def agent_in(tmp_path) -> Agent:
    return Agent(MemberConfig(tmp_path, Ed25519PrivateKey.generate(), ("127.0.0.1", 9), "fp", "hub", "me"))


def test_a_malformed_message_closes_the_link_and_names_the_field(tmp_path):
    agent, link = agent_in(tmp_path), FakeLink()
    agent.control_received(link, {"type": "directory", "exits": [{"id": ALICE, "users": "many"}]})
    ((code, reason),) = link.closed
    assert code == ErrorCode.PROTOCOL_ERROR and "directory.exits[0]" in reason
    assert agent.directory.entries == []


def test_well_formed_messages_reach_the_roster_and_status_and_unknown_ones_change_nothing(tmp_path):
    agent, link = agent_in(tmp_path), FakeLink()
    agent.control_received(link, {"type": "members", "members": [{"id": ALICE, "name": "alice"}], "more": False})
    assert agent.roster.names == {ALICE: "alice"}
    assert json.loads((tmp_path / "status.json").read_text())["services"]["members"] == {ALICE: "alice"}
    agent.control_received(link, {"type": "from-a-newer-hub", "anything": [1, 2]})
    assert link.closed == [] and agent.roster.names == {ALICE: "alice"}
