"""A clock that moves only when a test moves it, for the limits that read time (rates, caps, backoff)."""


class FakeClock:
    """Call it for the time now (seconds, monotonic); `advance` moves it forward."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, "a monotonic clock never goes back"
        self.now += seconds
