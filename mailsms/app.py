"""The composition root: builds every part from the settings, starts and stops them in order.

Start order follows the data: store (migrations), carriers, dispatcher, then the listeners
(HTTP, SMTP, LMTP) last, so nothing is accepted before it can be stored and sent. Stop order
is the reverse: stop accepting, let in-flight work finish or release it, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from mailsms.address import mask
from mailsms.carriers.base import (
    Carrier,
    CarrierHealth,
    DeliveryReport,
    InboundSms,
    ReportStatus,
    carrier_class,
)
from mailsms.config import Settings, split_listen
from mailsms.dispatch.routing import Router
from mailsms.dispatch.worker import Dispatcher
from mailsms.intake.accept import Intake
from mailsms.intake.smtp import start_server
from mailsms.model import PartState
from mailsms.store import SqlStore, open_store
from mailsms.web.app import create_app
from mailsms.web.metrics import Metrics

log = logging.getLogger("mailsms.app")

_REPORT_PART_STATE = {
    ReportStatus.DELIVERED: PartState.DELIVERED,
    ReportStatus.FAILED: PartState.FAILED,
    ReportStatus.EXPIRED: PartState.EXPIRED,
}


@dataclass
class Listening:
    """Where the gateway actually listens (ports resolved when configured as 0)."""

    smtp: tuple[str, int] | None = None
    lmtp: tuple[str, int] | str | None = None
    http: tuple[str, int] | None = None
    servers: list[asyncio.base_events.Server] = field(default_factory=list)


class Gateway:
    """Everything ``mailsms serve`` runs, in one object tests can start in-process."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        carriers: dict[str, Carrier] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics()
        self.store: SqlStore = open_store(settings.store.url)
        self.carriers = (
            carriers
            if carriers is not None
            else {c.name: carrier_class(c.type)(c) for c in settings.carriers}
        )
        self.dispatcher = Dispatcher(
            self.store,
            self.carriers,
            Router(settings.carriers),
            settings.dispatch,
            self.metrics,
            clock,
        )
        self.intake = Intake(settings, self.store, self.metrics, self.dispatcher.wake, clock)
        self.listening = Listening()
        self._runner: web.AppRunner | None = None
        self._started: list[Carrier] = []

    async def start(self) -> None:
        await self.store.open()
        try:
            for carrier in self.carriers.values():
                await carrier.start(_Hooks(self, carrier.name))
                self._started.append(carrier)
            await self.dispatcher.start()
            await self._listen()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "gateway started",
            extra={"event": "started", "smtp": self.listening.smtp, "http": self.listening.http},
        )

    async def _listen(self) -> None:
        s = self.settings
        if s.http.listen:
            self._runner = web.AppRunner(create_app(self), access_log=None)
            await self._runner.setup()
            host, port = split_listen(s.http.listen)
            site = web.TCPSite(self._runner, host, port)
            await site.start()
            self.listening.http = tuple(self._runner.addresses[0][:2])
        for listen, lmtp in ((s.smtp.listen, False), (s.smtp.lmtp_listen, True)):
            if not listen:
                continue
            server = await start_server(
                self.intake,
                self.metrics,
                listen,
                lmtp=lmtp,
                hostname=s.gateway.hostname,
                max_size=s.smtp.max_message_size,
                timeout=s.smtp.timeout,
            )
            self.listening.servers.append(server)
            name = server.sockets[0].getsockname()
            where = name[:2] if isinstance(name, tuple) else name
            if lmtp:
                self.listening.lmtp = where
            else:
                self.listening.smtp = where

    async def stop(self) -> None:
        """Stop accepting, finish or release in-flight work, close everything. Idempotent."""
        for server in self.listening.servers:
            server.close()
        for server in self.listening.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.listening.servers.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.dispatcher.stop()
        for carrier in reversed(self._started):
            try:
                await carrier.stop()
            except Exception:
                log.exception(
                    "carrier stop failed", extra={"event": "stop_failed", "carrier": carrier.name}
                )
        self._started.clear()
        await self.store.close()
        log.info("gateway stopped", extra={"event": "stopped"})

    def health(self) -> dict[str, CarrierHealth]:
        return {name: c.health() for name, c in self.carriers.items()}


class _Hooks:
    """What a carrier driver calls back into (the :class:`CarrierHooks` protocol)."""

    def __init__(self, gateway: Gateway, carrier: str) -> None:
        self.gateway = gateway
        self.carrier = carrier

    async def inbound(self, sms: InboundSms) -> None:
        id, new = await self.gateway.store.record_inbound(sms, self.gateway.clock())
        log.info(
            "inbound sms",
            extra={
                "event": "inbound",
                "id": id,
                "carrier": self.carrier,
                "from": mask(sms.from_),
                "new": new,
            },
        )

    async def delivery_report(self, report: DeliveryReport) -> None:
        part_state = _REPORT_PART_STATE.get(report.status)
        if part_state is None:  # "accepted": an intermediate report, nothing changes
            return
        reason = " ".join(x for x in (report.error_code, report.error_text) if x)
        mid = await self.gateway.store.delivery_report(
            report.carrier,
            report.carrier_id,
            part_state,
            reason,
            f"dlr:{report.carrier}",
            self.gateway.clock(),
        )
        if mid is None:
            log.warning(
                "delivery report for an unknown id",
                extra={
                    "event": "dlr_unknown",
                    "carrier": report.carrier,
                    "carrier_id": report.carrier_id,
                },
            )
