"""`ladder doctor`: what is wrong with a member's or a hub's folder, and what to do about it.

A doctor runs a list of checks, each of which looks at one thing and says
in one `Check` whether it holds (`ok` True), is broken (False) or deserves
a look without stopping anything (None, a warning), and if not, what to
do. Checks read the folder through the config classes (config.py), the TLS
helpers (link/tls.py) and the store's engines, so a file the doctor calls
good is one the roles can read; nothing is written, made or migrated.

A member's folder: its keys (present, mode 0600, readable), ladder.toml
with the tables the roles read from it, the hub (its address resolves, a
TCP connection opens, its TLS key is the pinned one), the clock (against
the Date header the hub's web face sends to anyone who asks, as nginx
does: a certificate's validity says nothing within its year), and the
proxy port (free, or held by this folder's own agent, found by its lock).
A hub's folder: hub.toml, its keys, its TLS certificate (expiry), the
listen port (free, or held by this hub: it answers with this hub's key),
the store (opens, schema current) and the ledger (opens; verifying it is
`ladder hub ledger verify`, too slow for a big ledger to run here).

Checks that need an earlier one (a TLS key needs a connection) are
warnings when it failed, so each broken thing fails exactly one check.
"""

from __future__ import annotations

import datetime
import email.utils
import errno
import os
import socket
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.config import ConfigError, HubConfig, MemberConfig, format_address
from ladder.errors import LadderError
from ladder.link.tls import (
    TLSMaterialError,
    certificate_validity,
    check_key_matches_cert,
    client_context,
    fingerprint_of_cert_file,
    presented_key,
)

DEFAULT_PROXY = ("127.0.0.1", 1080)  # `ladder up`'s proxy unless --proxy says otherwise
TIMEOUT = 3.0  # seconds for each step of reaching the hub: resolve, connect, TLS, its answer
CERT_WARN = datetime.timedelta(days=30)
# The clock against the hub's Date header (whole seconds, and a round trip late): receipts, daily
# caps and invite and device expiry are dated by wall clocks, so hours off are wrong days.
CLOCK_WARN = 60.0
CLOCK_FAIL = 300.0
ANSWER_LIMIT = 16 * 1024  # bytes of the web face's answer read for its Date header


@dataclass(frozen=True)
class Check:
    """One thing looked at: ok (True), broken (False) or worth a look (None); `fix` says what to do."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    def line(self) -> str:
        word = {True: "ok  ", False: "FAIL", None: "warn"}[self.ok]
        return f"{word} {self.name}: {self.detail}" + (f" — fix: {self.fix}" if self.fix else "")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def failed(checks: list[Check]) -> bool:
    """Whether any check failed (warnings do not)."""
    return any(check.ok is False for check in checks)


def examine(folder: Path, *, proxy: tuple[str, int] = DEFAULT_PROXY, timeout: float = TIMEOUT) -> list[Check]:
    """The checks for a hub's folder (hub.toml) or a member's (ladder.toml, or at least member.key)."""
    if (folder / "hub.toml").exists():
        return examine_hub(folder, timeout=timeout)
    if (folder / "ladder.toml").exists() or MemberConfig.key_path(folder).exists():
        return examine_member(folder, proxy=proxy, timeout=timeout)
    raise ConfigError(f"{folder} holds neither a member (ladder.toml) nor a hub (hub.toml): "
                      "give the folder with --dir")


# ---------------------------------------------------------------- a member


def examine_member(folder: Path, *, proxy: tuple[str, int] = DEFAULT_PROXY, timeout: float = TIMEOUT,
                   now: Callable[[], float] = time.time) -> list[Check]:
    keys, key = _member_keys(folder)
    try:
        # A stand-in when member.key cannot be read: that is the keys check's failure, not this one's.
        config = MemberConfig.load(folder, key or Ed25519PrivateKey.generate())
    except LadderError as exc:
        return [keys, _bad_config(exc), *_not_checked("hub address", "hub reachable", "hub key", "clock",
                                                      "proxy port", because="no config")]
    return [keys, _member_config(config), *_hub_checks(config, timeout, now), _proxy_port(config, proxy)]


def _member_keys(folder: Path) -> tuple[Check, Ed25519PrivateKey | None]:
    """member.key and noise.key: present (noise.key is made by the agent's first run), private, readable."""
    member, noise = MemberConfig.key_path(folder), folder / "noise.key"
    loose = [path for path in (member, noise) if path.exists() and _loose(path)]
    problems = [str(_loose(path)) for path in loose]
    key = None
    if not member.exists():
        problems.append(f"{member} is missing")
    else:
        try:
            key = MemberConfig.read_key(member)
        except ConfigError as exc:
            problems.append(str(exc))
    if noise.exists():
        try:
            MemberConfig.read_noise_key(noise)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        fix = (f"chmod 600 {' '.join(map(str, loose))}" if len(loose) == len(problems) else
               "restore the folder from a backup, or join again into a new folder (a member is its key)")
        return Check("keys", False, "; ".join(problems), fix), key
    made = "" if noise.exists() else " (noise.key is made when the agent first runs)"
    return Check("keys", True, f"member.key and noise.key, mode 0600{made}"), key


def _member_config(config: MemberConfig) -> Check:
    """ladder.toml and the tables the agent reads from it, parsed by the agent's own readers."""
    from ladder.agent.rules import load_rules
    from ladder.agent.sharing import SharePolicy

    try:
        config.proxy_auth()
        load_rules(config.route.get("rules"))
        SharePolicy.from_table(config.share)
    except LadderError as exc:
        return _bad_config(exc)
    path = config.folder / "ladder.toml"
    if config.proxy.get("auth") is not None and (problem := _loose(path)):
        return Check("config", False, f"{problem}, and [proxy] auth holds a password", f"chmod 600 {path}")
    return Check("config", True, f"ladder.toml: member {config.name} of hub {config.hub_name} "
                 f"at {format_address(*config.hub_address)}")


def _bad_config(exc: LadderError) -> Check:
    return Check("config", False, str(exc), "correct ladder.toml (docs/CONFIG.md lists every setting), "
                 "or join again into a new folder: ladder join INVITE --dir NEW")


def _hub_checks(config: MemberConfig, timeout: float, now: Callable[[], float]) -> list[Check]:
    """The hub's address, a TCP connection to it, its TLS key against the pin, and its clock."""
    host, port = config.hub_address
    where = format_address(host, port)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return [Check("hub address", False, f"{host} does not resolve: {exc}",
                      "check the network and DNS, or the address in ladder.toml's [hub]"),
                *_not_checked("hub reachable", "hub key", "clock", because="the hub's name does not resolve")]
    addresses = ", ".join(sorted({str(info[4][0]) for info in found}))
    checks = [Check("hub address", True, f"{where} is {addresses}")]
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout)
    except OSError as exc:
        return checks + [
            Check("hub reachable", False, f"no TCP connection to {where}: {exc.strerror or exc}",
                  "is the hub running (ladder hub run)? Is its port open in the firewall? "
                  "If the network blocks it, ask the operator for another address"),
            *_not_checked("hub key", "clock", because="the hub is unreachable")]
    with sock:
        checks.append(Check("hub reachable", True,
                            f"TCP to {where} in {(time.monotonic() - started) * 1000:.0f} ms"))
        try:
            tls = client_context().wrap_socket(sock, server_hostname=host)
        except (ssl.SSLError, OSError) as exc:
            return checks + [
                Check("hub key", False, f"{where} does not speak TLS 1.3 as a hub does: {exc}",
                      "is the address in ladder.toml the hub's? Something between may be in the way"),
                *_not_checked("clock", because="no TLS with the hub")]
        with tls:
            seen = presented_key(tls)
            if seen != config.fingerprint:
                return checks + [
                    Check("hub key", False,
                          f"{where} presented key {seen}, not the pinned {config.fingerprint}",
                          "if the operator changed the hub's key, join again with a new invite; "
                          "otherwise someone is in the middle: do not use this network"),
                    *_not_checked("clock", because="that is not our hub")]
            checks.append(Check("hub key", True, f"{where} presented the pinned key {seen}"))
            checks.append(_clock(tls, host, now))
    return checks


def _clock(tls: ssl.SSLSocket, host: str, now: Callable[[], float]) -> Check:
    """This machine's clock against the Date of the hub web face's answer to a HEAD request."""
    asked = now()
    try:
        tls.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer and len(answer) < ANSWER_LIMIT:
            data = tls.recv(ANSWER_LIMIT)
            if not data:
                break
            answer += data
    except OSError as exc:
        return Check("clock", None, f"not checked: the hub did not answer a web request ({exc})")
    answered = now()
    date = _header(answer, b"date")
    try:
        hub_time = email.utils.parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        hub_time = None
    if hub_time is None:
        return Check("clock", None, "not checked: the hub's web answer carries no Date header")
    # The Date is truncated to the second and stamped between asking and hearing.
    skew = hub_time + 0.5 - (asked + answered) / 2
    detail = (f"{abs(skew):.0f} s {'behind' if skew > 0 else 'ahead of'} the hub's Date header"
              if abs(skew) >= 1 else "within a second of the hub's Date header")
    if abs(skew) <= CLOCK_WARN:
        return Check("clock", True, detail)
    fix = "set the clock right: turn on time sync (timedatectl set-ntp true)"
    return Check("clock", None if abs(skew) <= CLOCK_FAIL else False, detail, fix)


def _header(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower() == name:
            return value.strip().decode("latin-1")
    return None


def _proxy_port(config: MemberConfig, proxy: tuple[str, int]) -> Check:
    """The proxy's port: held by this folder's running agent, or free for `ladder up`."""
    pid = config.agent_pid()
    if pid is not None:
        serving = _agent_proxy(config)
        return Check("proxy port", True, f"this folder's agent runs (pid {pid or '?'})"
                     + (f", its proxy on {serving}" if serving else ", without a proxy"))
    where = format_address(*proxy)
    problem = _bind_problem(proxy)
    if problem is None:
        return Check("proxy port", True, f"{where} is free for `ladder up`")
    if problem.errno == errno.EADDRINUSE:
        return Check("proxy port", False, f"{where} is taken by another program, not this folder's agent",
                     f"stop that program (ss -ltnp 'sport = :{proxy[1]}' names it), "
                     "or give the proxy another port: ladder up --proxy PORT")
    return Check("proxy port", False, f"cannot listen on {where}: {problem.strerror or problem}",
                 "give the proxy an address of this machine: ladder up --proxy [HOST:]PORT")


def _agent_proxy(config: MemberConfig) -> str | None:
    import json

    try:
        return json.loads(config.status_path.read_text()).get("proxy")
    except (OSError, ValueError, AttributeError):
        return None


# ------------------------------------------------------------------- a hub


def examine_hub(folder: Path, *, timeout: float = TIMEOUT,
                now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
                ) -> list[Check]:
    try:
        config = HubConfig.load(folder)
    except LadderError as exc:
        return [Check("config", False, str(exc), "correct hub.toml (docs/CONFIG.md lists every setting)"),
                _hub_keys(folder, None),
                *_not_checked("certificate", "listen port", "store", "ledger", because="no config")]
    checks = [_hub_config(config), _hub_keys(folder, config), _certificate(config, now())]
    checks.append(_listen_port(config, timeout))
    store = _store(config)
    checks.append(store)
    checks.append(_ledger(config) if store.ok else
                  Check("ledger", None, "not checked: the store is not current"))
    return checks


def _hub_config(config: HubConfig) -> Check:
    path = config.folder / "hub.toml"
    if config.database is not None and (problem := _loose(path)):
        return Check("config", False, f"{problem}, and it names a database whose URL may hold a password",
                     f"chmod 600 {path}")
    return Check("config", True, f"hub.toml: hub {config.name} on {format_address(*config.listen)}, "
                 f"members dial {format_address(*config.public_address)}")


def _hub_keys(folder: Path, config: HubConfig | None) -> Check:
    """hub.key and device.key (the hub makes them when it first needs them), tls.key: private, readable."""
    problems, later, loose = [], [], []
    files = [folder / "hub.key", folder / "device.key"]
    for path in files:
        if not path.exists():
            later.append(path.name)
    if config is not None:
        if config.key.exists():
            files.append(config.key)
        else:
            problems.append(f"{config.key} is missing")
    for path in files:
        if path.exists() and (problem := _loose(path)):
            loose.append(path)
            problems.append(problem)
    if config is not None:
        try:
            if (folder / "hub.key").exists():
                config.hub_key()
            if (folder / "device.key").exists():
                config.device_key()
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        return Check("keys", False, "; ".join(problems),
                     f"chmod 600 {' '.join(map(str, loose))}" if len(loose) == len(problems)
                     else "restore them from a backup (a new hub.key "
                     "is a new hub to its peers; a new device.key turns every device's password away)")
    made = f" ({' and '.join(later)} made when the hub first runs)" if later else ""
    return Check("keys", True, f"hub.key, device.key and tls.key, mode 0600{made}")


def _certificate(config: HubConfig, now: datetime.datetime) -> Check:
    """The TLS certificate: readable, its key's, valid now and for the next CERT_WARN."""
    renew = ("renew it with the same key (members pin the key, so invites stay valid)"
             if config.cert.parent == config.folder else "renew it where it came from (your CA)")
    try:
        starts, ends = certificate_validity(config.cert)
        if config.key.exists():
            check_key_matches_cert(config.cert, config.key)
    except TLSMaterialError as exc:
        return Check("certificate", False, str(exc), "give hub.toml's cert and key a certificate and "
                     "its key (ladder hub init made tls.crt and tls.key)")
    fingerprint = fingerprint_of_cert_file(config.cert)
    if now < starts:
        return Check("certificate", False, f"{config.cert} is valid only from {starts:%Y-%m-%d %H:%M} UTC",
                     "this machine's clock is behind: set it right (timedatectl set-ntp true)")
    if now >= ends:
        return Check("certificate", False, f"{config.cert} expired on {ends:%Y-%m-%d}", renew)
    left = ends - now
    detail = f"{config.cert.name}, key {fingerprint}, valid until {ends:%Y-%m-%d} ({left.days} days)"
    return Check("certificate", None, detail, renew) if left < CERT_WARN else Check("certificate", True,
                                                                                    detail)


def _listen_port(config: HubConfig, timeout: float) -> Check:
    """The listen address: free for `ladder hub run`, or held by this hub (it answers with our key)."""
    where = format_address(*config.listen)
    problem = _bind_problem(config.listen)
    if problem is None:
        return Check("listen port", True, f"{where} is free for `ladder hub run`")
    if problem.errno == errno.EACCES:
        return Check("listen port", None, f"this user may not listen on {where}",
                     "run the hub as root, or give it CAP_NET_BIND_SERVICE (the systemd unit does)")
    if problem.errno != errno.EADDRINUSE:
        return Check("listen port", False, f"cannot listen on {where}: {problem.strerror or problem}",
                     "give hub.toml's listen an address of this machine")
    host, port = config.listen
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        ours = fingerprint_of_cert_file(config.cert)
        with socket.create_connection((host, port), timeout) as sock, \
                client_context().wrap_socket(sock, server_hostname=host) as tls:
            seen = presented_key(tls)
    except (OSError, LadderError):
        seen, ours = "", "?"
    if seen == ours:
        return Check("listen port", True, f"{where} is held by this hub, running")
    return Check("listen port", False, f"{where} is taken by another program, not this hub",
                 f"stop that program (ss -ltnp 'sport = :{port}' names it), or change hub.toml's listen")


def _store(config: HubConfig) -> Check:
    """The store opens and its schema is the one this Ladder writes, read without migrating it."""
    from ladder.store import engines
    from ladder.store.hubdb import DB_FILENAME, SCHEMA_VERSION

    where = engines.redacted(config.database) if config.database else str(config.db_path)
    if config.database is None and not config.db_path.exists():
        return Check("store", False, f"{where} is missing", "restore it from a backup (it holds the members)")
    try:
        db = engines.connect(config.store_target, DB_FILENAME)
        try:
            version = db.schema_version()
        finally:
            db.close()
    except LadderError as exc:
        return Check("store", False, f"cannot open {where}: {exc}",
                     "is the database running, and its URL in hub.toml right?" if config.database
                     else f"restore {where} from a backup")
    if version > SCHEMA_VERSION:
        return Check("store", False,
                     f"{where} has schema {version}; this Ladder knows up to {SCHEMA_VERSION}",
                     "upgrade Ladder")
    if version < SCHEMA_VERSION:
        return Check("store", None, f"{where} has schema {version}, older than {SCHEMA_VERSION}",
                     "`ladder hub run` upgrades it when it starts (back it up first)")
    return Check("store", True, f"{where}, schema {version}")


def _ledger(config: HubConfig) -> Check:
    """The ledger opens: its size and latest checkpoint (`ladder hub ledger verify` checks every entry)."""
    from ladder.store.hubdb import HubStore

    if not config.hub_key_path.exists():
        return Check("ledger", True, "empty: the hub has not run yet")
    try:
        with HubStore(config.store_target) as store:
            local = config.hub_id()
            size, latest = store.ledger_size(local), store.latest_checkpoint(local)
    except LadderError as exc:
        return Check("ledger", False, f"cannot read the ledger: {exc}", "restore the store from a backup")
    signed = "no checkpoint yet" if latest is None else "a signed checkpoint"
    return Check("ledger", True, f"{size} entries, {signed} (ladder hub ledger verify checks them all)")


# ---------------------------------------------------------------- helpers


def _loose(path: Path) -> str | None:
    """Why `path` is readable by others than its owner, or None if it is not."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return f"{path} is mode {mode:04o}, readable by others" if mode & 0o077 and os.name == "posix" else None


def _bind_problem(address: tuple[str, int]) -> OSError | None:
    """Why a listener could not bind `address` now (as asyncio binds: SO_REUSEADDR), or None."""
    host, port = address
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return OSError(errno.EADDRNOTAVAIL, str(exc))
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            return exc
    return None


def _not_checked(*names: str, because: str) -> list[Check]:
    return [Check(name, None, f"not checked: {because}") for name in names]
