"""Active probes, as a censor sends them: run inside a lab namespace, print JSON.

    python probes.py react SPEC.json   # how a server reacts to each probe
    python probes.py connect SPEC.json # can a TCP connection be opened at all

A reaction is classified as the GFW's prober would see it (Frolov, Wampler
and Wustrow, "Detecting Probe-resistant Proxies", NDSS 2020): ``data`` if
the server sent anything within the wait, otherwise ``FIN`` (closed),
``RST`` (reset) or ``timeout`` (still open, silent); ``refused`` and
``unreachable`` if no connection was made. ``data`` holds what was
answered (hex, the first KEEP bytes), for comparing answers byte for byte.
Every probe is bounded by its wait; all probes run concurrently.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor

CONNECT_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 20.0  # many probes share two cores: a slow handshake is not a reaction
KEEP = 16 * 1024


def react(host: str, port: int, send: bytes = b"", wait: float = 5.0, tls_sni: str | None = None) -> dict:
    """Connect, optionally do a TLS handshake with `tls_sni`, send `send`, and watch for `wait` seconds.

    The wait starts once the connection (and handshake) is up: the many
    probes that run at once share two cores, and a handshake slowed by them
    must not eat into the time the server has to react.
    """
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except ConnectionRefusedError:
        return {"class": "refused", "received": 0, "end": "refused", "data": ""}
    except OSError as exc:
        return {"class": "unreachable", "received": 0, "end": str(exc), "data": ""}
    received, end, kept = 0, None, b""
    try:
        if tls_sni is not None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock.settimeout(HANDSHAKE_TIMEOUT)
            try:
                sock = context.wrap_socket(sock, server_hostname=tls_sni)
            except (ssl.SSLError, OSError) as exc:
                return {"class": _error_class(exc), "received": 0, "end": f"TLS handshake: {exc}", "data": ""}
        deadline = time.monotonic() + wait
        if send:
            sock.sendall(send)
        while end is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                end = "timeout"
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                end = "timeout"
            except ssl.SSLError as exc:
                end = f"TLS error: {exc.reason}"
            except ConnectionResetError:
                end = "RST"
            else:
                if chunk:
                    received += len(chunk)
                    kept = (kept + chunk)[:KEEP]
                else:
                    end = "FIN"
    except ConnectionResetError:
        end = "RST"
    except OSError as exc:
        end = _error_class(exc)
    finally:
        sock.close()
    return {"class": "data" if received else end, "received": received, "end": end, "data": kept.hex()}


def _error_class(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError) or "reset" in str(exc).lower():
        return "RST"
    if isinstance(exc, (socket.timeout, TimeoutError)) or "timed out" in str(exc):
        return "timeout"
    if isinstance(exc, ssl.SSLEOFError) or "EOF" in str(exc):
        return "FIN"
    return f"error: {exc}"


def connect(host: str, port: int, timeout: float = 2.0) -> str:
    """connected / refused / timeout / unreachable."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"unreachable ({exc.strerror or exc})"


def main(argv: list[str]) -> int:
    mode = argv[1]
    with open(argv[2]) as file:
        spec = json.load(file)
    with ThreadPoolExecutor(max_workers=128) as pool:
        if mode == "react":
            futures = {name: pool.submit(react, p["host"], p["port"], bytes.fromhex(p.get("send", "")),
                                         p.get("wait", 5.0), p.get("tls_sni"))
                       for name, p in spec.items()}
        elif mode == "connect":
            futures = {name: pool.submit(connect, p["host"], p["port"], p.get("timeout", 2.0))
                       for name, p in spec.items()}
        else:
            print(f"unknown mode {mode}", file=sys.stderr)
            return 2
        print(json.dumps({name: future.result() for name, future in futures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
