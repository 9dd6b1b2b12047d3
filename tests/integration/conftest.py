"""Fixtures for the integration tests; the helpers live in harness.py."""

from __future__ import annotations

import shutil

import pytest
from harness import Network, Origin


@pytest.fixture(scope="session", autouse=True)
def need_curl():
    if shutil.which("curl") is None:
        pytest.fail("curl is required by the integration tests (.ci/run installs it)")


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    server = Origin(tmp_path_factory.mktemp("origin"))
    yield server
    server.proc.stop()
    server.proc.check_log(expected=("ConnectionResetError", "BrokenPipeError"))


@pytest.fixture
def network(tmp_path):
    net = Network(tmp_path)
    yield net
    net.close()


@pytest.fixture(scope="module")
def shared_network(tmp_path_factory):
    net = Network(tmp_path_factory.mktemp("net"))
    yield net
    net.close()
