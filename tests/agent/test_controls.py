"""The dashboard's controls on an Agent: the switch, the exit picker, "where would this go", settings.json."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_directory import exit_entry

from ladder.agent.agent import DISCONNECTED, Agent
from ladder.agent.rules import parse_rules
from ladder.agent.settings import Settings
from ladder.config import MemberConfig
from ladder.errors import UserError
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode

KEY = Ed25519PrivateKey.generate()


class FakeLink:
    label = "hub test"
    closed = False

    def __init__(self):
        self.closes: list[tuple[int, str]] = []

    def close(self, code, reason):
        self.closes.append((code, reason))


class Client:
    """What the front hands Agent.open: here only what a refusal reaches."""

    tracked = None

    def __init__(self):
        self.refusals: list[tuple[int, str]] = []

    def on_refused(self, code, reason):
        self.refusals.append((code, reason))


def agent_in(folder, **kwargs) -> Agent:
    return Agent(MemberConfig(folder, KEY, ("127.0.0.1", 9), "fp", "hub", "me"), **kwargs)


def with_exits(agent: Agent) -> Agent:
    alpha, beta = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    agent.control_received(FakeLink(), control.Directory((exit_entry(alpha, "alpha", "DE", users=3),
                                                          exit_entry(beta, "beta", "US", users=0))))
    return agent


def test_switched_off_the_link_closes_cleanly_and_the_proxy_refuses_saying_why(tmp_path):
    agent = agent_in(tmp_path)
    link = agent.link = FakeLink()  # type: ignore[assignment]
    agent.set_connected(False)
    assert link.closes == [(ErrorCode.NO_ERROR, "switched off by the member")]
    client = Client()
    agent.open("example.com", 443, client)  # type: ignore[arg-type]
    assert client.refusals == [(ErrorCode.NO_ROUTE, DISCONNECTED)]
    assert agent.activity.counters()["refusals"] == {"disconnected": 1}
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["connected_wanted"] is False


def test_the_switch_and_the_exit_are_remembered_and_a_given_exit_wins_for_one_run(tmp_path):
    agent = with_exits(agent_in(tmp_path))
    agent.set_connected(False)
    agent.choose_exit("alpha")
    again = agent_in(tmp_path)
    assert again.connected_wanted is False and again.exit_choice == "alpha"
    assert again.router.route("example.com").action == "exit:alpha"
    given = agent_in(tmp_path, exit_choice="US")
    assert given.exit_choice == "US"
    assert json.loads((tmp_path / "settings.json").read_text()) == {"connected": False, "exit": "alpha"}


def test_settings_of_the_wrong_type_or_a_damaged_file_are_ignored(tmp_path, caplog):
    path = tmp_path / "settings.json"
    path.write_text('{"connected": "no", "exit": "DE", "colour": 1}')
    assert Settings.load(path).values == {"exit": "DE"}
    assert "connected" in caplog.text and "colour" in caplog.text
    path.write_text("{")
    assert Settings.load(path).values == {}
    assert agent_in(tmp_path).connected_wanted is True


def test_the_exit_picker_takes_auto_a_country_or_a_listed_name_and_refuses_anything_else(tmp_path):
    agent = with_exits(agent_in(tmp_path))
    agent.choose_exit("de")
    assert agent.exit_choice == "DE" and agent.where("example.com")["exit"] == "alpha"
    agent.choose_exit("auto")
    assert agent.where("example.com")["exit"] == "beta", "auto takes the least used"
    with pytest.raises(UserError, match=r"'nobody' is not auto, a country code, nor a member.*alpha \(DE\)"):
        agent.choose_exit("nobody")
    assert agent.exit_choice == "auto"
    exits = {e["name"]: e for e in agent.exits()}
    assert exits["beta"]["chosen"] and not exits["alpha"]["chosen"]
    assert exits["alpha"] | {"id": None} == {
        "id": None, "name": "alpha", "country": "DE", "hub": None, "hops": 0, "latency_ms": None,
        "streams": 0, "users": 3, "admits_me": True, "chosen": False}


def test_where_names_the_rule_its_line_and_the_exit_or_why_there_is_none(tmp_path):
    rules = parse_rules(["domain-suffix cn -> direct", "domain ads.example -> block",
                         "domain-keyword tube -> exit:FR", "default -> exit"])
    agent = with_exits(agent_in(tmp_path, rules=rules))
    assert agent.where("www.Baidu.CN.") == {"host": "www.baidu.cn", "rule": "domain-suffix cn -> direct",
                                           "line": 1, "action": "direct", "exit": None,
                                           "reason": "line 1 of the rules"}
    assert agent.where("ads.example")["action"] == "block"
    tube = agent.where("youtube.com")
    assert tube["action"] == "exit" and tube["exit"] is None
    assert "no exit online matches --exit FR" in tube["reason"]
    assert agent.where("blog.alice.ladder")["action"] == "service"
    with pytest.raises(UserError, match="is not a host name"):
        agent.where("x" * 300)


def test_a_blocked_connection_is_counted_as_refused_and_not_listed(tmp_path):
    agent = agent_in(tmp_path, rules=parse_rules(["domain ads.example -> block"]))
    client = Client()
    agent.open("ads.example", 80, client)  # type: ignore[arg-type]
    assert client.refusals[0][0] == ErrorCode.FORBIDDEN
    assert agent.activity.connections() == [] and agent.activity.counters()["refusals"] == {"blocked": 1}
    assert agent.metrics()["refusals"] == {"blocked": 1} and agent.metrics()["link_up"] == 0
