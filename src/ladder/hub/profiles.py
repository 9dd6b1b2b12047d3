"""What a device's app imports: the share link, and the subscription's profiles.

The stock apps (sing-box, Shadowrocket, Clash Meta, v2rayNG, Stash) read
the de-facto `trojan://password@host:port?sni=…#label` link. A hub with a
public-CA certificate gives links that verify as they are; with the
self-signed default, formats that can carry a pin of the certificate carry
it, and the others must be told to skip verification (the CLI says which):

    format            self-signed hub
    trojan:// link    `pcs` (v2rayN, Xray's pin) and `allowInsecure=1` for apps that read no pin
    sing-box JSON     the certificate itself in `tls.certificate`: verified, nothing skipped
    Clash/mihomo YAML `fingerprint`, mihomo's pin of the certificate: verified, nothing skipped

The profiles carry the device's routing rules (agent/rules.py), so `direct`
and `block` are decided on the phone and only the rest reaches the hub, which
applies the same rules again to choose the exit. Everything here is a pure
function of its arguments; the hub serves what it returns.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from ladder.agent.rules import Router, Rule

FORMATS = ("links", "sing-box", "clash")
# v2rayN, v2rayNG and Shadowrocket fetch a subscription URL expecting base64 share links, and
# it is the one format every app listed here can import; sing-box and Clash are asked for by name.
DEFAULT_FORMAT = "links"

# Where DNS goes when the phone asks: DNS over HTTPS to an address (no name to resolve first),
# carried through the hub to the exit, so a poisoned local resolver never answers for a proxied name.
REMOTE_DNS = "1.1.1.1"
CLASH_GROUP = "Ladder"


@dataclass(frozen=True)
class DeviceProfile:
    """Everything a profile of one device says."""

    label: str  # what the app shows: "alice/phone · hubname"
    password: str
    host: str  # the hub's public address as the device dials it
    port: int
    sni: str | None  # the name to send in TLS; None for an address
    cert_sha256: str | None  # hex SHA-256 of the hub certificate (DER) when self-signed, else None
    cert_pem: str | None  # the self-signed certificate itself, for formats that pin by certificate


def share_link(profile: DeviceProfile) -> str:
    """The `trojan://` link; `allowInsecure=1` only for a self-signed hub (apps that read no pin need it).

    `pcs` is the certificate pin of v2rayN's links (ServiceLib/Handler/Fmt/BaseFmt.cs) and
    v2rayNG's (fmt/FmtBase.kt, its "Certificate fingerprint (SHA-256)"), handed to Xray as
    `pinnedPeerCertSha256`: the hex SHA-256 of the certificate's DER (Xray docs,
    config/transports/tls.md). Xray 26 refuses `allowInsecure`, so these apps need the pin;
    sing-box's links carry none.
    """
    query: dict[str, str] = {"security": "tls", "type": "tcp"}
    if profile.sni:
        query["sni"] = profile.sni
    if profile.cert_sha256:
        query["allowInsecure"] = "1"
        query["pcs"] = profile.cert_sha256
    return (f"trojan://{quote(profile.password, safe='')}@{_bracketed(profile.host)}:{profile.port}"
            f"?{urlencode(query, quote_via=quote)}#{quote(profile.label, safe='')}")


def singbox_import_link(subscription_url: str, name: str) -> str:
    """The link (or QR code) that makes a sing-box app add the subscription as a remote profile.

    The URL scheme every sing-box graphical client implements (sing-box docs, clients/general.md);
    the app then refreshes the profile from the URL by itself (every 60 minutes by default).
    """
    return (f"sing-box://import-remote-profile?url={quote(subscription_url, safe='')}"
            f"#{quote(name, safe='')}")


def subscription_format(query_value: str | None) -> str:
    """The format a subscription URL's `?format=` names; DEFAULT_FORMAT when it names none."""
    if not query_value:
        return DEFAULT_FORMAT
    name = query_value.strip().lower()
    if name not in FORMATS:
        raise ValueError(f"unknown subscription format {query_value!r} (valid: {', '.join(FORMATS)})")
    return name


def subscription(profile: DeviceProfile, format: str, rules: Sequence[Rule] = ()) -> tuple[str, bytes]:
    """The subscription body in `format` and its content type."""
    if format == "sing-box":
        document = json.dumps(singbox_profile(profile, rules), indent=2, ensure_ascii=False)
        return "application/json; charset=utf-8", document.encode()
    if format == "clash":
        import yaml  # here, not at the top: only a Clash subscription needs it, and it costs the hub ~1 MB

        document = yaml.safe_dump(clash_profile(profile, rules), allow_unicode=True, sort_keys=False)
        return "text/yaml; charset=utf-8", document.encode()
    if format == "links":
        return "text/plain; charset=utf-8", base64.b64encode((share_link(profile) + "\n").encode())
    raise ValueError(f"unknown subscription format {format!r} (valid: {', '.join(FORMATS)})")


def userinfo_header(upload: int, download: int, total: int | None, expire: float | None) -> str:
    """The `subscription-userinfo` value the apps show as a usage bar and an expiry date.

    Bytes, and expiry in Unix seconds; the apps read 0 as "no cap" and "never", and the
    subscription panels they are used with always send all four keys.
    """
    return (f"upload={int(upload)}; download={int(download)}; "
            f"total={int(total or 0)}; expire={int(expire or 0)}")


# -- sing-box ------------------------------------------------------------------

# What a phone app runs: a virtual interface taking every app's traffic (the apps supply the
# platform's VPN service around it), IPv4 and IPv6 addresses of its own.
PHONE_INBOUND: dict[str, Any] = {
    "type": "tun",
    "tag": "tun-in",
    "address": ["172.19.0.1/30", "fdfe:dcba:9876::1/126"],
    "auto_route": True,
    "strict_route": True,
}


def mixed_inbound(port: int, listen: str = "127.0.0.1") -> dict[str, Any]:
    """A SOCKS5 and HTTP proxy inbound: the phone profile as a desktop or a test runs it, without root."""
    return {"type": "mixed", "tag": "mixed-in", "listen": listen, "listen_port": port}


def singbox_profile(profile: DeviceProfile, rules: Sequence[Rule] = (),
                    inbound: dict[str, Any] | None = None) -> dict[str, Any]:
    """A complete sing-box (1.12 or later) configuration: PHONE_INBOUND unless told another inbound.

    Blocking is a rule action (`reject`): sing-box 1.13 removed the `block` outbound. With a tun,
    `auto_detect_interface` binds outbound sockets to the real interface so that sing-box's own
    connection to the hub does not loop back into the tun (the phone apps do the same themselves).
    """
    inbound = PHONE_INBOUND if inbound is None else inbound
    proxy = profile.label
    tls: dict[str, Any] = {"enabled": True, "server_name": profile.sni or profile.host}
    if profile.cert_pem:
        tls["certificate"] = profile.cert_pem.strip().splitlines()
    route_rules: list[dict[str, Any]] = [
        {"action": "sniff"},
        {"protocol": "dns", "action": "hijack-dns"},
        {"domain_suffix": ["ladder"], "outbound": proxy},  # network-only services: always the hub
    ]
    dns_rules: list[dict[str, Any]] = []
    final = proxy
    for action, group in _runs(rules):
        target = _singbox_target(action, proxy)
        if group[0].kind == "default":
            if "outbound" in target:
                final = target["outbound"]
            else:
                route_rules.append(target)  # block by default: reject before `final` is reached
            break
        matches: dict[str, list[str]] = {}
        for rule in group:
            matches.setdefault(_SINGBOX_MATCH[rule.kind], []).append(rule.value)
        route_rules.append({**matches, **target})
        names = {key: values for key, values in matches.items() if key != "ip_cidr"}
        if names:  # in the same order, so a name is resolved where the route sends it
            dns_rules.append({**names, "server": "local" if action == "direct" else "remote"})
    route: dict[str, Any] = {"rules": route_rules, "final": final, "default_domain_resolver": "local"}
    if inbound["type"] == "tun":
        route["auto_detect_interface"] = True
    return {
        "log": {"level": "warn"},
        "dns": {
            "servers": [
                {"type": "https", "tag": "remote", "server": REMOTE_DNS, "detour": proxy},
                {"type": "local", "tag": "local"},
            ],
            # Names the rules send direct are resolved where they are reached from: locally.
            "rules": dns_rules,
            "final": "local" if final == "direct" else "remote",
        },
        "inbounds": [inbound],
        "outbounds": [
            {"type": "trojan", "tag": proxy, "server": profile.host, "server_port": profile.port,
             "password": profile.password, "tls": tls},
            {"type": "direct", "tag": "direct"},
        ],
        "route": route,
    }


_SINGBOX_MATCH = {"domain": "domain", "domain-suffix": "domain_suffix",
                  "domain-keyword": "domain_keyword", "ip-cidr": "ip_cidr"}


def _singbox_target(action: str, proxy: str) -> dict[str, str]:
    if action == "direct":
        return {"outbound": "direct"}
    if action == "block":
        return {"action": "reject"}
    return {"outbound": proxy}


# -- Clash / mihomo ------------------------------------------------------------

_CLASH_MATCH = {"domain": "DOMAIN", "domain-suffix": "DOMAIN-SUFFIX", "domain-keyword": "DOMAIN-KEYWORD"}


def clash_profile(profile: DeviceProfile, rules: Sequence[Rule] = ()) -> dict[str, Any]:
    """A Clash/mihomo configuration: one Trojan proxy in a selectable group, and the device's rules.

    For a self-signed hub the proxy carries mihomo's `fingerprint`, the hex SHA-256 of the
    certificate, which mihomo checks in place of a CA (component/ca/config.go): nothing is skipped.
    DNS runs in fake-ip mode, so the names reach the hub and are resolved at the exit;
    `respect-rules` sends the resolver's own queries through the rules, and so through the hub.
    """
    proxy: dict[str, Any] = {"name": profile.label, "type": "trojan", "server": profile.host,
                             "port": profile.port, "password": profile.password, "udp": True}
    if profile.sni:
        proxy["sni"] = profile.sni
    if profile.cert_sha256:
        proxy["fingerprint"] = profile.cert_sha256
    lines = [f"DOMAIN-SUFFIX,ladder,{CLASH_GROUP}"]
    for action, group in _runs(rules):
        target = {"direct": "DIRECT", "block": "REJECT"}.get(action, CLASH_GROUP)
        for rule in group:
            lines.append(_clash_rule(rule, target))
    return {
        "mixed-port": 7890,
        "allow-lan": False,
        "mode": "rule",
        "log-level": "warning",
        "ipv6": True,
        "dns": {
            "enable": True,
            "ipv6": True,
            "enhanced-mode": "fake-ip",
            "respect-rules": True,
            "nameserver": [f"https://{REMOTE_DNS}/dns-query"],
            "proxy-server-nameserver": ["system://"],  # the hub's own name, before the hub is reached
        },
        "proxies": [proxy],
        "proxy-groups": [{"name": CLASH_GROUP, "type": "select", "proxies": [profile.label]}],
        "rules": lines,
    }


def _clash_rule(rule: Rule, target: str) -> str:
    if rule.kind == "default":
        return f"MATCH,{target}"
    if rule.kind == "ip-cidr":
        kind = "IP-CIDR6" if ":" in rule.value else "IP-CIDR"
        # no-resolve: like Ladder's ip-cidr, look only at destinations given as addresses.
        return f"{kind},{rule.value},{target},no-resolve"
    return f"{_CLASH_MATCH[rule.kind]},{rule.value},{target}"


# -- shared --------------------------------------------------------------------


def _runs(rules: Sequence[Rule]) -> Iterable[tuple[str, list[Rule]]]:
    """The rules as the agent applies them (a default last), in runs of one action, up to the default.

    Neighbouring rules with the same action can share one entry without changing which rule
    matches first; every `exit…` action is one action here, the hub, which picks the exit.
    """
    run: list[Rule] = []
    action = ""
    for rule in Router(list(rules)).rules:
        rule_action = "exit" if rule.action.startswith("exit") else rule.action
        if run and (rule_action != action or rule.kind == "default"):
            yield action, run
            run = []
        action = rule_action
        run.append(rule)
        if rule.kind == "default":
            break
    yield action, run


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
