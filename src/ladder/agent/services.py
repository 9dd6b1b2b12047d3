"""Network-only services: the ports this member publishes, and serving them to other members.

A member publishes a port on its own loopback under a name with `ladder
publish`, which writes services.json in the member's folder. The agent
watches that file every second: on a change it signs one record per service
(protocol/records.py) and sends the whole set to the hub in `publish`, and
cuts the open streams of services that were removed or changed. When the
link comes back, the same set is published again.

Other members find a service by name (names.py) and open a channel to the
publisher's Noise key from the signed record (pool.py); message 1 carries
the service name and a proof that the opener's channel key belongs to its
member key, which is what the publisher checks the access list against.
The publisher connects only to the published loopback address and relays
like an exit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ladder.config import ConfigError, MemberConfig, format_address, parse_address, write_file
from ladder.link.connection import Link
from ladder.protocol.control import Publish, SignedService, split_list_message
from ladder.protocol.envelope import RecordError
from ladder.protocol.errors import ErrorCode, RemoteProtocolError
from ladder.protocol.identity import public_bytes
from ladder.protocol.messages import decode_service_request
from ladder.protocol.records import (
    ACCESS_MAX,
    DESCRIPTION_MAX,
    KEYWORD_MAX,
    KEYWORDS_MAX,
    LANG_MAX,
    SERVICE_KINDS,
    TITLE_MAX,
    service_address,
    sign_service_record,
    valid_service_name,
    verify_access,
)

from .exit import TargetRefused
from .names import SUFFIX
from .pool import ChannelPool
from .relay import Relay, abort_with_rst

log = logging.getLogger(__name__)
SERVICES_FILE = "services.json"
WATCH_EVERY = 1.0
CONNECT_TIMEOUT = 10.0


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
    keywords: tuple[str, ...] = ()  # for the network's search engine, as are lang and index
    lang: str = ""
    index: bool = True

    def to_json(self) -> dict:
        return {"address": format_address(*self.address), "title": self.title,
                "description": self.description, "kind": self.kind, "members": self.members,
                "keywords": list(self.keywords), "lang": self.lang, "index": self.index}

    @classmethod
    def from_json(cls, name: str, data: dict) -> Published:
        try:
            service = cls(name, loopback_address(data["address"]), str(data.get("title", "")),
                          str(data.get("description", "")), data.get("kind", "http"),
                          {str(k): str(v) for k, v in (data.get("members") or {}).items()},
                          tuple(str(k) for k in data.get("keywords", ())), str(data.get("lang", "")),
                          data.get("index", True) is not False)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"service {name!r} lacks {exc}") from None
        service.check()
        return service

    def changed(self, **given: Any) -> Published:
        """This service with what is given (not None) changed and the rest kept, checked."""
        service = replace(self, **{k: v for k, v in given.items() if v is not None})
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
        if len(self.keywords) > KEYWORDS_MAX or any(not 0 < len(k) <= KEYWORD_MAX for k in self.keywords):
            raise ConfigError(f"service {self.name}: at most {KEYWORDS_MAX} keywords of at most "
                              f"{KEYWORD_MAX} characters each")
        if len(self.lang) > LANG_MAX or not all(c.isalnum() or c == "-" for c in self.lang):
            raise ConfigError(f"service {self.name}: the language is a tag like en or zh-CN")


def loopback_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:5000', '[::1]:5000', 'localhost:5000' or '5000' → a loopback (host, port).

    Only this machine's loopback can be published: anything else would let
    members reach the publisher's LAN or the internet through it.
    """
    text = str(text).strip()
    host, port = parse_address(f"127.0.0.1:{text}" if text.isdecimal() else text, 0)  # a port is required
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
        raise TargetRefused(ErrorCode.TARGET_REFUSED,
                            "the service is not running (its port refused)") from None
    except TimeoutError:
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


# ----------------------------------------------------- the publisher's side


def asked_service(request: bytes, opener_id: str, opener_key: bytes, publisher_id: str,
                  published: Container[str]) -> str:
    """The name of the `published` service a stream asks for, once the opener's proof of membership
    binds its channel key (`opener_key`, from the handshake); TargetRefused with the reason else."""
    try:
        name, proof = decode_service_request(request)
    except RemoteProtocolError as exc:
        raise TargetRefused(exc.code, str(exc)) from None
    if name not in published:
        raise TargetRefused(ErrorCode.NO_ROUTE, "that service is not published (any more)")
    try:
        prover = verify_access(proof, opener_key, publisher_id, name)
    except RecordError as exc:
        raise TargetRefused(ErrorCode.FORBIDDEN, str(exc)) from None
    if prover != opener_id:
        raise TargetRefused(ErrorCode.FORBIDDEN, "the proof of membership names another member")
    return name


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
            if self.connected:
                abort_with_rst(self.transport)
        self.stream_gone()

    def stream_gone(self) -> None:
        self.board.discard(self)


class Services:
    """This member's services: services.json read when it changes, signed, published on every link, served."""

    def __init__(self, config: MemberConfig, pool: ChannelPool, on_change: Callable[[], None]):
        """`pool` answers the streams to them; `on_change` is told when what is published changed."""
        self.config = config
        self.folder = config.folder
        self.pool = pool
        self.on_change = on_change
        self.link: Link | None = None
        self.published: dict[str, Published] = {}
        self.signed: list[SignedService] = []  # what `publish` carries
        self.error = ""  # why services.json could not be read, if it could not
        self.live: dict[str, set[ServiceRelay]] = {}  # service name → its open streams
        self._stamp: tuple | None = None
        self._loaded = False

    def link_up(self, link: Link) -> None:
        """Publish this member's services on a new link."""
        self.link = link
        self.reload()
        self.announce(link)

    def link_down(self) -> None:
        self.link = None

    def announce(self, link: Link) -> None:
        for message in split_list_message(Publish(()), "services", self.signed):
            link.send_control(message)

    def watch(self) -> None:
        """Every WATCH_EVERY seconds: publish again if services.json changed."""
        if self.reload() and self.link is not None:
            self.announce(self.link)
            self.on_change()

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
            log.info("took down %s.%s%s", name, self.config.name, SUFFIX)
        for name, service in services.items():
            if service != self.published.get(name):
                log.info("publishing %s.%s%s from %s", name, self.config.name, SUFFIX,
                         format_address(*service.address))
        self.published = services
        self._sign()
        return True

    def _sign(self) -> None:
        issued = int(time.time())
        self.signed = [
            SignedService(**sign_service_record(self.config.key, s.name, s.title, s.description, s.kind,
                                                self.pool.noise_public, list(s.members), issued,
                                                s.keywords, s.lang, s.index))
            for s in self.published.values()
        ]

    def serve(self, link: Link, sid: int, opener_id: str, opener_key: bytes, request: bytes) -> None:
        """A stream to one of our services in another member's channel; refusals name no address.

        `opener_key` is the opener's static Noise key from the channel's handshake.
        """
        try:
            name = asked_service(request, opener_id, opener_key, self.config.id, self.published)
        except TargetRefused as exc:
            return link.refuse(sid, exc.code, str(exc))
        service = self.published[name]
        if service.members and opener_id not in service.members and opener_id != self.config.id:
            return link.refuse(sid, ErrorCode.FORBIDDEN, "this member is not on the service's access list")
        relay = ServiceRelay(self.live.setdefault(name, set()))
        self.pool.answer_when_connected(link, sid, relay, _dial(service, relay),
                                        "that service is not published (any more)")

    def status(self) -> dict:
        """What this member publishes, for status.json (the listing of others' is the agent's to add)."""
        own = public_bytes(self.config.key)
        return {
            "published": [
                {"name": f"{s.name}.{self.config.name}{SUFFIX}",
                 "address": service_address(own, s.name), "local": format_address(*s.address),
                 "title": s.title, "kind": s.kind,
                 "members": list(s.members.values()) or None, "streams": len(self.live.get(s.name, ()))}
                for s in self.published.values()
            ],
            "error": self.error,
        }
