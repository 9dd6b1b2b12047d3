"""The hub's admin page in a real browser: Playwright driving Debian's chromium against a real hub.

The operator's actions on the page are checked outside it: the invite's
QR code, read back from the screen, is a link `ladder join` accepts; a
device revoked on the page is revoked in the store. Screenshots, wide and
phone-sized, go to $LADDER_SCREENSHOTS when it is set.
"""

from __future__ import annotations

import io
import json

import pytest
from harness import ladder, snap
from playwright.sync_api import Browser, Page
from test_dashboard_browser import PHONE, WIDE, english_shown

from ladder.app.i18n import ADMIN


@pytest.fixture(scope="module")
def town(shared_network, origin):
    shared_network.exit("aa", "AA", "--allow-private")
    ladder("hub", "device", "add", "phone", "--owner", "aa", "--dir", str(shared_network.hub_dir))
    return shared_network


def open_page(browser: Browser, net, locale: str = "en-US", viewport: dict = WIDE) -> Page:
    url = json.loads(ladder("hub", "admin-url", "--dir", str(net.hub_dir), "--json").stdout)["url"]
    page = browser.new_context(locale=locale, viewport=viewport).new_page()
    page.goto(url)
    page.wait_for_selector("[data-test=member-list] tr[data-member=aa]")
    return page


def test_an_invite_made_on_the_page_shows_a_qr_code_that_a_member_joins_with(browser, town, tmp_path):
    import zxingcpp
    from PIL import Image

    page = open_page(browser, town)
    page.fill("[data-test=invite-name]", "hal")
    page.fill("[data-test=invite-uses]", "2")
    page.click("[data-test=invite-create]")
    qr = page.wait_for_selector("[data-test=invite-qr][src^='data:image/svg']")
    shown = page.inner_text("[data-test=invite-link]")
    decoded = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.screenshot())))]
    assert decoded == [shown] and shown.startswith("ladder://"), (decoded, shown)
    page.wait_for_selector("[data-test=invite-list] tr[data-invite=hal]")
    snap(page, "admin-wide")
    ladder("join", decoded[0], "--dir", str(tmp_path / "hal"))
    page.wait_for_selector("[data-test=member-list] tr[data-member=hal]")


def test_a_device_revoked_on_the_page_is_revoked(browser, town):
    page = open_page(browser, town)
    page.on("dialog", lambda dialog: dialog.accept())  # "Revoke this device?"
    page.click("[data-test=device-list] tr[data-device='aa/phone'] [data-test=device-revoke]")
    page.wait_for_selector("[data-test=device-list] tr[data-device='aa/phone'][data-state=revoked]")
    listed = json.loads(ladder("hub", "devices", "--dir", str(town.hub_dir), "--json").stdout)
    assert [d["revoked"] for d in listed if d["name"] == "phone"] == [True]


def test_the_ledger_verifies_from_the_page(browser, town):
    page = open_page(browser, town)
    page.click("[data-test=ledger-verify]")
    page.wait_for_selector("[data-test=ledger-note][data-verified=true]")


def test_the_chinese_page_has_no_untranslated_string(browser, town):
    page = open_page(browser, town, locale="zh-CN")
    # The page's own words, the filled tables' included, without the network's (names, addresses, keys).
    text = page.evaluate("""() => { const copy = document.body.cloneNode(true);
        copy.querySelectorAll('script, code, #hub-name, #health-address').forEach((e) => e.remove());
        copy.querySelectorAll('tbody tr').forEach((tr) => tr.cells[0] && tr.cells[0].remove());
        return copy.textContent; }""")
    assert "创建邀请" in text and "在线" in text
    assert not english_shown(text, ADMIN), f"English on the Chinese page: {english_shown(text, ADMIN)}"


def test_a_phone_sized_screen_shows_every_control(browser, town):
    page = open_page(browser, town, viewport=PHONE)
    snap(page, "admin-phone")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide: it scrolls sideways"
    outside = page.evaluate("""() => [...document.querySelectorAll('main button, main input')]
        .filter((e) => e.offsetParent !== null)
        .map((e) => [e.dataset.test || e.name, e.getBoundingClientRect()])
        .filter(([, r]) => r.left < 0 || r.right > window.innerWidth || r.width < 8 || r.height < 8)
        .map(([name]) => name)""")
    assert not outside, f"controls cut off or squeezed on a {PHONE['width']} px screen: {outside}"
