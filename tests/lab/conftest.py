"""The firewall lab's session fixture: build the lab once, tear it down after the session.

Teardown also runs when setup fails half-way, and leftovers of an earlier,
interrupted run are removed first (netlab.cleanup). Without root or a
needed tool every lab test skips with one line.
"""

from __future__ import annotations

import netlab
import pytest
from ladderlab import Lab, preconditions


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    why = preconditions()
    if why:
        pytest.skip(why)
    netlab.cleanup()  # what an earlier, interrupted run left
    why = netlab.address_space_unused()
    if why:
        pytest.skip(why)
    running = Lab(tmp_path_factory.mktemp("lab"))
    try:
        running.start()
        yield running
    finally:
        try:
            running.stop()
        finally:
            netlab.cleanup()
