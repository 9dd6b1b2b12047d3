"""The web site strangers see on a hub: a small bookbinder's, with nothing of Ladder in it.

Its pages, robots.txt and favicon, keyed by the path nginx would serve them
under; link/webface.py serves them as nginx serves a static site. Plausible
and anonymous: no word a censor could search for (tests/link/test_website.py).
"""

from __future__ import annotations

import struct
import zlib

# A site: path -> (Content-Type, body).
Site = dict[str, tuple[str, bytes]]
SITE_LAST_MODIFIED = 1_684_148_130.0  # 2023-05-15 10:55:30 UTC


def _icon(rgb: tuple[int, int, int]) -> bytes:
    """A 16x16 single-colour favicon: an ICO holding one PNG image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = b"".join(b"\0" + bytes(rgb) * 16 for _ in range(16))
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    directory = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + directory + png


_STYLE = (
    "body{font-family:Georgia,serif;max-width:40em;margin:2em auto;padding:0 1em;"
    "color:#2b2b2b;line-height:1.5}h1{font-weight:normal;color:#5a3e2b}"
    "a{color:#5a3e2b}footer{margin-top:3em;font-size:.85em;color:#777}"
)

_INDEX = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Linden Bindery - hand-bound books and repairs</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>Linden Bindery</h1>
<p>We are a two-person workshop that binds, repairs and restores books by hand.
Family bibles with loose pages, a grandmother's recipe notebook, a thesis that
needs a proper cloth cover, a run of fifty guest books for a wedding: if it is
made of paper and thread, we are happy to look at it.</p>
<h2>What we do</h2>
<ul>
<li>Rebinding and spine repair for old and well-loved books</li>
<li>Custom journals and sketchbooks, sewn on tapes, lay-flat</li>
<li>Thesis and portfolio binding in cloth or leather</li>
<li>Small editions for poets, photographers and local societies</li>
</ul>
<p>Most repairs take two to four weeks. We do not do same-day work, and we
are closed in August.</p>
<p>Read a little more <a href="/about.html">about the workshop</a>.</p>
<footer>Linden Bindery &middot; workshop visits by appointment</footer>
</body>
</html>
"""

_ABOUT = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>About - Linden Bindery</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>About the workshop</h1>
<p>Linden Bindery started in 2014 at a kitchen table, with a bone folder, a
borrowed press and a box of offcuts from a printer who was closing down. It
now fills a small room behind a courtyard, with two presses, a board shear
older than both of us, and far too much marbled paper.</p>
<p>We learned the trade from an old bookbinder who repaired prayer books and
ledgers for forty years, and we still work the way he taught us: wheat-starch
paste, linen thread, and nothing that cannot be undone by the next binder.</p>
<p>We do not run an online shop. If you have a book that needs help, come by
with it, and we will tell you honestly whether it is worth repairing.</p>
<p><a href="/">Back to the start page</a></p>
<footer>Linden Bindery</footer>
</body>
</html>
"""

DEFAULT_SITE: Site = {
    "/index.html": ("text/html", _INDEX.encode("utf-8")),
    "/about.html": ("text/html", _ABOUT.encode("utf-8")),
    "/robots.txt": ("text/plain", b"User-agent: *\nDisallow:\n"),
    "/favicon.ico": ("image/x-icon", _icon((0x5a, 0x3e, 0x2b))),
}
