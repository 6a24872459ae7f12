"""A real SMTP server on 127.0.0.1:0 standing in for the smarthost, scriptable to refuse.

It records every transaction; ``script("451 4.3.0 busy")`` makes the next DATA answer that.
Tests wait on :meth:`Sink.wait_for` (an asyncio.Condition), never on sleeps.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str] = field(default_factory=list)

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


class Sink:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.replies: list[str] = []
        self.changed = asyncio.Condition()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    def script(self, *replies: str) -> None:
        self.replies.extend(replies)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.replies:
            return self.replies.pop(0)
        self.received.append(
            Received(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
                list(envelope.mail_options),
            )
        )
        async with self.changed:
            self.changed.notify_all()
        return "250 2.0.0 Ok: queued"

    async def start(self) -> Sink:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, decode_data=False, enable_SMTPUTF8=True, hostname="sink.test"),
            "127.0.0.1",
            0,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: len(self.received) >= count)
        return self.received

    def relay_settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "smarthost": f"127.0.0.1:{self.port}",
            "backoff_initial": "50ms",
            "backoff_max": "100ms",
            **extra,
        }
