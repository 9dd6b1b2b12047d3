"""The systems compare.py measures, each behind one small interface.

A `System` starts its processes (through the run's `Processes`, so they are
stopped by pid at the end whatever happens), says how a client reaches the
origin through it (`proxy`: SOCKS5, HTTP CONNECT or direct), which processes
are its own (`pids`, with their descendants: forked workers, sshd's
per-connection children), what versions it runs, and stops.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from _common import (DIRECT, Origin, Processes, Proxy, BenchError, command_output, descendants, first_line,
                     free_port, ladder_cli_ok, ladder_version, log, start_ladder, wait_fetch, wait_port)

SEED_PROXY_PY = "proxy.py==2.4.3"
SEED_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ladder-bench" / "seed-venv"
SS_CIPHER = "chacha20-ietf-poly1305"
V2RAY_REVERSE_DOMAIN = "reverse.bench.invalid"  # names the bridge's own connections to the portal


@dataclass
class Context:
    procs: Processes
    tmp: Path
    origin: Origin
    echo_port: int


@dataclass
class System:
    ctx: Context
    name: str = ""
    path: str = ""  # the way a fetch goes, for the reader
    needs: tuple[tuple[str, str], ...] = ()  # (binary, Debian package)
    proxy: Proxy = DIRECT
    names: list[str] = field(default_factory=list)  # this system's processes in ctx.procs, in start order

    def missing(self) -> str | None:
        """One line naming the apt-get command if a binary is missing, else None."""
        for binary, package in self.needs:
            if not os.access(binary, os.X_OK):
                return f"{binary} is not installed: apt-get install {package}"
        return None

    def start(self) -> None:
        raise NotImplementedError

    def run(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        full = f"{self.name}-{name}"
        self.names.append(full)
        return self.ctx.procs.start(full, argv, **kwargs)

    def roots(self) -> dict[str, int]:
        """The processes this system started, by name (without the system's prefix)."""
        return {n.removeprefix(self.name + "-"): self.ctx.procs.get(n).pid for n in self.names}

    def pids(self) -> list[int]:
        """Every process of this system: those it started and all their descendants."""
        found = []
        for pid in self.roots().values():
            found += [pid, *descendants(pid)]
        return sorted(set(found))

    def check_alive(self) -> None:
        self.ctx.procs.check_alive(self.names)

    def stop(self) -> None:
        for name in reversed(self.names):
            self.ctx.procs.stop_one(name)
        self.names.clear()

    def versions(self) -> dict[str, str]:
        return {}

    def config(self) -> dict:
        """How it was set up, for the JSON line."""
        return {}

    def dir(self) -> Path:
        folder = self.ctx.tmp / self.name
        folder.mkdir(exist_ok=True)
        return folder


class Direct(System):
    def __init__(self, ctx: Context):
        super().__init__(ctx, "direct", "client → origin")

    def start(self) -> None:
        pass


class Ladder(System):
    def __init__(self, ctx: Context):
        super().__init__(ctx, "ladder", "client → user agent (SOCKS5) → hub → sharer's exit → origin")

    def start(self) -> None:
        port, names = start_ladder(self.ctx.procs, self.ctx.tmp, prefix="ladder-")
        self.names += [names[role] for role in ("hub", "sharer", "user")]
        self.proxy = Proxy("socks5", port)

    def versions(self) -> dict[str, str]:
        return {"ladder": ladder_version()}

    def config(self) -> dict:
        return {"sharer": "up --share --country ZZ --allow-private --ports 1-65535",
                "user": "up --proxy 127.0.0.1:PORT", "client": "SOCKS5 to the user agent"}


TROJAN = "/usr/bin/trojan"


def trojan_client_config(socks_port: int, server_port: int, password: str, cert: Path) -> dict:
    """Debian's trojan in client mode: SOCKS5 on loopback, Trojan over TLS to `server_port`, `cert` pinned."""
    return {"run_type": "client", "local_addr": "127.0.0.1", "local_port": socks_port,
            "remote_addr": "127.0.0.1", "remote_port": server_port, "password": [password], "log_level": 2,
            "ssl": {"verify": True, "verify_hostname": False, "cert": str(cert), "sni": ""}}


class LadderDevice(System):
    """A phone's stock app instead of our agent: Debian's trojan client speaking Trojan to the hub's 443."""

    def __init__(self, ctx: Context):
        super().__init__(ctx, "ladder-device",
                         "client → trojan client (SOCKS5) → hub, as the device's agent → sharer's exit → origin",
                         needs=((TROJAN, "trojan"),))

    def start(self) -> None:
        _, names = start_ladder(self.ctx.procs, self.dir(), prefix="ladder-device-")
        self.names += [names[role] for role in ("hub", "sharer", "user")]
        hub_dir = self.dir() / "ladder-hub"
        link = ladder_cli_ok(["hub", "device", "add", "bench", "--owner", "user", "--dir", str(hub_dir)])
        password = link.strip().splitlines()[-1].removeprefix("trojan://").split("@")[0]
        hub_port = int(link.strip().splitlines()[-1].split("@")[1].split("?")[0].rsplit(":", 1)[1])
        port = free_port()
        config = self.dir() / "trojan.json"
        config.write_text(json.dumps(trojan_client_config(port, hub_port, password, hub_dir / "tls.crt")))
        wait_port(port, 10, self.run("trojan", [TROJAN, "-c", str(config)]))
        self.proxy = Proxy("socks5", port)

    def versions(self) -> dict[str, str]:
        return {"ladder": ladder_version(), "trojan": first_line(command_output([TROJAN, "-v"]))}

    def config(self) -> dict:
        return {"sharer": "up --share --country ZZ --allow-private --ports 1-65535",
                "device": "hub device add bench --owner user (defaults)",
                "client": "SOCKS5 to Debian's trojan client, certificate pinned"}


# --------------------------------------------------------------------- seed

SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; it refuses to start without it

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
GatewayPorts clientspecified
X11Forwarding no
PrintMotd no
UseDNS no
LogLevel INFO
"""


def seed_proxy_binary() -> Path:
    """proxy.py's `proxy` in a throwaway venv under the cache folder, created on first use."""
    binary = SEED_VENV / "bin" / "proxy"
    if binary.exists() and command_output([str(binary), "--version"]).strip() == SEED_PROXY_PY.split("==")[1]:
        return binary
    log(f"installing {SEED_PROXY_PY} into {SEED_VENV} (once)")
    SEED_VENV.parent.mkdir(parents=True, exist_ok=True)
    for argv in ([sys.executable, "-m", "venv", "--clear", str(SEED_VENV)],
                 [str(SEED_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                  SEED_PROXY_PY]):
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise BenchError(f"`{' '.join(argv)}` took more than 600 s") from None
        if done.returncode != 0:
            raise BenchError(f"`{' '.join(argv)}` failed: {done.stderr.strip()[-500:]}")
    return binary


class Seed(System):
    """proxy.py on loopback, exposed with `ssh -R` through an sshd of our own."""

    def __init__(self, ctx: Context):
        super().__init__(ctx, "seed", "client → sshd (-R port, HTTP CONNECT) → ssh → proxy.py → origin",
                         ((SSHD, "openssh-server"), (SSH, "openssh-client"), (SSH_KEYGEN, "openssh-client")))
        self.made_privsep_dir = False

    def start(self) -> None:
        folder = self.dir()
        binary = seed_proxy_binary()
        proxy_port, ssh_port, remote_port = free_port(), free_port(), free_port()
        proc = self.run("proxy.py", [str(binary), "--hostname", "127.0.0.1", "--port", str(proxy_port)])
        wait_port(proxy_port, 30, proc)
        for key in ("host_key", "client_key"):
            subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", f"bench-{key}", "-f",
                            str(folder / key)], check=True, stdin=subprocess.DEVNULL, timeout=30)
        (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
        (folder / "sshd_config").write_text(SSHD_CONFIG.format(port=ssh_port, dir=folder))
        if not PRIVSEP_DIR.exists():
            PRIVSEP_DIR.mkdir(mode=0o755)
            self.made_privsep_dir = True
            log(f"created {PRIVSEP_DIR} (sshd's privilege separation folder; removed at the end)")
        proc = self.run("sshd", [SSHD, "-D", "-e", "-f", str(folder / "sshd_config")])
        wait_port(ssh_port, 15, proc)
        proc = self.run("ssh", [SSH, "-F", "/dev/null", "-N", "-T", "-p", str(ssh_port),
                                "-i", str(folder / "client_key"), "-o", "IdentitiesOnly=yes",
                                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                                "-o", f"UserKnownHostsFile={folder / 'known_hosts'}",
                                "-o", "ExitOnForwardFailure=yes",
                                "-R", f"127.0.0.1:{remote_port}:127.0.0.1:{proxy_port}", "root@127.0.0.1"])
        wait_port(remote_port, 15, proc)
        self.proxy = Proxy("http-connect", remote_port)

    def stop(self) -> None:
        super().stop()
        if self.made_privsep_dir:
            try:
                PRIVSEP_DIR.rmdir()
            except OSError:
                pass
            self.made_privsep_dir = False

    def versions(self) -> dict[str, str]:
        return {"proxy.py": command_output([str(SEED_VENV / "bin" / "proxy"), "--version"]),
                "openssh": first_line(command_output([SSH, "-V"]))}

    def config(self) -> dict:
        return {"proxy.py": "--hostname 127.0.0.1 --port P (all else default: threadless, "
                            "workers = nproc, --timeout 10 s idle)",
                "ssh": "-N -R 127.0.0.1:R:127.0.0.1:P, OpenSSH default ciphers",
                "sshd": "own config and port, GatewayPorts clientspecified, PermitRootLogin yes, UsePAM no",
                "client": "HTTP CONNECT to 127.0.0.1:R"}


# ------------------------------------------------------------------- v2ray

V2RAY = "/usr/bin/v2ray"
OPENSSL = "/usr/bin/openssl"
V2RAY_SERVER_NAME = "portal.bench.invalid"  # the portal's certificate names it; clients send it as SNI


def v2ray_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate and key for the portal's TLS inbounds."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    argv = [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={V2RAY_SERVER_NAME}",
            "-addext", f"subjectAltName=DNS:{V2RAY_SERVER_NAME}"]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                          check=False)
    if done.returncode != 0:
        raise BenchError(f"openssl req failed: {done.stderr.strip()}")
    return cert, key


def tls_inbound_stream(cert: Path, key: Path) -> dict:
    return {"network": "tcp", "security": "tls",
            "tlsSettings": {"certificates": [{"certificateFile": str(cert), "keyFile": str(key)}]}}


def vless_tls_outbound(tag: str, port: int, user: str) -> dict:
    """VLESS over TLS to the portal: the bridge's tunnel and, set the same, a user's local client."""
    return {"tag": tag, "protocol": "vless",
            "settings": {"vnext": [{"address": "127.0.0.1", "port": port,
                                    "users": [{"id": user, "encryption": "none"}]}]},
            "streamSettings": {"network": "tcp", "security": "tls",
                               "tlsSettings": {"serverName": V2RAY_SERVER_NAME, "allowInsecure": True}}}


def v2ray_portal_config(front: dict, tunnel_port: int, user: str, cert: Path, key: Path) -> dict:
    """The portal: `front` (tagged "clients") is where clients come in; the bridge dials its tunnel port."""
    return {
        "log": {"loglevel": "warning", "access": "none"},
        "reverse": {"portals": [{"tag": "portal", "domain": V2RAY_REVERSE_DOMAIN}]},
        "inbounds": [
            {"tag": "clients", "listen": "127.0.0.1", **front},
            {"tag": "tunnel", "listen": "127.0.0.1", "port": tunnel_port, "protocol": "vless",
             "settings": {"clients": [{"id": user}], "decryption": "none"},
             "streamSettings": tls_inbound_stream(cert, key)},
        ],
        "outbounds": [{"tag": "nowhere", "protocol": "blackhole"}],
        "routing": {"rules": [
            # the bridge's own connections carry the reverse domain: they become the portal's tunnels
            {"type": "field", "inboundTag": ["tunnel"], "domain": [f"full:{V2RAY_REVERSE_DOMAIN}"],
             "outboundTag": "portal"},
            # every client connection goes to the bridge through those tunnels
            {"type": "field", "inboundTag": ["clients"], "outboundTag": "portal"},
        ]},
    }


def v2ray_bridge_config(tunnel_port: int, user: str) -> dict:
    return {
        "log": {"loglevel": "warning", "access": "none"},
        "reverse": {"bridges": [{"tag": "bridge", "domain": V2RAY_REVERSE_DOMAIN}]},
        "outbounds": [vless_tls_outbound("tunnel", tunnel_port, user),
                      {"tag": "out", "protocol": "freedom", "settings": {}}],
        "routing": {"rules": [
            {"type": "field", "inboundTag": ["bridge"], "domain": [f"full:{V2RAY_REVERSE_DOMAIN}"],
             "outboundTag": "tunnel"},
            {"type": "field", "inboundTag": ["bridge"], "outboundTag": "out"},
        ]},
    }


def socks_inbound(port: int) -> dict:
    return {"port": port, "protocol": "socks", "settings": {"auth": "noauth", "udp": False}}


def v2ray_local_client_config(socks_port: int, portal_port: int, user: str) -> dict:
    """A v2ray user's own client: SOCKS5 in on loopback, VLESS + TLS out to the portal."""
    return {"log": {"loglevel": "warning", "access": "none"},
            "inbounds": [{"tag": "socks", "listen": "127.0.0.1", **socks_inbound(socks_port)}],
            "outbounds": [vless_tls_outbound("portal", portal_port, user)]}


class V2rayReverse(System):
    """v2ray's reverse proxy: a portal (SOCKS in, VLESS+TLS in for the bridge) and a bridge (freedom out).

    The client speaks SOCKS5 straight to the portal, a form no user across a firewall runs
    (it would be plaintext to the portal): v2ray-local is the form they run. Subclasses
    change the portal's client-facing inbound (`front`) and what sits before it (`start_front`).
    """

    PATH = "client → portal (SOCKS5) → bridge (VLESS+TLS, Mux.Cool) → origin"
    NEEDS: tuple[tuple[str, str], ...] = ((V2RAY, "v2ray"), (OPENSSL, "openssl"))

    def __init__(self, ctx: Context, name: str = "v2ray-reverse"):
        super().__init__(ctx, name, self.PATH, self.NEEDS)

    def front(self, port: int, cert: Path, key: Path) -> dict:
        """The portal's inbound for clients, on `port` (its tag and listen address are added)."""
        return socks_inbound(port)

    def start_front(self, port: int, cert: Path) -> Proxy:
        """Whatever runs in front of the portal's client inbound on `port`; how the client reaches it."""
        return Proxy("socks5", port)

    def start(self) -> None:
        folder = self.dir()
        cert, key = v2ray_certificate(folder)
        front_port, tunnel_port, user = free_port(), free_port(), str(uuid.uuid4())
        front = self.front(front_port, cert, key)
        configs = {"portal": v2ray_portal_config(front, tunnel_port, user, cert, key),
                   "bridge": v2ray_bridge_config(tunnel_port, user)}
        for role, conf in configs.items():
            (folder / f"{role}.json").write_text(json.dumps(conf, indent=1))
        proc = self.run("portal", [V2RAY, "-config", str(folder / "portal.json")], stdout="log")
        wait_port(front_port, 15, proc)
        wait_port(tunnel_port, 15, proc)
        self.run("bridge", [V2RAY, "-config", str(folder / "bridge.json")], stdout="log")
        self.proxy = self.start_front(front_port, cert)

    def versions(self) -> dict[str, str]:
        return {"v2ray": first_line(command_output([V2RAY, "-version"]))}

    def config(self) -> dict:
        return {"portal": "socks inbound (noauth) + vless inbound over TLS (self-signed P-256 cert); "
                          "reverse.portals; routing: tunnel+domain → portal, clients → portal",
                "bridge": "reverse.bridges; vless outbound over TLS (allowInsecure) to the portal; "
                          "freedom out",
                "mux": "Mux.Cool, as the reverse proxy always uses it", "client": "SOCKS5 to the portal"}


class V2rayLocal(V2rayReverse):
    """What a v2ray user runs across a firewall: a local v2ray client, SOCKS5 in, VLESS + TLS out.

    Its outbound has the bridge's tunnel settings exactly (`vless_tls_outbound`); as in a
    user's config, it sets no mux (the bridge's Mux.Cool comes with the reverse proxy). The
    portal takes it on a VLESS + TLS inbound of its own, with its own user id, beside the
    bridge's; it has no SOCKS inbound. Three processes, the same count as Ladder's.
    """

    PATH = ("client → local v2ray (SOCKS5 in, VLESS+TLS out) → portal → bridge (VLESS+TLS, Mux.Cool)"
            " → origin")

    def __init__(self, ctx: Context):
        super().__init__(ctx, "v2ray-local")
        self.client_user = str(uuid.uuid4())

    def front(self, port: int, cert: Path, key: Path) -> dict:
        return {"port": port, "protocol": "vless",
                "settings": {"clients": [{"id": self.client_user}], "decryption": "none"},
                "streamSettings": tls_inbound_stream(cert, key)}

    def start_front(self, port: int, cert: Path) -> Proxy:
        socks_port = free_port()
        config = self.dir() / "client.json"
        config.write_text(json.dumps(v2ray_local_client_config(socks_port, port, self.client_user), indent=1))
        wait_port(socks_port, 15, self.run("client", [V2RAY, "-config", str(config)], stdout="log"))
        return Proxy("socks5", socks_port)

    def config(self) -> dict:
        return {"client": "SOCKS5 to the local v2ray: socks inbound (noauth); vless outbound over TLS "
                          "(allowInsecure) to the portal, the bridge's settings; no mux",
                "portal": "vless inbound over TLS for clients + vless inbound over TLS for the bridge "
                          "(one self-signed P-256 cert); reverse.portals; routing as v2ray-reverse",
                "bridge": "as v2ray-reverse",
                "mux": "Mux.Cool portal ⇄ bridge, as the reverse proxy always uses it"}


class V2rayTrojan(V2rayReverse):
    """ladder-device's path with v2ray in the hub's place: Debian's trojan client → v2ray's Trojan inbound.

    v2ray's reverse proxy takes any inbound as the portal's client side, so the shape is
    ladder-device's own: the stock client speaks Trojan over TLS to a server on the public
    side (the portal here, the hub there), which carries it through the link the far side
    keeps open (the bridge's tunnel, the sharer's link) to the exit. No fallback is set on the
    Trojan inbound. The trojan client's config is ladder-device's but for the address and the
    pinned certificate (the portal's).
    """

    PATH = ("client → trojan client (SOCKS5) → portal (Trojan+TLS in) → bridge (VLESS+TLS, Mux.Cool)"
            " → origin")
    NEEDS = (*V2rayReverse.NEEDS, (TROJAN, "trojan"))

    def __init__(self, ctx: Context):
        super().__init__(ctx, "v2ray-trojan")
        self.password = secrets.token_hex(16)

    def front(self, port: int, cert: Path, key: Path) -> dict:
        return {"port": port, "protocol": "trojan", "settings": {"clients": [{"password": self.password}]},
                "streamSettings": tls_inbound_stream(cert, key)}

    def start_front(self, port: int, cert: Path) -> Proxy:
        socks_port = free_port()
        config = self.dir() / "trojan.json"
        config.write_text(json.dumps(trojan_client_config(socks_port, port, self.password, cert)))
        wait_port(socks_port, 10, self.run("trojan", [TROJAN, "-c", str(config)]))
        return Proxy("socks5", socks_port)

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "trojan": first_line(command_output([TROJAN, "-v"]))}

    def config(self) -> dict:
        return {"client": "SOCKS5 to Debian's trojan client, certificate pinned (as ladder-device)",
                "portal": "trojan inbound over TLS (no fallbacks) for clients + vless inbound over TLS for "
                          "the bridge (one self-signed P-256 cert); reverse.portals; routing as "
                          "v2ray-reverse",
                "bridge": "as v2ray-reverse",
                "mux": "Mux.Cool portal ⇄ bridge, as the reverse proxy always uses it"}


# ------------------------------------------------------------- shadowsocks

SS_SERVER = "/usr/bin/ss-server"
SS_LOCAL = "/usr/bin/ss-local"


class Shadowsocks(System):
    def __init__(self, ctx: Context):
        super().__init__(ctx, "shadowsocks", f"client → ss-local (SOCKS5) → ss-server ({SS_CIPHER}) → origin",
                         ((SS_SERVER, "shadowsocks-libev"), (SS_LOCAL, "shadowsocks-libev")))

    def start(self) -> None:
        server_port, local_port, password = free_port(), free_port(), secrets.token_hex(16)
        common = ["-k", password, "-m", SS_CIPHER]
        proc = self.run("ss-server", [SS_SERVER, "-s", "127.0.0.1", "-p", str(server_port), *common])
        wait_port(server_port, 15, proc)
        proc = self.run("ss-local", [SS_LOCAL, "-s", "127.0.0.1", "-p", str(server_port), "-b", "127.0.0.1",
                                     "-l", str(local_port), *common])
        wait_port(local_port, 15, proc)
        self.proxy = Proxy("socks5", local_port)

    def versions(self) -> dict[str, str]:
        text = command_output([SS_SERVER, "-h"])
        return {"shadowsocks-libev": next((l.strip() for l in text.splitlines() if "shadowsocks-libev" in l), "?")}

    def config(self) -> dict:
        return {"cipher": SS_CIPHER, "options": "defaults (timeout 60 s, no --no-delay, no fast open)",
                "client": "SOCKS5 to ss-local"}


SYSTEMS = {"direct": Direct, "ladder": Ladder, "ladder-device": LadderDevice, "seed": Seed,
           "v2ray-local": V2rayLocal, "v2ray-reverse": V2rayReverse, "v2ray-trojan": V2rayTrojan,
           "shadowsocks": Shadowsocks}


def start_checked(system: System) -> None:
    """Start a system and wait until a fetch goes through it."""
    system.start()
    wait_fetch(system.proxy, system.ctx.origin.port)
    system.check_alive()
