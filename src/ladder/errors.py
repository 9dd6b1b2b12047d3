"""The root of every error Ladder raises on purpose, and the kind the CLI prints as one line.

Catching `LadderError` catches what Ladder meant to raise, never a bug's
TypeError. `UserError` is a failure the user can act on (a bad config, an
unusable certificate, a store that cannot be read, a hub that refused us):
the `ladder` command prints it as `ladder: error: <message>` and exits 1,
without a traceback. This module imports nothing, so every layer, the
protocol core included, can derive its errors from these.
"""


class LadderError(Exception):
    """An error Ladder raises on purpose."""


class UserError(LadderError):
    """A failure printed by the CLI as one line, exit 1; its message says what to do."""
