""".ladder names: the network's services as the hub lists them, only records their publishers signed.

Every member's proxy reaches a service by its human name
`<service>.<publisher>.ladder` (the publisher's name is the hub's label) or
by its self-certifying name `<base32>.ladder`, a hash of the publisher's key
and the service name that no hub can point elsewhere. Such names are
resolved here from the hub's verified listing and never go to DNS or an
exit. A publisher whose Noise key changed since it was pinned is refused
under both names, as an exit would be. As for exits (directory.py), a record
whose signed bytes the last listing carried gets the same verdict again
without another signature check.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable

from ladder.errors import LadderError
from ladder.protocol.control import ListAssembler, ServiceEntry, Services
from ladder.protocol.envelope import b64
from ladder.protocol.errors import ErrorCode
from ladder.protocol.records import ServiceRecord, service_address, verify_service_record

from .directory import Verdicts
from .roster import Roster

log = logging.getLogger(__name__)
SUFFIX = ".ladder"


def is_service_host(host: str) -> bool:
    return host.lower().rstrip(".").endswith(SUFFIX)


class ServiceUnknown(LadderError):
    def __init__(self, code: ErrorCode, reason: str):
        super().__init__(reason)
        self.code = code


class ServiceListing:
    """The network's services as the hub lists them; only records their publishers signed."""

    def __init__(self, pins: dict[str, str], own_id: str, roster: Roster):
        self.pins = pins  # member id → pinned Noise key, shared with the exit directory
        self.own_id = own_id
        self.roster = roster  # for the names on access lists
        self.entries: list[ServiceEntry] = []
        self.by_host: dict[str, tuple[ServiceEntry, ServiceRecord]] = {}  # human and self-certifying names
        self.rejected: dict[str, str] = {}  # host name → why it is refused
        self._pieces = ListAssembler("services")
        self._verdicts = Verdicts(verify_service_record)  # the last listing's

    def new_link(self) -> None:
        """Pieces of a list that came on the last link will never be completed."""
        self._pieces = ListAssembler("services")

    def take(self, message: Services) -> None:
        """A `services` piece from the hub; the listing changes once the last one came."""
        entries = self._pieces.add(message)
        if entries is not None:
            self.update(entries)

    def update(self, entries: Iterable[ServiceEntry]) -> None:
        self.entries = list(entries)
        by_host: dict[str, tuple[ServiceEntry, ServiceRecord]] = {}
        rejected: dict[str, str] = {}
        for entry in self.entries:
            verdict = self._verdicts.of(entry)
            if isinstance(verdict, str):
                for host in _claimed_hosts(entry):
                    rejected[host] = f"{verdict}: the hub may be lying about service {host}"
                continue
            record = verdict
            human = f"{record.name}.{entry.name}{SUFFIX}".lower()
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
        self._verdicts.done()
        self.by_host, self.rejected = by_host, rejected

    def find(self, host: str) -> tuple[ServiceEntry, ServiceRecord]:
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
                "name": f"{record.name}.{entry.name}{SUFFIX}".lower(), "address": record.address,
                "title": record.title, "description": record.description, "kind": record.kind,
                "publisher": entry.name, "online": entry.online, "hub": entry.hub or None, "hops": entry.hops,
                "access": [self.roster.name_of(m) for m in record.access] or None,
                "allowed": record.admits(self.own_id),
            })
        return sorted(out, key=lambda s: s["name"])


def _claimed_hosts(entry: ServiceEntry) -> list[str]:
    """The names an unverifiable entry claims, to say which one is refused."""
    try:
        name = json.loads(base64.b64decode(entry.record))["name"]
        hosts = [f"{name}.{entry.name}{SUFFIX}".lower()]
        return hosts + [service_address(base64.b64decode(entry.pubkey), name)]
    except Exception:  # anything at all: it is only a label
        return [f"a service of {entry.name or entry.id}"]
