"""The relay: sends the mail mailsms writes (SMS turned into mail, bounces) to the smarthost,
or appends it to an IMAP mailbox (``relay.method = "imap"``, :mod:`mailsms.mail.append`).

Mail is taken from the store's durable outgoing queue with a lease, sent with aiosmtplib
(STARTTLS, implicit TLS and AUTH as configured), and marked ``sent`` only after the
smarthost's ``250``. A ``4xx`` or a connection failure is retried with backoff until
``relay.max_attempts`` or ``relay.max_age``; a ``5xx`` is final. Either final outcome is
handed to ``on_final`` so the source (the inbound SMS, the message whose bounce it was)
records it where the operator will look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

import aiosmtplib

from mailsms.config import ImapSettings, RelaySettings, split_listen
from mailsms.dispatch.retry import GiveUp, RetryPolicy
from mailsms.errors import StoreError
from mailsms.mail.append import AppendFailed, append
from mailsms.store.base import SqlStore
from mailsms.store.mail_ops import OutboundMail

log = logging.getLogger("mailsms.relay")

OnFinal = Callable[[OutboundMail, str, str], Awaitable[None]]


class RelayWorker:
    def __init__(
        self,
        store: SqlStore,
        settings: RelaySettings,
        on_final: OnFinal | None = None,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 5.0,
        imap_account: ImapSettings | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.imap_account = imap_account  # with method "imap": where mail is appended
        self.on_final = on_final
        self.clock = clock
        self.poll_interval = poll_interval
        self.policy = RetryPolicy(
            settings.max_attempts, settings.backoff_initial, settings.backoff_max
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:relay:{os.urandom(3).hex()}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._sem = asyncio.Semaphore(settings.concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self.sent = 0
        self._helo: str | None = settings.helo
        self._progress: asyncio.Future[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        # aiosmtplib looks the local name up for every new client when none is given: once
        # is enough (a thread, since getfqdn may wait on DNS).
        self._helo = self.settings.helo or await asyncio.get_running_loop().run_in_executor(
            None, socket.getfqdn
        )
        self._task = asyncio.create_task(self._run(), name="relay")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=self.settings.timeout)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.settings.concurrency - len(self._inflight)
            batch: list[OutboundMail] = []
            if free > 0:
                try:
                    batch = await self.store.claim_mail(
                        self.owner, free, self.settings.timeout * 3, self.clock()
                    )
                except StoreError as exc:
                    log.error(
                        "relay claim failed", extra={"event": "relay_claim", "error": str(exc)}
                    )
            for mail in batch:
                task = asyncio.create_task(self._deliver(mail))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if batch and len(batch) == free:
                continue
            await self._sleep()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)
        self._progress = None

    async def progress(self) -> None:
        """Wait until the next delivery attempt finishes (for tests and tools: no sleeping)."""
        if self._progress is None:
            self._progress = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._progress)

    async def _sleep(self) -> None:
        if self._wake.is_set():
            return
        timeout = self.poll_interval
        with contextlib.suppress(StoreError):
            due = await self.store.mail_next_due()
            if due is not None:
                timeout = max(0.0, min(timeout, due - self.clock()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _deliver(self, mail: OutboundMail) -> None:
        async with self._sem:
            try:
                detail = await self._send(mail)
            except aiosmtplib.SMTPResponseException as exc:
                await self._failed(mail, exc.code, f"{exc.code} {exc.message}")
                return
            except (aiosmtplib.SMTPException, OSError, TimeoutError, AppendFailed) as exc:
                await self._failed(mail, None, f"{type(exc).__name__}: {exc}")
                return
        await self.store.mail_done(mail.id, self.owner, "sent", detail, self.clock())
        self.sent += 1
        log.info(
            "relayed",
            extra={"event": "relayed", "id": mail.id, "kind": mail.kind, "ref": mail.ref_id},
        )
        if self.on_final is not None:
            await self.on_final(mail, "sent", detail)

    async def _send(self, mail: OutboundMail) -> str:
        if self.settings.method == "imap":
            assert self.imap_account is not None  # the config check names the account
            return await append(self.imap_account, self.settings.append_mailbox, mail.data)
        return await self._smtp(mail)

    async def _smtp(self, mail: OutboundMail) -> str:
        """One SMTP transaction. The client object is used directly (not ``aiosmtplib.send``)
        because bounces go out from the null sender ``<>``, which ``send`` refuses."""
        s = self.settings
        host, port = split_listen(s.smarthost)
        client = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            username=s.username,
            password=s.password,
            use_tls=s.tls,
            start_tls=s.starttls,
            validate_certs=s.validate_certs,
            local_hostname=self._helo,
            timeout=s.timeout,
        )
        utf8 = not (mail.mail_from + mail.rcpt_to).isascii()
        async with client:
            errors, response = await client.sendmail(
                mail.mail_from,
                [mail.rcpt_to],
                mail.data,
                mail_options=["SMTPUTF8"] if utf8 else [],
            )
        if errors:  # the one recipient was refused: its reply is in errors
            code, text = next(iter(errors.values()))
            raise aiosmtplib.SMTPResponseException(code, text)
        return response

    async def _failed(self, mail: OutboundMail, code: int | None, detail: str) -> None:
        now = self.clock()
        permanent = code is not None and 500 <= code < 600
        decision = None if permanent else self.policy.decide(mail.attempts, mail.expires_at, now)
        if decision is None or isinstance(decision, GiveUp):
            reason = (
                detail if permanent else f"{decision.reason if decision else ''}; last: {detail}"
            )
            await self.store.mail_done(mail.id, self.owner, "failed", reason, now)
            log.warning(
                "relay failed", extra={"event": "relay_failed", "id": mail.id, "reason": reason}
            )
            if self.on_final is not None:
                await self.on_final(mail, "failed", reason)
            return
        await self.store.mail_done(mail.id, self.owner, "queued", detail, now, decision.at)
        log.info("relay deferred", extra={"event": "relay_retry", "id": mail.id, "reason": detail})
