"""Routing rules: which destinations go through which exit, directly, or nowhere.

A rule is one line, `<match> -> <action>`:

    domain example.com            -> direct       # exactly this name
    domain-suffix cn              -> direct       # cn and everything under it
    domain-keyword google         -> exit:US      # any name containing the word
    ip-cidr 192.168.0.0/16        -> direct       # address literals only
    default                       -> exit:auto    # what matches nothing else

Actions are `direct` (this machine connects itself), `block`,
`exit:<auto | country code | member name>`, or plain `exit` for the exit
chosen with `ladder up --exit`. The first match wins. Names
are compared in their ASCII (punycode) form, lower case, without a trailing
dot. `ip-cidr` looks only at destinations given as addresses: names are
never resolved here, because a poisoned local resolver must not decide
where traffic goes. The same rules also produce the PAC file that browsers
and phones can load.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from importlib import resources

from ladder.config import ConfigError, format_address

KINDS = ("domain", "domain-suffix", "domain-keyword", "ip-cidr", "default")
PRESETS = ("inside-cn", "abroad")


@dataclass(frozen=True)
class Rule:
    kind: str
    value: str
    action: str  # "direct", "block" or "exit:<selector>"
    line: int = 0
    text: str = ""

    def matches(self, host: str, address) -> bool:
        if self.kind == "default":
            return True
        if self.kind == "ip-cidr":
            return address is not None and address.version == self.network.version and address in self.network
        if address is not None:
            return False
        if self.kind == "domain":
            return host == self.value
        if self.kind == "domain-suffix":
            return host == self.value or host.endswith("." + self.value)
        return self.value in host  # domain-keyword

    @property
    def network(self):
        return ipaddress.ip_network(self.value, strict=False)


def normalize_host(host: str) -> str:
    """Lower-case ASCII form of a name (punycode for international names)."""
    host = host.strip().rstrip(".").lower()
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode()
    except UnicodeError:
        return host


def as_address(host: str):
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def parse_rule(text: str, line: int = 0) -> Rule:
    where = f"rule {line}: " if line else ""
    match, arrow, action = text.partition("->")
    parts = match.split()
    action = action.strip()
    if not arrow or not parts or parts[0] not in KINDS:
        raise ConfigError(f"{where}{text.strip()!r} is not `<{'|'.join(KINDS)}> [value] -> <action>`")
    kind = parts[0]
    if (kind == "default") != (len(parts) == 1) or len(parts) > 2:
        takes = "no" if kind == "default" else "one"
        raise ConfigError(f"{where}{text.strip()!r}: {kind} takes {takes} value")
    value = parts[1] if len(parts) == 2 else ""
    if kind == "ip-cidr":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(f"{where}{value!r} is not a network like 10.0.0.0/8") from None
    elif kind != "default":
        value = normalize_host(value)
    if not (action in ("direct", "block", "exit") or (action.startswith("exit:") and len(action) > 5)):
        raise ConfigError(f"{where}action {action!r} is not direct, block, exit or "
                          "exit:<auto|country|member>")
    return Rule(kind, value, action, line, " ".join(text.split()))


def parse_rules(lines) -> list[Rule]:
    rules = []
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if text:
            rules.append(parse_rule(text, number))
    return rules


def preset(name: str) -> list[Rule]:
    if name not in PRESETS:
        raise ConfigError(f"no rule preset named {name!r} (there are: {', '.join(PRESETS)})")
    rules_file = resources.files("ladder.agent").joinpath(f"presets/{name}.rules")
    return parse_rules(rules_file.read_text().splitlines())


def load_rules(source) -> list[Rule]:
    """Rules from a preset name, a rules file path, or a list of rule lines (from [route] rules)."""
    if source is None:
        return []
    if isinstance(source, list):
        return parse_rules(str(line) for line in source)
    if source in PRESETS:
        return preset(source)
    try:
        with open(source, encoding="utf-8") as f:
            return parse_rules(f.read().splitlines())
    except OSError as exc:
        raise ConfigError(f"cannot read rules from {source!r}: not a preset ({', '.join(PRESETS)}) "
                          f"nor a readable file ({exc.strerror})") from None


class Router:
    """Applies rules in order; without rules, everything goes through `--exit`."""

    def __init__(self, rules: list[Rule], default_exit: str = "auto"):
        exit_action = f"exit:{default_exit}"
        self.rules = [Rule(r.kind, r.value, exit_action, r.line, r.text) if r.action == "exit" else r
                      for r in rules]
        if not any(rule.kind == "default" for rule in self.rules):
            self.rules.append(Rule("default", "", exit_action, 0, f"default -> {exit_action}"))

    def route(self, host: str) -> Rule:
        name = normalize_host(host)
        address = as_address(name)
        return next(rule for rule in self.rules if rule.matches(name, address))

    def pac(self, proxy: tuple[str, int], socks5: bool = True) -> str:
        """A PAC file (FindProxyForURL) with the same first-match logic.

        It offers SOCKS5, then the HTTP proxy: both hand the agent names. Plain
        `SOCKS` is not offered: browsers read it as SOCKS4 and resolve the name
        themselves, with the local (possibly poisoned) DNS. Without `socks5`
        (the proxy asks for a password, and browsers send none over SOCKS5) it
        offers only the HTTP proxy, whose password a browser asks its user for.
        """
        address = format_address(*proxy)
        via = f"SOCKS5 {address}; PROXY {address}" if socks5 else f"PROXY {address}"
        lines = [
            "// Generated by Ladder from its routing rules. Direct traffic does not touch the agent;",
            "// everything else goes to the agent, which applies the same rules (exit choice, block).",
            "function FindProxyForURL(url, host) {",
            "  host = host.toLowerCase();",
            '  var isV4 = /^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host);',
            (f'  if (dnsDomainIs(host, ".ladder")) return "{via}";'
             "  // network-only services: always the agent"),
        ]
        for rule in self.rules:
            target = '"DIRECT"' if rule.action == "direct" else f'"{via}"'
            value = rule.value.replace("\\", "\\\\").replace('"', '\\"')
            if rule.kind == "domain":
                test = f'host == "{value}"'
            elif rule.kind == "domain-suffix":
                test = f'(host == "{value}" || dnsDomainIs(host, ".{value}"))'
            elif rule.kind == "domain-keyword":
                test = f'host.indexOf("{value}") >= 0'
            elif rule.kind == "ip-cidr":
                network = rule.network
                if network.version != 4:
                    continue  # isInNet is IPv4-only in PAC; the agent still applies the rule
                test = f'isV4 && isInNet(host, "{network.network_address}", "{network.netmask}")'
            else:
                lines.append(f"  return {target};  // {rule.text}")
                break
            condition = test if test.startswith("(") else f"({test})"
            lines.append(f"  if {condition} return {target};  // {rule.text}")
        lines.append("}")
        return "\n".join(lines) + "\n"
