"""Tests for ladder.link.website: the site strangers see says nothing of Ladder."""

import struct
import zlib

from ladder.link.website import DEFAULT_SITE

INDEX = DEFAULT_SITE["/index.html"][1]


def test_default_site_is_plausible_and_anonymous():
    assert set(DEFAULT_SITE) == {"/index.html", "/about.html", "/robots.txt", "/favicon.ico"}
    assert b'href="/about.html"' in INDEX
    for content_type, body in DEFAULT_SITE.values():
        text = body.lower()
        for word in (b"ladder", b"proxy", b"vpn", b"tunnel", b"socks", b"censor", b"firewall"):
            assert word not in text, (content_type, word)
    icon = DEFAULT_SITE["/favicon.ico"][1]
    reserved, kind, count = struct.unpack("<HHH", icon[:6])
    assert (reserved, kind, count) == (0, 1, 1)
    width, height, _, _, _, _, size, offset = struct.unpack("<BBBBHHII", icon[6:22])
    png = icon[offset:]
    assert (width, height, size) == (16, 16, len(png))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    idat_len = struct.unpack(">I", png[33:37])[0]
    assert len(zlib.decompress(png[41:41 + idat_len])) == 16 * (1 + 16 * 3)
