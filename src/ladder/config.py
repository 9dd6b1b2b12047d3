"""Folders, files and invite links: where a member's or a hub's state lives.

A folder (`--dir`, else $LADDER_HOME, else the platform's user folders)
holds everything one member or one hub needs, so several run side by side.
Secrets are created with mode 0600 and replaced atomically. A running agent
holds its folder's lock, so a second one on the same folder stops at once.
"""

from __future__ import annotations

import base64
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.errors import UserError
from ladder.protocol.hello import TOKEN_SIZE
from ladder.protocol.identity import member_id, public_bytes
from ladder.protocol.noise import generate_keypair


class ConfigError(UserError):
    """Bad or missing configuration; the message is one line for the user."""


def member_folder(given: str | None) -> Path:
    return Path(given or os.environ.get("LADDER_HOME") or _platform_dir("user_config_dir"))


def hub_folder(given: str | None) -> Path:
    return Path(given or os.environ.get("LADDER_HOME") or _platform_dir("user_data_dir") / "hub")


def _platform_dir(kind: str) -> Path:
    # Imported only when no folder was given: each running role holds it for nothing.
    import platformdirs

    return Path(getattr(platformdirs, kind)("ladder"))


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` atomically; the content never exists with looser permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _create_once(path: Path, secret: bytes) -> None:
    """Write a secret file (0600) that is linked into place, never replaced: a hub and a CLI making it
    at once agree on one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_file(tmp, secret, 0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def parse_duration(text: str) -> float:
    """Seconds in a duration as people write one: 30m, 12h, 7d, 2w."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    number, unit = text[:-1], text[-1:].lower()
    # isdecimal, not isdigit: int() refuses digits like "²" that isdigit accepts
    if unit not in units or not number.isdecimal() or int(number) == 0:
        raise ConfigError(f"{text!r} is not a duration like 30m, 12h, 7d or 2w")
    return int(number) * units[unit]


def read_or_make_secret(path: Path) -> str:
    """A page's secret (URL-safe text, 0600): read, or made once (as _create_once makes keys)."""
    if not path.exists():
        _create_once(path, base64.urlsafe_b64encode(os.urandom(24)).rstrip(b"="))
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def dump_toml(tables: Mapping[str, Mapping[str, str | int | bool]]) -> bytes:
    """TOML for flat tables of scalars (json.dumps of a str is a valid TOML string)."""
    out = []
    for table, values in tables.items():
        out.append(f"[{table}]")
        for key, value in values.items():
            out.append(f"{key} = {str(value).lower()}" if isinstance(value, bool)
                       else f"{key} = {json.dumps(value)}")
        out.append("")
    return "\n".join(out).encode()


def load_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_amount(value, what: str) -> int | None:
    """'20M', '1.5G', 300000 or 0/None (no limit) → bytes (or bytes per second)."""
    if value in (None, 0, "0", "", "none", "off"):
        return None
    text = str(value).strip().upper().removesuffix("/S").removesuffix("B")
    try:
        number = float(text[:-1] if text[-1:] in _UNITS else text) * _UNITS.get(text[-1:], 1)
    except (ValueError, IndexError):
        raise ConfigError(f"{what}: {value!r} is not an amount like 500K, 20M or 10G") from None
    if not math.isfinite(number):  # "inf", "nan", 1e999: float() reads them, int() cannot hold them
        raise ConfigError(f"{what}: {value!r} is not an amount like 500K, 20M or 10G")
    if number <= 0:
        raise ConfigError(f"{what}: {value!r} must be positive")
    return int(number)


DEVICE_KEY_LEN = 32  # the hub's device.key
DEFAULT_CREDIT_LIMIT = 2_000_000_000  # bytes of credit a member may owe: 2 GB

# ISO 3166-1 alpha-2: the assigned codes, then those reserved for private use (labs, tests).
COUNTRY_CODES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW
BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI
FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN
IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF
PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE
YT ZA ZM ZW
AA QM QN QO QP QQ QR QS QT QU QV QW QX QY QZ XA XB XC XD XE XF XG XH XI XJ XK XL XM XN XO XP XQ XR XS XT
XU XV XW XX XY XZ ZZ
""".split())


def country_code(text: str) -> str:
    """An ISO 3166-1 alpha-2 code, upper case (`de` → `DE`); ConfigError for anything else."""
    code = text.strip().upper()
    if code not in COUNTRY_CODES:
        hint = " (two letters, e.g. US, DE, JP)" if len(code) != 2 else ""
        raise ConfigError(f"--country {text!r} is not an ISO 3166-1 country code{hint}")
    return code


def parse_address(text: str, default_port: int = 443) -> tuple[str, int]:
    """'host:port', '[v6]:port', 'host' or a bare IPv6 literal → (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    port = port or str(default_port)
    if not host or not port.isdecimal() or not 0 < int(port) < 65536:
        raise ConfigError(f"not an address: {text!r} (expected host:port)")
    return host, int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---------------------------------------------------------------- invites

PEER_SCHEME = "ladder-peer"


@dataclass(frozen=True)
class InviteLink:
    """ladder://<token>@<host>:<port>?fp=<hub key fingerprint>&hub=<hub name>; a peer invite (another
    hub's operator redeems it) is the same link under ladder-peer://."""

    token: bytes
    address: tuple[str, int]
    fingerprint: str
    hub_name: str
    scheme: str = "ladder"

    def __str__(self) -> str:
        token = base64.urlsafe_b64encode(self.token).rstrip(b"=").decode()
        return (
            f"{self.scheme}://{token}@{format_address(*self.address)}"
            f"?fp={quote(self.fingerprint, safe=':')}&hub={quote(self.hub_name)}"
        )

    @classmethod
    def parse(cls, text: str, scheme: str = "ladder") -> InviteLink:
        kind = "peer invite" if scheme == PEER_SCHEME else "invite"
        bad = ConfigError(f"not a Ladder {kind} link (expected {scheme}://TOKEN@HOST:PORT?fp=...)")
        try:
            url = urlsplit(text.strip())
            query = parse_qs(url.query)
            username = url.username or ""  # none: the empty token is refused below
            token = base64.urlsafe_b64decode(username + "=" * (-len(username) % 4))
            port = url.port or 443
            host = url.hostname
        except (ValueError, TypeError):
            raise bad from None
        if url.scheme != scheme or not host or len(token) != TOKEN_SIZE or "fp" not in query:
            raise bad
        return cls(token, (host, port), query["fp"][0], query.get("hub", ["hub"])[0], scheme)


# ------------------------------------------------------------ proxy front


@dataclass(frozen=True)
class ProxyAuth:
    """The one user name and password the proxy front asks for (SOCKS5 RFC 1929, HTTP Basic)."""

    user: bytes
    password: bytes = field(repr=False)  # never in a log line

    @classmethod
    def parse(cls, text: str, source: str) -> ProxyAuth:
        """USER:PASSWORD, split at the first colon (an HTTP Basic user id holds none, RFC 7617);
        each 1-255 bytes of UTF-8, as RFC 1929 carries them. `source` names where it came from."""
        user, colon, password = text.partition(":")
        raw_user, raw_password = user.encode(), password.encode()
        if not colon or not 0 < len(raw_user) < 256 or not 0 < len(raw_password) < 256:
            raise ConfigError(f"{source} must be USER:PASSWORD, each 1-255 bytes")  # never echo the secret
        return cls(raw_user, raw_password)


# ---------------------------------------------------------------- members

MEMBER_EXAMPLES = b"""
# --- Sharing your connection (ladder up --share). Flags of the same names override these.
# [share]
# members = "everyone"            # or ["alice", "@family"]: only these members (and groups) may use your exit
# groups = { family = ["mum", "dad"] }
# ports = [80, 443]               # destination ports; ranges like "8000-8100"
# deny = ["example.com", "203.0.113.0/24"]   # never served (a domain covers its subdomains)
# rate = "20M"                    # bytes per second for the whole exit (K, M, G)
# user_rate = "5M"                # bytes per second per member
# daily_cap = "10G"               # the exit stops taking new streams when reached
# monthly_cap = "200G"
# user_streams = 4096             # open streams per member; more wait up to 20 s for a slot
# Loopback, private, link-local, CGNAT, multicast addresses, the hub's and
# your own public address are always refused.

# --- The proxy's password (ladder up); this file is 0600. --proxy-auth, then $LADDER_PROXY_AUTH, win.
# [proxy]
# auth = "alice:a long random password"   # needed to listen beyond loopback (--lan); loopback asks too

# --- Routing (ladder up): the first matching rule wins. `ladder route test NAME` shows the choice.
# [route]
# rules = "inside-cn"             # a preset (inside-cn, abroad), or a list:
# rules = [
#   "domain-suffix cn -> direct",
#   "domain-keyword google -> exit:US",
#   "ip-cidr 192.168.0.0/16 -> direct",
#   "domain ads.example -> block",
#   "default -> exit:auto",
# ]
"""


@dataclass
class MemberConfig:
    """One member's folder: its key, its hub and its name there."""

    folder: Path
    key: Ed25519PrivateKey
    hub_address: tuple[str, int]
    fingerprint: str
    hub_name: str
    name: str
    share: dict = field(default_factory=dict)  # the [share] table: the sharer's policy
    route: dict = field(default_factory=dict)  # the [route] table: rules = [...] or a preset name
    proxy: dict = field(default_factory=dict)  # the [proxy] table: auth = "USER:PASSWORD"

    @property
    def id(self) -> str:
        return member_id(public_bytes(self.key))

    @property
    def status_path(self) -> Path:
        return self.folder / "status.json"

    @property
    def ledger_path(self) -> Path:
        """The hub's ledger checkpoint this member verified last, and the hub's checkpoint key."""
        return self.folder / "ledger.json"

    @staticmethod
    def key_path(folder: Path) -> Path:
        return folder / "member.key"

    @classmethod
    def load_or_create_key(cls, folder: Path) -> Ed25519PrivateKey:
        path = cls.key_path(folder)
        if path.exists():
            return cls.read_key(path)
        key = Ed25519PrivateKey.generate()
        write_file(path, base64.b64encode(key.private_bytes_raw()) + b"\n", 0o600)
        return key

    @staticmethod
    def read_key(path: Path, whose: str = "member") -> Ed25519PrivateKey:
        try:
            raw = base64.b64decode(path.read_bytes().strip(), validate=True)
            return Ed25519PrivateKey.from_private_bytes(raw)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"cannot read the {whose} key {path}: {exc}") from None

    def noise_key(self) -> bytes:
        """This member's static X25519 key for end-to-end channels (created on first use)."""
        return self.load_or_create_noise_key(self.folder)

    @staticmethod
    def load_or_create_noise_key(folder: Path) -> bytes:
        path = folder / "noise.key"
        if path.exists():
            return MemberConfig.read_noise_key(path)
        private, _ = generate_keypair()
        write_file(path, base64.b64encode(private) + b"\n", 0o600)
        return private

    @staticmethod
    def read_noise_key(path: Path) -> bytes:
        try:
            raw = base64.b64decode(path.read_bytes().strip(), validate=True)
        except (ValueError, OSError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(f"cannot read the channel key {path}")
        return raw

    def proxy_auth(self) -> ProxyAuth | None:
        """The [proxy] table's auth, if it is set."""
        auth = self.proxy.get("auth")
        source = f"[proxy] auth in {self.folder / 'ladder.toml'}"
        if auth is not None and not isinstance(auth, str):
            raise ConfigError(f"{source} must be a string, USER:PASSWORD")
        return ProxyAuth.parse(auth, source) if auth is not None else None

    @property
    def pins_path(self) -> Path:
        return self.folder / "pins.json"

    def lock(self):
        """Take this folder's agent lock for as long as the returned file stays open (the process lives).

        Two agents with one key would replace each other's link at the hub
        in a loop; the second one on the same folder stops here instead.
        Without POSIX locks (Windows) only the hub's word stops the older one.
        """
        try:
            import fcntl
        except ImportError:
            return None
        path = self.folder / "agent.lock"
        handle = open(path, "a+")  # noqa: SIM115 -- held open: the lock lasts as long as the agent
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            raise ConfigError(
                f"another agent (pid {pid}) is already running for {self.folder}: "
                f"stop it first (`ladder status --dir {self.folder}` tells how it is)") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    def agent_pid(self) -> int | None:
        """The pid of the agent that holds this folder's lock now, or None if none does.

        A shared lock is refused while an agent holds the exclusive one, so
        asking takes nothing from a running agent and leaves the file as it is.
        """
        try:
            import fcntl
        except ImportError:
            return None
        try:
            handle = open(self.folder / "agent.lock")  # noqa: SIM115 -- closed below, lock and all
        except OSError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().strip()
                return int(text) if text.isdigit() else 0
            return None

    def save(self) -> None:
        """Write ladder.toml at join time, with the optional tables as commented examples
        (0600: [proxy] may hold a password)."""
        write_file(
            self.folder / "ladder.toml",
            dump_toml({
                "hub": {"address": format_address(*self.hub_address), "fingerprint": self.fingerprint,
                        "name": self.hub_name},
                "member": {"name": self.name},
            }) + MEMBER_EXAMPLES,
            0o600,
        )

    @classmethod
    def load(cls, folder: Path, key: Ed25519PrivateKey | None = None) -> MemberConfig:
        """The member in `folder`; `key` stands in for member.key (the doctor checks ladder.toml apart
        from the key, so that a missing key is one failed check, not two)."""
        path = folder / "ladder.toml"
        if not path.exists():
            raise ConfigError(f"{folder} holds no membership: run `ladder join INVITE --dir {folder}` first")
        data = load_toml(path)
        try:
            hub, member = data["hub"], data["member"]
            share, route, proxy = data.get("share", {}), data.get("route", {}), data.get("proxy", {})
            if not all(isinstance(table, dict) for table in (share, route, proxy)):
                raise ConfigError(f"{path}: [share], [route] and [proxy] must be tables")
            key = key if key is not None else cls.read_key(cls.key_path(folder))
            return cls(folder, key, parse_address(hub["address"]),
                       hub["fingerprint"], hub.get("name", "hub"), member["name"], share, route, proxy)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{path} lacks {exc}") from None


# -------------------------------------------------------------------- hubs


@dataclass
class HubConfig:
    folder: Path
    name: str
    listen: tuple[str, int]
    public_address: tuple[str, int]
    cert: Path
    key: Path
    web_backend: tuple[str, int] | None = None  # a real web server for strangers (plain HTTP)
    raw_backend: tuple[str, int] | None = None  # its TLS port, for connections without a ClientHello
    database: str | None = None  # a postgresql:// URL shared by several hub processes; None: hub.db
    # Credits a member may owe ([credits] limit in hub.toml, e.g. "2G"; "off" or 0: no limit).
    credit_limit: int | None = DEFAULT_CREDIT_LIMIT

    @property
    def db_path(self) -> Path:
        return self.folder / "hub.db"

    @property
    def store_target(self) -> str | Path:
        """What HubStore opens: the database URL, else hub.db in the folder."""
        return self.database if self.database is not None else self.db_path

    @property
    def device_key_path(self) -> Path:
        return self.folder / "device.key"

    def device_key(self) -> bytes:
        """The key of the HMACs that devices' secrets are stored under (32 random bytes, made on first use).

        It lives beside the database, not in it: a copy of hub.db alone
        cannot check a guessed password, nor derive one from a token.
        """
        path = self.device_key_path
        if not path.exists():
            _create_once(path, os.urandom(DEVICE_KEY_LEN))
        raw = path.read_bytes()
        if len(raw) != DEVICE_KEY_LEN:
            raise ConfigError(f"cannot read the device key {path}: it is not {DEVICE_KEY_LEN} bytes")
        return raw

    @property
    def hub_key_path(self) -> Path:
        return self.folder / "hub.key"

    def hub_key(self) -> Ed25519PrivateKey:
        """The hub's own Ed25519 key (made on first use): peer hubs know it by this key, and it signs
        the announcements of its members' records that travel between hubs."""
        path = self.hub_key_path
        if not path.exists():
            _create_once(path, base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()) + b"\n")
        return MemberConfig.read_key(path, "hub")

    def hub_id(self) -> str:
        """The id peer hubs know this hub by (its key's, as a member id is a member key's)."""
        return member_id(public_bytes(self.hub_key()))

    def save(self) -> None:
        hub = {
            "name": self.name,
            "listen": format_address(*self.listen),
            "public_address": format_address(*self.public_address),
            "cert": self._within(self.cert),
            "key": self._within(self.key),
        }
        for name in ("web_backend", "raw_backend"):
            if getattr(self, name) is not None:
                hub[name] = format_address(*getattr(self, name))
        if self.database is not None:
            hub["database"] = self.database
        tables: dict[str, Mapping[str, str | int | bool]] = {"hub": hub}
        if self.credit_limit != DEFAULT_CREDIT_LIMIT:
            tables["credits"] = {"limit": self.credit_limit or "off"}
        # 0600 when it names a database: the URL may hold its password.
        write_file(self.folder / "hub.toml", dump_toml(tables), 0o600 if self.database else 0o644)

    def _within(self, path: Path) -> str:
        """A file in the hub's folder by its name there (load joins it to the folder), others as given."""
        try:
            return str(path.relative_to(self.folder))
        except ValueError:
            return str(path)

    @classmethod
    def load(cls, folder: Path) -> HubConfig:
        path = folder / "hub.toml"
        if not path.exists():
            raise ConfigError(f"{folder} holds no hub: run `ladder hub init --dir {folder}` first")
        data = load_toml(path)
        credits = data.get("credits", {})
        if not isinstance(credits, dict):
            raise ConfigError(f"{path}: [credits] must be a table")
        limit: int | None = DEFAULT_CREDIT_LIMIT
        if "limit" in credits:
            limit = parse_amount(credits["limit"], "[credits] limit")
        try:
            hub = data["hub"]
            backends = {name: parse_address(hub[name])
                        for name in ("web_backend", "raw_backend") if name in hub}
            return cls(folder, hub["name"], parse_address(hub["listen"]),
                       parse_address(hub["public_address"]), folder / hub["cert"], folder / hub["key"],
                       **backends, database=hub.get("database"), credit_limit=limit)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{path} lacks {exc}") from None
