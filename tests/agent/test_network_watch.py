"""An agent waiting out its backoff dials at once when the machine's network changes (Linux netlink).

The change is made in a network namespace of this test's own (`unshare -n`,
unnamed, gone with the process), so nothing outside it is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import asyncio, subprocess, sys, time
    from ladder.agent.reconnect import NetworkWatch, pause

    async def main():
        network_changed = asyncio.Event()
        watch = NetworkWatch.start(network_changed.set)
        assert watch is not None, "no netlink route socket"
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, subprocess.run, ["ip", "link", "set", "lo", "up"])  # down in a new namespace
        started = time.monotonic()
        await pause(30.0, network_changed)
        print(f"waited {time.monotonic() - started:.2f}")
        watch.close()

    if sys.argv[1] == "uvloop":  # as `ladder up` runs
        import uvloop
        uvloop.install()
    asyncio.run(main())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("unshare")
                    or not shutil.which("ip"), reason="needs Linux, root, unshare and ip")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_network_change_cuts_the_backoff_short(loop):
    result = subprocess.run(["unshare", "-n", sys.executable, "-c", SCRIPT, loop],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    waited = float(result.stdout.split()[-1])
    assert waited < 5, f"the agent waited {waited} s of a 30 s backoff although the network changed"
