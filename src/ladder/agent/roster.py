"""The network's members as the hub lists them: member id → name.

The hub sends the whole list (`members`, in pieces when long) on every
link and one `member` when someone joins. Names are the hub's labels; ids
are what keys prove. The exit side reads names here to apply a policy
written with names, the services listing to show access lists, and
`ladder publish --members` to turn the names a member types into ids.
"""

from __future__ import annotations

from ladder.errors import LadderError
from ladder.protocol.control import ListAssembler, MemberJoined, Members

_BASE32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def is_member_id(text: str) -> bool:
    """Whether `text` has the shape of a member id (24 lower-case base32 characters)."""
    return len(text) == 24 and set(text) <= _BASE32


class UnknownMember(LadderError):
    """A name that is neither a known member's nor shaped like a member id."""

    def __init__(self, token: str):
        super().__init__(token)
        self.token = token


class Roster:
    """Who is in the network, by id, as the hub last said."""

    def __init__(self, names: dict[str, str] | None = None):
        self.names: dict[str, str] = dict(names or {})  # active member id → name
        self._pieces = ListAssembler("members")

    def new_link(self) -> None:
        """Pieces of a list that came on the last link will never be completed."""
        self._pieces = ListAssembler("members")

    def take(self, message: Members | MemberJoined) -> None:
        """A piece of `members` (the whole list once the last one came), or one `member` who joined."""
        if isinstance(message, MemberJoined):
            self.names[message.id] = message.name
            return
        members = self._pieces.add(message)
        if members is not None:
            self.names = {member.id: member.name for member in members}

    def name_of(self, member_id: str) -> str:
        """The member's name, or its id while the hub has not named it."""
        return self.names.get(member_id, member_id)

    def owner_of(self, member_id: str) -> tuple[str, str]:
        """Whom an exit's policy counts `member_id` as: (id, name) of its owner for a device the hub
        lists as `owner/name`, else its own, so that a member's devices share its slots and rates."""
        name = self.name_of(member_id)
        owner, slash, _ = name.partition("/")
        if not slash:
            return member_id, name
        for other_id, other_name in self.names.items():
            if other_name == owner:
                return other_id, owner
        return member_id, name  # the owner is not listed (yet): the device on its own, by its label

    def resolve(self, text: str) -> dict[str, str]:
        """Comma-separated member names or ids → {id: name}; raises UnknownMember.

        An id nobody has named yet is taken as it is: the member may have
        joined after the agent last heard the list.
        """
        by_name = {name: mid for mid, name in self.names.items()}
        out = {}
        for token in filter(None, (t.strip().lower() for t in text.split(","))):
            if token in by_name:
                out[by_name[token]] = token
            elif token in self.names:
                out[token] = self.names[token]
            elif is_member_id(token):
                out[token] = token
            else:
                raise UnknownMember(token)
        return out
