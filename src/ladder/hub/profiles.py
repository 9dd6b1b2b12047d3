"""What a device's app imports: the share link, and the subscription's profiles.

The stock apps (sing-box, Shadowrocket, Clash Meta, v2rayNG, Stash) read
the de-facto `trojan://password@host:port?sni=…#label` link. A hub with a
public-CA certificate gives links that verify as they are; with the
self-signed default, formats that can carry a pin of the certificate carry
it, and the others must be told to skip verification (the CLI says which).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode


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
    """The `trojan://` link; `allowInsecure=1` only for a self-signed hub (apps that read no pin need it)."""
    query: dict[str, str] = {"security": "tls", "type": "tcp"}
    if profile.sni:
        query["sni"] = profile.sni
    if profile.cert_sha256:
        query["allowInsecure"] = "1"
    host = f"[{profile.host}]" if ":" in profile.host else profile.host
    return (f"trojan://{quote(profile.password, safe='')}@{host}:{profile.port}"
            f"?{urlencode(query)}#{quote(profile.label, safe='')}")
