"""A carrier that appends each SMS to a JSON-lines file: for tests, demos and audits.

One object per submitted message: ``id``, ``to``, ``from``, ``text``, ``encoding``,
``parts`` (each ``seq``, ``text``, ``udh`` hex, ``size``), plus ``attempt``. The line is
written and flushed before submit returns, so a gateway killed afterwards has still "sent"
it; ``fsync = true`` also survives a power cut.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from mailsms.carriers.base import Carrier, CarrierHooks, CarrierSettings, OutboundSms, Submitted


class FileSettings(CarrierSettings):
    path: str = "var/outbox.jsonl"
    fsync: bool = False


class FileCarrier(Carrier):
    Settings = FileSettings

    def __init__(self, settings: CarrierSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, FileSettings)
        self.path = Path(settings.path)
        self.fsync = settings.fsync
        self._fd: int | None = None
        self._lock = asyncio.Lock()

    async def start(self, hooks: CarrierHooks) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    async def stop(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def submit(self, sms: OutboundSms) -> Submitted:
        record = {
            "id": sms.message_id,
            "to": sms.to,
            "from": sms.source_addr,
            "text": sms.text,
            "encoding": sms.encoding,
            "attempt": sms.attempt,
            "parts": [
                {"seq": p.seq, "text": p.text, "udh": p.udh.hex(), "size": p.size}
                for p in sms.parts
            ],
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        async with self._lock:
            if self._fd is None:
                raise RuntimeError("file carrier is not started")
            # One write(2) of a whole line to an O_APPEND file: never interleaved, never torn
            # by a kill -9 of this process. A few µs; fsync, when asked for, goes to a thread.
            os.write(self._fd, line)
            if self.fsync:
                await asyncio.to_thread(os.fsync, self._fd)
        return Submitted(tuple(f"{sms.message_id}.{p.seq}" for p in sms.parts), delivered=True)
