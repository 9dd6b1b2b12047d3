"""`ladder doctor`: folders made with the config classes, broken one thing at a time, each failing exactly
the check for it; the JSON log formatter."""

from __future__ import annotations

import datetime
import json
import logging
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from ladder.cli import cli
from ladder.config import HubConfig, MemberConfig
from ladder.doctor import Check, examine, examine_hub, examine_member, failed
from ladder.link.tls import generate_self_signed, server_context
from ladder.link.webface import response_head
from ladder.runtime import JsonLogFormatter
from ladder.store.hubdb import HubStore

UTC = datetime.UTC


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def web_face(cert: Path, key: Path, port: int = 0, skew: float = 0.0) -> Iterator[int]:
    """A TLS server on loopback that answers any request as the hub's web face does (a Date header);
    yields its port. Its thread serves until the block ends (accept wakes every 50 ms to look)."""
    context = server_context(cert, key)
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.05)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(2)
            try:
                with context.wrap_socket(sock, server_side=True) as tls:
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < 8192:
                        data = tls.recv(4096)
                        if not data:
                            break
                        head += data
                    if head:
                        tls.sendall(response_head(200, "nginx", time.time() + skew, []))
            except OSError:
                pass  # a client that only connects, or only shakes hands

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        listener.close()


def hub_folder(tmp_path: Path, port: int | None = None) -> HubConfig:
    folder = tmp_path / "hub"
    folder.mkdir()
    generate_self_signed(folder / "tls.crt", folder / "tls.key", "127.0.0.1", [])
    listen = ("127.0.0.1", port or free_port())
    config = HubConfig(folder, "tokyo", listen, listen, folder / "tls.crt", folder / "tls.key")
    HubStore(config.store_target).close()
    config.save()
    return config


def member_folder(tmp_path: Path, hub: HubConfig, port: int) -> MemberConfig:
    from ladder.link.tls import fingerprint_of_cert_file

    folder = tmp_path / "alice"
    key = MemberConfig.load_or_create_key(folder)
    MemberConfig.load_or_create_noise_key(folder)
    pin = fingerprint_of_cert_file(hub.cert)
    config = MemberConfig(folder, key, ("127.0.0.1", port), pin, "tokyo", "alice")
    config.save()
    return config


def failures(checks: list[Check]) -> list[str]:
    return [check.name for check in checks if check.ok is False]


@pytest.fixture
def hub(tmp_path) -> HubConfig:
    return hub_folder(tmp_path)


@pytest.fixture
def member(tmp_path, hub) -> Iterator[tuple[MemberConfig, tuple[str, int]]]:
    """A member whose hub answers at loopback with the pinned key, and a proxy port free for it."""
    with web_face(hub.cert, hub.key) as port:
        yield member_folder(tmp_path, hub, port), ("127.0.0.1", free_port())


# ----------------------------------------------------------------- a member


def test_a_sound_member_folder_passes_every_check(member):
    config, proxy = member
    checks = examine_member(config.folder, proxy=proxy)
    assert [c.name for c in checks] == ["keys", "config", "hub address", "hub reachable", "hub key", "clock",
                                        "proxy port"]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    assert "within a second" in checks[5].detail


def test_a_key_readable_by_others_fails_the_keys_check(member):
    config, proxy = member
    MemberConfig.key_path(config.folder).chmod(0o644)
    checks = examine_member(config.folder, proxy=proxy)
    assert failures(checks) == ["keys"]
    assert "mode 0644" in checks[0].detail and checks[0].fix == f"chmod 600 {config.folder / 'member.key'}"


def test_a_missing_key_fails_the_keys_check_alone(member):
    config, proxy = member
    MemberConfig.key_path(config.folder).unlink()
    checks = examine_member(config.folder, proxy=proxy)
    assert failures(checks) == ["keys"]
    assert "member.key is missing" in checks[0].detail


def test_an_unparsable_ladder_toml_fails_the_config_check(member):
    config, proxy = member
    (config.folder / "ladder.toml").write_text("[hub\naddress = ")
    checks = examine_member(config.folder, proxy=proxy)
    assert failures(checks) == ["config"]
    assert "not valid TOML" in checks[1].detail
    assert {c.ok for c in checks[2:]} == {None}  # what needs the config is not checked, not failed


def test_a_bad_table_fails_the_config_check_as_the_agent_reads_it(member):
    config, proxy = member
    with (config.folder / "ladder.toml").open("a") as toml:
        toml.write('[share]\nbogus = 1\n')
    checks = examine_member(config.folder, proxy=proxy)
    assert failures(checks) == ["config"]
    assert "unknown keys: bogus" in checks[1].detail


def test_an_unreachable_hub_fails_the_reachable_check(tmp_path, hub):
    config = member_folder(tmp_path, hub, free_port())  # nobody listens there
    checks = examine_member(config.folder, proxy=("127.0.0.1", free_port()))
    assert failures(checks) == ["hub reachable"]
    assert "Connection refused" in next(c for c in checks if c.name == "hub reachable").detail


def test_a_hub_answering_with_another_key_fails_the_key_check(tmp_path, hub):
    other = tmp_path / "other"
    other.mkdir()
    generate_self_signed(other / "c.pem", other / "k.pem", "127.0.0.1", [])
    with web_face(other / "c.pem", other / "k.pem") as port:
        config = member_folder(tmp_path, hub, port)
        checks = examine_member(config.folder, proxy=("127.0.0.1", free_port()))
    assert failures(checks) == ["hub key"]
    key = next(c for c in checks if c.name == "hub key")
    assert f"not the pinned {config.fingerprint}" in key.detail and "join again" in key.fix


def test_a_proxy_port_taken_by_a_stranger_fails_the_proxy_check(member):
    config, _ = member
    with socket.create_server(("127.0.0.1", 0)) as stranger:
        checks = examine_member(config.folder, proxy=stranger.getsockname())
    assert failures(checks) == ["proxy port"]
    assert "taken by another program" in checks[-1].detail


def test_a_proxy_port_held_by_this_folders_agent_is_fine(member):
    config, _ = member
    lock = config.lock()  # as a running agent holds it
    try:
        with socket.create_server(("127.0.0.1", 0)) as proxy:
            where = f"127.0.0.1:{proxy.getsockname()[1]}"
            config.status_path.write_text(json.dumps({"proxy": where}))
            assert config.agent_pid() is not None
            checks = examine_member(config.folder, proxy=proxy.getsockname())
    finally:
        lock.close()
    assert failures(checks) == []
    assert checks[-1].detail.endswith(f"its proxy on {where}")
    assert config.agent_pid() is None  # the lock went with the agent


@pytest.mark.parametrize(("off", "ok"), [(30, True), (120, None), (3600, False), (-3600, False)])
def test_the_clock_is_checked_against_the_hubs_date_header(tmp_path, hub, off, ok):
    with web_face(hub.cert, hub.key, skew=off) as port:
        config = member_folder(tmp_path, hub, port)
        checks = examine_member(config.folder, proxy=("127.0.0.1", free_port()))
    clock = next(c for c in checks if c.name == "clock")
    assert clock.ok is ok, clock.line()
    assert failures(checks) == ([] if ok is not False else ["clock"])
    assert ("behind" if off > 0 else "ahead of") in clock.detail


# -------------------------------------------------------------------- a hub


def test_a_sound_hub_folder_passes_every_check(hub):
    checks = examine_hub(hub.folder)
    assert [c.name for c in checks] == ["config", "keys", "certificate", "listen port", "store", "ledger"]
    assert all(c.ok for c in checks), [c.line() for c in checks]


def test_an_expired_certificate_fails_and_one_close_to_it_warns(hub):
    in_a_while = datetime.datetime.now(UTC) + datetime.timedelta(days=350)
    soon = examine_hub(hub.folder, now=lambda: in_a_while)
    assert failures(soon) == [] and soon[2].ok is None and "renew" in soon[2].fix
    next_year = datetime.datetime.now(UTC) + datetime.timedelta(days=400)
    checks = examine_hub(hub.folder, now=lambda: next_year)
    assert failures(checks) == ["certificate"]
    assert "expired on" in checks[2].detail


def test_a_tls_key_readable_by_others_fails_the_keys_check(hub):
    hub.key.chmod(0o644)
    checks = examine_hub(hub.folder)
    assert failures(checks) == ["keys"] and checks[1].fix == f"chmod 600 {hub.key}"


def test_the_listen_port_held_by_this_hub_is_fine_and_by_a_stranger_fails(hub):
    with web_face(hub.cert, hub.key, hub.listen[1]):
        checks = examine_hub(hub.folder)
    assert failures(checks) == [] and "held by this hub" in checks[3].detail
    with socket.create_server(hub.listen):  # it takes the connection, never the handshake
        checks = examine_hub(hub.folder, timeout=0.2)
    assert failures(checks) == ["listen port"]


def test_a_store_newer_than_this_ladder_fails_the_store_check(hub):
    with sqlite3.connect(hub.db_path) as db:
        db.execute("PRAGMA user_version = 99")
    checks = examine_hub(hub.folder)
    assert failures(checks) == ["store"] and checks[4].fix == "upgrade Ladder"
    assert checks[5].ok is None


def test_an_unparsable_hub_toml_fails_the_config_check(hub):
    (hub.folder / "hub.toml").write_text("[hub]\nname = \n")
    checks = examine_hub(hub.folder)
    assert failures(checks) == ["config"]


# -------------------------------------------------------------------- the CLI


def test_the_cli_prints_a_line_per_check_and_exits_1_on_a_failure(member):
    config, proxy = member
    args = ["doctor", "--dir", str(config.folder), "--proxy", str(proxy[1])]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0 and result.output.splitlines()[0].startswith("ok   keys: member.key")
    MemberConfig.key_path(config.folder).chmod(0o640)
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 1
    listed = json.loads(result.output)
    assert listed[0]["name"] == "keys" and listed[0]["ok"] is False and listed[0]["fix"]


def test_the_cli_finds_a_hub_folder_by_its_hub_toml(hub):
    assert examine(hub.folder)[0].name == "config"
    result = CliRunner().invoke(cli, ["hub", "doctor", "--dir", str(hub.folder)], catch_exceptions=False)
    assert result.exit_code == 0 and "ok   certificate: tls.crt" in result.output


def test_a_folder_of_neither_kind_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["doctor", "--dir", str(tmp_path)])
    assert result.exit_code == 1 and "holds neither a member" in str(result.exception)


def test_failed_counts_failures_not_warnings():
    assert not failed([Check("a", True, ""), Check("b", None, "look")])
    assert failed([Check("a", True, ""), Check("b", False, "broken", "fix it")])


# -------------------------------------------------------------------- JSON logs


def test_a_json_log_line_parses_with_its_fields():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("ladder.hub").makeRecord(
            "ladder.hub", logging.WARNING, __file__, 1, "link %s lost\nagain", ("alice",), sys.exc_info())
    line = JsonLogFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "ladder.hub"
    assert entry["message"] == "link alice lost\nagain"
    assert entry["exc"].startswith("Traceback") and "ValueError: boom" in entry["exc"]
    stamp = datetime.datetime.fromisoformat(entry["time"])
    assert stamp.utcoffset() == datetime.timedelta(0) and entry["time"].endswith("Z")
    assert abs(stamp.timestamp() - record.created) < 0.001
