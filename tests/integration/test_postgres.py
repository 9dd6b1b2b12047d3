"""Two hub processes on one PostgreSQL database (issue 14, item 6): one hub that outgrew a machine.

Each hub has its own folder, TLS key and port (`hub init --db` with the same URL); members, invites
and devices are the database's. An invite made through one hub's CLI is redeemed through the other,
once; a member revoked through one loses its link to the other within seconds (the other's 1 s poll of
data_version); a device added through one is served by the other (the device key is the database's).
The cluster is the store tests' private one (pgcluster.py); it failing to start fails these tests.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
from harness import Member, Proc, accepts, curl, free_port, ladder, wait_for
from pgcluster import pg_cluster  # noqa: F401  (the fixture)

from ladder.config import InviteLink

REVOKED_WITHIN_S = 5.0  # the poll is 1 s; the rest is the link's close reaching the agent


class Hub:
    def __init__(self, root: Path, name: str, database: str):
        self.root = root
        self.folder = root / name
        self.port = free_port()
        init = ladder("hub", "init", "--dir", str(self.folder), "--name", name, "--db", database,
                      "--listen", f"127.0.0.1:{self.port}", "--public-address", f"127.0.0.1:{self.port}")
        self.fingerprint = re.search(r"key fingerprint: (\S+)", init.stdout)[1]
        run = [sys.executable, "-m", "ladder", "hub", "run", "--dir", str(self.folder)]
        self.proc = Proc(name, run, root)
        wait_for(lambda: accepts(self.port) or not self.proc.alive(), 20, f"{name} to listen")
        assert self.proc.alive(), f"{name} died:\n{self.proc.output()}"

    def cli(self, *args: str, check: bool = True):
        return ladder("hub", *args, "--dir", str(self.folder), check=check)

    def invite(self, name: str) -> str:
        return self.cli("invite", name).stdout.strip()

    def link_for(self, link: str) -> str:
        """The invite `link` (made through another hub) as a link to this hub: its token, this address."""
        made = InviteLink.parse(link)
        return str(InviteLink(made.token, ("127.0.0.1", self.port), self.fingerprint, made.hub_name))


class Pair:
    def __init__(self, root: Path, database: str):
        self.root = root
        self.hubs = [Hub(root, "hub1", database), Hub(root, "hub2", database)]
        self.members: list[Member] = []

    def member(self, name: str, link: str) -> Member:
        folder = self.root / name
        ladder("join", link, "--dir", str(folder))
        proc = Proc(name, [sys.executable, "-m", "ladder", "up", "--dir", str(folder), "--proxy",
                           f"127.0.0.1:{free_port()}"], self.root)
        member = Member(name, folder, proc)
        self.members.append(member)
        member.wait_up()
        return member

    def close(self) -> None:
        procs = [m.proc for m in self.members] + [h.proc for h in self.hubs]
        for proc in procs:
            proc.stop()
        for proc in procs:
            proc.check_log()


@pytest.fixture
def pair(pg_cluster, tmp_path):  # noqa: F811  (pytest's fixture by name)
    hubs = Pair(tmp_path, pg_cluster.database())
    yield hubs
    hubs.close()


def test_an_invite_made_through_one_hub_is_redeemed_once_through_the_other(pair):
    hub1, hub2 = pair.hubs
    link = hub1.invite("alice")
    alice = pair.member("alice", hub2.link_for(link))
    assert f"127.0.0.1:{hub2.port}" in (alice.folder / "ladder.toml").read_text()
    again = ladder("join", link, "--dir", str(pair.root / "mallory"), check=False)
    assert again.returncode == 1 and "already been used" in again.stderr, again.stderr
    listed = json.loads(hub1.cli("members", "--json").stdout)
    people = [(m["name"], m["online"]) for m in listed if m["name"] not in ("hub1", "hub2")]
    assert people == [("alice", "user")]  # and each hub process's search member, named after it


def test_a_member_revoked_through_one_hub_loses_its_link_to_the_other_within_seconds(pair):
    hub1, hub2 = pair.hubs
    bob = pair.member("bob", hub1.link_for(hub2.invite("bob")))
    started = time.monotonic()
    hub2.cli("revoke", "bob")
    wait_for(lambda: not bob.proc.alive(), REVOKED_WITHIN_S + 5, "bob's agent to be dropped by hub1")
    took = time.monotonic() - started
    assert took < REVOKED_WITHIN_S, f"hub1 dropped bob {took:.1f} s after hub2's CLI revoked him"
    assert "did not accept this member's key" in bob.proc.output()
    assert "bob was revoked: dropping its link" in hub1.proc.output()


def test_a_device_added_through_one_hub_is_served_by_the_other(pair):
    hub1, hub2 = pair.hubs
    pair.member("carol", hub1.invite("carol"))
    added = json.loads(hub1.cli("device", "add", "phone", "--owner", "carol", "--json").stdout)
    token = added["subscription"].rpartition("/s/")[2]
    for hub in (hub2, hub1):
        got = curl("-k", "-sS", "-D", "-", f"https://127.0.0.1:{hub.port}/s/{token}?format=sing-box")
        assert got.stdout.startswith(b"HTTP/1.1 200 OK"), got.stdout[:200]
        assert added["password"].encode() in got.stdout
    missing = curl("-k", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                   f"https://127.0.0.1:{hub2.port}/s/{token[:-2]}xx?format=sing-box")
    assert missing.stdout != b"200"


def test_hub_init_saves_the_url_privately_or_says_in_one_line_why_it_cannot_use_it(pg_cluster, tmp_path):  # noqa: F811
    database = pg_cluster.database()
    ladder("hub", "init", "--dir", str(tmp_path / "ok"), "--db", database, "--listen", "127.0.0.1:4443")
    saved = tmp_path / "ok" / "hub.toml"
    assert f"database = {json.dumps(database)}" in saved.read_text()
    assert saved.stat().st_mode & 0o777 == 0o600  # the URL may hold a password
    dead = f"postgresql://ladder:hunter2@127.0.0.1:{free_port()}/hub"
    failed = ladder("hub", "init", "--dir", str(tmp_path / "dead"), "--db", dead,
                    "--listen", "127.0.0.1:4443", check=False)
    assert failed.returncode == 1 and not (tmp_path / "dead" / "hub.toml").exists()
    assert failed.stderr.startswith("ladder: error: cannot connect to postgresql://ladder:***@127.0.0.1:")
    assert failed.stderr.count("\n") == 1 and "hunter2" not in failed.stderr
