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

from mailsms.address import parse_recipient
from mailsms.carriers.base import (
    Carrier,
    DeliveryReport,
    InboundSms,
    ReportStatus,
    carrier_class,
)
from mailsms.config import Settings, split_listen
from mailsms.dispatch.notify import Notifier
from mailsms.dispatch.routing import Router
from mailsms.dispatch.worker import Dispatcher
from mailsms.inbound import InboundProcessor
from mailsms.intake.accept import Intake
from mailsms.intake.imap import ImapIntake
from mailsms.intake.smtp import start_server
from mailsms.mail import dsn_codes
from mailsms.mail.relay import RelayWorker
from mailsms.model import PartState
from mailsms.sms.reassemble import Fragment
from mailsms.store import SqlStore, open_store
from mailsms.store.mail_ops import OutboundMail
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
        account = next((m for m in settings.imap if m.name == settings.relay.imap), None)
        self.relay = RelayWorker(
            self.store, settings.relay, self._relay_final, clock, imap_account=account
        )
        self.notifier = Notifier(
            settings,
            self.store,
            self.relay.wake,
            {c.name: c.type for c in settings.carriers},
            clock,
        )
        self.dispatcher = Dispatcher(
            self.store,
            self.carriers,
            Router(settings.carriers),
            settings.dispatch,
            self.metrics,
            clock,
            on_done=self.notifier.wake,
        )
        self.intake = Intake(
            settings, self.store, self.metrics, self.dispatcher.wake, clock, handoff=self.dispatcher
        )
        self.inbound = InboundProcessor(
            settings, self.store, self.relay.wake, self._auto_reply, clock
        )
        self.imap = [ImapIntake(m, self.intake, clock) for m in settings.imap]
        self.listening = Listening()
        self._runner: web.AppRunner | None = None
        self._started: list[Carrier] = []

    async def start(self) -> None:
        await self.store.open()
        try:
            for carrier in self.carriers.values():
                await carrier.start(self.hooks(carrier.name))
                self._started.append(carrier)
            for part in (self.dispatcher, self.relay, self.notifier, self.inbound):
                await part.start()
            await self._listen()
            for mailbox in self.imap:
                await mailbox.start()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "gateway started",
            extra={"event": "started", "smtp": self.listening.smtp, "http": self.listening.http},
        )

    def hooks(self, carrier: str) -> _Hooks:
        """What carrier ``carrier`` calls with inbound SMS and delivery reports."""
        return _Hooks(self, carrier)

    async def _auto_reply(self, phone: str, text: str, our_number: str | None) -> None:
        """An SMS we send by ourselves (the HELP keyword's answer)."""
        rcpt = parse_recipient(
            f"{phone}@{self.settings.gateway.domain}",
            self.settings.gateway.all_domains,
            self.settings.gateway.default_region,
        )
        await self.intake.accept_text(text, "auto", [rcpt], "auto", source_addr=our_number)

    async def _relay_final(self, mail: OutboundMail, state: str, detail: str) -> None:
        if mail.kind == "sms":
            await self.inbound.relay_result(mail, state, detail)
        elif mail.kind == "dsn" and mail.ref_id is not None:
            what = "sent" if state == "sent" else f"could not be sent: {detail}"
            await self.store.message_event(
                mail.ref_id, f"dsn {state}", f"notification {what}", "relay", self.clock()
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
                socket_mode=int(s.smtp.lmtp_socket_mode, 8) if s.smtp.lmtp_socket_mode else None,
                socket_group=s.smtp.lmtp_socket_group,
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
        for mailbox in self.imap:
            await mailbox.stop()
        for server in self.listening.servers:
            server.close()
        for server in self.listening.servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self.listening.servers.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.intake.parse_pool.stop()
        await self.dispatcher.stop()
        await self.inbound.stop()
        await self.notifier.stop()
        await self.relay.stop()
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


class _Hooks:
    """What a carrier driver calls back into (the :class:`CarrierHooks` protocol)."""

    def __init__(self, gateway: Gateway, carrier: str) -> None:
        self.gateway = gateway
        self.carrier = carrier

    async def inbound(self, sms: InboundSms) -> None:
        await self.gateway.inbound.receive(sms)

    async def inbound_part(self, fragment: Fragment) -> None:
        await self.gateway.inbound.receive_part(self.carrier, fragment)

    async def delivery_report(self, report: DeliveryReport) -> None:
        part_state = _REPORT_PART_STATE.get(report.status)
        if part_state is None:  # "accepted": an intermediate report, nothing changes
            return
        text = report.error_text or report.status.value
        reason = (
            f"{self.carrier}: {text} (code {report.error_code})"
            if report.error_code
            else ("" if part_state is PartState.DELIVERED else f"{self.carrier}: {text}")
        )
        gw = self.gateway
        mid = await gw.store.delivery_report(
            report.carrier,
            report.carrier_id,
            part_state,
            reason,
            f"dlr:{report.carrier}",
            gw.clock(),
        )
        if mid is None:
            log.warning(
                "delivery report for an unknown id (kept for dlr.unknown_keep)",
                extra={
                    "event": "dlr_unknown",
                    "carrier": report.carrier,
                    "carrier_id": report.carrier_id,
                },
            )
            return
        await self._opt_out(mid, report)
        gw.notifier.wake()

    async def _opt_out(self, mid: str, report: DeliveryReport) -> None:
        """A carrier saying the recipient opted out (Twilio 21610, Vonage 9, Telnyx 40300) is
        an opt-out."""
        kind = next((c.type for c in self.gateway.settings.carriers if c.name == self.carrier), "")
        code = report.error_code
        opted_out = (
            (kind == "twilio" and dsn_codes.from_twilio(code, "failed").opt_out)
            or (kind == "vonage" and code is not None and dsn_codes.from_vonage(code).opt_out)
            or (kind == "telnyx" and dsn_codes.from_telnyx(code).opt_out)
        )
        if opted_out:
            message = await self.gateway.store.get(mid)
            if message is not None:
                await self.gateway.store.set_opt_out(
                    message.to, True, f"carrier {self.carrier} error {code}", self.gateway.clock()
                )
