"""Credits at the hub: receipts checked against the channels it spliced, recorded in its ledger.

Each channel the hub splices is remembered (`Relayed`) with the bytes it
carried each way, until a while after it closed. An exit hands the hub the
receipts its users signed (agent/credits.py); the hub checks each against
that channel (protocol/receipts.py: the payer's signature, seq and counters
that only grow, nothing beyond what was relayed) and records the growth in
its ledger (store: table `ledger`; protocol/ledger.py):

- both members here: one "transfer" entry, the payer's credit limit applied;
- the payer at another hub: the receipt goes back along the path it came,
  each hub checking it against its own splice, to the payer's hub, which
  records a "debit" (its limit, which it alone knows, applied) and answers
  `settled` with the amount; that answer goes forward along the path to the
  exit's hub, which records a "credit" of that amount. So a credit never
  appears without the debit it moves.

Every CHECKPOINT_EVERY seconds that the ledger grew the hub signs a
checkpoint of its Merkle log with its own key, and shows it to each peer hub
(`ledger-head`) with a consistency proof from the checkpoint that peer said
it holds (`ledger-seen`, at every link up); the peer keeps the newest that
held, and keeps the first that did not as evidence (the store's
peer_checkpoints; `ladder hub peers` shows both). Members ask for theirs
(`answer`: their account, a page of their entries with inclusion proofs,
a consistency proof from the checkpoint they saw last). Exits hear the
balances of the members using them (`standing`), and every member its own
account (`balance`), every STANDING_EVERY seconds when it changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.agent.credits import RefusalLog
from ladder.errors import LadderError
from ladder.protocol import control
from ladder.protocol.envelope import RecordError
from ladder.protocol.ledger import STALE, Checkpoint, Entry, check_head, sign_checkpoint, verify_checkpoint
from ladder.protocol.merkle import MerkleTree
from ladder.protocol.receipts import Receipt, ReceiptChecker, ReceiptRefused, channel_id, verify_receipt
from ladder.store.hubdb import Account, HubStore, Member, StoreError

from .ports import MemberPort, PeerPort, Port, Splice

log = logging.getLogger(__name__)
GRACE = 120.0  # seconds a closed channel's record waits for its last receipts
CHECKPOINT_EVERY = 10.0
STANDING_EVERY = 5.0
PAGE = 16  # entries with proofs in one credits answer (a control message holds about 60 KB)
PeerMessage = control.Receipts | control.Settled | control.LedgerSeen | control.LedgerHead


@dataclass(eq=False)
class Relayed:
    """One spliced channel, as credits need it."""

    splice: Splice
    payer: str  # the payer's account: a member's (or device's) id here, or "" (another hub's member)
    checker: ReceiptChecker
    recorded: dict[str, int] = field(default_factory=dict)  # kind → received+sent of the last recorded
    closed_at: float | None = None

    @property
    def local_exit(self) -> bool:
        return isinstance(self.splice.target, MemberPort)


def _envelope(message: control.Envelope | control.SettledEntry) -> dict[str, str]:
    return {"record": message.record, "signature": message.signature, "pubkey": message.pubkey}


class Credits:
    def __init__(self, store: HubStore, key: Ed25519PrivateKey, hub_id: str, limit: int | None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.store = store
        self.key = key
        self.id = hub_id
        self.limit = limit
        self.clock, self.wall = clock, wall
        self.relayed: dict[str, Relayed] = {}  # channel id → its record
        self.refused = 0  # receipts, settlements and peers' checkpoints refused: exact, on /metrics
        self._refused_receipts = RefusalLog(log, "receipt", clock)
        self._refused_checkpoints = RefusalLog(log, "checkpoint", clock)
        self.tree = MerkleTree(store.ledger_leaves(hub_id))
        latest = store.latest_checkpoint(hub_id)
        self._checkpointed = len(self.tree) if latest is not None else -1
        self._last_checkpoint = self._last_told = -CHECKPOINT_EVERY
        self._told: dict[str, tuple] = {}  # port id → what it last heard (balance, or standing)
        self._shown: dict[PeerPort, int] = {}  # peer link → the size of this hub's log it holds
        self._greeted: set[PeerPort] = set()  # peer links told what this hub holds of theirs

    # --------------------------------------------------------- the switch

    def spliced(self, splice: Splice) -> Callable[[], None]:
        """Remember a channel (Ports calls this); returns what to call when it closed."""
        # A device pays from an account of its own: its receipts are signed with its key, as the log shows.
        payer = "" if isinstance(splice.source, PeerPort) else splice.source.id
        try:
            cid = channel_id(splice.message1)
        except ValueError:
            return lambda: None  # not a channel the agents open: nothing to pay for
        relayed = Relayed(splice, payer, ReceiptChecker(splice.source_id, splice.target_id, cid))
        self.relayed[cid] = relayed

        def closed() -> None:
            relayed.closed_at = self.clock()

        return closed

    # --------------------------------------------------------- receipts

    def from_exit(self, port: MemberPort, message: control.Receipts) -> None:
        """Receipts an exit (or publisher) of this hub hands in."""
        for item in message.receipts:
            checked = self._check(item, port)
            if checked is None:
                continue
            receipt, relayed = checked
            if relayed.payer:
                self._record("transfer", relayed.payer, port.id, receipt, relayed)
            else:
                self._send(relayed.splice.source, control.Receipts((item,), hub=self.id))

    def from_peer(self, port: PeerPort, message: PeerMessage) -> None:
        """Receipts coming back from a peer towards the payer's hub, settlements going on towards the
        exit's, and what the two hubs see of each other's ledgers."""
        if isinstance(message, control.LedgerSeen):
            self._head_to(port, message.size)
            return
        if isinstance(message, control.LedgerHead):
            self._peer_head(port, message)
            return
        if isinstance(message, control.Receipts):
            for item in message.receipts:
                checked = self._check(item, port)
                if checked is None:
                    continue
                receipt, relayed = checked
                if not relayed.payer:
                    self._send(relayed.splice.source, control.Receipts((item,), hub=message.hub))
                    continue
                payee = f"{receipt.exit}@{message.hub}"
                entry = self._record("debit", relayed.payer, payee, receipt, relayed)
                if entry is not None:
                    self._send(port, control.Settled((control.SettledEntry(**_envelope(item),
                                                                            amount=entry.amount),)))
            return
        for settled in message.entries:
            try:
                receipt = verify_receipt(_envelope(settled))
            except ReceiptRefused:
                self.refused += 1
                continue
            on = self.relayed.get(receipt.channel)
            if on is None or on.splice.source is not port:
                self.refused += 1
            elif on.local_exit:
                self._record("credit", f"{receipt.payer}@{receipt.hub}", receipt.exit, receipt, on,
                             amount=settled.amount)
            else:
                self._send(on.splice.target, control.Settled((settled,)))

    def _check(self, item: control.Envelope, port: Port) -> tuple[Receipt, Relayed] | None:
        """The receipt, if it holds for a channel this hub spliced towards `port`."""
        try:
            receipt = verify_receipt(_envelope(item))
            relayed = self.relayed.get(receipt.channel)
            if relayed is None or relayed.splice.target is not port:
                raise ReceiptRefused("no such channel towards the sender")
            splice = relayed.splice
            relayed.checker.check(receipt, splice.far_end.carried, splice.opener_end.carried)
        except ReceiptRefused as exc:
            self.refused += 1
            self._refused_receipts.refused(port.label, exc)
            return None
        return receipt, relayed

    def _record(self, kind: str, payer: str, payee: str, receipt: Receipt, relayed: Relayed,
                amount: int | None = None) -> Entry | None:
        carried = receipt.carried - relayed.recorded.get(kind, 0)
        if carried <= 0:
            return None  # pings, padding: nothing the payer wanted
        try:
            entry = self.store.ledger_append(self.id, kind, payer, payee, carried, receipt.channel,
                                             receipt.seq, receipt.envelope, int(self.wall()), self.limit,
                                             amount)
        except StoreError as exc:
            log.warning("cannot record a receipt: %s", exc)
            return None
        relayed.recorded[kind] = receipt.carried
        return entry

    def _send(self, port: Port, message: control.ControlMessage) -> None:
        if not port.link.closed:
            port.link.send_control(message)

    # ------------------------------------------------------------ ticks

    def tick(self, ports: list[MemberPort], peers: list[PeerPort]) -> None:
        """Every second or so: forget long-closed channels, greet new peer links, sign a checkpoint, tell
        members and exits."""
        now = self.clock()
        self._greet(peers)
        self._refused_receipts.flush()
        self._refused_checkpoints.flush()
        for cid, relayed in list(self.relayed.items()):
            if relayed.closed_at is not None and now - relayed.closed_at > GRACE:
                del self.relayed[cid]
        if now - self._last_checkpoint >= CHECKPOINT_EVERY:
            self._last_checkpoint = now
            self.checkpoint()
        if now - self._last_told >= STANDING_EVERY:
            self._last_told = now
            self._tell(ports)

    def checkpoint(self) -> dict[str, str] | None:
        """Sign a checkpoint if the ledger grew since the last; the newest checkpoint. One the store
        cannot keep (a full disk) is still given out, and signed again to be kept at the next tick."""
        self._sync()
        if len(self.tree) != self._checkpointed:
            envelope = sign_checkpoint(self.key, len(self.tree), self.tree.root(), int(self.wall()))
            try:
                self.store.add_checkpoint(self.id, len(self.tree), int(self.wall()), envelope)
            except StoreError as exc:  # a full disk, say: the signed head holds all the same
                log.warning("cannot keep a checkpoint: %s", exc)
                return envelope
            self._checkpointed = len(self.tree)
            for port, held in list(self._shown.items()):
                self._head_to(port, held)
            return envelope
        return self.store.latest_checkpoint(self.id)

    def _sync(self) -> None:
        """The tree catches up with the store (other hub processes on one database append too)."""
        for leaf in self.store.ledger_leaves(self.id, len(self.tree)):
            self.tree.append(leaf)

    def _tell(self, ports: list[MemberPort]) -> None:
        using: dict[str, set[str]] = {}  # exit id → accounts of this hub's members using it
        for relayed in self.relayed.values():
            if relayed.closed_at is None and relayed.payer and relayed.local_exit:
                using.setdefault(relayed.splice.target_id, set()).add(relayed.payer)
        for port in ports:
            account = self.store.account(self.id, port.id)
            balance = control.Balance(account.balance, account.earned, account.spent, account.month_earned,
                                      account.month_spent, self.limit or 0)
            members = tuple(control.StandingEntry(a, self.store.account(self.id, a).balance)
                            for a in sorted(using.get(port.id, ())))
            said = (balance, members)
            if self._told.get(port.id) != said:
                self._told[port.id] = said
                port.link.send_control(balance)
                if members:
                    port.link.send_control(control.Standing(self.limit or 0, members))

    # ------------------------------------------------------ peers' ledgers

    def _greet(self, peers: list[PeerPort]) -> None:
        """A peer link new since the last tick hears the size of its ledger this hub holds."""
        up = set(peers)
        self._shown = {port: held for port, held in self._shown.items() if port in up}
        self._greeted &= up
        for port in peers:
            if port not in self._greeted:
                self._greeted.add(port)
                held = self._held(port.id)
                self._send(port, control.LedgerSeen(0 if held is None else held.size))

    def _head_to(self, port: PeerPort, since: int) -> None:
        """Show a peer this hub's newest checkpoint, proved consistent with the one of size `since`."""
        envelope = self.checkpoint()
        assert envelope is not None
        size = verify_checkpoint(envelope).size
        proof = self.tree.consistency_proof(since, size) if 0 < since <= size else []
        hashes = tuple(h.hex() for h in proof)
        self._send(port, control.LedgerHead(control.Envelope(**envelope), since, hashes))
        self._shown[port] = size

    def _held(self, hub_id: str) -> Checkpoint | None:
        kept = self.store.peer_ledger(self.id, hub_id)
        return None if kept is None else verify_checkpoint(kept.checkpoint)

    def _peer_head(self, port: PeerPort, message: control.LedgerHead) -> None:
        """A peer's newest checkpoint: kept if it extends the one held, evidence if it cannot."""
        try:
            head = verify_checkpoint(_envelope(message.checkpoint))
            if head.hub != port.id:
                raise RecordError("it is another hub's checkpoint")
            held = self._held(port.id)
            why = check_head(held, head, message.since, [bytes.fromhex(h) for h in message.consistency])
            if why is None:
                self.store.keep_peer_checkpoint(self.id, port.id, head.envelope, self.wall())
            elif why == STALE:
                assert held is not None
                self._send(port, control.LedgerSeen(held.size))
            else:
                log.warning("%s shows a ledger that cannot be the one it showed before: %s", port.label, why)
                self.store.peer_conflict(self.id, port.id, head.envelope, why, self.wall())
        except RecordError as exc:
            self.refused += 1
            self._refused_checkpoints.refused(port.label, exc)
        except StoreError as exc:
            log.warning("cannot keep the checkpoint of %s: %s", port.label, exc)

    # ---------------------------------------------------------- members

    def answer(self, member: Member, request: control.CreditsRequest) -> control.Credits:
        """A member's credits-request: its account, entries with proofs, the log's consistency."""
        envelope = self._checkpoint_of(request.at) if request.at else self.checkpoint()
        assert envelope is not None  # checkpoint() signs one of the log as it is, empty or not
        size = request.at or len(self.tree)
        consistency: tuple[str, ...] = ()
        if 0 < request.since <= size:
            consistency = tuple(h.hex() for h in self.tree.consistency_proof(request.since, size))
        entries = [e for e in self.store.ledger_entries_of(self.id, member.id, limit=100_000)
                   if e.index < size]
        page = entries[request.start:request.start + PAGE]
        items = tuple(control.LedgerItem(e.index, e.data().decode(),
                                         tuple(h.hex() for h in self.tree.inclusion_proof(e.index, size)))
                      for e in page)
        account: Account = self.store.account(self.id, member.id)
        return control.Credits(account.balance, account.earned, account.spent, account.month_earned,
                               account.month_spent, self.limit or 0, control.Envelope(**envelope),
                               consistency, len(entries), request.start, items)

    def _checkpoint_of(self, size: int) -> dict[str, str]:
        for envelope in self.store.checkpoints(self.id):
            if verify_checkpoint(envelope).size == size:
                return envelope
        raise LadderError(f"this hub signed no checkpoint of size {size}")
