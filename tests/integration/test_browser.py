"""A real browser and many connections through the proxy front, at the sharer's default limits.

Chromium (headless) loads one page whose 150 images sit on 30 host names,
through SOCKS5, through the HTTP proxy, through the PAC file and (as a
browser does with a PAC's plain `SOCKS`) through SOCKS4. Every image must
arrive: the page counts onload/onerror into its DOM (read with
--dump-dom), the page server logs each image served, and the exit's meter
must have counted them, so none went around Ladder. The names are 29
loopback addresses and `localhost`, which the exit resolves: /etc/hosts is
left alone. Chromium sends whatever it takes for loopback around a PAC,
whatever the bypass list says, so through the PAC the 30 hosts are
network-only services (`img<i>.sharer.ladder`, all on the page server):
names only the agent can reach. Then 1,000 idle SOCKS5 connections must
all stay open and still echo, refusals known before opening must reach
curl as SOCKS replies, and a stream over a small explicit limit waits for
a slot instead of being cut. Load times and memory per idle stream are
printed (run with -s), never asserted.
"""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
import struct
import subprocess
import sys
import time

import pytest
from harness import HERE, Proc, accepts, curl, free_port, ladder, rss, wait_for

CHROMIUM = shutil.which("chromium")
IMAGES, HOSTS = 150, 30
IDLE_CONNECTIONS, IDLE_SECONDS = 1000, 30
ECHO = """
import asyncio, sys
async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]), backlog=2048)
    await server.serve_forever()
asyncio.run(main())
"""


@pytest.fixture(scope="module", autouse=True)
def need_chromium():
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is required by the browser tests (.ci/run installs it)")


@pytest.fixture(scope="module")
def town(shared_network):
    """An exit at its default sharing limits (--allow-private: the sites are on loopback) and a user."""
    exit_ = shared_network.exit("sharer", "AA", "--allow-private")
    user = shared_network.user("browser")
    user.wait_exits(1)
    return shared_network, exit_, user


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    port = free_port()
    addresses = [f"127.0.0.{i}" for i in range(1, HOSTS + 1)] + ["::1"]
    proc = Proc("pages", [sys.executable, str(HERE / "page_origin.py"), str(port), *addresses],
                tmp_path_factory.mktemp("pages"))
    wait_for(lambda: "listening" in proc.output() or not proc.alive(), 10, "the page server")
    assert proc.alive(), proc.output()
    yield proc, port
    proc.stop()


@pytest.fixture(scope="module")
def published(town, pages):
    """HOSTS network-only services on the sharer, all served by the page server: names no browser resolves."""
    _, exit_, user = town
    _, port = pages
    names = [f"img{i}.{exit_.name}.ladder" for i in range(HOSTS)]
    for i in range(HOSTS):
        ladder("publish", "--dir", str(exit_.folder), f"127.0.0.1:{port}", "--name", f"img{i}")
    wait_for(lambda: set(names) <= {s["name"] for s in (user.status().get("services") or {}).get("listed", [])
                                    if s.get("online")}, 30, f"{user.name} to see the {HOSTS} services")
    return names


def carried(exit_) -> int:
    share = exit_.status().get("share") or {}
    return sum(user["bytes_today"] for user in share.get("users", {}).values())


@pytest.mark.parametrize("way", ["socks5", "http", "pac", "socks4"])
def test_chromium_loads_150_images_from_30_hosts(town, pages, published, tmp_path, way):
    _, exit_, user = town
    proc, port = pages
    host, proxy_port = user.proxy
    proxy = {"socks5": f"--proxy-server=socks5://{host}:{proxy_port}",
             "http": f"--proxy-server=http://{host}:{proxy_port}",
             "pac": f"--proxy-pac-url=http://{host}:{proxy_port}/proxy.pac",
             "socks4": f"--proxy-server=socks4://{host}:{proxy_port}"}[way]  # what old PACs led to
    if way == "pac":  # Chromium sends loopback around any PAC: here the hosts are services instead
        names = published
    else:
        names = [f"127.0.0.{i}:{port}" for i in range(1, HOSTS)] + [f"localhost:{port}"]
    url = f"http://{names[-1]}/page?hosts={','.join(names)}&images={IMAGES}&run={way}"
    before = carried(exit_)
    started = time.monotonic()
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", proxy, "--proxy-bypass-list=<-loopback>",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.monotonic() - started
    found = re.search(r'id="result">loaded=(\d+) failed=(\d+) ms=(\d+)<', result.stdout)
    assert found, (f"no result in the page ({result.returncode}):\n"
                   f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    loaded, failed, page_ms = map(int, found.groups())
    served = set(re.findall(rf"^served \S+ /img/{way}/(\d+)\.gif$", proc.output(), re.M))
    print(f"\nchromium via {way}: {loaded}/{IMAGES} images, page {page_ms} ms, process {elapsed:.1f} s")
    assert (loaded, failed) == (IMAGES, 0)
    assert len(served) == IMAGES, f"the page server saw {len(served)} of the images"
    if way != "pac":  # through Ladder, not around it: the exit carried at least the images' bytes
        wait_for(lambda: carried(exit_) - before > IMAGES * 43, 10, "the exit's meter to count the page")


@pytest.mark.parametrize("scheme", ["socks4", "socks4a"])
def test_curl_through_socks4_and_socks4a(town, pages, scheme):
    _, _, user = town
    _, port = pages
    result = curl("-x", f"{scheme}://{user.proxy[0]}:{user.proxy[1]}", f"http://localhost:{port}/page?hosts=a"
                  f"&images=1&run={scheme}", timeout=30)
    assert result.returncode == 0 and b'id="result"' in result.stdout, result.stderr


def test_refusals_known_before_opening_get_a_reply_not_a_reset(town):
    network, _, _ = town
    nowhere = network.user("nowhere", "--exit", "ZZ")
    for scheme, code in (("socks5h", b"(3)"), ("socks4a", b"request rejected"), ("http", b"response 503")):
        tunnel = ("-p",) if scheme == "http" else ()  # CONNECT: a page, since nothing was answered yet
        result = curl(*tunnel, "-x", f"{scheme}://{nowhere.proxy[0]}:{nowhere.proxy[1]}", "http://example.com/",
                      timeout=30)
        assert result.returncode != 0 and code in result.stderr and b"reset" not in result.stderr, \
            result.stderr


async def socks_connect(proxy, port: int):
    reader, writer = await asyncio.open_connection(*proxy)
    writer.write(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", port))
    assert await asyncio.wait_for(reader.readexactly(12), 30) == b"\x05\x00\x05\x00\x00\x01" + bytes(6)
    return reader, writer


async def echoes(reader, writer, text: bytes, timeout: float = 30) -> bool:
    writer.write(text)
    try:
        return await asyncio.wait_for(reader.readexactly(len(text)), timeout) == text
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        return False


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    port = free_port()
    proc = Proc("echo", [sys.executable, "-c", ECHO, str(port)], tmp_path_factory.mktemp("echo"))
    wait_for(lambda: accepts(port), 10, "the echo server")
    yield port
    proc.stop()


def test_a_thousand_idle_connections_all_stay_open(town, echo):
    network, exit_, user = town
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * IDLE_CONNECTIONS)), hard))
    pids = {"exit": exit_.proc.pid, "user": user.proc.pid, "hub": network.hub.pid}

    async def scenario():
        before = {name: rss(pid) // 1024 for name, pid in pids.items()}
        gate = asyncio.Semaphore(100)

        async def one(i: int):
            async with gate:
                reader, writer = await socks_connect(user.proxy, echo)
                assert await echoes(reader, writer, b"hello %d\n" % i), f"connection {i} did not echo"
                return reader, writer

        connections = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(IDLE_CONNECTIONS))), 240)
        await asyncio.sleep(2)  # let the heaps settle before measuring
        held = {name: rss(pid) // 1024 for name, pid in pids.items()}
        await asyncio.sleep(IDLE_SECONDS)
        alive = await asyncio.gather(*(echoes(r, w, b"still %d\n" % i)
                                       for i, (r, w) in enumerate(connections)))
        for _, writer in connections:
            writer.close()
        return before, held, sum(alive)

    before, held, alive = asyncio.run(scenario())
    for name in pids:
        each = (held[name] - before[name]) / IDLE_CONNECTIONS
        print(f"\n{name}: RSS {before[name] / 1024:.1f} MiB idle, {held[name] / 1024:.1f} MiB with "
              f"{IDLE_CONNECTIONS} open streams: {each:.1f} KiB each")
    assert alive == IDLE_CONNECTIONS, f"{alive} of {IDLE_CONNECTIONS} idle connections still echo"


def test_a_stream_over_the_limit_waits_for_a_slot(network, echo):
    network.exit("small", "BB", "--allow-private", "--user-streams", "4")
    user = network.user("patient")
    user.wait_exits(1)

    async def scenario():
        holders = [await socks_connect(user.proxy, echo) for _ in range(4)]
        for i, (reader, writer) in enumerate(holders):
            assert await echoes(reader, writer, b"holder %d\n" % i)
        reader, writer = await socks_connect(user.proxy, echo)  # the fifth: answered early, then waits
        assert not await echoes(reader, writer, b"fifth\n", timeout=2), "the fifth stream did not wait"
        holders[0][1].close()
        assert await reader.readexactly(6) == b"fifth\n", "the fifth stream did not get the freed slot"
        for _, w in holders[1:] + [(reader, writer)]:
            w.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
