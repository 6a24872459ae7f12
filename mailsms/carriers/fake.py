"""A scriptable carrier for tests: fail the next N submits, add latency, hold reports back.

Stands in for a carrier whose network cannot be reached from a test. Scripted from config
(``temporary_failures``, ``permanent_failures``, ``latency``, ``report``) or, in-process,
with :meth:`FakeCarrier.script`. It records every submit in ``submitted``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import Literal

from mailsms.carriers.base import Carrier, CarrierHooks, CarrierSettings, OutboundSms, Submitted
from mailsms.duration import Duration
from mailsms.errors import PermanentFailure, TemporaryFailure

Outcome = Literal["ok", "temporary", "permanent"]


class FakeSettings(CarrierSettings):
    latency: Duration = 0.0
    temporary_failures: int = 0
    permanent_failures: int = 0
    report: Literal["delivered", "none"] = "delivered"


class FakeCarrier(Carrier):
    Settings = FakeSettings

    def __init__(self, settings: CarrierSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, FakeSettings)
        self.latency = settings.latency
        self.report = settings.report
        scripted: list[Outcome] = ["temporary"] * settings.temporary_failures
        scripted += ["permanent"] * settings.permanent_failures
        self.outcomes: collections.deque[Outcome] = collections.deque(scripted)
        self.submitted: list[OutboundSms] = []
        self.submit_times: list[float] = []  # loop clock at each submit (rate-limit tests)
        self.attempts = 0
        self.hooks: CarrierHooks | None = None
        self._ids = itertools.count(1)
        self.in_flight = 0
        self.max_in_flight = 0
        self._changed = asyncio.Condition()

    def script(self, *outcomes: Outcome) -> None:
        """Queue outcomes for the next submits; after them every submit succeeds."""
        self.outcomes.extend(outcomes)

    async def wait_in_flight(self, n: int) -> None:
        """Wait until ``n`` submits are in progress at once (for tests: no sleeping)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight >= n)

    async def start(self, hooks: CarrierHooks) -> None:
        self.hooks = hooks

    async def submit(self, sms: OutboundSms) -> Submitted:
        self.attempts += 1
        self.submit_times.append(asyncio.get_running_loop().time())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        async with self._changed:
            self._changed.notify_all()
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            outcome = self.outcomes.popleft() if self.outcomes else "ok"
            if outcome == "temporary":
                raise TemporaryFailure("fake carrier: scripted temporary failure", "fake-temp")
            if outcome == "permanent":
                raise PermanentFailure("fake carrier: scripted permanent failure", "fake-perm")
            self.submitted.append(sms)
            ids = tuple(f"fake-{next(self._ids)}" for _ in sms.parts)
            return Submitted(ids, delivered=self.report == "delivered")
        finally:
            self.in_flight -= 1
