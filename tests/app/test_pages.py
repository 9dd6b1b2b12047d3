"""Both pages, the member's dashboard and the hub's admin page, in both languages: every label
translated, every control findable, nothing from a request unescaped."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from ladder.app import admin, dashboard
from ladder.app.i18n import ADMIN, STRINGS, language


@dataclass
class Page:
    render: Callable[[str, str], str]
    strings: dict[str, dict[str, str]]
    english: tuple[str, ...]  # labels the English page shows
    chinese: tuple[str, ...]
    controls: tuple[str, ...]  # data-test names the browser tests rely on


PAGES = {
    "dashboard": Page(dashboard.render, STRINGS, ("Share my connection", "Open connections"),
                      ("连接", "共享我的网络"),
                      ("connect", "exit-choice", "where-host", "graph", "connections", "share-toggle",
                       "policy-form", "device-name", "device-add", "service-name", "service-publish",
                       "search-words", "credits-verify")),
    "admin": Page(admin.render, ADMIN, ("Members", "Create invite", "Verify the whole ledger"),
                  ("成员", "创建邀请", "校验整个账本"),
                  ("member-list", "exit-list", "invite-name", "invite-uses", "invite-expires",
                   "invite-create", "invite-qr", "invite-link", "invite-list", "device-list", "peer-list",
                   "route-list", "ledger-entries", "ledger-verify", "health-links", "health-store")),
}
pages = pytest.mark.parametrize("page", PAGES.values(), ids=PAGES.keys())


def _visible_text(page: str) -> str:
    tree = HTMLParser(page)
    for node in tree.css("script, style"):
        node.decompose()
    texts = [tree.body.text(separator="\n")] if tree.body else []
    for node in HTMLParser(page).css("[placeholder], [data-on], [data-off], [alt], title"):
        texts += [node.attributes.get(a) or "" for a in ("placeholder", "data-on", "data-off", "alt")]
        texts.append(node.text())
    return "\n".join(texts)


@pages
def test_both_languages_have_the_same_words(page):
    assert set(page.strings["en"]) == set(page.strings["zh"])
    assert all(page.strings["zh"].values()) and all(page.strings["en"].values())


@pages
def test_the_chinese_page_shows_no_english_string(page):
    shown_text = _visible_text(page.render("zh", "token"))
    # English words the Chinese keeps (the name Ladder, example.com) are not untranslated.
    english = {v for k, v in page.strings["en"].items()
               if v not in page.strings["zh"][k] and re.search("[A-Za-z]{3}", v)}
    shown = sorted(v for v in english if v in shown_text)
    assert not shown, f"English on the Chinese page: {shown}"
    assert all(label in shown_text for label in page.chinese)


@pages
def test_the_english_page_shows_its_labels_and_no_chinese(page):
    shown_text = _visible_text(page.render("en", "token"))
    assert all(label in shown_text for label in page.english)
    assert not re.search("[\u4e00-\u9fff]", shown_text)


@pages
def test_the_page_hands_its_script_the_strings_and_the_token_without_inline_code(page):
    tree = HTMLParser(page.render("zh", "tok'en<"))
    scripts = tree.css("script")
    assert [s.attributes.get("type") for s in scripts if not s.attributes.get("src")] == ["application/json"]
    boot = json.loads(tree.css_first("#boot").text())
    assert boot["csrf"] == "tok'en<" and boot["strings"] == page.strings["zh"] and boot["lang"] == "zh"
    assert "<\u002fscript" not in tree.css_first("#boot").text()


@pages
def test_every_control_can_be_found_by_its_data_test_name(page):
    tree = HTMLParser(page.render("en", "t"))
    names = [n.attributes["data-test"] for n in tree.css("[data-test]")]
    assert len(names) == len(set(names)), "a data-test name is used twice"
    missing = [name for name in page.controls if name not in names]
    assert not missing


def test_language_follows_the_browser():
    assert language("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert language("en-US,en;q=0.9,zh;q=0.5") == "en"
    assert language("") == "en"
    assert language("fr") == "en"
