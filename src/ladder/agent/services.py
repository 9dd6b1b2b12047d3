"""Network-only services: this member's published ports, and other members' services by name.

A member publishes a port on its own loopback under a name with `ladder
publish`, which writes services.json in the member's folder. The agent
watches that file every second: on a change it signs one record per service
(protocol/records.py) and sends the whole set to the hub in `publish`, and
cuts the open streams of services that were removed or changed. When the
link comes back, the same set is published again.

Every member's proxy reaches a service by its human name
`<service>.<publisher>.ladder` (the publisher's name is the hub's label) or
by its self-certifying name `<base32>.ladder`, a hash of the publisher's key
and the service name that no hub can point elsewhere. Such names are
resolved here from the hub's verified listing and never go to DNS or an
exit. The opener runs Noise IK with the publisher's key from the signed
record; message 1 carries the service name and a proof that the opener's
channel key belongs to its member key, which is what the publisher checks
the access list against. The publisher connects only to the published
loopback address and relays like an exit.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ladder.config import ConfigError, format_address, parse_address, write_file
from ladder.errors import LadderError
from ladder.link.connection import Link
from ladder.protocol.control import ListAssembler, split_list_message
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.identity import public_bytes
from ladder.protocol.messages import decode_service_request, encode_service_request
from ladder.protocol.noise import public_key_of
from ladder.protocol.records import (
    ACCESS_MAX,
    DESCRIPTION_MAX,
    SERVICE_KINDS,
    TITLE_MAX,
    RecordError,
    ServiceRecord,
    b64,
    service_address,
    sign_access,
    sign_service_record,
    valid_service_name,
    verify_access,
    verify_service_record,
)

from .exit import TargetRefused
from .relay import Relay, abort_with_rst

if TYPE_CHECKING:
    from .agent import Agent
    from .front import ProxyConnection

log = logging.getLogger(__name__)
SUFFIX = ".ladder"
SERVICES_FILE = "services.json"
WATCH_EVERY = 1.0
CONNECT_TIMEOUT = 10.0


def is_service_host(host: str) -> bool:
    return host.lower().rstrip(".").endswith(SUFFIX)


# ------------------------------------------------------------------ config


@dataclass
class Published:
    """One service in services.json: a loopback address under a name."""

    name: str
    address: tuple[str, int]
    title: str = ""
    description: str = ""
    kind: str = "http"
    members: dict[str, str] = field(default_factory=dict)  # member id → name; empty: every member

    def to_json(self) -> dict:
        return {"address": format_address(*self.address), "title": self.title,
                "description": self.description, "kind": self.kind, "members": self.members}

    @classmethod
    def from_json(cls, name: str, data: dict) -> Published:
        try:
            service = cls(name, loopback_address(data["address"]), str(data.get("title", "")),
                          str(data.get("description", "")), data.get("kind", "http"),
                          {str(k): str(v) for k, v in (data.get("members") or {}).items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"service {name!r} lacks {exc}") from None
        service.check()
        return service

    def check(self) -> None:
        if not valid_service_name(self.name):
            raise ConfigError(f"invalid service name {self.name!r}: use 1-32 of a-z, 0-9 and '-' "
                              "(not first or last)")
        if self.kind not in SERVICE_KINDS:
            raise ConfigError(f"service {self.name}: kind must be one of {', '.join(SERVICE_KINDS)}")
        if len(self.title) > TITLE_MAX or len(self.description) > DESCRIPTION_MAX:
            raise ConfigError(f"service {self.name}: title or description too long "
                              f"(at most {TITLE_MAX} and {DESCRIPTION_MAX} characters)")
        if len(self.members) > ACCESS_MAX:
            raise ConfigError(f"service {self.name}: at most {ACCESS_MAX} members on an access list")


def loopback_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:5000', '[::1]:5000', 'localhost:5000' or '5000' → a loopback (host, port).

    Only this machine's loopback can be published: anything else would let
    members reach the publisher's LAN or the internet through it.
    """
    text = str(text).strip()
    host, port = parse_address(f"127.0.0.1:{text}" if text.isdigit() else text, 0)  # a port is required
    if host.lower() == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"{text}: only addresses on this machine's loopback (127.0.0.1, ::1) can be "
                          "published; bind the service there, so nobody reaches it but through Ladder")
    return host, port


async def _dial(service: Published, relay: Relay) -> None:
    """Connect the relay to the published loopback port; refusals name no address."""
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.create_connection(lambda: relay, *service.address), CONNECT_TIMEOUT)
    except ConnectionRefusedError:
        raise TargetRefused(ErrorCode.TARGET_REFUSED, "the service is not running (its port refused)") from None
    except asyncio.TimeoutError:
        raise TargetRefused(ErrorCode.TARGET_TIMEOUT, "the service did not answer in time") from None
    except OSError:
        raise TargetRefused(ErrorCode.UNREACHABLE, "the publisher cannot reach its own service") from None


def services_path(folder: Path) -> Path:
    return folder / SERVICES_FILE


def load_published(folder: Path) -> dict[str, Published]:
    """The services in the member's services.json (none if there is no such file)."""
    path = services_path(folder)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise ConfigError(f"{path}: expected {{\"services\": {{NAME: {{...}}}}}}")
    try:
        return {name: Published.from_json(name, spec) for name, spec in services.items()}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_published(folder: Path, services: dict[str, Published]) -> None:
    data = {"services": {name: s.to_json() for name, s in sorted(services.items())}}
    write_file(services_path(folder), json.dumps(data, indent=1, ensure_ascii=False).encode(), 0o600)


# ---------------------------------------------------------- the user's side


class ServiceUnknown(LadderError):
    def __init__(self, code: ErrorCode, reason: str):
        super().__init__(reason)
        self.code = code


class ServiceListing:
    """The network's services as the hub lists them; only records their publishers signed."""

    def __init__(self, pins: dict[str, str], own_id: str):
        self.pins = pins  # member id → pinned Noise key, shared with the exit directory
        self.own_id = own_id
        self.entries: list[dict] = []
        self.by_host: dict[str, tuple[dict, ServiceRecord]] = {}  # human and self-certifying names
        self.rejected: dict[str, str] = {}  # host name → why it is refused
        self.members: dict[str, str] = {}  # active member id → name

    def update(self, entries: list) -> None:
        self.entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
        by_host, rejected = {}, {}
        for entry in self.entries:
            try:
                record = verify_service_record(entry)
            except RecordError as exc:
                for host in _claimed_hosts(entry):
                    rejected[host] = f"{exc}: the hub may be lying about service {host}"
                continue
            human = f"{record.name}.{entry.get('name')}{SUFFIX}".lower()
            pinned = self.pins.get(record.id)
            if pinned is not None and pinned != b64(record.noise_key):
                for host in (human, record.address):
                    rejected[host] = (f"the publisher of {host} has another key than when it was first used: "
                                      "refusing it (the hub may be impersonating it)")
                continue
            by_host.setdefault(human, (entry, record))  # member names are unique; a lying hub gets no second
            by_host[record.address] = (entry, record)
        for host, reason in rejected.items():
            if self.rejected.get(host) != reason:
                log.warning("WARNING: %s", reason)
        self.by_host, self.rejected = by_host, rejected

    def find(self, host: str) -> tuple[dict, ServiceRecord]:
        host = host.lower().rstrip(".")
        if host in self.by_host:
            return self.by_host[host]
        if host in self.rejected:
            raise ServiceUnknown(ErrorCode.FORBIDDEN, self.rejected[host])
        raise ServiceUnknown(ErrorCode.NO_ROUTE, "no service by that name is published in the network")

    def status(self) -> list[dict]:
        seen, out = set(), []
        for entry, record in self.by_host.values():
            if id(entry) in seen:
                continue
            seen.add(id(entry))
            out.append({
                "name": f"{record.name}.{entry.get('name')}{SUFFIX}".lower(), "address": record.address,
                "title": record.title, "description": record.description, "kind": record.kind,
                "publisher": entry.get("name"), "online": bool(entry.get("online")),
                "access": [self.members.get(m, m) for m in record.access] or None,
                "allowed": record.admits(self.own_id),
            })
        return sorted(out, key=lambda s: s["name"])


def _claimed_hosts(entry: dict) -> list[str]:
    """The names an unverifiable entry claims, to say which one is refused."""
    try:
        fields = json.loads(base64.b64decode(entry["record"]))
        name = fields["name"]
        hosts = [f"{name}.{entry.get('name')}{SUFFIX}".lower()]
        return hosts + [service_address(base64.b64decode(entry["pubkey"]), name)]
    except Exception:  # anything at all: it is only a label
        return [f"a service of {entry.get('name') or entry.get('id')}"]


# ----------------------------------------------------- the publisher's side


class ServiceRelay(Relay):
    """The publisher's end of one stream: its loopback service ⇄ the channel."""

    def __init__(self, board: set[ServiceRelay]):
        super().__init__()
        self.board = board
        board.add(self)

    def cut(self) -> None:
        """The service was taken down: end this stream now."""
        if self.done:
            return
        self.done = True
        if self.stream is not None:
            self.stream.reset(ErrorCode.CANCEL, "the service was taken down")
            if self.transport is not None:
                abort_with_rst(self.transport)
        self.stream_gone()

    def stream_gone(self) -> None:
        self.board.discard(self)


class Services:
    """The agent's part in services: resolving and opening, publishing, serving."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.folder = agent.config.folder
        self.listing = ServiceListing(agent.directory.pins, agent.config.id)
        self._services_in = ListAssembler("services")
        self._members_in = ListAssembler("members")
        self.published: dict[str, Published] = {}
        self.signed: list[dict] = []  # what `publish` carries
        self.error = ""  # why services.json could not be read, if it could not
        self.live: dict[str, set[ServiceRelay]] = {}  # service name → its open streams
        self._stamp: tuple | None = None
        self._loaded = False
        self._watching = False
        self._proofs: dict[tuple[str, str], bytes] = {}

    # ----------------------------------------------------------- user side

    def control_received(self, message: dict) -> bool:
        """Take `services`, `members` and `member` from the hub; False for other messages."""
        if message["type"] == "services":
            entries = self._services_in.add(message)
            if entries is not None:
                self.listing.update(entries)
        elif message["type"] == "members":
            members = self._members_in.add(message)
            if members is not None:
                self.listing.members = {str(m.get("id")): str(m.get("name")) for m in members
                                        if isinstance(m, dict)}
        elif message["type"] == "member":  # one member joined
            self.listing.members[str(message.get("id"))] = str(message.get("name"))
        else:
            return False
        return True

    def open(self, host: str, port: int, relay: ProxyConnection) -> None:
        """Open a channel to the service named `host` (any port: a service has one)."""
        from .agent import _Opening  # agent.py imports this module

        agent = self.agent
        if agent.link is None:
            return relay.on_refused(ErrorCode.NO_ROUTE, "not connected to the hub")
        try:
            entry, record = self.listing.find(host)
        except ServiceUnknown as exc:
            return relay.on_refused(exc.code, str(exc))
        if not entry.get("online"):
            return relay.on_refused(ErrorCode.NO_ROUTE, "the service's publisher is offline")
        proof = self._proofs.get((record.id, record.name))
        if proof is None:
            noise_public = public_key_of(agent.noise_private)
            proof = self._proofs[(record.id, record.name)] = sign_access(
                agent.config.key, noise_public, record.id, record.name)
        _Opening(agent, encode_service_request(record.name, proof), relay, [record]).try_next()

    # ------------------------------------------------------ publisher side

    def link_up(self, link: Link) -> None:
        """Publish this member's services on a new link, and watch services.json from now on."""
        self._services_in, self._members_in = ListAssembler("services"), ListAssembler("members")
        self.reload()
        self.announce(link)
        if not self._watching:
            self._watching = True
            link.loop.call_later(WATCH_EVERY, self._watch)

    def announce(self, link: Link) -> None:
        for message in split_list_message({"type": "publish"}, "services", self.signed):
            link.send_control(message)

    def _watch(self) -> None:
        if self.agent.state == "stopped":
            self._watching = False
            return
        try:
            if self.reload() and self.agent.link is not None:
                self.announce(self.agent.link)
                self.agent.write_status()
        finally:
            asyncio.get_running_loop().call_later(WATCH_EVERY, self._watch)

    def reload(self) -> bool:
        """Read services.json if it changed; True when what is published changed."""
        path = services_path(self.folder)
        try:
            st = os.stat(path)
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
            return False
        if self._loaded and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            services = load_published(self.folder) if stamp is not None else {}
        except ConfigError as exc:
            if self.error != str(exc):
                log.warning("%s; still publishing what was published before", exc)
            self.error = str(exc)
            return False
        self.error, self._loaded = "", True
        for name, old in self.published.items():
            new = services.get(name)
            if new is None or (new.address, new.members, new.kind) != (old.address, old.members, old.kind):
                for relay in list(self.live.get(name, ())):
                    relay.cut()
        if services == self.published:
            return False
        for name in self.published.keys() - services.keys():
            log.info("took down %s.%s%s", name, self.agent.config.name, SUFFIX)
        for name, service in services.items():
            if service != self.published.get(name):
                log.info("publishing %s.%s%s from %s", name, self.agent.config.name, SUFFIX,
                         format_address(*service.address))
        self.published = services
        self._sign()
        return True

    def _sign(self) -> None:
        config, issued = self.agent.config, int(time.time())
        noise_public = public_key_of(self.agent.noise_private)
        self.signed = [
            sign_service_record(config.key, s.name, s.title, s.description, s.kind, noise_public,
                                list(s.members), issued)
            for s in self.published.values()
        ]

    def serve(self, link: Link, sid: int, opener_id: str, opener_key: bytes, request: bytes) -> None:
        """A stream to one of our services in another member's channel; refusals name no address.

        `opener_key` is the opener's static Noise key from the channel's handshake.
        """
        try:
            name, proof = decode_service_request(request)
        except RemoteProtocolError as exc:
            return link.refuse(sid, exc.code, str(exc))
        service = self.published.get(name)
        if service is None:
            return link.refuse(sid, ErrorCode.NO_ROUTE, "that service is not published (any more)")
        try:
            prover = verify_access(proof, opener_key, self.agent.config.id, name)
        except RecordError as exc:
            return link.refuse(sid, ErrorCode.FORBIDDEN, str(exc))
        if prover != opener_id:
            return link.refuse(sid, ErrorCode.FORBIDDEN, "the proof of membership names another member")
        if service.members and opener_id not in service.members and opener_id != self.agent.config.id:
            return link.refuse(sid, ErrorCode.FORBIDDEN, "this member is not on the service's access list")
        relay = ServiceRelay(self.live.setdefault(name, set()))
        self.agent.answer_when_connected(link, sid, relay, _dial(service, relay),
                                         "that service is not published (any more)")


    # -------------------------------------------------------------- status

    def status(self) -> dict:
        own = public_bytes(self.agent.config.key)
        return {
            "listed": self.listing.status(),
            "refused": self.listing.rejected,
            "members": self.listing.members,
            "published": [
                {"name": f"{s.name}.{self.agent.config.name}{SUFFIX}",
                 "address": service_address(own, s.name), "local": format_address(*s.address),
                 "title": s.title, "kind": s.kind,
                 "members": list(s.members.values()) or None, "streams": len(self.live.get(s.name, ()))}
                for s in self.published.values()
            ],
            "error": self.error,
        }
