"""A fetched page as the index wants it: its title, headings, visible text, links and what it asks of robots.

`extract` takes the bytes the crawler read (perhaps cut at its page limit)
and the page's media type. HTML goes through a real parser (Lexbor, by
selectolax), so broken markup reads as a browser would read it; plain text
is taken as it is; anything else is `NotIndexable`, and so is markup that
leaves more than `MAX_NESTING` elements open, since the tree builder's time
grows with the square of that depth. The charset comes from
a byte-order mark, else the Content-Type header, else a `<meta>` in the first
1024 bytes (the HTML prescan's window), else UTF-8; bytes that do not
decode become U+FFFD, never an error.

Visible text is the body without script, style, template, noscript and
svg; a block element's boundary is a space and an inline one is not, so
`W<b>or</b>d` stays one word and `<li>a<li>b` two. Links are the page's
`<a>`/`<area>` hrefs resolved against `<base href>` (else the page's URL),
normalised as the crawler dedupes them (`normalise_url`), kept only when
they stay on the page's host over plain http; a link marked rel=nofollow is
left out. `<meta name="robots">` and `<meta name="LadderBot">` may say
noindex and nofollow (or none, both); nofollow leaves the links empty.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

from ladder.errors import LadderError

if TYPE_CHECKING:
    from selectolax.lexbor import LexborHTMLParser

AGENT = "ladderbot"  # the product token meta robots and robots.txt name us by, lower case
_HIDDEN = "script, style, template, noscript, svg, math, iframe, object"
# Elements whose edges separate words (HTML's block and line-breaking elements).
_BLOCKS = ("address, article, aside, blockquote, br, caption, dd, details, dialog, div, dl, dt, fieldset, "
           "figcaption, figure, footer, form, h1, h2, h3, h4, h5, h6, header, hr, li, main, nav, ol, option, "
           "p, pre, section, summary, table, td, th, tr, ul, button, input, select, textarea, label")
_HEADINGS = "h1, h2, h3, h4, h5, h6"
# Building the tree costs time in proportion to the depth of open elements at every tag that checks its
# scope (HTML §13.2.4.2), so an unclosed <div> repeated 100,000 times parses in 12 s. A page that leaves
# more elements open than this is refused before parsing (Chromium caps tree depth at 512).
MAX_NESTING = 1024
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)[^>]*?(/?)>")
# Elements that never stay open (void, HTML §13.1.2) or whose end tag may be left out (§13.1.2.4).
_NO_NESTING = frozenset("""area base br col embed hr img input link meta source track wbr html head body p
    li dt dd rt rp optgroup option colgroup caption thead tbody tfoot tr td th""".split())
_SPACE = re.compile(r"\s+")
_PRESCAN = 1024  # HTML §13.2.3.2: the meta charset prescan looks this far
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# RFC 3986 §2.2 and §2.3: what may stand unescaped in a path or query; '%' keeps escapes as they came.
_URL_SAFE = "!$&'()*+,;=:@/?-._~%"


class NotIndexable(LadderError):
    """A response that is neither HTML nor plain text."""


@dataclass(frozen=True)
class Page:
    url: str  # absolute, http://host/path?query (no fragment)
    title: str  # <title>, else the first <h1>, else ""
    headings: str  # text of h1-h6, space-joined
    body: str  # visible text, whitespace collapsed
    links: tuple[str, ...]  # absolute same-host http URLs, fragments dropped, deduplicated, in order
    lang: str | None  # <html lang>, or None
    noindex: bool  # <meta name=robots|LadderBot content=noindex>
    nofollow: bool  # ... nofollow (links then empty)


def extract(body: bytes, url: str, content_type: str | None) -> Page:
    """The page at `url` whose (perhaps cut) body is `body`; NotIndexable unless it is HTML or plain text."""
    media, charset = _media_type(content_type)
    if media is None and _looks_like_html(body):
        media = "text/html"  # RFC 9110 §8.3: without a Content-Type, a recipient may sniff
    if media == "text/plain":
        return Page(url, "", "", _collapse(_decode(body, charset)), (), None, False, False)
    if media not in ("text/html", "application/xhtml+xml"):
        raise NotIndexable(f"{url}: not HTML or plain text ({content_type or 'no Content-Type'})")
    # HTML §13.2.3.1: a byte-order mark decides before the header does, the header before a <meta>.
    markup = _decode(body, _bom(body) or charset or _meta_charset(body))
    if _nesting(markup) > MAX_NESTING:
        raise NotIndexable(f"{url}: leaves more than {MAX_NESTING} elements open")
    # Imported here, not at the top: Lexbor's library costs the hub ~1.8 MB of RSS, and a hub whose
    # members publish no HTML service never parses a page.
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(markup)
    noindex, nofollow = _meta_robots(tree)
    links = () if nofollow else _links(tree, url)
    _keep_visible_words(tree)
    title_node = tree.css_first("title")
    headings = [_collapse(node.text()) for node in tree.css(_HEADINGS)]
    title = _collapse(title_node.text()) if title_node is not None else ""
    if not title:
        first_h1 = tree.css_first("h1")
        title = _collapse(first_h1.text()) if first_h1 is not None else ""
    html = tree.css_first("html")
    lang = (html.attributes.get("lang") or "").strip() if html is not None else ""
    body_text = _collapse(tree.body.text()) if tree.body is not None else ""
    return Page(url, title, " ".join(h for h in headings if h), body_text, links, lang or None,
                noindex, nofollow)


def normalise_url(url: str) -> str | None:
    """`url` as the crawler knows it, or None unless it is an http URL with a host.

    Lower-case scheme and host, no default port, no fragment, no user info,
    dot segments resolved (RFC 3986 §6.2.2), an empty path as "/", and
    characters a request line cannot carry percent-encoded (as UTF-8); the
    query is kept as it came, an empty one dropped.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme.lower() != "http" or not host or "@" in parts.netloc:
        return None
    netloc = host if port in (None, 80) else f"{host}:{port}"
    path = quote(_remove_dot_segments(parts.path or "/"), safe=_URL_SAFE)
    query = quote(parts.query, safe=_URL_SAFE)
    return f"http://{netloc}{path}" + (f"?{query}" if query else "")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, for an absolute path."""
    out: list[str] = []
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def _media_type(content_type: str | None) -> tuple[str | None, str | None]:
    """(media type, charset) of a Content-Type value (RFC 9110 §8.3), both lower case."""
    if not content_type:
        return None, None
    media, *params = content_type.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower() or None
    return media.strip().lower() or None, charset


def _looks_like_html(body: bytes) -> bool:
    start = body[:64].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _bom(body: bytes) -> str | None:
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    return None


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body, 0, _PRESCAN)
    return match.group(1).decode("ascii").lower() if match else None


def _decode(body: bytes, charset: str | None) -> str:
    """`body` as text in `charset` if Python knows it, else UTF-8; undecodable bytes become U+FFFD."""
    try:
        codec = codecs.lookup(charset or "utf-8").name
    except LookupError:
        codec = "utf-8"
    if codec == "utf-8":
        codec = "utf-8-sig"  # a BOM is not text
    return body.decode(codec, errors="replace")


def _nesting(markup: str) -> int:
    """How deep elements that need an end tag nest at most, counted from the tags (an estimate, quickly)."""
    depth = deepest = 0
    for match in _TAG.finditer(markup):
        closing, name, self_closing = match.groups()
        if self_closing or name.lower() in _NO_NESTING:
            continue
        depth = max(depth - 1, 0) if closing else depth + 1
        deepest = max(deepest, depth)
    return deepest


def _collapse(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").replace(",", " ").split()}


def _meta_robots(tree: LexborHTMLParser) -> tuple[bool, bool]:
    """(noindex, nofollow) from <meta name=robots> and <meta name=LadderBot>."""
    said: set[str] = set()
    for meta in tree.css("meta[name]"):
        if (meta.attributes.get("name") or "").strip().lower() in ("robots", AGENT):
            said |= _tokens(meta.attributes.get("content"))
    none = "none" in said
    return none or "noindex" in said, none or "nofollow" in said


def _links(tree: LexborHTMLParser, url: str) -> tuple[str, ...]:
    base = url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        # HTML §4.2.3: the first <base href>, against the document's URL; one we cannot read is ignored.
        candidate = normalise_url(urljoin(url, (base_node.attributes.get("href") or "").strip()))
        base = candidate or url
    host = urlsplit(normalise_url(url) or url).netloc
    links: dict[str, None] = {}
    for anchor in tree.css("a[href], area[href]"):
        if "nofollow" in _tokens(anchor.attributes.get("rel")):
            continue
        try:
            absolute = urljoin(base, (anchor.attributes.get("href") or "").strip())
        except ValueError:
            continue
        link = normalise_url(absolute)
        if link is not None and urlsplit(link).netloc == host:
            links[link] = None
    return tuple(links)


def _keep_visible_words(tree: LexborHTMLParser) -> None:
    """Drops what is never shown and puts a space at the edges of block elements, so text() reads words."""
    for node in tree.css(_HIDDEN):
        node.decompose()
    for node in tree.css(_BLOCKS):
        node.insert_before(" ")
        node.insert_after(" ")
