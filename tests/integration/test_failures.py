"""When things break: dead exits, revoked or wrong members, bad invites, restarts."""

from __future__ import annotations

import base64
import hashlib
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import BIG, HERE, MARKER, Member, Proc, accepts, curl, free_port, ladder, wait_for

from ladder.agent.reconnect import BACKOFF_MAX


def open_download(proxy, port: int, path: str) -> tuple[socket.socket, int]:
    """Start a GET through SOCKS5; returns the socket and the body length announced."""
    s = socket.create_connection(proxy, timeout=30)
    s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", port))
    head = b""
    while b"\r\n\r\n" not in head[12:]:
        chunk = s.recv(4096)
        assert chunk, f"proxy closed early: {head!r}"
        head += chunk
        if len(head) == 12:
            assert head[:4] == b"\x05\x00\x05\x00", head
            s.sendall(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    http_head, _, body = head[12:].partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in http_head.split(b"\r\n")
                     if line.lower().startswith(b"content-length")))
    return s, length, body


def read_some(s: socket.socket, digest, want: int) -> int:
    got = 0
    while got < want:
        chunk = s.recv(min(1 << 20, want - got))
        if not chunk:
            break
        digest.update(chunk)
        got += len(chunk)
    return got


def test_exit_dying_mid_download_fails_that_stream_only(network, origin):
    alpha = network.exit("alpha", "AA", "--allow-private")
    network.exit("bravo", "BB", "--allow-private")
    u1 = network.user("u1", "--exit", "AA")
    u2 = network.user("u2", "--exit", "BB")
    u1.wait_exits(2)
    u2.wait_exits(2)
    s1, n1, b1 = open_download(u1.proxy, origin.port, "big.bin")
    s2, n2, b2 = open_download(u2.proxy, origin.port, "big.bin")
    d1, d2 = hashlib.sha256(b1), hashlib.sha256(b2)
    got1 = len(b1) + read_some(s1, d1, 4 << 20)
    got2 = len(b2) + read_some(s2, d2, 4 << 20)
    assert got1 < n1 and got2 < n2, "the download finished before the exit could be killed"

    alpha.proc.stop(signal.SIGKILL)
    started = time.monotonic()
    s1.settimeout(30)
    try:
        got1 += read_some(s1, d1, n1 - got1)
        reset = False
    except ConnectionResetError:
        reset = True
    assert got1 < n1, "the stream through the dead exit delivered the whole file"
    assert reset, "a cut-off download ended with a clean close, as if it were complete"
    assert time.monotonic() - started < 20, "the user waited instead of getting an error"
    s1.close()

    got2 += read_some(s2, d2, n2 - got2)
    s2.close()
    assert got2 == n2 == BIG and d2.hexdigest() == origin.big_sha, "the other exit's stream was disturbed"


def test_revoked_member_is_dropped_and_cannot_come_back(network):
    network.exit("alpha", "AA", "--allow-private")
    mallory = network.user("mallory")
    ladder("hub", "revoke", "--dir", str(network.hub_dir), "mallory")
    wait_for(lambda: not mallory.proc.alive(), 5, "mallory's agent to be dropped")
    assert "revoked" in mallory.proc.output() or "did not accept" in mallory.proc.output()
    again = ladder("up", "--dir", str(mallory.folder), "--proxy", f"127.0.0.1:{free_port()}", check=False)
    assert again.returncode == 1
    assert "did not accept this member's key" in again.stderr and "Traceback" not in again.stderr
    members = ladder("hub", "members", "--dir", str(network.hub_dir)).stdout
    assert "mallory" in members and "revoked" in members


def test_member_with_wrong_key_is_refused(network):
    folder = network.join("eve")
    key = Ed25519PrivateKey.generate()
    (folder / "member.key").write_bytes(base64.b64encode(key.private_bytes_raw()))
    result = ladder("up", "--dir", str(folder), "--proxy", f"127.0.0.1:{free_port()}", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("ladder: error: the hub testhub did not accept")


def test_invite_errors_are_one_clear_line(network, tmp_path):
    invite = network.invite("once")
    ladder("join", invite, "--dir", str(tmp_path / "first"))
    cases = {
        "used": (invite, "already been used"),
        "malformed": ("ladder://garbage", "not a Ladder invite link"),
        "unknown": (invite.replace(invite[9:15], "AAAAAA"), "does not know this invite"),
        "expired": (network.invite("late", "--expires", "1s"), "expired"),
    }
    time.sleep(1.5)
    for what, (link, message) in cases.items():
        result = ladder("join", link, "--dir", str(tmp_path / what), check=False)
        assert result.returncode == 1, f"{what}: {result.stdout}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], f"{what}: {result.stderr}"


def test_wrong_or_truncated_hub_key_is_refused_at_join_in_one_line(network, tmp_path):
    invite = network.invite("victim")
    fp = invite.split("fp=")[1].split("&")[0]
    for what, forged in {"wrong": invite.replace(fp, "sha256:" + "A" * 43),
                         "truncated": invite.replace(fp, fp[:-5])}.items():
        # ladder() checks for noise
        result = ladder("join", forged, "--dir", str(tmp_path / what), check=False)
        assert result.returncode == 1, what
        assert "not the pinned" in result.stderr and "refusing to connect" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_hub_restart_keeps_members_and_invites(network, origin):
    network.exit("alpha", "AA", "--allow-private")
    user = network.user("user")
    pending = network.invite("later")
    network.hub.stop()
    wait_for(lambda: user.status().get("state") != "up", 20, "the user to notice the hub went away")
    network.hub = network.start_hub()
    user.wait_up(40)
    user.wait_exits(1, 40)
    result = curl("-x", user.socks, origin.url("index.html"))
    assert result.returncode == 0 and MARKER in result.stdout.decode(), result.stderr
    ladder("join", pending, "--dir", str(network.root / "later"))


def test_cli_errors_are_one_line_without_traceback(network, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    folder = network.join("busy")
    cases = [
        (["up", "--dir", str(tmp_path / "nothing")], "holds no membership"),
        (["hub", "run", "--dir", str(tmp_path / "nohub")], "holds no hub"),
        (["up", "--dir", str(folder), "--proxy", f"127.0.0.1:{busy.getsockname()[1]}"], "cannot listen on"),
        (["join", network.invite("x").replace(str(network.hub_port), str(free_port())), "--dir",
          str(tmp_path / "x")], "cannot reach the hub"),
        (["hub", "invite", "--dir", str(network.hub_dir), "bad name!"], "name"),
        (["hub", "revoke", "--dir", str(network.hub_dir), "nobody"], "no member named"),
        # 0.0.0.0 in invites:
        (["hub", "init", "--dir", str(tmp_path / "anyhub")], "--public-address is needed"),
    ]
    for args, message in cases:
        result = ladder(*args, check=False)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr, result.stderr
        assert message in result.stderr, f"{args}: {result.stderr}"
    busy.close()


def test_silent_exit_is_dropped_within_15_s_and_comes_back(network):
    alpha = network.exit("alpha", "AA", "--allow-private")
    user = network.user("user")
    user.wait_exits(1)
    alpha.proc.popen.send_signal(signal.SIGSTOP)  # alive, but silent: no FIN, no RST
    try:
        started = time.monotonic()
        wait_for(lambda: not user.status().get("exits"), 25, "the hub to drop the silent exit")
        assert time.monotonic() - started < 20, "a dead peer took longer than 15 s (+ margin) to detect"
    finally:
        alpha.proc.popen.send_signal(signal.SIGCONT)
    user.wait_exits(1, 40)  # the exit notices, reconnects with backoff, and shares again


def test_strangers_are_handed_to_the_real_web_server_beside_the_hub(tmp_path, origin):
    """--web-backend gets decrypted non-member requests; --raw-backend gets connections without TLS."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>the operator's own site</html>\n")
    web_port, raw_port = free_port(), free_port()
    servers = [Proc(f"web{p}", [sys.executable, str(HERE / "origin.py"), str(p), str(site)], tmp_path)
               for p in (web_port, raw_port)]
    try:
        wait_for(lambda: accepts(web_port) and accepts(raw_port), 10, "the web backends")
        hub_port = free_port()
        hub_dir = tmp_path / "hub2"
        ladder("hub", "init", "--dir", str(hub_dir), "--listen", f"127.0.0.1:{hub_port}",
               "--web-backend", f"127.0.0.1:{web_port}", "--raw-backend", f"127.0.0.1:{raw_port}")
        hub = Proc("hub2", [sys.executable, "-m", "ladder", "hub", "run", "--dir", str(hub_dir)], tmp_path)
        servers.append(hub)
        wait_for(lambda: accepts(hub_port), 10, "the hub")

        https = curl("-k", "-i", f"https://127.0.0.1:{hub_port}/")
        assert b"the operator's own site" in https.stdout, https.stdout[:300]
        plain = curl("-i", f"http://127.0.0.1:{hub_port}/")  # plain HTTP to the TLS port: raw to the backend
        assert b"the operator's own site" in plain.stdout, plain.stdout[:300]
        # A prober's line inside TLS; the backend answers and closes; then the prober says close_notify.
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(socket.create_connection(("127.0.0.1", hub_port), timeout=5)) as probe:
            probe.sendall(b"\n")
            time.sleep(0.5)
            try:
                probe.unwrap()
            except (OSError, ssl.SSLError):
                pass
        # And a round of every kind of prober at once: junk, plain HTTP, requests inside TLS that
        # end with close_notify before or after the backend's answer.
        rng = random.Random(4)
        threads = [threading.Thread(target=_probe, args=(hub_port, kind, rng.randbytes(rng.randint(1, 1000))))
                   for kind in ("tls-get", "tls-get-close", "tls-shut", "raw", "plain") for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert b"the operator's own site" in curl("-k", f"https://127.0.0.1:{hub_port}/").stdout

        folder = tmp_path / "member"
        invite = ladder("hub", "invite", "--dir", str(hub_dir), "member").stdout.strip()
        ladder("join", invite, "--dir", str(folder))  # members still get through
        assert (folder / "ladder.toml").exists()
    finally:
        for proc in servers:
            proc.stop()
    hub.check_log()  # strangers spliced to the backend leave no traceback


def _probe(port: int, kind: str, junk: bytes) -> None:
    """One prober's connection; whatever the hub answers, it must not log a traceback."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        if kind.startswith("tls"):
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(sock)
            close = b"Connection: close\r\n" if kind == "tls-get-close" else b""
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n" + close + b"\r\n")
            if kind == "tls-shut":
                sock = sock.unwrap()  # close_notify first: the hub sees the end before the server's answer
                sock.shutdown(socket.SHUT_WR)
        elif kind == "raw":
            sock.sendall(junk)
        else:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.settimeout(3)
        while sock.recv(65536):
            pass
        if kind == "tls-get-close":
            sock.unwrap()  # answer the server's close_notify, as openssl s_client does
    except (OSError, ssl.SSLError):
        pass
    finally:
        sock.close()


def test_setup_traps_are_one_clear_line(network, tmp_path):
    folder = network.join("newcomer")
    port = free_port()
    cases = [
        (["--proxy", f"0.0.0.0:{port}"], "--proxy-auth USER:PASSWORD (or $LADDER_PROXY_AUTH"),
        (["--share", "--country", "usa"], "'usa' is not an ISO 3166-1 country code"),
        (["--share", "--country", "UK"], "'UK' is not an ISO 3166-1 country code"),  # GB is
        (["--share"], "--share needs --country"),
    ]
    for args, message in cases:
        result = ladder("up", "--dir", str(folder), *args, check=False, timeout=20)
        assert result.returncode != 0, args
        assert message in result.stderr, f"{args}: {result.stderr}"
    assert not accepts(port), "a refused --proxy must not listen"


def test_a_bare_proxy_port_means_loopback(network):
    folder = network.join("bare")
    port = free_port()
    member = Member("bare", folder, network.start("bare", "up", "--dir", str(folder), "--proxy", str(port)))
    member.wait_up()
    assert member.status()["proxy"] == f"127.0.0.1:{port}"
    assert accepts(port)


def test_a_second_agent_for_the_same_member_stops_with_one_line(network, tmp_path):
    first = network.user("first")
    again = ladder("up", "--dir", str(first.folder), "--proxy", str(free_port()), check=False, timeout=20)
    assert again.returncode == 1 and "another agent (pid " in again.stderr, again.stderr
    assert f"is already running for {first.folder}" in again.stderr, again.stderr
    first.wait_up()
    # A copy of the folder elsewhere (a second device with the same key): the newer link wins at the hub,
    # the older agent is told why and stops, instead of both taking the link back in a loop.
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("ladder.toml", "member.key", "noise.key"):
        shutil.copy(first.folder / name, copy / name)
    second = Member("second", copy,
                    network.start("second", "up", "--dir", str(copy), "--proxy", str(free_port())))
    second.wait_up()
    wait_for(lambda: not first.proc.alive(), 20, "the replaced agent to stop")
    assert first.proc.popen.returncode == 1
    out = first.proc.output()
    assert "another agent with this member's key connected to the hub" in out, out
    assert "reconnecting" not in out, out
    told = ladder("status", "--dir", str(first.folder), check=False).stdout
    assert "link:   stopped (another agent with this member's key" in told, told
    time.sleep(3)  # nobody takes the link back
    assert second.status()["state"] == "up" and "reconnecting" not in second.proc.output()


def test_after_a_hub_outage_the_agent_is_back_within_seconds(network):
    user = network.user("user")
    network.hub.stop()
    wait_for(lambda: user.status().get("state") != "up", 20, "the user to notice the hub went away")
    time.sleep(10)  # backoff grows meanwhile: 0.5, 1, 2, 4 s...
    network.hub = network.start_hub()
    started = time.monotonic()
    user.wait_up(30)
    took = time.monotonic() - started
    assert took < BACKOFF_MAX + 3, f"the agent took {took:.1f} s to reconnect (backoff cap {BACKOFF_MAX} s)"


def test_a_relative_hub_folder_works_from_where_it_was_made(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "ladder", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=False)

    made = run("hub", "init", "--dir", "hub", "--listen", f"127.0.0.1:{free_port()}")
    assert made.returncode == 0, made.stderr
    invite = run("hub", "invite", "--dir", "hub", "alice")
    assert invite.returncode == 0 and invite.stdout.startswith("ladder://"), invite.stderr
