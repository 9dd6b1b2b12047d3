"""The hub operator's admin page and the hub's /metrics, on a listener of their own.

`ladder hub run` serves them beside the hub (`--admin HOST:PORT`, default
127.0.0.1:8444, `off` for none), never on the hub's public port: that one
answers every path as the web face does, so a prober learns nothing. The
address is loopback unless the operator names another, and the operator
reaches it through SSH (`ssh -L 8444:127.0.0.1:8444 vps`). Its secret,
admin-secret in the hub's folder (0600), is what web.Guard asks of every
request; `ladder hub admin-url` prints the URL with it, from the admin.json
the running hub writes.

The page is HTML rendered in the browser's language (i18n.ADMIN) and one
small script (static/admin.js) that fills it from /api/state every few
seconds. Its rows are those of `ladder hub members`, `devices`, `peers` and
`ledger` (hub/report.py), and every action is what a CLI command does:

    GET  /                           the page         GET /api/state    every panel
    POST /api/invites {name, uses, expires}           → the link and its QR code
    POST /api/invites/revoke {name}                   POST /api/members/revoke {name}
    POST /api/devices/revoke {name: owner/name}       POST /api/ledger/verify
    GET  /metrics                    Prometheus text (the secret as a bearer token or ?k=)
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ladder import __version__
from ladder.config import format_address, parse_duration, read_or_make_secret, write_file
from ladder.hub import report
from ladder.hub.hub import Hub
from ladder.hub.ports import DevicePort
from ladder.link.tls import certificate_validity
from ladder.store.hubdb import StoreError

from . import metrics, web
from .i18n import ADMIN, language, t
from .web import App, Guard, HttpError, Request, Response, as_json, hosts_of, user_errors

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = ("127.0.0.1", 8444)
SECRET_FILE = "admin-secret"
ADDRESS_FILE = "admin.json"


def admin_url(address: tuple[str, int], secret: str) -> str:
    return f"http://{format_address(*address)}/?k={secret}"


class Admin:
    def __init__(self, hub: Hub, secret: str, address: tuple[str, int]):
        self.hub = hub
        self.config = hub.config
        self.store = hub.store
        self.app = App(Guard(secret, hosts_of(address)))
        web.add_static(self.app, "common.js", "admin.js", "app.css")
        routes = {
            ("GET", "/"): self.page, ("GET", "/api/state"): self.state, ("GET", "/metrics"): self.metrics,
            ("POST", "/api/invites"): self.invite, ("POST", "/api/invites/revoke"): self.withdraw_invites,
            ("POST", "/api/members/revoke"): self.revoke_member,
            ("POST", "/api/devices/revoke"): self.revoke_device, ("POST", "/api/ledger/verify"): self.verify,
        }
        for (method, path), handler in routes.items():
            self.app.route(method, path)(user_errors(handler))

    async def page(self, request: Request) -> Response:
        lang = language(request.header("accept-language"))
        return Response(body=render(lang, self.app.guard.csrf).encode())

    # ---------------------------------------------------------------- state

    async def state(self, request: Request) -> Response:
        store, config = self.store, self.config
        devices = report.devices(store)
        held = Counter(d["owner"] for d in devices if not d["revoked"])
        accounts = {a["account"]: a for a in report.accounts(config, store)}
        nothing = {"balance": 0, "spent": 0, "earned": 0}
        members = []
        for member in report.members(store):
            account = accounts.get(member["id"], nothing)
            members.append({**member, "balance": account["balance"], "used": account["spent"],
                            "shared": account["earned"], "devices": held[member["name"]]})
        return as_json({
            "health": self.health(), "members": members, "exits": self.exits(),
            "invites": [{"name": i.name, "uses_left": i.uses_left, "expires": i.expires_at,
                         "created": i.created} for i in store.invites()],
            "devices": devices, "peers": report.peers(config, store, self.hub.federation.status()),
            "routes": self.routes(),
            "ledger": {"entries": store.ledger_size(self.hub.id),
                       "checkpoint": report.latest_checkpoint(config, store),
                       "refused": self.hub.credits.refused},
        })

    def health(self) -> dict[str, Any]:
        hub = self.hub
        try:
            hub.store.data_version()
            store_ok = True
        except StoreError:
            store_ok = False
        expires = certificate_validity(self.config.cert)[1].timestamp()
        return {"name": self.config.name, "version": __version__, "uptime": time.time() - hub.started,
                "links": link_counts(hub), "streams": hub.ports.open_streams(), "store_ok": store_ok,
                "certificate_expires": expires, "certificate_days": int((expires - time.time()) // 86400),
                "public_address": format_address(*self.config.public_address), "fingerprint": hub.fingerprint}

    def exits(self) -> list[dict[str, Any]]:
        """The exits the directory lists, by country: here and at other hubs."""
        countries: dict[str, list[dict[str, Any]]] = {}
        for listing in self.hub.directory.exits.values():
            countries.setdefault(listing.country, []).append(
                {"name": listing.name, "hub": listing.hub, "accepting": listing.accepting})
        return [{"country": country, "exits": sorted(found, key=lambda e: e["name"])}
                for country, found in sorted(countries.items())]

    def routes(self) -> list[dict[str, Any]]:
        """The best route to each member of another hub: whom, through which peer, how many hubs away."""
        federation = self.hub.federation
        peers = {port.id: port.peer.name for port in federation.ports.values()}
        rows = []
        for member in federation.router.destinations():
            best = federation.router.best(member)
            if best is not None and best.via is not None:
                rows.append({"member": self._name(member), "via": peers.get(best.via, best.via),
                             "hops": best.hops})
        return sorted(rows, key=lambda r: (r["via"], r["member"]))

    def _name(self, member: str) -> str:
        """A member of another hub as its listings name it (name.hub), else its id."""
        directory = self.hub.directory
        if member in directory.exits:
            return directory.exits[member].name
        services = directory.services.get(member)
        if services is not None and services.label:
            return services.label
        return directory.names.get(member, member)

    # -------------------------------------------------------------- actions

    async def invite(self, request: Request) -> Response:
        body = request.json()
        name = str(body.get("name") or "").strip()
        try:
            uses = int(body.get("uses") or 1)
        except (TypeError, ValueError):
            raise HttpError(400, "uses: a whole number") from None
        lifetime = parse_duration(str(body.get("expires") or "7d"))
        token = self.store.create_invite(name, uses=uses, expires_in=lifetime)
        link = report.invite_link(self.config, token)
        import segno  # here, not at the top: QR codes cost the hub's process ~1.5 MB, and few pages ask

        return as_json({"name": name.lower(), "link": link, "qr": segno.make(link).svg_data_uri(scale=4)})

    async def withdraw_invites(self, request: Request) -> Response:
        name = str(request.json().get("name") or "")
        return as_json({"name": name, "withdrawn": self.store.revoke_invites(name)})

    async def revoke_member(self, request: Request) -> Response:
        member = self.store.revoke_member(str(request.json().get("name") or ""))
        return as_json({"revoked": member.name})  # the hub drops its link at its next look at the store

    async def revoke_device(self, request: Request) -> Response:
        device = self.store.revoke_device(str(request.json().get("name") or ""))
        return as_json({"revoked": device.label})

    async def verify(self, request: Request) -> Response:
        return as_json(report.verify_ledger(self.config, self.store))

    async def metrics(self, request: Request) -> Response:
        body, kind = metrics.exposition(hub_metrics(self.hub))
        return Response(body=body, kind=kind)


def link_counts(hub: Hub) -> dict[str, int]:
    """Links up now, by kind: members' agents (the hub's search member among them), devices, peer hubs."""
    devices = sum(isinstance(port, DevicePort) for port in hub.ports.listeners())
    return {"member": len(hub.ports.listeners()) - devices, "device": devices, "peer": len(hub.peer_ports())}


def hub_metrics(hub: Hub) -> list[metrics.Metric]:
    """The hub's numbers, named as Prometheus would have them."""
    door = hub.server.counts if hub.server is not None else None
    links = metrics.gauge("ladder_links", "Links up now, by kind.")
    for kind, count in link_counts(hub).items():
        links.add(count, kind=kind)
    up, down = hub.ports.carried()
    relayed = metrics.counter("ladder_relayed_bytes", "Bytes the hub relayed in members' streams: up from "
                              "the member who opened a stream, down back to it.")
    relayed.add(up, direction="up").add(down, direction="down")
    refusals = metrics.counter("ladder_refusals", "Streams the hub refused, by reason.")
    for reason, count in sorted(hub.ports.refused.items()):
        refusals.add(count, reason=reason)
    hellos = metrics.counter("ladder_hellos", "Hellos at the front door: taken as a link, or refused.")
    hellos.add(door.hellos_accepted if door else 0, result="accepted")
    hellos.add(door.hellos_refused if door else 0, result="refused")
    peers = metrics.gauge("ladder_peers", "Peer hubs this hub knows, by state.")
    status = hub.federation.status()
    peers.add(sum(p["up"] for p in status), state="up").add(sum(not p["up"] for p in status), state="down")
    pages, indexed = _search_counts(hub)
    return [
        metrics.gauge("ladder_up_seconds", "Seconds since the hub started.", time.time() - hub.started),
        links,
        metrics.gauge("ladder_streams", "Streams spliced through the hub now.", hub.ports.open_streams()),
        metrics.counter("ladder_streams_spliced", "Streams spliced since the hub started.",
                        hub.ports.spliced),
        relayed, refusals,
        metrics.counter("ladder_connections", "Connections accepted at the public port.",
                        door.connections if door else 0),
        metrics.counter("ladder_handshakes", "TLS handshakes completed at the public port.",
                        door.handshakes if door else 0),
        hellos,
        metrics.counter("ladder_device_connections", "Devices' connections taken at the public port.",
                        door.devices if door else 0),
        metrics.counter("ladder_web_visits", "Connections the web face answered.", door.web if door else 0),
        metrics.gauge("ladder_directory_exits", "Exits the directory lists.", len(hub.directory.exits)),
        metrics.gauge("ladder_directory_services", "Services the directory lists.",
                      sum(len(listing.entries) for listing in hub.directory.services.values())),
        peers,
        metrics.gauge("ladder_ledger_entries", "Entries in the hub's ledger.", hub.store.ledger_size(hub.id)),
        metrics.counter("ladder_receipts_refused", "Receipts, settlements and peers' ledger checkpoints the "
                        "hub refused since it started (each counted, the log sums a flood up).",
                        hub.credits.refused),
        metrics.gauge("ladder_search_services", "Services the search index holds.", indexed),
        metrics.gauge("ladder_search_pages", "Pages the search index holds.", pages),
        metrics.gauge("ladder_search_crawls", "Crawls running now.", len(hub.search.crawling)),
        metrics.gauge("ladder_search_queued", "Services waiting to be crawled.", len(hub.search.queued)),
    ]


def _search_counts(hub: Hub) -> tuple[int, int]:
    """(pages, services) in the search index; zeros while search is off."""
    index = hub.search.index
    if index is None:
        return 0, 0
    services = index.services()
    return sum(s.pages for s in services), len(services)


# ---------------------------------------------------------------- serving


async def start(hub: Hub, address: tuple[str, int]) -> asyncio.Server | None:
    """Listen for the admin page beside `hub` and write its URL for `ladder hub admin-url`; None (and one
    warning line) if the address cannot be had: the hub runs on without its page."""
    folder = hub.config.folder
    try:
        sock = web.bind(address)
    except OSError as exc:
        log.warning("no admin page: cannot listen on %s: %s", format_address(*address), exc.strerror or exc)
        return None
    if address[0] not in ("127.0.0.1", "::1", "localhost"):
        log.warning("the admin page listens on %s, not on loopback: anyone who can reach it may try its "
                    "secret (reach a loopback page with ssh -L instead)", format_address(*address))
    bound = sock.getsockname()[:2]
    secret = read_or_make_secret(folder / SECRET_FILE)
    server = await Admin(hub, secret, bound).app.listen(sock)
    written_url = json.dumps({"url": admin_url(bound, secret), "pid": os.getpid()})
    write_file(folder / ADDRESS_FILE, written_url.encode(), 0o600)
    log.info("admin page on http://%s/ (`ladder hub admin-url --dir %s` prints its address)",
             format_address(*bound), folder)
    return server


def written(folder: Path) -> dict:
    """{url, pid} as the last hub with an admin page wrote them; {} if none did."""
    try:
        found = json.loads((folder / ADDRESS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


# -------------------------------------------------------------- the page


def render(lang: str, csrf: str) -> str:
    """The page's HTML in `lang`: every label from the table; the script fills in the data."""
    def s(key: str) -> str:
        return html.escape(t(lang, key, ADMIN))

    def head(*keys: str) -> str:
        cells = "".join(f"<th>{s(k)}</th>" if k else "<th></th>" for k in keys)
        return f"<thead><tr>{cells}</tr></thead>"

    boot = json.dumps({"csrf": csrf, "lang": lang, "strings": ADMIN[lang]},
                      ensure_ascii=False).replace("<", "\\u003c")
    panels = ("health", "members", "exits", "invites", "devices", "peers", "ledger")
    nav = "".join(f'<a href="#{k}">{s("nav." + k)}</a>' for k in panels)
    return f"""<!doctype html>
<html lang="{'zh-CN' if lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{s("title")}</title><link rel="stylesheet" href="/static/app.css"></head>
<body><script type="application/json" id="boot">{boot}</script>
<header><h1>{s("title")} <span id="hub-name" data-test="hub-name"></span></h1><nav>{nav}</nav></header>
<main>
<section id="health"><h2>{s("nav.health")}</h2>
 <dl data-test="health"><dt>{s("health.version")}</dt><dd id="health-version" data-test="health-version"></dd>
 <dt>{s("health.uptime")}</dt><dd id="health-uptime" data-test="health-uptime"></dd>
 <dt>{s("health.links")}</dt><dd id="health-links" data-test="health-links"></dd>
 <dt>{s("health.streams")}</dt><dd id="health-streams" data-test="health-streams"></dd>
 <dt>{s("health.store")}</dt><dd id="health-store" data-test="health-store"></dd>
 <dt>{s("health.certificate")}</dt><dd id="health-certificate" data-test="health-certificate"></dd>
 <dt>{s("health.address")}</dt><dd id="health-address" data-test="health-address"></dd>
 <dt>{s("health.fingerprint")}</dt>
 <dd><code id="health-fingerprint" data-test="health-fingerprint"></code></dd>
 </dl>
</section>
<section id="members"><h2>{s("nav.members")}</h2>
 <table class="list">{head("members.name", "members.state", "members.role", "members.balance", "members.used",
                           "members.shared", "members.devices", "members.seen", "members.release", "")}
 <tbody id="member-list" data-test="member-list"></tbody></table>
</section>
<section id="exits"><h2>{s("nav.exits")}</h2>
 <table class="list">{head("exits.country", "exits.count", "exits.names")}
 <tbody id="exit-list" data-test="exit-list"></tbody></table>
</section>
<section id="invites"><h2>{s("nav.invites")}</h2>
 <form id="invite-form" data-test="invite-form" class="grid">
  <label>{s("invites.name")}<input name="name" id="invite-name" data-test="invite-name" maxlength="64"
   required></label>
  <label>{s("invites.uses")}<input name="uses" id="invite-uses" data-test="invite-uses" type="number" min="1"
   value="1"></label>
  <label>{s("invites.expires")}<input name="expires" id="invite-expires" data-test="invite-expires"
   value="7d"></label>
  <button id="invite-create" data-test="invite-create">{s("invites.create")}</button></form>
 <div id="invite-made" data-test="invite-made" hidden><p>{s("invites.link")}</p>
  <img id="invite-qr" data-test="invite-qr" alt="QR">
  <p><code id="invite-link" data-test="invite-link"></code></p></div>
 <table class="list">{head("invites.name", "invites.uses", "invites.expires", "")}
 <tbody id="invite-list" data-test="invite-list"></tbody></table>
</section>
<section id="devices"><h2>{s("nav.devices")}</h2>
 <table class="list">{head("devices.device", "devices.state", "devices.today", "devices.total",
                           "devices.exit", "devices.expires", "")}
 <tbody id="device-list" data-test="device-list"></tbody></table>
</section>
<section id="peers"><h2>{s("nav.peers")}</h2>
 <table class="list">{head("peers.name", "peers.state", "peers.rtt", "peers.routes", "peers.bytes",
                           "peers.ledger")}
 <tbody id="peer-list" data-test="peer-list"></tbody></table>
 <h3>{s("peers.routes_title")}</h3>
 <table class="list">{head("peers.member", "peers.via", "peers.hops")}
 <tbody id="route-list" data-test="route-list"></tbody></table>
</section>
<section id="ledger"><h2>{s("nav.ledger")}</h2>
 <dl><dt>{s("ledger.entries")}</dt><dd id="ledger-entries" data-test="ledger-entries"></dd>
 <dt>{s("ledger.checkpoint")}</dt><dd id="ledger-checkpoint" data-test="ledger-checkpoint"></dd>
 <dt>{s("ledger.root")}</dt><dd><code id="ledger-root" data-test="ledger-root"></code></dd></dl>
 <div class="row"><button id="ledger-verify" data-test="ledger-verify">{s("ledger.verify")}</button>
 <span id="ledger-note" data-test="ledger-note"></span></div>
</section>
</main>
<p id="error" data-test="error" role="alert" hidden></p>
<script src="/static/common.js"></script><script src="/static/admin.js"></script></body></html>
"""
