"""Control messages: one frozen dataclass each, compact JSON on the wire, validated once on the way in.

CONTROL frames carry small JSON objects whose "type" field names the
message. These are all of them:

    hub → member   welcome (first, on every member link), directory, services, members, member, replaced
    member → hub   version (first, the answer to a welcome; a peer hub's to a peer-welcome too)
    hub → joiner   joined or join-refused, the only message on a join link
    member → hub   share, share-status, publish
    member → hub   device-add, device-remove, device-list: the one request of a command link
    hub → member   device-added, devices or done: its one answer
    hub → peer hub peer-welcome (first, on every peer link), peer-joined or join-refused (a peer
                   invite redeemed), routes (announcements and withdrawals), peer-removed
    payer → exit   receipt, inside their channel (protocol/receipts.py)
    exit → hub     receipts (and hub → peer hub, back towards the payer's hub), settled (a payer's
                   hub's answer, on towards the exit's); hub → exit standing (its users' balances)
    hub → member   balance; credits, the answer to a command link's credits-request

(The join request itself is no control message: it is the JOIN hello,
protocol/hello.py. A command link is opened with the COMMAND hello, so that
asking for a device does not take over the member's agent link.)

`encode` writes "type" first and then the fields in the order the dataclass
declares them, which is the order the hub and the agent have always written
them in, so the bytes on the wire are those of the dict
literals these classes replace.

`decode` checks everything once, at the edge: the size, the JSON, the type,
and each field's type and bounds (strings and lists have a maximum length,
counts are integers and never booleans, flags are booleans). A message that
fails raises RemoteProtocolError naming the field, which closes that one
link. Receivers have always ignored what they do not know, so a peer newer
than us is not refused: an unknown type decodes to `Unknown`, which
receivers drop, and fields this side does not know are left out.

Signed records (exit records in share and directory, service records in
publish and services) travel as the base64 strings their member signed:
decode only bounds them, protocol/records.py verifies them, and their bytes
pass through the hub untouched.

A list too long for one message (services, members, publish) goes in
several messages of the same type, every one but the last saying `more`:
`split_list_message` cuts, `ListAssembler` joins.

The link is the edge (link/connection.py): `Link.send_control` encodes,
and every CONTROL payload a link receives is decoded there once, so roles
only ever see these classes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, get_args

from .errors import RemoteProtocolError

MAX_CONTROL = 60_000  # bytes of JSON in one control message
TYPE_MAX = 64  # characters of a message's type
NAME_MAX = 255  # ids, names, countries, addresses: an id must fit a route (protocol/messages.py)
TEXT_MAX = 1000  # reasons, in characters
RECORD_MAX = MAX_CONTROL  # a signed record's base64 text: bounded by the message that carries it
COUNT_MAX = 2**32 - 1
AMOUNT_MAX = 2**62  # credits and byte counters, either sign
PROOF_MAX = 64  # hashes in a Merkle proof (a log of up to 2**64 entries)
LIST_MAX = 10_000  # items in one message's list (fewer fit MAX_CONTROL anyway)

_Check = Callable[[Any, str], Any]


def _malformed(where: str, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed control message: {where} {why}")


def _text(limit: int, *, empty: bool = True, null: bool = False) -> _Check:
    def check(value: Any, where: str) -> Any:
        if value is None and null:
            return None
        if not isinstance(value, str):
            raise _malformed(where, "is not a string" + (" or null" if null else ""))
        if len(value) > limit or not (empty or value):
            raise _malformed(where, f"must be {0 if empty else 1}-{limit} characters")
        return value
    return check


def _count(value: Any, where: str) -> int:
    if type(value) is not int or not 0 <= value <= COUNT_MAX:  # bool is an int subclass: refused here
        raise _malformed(where, f"is not an integer from 0 to {COUNT_MAX}")
    return value


def _amount(value: Any, where: str) -> int:
    if type(value) is not int or not -AMOUNT_MAX <= value <= AMOUNT_MAX:
        raise _malformed(where, f"is not an integer of at most {AMOUNT_MAX} either way")
    return value


def _hashes(value: Any, where: str) -> tuple[str, ...]:
    """A Merkle proof: at most PROOF_MAX hashes, each 64 hex digits."""
    if not isinstance(value, list) or len(value) > PROOF_MAX:
        raise _malformed(where, f"is not a list of at most {PROOF_MAX} hashes")
    for i, item in enumerate(value):
        if not isinstance(item, str) or len(item) != 64 or item.strip("0123456789abcdef"):
            raise _malformed(f"{where}[{i}]", "is not 64 hex digits")
    return tuple(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _malformed(where, "is not true or false")
    return value


def _list(check_item: _Check) -> _Check:
    """A list of at most LIST_MAX values, each checked by `check_item`."""
    def check(value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _malformed(where, "is not a list")
        if len(value) > LIST_MAX:
            raise _malformed(where, f"has more than {LIST_MAX} items")
        return tuple(check_item(v, f"{where}[{i}]") for i, v in enumerate(value))
    return check


def _items(item: type) -> _Check:
    return _list(lambda value, where: _parse(item, value, where))


def _spec(check: _Check, **default: Any) -> Any:
    """A dataclass field that `decode` checks with `check`; with a default, it may be absent."""
    return field(metadata={"check": check}, **default)


_ID = _text(NAME_MAX, empty=False)
_NAME = _text(NAME_MAX)
_RECORD = _text(RECORD_MAX)

# ------------------------------------------------------------ list items


@dataclass(frozen=True, slots=True)
class ExitEntry:
    """An online exit in the directory: its signed record, with what the hub knows of it."""

    id: str = _spec(_ID)
    name: str = _spec(_NAME)
    country: str = _spec(_NAME)
    users: int = _spec(_count)  # channels to it: members using it, idle or not
    record: str = _spec(_RECORD)
    signature: str = _spec(_RECORD)
    pubkey: str = _spec(_RECORD)  # the key the hub vouched for at join time
    hub: str = _spec(_NAME, default="")  # the name of the hub it is at; empty: this one
    hops: int = _spec(_count, default=0)  # hubs between this one and that one


@dataclass(frozen=True, slots=True)
class SignedService:
    """One service record as its publisher sends it."""

    record: str = _spec(_RECORD)
    signature: str = _spec(_RECORD)


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """A published service in the hub's listing: the signed record, its publisher, online or not."""

    id: str = _spec(_ID)
    record: str = _spec(_RECORD)
    signature: str = _spec(_RECORD)
    pubkey: str = _spec(_RECORD)
    name: str = _spec(_NAME)  # the publisher's name at the hub; `member.hub` for another hub's
    online: bool = _spec(_flag)
    hub: str = _spec(_NAME, default="")  # the name of the publisher's hub; empty: this one
    hops: int = _spec(_count, default=0)  # hubs between this one and that one


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """A route a peer hub offers: its home hub's signed announcement and the hubs it came through."""

    record: str = _spec(_RECORD)
    signature: str = _spec(_RECORD)
    pubkey: str = _spec(_RECORD)  # the home hub's key, which signed it
    path: tuple[str, ...] = _spec(_list(_ID))  # hub ids: the home hub first, the sender last


@dataclass(frozen=True, slots=True)
class MemberName:
    """An active member's id and its name at the hub."""

    id: str = _spec(_ID)
    name: str = _spec(_NAME)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed envelope (protocol/envelope.py) as its signer made it: a receipt, a checkpoint."""

    record: str = _spec(_RECORD)
    signature: str = _spec(_RECORD)
    pubkey: str = _spec(_RECORD)


@dataclass(frozen=True, slots=True)
class SettledEntry:
    """A receipt the payer's hub recorded, and the amount it debited."""

    record: str = _spec(_RECORD)
    signature: str = _spec(_RECORD)
    pubkey: str = _spec(_RECORD)
    amount: int = _spec(_amount)


@dataclass(frozen=True, slots=True)
class StandingEntry:
    id: str = _spec(_ID)
    balance: int = _spec(_amount)


@dataclass(frozen=True, slots=True)
class LedgerItem:
    """One of the member's ledger entries: its leaf data and its inclusion proof."""

    index: int = _spec(_amount)
    data: str = _spec(_RECORD)
    proof: tuple[str, ...] = _spec(_hashes)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: a page of a service, as a hub's index ranks it."""

    url: str = _spec(_text(TEXT_MAX))
    title: str = _spec(_text(TEXT_MAX))
    snippet: str = _spec(_text(TEXT_MAX))
    marks: tuple[int, ...] = _spec(_list(_count))  # highlighted spans of the snippet: start, end, start, ...
    score: int = _spec(_count)  # in millionths: 1,000,000 is the best result of the query at that hub
    hub: str = _spec(_NAME)
    online: bool = _spec(_flag)
    host: str = _spec(_NAME)


def _envelope(value: Any, where: str) -> Envelope:
    envelope: Envelope = _parse(Envelope, value, where)
    return envelope


# -------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Welcome:
    """The hub's first message on a member's link: the member's name there and the address it comes from."""

    TYPE: ClassVar[str] = "welcome"
    hub: str = _spec(_NAME)
    member: str = _spec(_NAME)
    id: str = _spec(_ID)
    address: str | None = _spec(_text(NAME_MAX, null=True))
    hub_id: str = _spec(_NAME, default="")  # the hub's own id, which receipts name
    oldest: int = _spec(_count, default=1)  # the protocols the hub speaks (version.py); absent in 0.1.0
    protocol: int = _spec(_count, default=1)
    release: str = _spec(_NAME, default="")


@dataclass(frozen=True, slots=True)
class Version:
    """The dialling side's answer to a welcome: the protocols it speaks and its release (version.py)."""

    TYPE: ClassVar[str] = "version"
    oldest: int = _spec(_count)
    protocol: int = _spec(_count)
    release: str = _spec(_NAME)


@dataclass(frozen=True, slots=True)
class Joined:
    """The invite was redeemed: the new member's name and id at this hub."""

    TYPE: ClassVar[str] = "joined"
    hub: str = _spec(_NAME)
    name: str = _spec(_NAME)
    id: str = _spec(_ID)


@dataclass(frozen=True, slots=True)
class JoinRefused:
    """The invite is known but cannot be used (expired, used up, revoked), and why."""

    TYPE: ClassVar[str] = "join-refused"
    reason: str = _spec(_text(TEXT_MAX))


@dataclass(frozen=True, slots=True)
class Share:
    """A member shares its connection: its signed exit record (protocol/records.py)."""

    TYPE: ClassVar[str] = "share"
    record: str = _spec(_RECORD)
    signature: str = _spec(_RECORD)
    pubkey: str = _spec(_RECORD)  # the hub uses the key it vouched for instead


@dataclass(frozen=True, slots=True)
class ShareStatus:
    """An exit reached a cap (accepting false, and why) or left it."""

    TYPE: ClassVar[str] = "share-status"
    accepting: bool = _spec(_flag)
    reason: str = _spec(_text(TEXT_MAX))


@dataclass(frozen=True, slots=True)
class Directory:
    """The exits online and accepting, pushed when they change (and, paced, when their load does)."""

    TYPE: ClassVar[str] = "directory"
    exits: tuple[ExitEntry, ...] = _spec(_items(ExitEntry))


@dataclass(frozen=True, slots=True)
class Replaced:
    """The member connected again elsewhere: this link is closing, and the agent should not take it back."""

    TYPE: ClassVar[str] = "replaced"


@dataclass(frozen=True, slots=True)
class Publish:
    """A piece of the member's services; the last piece (more false) replaces the whole set."""

    TYPE: ClassVar[str] = "publish"
    services: tuple[SignedService, ...] = _spec(_items(SignedService))
    more: bool = _spec(_flag, default=False)


@dataclass(frozen=True, slots=True)
class Services:
    """A piece of the hub's listing of every published service."""

    TYPE: ClassVar[str] = "services"
    services: tuple[ServiceEntry, ...] = _spec(_items(ServiceEntry))
    more: bool = _spec(_flag, default=False)


@dataclass(frozen=True, slots=True)
class Members:
    """The names of all active members, so names a publisher types can become ids."""

    TYPE: ClassVar[str] = "members"
    members: tuple[MemberName, ...] = _spec(_items(MemberName))
    more: bool = _spec(_flag, default=False)


@dataclass(frozen=True, slots=True)
class MemberJoined:
    """One member joined: pushed alone, so a burst of joins does not resend the whole list each time."""

    TYPE: ClassVar[str] = "member"
    id: str = _spec(_ID)
    name: str = _spec(_NAME)


@dataclass(frozen=True, slots=True)
class DeviceAdd:
    """A member asks for a device of its own: the options its exit choice and limits take at the hub."""

    TYPE: ClassVar[str] = "device-add"
    name: str = _spec(_NAME)  # the hub checks it as it checks member names
    exit: str = _spec(_NAME, default="auto")
    rules: str = _spec(_text(MAX_CONTROL // 2), default="")  # a preset's name or rules text
    rate: int = _spec(_count, default=0)  # bytes per second; 0: none
    daily_cap: int = _spec(_count, default=0)  # bytes a day; 0: none
    expires: int = _spec(_count, default=0)  # Unix time; 0: never


@dataclass(frozen=True, slots=True)
class DeviceRemove:
    TYPE: ClassVar[str] = "device-remove"
    name: str = _spec(_NAME)  # the hub checks it as it checks member names


@dataclass(frozen=True, slots=True)
class DeviceList:
    TYPE: ClassVar[str] = "device-list"


@dataclass(frozen=True, slots=True)
class DeviceAdded:
    """The new device's share link and subscription URL, which the hub never keeps, and how to trust it."""

    TYPE: ClassVar[str] = "device-added"
    name: str = _spec(_NAME)  # the hub checks it as it checks member names
    link: str = _spec(_text(TEXT_MAX * 4))
    subscription: str = _spec(_text(TEXT_MAX))
    note: str = _spec(_text(TEXT_MAX), default="")  # what an app must be told (a self-signed hub)


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    name: str = _spec(_NAME)  # the hub checks it as it checks member names
    online: bool = _spec(_flag)
    bytes_today: int = _spec(_count)
    last_seen: int = _spec(_count)  # Unix time; 0: never
    expires: int = _spec(_count)  # Unix time; 0: never


@dataclass(frozen=True, slots=True)
class Devices:
    TYPE: ClassVar[str] = "devices"
    devices: tuple[DeviceEntry, ...] = _spec(_items(DeviceEntry))


@dataclass(frozen=True, slots=True)
class Done:
    """The answer to a request with nothing more to say than whether it was done, and why not."""

    TYPE: ClassVar[str] = "done"
    ok: bool = _spec(_flag)
    reason: str = _spec(_text(TEXT_MAX), default="")


@dataclass(frozen=True, slots=True)
class PeerWelcome:
    """A hub's first message on a peer hub's link: its name and id."""

    TYPE: ClassVar[str] = "peer-welcome"
    hub: str = _spec(_NAME)
    id: str = _spec(_ID)
    oldest: int = _spec(_count, default=1)  # as in Welcome
    protocol: int = _spec(_count, default=1)
    release: str = _spec(_NAME, default="")


@dataclass(frozen=True, slots=True)
class PeerJoined:
    """The answer to a redeemed peer invite: the name this hub has, its id and its key."""

    TYPE: ClassVar[str] = "peer-joined"
    hub: str = _spec(_NAME)
    id: str = _spec(_ID)
    key: str = _spec(_RECORD)  # base64 of the hub's Ed25519 key


@dataclass(frozen=True, slots=True)
class Routes:
    """Routing between peer hubs (protocol/routing.py): routes offered, and member ids no longer routed
    through the sender. Each message stands alone (no pieces to join)."""

    TYPE: ClassVar[str] = "routes"
    routes: tuple[RouteEntry, ...] = _spec(_items(RouteEntry), default=())
    withdrawn: tuple[str, ...] = _spec(_list(_ID), default=())


@dataclass(frozen=True, slots=True)
class PeerRemoved:
    """The peering is ended by the sender's operator: the receiver ends it too."""

    TYPE: ClassVar[str] = "peer-removed"
    reason: str = _spec(_text(TEXT_MAX), default="")


@dataclass(frozen=True, slots=True)
class Receipt:
    """A payer's receipt to the exit, inside their channel."""

    TYPE: ClassVar[str] = "receipt"
    record: str = _spec(_RECORD)
    signature: str = _spec(_RECORD)
    pubkey: str = _spec(_RECORD)


@dataclass(frozen=True, slots=True)
class Receipts:
    """Receipts an exit checked, to its hub; and from hub to hub back towards each payer's hub, with
    the id of the exit's hub (`hub`)."""

    TYPE: ClassVar[str] = "receipts"
    receipts: tuple[Envelope, ...] = _spec(_items(Envelope))
    hub: str = _spec(_NAME, default="")


@dataclass(frozen=True, slots=True)
class Settled:
    """Receipts the payer's hub debited, from hub to hub on towards the exit's hub, which credits them."""

    TYPE: ClassVar[str] = "settled"
    entries: tuple[SettledEntry, ...] = _spec(_items(SettledEntry))


@dataclass(frozen=True, slots=True)
class Standing:
    """To an exit: the balances of the members using it, and the hub's credit limit (priority)."""

    TYPE: ClassVar[str] = "standing"
    limit: int = _spec(_amount)  # the hub's credit limit (0: none)
    members: tuple[StandingEntry, ...] = _spec(_items(StandingEntry))


@dataclass(frozen=True, slots=True)
class Balance:
    """A member's account at its hub, pushed when it changes."""

    TYPE: ClassVar[str] = "balance"
    balance: int = _spec(_amount)
    earned: int = _spec(_amount)
    spent: int = _spec(_amount)
    month_earned: int = _spec(_amount)
    month_spent: int = _spec(_amount)
    limit: int = _spec(_amount)  # the hub's credit limit (0: none)


@dataclass(frozen=True, slots=True)
class CreditsRequest:
    """A member asks for its account, a page of its entries with inclusion proofs against the checkpoint
    of size `at` (0: the newest), and a consistency proof from the checkpoint of size `since` it saw."""

    TYPE: ClassVar[str] = "credits-request"
    since: int = _spec(_amount, default=0)
    at: int = _spec(_amount, default=0)
    start: int = _spec(_amount, default=0)


@dataclass(frozen=True, slots=True)
class Credits:
    """The answer to credits-request: the account, a signed checkpoint, entries and proofs."""

    TYPE: ClassVar[str] = "credits"
    balance: int = _spec(_amount)
    earned: int = _spec(_amount)
    spent: int = _spec(_amount)
    month_earned: int = _spec(_amount)
    month_spent: int = _spec(_amount)
    limit: int = _spec(_amount)  # the hub's credit limit (0: none)
    checkpoint: Envelope = _spec(_envelope)  # noqa: RUF009 (an immutable dataclass)
    consistency: tuple[str, ...] = _spec(_hashes, default=())
    total: int = _spec(_amount, default=0)  # the member's entries, of which `entries` is a page
    start: int = _spec(_amount, default=0)
    entries: tuple[LedgerItem, ...] = _spec(_items(LedgerItem), default=())


@dataclass(frozen=True, slots=True)
class LedgerSeen:
    """To a peer hub: the size of the newest checkpoint of its ledger this hub holds (0: none yet)."""

    TYPE: ClassVar[str] = "ledger-seen"
    size: int = _spec(_amount)


@dataclass(frozen=True, slots=True)
class LedgerHead:
    """To a peer hub: this hub's newest checkpoint, and a consistency proof from size `since` (the one the
    peer said it holds) to it."""

    TYPE: ClassVar[str] = "ledger-head"
    checkpoint: Envelope = _spec(_envelope)  # noqa: RUF009 (an immutable dataclass)
    since: int = _spec(_amount, default=0)
    consistency: tuple[str, ...] = _spec(_hashes, default=())


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A member asks its hub (on a command link), or a hub its peers (`ref` names the answer), for pages
    by words."""

    TYPE: ClassVar[str] = "search"
    query: str = _spec(_text(TEXT_MAX))
    limit: int = _spec(_count, default=10)
    ref: int = _spec(_count, default=0)


@dataclass(frozen=True, slots=True)
class SearchResults:
    """The answer to `search`: the best hits first; `hubs` that did not answer in time are named."""

    TYPE: ClassVar[str] = "search-results"
    hits: tuple[SearchHit, ...] = _spec(_items(SearchHit))
    ref: int = _spec(_count, default=0)
    missing: tuple[str, ...] = _spec(_list(_NAME), default=())


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message of a type this side does not know; receivers ignore it, as they always have."""

    type: str


ControlMessage = (Welcome | Version | Joined | JoinRefused | Share | ShareStatus | Directory | Replaced
                  | Publish | Services | Members | MemberJoined | DeviceAdd | DeviceRemove | DeviceList
                  | DeviceAdded | Devices | Done | PeerWelcome | PeerJoined | Routes | PeerRemoved
                  | Receipt | Receipts | Settled | Standing | Balance | CreditsRequest | Credits | LedgerSeen
                  | LedgerHead | SearchRequest | SearchResults | Unknown)
ListMessage = TypeVar("ListMessage", Publish, Services, Members)
_TYPES: dict[str, type] = {cls.TYPE: cls for cls in get_args(ControlMessage) if cls is not Unknown}

# ---------------------------------------------------------------- codec


def _json(obj: Any) -> Any:
    """The JSON object of a message or list item: "type" first, then the fields in their order."""
    out = {"type": obj.TYPE} if hasattr(obj, "TYPE") else {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, tuple):
            value = [v if isinstance(v, (str, int)) else _json(v) for v in value]
        elif dataclasses.is_dataclass(value):
            value = _json(value)
        out[f.name] = value
    return out


def encode(message: ControlMessage) -> bytes:
    return _compact(_json(message))


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json_object(payload: bytes) -> dict[str, Any]:
    """The JSON object of a control message with a string type, its fields not yet checked."""
    if len(payload) > MAX_CONTROL:
        raise RemoteProtocolError("control message too large")
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RemoteProtocolError("control message is not JSON (or nested too deeply)") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise RemoteProtocolError("control message without a type")
    return message


def decode(payload: bytes) -> ControlMessage:
    """The message in a CONTROL frame's payload; RemoteProtocolError naming the field if it is malformed."""
    message = _json_object(payload)
    type_ = message["type"]
    if len(type_) > TYPE_MAX:
        raise _malformed("type", f"is longer than {TYPE_MAX} characters")
    cls = _TYPES.get(type_)
    return Unknown(type_) if cls is None else _parse(cls, message, type_)


def _parse(cls: type, obj: Any, where: str) -> Any:
    if not isinstance(obj, dict):
        raise _malformed(where, "is not an object")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in obj:
            values[f.name] = f.metadata["check"](obj[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING:
            raise _malformed(where, f"has no {f.name!r} field")
    return cls(**values)


# ---------------------------------------------------------- long lists


def _with(message: ListMessage, key: str, items: list[Any], more: bool) -> ListMessage:
    changes: dict[str, Any] = {key: tuple(items), "more": more}
    return dataclasses.replace(message, **changes)


def split_list_message(message: ListMessage, key: str, items: list[Any], limit: int = MAX_CONTROL - 1000
                       ) -> list[ListMessage]:
    """`message` with `key` set to consecutive pieces of `items`, each encoding within `limit`."""
    base = len(encode(_with(message, key, [], False)))
    pieces: list[list[Any]] = []
    piece: list[Any] = []
    size = base
    for item in items:
        item_size = len(_compact(_json(item))) + 1
        if base + item_size > limit:
            continue  # one item alone is too large: it cannot be sent at all
        if piece and size + item_size > limit:
            pieces.append(piece)
            piece, size = [], base
        piece.append(item)
        size += item_size
    pieces.append(piece)
    return [_with(message, key, p, i < len(pieces) - 1) for i, p in enumerate(pieces)]


class ListAssembler:
    """Gathers the pieces of split list messages; `add` returns the whole list after the last piece."""

    def __init__(self, key: str, max_items: int = 100_000):
        self.key = key
        self.max_items = max_items
        self._items: list[Any] = []

    def add(self, message: Publish | Services | Members) -> list[Any] | None:
        items = getattr(message, self.key)
        self._items.extend(items[: self.max_items - len(self._items)])
        if message.more:
            return None
        whole, self._items = self._items, []
        return whole
