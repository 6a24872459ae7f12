"""Per-sender quota: at most ``policy.sender_rate_limit`` recipients per sender per hour.

In memory, per process (a sliding window of accept times): enough to stop a runaway
monitoring loop from texting a phone hundreds of times. The answer is temporary (450 4.7.1),
so a legitimate burst is delayed by the sending MTA, not lost.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from mailsms.policy import Refusal

WINDOW = 3600.0
RATE_LIMITED = Refusal(450, "4.7.1", "Sender rate limit reached, try again later")


class SenderRateRule:
    name = "rate"
    description = "recipients per sender per hour"

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.clock = clock
        self._seen: dict[str, collections.deque[float]] = {}

    def check(self, sender: str, pending: int = 0) -> Refusal | None:
        if not self.limit:
            return None
        times = self._window(sender.lower())
        return RATE_LIMITED if len(times) + pending >= self.limit else None

    def charge(self, sender: str, count: int) -> None:
        if self.limit:
            times = self._window(sender.lower())
            times.extend([self.clock()] * count)

    def _window(self, sender: str) -> collections.deque[float]:
        times = self._seen.setdefault(sender, collections.deque())
        cutoff = self.clock() - WINDOW
        while times and times[0] < cutoff:
            times.popleft()
        return times
