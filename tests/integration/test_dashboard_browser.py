"""The member's dashboard in a real browser: Playwright driving Debian's chromium against real agents.

A hub, two exits (AA and BB) and a user, each a `ladder up` process with
its dashboard on a free loopback port. Every check acts on the page as a
person would (clicks, forms) and then looks outside the page for the
effect: curl through the user's proxy, the exits' own status, a stock
Trojan client for the phone's QR code. Screenshots of each page, wide and
phone-sized, go to $LADDER_SCREENSHOTS when it is set (docs/img holds the
committed ones).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import urllib.parse

import pytest
from harness import MARKER, curl, ladder, snap, wait_for
from playwright.sync_api import Browser, Page
from test_devices import start_client

from ladder.app.i18n import STRINGS

WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 780}
GRAPH = "document.querySelector('[data-test=graph]').dataset"  # what the graph drew last, for the checks


@pytest.fixture(scope="module")
def town(shared_network, origin):
    aa = shared_network.exit("aa", "AA", "--allow-private")
    bb = shared_network.exit("bb", "BB", "--allow-private")
    ed = shared_network.user("ed")
    ed.wait_exits(2)
    return shared_network, aa, bb, ed


def dashboard_url(member) -> str:
    state = json.loads(ladder("status", "--json", "--dir", str(member.folder), check=False).stdout)
    assert state.get("dashboard"), f"`ladder status --json` names no dashboard: {state}"
    return state["dashboard"]


def open_page(browser: Browser, member, locale: str = "en-US", viewport: dict = WIDE) -> Page:
    page = browser.new_context(locale=locale, viewport=viewport).new_page()
    page.goto(dashboard_url(member))
    page.wait_for_selector("[data-test=link-state][data-state]")
    return page


def fetch(member, url: str, *args: str) -> subprocess.CompletedProcess:
    return curl("-s", "-x", member.socks, "--max-time", "10", *args, url)


def test_connect_and_disconnect(browser, town, origin):
    _, _, _, ed = town
    page = open_page(browser, ed)
    assert fetch(ed, origin.url()).stdout.decode().count(MARKER) == 1
    page.click("[data-test=connect]")
    page.wait_for_selector("[data-test=link-state][data-state=off]")
    refused = fetch(ed, origin.url())
    assert refused.returncode != 0, "a fetch went through while the dashboard said disconnected"
    page.click("[data-test=connect]")
    page.wait_for_selector("[data-test=link-state][data-state=up]", timeout=20_000)
    wait_for(lambda: MARKER in fetch(ed, origin.url()).stdout.decode(), 15, "a fetch after connecting again")


def _bytes_for(exit_, user: str) -> int:
    users = ((exit_.status().get("share") or {}).get("users") or {}).values()
    return sum(u.get("bytes_today", 0) for u in users if u.get("name") == user)


def test_the_exit_picked_on_the_page_carries_the_next_fetch(browser, town, origin):
    _, aa, bb, ed = town
    page = open_page(browser, ed)
    # Two-letter member names read as countries (as --exit reads them): the exits are picked by country.
    for chosen, other, country in ((bb, aa, "BB"), (aa, bb, "AA")):
        page.select_option("[data-test=exit-choice]", country)
        wait_for(lambda c=country: ed.status().get("exit_choice") == c or page.is_visible("#error"), 10,
                 f"{country} chosen")
        assert not page.is_visible("#error"), page.inner_text("#error")
        before_chosen, before_other = _bytes_for(chosen, "ed"), _bytes_for(other, "ed")
        assert fetch(ed, origin.url("s1.bin"), "-o", "/dev/null").returncode == 0
        wait_for(lambda c=chosen, b=before_chosen: _bytes_for(c, "ed") > b + 1_000_000, 15,
                 f"{chosen.name} to count ed's megabyte")
        # Its status may still be counting an earlier page (a few hundred bytes), never the megabyte.
        assert _bytes_for(other, "ed") - before_other < 100_000, f"{other.name} carried some of it too"
    page.select_option("[data-test=exit-choice]", "auto")


def test_where_would_this_site_go(browser, town):
    _, _, _, ed = town
    page = open_page(browser, ed)
    page.fill("[data-test=where-host]", "example.com")
    page.click("[data-test=where-ask]")
    answer = page.wait_for_selector("[data-test=where-answer][data-action]")
    assert answer.get_attribute("data-action") == "exit"
    assert "example.com" in answer.inner_text()


def test_the_graph_moves_and_a_listed_connection_can_be_cut(browser, town, origin):
    _, _, _, ed = town
    page = open_page(browser, ed)
    download = subprocess.Popen(["curl", "-s", "-x", ed.socks, "--limit-rate", "2M", "-o", "/dev/null",
                                 origin.url("big.bin")], stderr=subprocess.PIPE)
    try:
        page.wait_for_function(f"() => Number({GRAPH}.down) > 100000",
                               timeout=15_000)
        row = page.wait_for_selector("[data-test=connection][data-host='127.0.0.1']", timeout=10_000)
        snap(page, "dashboard-wide")
        row.query_selector("[data-test=connection-close]").click()
        code = download.wait(timeout=15)
        assert code != 0, "the download finished although its connection was closed from the page"
    finally:
        if download.poll() is None:
            download.kill()
            download.wait()


def test_sharing_switched_off_on_the_page_refuses_new_streams(browser, town, origin):
    _, aa, _, ed = town
    page = open_page(browser, aa)
    page.wait_for_selector("[data-test=share-toggle][data-state=on]")
    page.click("[data-test=share-toggle]")
    page.wait_for_selector("[data-test=share-toggle][data-state=off]")
    user_page = open_page(browser, ed)
    try:
        wait_for(lambda: all(e["name"] != "aa" for e in ed.status().get("exits", [])), 15,
                 "aa's exit to leave ed's directory")
        user_page.evaluate("""fetch('/api/exit', {method: 'POST', credentials: 'same-origin',
            headers: {'X-Ladder-CSRF': JSON.parse(document.getElementById('boot').textContent).csrf,
                      'Content-Type': 'application/json'}, body: JSON.stringify({choice: 'AA'})})""")
        wait_for(lambda: ed.status().get("exit_choice") == "AA", 10, "AA chosen")
        refused = fetch(ed, origin.url())
        assert MARKER.encode() not in refused.stdout, "a stream went through an exit switched off on its page"
    finally:
        page.click("[data-test=share-toggle]")
        page.wait_for_selector("[data-test=share-toggle][data-state=on]")
        user_page.select_option("[data-test=exit-choice]", "auto")
        ed.wait_exits(2)


def test_a_phone_added_on_the_page_scans_into_a_link_a_stock_client_takes(browser, town, origin):
    import zxingcpp
    from PIL import Image

    net, _, _, ed = town
    page = open_page(browser, ed)
    page.fill("[data-test=device-name]", "phone")
    page.click("[data-test=device-add]")
    qr = page.wait_for_selector("[data-test=device-qr][src^='data:image/svg']")
    shown = page.inner_text("[data-test=device-link]")
    decoded = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.screenshot())))]
    assert decoded == [shown] and shown.startswith("trojan://"), (decoded, shown)
    page.wait_for_selector("[data-test=device-list] tr[data-device]")
    password = urllib.parse.unquote(urllib.parse.urlsplit(shown).username)
    port, _ = start_client(net, "trojan", password)
    result = curl("-s", "--socks5-hostname", f"127.0.0.1:{port}", "--max-time", "15", origin.url())
    assert MARKER in result.stdout.decode(), f"Debian's trojan with the scanned link: {result.stderr!r}"


def test_a_service_published_on_the_page_is_reachable_by_name(browser, town, origin):
    _, _, _, ed = town
    page = open_page(browser, ed)
    page.fill("[data-test=service-name]", "shop")
    page.fill("[data-test=service-address]", f"127.0.0.1:{origin.port}")
    page.fill("[data-test=service-title]", "Ed's shop")
    page.click("[data-test=service-publish]")
    page.wait_for_selector("[data-test=service-list] tr[data-service=shop]")
    wait_for(lambda: MARKER in fetch(ed, "http://shop.ed.ladder/").stdout.decode(), 15,
             "shop.ed.ladder to answer through the proxy")


def english_shown(text: str, table: dict[str, dict[str, str]] = STRINGS) -> list[str]:
    """The table's English strings (other than names the Chinese keeps) that `text` shows."""
    en, zh = table["en"], table["zh"]
    return sorted(v for k, v in en.items() if v not in zh[k] and re.search("[A-Za-z]{3}", v) and v in text)


def test_the_chinese_page_has_no_untranslated_string(browser, town):
    _, aa, _, _ = town
    page = open_page(browser, aa, locale="zh-CN")
    page.wait_for_function(f"() => Number({GRAPH}.samples) >= 2")
    snap(page, "dashboard-zh-wide")
    # The page's own words, without the network's (a service's title, a hub's name are as published).
    text = page.evaluate("""() => { const copy = document.body.cloneNode(true);
        copy.querySelectorAll('script, tbody, ol, dd, code, select').forEach((e) => e.remove());
        return copy.textContent; }""")
    assert "共享我的网络" in text
    assert not english_shown(text), f"English on the Chinese page: {english_shown(text)}"


def test_a_phone_sized_screen_shows_every_control(browser, town):
    _, aa, _, _ = town
    page = open_page(browser, aa, viewport=PHONE)
    page.wait_for_function(f"() => Number({GRAPH}.samples) >= 2")
    snap(page, "dashboard-phone")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide: it scrolls sideways"
    outside = page.evaluate("""() => [...document.querySelectorAll('main button, main input, main select')]
        .filter((e) => e.offsetParent !== null && !e.closest('table'))
        .map((e) => [e.dataset.test || e.name, e.getBoundingClientRect()])
        .filter(([, r]) => r.left < 0 || r.right > window.innerWidth || r.width < 8 || r.height < 8)
        .map(([name]) => name)""")
    assert not outside, f"controls cut off or squeezed on a {PHONE['width']} px screen: {outside}"
