"""Numbers that opted out (STOP, a carrier's opt-out report, the operator) are not texted.

Read from the store at RCPT time, so every gateway process sharing a database honours an
opt-out the moment it is committed.
"""

from __future__ import annotations

from mailsms.policy import Refusal
from mailsms.store.base import Store

OPTED_OUT = Refusal(550, "5.7.1", "Recipient has opted out of SMS from this gateway")


class OptOutRule:
    name = "optout"
    description = "the recipient must not be on the opt-out list"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def check(self, number: str) -> Refusal | None:
        return OPTED_OUT if await self.store.opted_out(number) else None
