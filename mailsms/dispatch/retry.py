"""When to try a temporarily failed message again, and when to give up.

A pure function of the attempt count, the message's deadline and the clock, so that the
schedule is table-tested rather than slept through. Backoff is exponential with "equal
jitter" (half the delay fixed, half a uniform draw), which spreads a burst of failures from
one carrier outage instead of retrying them in lock-step, yet never retries at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mailsms.model import State


@dataclass(frozen=True, slots=True)
class Retry:
    at: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    state: State
    reason: str


RetryDecision = Retry | GiveUp


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    initial: float
    maximum: float

    def backoff(self, attempts: int, rand: float) -> float:
        """Delay before attempt ``attempts + 1``: half fixed, half jitter, capped."""
        cap: float = min(self.maximum, self.initial * 2.0 ** max(0, attempts - 1))
        return cap / 2 + cap / 2 * rand

    def decide(
        self, attempts: int, expires_at: float, now: float, rand: float | None = None
    ) -> RetryDecision:
        """Retry at a time before the deadline, or give up with the terminal state."""
        if attempts >= self.max_attempts:
            return GiveUp(State.FAILED, f"gave up after {attempts} attempts")
        at = now + self.backoff(attempts, random.random() if rand is None else rand)
        if at >= expires_at:
            return GiveUp(State.EXPIRED, "no attempt left before the message's maximum age")
        return Retry(at)
