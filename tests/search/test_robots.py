"""Tests for ladder.search.robots: RFC 9309 as the crawler reads it, for the agent LadderBot."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.search.robots import Robots, Rule, parse_robots


def allowed(text: str, *paths: str) -> list[bool]:
    robots = parse_robots(text)
    return [robots.allowed(path) for path in paths]


def test_no_rules_allow_everything():
    assert allowed("", "/", "/any/thing?q=1") == [True, True]
    assert allowed("User-agent: *\nDisallow:\n", "/", "/x") == [True, True]  # an empty Disallow allows


def test_disallow_all_but_robots_txt_itself():
    assert allowed("User-agent: *\nDisallow: /\n", "/", "/a", "/robots.txt") == [False, False, True]


def test_our_group_wins_over_star_and_others_are_ignored():
    text = """User-agent: *
Disallow: /
User-agent: Googlebot
Allow: /
User-agent: ladderbot/1.0
Disallow: /private
"""
    assert allowed(text, "/", "/private/x") == [True, False]
    # Without a group of ours, the * group applies.
    assert allowed(text.replace("ladderbot/1.0", "OtherBot"), "/") == [False]


def test_groups_naming_us_are_combined_and_user_agents_stack():
    text = """User-agent: a
User-agent: LadderBot
Disallow: /one
User-agent: b
Disallow: /two
User-agent: LADDERBOT
Disallow: /three
"""
    assert allowed(text, "/one", "/two", "/three", "/four") == [False, True, False, True]


def test_longest_match_wins_and_allow_wins_a_tie():
    text = ("User-agent: *\nDisallow: /shop\nAllow: /shop/free\nDisallow: /shop/free/not\n"
            "Allow: /x\nDisallow: /x\n")
    assert allowed(text, "/shop", "/shop/cart", "/shop/free/1", "/shop/free/not/2", "/x") == [
        False, False, True, False, True]


def test_wildcards_and_end_anchor():
    text = "User-agent: *\nDisallow: /*.gif$\nDisallow: /a*b*c\nAllow: /a*b*c$\nDisallow: /end$\n"
    assert allowed(text, "/x.gif", "/x.gif?v=1", "/x.gifs", "/a1b2c3", "/abc", "/end", "/end/") == [
        False, True, True, False, True, False, True]
    assert allowed("User-agent: *\nDisallow: /*?\n", "/p?q", "/p") == [False, True]  # queries are matched
    # The longest pattern wins even when a wildcard makes it match more.
    text = "User-agent: *\nAllow: /p\nDisallow: /*private\n"
    assert allowed(text, "/p/private", "/p/public") == [False, True]


def test_percent_encoding_and_non_ascii_compare_as_one():
    text = "User-agent: *\nDisallow: /ä\nDisallow: /a%3cd\nDisallow: /中文\n"
    assert allowed(text, "/%C3%A4", "/%c3%a4x", "/a%3Cd", "/%E4%B8%AD%E6%96%87/x", "/b") == [
        False, False, False, False, True]


def test_comments_case_and_whitespace():
    text = "# top\nUSER-AGENT :  *   # all\n  DisAllow:/private#x\nallow: /private/ok   \n"
    assert allowed(text, "/private", "/private/ok") == [False, True]


def test_rules_before_any_user_agent_belong_to_no_group():
    assert allowed("Disallow: /\nUser-agent: *\nDisallow: /x\n", "/", "/x") == [True, False]


def test_crawl_delay():
    assert parse_robots("User-agent: *\nCrawl-delay: 2.5\n").crawl_delay == 2.5
    ours_and_all = "User-agent: LadderBot\nCrawl-delay: 3\nUser-agent: *\nCrawl-delay: 9\n"
    assert parse_robots(ours_and_all).crawl_delay == 3
    assert parse_robots("User-agent: Other\nCrawl-delay: 3\n").crawl_delay is None
    for junk in ("soon", "-1", "nan", "inf", ""):
        assert parse_robots(f"User-agent: *\nCrawl-delay: {junk}\n").crawl_delay is None


def test_unreachable_and_unavailable():
    assert Robots.allow_all().allowed("/x") is True
    nothing = Robots.disallow_all()
    assert (nothing.allowed("/"), nothing.allowed("/robots.txt")) == (False, False)


def test_junk_never_raises():
    junk = "\ufeff<html><body>Not found</body></html>\n\x00\xff::\nUser-agent\nDisallow /x\n:::\nAllow:\n"
    assert allowed(junk, "/", "/x") == [True, True]
    assert allowed("User-agent: *\r\nDisallow: /x\r\n", "/x") == [False]  # CRLF line ends


class CountedPath(str):
    """A path that counts the searches made in it."""

    finds = 0

    def find(self, *args):  # type: ignore[override]
        CountedPath.finds += 1
        return super().find(*args)


def test_many_stars_cost_no_backtracking():
    pattern = "/" + "*a" * 200 + "b$"
    assert parse_robots(f"User-agent: *\nDisallow: {pattern}\n").allowed("/" + "a" * 2000) is True
    # A backtracking matcher tries each star at every place (about 2000^200 ways); this one searches
    # for each piece once, left to right.
    CountedPath.finds = 0
    assert not Rule(False, pattern).matches(CountedPath("/" + "a" * 2000))
    assert CountedPath.finds <= pattern.count("*")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.text(max_size=40))
def test_arbitrary_text_and_paths_never_raise(text, path):
    robots = parse_robots(text)
    assert robots.allowed("/" + path) in (True, False)


@pytest.mark.parametrize("pattern", ["/fish", "/fish*", "/*fish", "/f*sh$", "/fish/"])
def test_a_pattern_matches_as_a_regular_expression_would(pattern):
    regex = re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\$", r"\Z"))
    robots = parse_robots(f"User-agent: *\nDisallow: {pattern}\n")
    for path in ("/fish", "/fish/", "/fish.html", "/Fish", "/catfish", "/fsh", "/fish/salmon", "/f/sh"):
        assert robots.allowed(path) is (regex.match(path) is None), path
