"""The user's view of the exits: verified records, pinned keys, and the choice of exit.

The hub's directory is only a hint. Each entry must carry a record signed
by the exit itself (protocol/records.py); entries that do not verify are
set aside with the reason. The first time an exit carries a stream its
Noise key is pinned in pins.json; if the hub later hands out another key
for the same exit, the exit is refused loudly (trust on first use, as SSH
does with host keys).
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

from ladder.config import write_file
from ladder.protocol.records import ExitRecord, RecordError, b64, verify_exit_record

log = logging.getLogger(__name__)
FAILURE_MEMORY = 60.0  # a failed exit goes to the back of the line for this long


class Directory:
    def __init__(self, pins_path: Path, own_id: str):
        self.pins_path = pins_path
        self.own_id = own_id
        self.entries: list[dict] = []  # as the hub sent them, for status
        self.records: dict[str, ExitRecord] = {}  # verified, by exit id
        self.rejected: dict[str, str] = {}  # exit name or id → why it is refused
        self.local_load: dict[str, int] = {}  # our own open streams per exit id
        self.latency: dict[str, float] = {}  # smoothed open→accept time per exit id, seconds
        self.failed_at: dict[str, float] = {}  # when an exit last failed to carry a stream
        try:
            self.pins: dict[str, str] = json.loads(pins_path.read_text())
        except (OSError, ValueError):
            self.pins = {}

    def update(self, entries: list) -> None:
        self.entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)]
        self.records, rejected = {}, {}
        for entry in self.entries:
            label = str(entry.get("name") or entry["id"])
            try:
                record = verify_exit_record(entry)
            except RecordError as exc:
                rejected[label] = f"{exc}: the hub may be lying about exit {label}"
                continue
            pinned = self.pins.get(record.id)
            if pinned is not None and pinned != b64(record.noise_key):
                rejected[label] = (
                    f"exit {label}'s key changed since it was first used: refusing it "
                    f"(the hub may be impersonating it; if {label} really changed its key, "
                    f"delete its line from {self.pins_path})"
                )
                continue
            self.records[record.id] = record
        for label, reason in rejected.items():
            if self.rejected.get(label) != reason:
                log.warning("WARNING: %s", reason)
        self.rejected = rejected

    def clear(self) -> None:
        self.entries, self.records, self.rejected = [], {}, {}

    def candidates(self, choice: str) -> list[tuple[dict, ExitRecord]]:
        """Verified exits matching --exit (auto, a country code, a name or an id), least loaded first."""
        found = []
        for entry in self.entries:
            record = self.records.get(entry["id"])
            if record is None or record.id == self.own_id:
                continue
            if choice == "auto" or choice in (record.id, entry.get("name")) or record.country == choice.upper():
                found.append((entry, record))
        random.shuffle(found)  # ties go to a random exit, not always the first
        now = time.monotonic()

        def rank(pair):
            entry, record = pair
            failed = now - self.failed_at.get(record.id, -FAILURE_MEMORY) < FAILURE_MEMORY
            load = entry.get("streams", 0) + self.local_load.get(record.id, 0)
            return failed, load, self.latency.get(record.id, 0.0)  # least loaded, then fastest

        return sorted(found, key=rank)

    def observe(self, exit_id: str, seconds: float) -> None:
        """An exit answered an open in `seconds`: it is healthy; remember how fast."""
        previous = self.latency.get(exit_id)
        self.latency[exit_id] = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        self.failed_at.pop(exit_id, None)

    def failed(self, exit_id: str) -> None:
        self.failed_at[exit_id] = time.monotonic()

    def why_none(self, choice: str) -> str:
        if choice in self.rejected:
            return self.rejected[choice]
        if self.rejected and choice == "auto":
            return "; ".join(self.rejected.values())
        return f"no exit online matches --exit {choice}"

    def pin(self, record: ExitRecord) -> None:
        if record.id not in self.pins:
            self.pins[record.id] = b64(record.noise_key)
            try:
                write_file(self.pins_path, json.dumps(self.pins, indent=1).encode(), 0o600)
            except OSError as exc:
                log.warning("cannot save %s: %s", self.pins_path, exc)

    def opened(self, exit_id: str, delta: int) -> None:
        self.local_load[exit_id] = max(0, self.local_load.get(exit_id, 0) + delta)
