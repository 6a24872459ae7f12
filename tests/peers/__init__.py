"""Real peers started by the tests (SMSCs written by others), and small helpers around them.

A test that needs a peer which is not installed calls :func:`missing_peer`: it skips, or
fails when ``MAILSMS_REQUIRE_PEERS=1`` (CI sets it, so a missing peer cannot pass).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest


def missing_peer(reason: str) -> None:
    if os.environ.get("MAILSMS_REQUIRE_PEERS") == "1":
        pytest.fail(f"required peer missing: {reason}")
    pytest.skip(reason)


class Recorder:
    """CarrierHooks that record what a driver hands over; ``fail`` makes the next calls raise."""

    def __init__(self) -> None:
        self.inbound_sms: list[Any] = []
        self.reports: list[Any] = []
        self.fail = 0
        self._changed = asyncio.Condition()

    async def _record(self, into: list[Any], item: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("store unavailable (scripted)")
        async with self._changed:
            into.append(item)
            self._changed.notify_all()

    async def inbound(self, sms: Any) -> None:
        await self._record(self.inbound_sms, sms)

    async def delivery_report(self, report: Any) -> None:
        await self._record(self.reports, report)

    async def wait(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)


def smpp_carrier(port: int, **extra: Any) -> dict[str, Any]:
    """The ``[[carrier]]`` entry the gateway tests use for a harness SMSC on ``port``."""
    return {
        "name": "smsc",
        "type": "smpp",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "acme",
        "password": "secret",
        "from": "ACME",
        "reconnect_min": "50ms",
        **extra,
    }
