"""The previous release and this one, really started side by side: they talk, or part with one line.

Release 0.1.0 is taken from this repository's history (`git archive` of its
last commit) and run from its own source; everything else is this release.
A hub of 0.1.0 serves an agent of this release, is upgraded under its
members (the store migrates, keeping a copy that 0.1.0 still opens) and
goes on serving the 0.1.0 exit it had; a 0.1.0 hub peers with one of this
release. A hub that speaks no protocol in common with an agent is refused by
the agent with one line naming both releases.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import LADDER, MARKER, Member, Network, curl, ladder, peers, wait_for

from ladder import __version__

PREVIOUS = "0.1.0"
REPO = Path(__file__).resolve().parents[2]


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False, timeout=60)


def last_commit_of(release: str) -> str:
    """The parent of the newest commit that changed `__version__` from `release`: its last commit."""
    changed = git("log", "--format=%H", "-S", f'__version__ = "{release}"', "--", "src/ladder/__init__.py")
    assert changed.returncode == 0 and changed.stdout.split(), (
        f"release {release} is not in this clone's history (a shallow clone?): {changed.stderr!r}")
    return changed.stdout.split()[0].decode() + "^"


def launcher_for(src: Path, before: str = "") -> tuple[str, ...]:
    """Python arguments that run the `ladder` of the source tree `src` (after the statements `before`)."""
    return ("-c", f"import runpy, sys; sys.path.insert(0, {str(src)!r}); {before}"
                  "runpy.run_module('ladder', run_name='__main__', alter_sys=True)")


@pytest.fixture(scope="module")
def previous(tmp_path_factory) -> tuple[str, ...]:
    """How to run release 0.1.0, from its source as it was committed."""
    where = tmp_path_factory.mktemp(f"ladder-{PREVIOUS}")
    archive = git("archive", last_commit_of(PREVIOUS), "src")
    assert archive.returncode == 0, archive.stderr
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True, timeout=60)
    src = where / "src"
    which = (f"import sys; sys.path.insert(0, {str(src)!r}); import ladder; "
             "print(ladder.__version__, ladder.__file__)")
    said = subprocess.run([sys.executable, "-c", which], capture_output=True, text=True, check=True,
                          timeout=60).stdout.split()
    assert said == [PREVIOUS, str(src / "ladder" / "__init__.py")] and __version__ != PREVIOUS, said
    return launcher_for(src)


def fetch_through(user: Member, origin, timeout: float = 30) -> None:
    def fetched() -> bool:
        got = curl("-x", user.socks, origin.url(), timeout=20)
        return got.returncode == 0 and MARKER.encode() in got.stdout
    wait_for(fetched, timeout, f"a fetch through {user.name}'s proxy")


def members(net: Network) -> dict[str, dict]:
    listed = json.loads(ladder("hub", "members", "--json", "--dir", str(net.hub_dir)).stdout)
    return {m["name"]: m for m in listed}


def test_a_hub_upgraded_under_its_members_keeps_them_and_its_store(tmp_path, previous, origin):
    net = Network(tmp_path, name="home", launcher=previous)
    try:
        net.exit("sharer", "DE", "--allow-private", launcher=previous)
        alice = net.user("alice")  # this release's agent, at 0.1.0's hub, through 0.1.0's exit
        alice.wait_exits(1)
        fetch_through(alice, origin)

        net.hub.stop()  # the operator upgrades: the same folder, this release's hub
        net.launcher = LADDER
        net.hub_command = net.hub_run()
        net.hub = net.start_hub()
        fetch_through(alice, origin)  # both agents came back by themselves
        wait_for(lambda: members(net)["alice"]["release"] == __version__, 10, "alice's agent to say which")
        assert members(net)["sharer"]["release"] is None  # 0.1.0 says none
        assert "from schema 5 to 6" in net.hub.output()

        # The copy the upgrade kept is what 0.1.0 left, and 0.1.0 still opens it.
        kept = tmp_path / "kept"
        shutil.copytree(net.hub_dir, kept, ignore=shutil.ignore_patterns("hub.db*"))
        shutil.copy(net.hub_dir / "hub.db.schema5", kept / "hub.db")
        listed = json.loads(ladder("hub", "members", "--json", "--dir", str(kept), launcher=previous).stdout)
        assert sorted(m["name"] for m in listed) == ["alice", "home", "sharer"]  # home: its search member
        assert "release" not in listed[0]  # 0.1.0's own listing, from 0.1.0's schema
    finally:
        net.close()


def test_a_hub_of_the_previous_release_peers_with_one_of_this_release(tmp_path, previous, origin):
    here, there = Network(tmp_path / "here", name="here"), Network(tmp_path / "there", name="there",
                                                                   launcher=previous)
    try:
        link = ladder("hub", "peer-invite", "here", "--dir", str(there.hub_dir),
                      launcher=previous).stdout.strip().splitlines()[-1]
        ladder("hub", "peer", "add", link, "--dir", str(here.hub_dir))  # here dials there
        wait_for(lambda: all(p["up"] for p in peers(here).values()) and peers(here), 20, "the peer link")
        there.exit("sharer", "DE", "--allow-private", launcher=previous)
        alice = here.user("alice")
        alice.wait_exits(1)
        assert alice.status()["exits"][0]["hub"] == "there"
        fetch_through(alice, origin)
    finally:
        here.close()
        there.close()


def test_an_agent_and_a_hub_with_no_protocol_in_common_part_with_one_line(tmp_path):
    # A hub of a release that moved on to protocols 7-8: this tree with what it says it speaks changed.
    future = ("from ladder.protocol import version; version.THIS = version.Speaks(7, 8, '9.0.0'); "
              "version.mismatch.__defaults__ = (version.THIS,); ")
    net = Network(tmp_path, launcher=launcher_for(REPO / "src", future))
    try:
        folder = net.join("alice")
        agent = net.start("alice", "up", "--dir", str(folder), python_args=LADDER)
        wait_for(lambda: not agent.alive(), 30, "the agent to give up")
        assert agent.popen.returncode != 0
        said = agent.output().strip().splitlines()[-1]
        assert said.endswith(f"the hub testhub runs Ladder 9.0.0 (protocol 7-8) and this agent runs Ladder "
                             f"{__version__} (protocol 1): they have no protocol in common; upgrade this "
                             "agent to the release the hub testhub runs or later"), said
    finally:
        net.close()
