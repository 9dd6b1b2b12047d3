"""A member's one-off requests to its hub (its devices), on a link of their own.

A COMMAND hello (protocol/hello.py) opens a link that carries one request
and its answer, then closes: the member's agent may be running on its own
link meanwhile, and a second AUTH link would take that one over.
"""

from __future__ import annotations

import time
from pathlib import Path

from ladder.config import MemberConfig, country_code, parse_amount, parse_duration
from ladder.errors import UserError
from ladder.link.client import HubIdentityMismatch, LinkRefused, dial
from ladder.protocol import control
from ladder.protocol.errors import ErrorCode, RemoteProtocolError

from .rules import PRESETS, load_rules


class RequestFailed(UserError):
    """The hub could not be reached, did not know this member, or refused the request."""


async def ask(config: MemberConfig, request: control.ControlMessage) -> control.ControlMessage:
    """Send `request` to the hub on a command link and return its answer; raises RequestFailed."""
    host, port = config.hub_address
    try:
        link, answer = await dial(config.hub_address, config.fingerprint, config.key, None,
                                  request=request)
    except HubIdentityMismatch as exc:
        raise RequestFailed(str(exc)) from None
    except LinkRefused:
        raise RequestFailed("the hub did not take this member's key (revoked, or a hub too old "
                            "for device requests)") from None
    except RemoteProtocolError as exc:
        raise RequestFailed(f"the hub's answer makes no sense: {exc}") from None
    except ConnectionRefusedError:  # a ConnectionError too, but nothing listens: the hub is down
        raise RequestFailed(f"cannot reach the hub at {host}:{port}: connection refused "
                            "(is the hub running?)") from None
    except ConnectionError:  # it answered as a server that has had enough: a request it cannot take
        raise RequestFailed(f"the hub at {host}:{port} closed the connection without an answer "
                            "(a hub too old for device requests?)") from None
    except (TimeoutError, OSError) as exc:
        raise RequestFailed(f"cannot reach the hub at {host}:{port}: {exc or 'timeout'}") from None
    link.close(ErrorCode.NO_ERROR, "request answered")
    if isinstance(answer, control.Done) and not answer.ok:
        raise RequestFailed(f"the hub refused: {answer.reason}")
    return answer


def device_request(name: str, exit_choice: str, rules_source: str | None, rate: str | None,
                   daily_cap: str | None, expires: str | None) -> control.DeviceAdd:
    """A device's name, exit and limits as `device add` and the dashboard take them, checked here (one
    clear line) rather than refused by the hub."""
    rules = ""
    if rules_source is not None:
        load_rules(rules_source)
        rules = rules_source if rules_source in PRESETS else Path(rules_source).read_text(encoding="utf-8")
    country = exit_choice if len(exit_choice) == 2 and exit_choice.isalpha() else None
    if country is not None:
        exit_choice = country_code(country)
    request = control.DeviceAdd(name, exit_choice, rules, parse_amount(rate, "--rate") or 0,
                                parse_amount(daily_cap, "--daily-cap") or 0,
                                int(time.time() + parse_duration(expires)) if expires else 0)
    if len(name) > 64 or len(control.encode(request)) > control.MAX_CONTROL:
        raise UserError("the device's name or its rules are too long to send to the hub (a name of at most "
                        f"64 characters, rules of at most {control.MAX_CONTROL // 2:,} bytes)")
    return request
