"""What an operator reads of a hub: the rows `ladder hub members`, `devices`, `peers` and `ledger` print,
and the admin page shows.

Each function reads the store (and, for peers, what the running hub says of
its links) and returns plain rows, so the command line and the page cannot
tell two stories about one hub.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from ladder.config import HubConfig, InviteLink
from ladder.link.tls import fingerprint_of_cert_file
from ladder.protocol.envelope import RecordError
from ladder.protocol.identity import public_bytes
from ladder.protocol.ledger import check_entries, verify_checkpoint
from ladder.store.hubdb import Account, HubStore, utc_day

Row = dict[str, Any]


def invite_link(config: HubConfig, token: bytes) -> str:
    """The link a new member joins with: the token, the hub's address and its key's fingerprint."""
    return str(InviteLink(token, config.public_address, fingerprint_of_cert_file(config.cert), config.name))


def members(store: HubStore) -> list[Row]:
    """Every member, revoked ones too: online as what ("user", "exit", "search" or None), when seen, and the
    Ladder release its agent last said it runs (None: 0.1.0, which says none, or not connected since)."""
    return [{"name": m.name, "id": m.id, "online": m.online_as, "revoked": m.revoked,
             "last_seen": m.last_seen, "joined": m.created, "release": m.release} for m in store.members()]


def devices(store: HubStore, now: float | None = None) -> list[Row]:
    today = utc_day(time.time() if now is None else now)
    return [{"owner": d.owner_name, "name": d.name, "id": d.id, "online": d.online, "revoked": d.revoked,
             "bytes_today": d.bytes_on(today), "bytes_total": d.total_bytes, "last_seen": d.last_seen,
             "expires": d.expires_at, "exit": d.exit} for d in store.devices()]


def accounts(config: HubConfig, store: HubStore) -> list[Row]:
    """Each account's credits, highest balance first; members who never paid nor earned show zeros.
    `name` is the member's, OWNER/NAME for a device (it pays from an account of its own), or ID@HUB for
    a member of another hub."""
    found = store.accounts(config.hub_id())
    everyone = store.members()
    names = {d.id: d.label for d in store.devices()} | {m.id: m.name for m in everyone}
    seen = {a.account for a in found}
    found += [Account(m.id, 0, 0, 0, 0, 0) for m in everyone if not m.revoked and m.id not in seen]
    found.sort(key=lambda a: -a.balance)
    return [{"name": names.get(a.account, a.account), **asdict(a)} for a in found]


def peers(config: HubConfig, store: HubStore, live: list[Row]) -> list[Row]:
    """Each peering, with what the running hub says of its link (`live`, as Federation.status gives it;
    empty when the hub is not running) and what this hub holds of the peer's ledger."""
    local = config.hub_id()
    seen = {p["name"]: p for p in live}
    rows: list[Row] = []
    for peer in store.peers(local):
        row: Row = {"name": peer.name, "hub_id": peer.hub_id, "pending": peer.pending, "dials": peer.address,
                    "up": False, "rtt_ms": None, "routes": 0, "refused": {}, "bytes": 0}
        row.update(seen.get(peer.name, {}))
        kept = None if peer.hub_id is None else store.peer_ledger(local, peer.hub_id)
        row["ledger"] = None if kept is None else {
            "size": verify_checkpoint(kept.checkpoint).size, "checked": kept.checked,
            "holds": kept.conflict is None, "conflict": kept.conflict}
        rows.append(row)
    return rows


def verify_ledger(config: HubConfig, store: HubStore) -> Row:
    """The whole ledger checked from its first entry: {verified, entries, checkpoints, problem}."""
    local, hub_pubkey = config.hub_id(), public_bytes(config.hub_key())
    entries = store.ledger_size(local)
    problem: str | None
    try:
        checkpoints = [verify_checkpoint(signed) for signed in store.checkpoints(local)]
    except RecordError as exc:
        checkpoints, problem = [], f"a stored checkpoint does not hold: {exc}"
    else:
        found = check_entries(store.ledger_rows(local, 0, entries), checkpoints, hub_pubkey)
        problem = None if found is None else str(found)
    return {"verified": problem is None, "entries": entries, "checkpoints": len(checkpoints),
            "problem": problem}


def latest_checkpoint(config: HubConfig, store: HubStore) -> Row | None:
    """The ledger's newest signed checkpoint: {size, root (hex), time}; None before the first."""
    signed = store.latest_checkpoint(config.hub_id())
    if signed is None:
        return None
    checkpoint = verify_checkpoint(signed)
    return {"size": checkpoint.size, "root": checkpoint.root.hex(), "time": checkpoint.time}
