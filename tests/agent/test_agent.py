"""The supervisor's edge: each control message from the hub, checked once by the link, reaches its reader."""

from __future__ import annotations

import asyncio
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fedlink import control_frame, fed_link, goaway

from ladder.agent.agent import Agent, AgentFatal
from ladder.config import MemberConfig
from ladder.link.client import LinkRefused
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


def test_a_refused_hello_is_tried_again_and_believed_the_third_time_in_a_row(tmp_path, monkeypatch):
    async def dial(*args):
        raise LinkRefused("the hub did not accept this member's key")

    monkeypatch.setattr("ladder.agent.agent.dial", dial)
    agent = agent_in(tmp_path)
    for tried in (1, 2):  # a hello can reach the door late and be taken for a stranger's
        asyncio.run(agent._connect_once())
        assert agent.state == "down" and agent.error.endswith(f"trying again ({tried} of 3)"), agent.error
    with pytest.raises(AgentFatal, match="did not accept this member's key"):
        asyncio.run(agent._connect_once())


def test_a_member_the_hub_said_was_revoked_believes_the_first_refusal(tmp_path, monkeypatch):
    async def dial(*args):
        raise LinkRefused("the hub did not accept this member's key")

    monkeypatch.setattr("ladder.agent.agent.dial", dial)
    agent = agent_in(tmp_path)
    agent._revoked = True  # the last link's GOAWAY said REVOKED
    with pytest.raises(AgentFatal, match="membership revoked"):
        asyncio.run(agent._connect_once())


def test_a_hub_with_no_protocol_in_common_stops_the_agent_with_one_line(tmp_path, monkeypatch):
    link = FakeLink()

    async def dial(*args):
        return link, control.Welcome("hub", "me", ALICE, None, "", 5, 6, "3.0.0")

    monkeypatch.setattr("ladder.agent.agent.dial", dial)
    with pytest.raises(AgentFatal, match=r"the hub hub runs Ladder 3\.0\.0 \(protocol 5-6\)") as raised:
        asyncio.run(agent_in(tmp_path)._connect_once())
    assert link.closed == [(ErrorCode.PROTOCOL_ERROR, str(raised.value))]
