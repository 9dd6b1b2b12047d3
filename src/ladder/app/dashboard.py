"""The member's dashboard: one page, served by the running agent on loopback, to connect, share and see.

`ladder up` runs it beside the agent (`--dashboard HOST:PORT`, an unused
loopback port by default) and writes its address to dashboard.json in the
member's folder; `ladder app` opens it, and `ladder status --json` shows
it as `dashboard`. The URL carries the folder's secret (dashboard-secret,
0600), which web.Guard asks of every request (see web.py for the rest of
what it refuses).

The page is HTML rendered here in the browser's language (i18n.py), with
one small script (static/dashboard.js) that fills it from the JSON API
below and from a server-sent event stream, one event a second: the
traffic of that second and the open connections. Every action is a POST
of JSON that calls the same Agent method or the same function the CLI
calls, so the page can do nothing the command line could not.

    GET  /                        the page            GET  /api/events     ticks (SSE)
    GET  /api/state               link, exits, sharing, traffic
    POST /api/connect {on}        POST /api/exit {choice}       GET /api/where?host=
    POST /api/connections/close {id}
    POST /api/sharing {on, country}                     POST /api/policy {share table}
    GET  /api/devices             POST /api/devices {name, exit}    POST /api/devices/remove {name}
    GET  /api/services            POST /api/services {name, address, title, description}
    POST /api/services/remove {name}
    GET  /api/search?q=           GET /api/credits              POST /api/credits/verify
    GET  /metrics                 Prometheus text (the secret as a bearer token or ?k=)
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from ladder.agent.agent import Agent
from ladder.agent.command import ask, device_request
from ladder.agent.credits import credits_of
from ladder.agent.services import Published, load_published, loopback_address, save_published
from ladder.config import format_address, read_or_make_secret, write_file
from ladder.protocol import control
from ladder.protocol.identity import public_bytes
from ladder.protocol.records import service_address

from . import metrics, web
from .i18n import STRINGS, language, t
from .web import App, Guard, HttpError, Request, Response, as_json, event, hosts_of, user_errors

log = logging.getLogger(__name__)

TICK = 1.0  # seconds between two events of the stream: the graph's resolution
SECRET_FILE = "dashboard-secret"
ADDRESS_FILE = "dashboard.json"


def dashboard_url(address: tuple[str, int], secret: str) -> str:
    return f"http://{format_address(*address)}/?k={secret}"


class Dashboard:
    def __init__(self, agent: Agent, secret: str, address: tuple[str, int]):
        self.agent = agent
        self.config = agent.config
        self.app = App(Guard(secret, hosts_of(address)))
        web.add_static(self.app, "common.js", "dashboard.js", "app.css")
        routes = {
            ("GET", "/"): self.page, ("GET", "/api/state"): self.state,
            ("GET", "/api/events"): self.events, ("POST", "/api/connect"): self.connect,
            ("POST", "/api/exit"): self.choose_exit, ("GET", "/api/where"): self.where,
            ("POST", "/api/connections/close"): self.close_connection,
            ("POST", "/api/sharing"): self.sharing, ("POST", "/api/policy"): self.policy,
            ("GET", "/api/devices"): self.devices, ("POST", "/api/devices"): self.add_device,
            ("POST", "/api/devices/remove"): self.remove_device, ("GET", "/api/services"): self.services,
            ("POST", "/api/services"): self.publish, ("POST", "/api/services/remove"): self.unpublish,
            ("GET", "/api/search"): self.search, ("GET", "/api/credits"): self.credits,
            ("POST", "/api/credits/verify"): self.verify, ("GET", "/metrics"): self.metrics,
        }
        for (method, path), handler in routes.items():
            self.app.route(method, path)(user_errors(handler))

    # ---------------------------------------------------------------- page

    async def page(self, request: Request) -> Response:
        lang = language(request.header("accept-language"))
        return Response(body=render(lang, self.app.guard.csrf).encode())

    # --------------------------------------------------------------- state

    async def state(self, request: Request) -> Response:
        agent = self.agent
        return as_json({"status": agent.status(), "exits": agent.exits(), "sharing": agent.sharing_view(),
                        "traffic": {"series": agent.activity.series(), "totals": agent.activity.totals()},
                        "connections": agent.activity.connections()})

    async def events(self, request: Request) -> Response:
        return Response(kind="text/event-stream", events=self._ticks())

    async def _ticks(self) -> AsyncIterator[bytes]:
        agent = self.agent
        while True:
            last = agent.activity.last() or [time.time(), 0, 0]
            yield event("tick", {"t": last[0], "up": last[1], "down": last[2],
                                 "state": agent.state,
                                 "connections": agent.activity.connections(),
                                 "totals": agent.activity.totals()})
            await asyncio.sleep(TICK)

    async def connect(self, request: Request) -> Response:
        self.agent.set_connected(bool(request.json().get("on")))
        return as_json({"state": self.agent.state})

    async def choose_exit(self, request: Request) -> Response:
        self.agent.choose_exit(str(request.json().get("choice") or "auto"))
        return as_json({"exits": self.agent.exits()})

    async def where(self, request: Request) -> Response:
        host = request.query.get("host", "").strip()
        if not host:
            raise HttpError(400, "give a site's name: ?host=example.com")
        return as_json(self.agent.where(host))

    async def close_connection(self, request: Request) -> Response:
        try:
            which = int(str(request.json().get("id")))
        except (TypeError, ValueError):
            raise HttpError(400, "id: the connection's number") from None
        return as_json({"closed": self.agent.activity.close(which)})

    async def sharing(self, request: Request) -> Response:
        body = request.json()
        self.agent.set_sharing(bool(body.get("on")), body.get("country") or None)
        return as_json(self.agent.sharing_view())

    async def policy(self, request: Request) -> Response:
        self.agent.set_policy(request.json())
        return as_json(self.agent.sharing_view())

    # -------------------------------------------------- what the hub holds

    async def devices(self, request: Request) -> Response:
        answer = await ask(self.config, control.DeviceList())
        if not isinstance(answer, control.Devices):
            raise HttpError(502, "the hub did not answer with the devices")
        return as_json([{"name": d.name, "online": d.online, "bytes_today": d.bytes_today,
                         "last_seen": d.last_seen or None, "expires": d.expires or None}
                        for d in answer.devices])

    async def add_device(self, request: Request) -> Response:
        body = request.json()
        name = str(body.get("name") or "").strip()
        if not name:
            raise HttpError(400, "a device needs a name")
        choice = str(body.get("exit") or "auto")
        import segno  # here, not at the top: QR codes cost the agent's process ~1.5 MB, and few pages ask

        answer = await ask(self.config, device_request(name, choice, None, None, None, None))
        if not isinstance(answer, control.DeviceAdded):
            raise HttpError(502, "the hub did not answer with the new device")
        return as_json({"name": answer.name, "link": answer.link, "subscription": answer.subscription,
                        "note": answer.note, "qr": segno.make(answer.link).svg_data_uri(scale=4)})

    async def remove_device(self, request: Request) -> Response:
        name = str(request.json().get("name") or "").removeprefix(f"{self.config.name}/")
        await ask(self.config, control.DeviceRemove(name))
        return as_json({"removed": name})

    async def services(self, request: Request) -> Response:
        mine = load_published(self.config.folder)
        status = self.agent.status()["services"]
        pubkey = public_bytes(self.config.key)
        return as_json({
            "mine": [{"name": s.name, "address": format_address(*s.address), "title": s.title,
                      "description": s.description, "kind": s.kind,
                      "url": f"http://{s.name}.{self.config.name}.ladder/",
                      "pinned": service_address(pubkey, s.name)} for s in mine.values()],
            "network": status.get("listed", [])})

    async def publish(self, request: Request) -> Response:
        body = request.json()
        services = load_published(self.config.folder)
        name = str(body.get("name") or "").strip().lower()
        where = loopback_address(str(body.get("address") or ""))
        services[name] = (services.get(name) or Published(name, where)).changed(
            address=where, title=str(body.get("title") or ""), description=str(body.get("description") or ""))
        save_published(self.config.folder, services)
        self.agent.services.watch()  # online now rather than at the next look at services.json
        return as_json({"published": name, "url": f"http://{name}.{self.config.name}.ladder/"})

    async def unpublish(self, request: Request) -> Response:
        name = str(request.json().get("name") or "")
        services = load_published(self.config.folder)
        if services.pop(name, None) is None:
            raise HttpError(404, f"{name} is not published by {self.config.name}")
        save_published(self.config.folder, services)
        self.agent.services.watch()
        return as_json({"removed": name})

    async def search(self, request: Request) -> Response:
        words = request.query.get("q", "").strip()[:500]
        if not words:
            return as_json({"results": [], "missing": []})
        answer = await ask(self.config, control.SearchRequest(words, 20))
        if not isinstance(answer, control.SearchResults):
            raise HttpError(502, "the hub did not answer with search results")
        return as_json({"results": [{"url": h.url, "title": h.title, "snippet": h.snippet, "hub": h.hub,
                                     "online": h.online, "score": h.score / 1_000_000} for h in answer.hits],
                        "missing": list(answer.missing)})

    async def credits(self, request: Request) -> Response:
        return as_json(await credits_of(self.config))

    async def verify(self, request: Request) -> Response:
        return as_json(await credits_of(self.config, verify=True))

    async def metrics(self, request: Request) -> Response:
        body, kind = metrics.exposition(agent_metrics(self.agent))
        return Response(body=body, kind=kind)


def agent_metrics(agent: Agent) -> list[metrics.Metric]:
    """The agent's numbers, named as Prometheus would have them."""
    numbers = agent.metrics()
    refusals = metrics.counter("ladder_agent_refusals", "Connections the agent could not open, by reason.")
    for reason, count in sorted(numbers["refusals"].items()):
        refusals.add(count, reason=reason)
    moved = metrics.counter("ladder_agent_bytes", "Bytes through the agent's proxy, by direction.")
    moved.add(numbers["bytes_up"], direction="up").add(numbers["bytes_down"], direction="down")
    return [
        metrics.gauge("ladder_agent_link_up", "Whether the link to the hub is up (1) or not (0).",
                      numbers["link_up"]),
        metrics.counter("ladder_agent_handshakes", "Links to the hub opened.", numbers["hub_handshakes"]),
        metrics.gauge("ladder_agent_channels", "Channels open to other members.", numbers["channels_open"]),
        metrics.gauge("ladder_agent_streams", "Streams open in those channels.", numbers["streams_open"]),
        moved,
        metrics.counter("ladder_agent_connections", "Connections the proxy opened.",
                        numbers["connections_opened"]),
        metrics.gauge("ladder_agent_connections_open", "Connections open through the proxy.",
                      numbers["connections_open"]),
        refusals,
        metrics.gauge("ladder_agent_directory_exits", "Exits the agent knows of.", numbers["exits_listed"]),
        metrics.gauge("ladder_agent_services", "Services listed in the network.", numbers["services_listed"]),
        metrics.gauge("ladder_agent_sharing_streams", "Streams this exit serves now.",
                      numbers["sharing_streams"]),
        metrics.counter("ladder_agent_sharing_bytes", "Bytes this exit carried for members.",
                        numbers["sharing_bytes"]),
    ]


# ---------------------------------------------------------------- serving


async def start(agent: Agent, address: tuple[str, int]) -> tuple[asyncio.Server, str]:
    """Listen for the dashboard beside `agent`; write its URL for `ladder app` and `ladder status`.

    OSError if the address cannot be had (the caller says so in one line).
    """
    folder = agent.config.folder
    secret = read_or_make_secret(folder / SECRET_FILE)
    sock = web.bind(address)
    bound = sock.getsockname()[:2]  # a port of 0 picked a free one
    server = await Dashboard(agent, secret, bound).app.listen(sock)
    url = dashboard_url(bound, secret)
    write_file(folder / ADDRESS_FILE, json.dumps({"url": url, "pid": os.getpid()}).encode(), 0o600)
    log.info("dashboard on http://%s/ (`ladder app --dir %s` opens it)", format_address(*bound), folder)
    return server, url


async def run_with_dashboard(agent: Agent, address: tuple[str, int]) -> None:
    """Run `agent`, and its dashboard once it holds the folder (so a second agent cannot take the page)."""
    running = asyncio.ensure_future(agent.run())
    started = asyncio.ensure_future(agent.started.wait())
    await asyncio.wait({running, started}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        started.cancel()
        return await running  # it stopped at once: its AgentFatal says why
    try:
        server, _ = await start(agent, address)
    except OSError as exc:
        log.warning("no dashboard: cannot listen on %s: %s", format_address(*address), exc.strerror or exc)
        return await running
    try:
        await running
    finally:
        server.close()
        (agent.config.folder / ADDRESS_FILE).unlink(missing_ok=True)


def written(folder: Path) -> dict:
    """{url, pid} as the last agent with a dashboard wrote them; {} if none did."""
    try:
        found = json.loads((folder / ADDRESS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


# -------------------------------------------------------------- the page


def render(lang: str, csrf: str) -> str:
    """The page's HTML in `lang`: every label from the table; the script fills in the data."""
    def s(key: str) -> str:
        return html.escape(t(lang, key))

    # Inside <script> nothing is unescaped: "<" is written as JSON's \u003c, so no "</script" can occur.
    boot = json.dumps({"csrf": csrf, "lang": lang, "strings": STRINGS[lang]},
                      ensure_ascii=False).replace("<", "\\u003c")
    nav = "".join(f'<a href="#{k}">{s("nav." + k)}</a>'
                  for k in ("link", "traffic", "sharing", "devices", "services", "search", "credits"))
    return f"""<!doctype html>
<html lang="{'zh-CN' if lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{s("title")}</title><link rel="stylesheet" href="/static/app.css"></head>
<body><script type="application/json" id="boot">{boot}</script>
<header><h1>{s("title")}</h1><nav>{nav}</nav></header>
<main>
<section id="link"><h2>{s("nav.link")}</h2>
 <div class="row"><button id="connect" data-test="connect" class="switch"
   data-on="{s("link.disconnect")}" data-off="{s("link.connect")}">{s("link.connect")}</button>
 <span id="link-state" data-test="link-state" class="badge"></span></div>
 <dl><dt>{s("link.hub")}</dt><dd id="link-hub" data-test="link-hub"></dd>
 <dt>{s("link.since")}</dt><dd id="link-since"></dd><dt>{s("link.proxy")}</dt><dd id="link-proxy"></dd></dl>
 <h3>{s("exits.title")}</h3>
 <label class="row"><select id="exit-choice" data-test="exit-choice"></select></label>
 <table class="list"><thead><tr><th>{s("exits.member")}</th><th>{s("exits.country")}</th>
 <th>{s("exits.latency")}</th><th>{s("exits.load")}</th><th>{s("exits.rate")}</th><th></th></tr></thead>
 <tbody id="exits" data-test="exits"></tbody></table>
 <form id="where-form" class="row" data-test="where-form"><label for="where-host">{s("where.title")}</label>
  <input id="where-host" data-test="where-host" placeholder="{s("where.placeholder")}" autocomplete="off">
  <button data-test="where-ask">{s("where.ask")}</button></form>
 <p id="where-answer" data-test="where-answer"></p>
</section>
<section id="traffic"><h2>{s("traffic.title")}</h2>
 <canvas id="graph" data-test="graph" width="600" height="160" data-samples="0"></canvas>
 <p class="legend"><span class="up">{s("traffic.up")}</span> <span id="rate-up" data-test="rate-up"></span>
 · <span class="down">{s("traffic.down")}</span> <span id="rate-down" data-test="rate-down"></span></p>
 <p>{s("traffic.today")}: <span id="total-today" data-test="total-today"></span> ·
 {s("traffic.month")}: <span id="total-month" data-test="total-month"></span></p>
 <h3>{s("conns.title")}</h3>
 <table class="list"><thead><tr><th>{s("conns.site")}</th><th>{s("conns.via")}</th><th>{s("conns.rate")}</th>
 <th>{s("conns.bytes")}</th><th>{s("conns.age")}</th><th></th></tr></thead>
 <tbody id="connections" data-test="connections"></tbody></table>
</section>
<section id="sharing"><h2>{s("share.title")}</h2>
 <div class="row"><button id="share-toggle" data-test="share-toggle" class="switch"
   data-on="{s("share.stop")}" data-off="{s("share.start")}">{s("share.start")}</button>
 <span id="share-state" data-test="share-state" class="badge"></span>
 <label>{s("share.country")} <input id="share-country" data-test="share-country" size="3"
   maxlength="2"></label></div>
 <h3>{s("share.policy")}</h3>
 <form id="policy-form" data-test="policy-form" class="grid">
  <label>{s("share.members")}<input name="members" data-test="policy-members"></label>
  <label>{s("share.ports")}<input name="ports" data-test="policy-ports"></label>
  <label>{s("share.rate")}<input name="rate" data-test="policy-rate"></label>
  <label>{s("share.user_rate")}<input name="user_rate" data-test="policy-user-rate"></label>
  <label>{s("share.daily_cap")}<input name="daily_cap" data-test="policy-daily-cap"></label>
  <label>{s("share.monthly_cap")}<input name="monthly_cap" data-test="policy-monthly-cap"></label>
  <label>{s("share.schedule")}<input name="schedule" data-test="policy-schedule"></label>
  <label class="check"><input type="checkbox" name="pause_on_metered" data-test="policy-metered">
   {s("share.metered")}</label>
  <button data-test="policy-save">{s("share.save")}</button>
  <span id="policy-note" data-test="policy-note"></span>
 </form>
 <h3>{s("share.users")}</h3>
 <table class="list"><thead><tr><th>{s("share.member")}</th><th>{s("share.streams")}</th>
 <th>{s("traffic.today")}</th><th>{s("traffic.month")}</th></tr></thead>
 <tbody id="share-users" data-test="share-users"></tbody></table>
 <p>{s("share.earned")}: <span id="share-earned" data-test="share-earned"></span></p>
</section>
<section id="devices"><h2>{s("devices.title")}</h2>
 <form id="device-form" class="row" data-test="device-form">
  <input id="device-name" data-test="device-name" placeholder="{s("devices.name")}" maxlength="64" required>
  <button data-test="device-add">{s("devices.add")}</button></form>
 <div id="device-added" data-test="device-added" hidden><p>{s("devices.scan")}</p>
  <img id="device-qr" data-test="device-qr" alt="QR">
  <p><code id="device-link" data-test="device-link"></code></p></div>
 <table class="list"><tbody id="device-list" data-test="device-list"></tbody></table>
</section>
<section id="services"><h2>{s("services.title")}</h2>
 <form id="service-form" data-test="service-form" class="grid">
  <label>{s("services.name")}<input name="name" data-test="service-name" required></label>
  <label>{s("services.address")}<input name="address" data-test="service-address" placeholder="127.0.0.1:8000"
   required></label>
  <label>{s("services.service_title")}<input name="title" data-test="service-title"></label>
  <label>{s("services.description")}<input name="description" data-test="service-description"></label>
  <button data-test="service-publish">{s("services.publish")}</button></form>
 <table class="list"><tbody id="service-list" data-test="service-list"></tbody></table>
 <h3>{s("services.network")}</h3>
 <table class="list"><tbody id="network-services" data-test="network-services"></tbody></table>
</section>
<section id="search"><h2>{s("search.title")}</h2>
 <form id="search-form" class="row" data-test="search-form">
  <input id="search-words" data-test="search-words" type="search" placeholder="{s("search.placeholder")}">
  <button data-test="search-go">{s("search.go")}</button></form>
 <ol id="search-results" data-test="search-results"></ol>
</section>
<section id="credits"><h2>{s("credits.title")}</h2>
 <dl><dt>{s("credits.balance")}</dt><dd id="credit-balance" data-test="credit-balance"></dd>
 <dt>{s("credits.earned")}</dt><dd id="credit-earned"></dd>
 <dt>{s("credits.spent")}</dt><dd id="credit-spent"></dd>
 <dt>{s("credits.limit")}</dt><dd id="credit-limit"></dd></dl>
 <div class="row"><button id="credits-load" data-test="credits-load">{s("credits.load")}</button>
 <button id="credits-verify" data-test="credits-verify">{s("credits.verify")}</button></div>
 <p id="credits-note" data-test="credits-note"></p>
 <table class="list"><tbody id="credit-history" data-test="credit-history"></tbody></table>
</section>
</main>
<p id="error" data-test="error" role="alert" hidden></p>
<script src="/static/common.js"></script><script src="/static/dashboard.js"></script></body></html>
"""
