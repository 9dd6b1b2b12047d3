"""A private PostgreSQL cluster for the tests: Debian's server binaries, a temporary folder, trust auth.

PostgreSQL refuses to run as root, and the tests do run as root (CI, the lab), so the cluster's folder
belongs to the `postgres` system user and initdb, pg_ctl and the server run as that user (`runuser`);
run as anybody else, they run as that user. The server listens on 127.0.0.1 at a free port and on a
unix socket in its folder (never /var/run/postgresql, so it needs nothing of the machine's own
cluster), and is stopped by its PID. If it cannot be started the tests that need it fail: CI counts
a skip as a failure, and a store test that did not run on PostgreSQL proves nothing about it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def server_bin() -> Path:
    """The newest installed server's bin folder (Debian keeps each major version in its own)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        pytest.fail("PostgreSQL is not installed (.ci/run installs Debian's postgresql package)")
    return found[-1].parent


class Cluster:
    """One running server; `database()` makes a fresh, empty database and returns its URL, `schema()` a
    fresh schema in the shared database "tests" (a hundredth of the time: no copy of template1)."""

    def __init__(self) -> None:
        self.bin = server_bin()
        self.root = Path(tempfile.mkdtemp(prefix="ladder-pg-"))
        self.data = self.root / "data"
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        self.pid: int | None = None
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        # fsync off: a test cluster that loses its data in a power cut loses nothing of value.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                  "-w", "-t", str(int(START_TIMEOUT_S)), "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def _run(self, tool: str, *args: str) -> None:
        try:
            subprocess.run([*self.as_owner, str(self.bin / tool), *args], check=True, capture_output=True,
                           text=True, timeout=START_TIMEOUT_S + 10, cwd=self.root)
        except subprocess.CalledProcessError as exc:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            self.stop()
            pytest.fail(f"PostgreSQL's {tool} failed: {exc.stderr.strip()[-2000:]}\n{tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new empty database's URL."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def schema(self) -> str:
        """The URL of a new, empty schema, which its connections use for everything (search_path)."""
        import psycopg

        name = f"s_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            if not db.execute("SELECT 1 FROM pg_database WHERE datname = 'tests'").fetchone():
                db.execute("CREATE DATABASE tests")
        with psycopg.connect(self.url("tests"), autocommit=True) as db:
            db.execute(f"CREATE SCHEMA {name}")
        return f"{self.url('tests')}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, which ends its own children), then remove the folder."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)
                deadline = time.monotonic() + STOP_TIMEOUT_S
                while time.monotonic() < deadline and (self.data / "postmaster.pid").exists():
                    time.sleep(0.05)
                if (self.data / "postmaster.pid").exists():
                    os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
