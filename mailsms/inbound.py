"""SMS from phones become mail: keywords, routing, rendering, DKIM, the relay queue.

Carriers (webhooks, SMPP deliver_sm) hand an SMS to :meth:`InboundProcessor.receive`, which
stores it once per carrier id and returns after the commit: only then does the carrier get
its acknowledgement (the parts of a long SMS go one by one to :meth:`receive_part`, which
commits each and stores the whole SMS with the last; a sweep stores sets whose parts stopped
coming as incomplete SMS). Processing follows on the loop: a keyword (STOP/START/HELP) acts
on the opt-out list, the SMS is routed (:mod:`mailsms.conversation`), rendered from the templates,
DKIM-signed on a worker thread (RSA signing is CPU work), and queued for the relay in the
same transaction that marks the SMS handled. SMS still ``received`` at start-up (a crash
between the commit and the queueing) are processed again, so none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import phonenumbers

from mailsms.address import mask
from mailsms.carriers.base import InboundSms
from mailsms.config import Settings
from mailsms.conversation import Destination, Keyword, keyword, route
from mailsms.errors import StoreError
from mailsms.mail.render import InboundMail, Thread, message_id_for, render_inbound
from mailsms.mail.sign import DkimSigner, load_signer
from mailsms.mail.templates import environment
from mailsms.sms.reassemble import Fragment
from mailsms.store.base import SqlStore
from mailsms.store.mail_ops import OutboundMail, insert_conversation

log = logging.getLogger("mailsms.inbound")

SendSms = Callable[[str, str, str | None], Awaitable[None]]


def normalize(number: str) -> str:
    """A carrier's rendering of a number in E.164 when it is one (``15551234567``,
    ``+1 555 123 4567``); alphanumeric sender ids and short codes stay as they are."""
    compact = re.sub(r"[\s\-.()]", "", number)
    if not re.fullmatch(r"\+?\d{7,15}", compact):
        return number.strip()
    try:
        parsed = phonenumbers.parse("+" + compact.lstrip("+"), None)
    except phonenumbers.NumberParseException:
        return compact
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class InboundProcessor:
    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        relay_wake: Callable[[], None],
        send_sms: SendSms | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.relay_wake = relay_wake
        self.send_sms = send_sms
        self.clock = clock
        self.env = environment(settings.templates.dir)
        dkim = settings.dkim
        self.signer: DkimSigner | None = (
            load_signer(dkim.domain, dkim.selector, dkim.key_file, dkim.algorithms)
            if dkim
            else None
        )
        self._signing = ThreadPoolExecutor(1, thread_name_prefix="mailsms-dkim")
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Process what a previous run stored but did not finish; sweep stale part sets."""
        for row in await self.store.inbound_pending(1000):
            self._schedule(row["id"])
        timeouts = [
            float(t)
            for c in self.settings.carriers
            if (t := getattr(c, "reassembly_timeout", None)) is not None
        ]
        if timeouts:
            self._sweep = asyncio.create_task(self._sweep_parts(min(timeouts)))

    async def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweep
            self._sweep = None
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        self._signing.shutdown(wait=False, cancel_futures=True)

    async def receive(self, sms: InboundSms) -> tuple[str, bool]:
        """Store an SMS from a phone (once per carrier id); returns after the commit."""
        clean = InboundSms(
            carrier=sms.carrier,
            carrier_id=sms.carrier_id,
            from_=normalize(sms.from_),
            to=normalize(sms.to),
            text=sms.text,
            received_at=sms.received_at,
            segments=sms.segments,
            incomplete=sms.incomplete,
            raw=sms.raw,
        )
        id, new = await self.store.record_inbound(clean, self.clock())
        log.info(
            "inbound sms",
            extra={
                "event": "inbound",
                "id": id,
                "carrier": sms.carrier,
                "from": mask(clean.from_),
                "new": new,
            },
        )
        if new:
            self._schedule(id)
        return id, new

    async def receive_part(self, carrier: str, fragment: Fragment) -> str | None:
        """Store one part of a multi-part SMS; returns after the commit. When it completed
        its set, the whole SMS is stored and its processing scheduled: returns its id."""
        clean = dataclasses.replace(
            fragment, from_=normalize(fragment.from_), to=normalize(fragment.to)
        )
        id, new = await self.store.inbound_part(clean, carrier, self.clock())
        log.info(
            "inbound sms part",
            extra={
                "event": "inbound_part",
                "id": id,
                "carrier": carrier,
                "from": mask(clean.from_),
                "part": f"{fragment.seq}/{fragment.total}",
                "new": new,
            },
        )
        if id is not None and new:
            self._schedule(id)
        return id

    async def _sweep_parts(self, timeout: float) -> None:
        """One per gateway: sets whose missing parts never came become incomplete SMS.

        ``timeout`` is the shortest ``reassembly_timeout`` of the carriers; the parts are in
        the store, so a set is handed over by whichever process sweeps first.
        """
        period = min(timeout / 4, 30.0)
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            try:
                ids = await self.store.expire_inbound_parts(now - timeout, now)
            except Exception:  # the parts stay stored: the next sweep tries again
                log.exception("part sweep failed", extra={"event": "inbound_error"})
                continue
            for id in ids:
                log.warning(
                    "incomplete inbound sms: parts missing after reassembly_timeout",
                    extra={"event": "inbound_incomplete", "id": id},
                )
                self._schedule(id)

    def _schedule(self, id: str) -> None:
        task = asyncio.create_task(self._process(id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, id: str) -> None:
        try:
            await self.process(id)
        except StoreError as exc:  # stays "received": retried at the next start
            log.error(
                "inbound processing failed",
                extra={"event": "inbound_error", "id": id, "error": str(exc)},
            )
        except Exception:
            log.exception("inbound processing failed", extra={"event": "inbound_bug", "id": id})
            with contextlib.suppress(StoreError):
                await self.store.inbound_result(id, "failed", "internal error, see the log")

    async def process(self, id: str) -> None:
        row = await self.store.get_inbound(id)
        if row is None or row["state"] != "received":
            return
        await self._keyword(row)
        now = self.clock()
        phone, ours = row["sender"], row["recipient"]
        ttl = self.settings.inbound.conversation_ttl
        conv = await self.store.find_conversation(phone, ours, now - ttl)
        dest = route(self.settings.inbound, phone, ours, conv)
        if dest is None:
            await self.store.inbound_result(
                id, "undeliverable", "no conversation, route or inbound.catch_all"
            )
            log.warning("inbound undeliverable", extra={"event": "undeliverable", "id": id})
            return
        data, message_id = self._render(row, dest)
        if self.signer is not None:
            data = await asyncio.get_running_loop().run_in_executor(
                self._signing, self.signer.sign, data
            )
        await self.store.enqueue_mail(
            "sms",
            id,
            f"{phone}@{self.settings.gateway.domain}",
            dest.mailbox,
            data,
            now,
            now + self.settings.relay.max_age,
            after=self._handled(row, dest, message_id, now),
        )
        self.relay_wake()

    def _render(self, row: dict[str, Any], dest: Destination) -> tuple[bytes, str]:
        conv = dest.conversation
        thread = (
            Thread(conv.message_id, conv.references, conv.subject or "")
            if conv is not None and conv.message_id
            else None
        )
        domain = self.settings.gateway.domain
        mail = InboundMail(
            inbound_id=row["id"],
            phone=row["sender"],
            our_number=row["recipient"],
            domain=domain,
            to=dest.mailbox,
            text=row["text"],
            received_at=float(row["received_at"]),
            timezone=self.settings.inbound.timezone,
            segments=int(row["segments"]),
            incomplete=bool(row["incomplete"]),
            carrier=row["carrier"],
            thread=thread,
            last_outbound=conv.last_text
            if conv is not None and self.settings.inbound.quote_last
            else None,
        )
        return render_inbound(mail, self.env), message_id_for(row["id"], domain)

    def _handled(
        self, row: dict[str, Any], dest: Destination, message_id: str, now: float
    ) -> Callable[[Any], None]:
        """Runs in the transaction that queues the mail: the SMS is handled exactly then,
        and the mail's Message-ID joins a conversation, so a reply keeps the thread."""

        def after(tx: Any) -> None:
            conv = dest.conversation
            if conv is None:
                conv_id = insert_conversation(
                    tx,
                    {
                        "email": dest.mailbox,
                        "phone": row["sender"],
                        "our_number": row["recipient"],
                        "message_id": message_id,
                        "subject": None,
                        "references": (message_id,),
                        "last_text": None,
                    },
                    now,
                )
            else:
                conv_id = conv.id
                tx.execute(
                    "insert_conversation_mail",
                    {"message_id": message_id, "conversation_id": conv_id},
                )
                tx.execute("touch_conversation", {"id": conv_id, "now": now})
            tx.execute(
                "set_inbound_state",
                {
                    "id": row["id"],
                    "state": "queued",
                    "routed_to": dest.mailbox,
                    "conversation_id": conv_id,
                    "error": None,
                },
            )

        return after

    async def _keyword(self, row: dict[str, Any]) -> None:
        if not self.settings.inbound.keywords:
            return
        kw = keyword(row["text"])
        phone, now = row["sender"], self.clock()
        if kw is Keyword.STOP:
            await self.store.set_opt_out(phone, True, "keyword STOP", now)
        elif kw is Keyword.START:
            await self.store.set_opt_out(phone, False, "keyword START", now)
        elif kw is Keyword.HELP and self.send_sms is not None:
            await self.send_sms(phone, self.settings.inbound.help_text, row["recipient"])
        if kw is not None:
            log.info("keyword", extra={"event": "keyword", "id": row["id"], "keyword": kw.value})

    async def relay_result(self, mail: OutboundMail, state: str, detail: str) -> None:
        """The relay's final word on a mail made from an SMS."""
        if mail.kind != "sms" or mail.ref_id is None:
            return
        await self.store.inbound_result(
            mail.ref_id,
            "relayed" if state == "sent" else "relay_failed",
            None if state == "sent" else detail,
        )
