"""A clock that moves only when a test moves it, for the limits that read time (rates, caps, backoff),
and senders that honour a limit's waits in that clock's time."""

CHUNK = 16 * 1024  # what one read of a relay carries at most, as a relay hands it on


class FakeClock:
    """Call it for the time now (seconds, monotonic); `advance` moves it forward."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a monotonic clock never goes back"
        self.now += seconds


def send_for(seconds: float, clock: FakeClock, senders: dict[str, object]) -> dict[str, int]:
    """Each sender sends a chunk, then waits as long as the limit says before the next; bytes sent by each.

    `senders` maps a name to a function taking a byte count and returning the wait.
    """
    sent = dict.fromkeys(senders, 0)
    due = dict.fromkeys(senders, clock())
    end = clock() + seconds
    while True:
        name = min(due, key=due.get)
        if due[name] >= end:
            return sent
        clock.advance(due[name] - clock())
        sent[name] += CHUNK
        due[name] = clock() + senders[name](CHUNK)
