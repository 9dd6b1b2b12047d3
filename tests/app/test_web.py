"""web.py's Guard and server: what a page refuses (DNS rebinding, no secret, cross-site changes) and how
it answers, through a real loopback socket."""

from __future__ import annotations

import asyncio

import pytest

from ladder.app.web import CSP, App, Guard, Request, Response, as_json, bind, hosts_of
from ladder.protocol.http1 import Fields

SECRET = "s3cret-of-the-page"
ADDRESS = ("127.0.0.1", 8444)


def app() -> App:
    page = App(Guard(SECRET, hosts_of(ADDRESS)))

    @page.route("GET", "/api/state")
    async def state(request: Request) -> Response:
        return as_json({"ok": True})

    @page.route("POST", "/api/change")
    async def change(request: Request) -> Response:
        return as_json({"changed": request.json()})

    return page


def request(method: str, target: str, *fields: tuple[str, str], body: bytes = b"") -> Request:
    path, _, query = target.partition("?")
    pairs = dict(p.split("=", 1) for p in query.split("&") if p)
    return Request(method, path, pairs, Fields([(k.encode(), v.encode()) for k, v in fields]), body)


def answer(req: Request) -> Response:
    return asyncio.run(app().answer(req))


HOST = ("Host", "127.0.0.1:8444")
BEARER = ("Authorization", f"Bearer {SECRET}")
CSRF = ("X-Ladder-CSRF", Guard(SECRET, set()).csrf)


@pytest.mark.parametrize("host", ["evil.example:8444", "127.0.0.1:9999", "", "attacker.test"])
def test_a_request_for_another_host_is_refused_with_421(host):
    assert answer(request("GET", "/api/state", ("Host", host), BEARER)).status == 421


def test_localhost_names_the_loopback_page_too():
    assert answer(request("GET", "/api/state", ("Host", "localhost:8444"), BEARER)).status == 200


@pytest.mark.parametrize("given", [(), (("Authorization", "Bearer wrong"),), (("Cookie", "ladder=wrong"),),
                                   (("Authorization", f"Basic {SECRET}"),)])
def test_without_the_secret_every_path_is_401(given):
    for path in ("/", "/api/state", "/metrics", "/nothing"):
        assert answer(request("GET", path, HOST, *given)).status == 401, (path, given)


def test_the_secret_is_taken_as_bearer_cookie_or_query():
    assert answer(request("GET", "/api/state", HOST, BEARER)).status == 200
    assert answer(request("GET", "/api/state", HOST, ("Cookie", f"other=1; ladder={SECRET}"))).status == 200
    assert answer(request("GET", f"/metrics?k={SECRET}", HOST)).status == 404  # no such page, but let in


def test_a_first_visit_with_the_secret_in_the_url_sets_the_cookie_and_drops_it_from_the_url():
    first = answer(request("GET", f"/?k={SECRET}&lang=zh", HOST))
    assert first.status == 303
    headers = dict(first.headers)
    assert headers["Location"] == "/?lang=zh"
    assert headers["Set-Cookie"].startswith(f"ladder={SECRET};")
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]


def test_a_change_needs_the_pages_token_and_no_foreign_origin():
    body = b'{"on": true}'
    assert answer(request("POST", "/api/change", HOST, BEARER, body=body)).status == 403
    guessed = request("POST", "/api/change", HOST, BEARER, ("X-Ladder-CSRF", "guess"), body=body)
    assert answer(guessed).status == 403
    cross = request("POST", "/api/change", HOST, BEARER, CSRF, ("Origin", "https://evil.example"), body=body)
    assert answer(cross).status == 403
    same = answer(request("POST", "/api/change", HOST, BEARER, CSRF, ("Origin", "http://127.0.0.1:8444"),
                          body=body))
    assert same.status == 200 and same.body == b'{"changed": {"on": true}}'


def test_a_body_that_is_not_a_json_object_is_400_and_a_wrong_method_405():
    assert answer(request("POST", "/api/change", HOST, BEARER, CSRF, body=b"[1]")).status == 400
    assert answer(request("POST", "/api/change", HOST, BEARER, CSRF, body=b"{nope")).status == 400
    assert answer(request("GET", "/api/change", HOST, BEARER)).status == 405


async def _exchange(raw: bytes) -> bytes:
    sock = bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    page = app()
    page.guard.hosts = hosts_of(("127.0.0.1", port))
    server = await page.listen(sock)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw.replace(b"PORT", str(port).encode()))
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return data
    finally:
        server.close()


def test_over_a_socket_answers_carry_the_strict_policy_and_keep_alive_serves_two_requests():
    two = (b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\nAuthorization: Bearer " + SECRET.encode()
           + b"\r\n\r\n") * 2
    data = asyncio.run(_exchange(two))
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert f"Content-Security-Policy: {CSP}".encode() in data
    assert b"X-Frame-Options: DENY" in data and b"Cache-Control: no-store" in data


def test_over_a_socket_a_broken_head_gets_one_error_answer():
    assert asyncio.run(_exchange(b"GARBAGE\r\n\r\n")).startswith(b"HTTP/1.1 400")
    chunked = (b"POST /api/change HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\n")
    assert asyncio.run(_exchange(chunked)).startswith(b"HTTP/1.1 411")
