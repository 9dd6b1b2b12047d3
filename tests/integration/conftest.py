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


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, driven by Playwright (a module's tests share it)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is required by the browser tests (.ci/run installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


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
