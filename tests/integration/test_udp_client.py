"""UDP through the network with a client nobody on this project wrote: v2ray's SOCKS5 UDP ASSOCIATE.

v2ray takes datagrams on a dokodemo-door inbound and sends them out
through its SOCKS outbound, which is the user agent's proxy front; the
agent carries them in a channel to the exit, whose guard lets them reach
a DNS-like UDP server on loopback (--allow-private, --udp-ports) or not.
"""

from __future__ import annotations

import json
import shutil

import pytest
from harness import Proc, UdpAnswerer, ask, free_port, wait_for


def v2ray_config(front: tuple[str, int], routes: dict[int, int]) -> dict:
    """dokodemo-door UDP inbounds (local port → target port on loopback), out through SOCKS5 to `front`."""
    inbounds = [{"listen": "127.0.0.1", "port": local, "protocol": "dokodemo-door",
                 "settings": {"address": "127.0.0.1", "port": target, "network": "udp"}}
                for local, target in routes.items()]
    return {"log": {"loglevel": "warning"}, "inbounds": inbounds,
            "outbounds": [{"protocol": "socks",
                           "settings": {"servers": [{"address": front[0], "port": front[1]}]}}]}


@pytest.fixture
def answerer():
    server = UdpAnswerer(2)
    yield server
    server.close()


def test_v2ray_s_datagrams_reach_an_allowed_port_through_the_exit_and_no_other(network, answerer, tmp_path):
    v2ray = shutil.which("v2ray")
    if v2ray is None:
        pytest.fail("v2ray is required by this test (.ci/run installs Debian's v2ray)")
    allowed, other = answerer.ports
    exit_ = network.exit("alpha", "AA", "--allow-private", "--udp-ports", str(allowed))
    user = network.user("user")
    user.wait_exits(1)
    to_allowed, to_other = free_port(), free_port()
    config = tmp_path / "v2ray.json"
    config.write_text(json.dumps(v2ray_config(user.proxy, {to_allowed: allowed, to_other: other})))
    client = Proc("v2ray", [v2ray, "-config", str(config)], tmp_path)
    network.procs.append(client)
    wait_for(lambda: "started" in client.output() or not client.alive(), 20, "v2ray to start")
    assert client.alive(), f"v2ray died:\n{client.output()}"

    assert ask(to_allowed, b"query 1") == b"answer:query 1", "no answer through the exit from an allowed port"
    assert ask(to_allowed, b"query 2", tries=3) == b"answer:query 2", "the association goes on"
    wait_for(lambda: (exit_.status().get("share") or {}).get("users"), 10, "the exit to meter the datagrams")
    assert ask(to_other, b"query 3", tries=3) is None, "an answer from a port outside --udp-ports"
    assert all(port == allowed for port, _ in answerer.heard), "the exit let a datagram to another port out"
    wait_for(lambda: "allows UDP ports" in exit_.proc.output(), 10, "the exit to log its refusal")
    assert exit_.proc.output().count("datagrams refused:") == 1, "logged once, not per datagram"
