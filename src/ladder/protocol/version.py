"""Which wire protocol each side speaks, and the one line that says two cannot talk.

Every hub and agent speaks a range of protocol versions, from `OLDEST` to
`PROTOCOL`. The hub says its range and its release in its first message (the
welcome, or a peer hub's peer-welcome), and the side that dialled answers
with a `version` message of its own, so each side learns the other's range
before anything else is said. A message that says none is from release
0.1.0, the first, which spoke protocol 1 only: its welcome had no such
fields and its agents sent no `version` (they ignore one, as every Ladder
ignores what it does not know). Two ranges that overlap talk at the highest
version both speak; two that do not part with one line naming both releases
and who must upgrade.

A new protocol version is only for a change an older side would
misunderstand; a new message type or field is not one (control.py: unknown
types and fields are ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

from ladder import __version__

PROTOCOL = 1  # the newest protocol this code speaks
OLDEST = 1  # the oldest it still speaks
FIRST_RELEASE = "0.1.0"  # what a side that names no release runs


@dataclass(frozen=True, slots=True)
class Speaks:
    """One side's range of protocol versions and its release."""

    oldest: int
    newest: int
    release: str

    @classmethod
    def said(cls, oldest: int, newest: int, release: str) -> Speaks:
        """What a message's fields say; a message without them (release '') is the first release's."""
        return cls(oldest, newest, release or FIRST_RELEASE)


THIS = Speaks(OLDEST, PROTOCOL, __version__)


def mismatch(theirs: Speaks, we: str, they: str, ours: Speaks = THIS) -> str | None:
    """None if the two ranges meet; else one line naming both releases and which side must upgrade.

    `we` and `they` name the sides in the line ("this agent", "the hub at 203.0.113.9:443").
    """
    if max(ours.oldest, theirs.oldest) <= min(ours.newest, theirs.newest):
        return None
    older, newer = (we, they) if ours.newest < theirs.oldest else (they, we)
    return (f"{they} runs Ladder {theirs.release} (protocol {_span(theirs)}) and {we} runs Ladder "
            f"{ours.release} (protocol {_span(ours)}): they have no protocol in common; upgrade {older} "
            f"to the release {newer} runs or later")


def _span(side: Speaks) -> str:
    return str(side.newest) if side.oldest == side.newest else f"{side.oldest}-{side.newest}"
