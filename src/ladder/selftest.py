"""Self-tests against published test vectors: the Noise vector runner.

``run_noise_vectors`` reads a file in the layout of the cacophony and snow
test vectors (``{"vectors": [...]}`` or a bare list, hex-encoded fields) and
replays every vector through ``ladder.protocol.noise``: it plays both the
initiator and the responder with the vector's fixed keys, compares each
message with the expected ciphertext, checks that the other side reads back
the payload, and compares the final handshake hash. Vectors for protocols
the module does not support (for instance DH 448) are skipped, not failed.

``main`` is what the ``ladder`` command calls: it prints one line per
failure, then ``N passed, M failed, K skipped``, and returns the exit status.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.errors import LadderError
from ladder.protocol.noise import (
    HandshakeState,
    NoiseError,
    NoiseUnsupported,
    TransportCipher,
    parse_protocol_name,
)

__all__ = ["VectorFileError", "VectorResult", "VectorReport", "run_noise_vectors", "main"]


class VectorFileError(LadderError):
    """The vector file cannot be used at all: missing, unreadable, not JSON."""


@dataclass(frozen=True)
class VectorResult:
    """What happened to one vector."""

    index: int
    protocol_name: str
    status: str  # "passed", "failed" or "skipped"
    detail: str = ""  # why it failed or was skipped
    handshake_hash_checked: bool = False


@dataclass
class VectorReport:
    """Counts, one line per failure, and the result of every vector."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    results: list[VectorResult] = field(default_factory=list)

    def add(self, result: VectorResult) -> None:
        self.results.append(result)
        if result.status == "passed":
            self.passed += 1
        elif result.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append(f"{result.protocol_name} #{result.index}: {result.detail}")

    @property
    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


class _Mismatch(LadderError):
    """A vector's expectation was not met; the message says what differed."""


def _short(data: bytes, limit: int = 40) -> str:
    text = data.hex()
    return text if len(text) <= limit * 2 else text[: limit * 2] + "..."


def _hex(vector: dict, key: str) -> bytes | None:
    value = vector.get(key)
    if value is None:
        return None
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise _Mismatch(f"field {key!r} is not a hex string") from None


def _psks(vector: dict, key: str) -> list[bytes]:
    values = vector.get(key) or []
    try:
        return [bytes.fromhex(v) for v in values]
    except (TypeError, ValueError):
        raise _Mismatch(f"field {key!r} is not a list of hex strings") from None


def _load(path: str | Path) -> list[Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VectorFileError(f"vector file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VectorFileError(f"cannot read vector file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VectorFileError(
            f"vector file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("vectors"), list):
        return data["vectors"]
    if isinstance(data, list):
        return data
    raise VectorFileError(f"vector file {path} holds neither a list nor an object with a 'vectors' list")


def _run_vector(vector: dict) -> bool:
    """Replay one vector; raise _Mismatch on the first difference.

    Returns whether a handshake hash was checked.
    """
    protocol = parse_protocol_name(vector["protocol_name"])  # NoiseUnsupported -> skip
    pattern = protocol.pattern

    def side(prefix: str, initiator: bool) -> HandshakeState:
        return HandshakeState.initialize(
            protocol,
            initiator,
            _hex(vector, f"{prefix}_prologue") or b"",
            s=_hex(vector, f"{prefix}_static"),
            e=_hex(vector, f"{prefix}_ephemeral"),
            rs=_hex(vector, f"{prefix}_remote_static"),
            psks=_psks(vector, f"{prefix}_psks"),
        )

    try:
        initiator, responder = side("init", True), side("resp", False)
    except NoiseError as exc:
        raise _Mismatch(f"cannot initialize: {exc}") from None
    handshake_len = len(pattern.messages)
    transports: tuple[TransportCipher, TransportCipher] | None = None
    hash_checked = False

    messages = vector.get("messages")
    if not isinstance(messages, list):
        raise _Mismatch("no 'messages' list")
    for i, message in enumerate(messages):
        payload = _hex(message, "payload") or b""
        expected = _hex(message, "ciphertext")
        from_initiator = pattern.sender_of(i) == "initiator"
        who = "initiator" if from_initiator else "responder"
        try:
            if i < handshake_len:
                writer, reader = (initiator, responder) if from_initiator else (responder, initiator)
                got = writer.write_message(payload)
                if got != expected:
                    raise _Mismatch(
                        f"message {i} ({who}, handshake): ciphertext expected {_short(expected or b'')}, "
                        f"got {_short(got)}"
                    )
                read = reader.read_message(got)
            else:
                if transports is None:
                    transports = (
                        TransportCipher.from_handshake(initiator),
                        TransportCipher.from_handshake(responder),
                    )
                sender, receiver = transports if from_initiator else transports[::-1]
                sent = sender.encrypt(payload)
                got = b"".join(sent)
                if len(sent) != 1 or got != expected:
                    raise _Mismatch(
                        f"message {i} ({who}, transport): ciphertext expected {_short(expected or b'')}, "
                        f"got {_short(got)}"
                    )
                read = b"".join(receiver.decrypt(m) for m in sent)
        except NoiseError as exc:
            raise _Mismatch(f"message {i} ({who}): {type(exc).__name__}: {exc}") from None
        if read != payload:
            raise _Mismatch(
                f"message {i} ({who}): payload read back as {_short(read)}, sent {_short(payload)}"
            )

        if i + 1 == handshake_len:
            hash_checked = _check_handshake_hash(vector, initiator, responder)

    if len(messages) < handshake_len and vector.get("handshake_hash") is not None:
        raise _Mismatch(f"only {len(messages)} messages; the handshake needs {handshake_len}")
    return hash_checked


def _check_handshake_hash(vector: dict, initiator: HandshakeState, responder: HandshakeState) -> bool:
    if initiator.handshake_hash != responder.handshake_hash:
        raise _Mismatch(
            f"handshake hash differs between initiator {_short(initiator.handshake_hash)} "
            f"and responder {_short(responder.handshake_hash)}"
        )
    expected = _hex(vector, "handshake_hash")
    if expected is None:
        return False
    if initiator.handshake_hash != expected:
        raise _Mismatch(
            f"handshake hash expected {_short(expected)}, got {_short(initiator.handshake_hash)}"
        )
    return True


def run_noise_vectors(path: str | Path) -> VectorReport:
    """Replay every vector in ``path``; raises VectorFileError if the file is unusable."""
    report = VectorReport()
    for index, vector in enumerate(_load(path)):
        name = vector.get("protocol_name", "?") if isinstance(vector, dict) else "?"
        if not isinstance(vector, dict) or not isinstance(name, str):
            detail = "vector is not an object with a protocol_name"
            report.add(VectorResult(index, str(name), "failed", detail))
            continue
        try:
            checked = _run_vector(vector)
        except NoiseUnsupported as exc:
            report.add(VectorResult(index, name, "skipped", str(exc)))
        except _Mismatch as exc:
            report.add(VectorResult(index, name, "failed", str(exc)))
        else:
            report.add(VectorResult(index, name, "passed", handshake_hash_checked=checked))
    return report


def main(path: str | Path, out: Callable[[str], Any] = print) -> int:
    """Run the vectors in ``path`` and print the outcome.

    Exit status: 0 if nothing failed and something passed, 1 otherwise, 2 if
    the file could not be read.
    """
    try:
        report = run_noise_vectors(path)
    except VectorFileError as exc:
        out(f"error: {exc}")
        return 2
    for line in report.failures:
        out(line)
    out(report.summary)
    return 0 if report.failed == 0 and report.passed > 0 else 1


if __name__ == "__main__":  # python -m ladder.selftest VECTORS.json
    if len(sys.argv) != 2:
        print("usage: python -m ladder.selftest VECTORS.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
