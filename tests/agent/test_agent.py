"""The supervisor's edge: each control message from the hub, checked once by the link, reaches its reader."""

from __future__ import annotations

import asyncio
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fedlink import control_frame, fed_link, goaway

from ladder.agent.agent import Agent
from ladder.config import MemberConfig
from ladder.protocol import control
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
    async def main():
        agent = agent_in(tmp_path)
        link, transport = fed_link(agent, "hub test")
        malformed = {"type": "directory", "exits": [{"id": ALICE, "users": "many"}]}
        link.data_received(control_frame(json.dumps(malformed).encode()))
        return agent, link, goaway(transport)

    agent, link, (code, reason) = asyncio.run(main())
    assert link.closed and code == ErrorCode.PROTOCOL_ERROR and "directory.exits[0]" in reason
    assert agent.directory.entries == []


def test_well_formed_messages_reach_the_roster_and_status_and_unknown_ones_change_nothing(tmp_path):
    agent, link = agent_in(tmp_path), FakeLink()
    agent.control_received(link, control.Members((control.MemberName(ALICE, "alice"),)))
    assert agent.roster.names == {ALICE: "alice"}
    assert json.loads((tmp_path / "status.json").read_text())["services"]["members"] == {ALICE: "alice"}
    agent.control_received(link, control.Unknown("from-a-newer-hub"))
    assert link.closed == [] and agent.roster.names == {ALICE: "alice"}


def test_a_first_message_that_is_no_welcome_is_the_hub_s_protocol_error_and_the_agent_dials_again(
        tmp_path, monkeypatch):
    link = FakeLink()

    async def dial(*args):
        return link, control.Directory(())

    monkeypatch.setattr("ladder.agent.agent.dial", dial)
    agent = agent_in(tmp_path)
    asyncio.run(agent._connect_once())
    assert link.closed == [(ErrorCode.PROTOCOL_ERROR, "the first message is not a welcome")]
    assert agent.state == "down" and agent.link is None
    assert agent.error == "cannot reach the hub at 127.0.0.1:9: the hub's first message is not a welcome"
