"""The user's view of the exits: verified records, pinned keys, and the choice of exit.

The hub's directory is only a hint. Each entry must carry a record signed
by the exit itself (protocol/records.py); entries that do not verify are
set aside with the reason. The first time an exit carries a stream its
Noise key is pinned in pins.json; if the hub later hands out another key
for the same exit, the exit is refused loudly (trust on first use, as SSH
does with host keys).

An exit is never a candidate for a member it does not serve: its signed
record names the members it serves, and an exit that refused this member
anyway (its record predates that field, or it had not learnt our name yet)
is skipped for ten minutes, or until it signs a new record. Exits are
ranked by our own live streams on each (counted as they open and close),
then by how many members use each (the hub's count of channels to it, ours
included: it cannot see the streams inside), then by speed. Failures and
refusals age by a clock it is given (monotonic seconds).

The hub pushes the whole directory whenever it changes, so most of each push
is what the last one said: an entry whose signed fields (id, record,
signature, key) are the bytes already checked gets the same verdict again
without another signature check (it depends on nothing else). Only the
verdicts of the latest push are kept.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from ladder.config import write_file
from ladder.protocol.control import ExitEntry
from ladder.protocol.envelope import RecordError, b64
from ladder.protocol.records import ExitRecord, ServiceRecord, verify_exit_record

log = logging.getLogger(__name__)
FAILURE_MEMORY = 60.0  # a failed exit goes to the back of the line for this long
# An exit that refused us by policy is skipped this long (or until it signs a new record): its
# record may predate the members field, or it may not have learnt our name yet when it refused.
REFUSAL_MEMORY = 600.0

R = TypeVar("R")


class Signed(Protocol):
    """An entry of a hub's list: a member's signed record (ExitEntry, ServiceEntry)."""

    @property
    def id(self) -> str: ...

    @property
    def record(self) -> str: ...

    @property
    def signature(self) -> str: ...

    @property
    def pubkey(self) -> str: ...


class Verdicts(Generic[R]):
    """What each signed entry of the last list verified as: the record, or why it did not.

    The hub pushes whole lists, mostly what it pushed before; an entry whose signed
    bytes came last time is not verified again. `of()` each entry of a list, then
    `done()`: the verdicts of entries the list no longer carries are forgotten.
    """

    def __init__(self, verify: Callable[[dict], R]):
        self._verify = verify
        self._last: dict[tuple[str, str, str, str], R | str] = {}
        self._next: dict[tuple[str, str, str, str], R | str] = {}

    def of(self, entry: Signed) -> R | str:
        signed = (entry.id, entry.record, entry.signature, entry.pubkey)
        verdict = self._last.get(signed)
        if verdict is None:
            try:
                verdict = self._verify(dataclasses.asdict(entry))  # type: ignore[call-overload]
            except RecordError as exc:
                verdict = str(exc)
        self._next[signed] = verdict
        return verdict

    def done(self) -> None:
        self._last, self._next = self._next, {}

    def clear(self) -> None:
        self._last, self._next = {}, {}


class Directory:
    def __init__(self, pins_path: Path, own_id: str, own_name: str,
                 clock: Callable[[], float] = time.monotonic):
        self.pins_path = pins_path
        self.clock = clock
        self.own_id, self.own_name = own_id, own_name
        self.entries: list[ExitEntry] = []  # as the hub sent them, for status
        self.records: dict[str, ExitRecord] = {}  # verified, by exit id
        self.rejected: dict[str, str] = {}  # exit name or id → why it is refused
        self.local_load: dict[str, int] = {}  # our own open streams per exit id
        self.latency: dict[str, float] = {}  # smoothed open→accept time per exit id, seconds
        self.failed_at: dict[str, float] = {}  # when an exit last failed to carry a stream
        # exit id → (its record's issue time, when it refused)
        self.refused_me: dict[str, tuple[int, float]] = {}
        self._verdicts = Verdicts(verify_exit_record)  # the last push's
        try:
            self.pins: dict[str, str] = json.loads(pins_path.read_text())
        except (OSError, ValueError):
            self.pins = {}

    def update(self, entries: Iterable[ExitEntry]) -> None:
        self.entries = list(entries)
        self.records, rejected = {}, {}
        for entry in self.entries:
            label = entry.name or entry.id
            verdict = self._verdicts.of(entry)
            if isinstance(verdict, str):
                rejected[label] = f"{verdict}: the hub may be lying about exit {label}"
                continue
            record = verdict
            pinned = self.pins.get(record.id)
            if pinned is not None and pinned != b64(record.noise_key):
                rejected[label] = (
                    f"exit {label}'s key changed since it was first used: refusing it "
                    f"(the hub may be impersonating it; if {label} really changed its key, "
                    f"delete its line from {self.pins_path})"
                )
                continue
            self.records[record.id] = record
        self._verdicts.done()
        for label, reason in rejected.items():
            if self.rejected.get(label) != reason:
                log.warning("WARNING: %s", reason)
        self.rejected = rejected

    def clear(self) -> None:
        self.entries, self.records, self.rejected = [], {}, {}
        self._verdicts.clear()

    def candidates(self, choice: str) -> list[tuple[ExitEntry, ExitRecord]]:
        """Verified exits that --exit names (auto, a country, a name or an id) and that serve us,
        best first."""
        found = [(entry, record) for entry, record in self._matching(choice) if self.admits_me(record.id)]
        random.shuffle(found)  # ties go to a random exit, not always the first
        now = self.clock()

        def rank(pair):
            entry, record = pair
            failed = now - self.failed_at.get(record.id, -FAILURE_MEMORY) < FAILURE_MEMORY
            return failed, self.local_load.get(record.id, 0), entry.users, self.latency.get(record.id, 0.0)

        return sorted(found, key=rank)

    def observe(self, exit_id: str, seconds: float) -> None:
        """An exit answered an open in `seconds`: it is healthy; remember how fast."""
        previous = self.latency.get(exit_id)
        self.latency[exit_id] = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        self.failed_at.pop(exit_id, None)

    def failed(self, exit_id: str) -> None:
        self.failed_at[exit_id] = self.clock()

    def admits_me(self, exit_id: str) -> bool:
        """Whether the exit's signed policy serves this member, and it has not refused us since."""
        record = self.records[exit_id]
        issued, when = self.refused_me.get(exit_id, (None, 0.0))
        refused = issued == record.issued and self.clock() - when < REFUSAL_MEMORY
        return record.admits(self.own_name) and not refused

    def refused(self, exit_id: str) -> None:
        """The exit refused this member by policy: skip it for a while, or until it signs a new record."""
        record = self.records.get(exit_id)
        if record is not None:
            self.refused_me[exit_id] = record.issued, self.clock()

    def _matching(self, choice: str) -> list[tuple[ExitEntry, ExitRecord]]:
        """The verified exits other than ours that --exit `choice` names, whoever they serve."""
        found = []
        for entry in self.entries:
            record = self.records.get(entry.id)
            if record is None or record.id == self.own_id:
                continue
            if choice == "auto" or choice in (record.id, entry.name) or record.country == choice.upper():
                found.append((entry, record))
        return found

    def why_none(self, choice: str) -> str:
        if choice in self.rejected:
            return self.rejected[choice]
        if self.rejected and choice == "auto":
            return "; ".join(self.rejected.values())
        closed = [entry.name or record.id for entry, record in self._matching(choice)]
        if closed:
            return (f"the exits online for --exit {choice} ({', '.join(closed)}) serve listed members "
                    "only, not you")
        online = f"; online: {self.online()}" if self.entries else ""
        return f"no exit online matches --exit {choice}{online}"

    def online(self) -> str:
        """The verified exits other than ours, as `name (country)`, for messages."""
        return ", ".join(sorted(f"{entry.name or record.id} ({record.country})"
                                for entry, record in self._matching("auto"))) or "none"

    def pin(self, record: ExitRecord | ServiceRecord) -> None:
        """Pin a member's Noise key when a channel to it first opens: an exit's, or a publisher's."""
        if record.id not in self.pins:
            self.pins[record.id] = b64(record.noise_key)
            try:
                write_file(self.pins_path, json.dumps(self.pins, indent=1).encode(), 0o600)
            except OSError as exc:
                log.warning("cannot save %s: %s", self.pins_path, exc)

    def opened(self, exit_id: str, delta: int) -> None:
        self.local_load[exit_id] = max(0, self.local_load.get(exit_id, 0) + delta)
