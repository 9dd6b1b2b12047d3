"""Sharing the agent's proxy with the home network: a password beyond loopback, or `--lan-open` said.

Real agents and curl. The LAN agent is reached at the address it prints
(this machine's own non-loopback address), as a phone on the Wi-Fi would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import MARKER, Member, accepts, curl, free_port, ladder, wait_for

PASSWORD = "alice:correct horse"


@pytest.fixture(scope="module")
def exit_alpha(shared_network):
    return shared_network.exit("alpha", "AA", "--allow-private")


def start(network, name: str, *up_args: str, folder: Path | None = None) -> Member:
    """`ladder up` for a member joined now, or already in `folder`; once its link is up."""
    folder = folder or network.join(name)
    member = Member(name, folder, network.start(name, "up", "--dir", str(folder), *up_args))
    member.wait_up()
    return member


def announced(member: Member, port: int) -> tuple[str, str]:
    """The proxy's LAN address and the PAC URL, as the agent printed them when it began to listen."""
    lines = wait_for(lambda: re.findall(r"^LAN: .*$", member.proc.output(), re.M)[:2], 10, "the LAN lines")
    where = re.match(rf"LAN: proxy at ([\d.]+):{port}\b", lines[0])
    assert where, f"the agent did not say where the proxy is: {lines}"
    assert lines[1].startswith(f"LAN: PAC URL http://{where[1]}:{port}/proxy.pac"), lines
    return where[1], f"http://{where[1]}:{port}/proxy.pac"


def fetch(proxy: str, url: str, *args: str) -> tuple[int, str]:
    result = curl("-x", proxy, *args, url, timeout=30)
    return result.returncode, result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


def test_the_lan_proxy_serves_only_clients_with_the_password(shared_network, exit_alpha, origin, monkeypatch):
    monkeypatch.setenv("LADDER_PROXY_AUTH", PASSWORD)  # the agent inherits it: not on its command line
    port = free_port()
    home = start(shared_network, "home", "--lan", "--proxy", str(port))
    home.wait_exits(1)
    host, pac_url = announced(home, port)
    assert "correct horse" not in home.proc.output()
    page = origin.url("index.html")

    for refused in (f"socks5h://{host}:{port}", f"socks5h://alice:wrong@{host}:{port}"):
        code, said = fetch(refused, page)
        assert code != 0 and MARKER not in said, f"{refused} served a page without the password"
    for served in (["-U", PASSWORD], []):
        proxy = f"socks5h://{host}:{port}" if served else f"socks5h://alice:correct%20horse@{host}:{port}"
        code, said = fetch(proxy, page, *served)
        assert code == 0 and MARKER in said, f"SOCKS5 with the password: {said[-300:]}"

    code, said = fetch(f"http://{host}:{port}", page, "-i")
    assert said.startswith("HTTP/1.1 407") and 'Proxy-Authenticate: Basic realm="ladder"' in said, said[:300]
    code, said = fetch(f"http://{host}:{port}", page, "-p")  # CONNECT through the HTTP proxy
    assert code != 0 and "407" in said and MARKER not in said
    for tunnel in ([], ["-p"]):
        code, said = fetch(f"http://{host}:{port}", page, "-U", PASSWORD, *tunnel)
        assert code == 0 and MARKER in said, f"HTTP proxy {tunnel} with the password: {said[-300:]}"

    pac = curl(pac_url).stdout.decode()  # no password: phones fetch it before they know one
    assert "function FindProxyForURL" in pac and f'"PROXY {host}:{port}"' in pac
    assert "SOCKS" not in pac, "browsers send no SOCKS5 password: only the HTTP proxy, which they ask for"
    assert "gave a wrong user name or password" in home.proc.output()
    assert accepts(port), "--lan listens on every address, loopback too"


def test_a_password_in_ladder_toml_is_asked_on_loopback_too(shared_network, exit_alpha, origin):
    name = "toml"
    folder = shared_network.join(name)
    assert (folder / "ladder.toml").stat().st_mode & 0o777 == 0o600, "ladder.toml may hold a password"
    with open(folder / "ladder.toml", "a") as config:
        config.write(f'\n[proxy]\nauth = "{PASSWORD}"\n')
    port = free_port()
    member = start(shared_network, name, "--proxy", str(port), folder=folder)
    member.wait_exits(1)
    code, said = fetch(f"socks5h://127.0.0.1:{port}", origin.url("index.html"))
    assert code != 0 and MARKER not in said
    code, said = fetch(f"http://127.0.0.1:{port}", origin.url("index.html"), "-U", PASSWORD)
    assert code == 0 and MARKER in said, said[-300:]
    assert "LAN:" not in member.proc.output(), "a loopback proxy is not announced to the network"


def test_beyond_loopback_without_a_password_it_exits_with_one_line_and_never_listens(shared_network,
                                                                                   monkeypatch):
    folder = shared_network.join("careless")
    port = free_port()
    for args in (["--proxy", f"0.0.0.0:{port}"], ["--lan", "--proxy", str(port)]):
        result = ladder("up", "--dir", str(folder), *args, check=False, timeout=20)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "--proxy-auth USER:PASSWORD" in lines[0] and "--lan-open" in lines[0], lines
        assert result.stdout == ""
    assert not accepts(port), "a refused proxy must not listen"
    result = ladder("up", "--dir", str(folder), "--lan", "--proxy-auth", "no-colon-here", check=False)
    assert result.returncode == 1 and "--proxy-auth must be USER:PASSWORD" in result.stderr
    assert "no-colon-here" not in result.stderr
    monkeypatch.setenv("LADDER_PROXY_AUTH", ":nouser")
    result = ladder("up", "--dir", str(folder), "--lan", check=False)
    assert result.returncode == 1 and "LADDER_PROXY_AUTH must be USER:PASSWORD" in result.stderr
    result = ladder("up", "--dir", str(folder), "--lan", "--proxy", f"127.0.0.1:{port}", check=False)
    assert result.returncode == 2 and "give --proxy only a port" in result.stderr


def test_with_lan_open_it_listens_without_a_password(shared_network, exit_alpha, origin):
    port = free_port()
    open_lan = start(shared_network, "open", "--proxy", f"0.0.0.0:{port}", "--lan-open")
    open_lan.wait_exits(1)
    host, pac_url = announced(open_lan, port)
    code, said = fetch(f"socks5h://{host}:{port}", origin.url("index.html"))
    assert code == 0 and MARKER in said, said[-300:]
    assert "serves every machine that reaches it, without a password" in open_lan.proc.output()
    assert f'"SOCKS5 {host}:{port}; PROXY {host}:{port}"' in curl(pac_url).stdout.decode()
