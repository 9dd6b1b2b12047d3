"""The `ladder` command: parses, calls the roles, prints one clear line on error."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from ladder import __version__, runtime
from ladder.config import (
    PEER_SCHEME,
    ConfigError,
    HubConfig,
    InviteLink,
    MemberConfig,
    ProxyAuth,
    country_code,
    format_address,
    hub_folder,
    member_folder,
    parse_address,
    parse_duration,
)
from ladder.errors import UserError

if TYPE_CHECKING:
    from ladder.service import Scope, ServiceSpec

DIR_HELP = ("This member's folder: its keys, config and state "
            "(default: $LADDER_HOME, else the user's config folder).")
HUB_DIR_HELP = ("The hub's folder: its keys, config and member store "
                "(default: $LADDER_HOME, else the user's data folder).")


def log_format_option(command):
    return click.option("--log-format", type=click.Choice(runtime.LOG_FORMATS), default="text",
                        show_default=True,
                        help="Logs on stderr as text, or as one JSON object a line (time, level, logger, "
                        "message, exc) for journald, Loki or a container runtime.")(command)


def proxy_option(value: str) -> tuple[str, int]:
    """--proxy: host:port, or a bare port on 127.0.0.1."""
    address = ("127.0.0.1", int(value)) if value.isdecimal() else address_option(value)
    if not 0 < address[1] < 65536:
        raise click.BadParameter(f"{value!r}: a port is 1-65535", param_hint="--proxy")
    return address


def proxy_listen(proxy: str | None, lan: bool, share: bool) -> tuple[str, int] | None:
    """Where the proxy listens: --proxy; with --lan every address at its port (default 1080);
    else 127.0.0.1:1080, or nowhere for an exit (--share)."""
    if not lan:
        return proxy_option(proxy) if proxy else (None if share else ("127.0.0.1", 1080))
    host, port = proxy_option(proxy) if proxy else ("0.0.0.0", 1080)
    if proxy and not proxy.isdecimal() and host != "0.0.0.0":
        raise click.UsageError("--lan listens on every address: give --proxy only a port (--proxy 1090), "
                               "or drop --lan and give --proxy HOST:PORT")
    return ("0.0.0.0", port)


def proxy_credentials(given: str | None, config: MemberConfig) -> ProxyAuth | None:
    """--proxy-auth, else $LADDER_PROXY_AUTH (click reads it for the option), else [proxy] auth."""
    if given is None:
        return config.proxy_auth()
    from_env = click.get_current_context().get_parameter_source("proxy_auth") is ParameterSource.ENVIRONMENT
    return ProxyAuth.parse(given, "LADDER_PROXY_AUTH" if from_env else "--proxy-auth")


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_option(value: str) -> tuple[str, int]:
    try:
        return parse_address(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


def device_options(command):
    """What a device's exit choice and limits take: the same for `device add` and `hub device add`."""
    options = [
        click.option("--exit", "exit_choice", metavar="auto|COUNTRY|NAME", default="auto", show_default=True,
                     help="The exit the hub sends the device's traffic through."),
        click.option("--rules", "rules_source", metavar="PRESET|FILE",
                     help="Routing rules: inside-cn, abroad, or a rules file (see `ladder route test`)."),
        click.option("--rate", metavar="BYTES", help="Bytes per second for the device, e.g. 5M."),
        click.option("--daily-cap", metavar="BYTES", help="Bytes a day for the device, e.g. 2G."),
        click.option("--expires", metavar="DURATION", help="The device stops working after e.g. 90d."),
        click.option("--qr", "qr_file", type=click.Path(dir_okay=False),
                     help="Also write a QR code of the share link to this PNG file."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def print_device_added(label: str, link: str, subscription: str, note: str, qr_file: str | None) -> None:
    """The share link last, as scripts expect; a QR code of it first when a person is looking."""
    from ladder.qr import print_qr, save_qr

    click.echo(f"device {label} added; treat what follows like a password")
    click.echo(f"subscription (sing-box, Clash or links: add ?format=sing-box|clash|links): {subscription}")
    if note:
        click.echo(note)
    if qr_file:
        save_qr(link, Path(qr_file))
        click.echo(f"QR code of the share link written to {qr_file}")
    print_qr(link, sys.stdout)
    click.echo(link)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, package_name="ladder")  # the running code's, not the installed metadata's
def cli() -> None:
    """Ladder: a shared network that climbs over firewalls.

    A hub on a VPS bridges members into one network. Members share their
    connection as exits and browse through each other's exits with a local
    SOCKS5/HTTP proxy. Try `ladder demo` to see it all on this machine.

    \b
    Start here:
      on the VPS:     ladder hub init --dir ~/hub --public-address HOST:443
                      ladder hub run --dir ~/hub
                      ladder hub invite --dir ~/hub alice        # send the link to alice
      alice:          ladder join 'ladder://...' --dir ~/ladder
                      ladder up --dir ~/ladder                   # proxy on 127.0.0.1:1080
      alice's phone:  ladder device add phone --dir ~/ladder     # scan the QR code in its Trojan app

    Every command takes -h for its own help.
    """


# ------------------------------------------------------------------ hub


@cli.group()
def hub() -> None:
    """Run a hub: the relay members connect to (on a VPS with a public address)."""


@hub.command("init")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--name", default="hub", show_default=True, help="The hub's name, shown to members.")
@click.option("--listen", metavar="HOST:PORT", default="0.0.0.0:443", show_default=True,
              help="Address and port to listen on (ports below 1024 need root or CAP_NET_BIND_SERVICE).")
@click.option("--public-address", metavar="HOST[:PORT]",
              help="The name or address members dial, put in invite links (needed when --listen is 0.0.0.0). "
              "Default: --listen.")
@click.option("--cert", type=click.Path(dir_okay=False),
              help="Your own TLS certificate (PEM), e.g. from a CA.")
@click.option("--key", type=click.Path(dir_okay=False), help="The private key of --cert (PEM).")
@click.option("--web-backend", metavar="HOST:PORT",
              help="A real web server (plain HTTP host:port) that answers everyone who is "
              "not a member, instead of the built-in small site.")
@click.option("--raw-backend", metavar="HOST:PORT",
              help="That server's TLS host:port, for connections that do not start TLS "
              "(probes, plain HTTP), so it answers them itself.")
@click.option("--db", "database", metavar="URL", help="A postgresql:// URL: a database several "
              "hub processes share (give each the same URL). Default: hub.db in the folder.")
def hub_init(folder, name, listen, public_address, cert, key, web_backend, raw_backend, database) -> None:
    """Create a hub: its TLS key and certificate, its member store, its config.

    \b
    Example:
      ladder hub init --dir ~/hub --name tokyo --listen 0.0.0.0:443 \\
                      --public-address hub.example.org:443
      ladder hub run --dir ~/hub
    """
    from ladder.link.tls import check_key_matches_cert, fingerprint_of_cert_file, generate_self_signed
    from ladder.store.hubdb import HubStore

    path = hub_folder(folder)
    if (path / "hub.toml").exists():
        raise UserError(f"{path} already holds a hub; use another --dir")
    listen_at = address_option(listen)
    public = address_option(public_address) if public_address is not None else listen_at
    if public[0] in ("0.0.0.0", "::"):
        raise click.UsageError("--public-address is needed: invite links must carry the name or address "
                               f"members dial (your server's), not {listen_at[0]}")
    backends = [None if value is None else address_option(value) for value in (web_backend, raw_backend)]
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together")
    if database is not None and not database.startswith(("postgresql://", "postgres://")):
        raise click.UsageError("--db takes a postgresql:// URL")
    path.mkdir(parents=True, exist_ok=True)
    if cert:
        cert_path, key_path = Path(cert).resolve(), Path(key).resolve()
        check_key_matches_cert(cert_path, key_path)
    else:
        cert_path, key_path = path / "tls.crt", path / "tls.key"
        generate_self_signed(cert_path, key_path, public[0], [public[0]])
    config = HubConfig(path, name, listen_at, public, cert_path, key_path, backends[0], backends[1], database)
    HubStore(config.store_target).close()  # connects and migrates, or says in one line why not
    config.save()
    click.echo(f"hub {name} created in {path}")
    click.echo(f"key fingerprint: {fingerprint_of_cert_file(cert_path)}")
    click.echo(f"next: ladder hub run --dir {path}   then: ladder hub invite --dir {path} NAME")


@hub.command("run")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--admin", "admin_at", metavar="HOST:PORT|off", default="127.0.0.1:8444", show_default=True,
              help="Serve the admin page and /metrics here (`ladder hub admin-url` prints its address).")
@click.option("-v", "--verbose", is_flag=True, help="Log every link and stream event.")
@log_format_option
def hub_run(folder, admin_at, verbose, log_format) -> None:
    """Serve members until interrupted (Ctrl-C), where `hub init --listen` said.

    Strangers who connect see an ordinary small web site; members' agents
    dial it with the keys their invite pinned. The admin page listens on
    its own address, loopback by default (reach it with ssh -L), never on
    the public port.
    """
    from ladder.hub.hub import Hub
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    admin_address = None if admin_at.strip().lower() == "off" else _page_address(admin_at, "--admin", False)
    runtime.setup_logging(verbose, log_format)

    async def serve() -> None:
        with HubStore(config.store_target) as store:
            hub_ = Hub(config, store)
            try:
                await hub_.start()
            except OSError as exc:
                raise UserError(f"cannot listen on {config.listen[0]}:{config.listen[1]}: "
                                f"{exc.strerror or exc}") from None
            logging.info("hub %s listening on %s:%d, fingerprint %s", config.name, *config.listen,
                         hub_.fingerprint)
            assert hub_.server is not None  # start() returned: it listens
            page = None
            if admin_address is not None:
                from ladder.app import admin

                page = await admin.start(hub_, admin_address)
            try:
                await hub_.server.serve_forever()
            finally:
                if page is not None:
                    page.close()
                    (config.folder / admin.ADDRESS_FILE).unlink(missing_ok=True)
                await hub_.stop()

    runtime.serve(serve())


@hub.command("admin-url")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: url, pid.")
def hub_admin_url(folder, as_json) -> None:
    """Print the running hub's admin page address, with its secret (do not share it).

    \b
    From another machine, forward the port first:
      ssh -L 8444:127.0.0.1:8444 you@vps   then open the address printed here
    The same secret is /metrics' bearer token (see docs/DEPLOY.md for a Prometheus scrape).
    """
    from ladder.app.admin import written

    config = HubConfig.load(hub_folder(folder))
    page = written(config.folder)
    if not page.get("url") or not _alive(page.get("pid")):
        raise UserError(f"no admin page runs for {config.folder}: start the hub with `ladder hub run --dir "
                        f"{config.folder}` (and without --admin off)")
    click.echo(json.dumps(page, indent=1) if as_json else page["url"])


@hub.command("doctor")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as a JSON list.")
def hub_doctor(folder, as_json) -> None:
    """Check the hub's folder: config, keys and their modes, certificate expiry, the listen port, the store.

    One line per check, with what to do; exit 1 if any failed (warnings do not).
    """
    from ladder.doctor import examine_hub

    path = hub_folder(folder)
    if not (path / "hub.toml").exists():
        raise UserError(f"{path} holds no hub (hub.toml): give the hub's folder with --dir")
    print_checks(examine_hub(path), as_json)


@hub.command("invite")
@click.argument("name")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--uses", default=1, show_default=True, type=click.IntRange(1),
              help="How many members may join with it.")
@click.option("--expires", metavar="DURATION", default="7d", show_default=True,
              help="How long it can be used: 30m, 12h, 7d, 2w.")
@click.option("--revoke", is_flag=True, help="Withdraw NAME's invites that can still be used instead.")
def hub_invite(name, folder, uses, expires, revoke) -> None:
    """Print an invite link for NAME, the member's name in the network (one line; send it privately).

    \b
    Example:
      ladder hub invite --dir ~/hub alice
      ladder hub invite --dir ~/hub family --uses 5 --expires 12h
      ladder hub invite --dir ~/hub family --revoke
    The link carries the hub's address and key fingerprint: whoever holds it can join.
    """
    from ladder.hub.report import invite_link
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    lifetime = parse_duration(expires)
    with HubStore(config.store_target) as store:
        if revoke:
            click.echo(f"withdrew {store.revoke_invites(name)} invite(s) for {name}")
            return
        token = store.create_invite(name, uses=uses, expires_in=lifetime)
    click.echo(invite_link(config, token))


@hub.command("members")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def hub_members(folder, as_json) -> None:
    """List members: who is online, as exit or user, and who was revoked."""
    from ladder.hub import report
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    with HubStore(config.store_target) as store:
        rows = report.members(store)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no members yet: ladder hub invite --dir {config.folder} NAME")
        return
    click.echo(f"{'NAME':<20} {'STATUS':<12} {'LAST SEEN':<20} {'LADDER':<8} ID")
    for r in rows:
        status = "revoked" if r["revoked"] else (f"online {r['online']}" if r["online"] else "offline")
        seen, release = _when(r["last_seen"]), r["release"] or "-"
        click.echo(f"{r['name']:<20} {status:<12} {seen:<20} {release:<8} {r['id']}")


@hub.command("revoke")
@click.argument("name")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
def hub_revoke(name, folder) -> None:
    """Remove member NAME: its link drops within seconds and cannot come back."""
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    with HubStore(config.store_target) as store:
        member = store.revoke_member(name)
    click.echo(f"revoked {member.name} ({member.id})")


@hub.command("devices")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def hub_devices(folder, as_json) -> None:
    """List devices (phones and others served without the agent): online, bytes today, last seen."""
    from ladder.hub import report
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    with HubStore(config.store_target) as store:
        rows = report.devices(store)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no devices yet: ladder hub device add --dir {config.folder} NAME --owner MEMBER")
        return
    click.echo(f"{'DEVICE':<30} {'STATUS':<8} {'TODAY':>10} {'LAST SEEN':<17} EXPIRES")
    for r in rows:
        status = "revoked" if r["revoked"] else ("online" if r["online"] else "offline")
        click.echo(f"{r['owner'] + '/' + r['name']:<30} {status:<8} {_amount(r['bytes_today']):>10} "
                   f"{_when(r['last_seen']):<17} {_when(r['expires'])}")


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def _amount(nbytes: int) -> str:
    """Bytes for a person: 512 B, 3.4 MiB."""
    if nbytes < 1024:
        return f"{nbytes} B"
    size, unit = nbytes / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"


@hub.group("device")
def hub_device() -> None:
    """Add and revoke devices: phones and others that use a stock Trojan app instead of the agent."""


@hub_device.command("add")
@click.argument("name")
@click.option("--owner", required=True, metavar="MEMBER", help="The member the device belongs to.")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@device_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the password and the link).")
def hub_device_add(name, owner, folder, exit_choice, rules_source, rate, daily_cap, expires, qr_file,
                   as_json) -> None:
    """Add device NAME for MEMBER and print its share link as the last line (send it privately).

    \b
    Example:
      ladder hub device add phone --owner alice --dir ~/hub --exit US --rules inside-cn --daily-cap 2G
    The link imports into sing-box, Shadowrocket, Clash Meta or v2rayNG; whoever holds it
    can use the network as the device, until `ladder hub device revoke alice/phone`.
    A member adds its own devices with `ladder device add`.
    """
    from ladder.hub.devices import add_device
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    from ladder.agent.command import device_request

    request = device_request(name, exit_choice, rules_source, rate, daily_cap, expires)
    with HubStore(config.store_target) as store:
        new = add_device(config, store, owner, request.name, exit=request.exit, rules=request.rules or None,
                         rate=request.rate or None, daily_cap=request.daily_cap or None,
                         expires_in=request.expires - time.time() if request.expires else None)
    if as_json:
        click.echo(json.dumps({"label": new.device.label, "id": new.device.id, "password": new.password,
                               "share_link": new.link, "subscription": new.subscription,
                               "cert_sha256": new.cert_sha256, "expires": new.device.expires_at}, indent=1))
        return
    print_device_added(new.device.label, new.link, new.subscription, new.note, qr_file)


@hub_device.command("revoke")
@click.argument("name")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
def hub_device_revoke(name, folder) -> None:
    """Revoke device NAME (owner/name, or name when only one owner has it): cut within seconds."""
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    with HubStore(config.store_target) as store:
        device = store.revoke_device(name)
    click.echo(f"revoked device {device.label}")


# ------------------------------------------------------------ peer hubs


@hub.command("peer-invite")
@click.argument("name")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--expires", metavar="DURATION", default="7d", show_default=True,
              help="How long it can be redeemed: 30m, 12h, 7d, 2w.")
def hub_peer_invite(name, folder, expires) -> None:
    """Print a single-use link with which another hub peers with this one as NAME (last line).

    \b
    Example (two operators):
      ladder hub peer-invite berlin --dir ~/hub             # on the hub in Tokyo
      ladder hub peer add 'ladder-peer://...' --dir ~/hub   # on the hub in Berlin
    The redeeming hub keeps a link to this one (it may be behind NAT); both then
    route each other's exits and services, end to end encrypted as ever.
    """
    from ladder.link.tls import fingerprint_of_cert_file
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    with HubStore(config.store_target) as store:
        token = store.create_peer_invite(config.hub_id(), name, expires_in=parse_duration(expires))
    click.echo(f"peer invite for {name.lower()}, single use; give it to that hub's operator privately:")
    click.echo(InviteLink(token, config.public_address, fingerprint_of_cert_file(config.cert), config.name,
                          PEER_SCHEME))


@hub.group("peer")
def hub_peer() -> None:
    """Peerings with other hubs: add one from a peer invite, remove one."""


@hub_peer.command("add")
@click.argument("invite")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--name", help="What this hub calls the peer (default: the name it gives itself).")
def hub_peer_add(invite, folder, name) -> None:
    """Peer with the hub whose peer INVITE (ladder-peer://...) this is; this hub dials it from now on.

    \b
    Example:
      ladder hub peer add 'ladder-peer://TOKEN@hub.example.org:443?fp=sha256:...&hub=tokyo' --dir ~/hub
    """
    from ladder.hub.peers import redeem
    from ladder.store.hubdb import HubStore

    link = InviteLink.parse(invite, PEER_SCHEME)
    config = HubConfig.load(hub_folder(folder))
    with HubStore(config.store_target) as store:
        peer = runtime.run_async(redeem(config, store, link, name))
    click.echo(f"peered with hub {peer.name} at {peer.address} (id {peer.hub_id})")
    click.echo("a running hub dials it within a second: ladder hub peers --dir "
               f"{config.folder} shows the link")


@hub_peer.command("remove")
@click.argument("name")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
def hub_peer_remove(name, folder) -> None:
    """End the peering (or withdraw the peer invite) NAME, on both sides: the running hub tells the peer."""
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    with HubStore(config.store_target) as store:
        peer = store.remove_peer(config.hub_id(), name)
    click.echo(f"removed peer {peer.name}" + ("" if peer.pending else f" ({peer.hub_id})"))


@hub.command("peers")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def hub_peers(folder, as_json) -> None:
    """Each peer hub: up or down, round-trip time, routes learned from it, bytes relayed over its link,
    and its ledger: the entries of its newest checkpoint this hub checked, or FORKED when it showed a
    checkpoint that cannot extend one it signed before.

    It reads what the running hub writes in its folder every second (peers.json).
    """
    from ladder.hub import report
    from ladder.hub.peers import STATUS_FILE
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    try:
        live = json.loads((config.folder / STATUS_FILE).read_text())
        fresh = time.time() - live.get("at", 0) < 5
    except (OSError, ValueError, AttributeError):
        live, fresh = {}, False
    with HubStore(config.store_target) as store:
        rows = report.peers(config, store, live.get("peers", []) if fresh else [])
    if as_json:
        click.echo(json.dumps({"hub": config.name, "id": config.hub_id(), "running": fresh, "peers": rows},
                              indent=1))
        return
    if not rows:
        click.echo(f"no peers yet: ladder hub peer-invite NAME --dir {config.folder}")
        return
    if not fresh:
        click.echo("(the hub is not running: every peer shows down)")
    click.echo(f"{'NAME':<16} {'STATE':<8} {'RTT':>8} {'ROUTES':>7} {'REFUSED':>8} {'RELAYED':>10} "
               f"{'LEDGER':>10}  LINK")
    conflicts = []
    for r in rows:
        state = "invited" if r["pending"] else "up" if r["up"] else "down"
        rtt = "-" if r["rtt_ms"] is None else f"{r['rtt_ms']:.1f}ms"
        link = f"dials {r['dials']}" if r["dials"] else "it dials this hub"
        held = r["ledger"]
        ledger = "-" if held is None else f"{held['size']} ok" if held["holds"] else "FORKED"
        if held is not None and not held["holds"]:
            conflicts.append(f"{r['name']}: {held['conflict']['reason']}")
        click.echo(f"{r['name']:<16} {state:<8} {rtt:>8} {r['routes']:>7} {sum(r['refused'].values()):>8} "
                   f"{_amount(r['bytes']):>10} {ledger:>10}  {link}")
    for conflict in conflicts:
        click.echo(f"ledger of {conflict} (its two signed checkpoints are kept in the store)")


# ---------------------------------------------------------------- ledger


def _credits(amount: int) -> str:
    """A balance for a person: _amount's units, and a sign below zero."""
    return f"-{_amount(-amount)}" if amount < 0 else _amount(amount)


@hub.group("ledger", invoke_without_command=True)
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of accounts) instead of a table.")
@click.pass_context
def hub_ledger(ctx, folder, as_json) -> None:
    """Each member's credits: balance, earned and spent (bytes its exit carried, and carried for it).

    A member of another hub is shown as ID@HUB. `ladder hub ledger verify` checks the log itself.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ladder.hub import report
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    with HubStore(config.store_target) as store:
        rows = report.accounts(config, store)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no members and no credits yet: ladder hub invite NAME --dir {config.folder}")
        return
    columns = {"balance": "BALANCE", "earned": "EARNED", "spent": "SPENT", "month_earned": "MONTH EARNED",
               "month_spent": "MONTH SPENT"}
    width = max(len("MEMBER"), *(len(r["name"]) for r in rows))  # ID@HUB is 49 characters
    click.echo(f"{'MEMBER':<{width}} " + " ".join(f"{title:>12}" for title in columns.values()))
    for r in [*rows, {"name": "total", **{c: sum(r[c] for r in rows) for c in columns}}]:
        click.echo(f"{r['name']:<{width}} " + " ".join(f"{_credits(r[c]):>12}" for c in columns))


@hub_ledger.command("verify")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: verified, entries, checkpoints, problem.")
def hub_ledger_verify(folder, as_json) -> None:
    """Check the ledger from its first entry: every receipt, every leaf, every signed checkpoint.

    Exits 0 if it holds, else 1 with the first entry (or checkpoint) that does not.
    """
    from ladder.hub import report
    from ladder.store.hubdb import HubStore

    config = HubConfig.load(hub_folder(folder))
    with HubStore(config.store_target) as store:
        found = report.verify_ledger(config, store)
    if as_json:
        click.echo(json.dumps(found, indent=1))
    else:
        click.echo(found["problem"] or f"ledger verified: {found['entries']} entries, "
                                       f"{found['checkpoints']} checkpoints")
    sys.exit(0 if found["verified"] else 1)


# ---------------------------------------------------------------- search


@hub.group("search", invoke_without_command=True)
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of services) instead of a table.")
@click.pass_context
def hub_search(ctx, folder, as_json) -> None:
    """The services this hub's search engine indexes: pages, when crawled, online, delisted.

    \b
    Examples:
      ladder hub search --dir ~/hub
      ladder hub search delist blog.mallory --dir ~/hub
      ladder hub search relist blog.mallory --dir ~/hub

    The hub's crawler is a member of its own, named after the hub; it reads
    its members' HTTP services through channels like any member, obeys
    robots.txt and skips services published with --no-index.
    """
    if ctx.invoked_subcommand is not None:
        return
    with _search_index(folder) as index:
        services = index.services()
    rows = [{"host": s.host, "pages": s.pages, "crawled": s.crawled, "online": s.online,
             "delisted": s.delisted} for s in services]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("nothing indexed yet: members' HTTP services are, within a minute of being published")
        return
    click.echo(f"{'SERVICE':<40} {'PAGES':>6} {'CRAWLED':<20} STATE")
    for r in rows:
        crawled = "never" if r["crawled"] is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                                     time.localtime(r["crawled"]))
        state = "delisted" if r["delisted"] else "online" if r["online"] else "offline"
        click.echo(f"{r['host']:<40} {r['pages']:>6} {crawled:<20} {state}")


@hub_search.command("delist")
@click.argument("name")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
def hub_search_delist(name, folder) -> None:
    """Leave the service NAME (blog.alice, or blog.alice.ladder) out of every search, at once."""
    with _search_index(folder) as index:
        if not index.delist(name):
            raise UserError(f"no indexed service is called {name} (see `ladder hub search`)")
    click.echo(f"{name} is delisted: no search here shows it (relist it with `ladder hub search relist`)")


@hub_search.command("relist")
@click.argument("name")
@click.option("--dir", "folder", metavar="FOLDER", help=HUB_DIR_HELP)
def hub_search_relist(name, folder) -> None:
    """Show a delisted service NAME in search results again."""
    with _search_index(folder) as index:
        if not index.relist(name):
            raise UserError(f"{name} is not delisted (see `ladder hub search`)")
    click.echo(f"{name} is listed again")


@contextlib.contextmanager
def _search_index(folder):
    from ladder.hub.search import index_path
    from ladder.search.index import SearchIndex

    config = HubConfig.load(hub_folder(folder))
    index = SearchIndex(index_path(config))
    try:
        yield index
    finally:
        index.close()


# ---------------------------------------------------------------- member


@cli.command()
@click.argument("invite")
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
def join(invite, folder) -> None:
    """Join a hub with an INVITE link (ladder://...) from its operator.

    \b
    Example:
      ladder join 'ladder://TOKEN@hub.example.org:443?fp=sha256:...&hub=tokyo' --dir ~/ladder
    Creates this member's keys in the folder (quote the link: it holds '&' and '?'),
    then `ladder up --dir ~/ladder` connects.
    """
    from ladder.agent.join import join as join_hub

    link = InviteLink.parse(invite)
    path = member_folder(folder)
    if (path / "ladder.toml").exists():
        raise UserError(f"{path} already holds a membership; use another --dir")
    config = runtime.run_async(join_hub(link, path))
    click.echo(f"joined hub {config.hub_name} as {config.name} (id {config.id})")
    click.echo(f"next: ladder up --dir {path}            (a proxy on 127.0.0.1:1080)")
    click.echo(f"  or: ladder up --dir {path} --share --country DE   "
               "(lend your connection; your country's code)")


@cli.command()
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--proxy", metavar="[HOST:]PORT",
              help="Serve SOCKS5, SOCKS4a (not with --proxy-auth) and HTTP proxying (and /proxy.pac) here; "
              "a bare port means "
              "127.0.0.1:PORT (default 127.0.0.1:1080, or none with --share).")
@click.option("--lan", is_flag=True,
              help="Share the proxy with this network's phones and TVs: listen on every address (0.0.0.0) "
              "at --proxy's port (default 1080), and print the LAN address, the PAC URL and its QR code. "
              "Needs --proxy-auth, or --lan-open.")
@click.option("--proxy-auth", metavar="USER:PASSWORD", envvar="LADDER_PROXY_AUTH", show_envvar=True,
              help="The user name and password every client of the proxy must give (SOCKS5 or HTTP; SOCKS4, "
              "which has none, is refused), on loopback too. Needed beyond loopback unless --lan-open. "
              "`ps` shows this flag: "
              "prefer $LADDER_PROXY_AUTH or `auth` in ladder.toml's [proxy] table (the flag wins, then "
              "the variable, then the file).")
@click.option("--lan-open", is_flag=True,
              help="Let the proxy listen beyond loopback without a password: anyone who reaches it can "
              "use it.")
@click.option("--exit", "exit_choice", metavar="auto|COUNTRY|NAME",
              help="Which exit carries your traffic: auto (least loaded of those that serve you), "
              "a country code (US) or a member name. Default: the dashboard's last choice, else auto.")
@click.option("--share", is_flag=True, default=None,
              help="Lend your connection to other members as an exit (needs --country). Default: as the "
              "dashboard last left it, else not.")
@click.option("--country", metavar="CODE",
              help="With --share: the country your exit is in, as a two-letter ISO code (US, DE, JP).")
@click.option("--allow-private", is_flag=True,
              help="Let the exit reach private/loopback addresses. For demos and labs only.")
@click.option("--rules", "rules_source", metavar="PRESET|FILE",
              help="Routing rules: a preset (inside-cn, abroad) or a rules file. "
              "Default: [route] in ladder.toml, else everything through --exit.")
@click.option("--members", metavar="NAMES",
              help="With --share: only these members (comma-separated names) may use your exit.")
@click.option("--ports", metavar="PORTS",
              help="With --share: destination ports allowed, e.g. 80,443,8000-8100 (default 80,443).")
@click.option("--udp-ports", metavar="PORTS",
              help="With --share: UDP destination ports allowed (DNS, QUIC), e.g. 53,443,3478 "
              "(default 53,443).")
@click.option("--rate", metavar="BYTES", help="With --share: bytes per second for the whole exit, e.g. 20M.")
@click.option("--user-rate", metavar="BYTES", help="With --share: bytes per second per member, e.g. 5M.")
@click.option("--daily-cap", metavar="BYTES",
              help="With --share: bytes per day, e.g. 10G; then no new streams until tomorrow.")
@click.option("--monthly-cap", metavar="BYTES", help="With --share: bytes per month, e.g. 200G.")
@click.option("--user-streams", type=click.IntRange(1), metavar="N",
              help="With --share: open streams per member (default 4096); more wait up to 20 s for a slot.")
@click.option("--dashboard", "dashboard_at", metavar="HOST:PORT|off", default="127.0.0.1:0",
              show_default=True,
              help="Serve the dashboard here (port 0: any free one); `ladder app` opens it.")
@click.option("-v", "--verbose", is_flag=True, help="Log every link and stream event.")
@log_format_option
def up(folder, proxy, lan, proxy_auth, lan_open, exit_choice, share, country, allow_private, rules_source,
       dashboard_at, verbose, log_format, **limits) -> None:
    """Connect to the hub and serve: a local proxy, an exit, or both.

    \b
    Examples:
      ladder up --dir ~/ladder                               # proxy on 127.0.0.1:1080, any exit
      ladder up --dir ~/ladder --exit US                     # only exits in the US
      ladder up --dir ~/ladder --share --country DE          # lend your connection
      ladder up --dir ~/ladder --lan                         # for the home Wi-Fi, with $LADDER_PROXY_AUTH
      curl -x socks5h://127.0.0.1:1080 https://example.com/  # then browse through it

    Runs until Ctrl-C; the link reconnects by itself. `ladder status --dir ~/ladder`
    tells how it is. Point a browser at the proxy, or at the PAC file it serves:
    http://127.0.0.1:1080/proxy.pac
    """
    from ladder.agent.agent import Agent
    from ladder.agent.rules import load_rules
    from ladder.agent.settings import Settings
    from ladder.agent.sharing import SharePolicy

    config = MemberConfig.load(member_folder(folder))
    proxy_at = proxy_listen(proxy, lan, share)
    auth = proxy_credentials(proxy_auth, config)
    lan_at = proxy_at if proxy_at is not None and not _is_loopback(proxy_at[0]) else None
    if lan_at and auth is None and not lan_open:
        raise UserError(f"a proxy on {format_address(*lan_at)} would serve every machine that reaches it: "
                        "give it a password with --proxy-auth USER:PASSWORD (or $LADDER_PROXY_AUTH, or "
                        "[proxy] auth in ladder.toml), or say --lan-open to serve it without one")
    if share and not country:
        raise click.UsageError("--share needs --country: the two-letter code of the country your exit is in "
                               "(e.g. --country DE), so that members can choose it")
    if country and not share:
        raise click.UsageError("--country only goes with --share (it is where your exit is)")
    country = country_code(country) if country else None
    rules = load_rules(rules_source or config.route.get("rules"))
    dashboard = Settings.load(config.folder / "settings.json").get("share", {})  # the page's, over the file's
    flags = {k: v for k, v in limits.items() if v is not None}
    policy = SharePolicy.from_table({**config.share, **dashboard, **flags})
    runtime.setup_logging(verbose, log_format)
    if allow_private:
        logging.warning("--allow-private: members can reach this machine's loopback and LAN "
                        "through your exit")
    if lan_at and auth is None:
        logging.warning("--lan-open: the proxy on %s serves every machine that reaches it, "
                        "without a password", format_address(*lan_at))
    announce = (lambda address: _announce_lan(address, auth)) if lan_at else None
    agent = Agent(config, proxy=proxy_at, proxy_auth=auth, on_proxy_listening=announce, share=share,
                  country=country, exit_choice=exit_choice, allow_private=allow_private, rules=rules,
                  policy=policy)
    if dashboard_at.strip().lower() == "off":
        runtime.serve(agent.run())  # AgentFatal is a UserError: main prints it in one line
        return
    from ladder.app.dashboard import run_with_dashboard

    runtime.serve(run_with_dashboard(agent, _page_address(dashboard_at, "--dashboard")))


def _announce_lan(address: tuple[str, int], auth: ProxyAuth | None) -> None:
    """Where this network's devices find the proxy, once it listens: addresses, PAC URL, its QR code."""
    from ladder.qr import print_qr

    host, port = address
    hosts = _lan_addresses() if host in ("0.0.0.0", "::") else [host]
    if not hosts:
        click.echo(f"LAN: the proxy listens on {format_address(host, port)}, but this machine has no "
                   "network address besides loopback yet")
        return
    speaks = f"SOCKS5 and HTTP, user {auth.user.decode()} and its password" if auth else \
        "SOCKS5, SOCKS4a and HTTP, no password"
    click.echo(f"LAN: proxy at {', '.join(format_address(h, port) for h in hosts)} ({speaks})")
    pac = f"http://{format_address(hosts[0], port)}/proxy.pac"
    click.echo(f"LAN: PAC URL {pac}  (a phone's Wi-Fi proxy setting: Automatic, this URL)")
    print_qr(pac, sys.stdout)


def _lan_addresses() -> list[str]:
    """This machine's IPv4 addresses besides loopback, read from its interfaces (Linux's
    SIOCGIFADDR, one per interface): nothing is sent, so no route or firewall is asked."""
    if not sys.platform.startswith("linux"):
        return []
    import fcntl

    siocgifaddr = 0x8915
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])  # struct ifreq: IFNAMSIZ 16, then sockaddr_in
            try:
                answer = fcntl.ioctl(probe.fileno(), siocgifaddr, request)
            except OSError:
                continue  # no IPv4 address on this interface
            address = socket.inet_ntoa(answer[20:24])
            if not address.startswith("127."):
                virtual = name.startswith(_VIRTUAL_INTERFACES)
                found.append((virtual, not ipaddress.ip_address(address).is_private, address))
    return [address for *_, address in sorted(found)]  # the home LAN's first: the QR code shows it


# Bridges, tunnels and containers' links: a phone on the Wi-Fi cannot reach these addresses.
_VIRTUAL_INTERFACES = ("docker", "br-", "veth", "virbr", "tun", "tap", "wg", "lxc", "zt", "tailscale")


@cli.group()
def route() -> None:
    """Routing rules: which sites go through which exit, directly, or nowhere."""


@route.command("test")
@click.argument("destination")
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--rules", "rules_source",
              help="A preset (inside-cn, abroad) or a rules file instead of the config's.")
@click.option("--exit", "exit_choice", default="auto", show_default=True,
              help="The default exit, as for `up`.")
def route_test(destination, folder, rules_source, exit_choice) -> None:
    """Print which rule matches DESTINATION (a name or an address) and where it would go.

    \b
    Examples:
      ladder route test --rules inside-cn www.baidu.com     # direct
      ladder route test --dir ~/ladder 8.8.8.8              # by your ladder.toml's rules
      ladder route test blog.ryan.ladder                    # a network-only service
    """
    from ladder.agent.names import is_service_host
    from ladder.agent.rules import Router, load_rules

    path = member_folder(folder)
    member = MemberConfig.load(path) if (path / "ladder.toml").exists() else None
    if is_service_host(destination):
        click.echo(f"{destination}: a network-only service -> {_service_publisher(destination, member)}, "
                   "end to end through the hub; never rules, an exit or DNS")
        return
    source = rules_source
    if source is None and member is not None:
        source = member.route.get("rules")
    rule = Router(load_rules(source), exit_choice).route(destination)
    where = {"direct": "directly, not through the network", "block": "nowhere: blocked"}.get(
        rule.action, f"through an exit ({rule.action.removeprefix('exit:')})")
    origin = f"line {rule.line} of the rules" if rule.line else "the built-in default"
    click.echo(f"{destination}: {origin} `{rule.text}` -> {where}")


def _service_publisher(host: str, member: MemberConfig | None) -> str:
    """Who publishes a .ladder name, as the agent last heard from the hub, else as the name says."""
    host = host.lower().rstrip(".")
    listed = ((_agent_state(member).get("services") or {}).get("listed") or []) if member else []
    for service in listed:
        if host in (service.get("name"), service.get("address")):
            online = "online" if service.get("online") else "offline"
            return f"to {service.get('publisher')}'s service {service['name']} ({online})"
    labels = host.split(".")
    if len(labels) == 3:  # NAME.MEMBER.ladder
        return f"to member {labels[1]}'s service {labels[0]} (not heard of yet)"
    return "to its publisher (not heard of yet)"


@cli.group()
def share() -> None:
    """Your exit: who uses it, how much, and its limits."""


@share.command("status")
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def share_status(folder, as_json) -> None:
    """Who is using your exit now, bytes per member today, and the caps."""
    config = MemberConfig.load(member_folder(folder))
    state = _agent_state(config)
    info = state.get("share")
    if info and state.get("credits"):
        info["credits"] = state["credits"]
    if as_json:
        click.echo(json.dumps(info, indent=1))
    elif not info:
        click.echo(f"not sharing (agent {state['state']}): "
                   f"start with `ladder up --dir {config.folder} --share`")
    else:
        limits = info["limits"]
        capped = f"  [{info['capped']}]" if info["capped"] else ""
        click.echo(f"today: {info['today_bytes'] / 1e6:.1f} MB, "
                   f"this month: {info['month_bytes'] / 1e6:.1f} MB{capped}")
        click.echo("limits: " + ", ".join(f"{k}={','.join(v) if isinstance(v, list) else v}"
                                          for k, v in limits.items() if v is not None))
        for user in info["users"].values():
            click.echo(f"  {user['name']:<20} {user['streams']:>4} streams  "
                       f"{user['bytes_today'] / 1e6:10.1f} MB today")
        if info.get("credits"):
            credits = info["credits"]
            click.echo(f"earned: {credits['earned'] / 1e6:.1f} MB of credits "
                       f"({credits['month_earned'] / 1e6:.1f} MB this month); balance "
                       f"{credits['balance'] / 1e6:+.1f} MB")
    sys.exit(0 if info else 1)


def _agent_state(config: MemberConfig) -> dict:
    """The running agent's status.json, or {"state": "not running"}; with its dashboard's URL."""
    from ladder.app.dashboard import written

    try:
        state = json.loads(config.status_path.read_text())
    except (OSError, ValueError):
        return {"state": "not running"}
    running = state.get("state") not in ("not running", "stopped") and _alive(state.get("pid"))
    if not running and state.get("state") != "stopped":
        state["state"] = "not running"
    page = written(config.folder)
    state["dashboard"] = page["url"] if running and page.get("pid") == state.get("pid") else None
    return state


def _page_address(value: str, flag: str, loopback_only: bool = True) -> tuple[str, int]:
    """A page's HOST:PORT, on loopback unless allowed elsewhere: its secret travels in its URL, which only
    this machine should see."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdecimal() or int(port) > 65535:
        raise click.BadParameter(f"{value}: give HOST:PORT, a port of 0-65535 (0: any free one)",
                                 param_hint=flag)
    address = (host, int(port))
    if loopback_only and not _is_loopback(address[0]):
        raise click.BadParameter(f"{value}: the page listens on loopback only (127.0.0.1 or ::1); reach it "
                                 "from elsewhere over ssh -L", param_hint=flag)
    return address


@cli.command()
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--no-browser", is_flag=True, help="Print the dashboard's address; do not open a browser.")
def app(folder, no_browser) -> None:
    """Open the dashboard: connect, pick an exit, see traffic, share, add a phone, publish, search.

    Starts the agent (`ladder up` with the folder's settings, logging to
    agent.log in the folder) if it is not running, then opens the page in
    the browser. The address carries the folder's secret: do not share it.
    """
    import subprocess
    import webbrowser

    config = MemberConfig.load(member_folder(folder))
    state = _agent_state(config)
    if state["state"] in ("not running", "stopped"):
        log_path = config.folder / "agent.log"
        with open(log_path, "ab") as log_file:
            child = subprocess.Popen([sys.executable, "-m", "ladder", "up", "--dir", str(config.folder)],
                                     stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                     start_new_session=True)
        click.echo(f"started the agent (pid {child.pid}, log in {log_path})", err=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and child.poll() is None:
            state = _agent_state(config)
            if state.get("dashboard") and state.get("pid") == child.pid:
                break
            time.sleep(0.2)
        else:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise UserError("the agent did not start: " + (" / ".join(tail) or "no word in its log"))
    elif not state.get("dashboard"):
        raise UserError(f"the agent (pid {state.get('pid')}) runs without a dashboard (--dashboard off?): "
                        "stop it and start it again without that")
    url = state["dashboard"]
    click.echo(url)
    if not no_browser:
        webbrowser.open(url)


@cli.command()
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the agent's status as JSON.")
def status(folder, as_json) -> None:
    """Is the link up, to which hub, which exits are online. Exit 0 only if up.

    It reads what the running agent (`ladder up`) writes in the member's folder every few seconds.
    """
    config = MemberConfig.load(member_folder(folder))
    state = _agent_state(config)
    state.setdefault("hub", config.hub_name)
    state.setdefault("member", config.name)
    if as_json:
        click.echo(json.dumps(state, indent=1))
    else:
        click.echo(f"link:   {state['state']}" + (f" ({state['error']})" if state.get("error") else ""))
        click.echo(f"hub:    {state['hub']} at {state.get('hub_address', '-')}, as {state['member']}")
        if state.get("proxy"):
            click.echo(f"proxy:  {state['proxy']} (SOCKS5, SOCKS4a and HTTP), "
                       f"exit {state.get('exit_choice')}")
        if state.get("exit_warning"):
            click.echo(f"WARNING: {state['exit_warning']}")
        if state.get("sharing"):
            click.echo(f"share:  exit in {state['sharing']}")
        exits = state.get("exits") or []
        click.echo(f"exits:  {len(exits)} online")
        for e in exits:
            closed = ("  (your own exit)" if e.get("id") == state.get("member_id")
                      else "" if e.get("admits_me", True) else "  (serves listed members only, not you)")
            click.echo(f"  {e.get('name', '?'):<20} {e.get('country') or '??':<4} {_where(e):<16} "
                       f"{e.get('streams', 0)} of your streams, {e.get('users') or 0} members on it{closed}")
    sys.exit(0 if state["state"] == "up" else 1)


@cli.command()
@click.option("--dir", "folder", metavar="FOLDER",
              help="A member's folder or a hub's (default: $LADDER_HOME, else the member's folder).")
@click.option("--proxy", metavar="[HOST:]PORT", default="127.0.0.1:1080", show_default=True,
              help="The proxy address `ladder up` is to listen on, checked to be free.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as a JSON list.")
def doctor(folder, proxy, as_json) -> None:
    """Check a folder and say what to fix: keys and their modes, config, the hub (reachable, its key the
    pinned one), the clock, the proxy port; for a hub's folder what `ladder hub doctor` checks.

    One line per check; exit 1 if any failed (warnings do not).
    """
    from ladder.doctor import examine

    print_checks(examine(member_folder(folder), proxy=proxy_option(proxy)), as_json)


def print_checks(checks, as_json: bool) -> None:
    from ladder.doctor import failed

    if as_json:
        click.echo(json.dumps([check.as_dict() for check in checks], indent=1))
    else:
        for check in checks:
            click.echo(check.line())
    sys.exit(1 if failed(checks) else 0)


def _where(listed: dict) -> str:
    """Which hub an exit or service is at, as `ladder status` and `ladder services` show it."""
    if not listed.get("hub"):
        return "this hub"
    hops = listed.get("hops") or 0
    return f"at {listed['hub']}, {hops} hop{'s' if hops != 1 else ''}"


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


# -------------------------------------------------------------- credits


@cli.group(invoke_without_command=True)
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def credits(ctx, folder, as_json) -> None:
    """Your credits at the hub: balance, earned, spent, this month, your latest entries.

    \b
    Examples:
      ladder credits --dir ~/ladder
      ladder credits verify --dir ~/ladder

    A byte an exit carries for you moves one credit from you to its owner,
    on a receipt your agent signed; sharing earns them back. See docs/CREDITS.md.
    """
    if ctx.invoked_subcommand is None:
        _print_credits(folder, as_json, verify=False)


@credits.command("verify")
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def credits_verify(folder, as_json) -> None:
    """Check your entries against the hub's signed log, and that the log only grew since you last looked.

    Exit 0 if everything holds; 1 with the first thing that does not (a hub
    that rewrote or forked its history is caught here).
    """
    _print_credits(folder, as_json, verify=True)


CREDITS_SHOWN = 5  # a member's latest ledger entries `ladder credits` prints (--json: 16)


def _print_credits(folder, as_json: bool, verify: bool) -> None:
    from ladder.agent.credits import credits_of

    config = MemberConfig.load(member_folder(folder))
    report = runtime.run_async(credits_of(config, verify))
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    mb = 1e6
    limit = f", limit {-report['limit'] / mb:,.0f} MB" if report["limit"] else ""
    click.echo(f"balance: {report['balance'] / mb:+,.1f} MB{limit}")
    click.echo(f"earned:  {report['earned'] / mb:,.1f} MB ({report['month_earned'] / mb:,.1f} this month)")
    click.echo(f"spent:   {report['spent'] / mb:,.1f} MB ({report['month_spent'] / mb:,.1f} this month)")
    for other, totals in sorted(report.get("involved", {}).items()):
        click.echo(f"  {other:<40} earned {totals['earned'] / mb:10,.1f} MB  "
                   f"spent {totals['spent'] / mb:10,.1f} MB")
    latest = report.get("recent", [])[-CREDITS_SHOWN:]
    if latest:
        click.echo("latest entries:")
    for e in latest:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e["time"]))
        click.echo(f"  #{e['index']:<8} {when} UTC  {e['kind']:<8} {_credits(e['amount']):>12}  {e['with']}")
    if verify:
        click.echo(f"verified: {report['verified']} entries in the hub's log of {report['log_size']}, "
                   "consistent with the log seen last")


@cli.command()
@click.argument("words")
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 50), help="Results at most.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: a list of results with url, title, snippet, marks, score, hub, online, host.")
def search(words, folder, limit, as_json) -> None:
    """Search the sites that exist only inside the network, at your hub and its peer hubs.

    \b
    Examples:
      ladder search "film photography" --dir ~/ladder
      ladder search 搜索引擎 --dir ~/ladder --json

    Open a result through your proxy (curl -x socks5h://127.0.0.1:1080 URL),
    or search in a browser at http://search.<hub>.ladder/.
    """
    from ladder.agent.command import ask
    from ladder.protocol.control import TEXT_MAX, SearchRequest, SearchResults

    if not words.strip():
        raise UserError('give the words to search for, e.g. ladder search "film photography"')
    if len(words) > TEXT_MAX:  # the hub would refuse the request whole, and say nothing of why
        raise UserError(f"the words to search for are {len(words):,} characters long: at most {TEXT_MAX:,} "
                        "go to the hub")
    config = MemberConfig.load(member_folder(folder))
    answer = runtime.run_async(ask(config, SearchRequest(words, limit)))
    if not isinstance(answer, SearchResults):
        raise UserError("the hub's answer is no search results (a hub too old for search?)")
    # The same fields as the search page's JSON API (search/index.py Result.json).
    results = [{"url": h.url, "title": h.title, "snippet": h.snippet,
                "marks": [list(m) for m in zip(h.marks[::2], h.marks[1::2], strict=False)],
                "score": h.score / 1_000_000, "hub": h.hub, "online": h.online, "host": h.host}
               for h in answer.hits]
    if as_json:
        click.echo(json.dumps(results, indent=1, ensure_ascii=False))
        return
    for r in results:
        click.echo(f"{r['title'] or r['url']}{'' if r['online'] else '  (offline)'}")
        click.echo(f"  {r['url']}  [{r['hub']}]")
        if r["snippet"]:
            click.echo(f"  {r['snippet']}")
    if not results:
        click.echo(f"nothing found for {words!r}")
    for name in answer.missing:
        click.echo(f"(peer hub {name} did not answer in time)", err=True)


# -------------------------------------------------------------- devices


@cli.group()
def device() -> None:
    """Phones and other devices without the agent, on stock Trojan apps (sing-box, Clash Meta, ...).

    \b
    Examples:
      ladder device add phone --dir ~/ladder --exit US --rules inside-cn
      ladder device list --dir ~/ladder
      ladder device remove phone --dir ~/ladder

    The hub serves the device on its own port (443) and acts as its agent, so
    the device trusts the hub with which sites it visits (as with any Trojan
    server). See docs/DEVICES.md for each app.
    """


@device.command("add")
@click.argument("name")
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@device_options
def device_add(name, folder, exit_choice, rules_source, rate, daily_cap, expires, qr_file) -> None:
    """Add a device of yours; prints its share link as the last line (and a QR code on a terminal)."""
    from ladder.agent.command import ask
    from ladder.protocol.control import DeviceAdded

    config = MemberConfig.load(member_folder(folder))
    from ladder.agent.command import device_request

    request = device_request(name, exit_choice, rules_source, rate, daily_cap, expires)
    answer = runtime.run_async(ask(config, request))
    if not isinstance(answer, DeviceAdded):
        raise UserError(f"the hub answered {answer} instead of the new device")
    print_device_added(f"{config.name}/{answer.name}", answer.link, answer.subscription, answer.note, qr_file)


@device.command("list")
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def device_list(folder, as_json) -> None:
    """Your devices at the hub: online, bytes today, last seen, expiry."""
    from ladder.agent.command import ask
    from ladder.protocol.control import DeviceList, Devices

    config = MemberConfig.load(member_folder(folder))
    answer = runtime.run_async(ask(config, DeviceList()))
    if not isinstance(answer, Devices):
        raise UserError(f"the hub answered {answer} instead of the devices")
    if as_json:
        click.echo(json.dumps([{"name": d.name, "online": d.online, "bytes_today": d.bytes_today,
                                "last_seen": d.last_seen or None, "expires": d.expires or None}
                               for d in answer.devices], indent=1))
        return
    if not answer.devices:
        click.echo(f"no devices (add one: ladder device add phone --dir {config.folder})")
    for d in answer.devices:
        click.echo(f"{d.name:<20} {'online' if d.online else 'offline':<8} {d.bytes_today:>14,} bytes today  "
                   f"last seen {_when(d.last_seen)}  expires {_when(d.expires)}")


@device.command("remove")
@click.argument("name")
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
def device_remove(name, folder) -> None:
    """Remove a device of yours: a connected one is cut within seconds, and refused after."""
    from ladder.agent.command import ask
    from ladder.protocol.control import DeviceRemove

    config = MemberConfig.load(member_folder(folder))
    name = name.removeprefix(f"{config.name}/")  # as `device add` and `device list` name it, or alone
    runtime.run_async(ask(config, DeviceRemove(name)))
    click.echo(f"device {config.name}/{name} removed: it is cut within seconds and refused from now on")


# ------------------------------------------------------------- services


@cli.command()
@click.argument("address", required=False)
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--name", help="The service's name (1-32 of a-z, 0-9, '-'): reached as NAME.<member>.ladder.")
@click.option("--title", help="A title, shown in `ladder services` and in search results.")
@click.option("--description", help="A line or two about it, shown in `ladder services --json`; searchable.")
@click.option("--keywords", help="Words people would search it by, comma-separated (at most 16).")
@click.option("--lang", help="The language of its pages, e.g. en or zh-CN.")
@click.option("--index/--no-index", "index", default=None,
              help="Let the network's search engine list and crawl it (the default), or not.")
@click.option("--members", help="Only these members may connect: names or member ids, comma-separated; "
              "'everyone' for every member (the default).")
@click.option("--tcp/--http", "tcp", default=None,
              help="Any TCP service (SSH, a game server), or a web site (the default).")
@click.option("--remove", metavar="NAME", help="Take the service NAME down, at once if the agent is running.")
def publish(address, folder, name, title, description, keywords, lang, index, members, tcp, remove) -> None:
    """Put a service on this machine's loopback online inside the network only.

    \b
    Examples:
      ladder publish --dir ~/ladder 127.0.0.1:5000 --name blog --title "Ryan's photos" \\
          --keywords photos,film --lang en
      ladder publish --dir ~/ladder 127.0.0.1:22 --name ssh --tcp --members alice,bob
      ladder publish --dir ~/ladder --name blog --members everyone   # change one thing, keep the rest
      ladder publish --dir ~/ladder --remove blog
      ladder publish --dir ~/ladder                  # what this member publishes
      curl -x socks5h://127.0.0.1:1080 http://blog.ryan.ladder/     # any member, through its proxy

    No port is opened: members reach the service through the hub, end to end
    encrypted. It is kept in services.json in the member's folder; publishing
    a NAME again changes only what is given. The running agent (`ladder up`)
    picks changes up within a second and publishes again after every reconnect.
    An HTTP service is searchable in the network within a minute (`ladder
    search`), unless --no-index or its robots.txt says no.
    """
    from ladder.agent.services import Published, load_published, loopback_address, save_published
    from ladder.protocol.identity import public_bytes
    from ladder.protocol.records import service_address

    config = MemberConfig.load(member_folder(folder))
    services = load_published(config.folder)
    state = _agent_state(config)
    running = state["state"] not in ("not running", "stopped")
    pubkey = public_bytes(config.key)
    if remove is not None:
        if address or name:
            raise click.UsageError("--remove takes only the service's name")
        if services.pop(remove, None) is None:
            raise UserError(f"{remove} is not published by {config.name} "
                            f"(see `ladder publish --dir {config.folder}`)")
        save_published(config.folder, services)
        click.echo(f"removed {remove}.{config.name}.ladder" + (": the agent takes it down within a second"
                                                                if running else ""))
        return
    if address is None and name is None:
        for s in services.values():
            who = ", ".join(s.members.values()) if s.members else "every member"
            click.echo(f"{s.name}.{config.name}.ladder  {service_address(pubkey, s.name)}  "
                       f"{s.kind} from {s.address[0]}:{s.address[1]}  for {who}  {s.title}")
        if not services:
            click.echo(f"nothing published: ladder publish --dir {config.folder} 127.0.0.1:PORT --name NAME")
        return
    if not name:
        raise click.UsageError("--name is required: the service is reached as NAME.<member>.ladder")
    old = services.get(name)
    if not address and old is None:  # "" gives no ADDRESS either
        raise click.UsageError(f"{name} is not published yet: give the local ADDRESS, e.g. 127.0.0.1:5000")
    access = None
    if members is not None:
        access = {} if members.strip().lower() == "everyone" else _member_ids(members, state, config)
    where = loopback_address(address) if address else None
    service = (old or Published(name, loopback_address(address))).changed(  # new: ADDRESS was given
        address=where, title=title, description=description,
        kind=None if tcp is None else "tcp" if tcp else "http", members=access,
        keywords=None if keywords is None else tuple(k.strip() for k in keywords.split(",") if k.strip()),
        lang=None if lang is None else lang.strip(), index=index)
    services[name] = service
    save_published(config.folder, services)
    who = ", ".join(f"{n} ({i})" for i, n in service.members.items()) or "every member"
    scheme = "http://{}/" if service.kind == "http" else "{} (any port)"
    click.echo(f"{'updated' if old else 'published'} {name} from {service.address[0]}:{service.address[1]} "
               f"for {who}:")
    click.echo("  " + scheme.format(f"{name}.{config.name}.ladder"))
    click.echo("  " + scheme.format(service_address(pubkey, name)) + "   (no hub can redirect this name)")
    click.echo("the agent puts it online within a second" if running
               else f"start the agent to put it online: ladder up --dir {config.folder}")


def _member_ids(text: str, state: dict, config: MemberConfig) -> dict[str, str]:
    """Member names or ids → {id: name}, from the member list the agent last had from the hub."""
    from ladder.agent.roster import Roster, UnknownMember

    known = (state.get("services") or {}).get("members") or {}
    try:
        return Roster(known).resolve(text)
    except UnknownMember as exc:
        hint = "" if known else f" (run `ladder up --dir {config.folder}` so the agent learns the members)"
        raise UserError(f"no member named {exc.token!r} is known{hint}; member ids work too "
                          "(`ladder hub members` shows them)") from None


@cli.command()
@click.option("--dir", "folder", metavar="FOLDER", help=DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def services(folder, as_json) -> None:
    """What is published in the network, by whom, online or not (as the agent last heard)."""
    config = MemberConfig.load(member_folder(folder))
    state = _agent_state(config)
    info = state.get("services") or {"listed": [], "refused": {}, "published": []}
    if as_json:
        click.echo(json.dumps(info, indent=1))
        return
    if state["state"] != "up":
        click.echo(f"(the agent is {state['state']}: this is what it last heard from the hub)")
    listed = info.get("listed") or []
    for s in listed:
        online = "online" if s["online"] else "offline"
        access = ",".join(s.get("access") or ["everyone"]) + ("" if s["allowed"] else " (not you)")
        click.echo(f"{s['name']:<32} {online:<8} {s['kind']:<5} {access:<24} {s['title']}")
        click.echo(f"  {s['address']}  ({_where(s)})")
    if not listed:
        click.echo("no services published in the network")
    for host, reason in (info.get("refused") or {}).items():
        click.echo(f"REFUSED {host}: {reason}")
    if info.get("error"):
        click.echo(f"your services.json: {info['error']}")


# ------------------------------------------------------ running as a service


def service_options(folder_help: str):
    """What `install-service` and `hub install-service` both take."""
    def decorate(command):
        options = [
            click.option("--dir", "folder", metavar="FOLDER", help=folder_help),
            click.option("--user", "scope", flag_value="user",
                         help="A unit of your own systemd (~/.config/systemd/user); default unless root."),
            click.option("--system", "scope", flag_value="system",
                         help="A unit of the system's systemd (/etc/systemd/system); the default for root."),
            click.option("--run-as", metavar="USER",
                         help="With --system: the user it runs as (default: the folder's owner)."),
            click.option("--print", "print_unit", is_flag=True, help="Print the unit instead of writing it."),
            click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
                         help="Write the unit to this file (NAME.service) instead."),
            click.argument("run_args", nargs=-1, metavar="[-- OPTIONS]"),
        ]
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _service_scope(scope: str | None) -> Scope:
    return "system" if scope == "system" or (scope is None and os.geteuid() == 0) else "user"


def _checked_run_args(command: click.Command, name: str, run_args: tuple[str, ...], folder: Path) -> None:
    """The options after `--` are parsed as the service will parse them: a typo fails now, not at boot."""
    if any(arg == "--dir" or arg.startswith("--dir=") for arg in run_args):
        raise click.UsageError("the unit gives --dir itself: give the folder to install-service's --dir")
    if any(arg == "--proxy-auth" or arg.startswith("--proxy-auth=") for arg in run_args):
        # A unit file is readable by every user of the machine; ladder.toml is 0600.
        raise click.UsageError("a password does not belong in a unit file: put it in ladder.toml's [proxy] "
                               "auth instead")
    command.make_context(name, [*run_args, "--dir", str(folder)])


def _install_service(spec: ServiceSpec, print_unit: bool, output: Path | None) -> None:
    from ladder.service import install_unit, render_unit

    if print_unit and output is not None:
        raise click.UsageError("--print and --output go one at a time")
    if print_unit:
        click.echo(render_unit(spec), nl=False)
        return
    installed = install_unit(spec, output)
    click.echo(f"wrote {installed.path}")
    click.echo("enable and start it:")
    for command in installed.commands:
        click.echo(f"  {command}")
    for note in installed.notes:
        click.echo(f"note: {note}")


@cli.command("install-service")
@service_options(DIR_HELP)
def install_service(folder, scope, run_as, print_unit, output, run_args) -> None:
    """Write a systemd unit that runs `ladder up` for this folder, sandboxed, and say how to enable it.

    \b
    Examples:
      ladder install-service --dir ~/ladder                      # ~/.config/systemd/user/ladder-NAME.service
      ladder install-service --dir ~/ladder -- --share --country DE    # options for `ladder up`
      sudo ladder install-service --system --run-as alice --dir /home/alice/ladder
      ladder install-service --dir ~/ladder --print              # the unit on stdout
    """
    from ladder.service import member_service

    config = MemberConfig.load(member_folder(folder))
    _checked_run_args(up, "ladder up", run_args, config.folder)
    _install_service(member_service(config, _service_scope(scope), run_as, run_args), print_unit, output)


@hub.command("install-service")
@service_options(HUB_DIR_HELP)
def hub_install_service(folder, scope, run_as, print_unit, output, run_args) -> None:
    """Write a systemd unit that runs `ladder hub run` for this folder, sandboxed, and say how to enable it.

    A hub that listens below port 1024 (443) keeps CAP_NET_BIND_SERVICE and no
    other capability: install it with --system (as root), run as an ordinary user.

    \b
    Example:
      sudo ladder hub install-service --system --run-as ladder --dir /srv/hub
    """
    from ladder.service import hub_service

    config = HubConfig.load(hub_folder(folder))
    _checked_run_args(hub_run, "ladder hub run", run_args, config.folder)
    _install_service(hub_service(config, _service_scope(scope), run_as, run_args), print_unit, output)


# ----------------------------------------------------------- demo, tests


@cli.command()
@click.option("--check", is_flag=True, help="Run the self-check, then exit 0 (or 1 with the reason).")
@click.option("--port", default=1080, show_default=True,
              help="Proxy port to try first (any free one otherwise).")
def demo(check, port) -> None:
    """Start a hub, a sharer, a user and a web site on this machine and prove they work."""
    from ladder.demo import run_demo

    sys.exit(runtime.serve(run_demo(check=check, port=port, echo=click.echo)))


@cli.group()
def selftest() -> None:
    """Checks of Ladder's building blocks against published test vectors."""


@selftest.command("noise-vectors")
@click.argument("file", type=click.Path())
def noise_vectors(file) -> None:
    """Run a Noise test-vector FILE (cacophony JSON layout); skip unsupported protocols."""
    from ladder.selftest import main as run_vectors

    sys.exit(run_vectors(file, out=click.echo))


# -------------------------------------------------------------- entry


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"ladder: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"ladder: error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)
