"""HTTP CONNECT through a real agent is answered at once: the client's first bytes go out before the exit's
answer comes back, and the site gets them while that answer is still on its way.

The hub is spy_hub.py's `hold`: while a file exists, whatever the exit sends
back on a stream waits at the hub, so the user's agent cannot have heard
the exit accept. The site is a TLS server on loopback that notes the first
bytes of each connection (a ClientHello) before it answers them.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

from harness import HERE, MARKER, Network, curl, wait_for

from ladder.link.tls import generate_self_signed

PAGE = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(MARKER)}\r\nConnection: close\r\n\r\n{MARKER}").encode()
TLS_HANDSHAKE = b"\x16\x03"  # a TLS record of the handshake type: a ClientHello starts with it


class NotingSite:
    """An HTTPS site for `connections` connections; `first` holds each one's first bytes, as they came."""

    def __init__(self, root: Path, connections: int):
        cert, key = root / "site.crt", root / "site.key"
        generate_self_signed(cert, key, "site.test", ["site.test", "127.0.0.1"])
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(60)
        self.port = self.listener.getsockname()[1]
        self.first: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, args=(connections,), daemon=True)
        self.thread.start()

    def _serve(self, connections: int) -> None:
        for _ in range(connections):
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with sock:
                sock.settimeout(30)
                try:
                    self.first.append(sock.recv(5, socket.MSG_PEEK))  # looked at, left for TLS to read
                    with self.context.wrap_socket(sock, server_side=True) as tls:
                        tls.recv(65536)  # the request: one read is enough for curl's GET
                        tls.sendall(PAGE)
                except (OSError, ssl.SSLError):
                    continue

    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


def test_connect_is_answered_and_the_client_hello_sent_before_the_exit_answers(tmp_path):
    gate = tmp_path / "hold"
    net = Network(tmp_path, hub_command=[str(HERE / "spy_hub.py"), "hold", str(tmp_path / "hub"), str(gate)])
    site = NotingSite(tmp_path, connections=2)
    try:
        net.exit("sharer", "AA", "--allow-private")
        user = net.user("user")
        user.wait_exits(1)
        # The channel to the exit opens here; a later connection is one OPEN inside it.
        warm = curl("-k", "-p", "-x", user.http, site.url(), timeout=30)
        assert warm.returncode == 0 and MARKER in warm.stdout.decode(), warm.stderr
        gate.touch()  # from now on the exit's answers wait at the hub
        out, err = tmp_path / "curl.out", tmp_path / "curl.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            fetch = subprocess.Popen(["curl", "-sS", "-v", "-k", "-p", "-x", user.http, "--max-time", "60",
                                      site.url()], stdout=stdout, stderr=stderr)
        try:
            wait_for(lambda: len(site.first) == 2, 20,
                     "the site to get the client's first bytes while the exit's answer was held at the hub "
                     "(the proxy waited for the exit before answering 200)")
            assert site.first[1].startswith(TLS_HANDSHAKE), site.first
            assert b"200 Connection Established" in err.read_bytes()
        finally:
            gate.unlink(missing_ok=True)
            code = fetch.wait(70)
        assert code == 0 and MARKER in out.read_text(), err.read_text()
        assert "spy: passing on" in net.hub.output(), "the hub held nothing back: the test proved nothing"
    finally:
        net.close()
        site.close()
