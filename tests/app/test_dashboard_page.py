"""The dashboard's page in both languages: every label translated, nothing from a request unescaped."""

from __future__ import annotations

import json
import re

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from ladder.app.dashboard import render
from ladder.app.i18n import STRINGS, language


def _visible_text(page: str) -> str:
    tree = HTMLParser(page)
    for node in tree.css("script, style"):
        node.decompose()
    texts = [tree.body.text(separator="\n")] if tree.body else []
    for node in HTMLParser(page).css("[placeholder], [data-on], [data-off], [alt], title"):
        texts += [node.attributes.get(a) or "" for a in ("placeholder", "data-on", "data-off", "alt")]
        texts.append(node.text())
    return "\n".join(texts)


def test_both_languages_have_the_same_words():
    assert set(STRINGS["en"]) == set(STRINGS["zh"])
    assert all(STRINGS["zh"].values()) and all(STRINGS["en"].values())


def test_the_chinese_page_shows_no_english_string():
    page = _visible_text(render("zh", "token"))
    # English words the Chinese keeps (the name Ladder, example.com) are not untranslated.
    english = {v for k, v in STRINGS["en"].items()
               if v not in STRINGS["zh"][k] and re.search("[A-Za-z]{3}", v)}
    shown = sorted(v for v in english if v in page)
    assert not shown, f"English on the Chinese page: {shown}"
    assert "连接" in page and "共享我的网络" in page


def test_the_english_page_shows_its_labels_and_no_chinese():
    page = _visible_text(render("en", "token"))
    assert "Share my connection" in page and "Open connections" in page
    assert not re.search("[\u4e00-\u9fff]", page)


def test_the_page_hands_its_script_the_strings_and_the_token_without_inline_code():
    page = render("zh", "tok'en<")
    tree = HTMLParser(page)
    scripts = tree.css("script")
    assert [s.attributes.get("type") for s in scripts if not s.attributes.get("src")] == ["application/json"]
    boot = json.loads(tree.css_first("#boot").text())
    assert boot["csrf"] == "tok'en<" and boot["strings"] == STRINGS["zh"] and boot["lang"] == "zh"
    assert "<\u002fscript" not in tree.css_first("#boot").text()


def test_every_control_can_be_found_by_its_data_test_name():
    tree = HTMLParser(render("en", "t"))
    names = [n.attributes["data-test"] for n in tree.css("[data-test]")]
    assert len(names) == len(set(names)), "a data-test name is used twice"
    for needed in ("connect", "exit-choice", "where-host", "graph", "connections", "share-toggle",
                   "policy-form", "device-name", "device-add", "service-name", "service-publish",
                   "search-words", "credits-verify"):
        assert needed in names


def test_language_follows_the_browser():
    assert language("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert language("en-US,en;q=0.9,zh;q=0.5") == "en"
    assert language("") == "en"
    assert language("fr") == "en"
