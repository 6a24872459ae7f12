"""The development carrier: prints each SMS readably on standard output.

The default when no ``[[carrier]]`` is configured, so ``mailsms serve`` shows at once what
would have been sent. Every submit counts as delivered: there is no network behind it.
"""

from __future__ import annotations

import sys
from typing import TextIO

from mailsms.carriers.base import Carrier, CarrierHooks, CarrierSettings, OutboundSms, Submitted


class ConsoleCarrier(Carrier):
    def __init__(self, settings: CarrierSettings, stream: TextIO | None = None) -> None:
        super().__init__(settings)
        self.stream = stream

    async def start(self, hooks: CarrierHooks) -> None:
        return None

    async def submit(self, sms: OutboundSms) -> Submitted:
        out = self.stream or sys.stdout
        sender = sms.source_addr or "(default)"
        lines = [
            f"--- SMS {sms.message_id} to {sms.to} from {sender} "
            f"[{sms.encoding}, {len(sms.parts)} part(s)]"
        ]
        if len(sms.parts) == 1:
            lines.append(sms.parts[0].text)
        else:
            lines += [f"[{p.seq}/{len(sms.parts)}] {p.text}" for p in sms.parts]
        lines.append("---")
        out.write("\n".join(lines) + "\n")
        out.flush()
        return Submitted(tuple(f"{sms.message_id}.{p.seq}" for p in sms.parts), delivered=True)
