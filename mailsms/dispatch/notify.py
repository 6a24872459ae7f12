"""Telling senders what became of their SMS: RFC 3464 DSNs through the relay queue.

A terminal transition marks a DSN due in the same transaction that makes it (the store's
``dsn_due`` column, set only where the sender's NOTIFY asked for that outcome), so a crash
cannot lose a bounce. This loop turns due marks into DSNs: it builds each one from the
stored message and its events (:mod:`mailsms.mail.dsn`), queues it from the null sender to
the envelope sender, and clears the mark in that same transaction. It also sends delay
notices after ``dsn.delay_after`` and expires messages whose final delivery report never
came (``dlr.timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from collections.abc import Callable
from typing import Any

from mailsms.config import Settings
from mailsms.errors import StoreError
from mailsms.mail import dsn_codes
from mailsms.mail.dsn import Action, DsnParams, DsnReport, build_dsn
from mailsms.mail.templates import environment
from mailsms.store.base import SqlStore

log = logging.getLogger("mailsms.notify")

_CODE = re.compile(r"\(code ([^)]+)\)")
_COALESCE = 0.05


class Notifier:
    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        relay_wake: Callable[[], None],
        carrier_types: dict[str, str],
        clock: Callable[[], float] = time.time,
        interval: float = 5.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.relay_wake = relay_wake
        self.carrier_types = carrier_types
        self.clock = clock
        self.interval = interval
        self.env = environment(settings.templates.dir)
        self.reporting_mta = (
            settings.dsn.reporting_mta or settings.gateway.hostname or socket.getfqdn()
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.sent = 0
        self._last_sweep = 0.0
        self._last_purge = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifier")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self.tick()
            except StoreError as exc:
                log.error("notifier failed", extra={"event": "notify_error", "error": str(exc)})
            except Exception:
                log.exception("notifier failed", extra={"event": "notify_bug"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            # Wakes come with every finished message; a short pause lets one pass serve a
            # burst of them (a DSN may leave 50 ms later, the queue is not polled per message).
            await asyncio.sleep(_COALESCE)

    async def tick(self) -> None:
        """One pass: expire silent messages, send due DSNs, send delay notices."""
        now = self.clock()
        dlr = self.settings.dlr
        queued = 0
        for row, events in await self.store.dsn_due():  # indexed: cheap on every wake
            queued += await self._send(row, str(row["dsn_due"]), events, now)
        if now - self._last_sweep >= self.interval:  # scans: at most once per interval
            self._last_sweep = now
            expired = await self.store.expire_stale(now - dlr.timeout, now, now - dlr.unknown_keep)
            if expired:
                log.info(
                    "expired without report", extra={"event": "dlr_timeout", "n": len(expired)}
                )
                self._wake.set()  # their failure DSNs are due now
            for row in await self.store.delay_due(now - self.settings.dsn.delay_after):
                queued += await self._send(row, "delayed", (), now)
            await self._purge(now)
        if queued:
            self.relay_wake()

    async def _purge(self, now: float) -> None:
        """Retention: at most once an hour, drop what finished before ``store.retention``."""
        keep = self.settings.store.retention
        if not keep or now - self._last_purge < 3600:
            return
        self._last_purge = now
        ttl = max(keep, self.settings.inbound.conversation_ttl)
        removed = await self.store.purge(now - keep, now - ttl)
        if removed:
            log.info("purged", extra={"event": "purge", "rows": removed})

    async def _send(
        self, row: dict[str, Any], action: str, events: tuple[Any, ...], now: float
    ) -> int:
        sender = str(row["sender"]).strip("<>")
        params = DsnParams.from_dict(json.loads(row["dsn"] or "{}"))
        if not sender or row["origin"] != "smtp":
            await self._settle(row, action, None, now)
            return 0
        report = self._report(row, action, params, events, sender)  # type: ignore[arg-type]
        data = build_dsn(report, self.env, now=now)
        await self._settle(row, action, data, now)
        self.sent += 1
        log.info("dsn queued", extra={"event": "dsn", "id": row["id"], "action": action})
        return 1

    async def _settle(
        self, row: dict[str, Any], action: str, data: bytes | None, now: float
    ) -> None:
        """Queue the DSN (if any) and clear what made it due, in one transaction."""
        id = row["id"]

        def after(tx: Any) -> None:
            if action == "delayed":
                tx.execute("mark_delay_notified", {"id": id})
            else:
                tx.execute("clear_dsn_due", {"id": id, "action": action})
            if data is not None:
                tx.execute(
                    "insert_event_only",
                    {
                        "message_id": id,
                        "at": now,
                        "state": f"dsn {action}",
                        "reason": f"delivery status notification queued to {row['sender']}",
                        "source": "dsn",
                    },
                )

        if data is None:
            await self.store._run(after)
            return
        await self.store.enqueue_mail(
            "dsn",
            id,
            "",
            str(row["sender"]).strip("<>"),
            data,
            now,
            now + self.settings.relay.max_age,
            after=after,
        )

    def _report(
        self,
        row: dict[str, Any],
        action: Action,
        params: DsnParams,
        events: tuple[Any, ...],
        sender: str,
    ) -> DsnReport:
        mapped = self._classify(row, action)
        last_error = row["last_error"]
        domain = self.settings.gateway.domain
        final = row["original_recipient"] or f"{row['recipient']}@{domain}"
        attempts = [e.at for e in events if e.state in ("submitting", "submitted")]
        return DsnReport(
            action=action,
            reporting_mta=self.reporting_mta,
            from_domain=domain,
            envelope_sender=sender,
            final_recipient=final,
            number=row["recipient"],
            status=mapped.status,
            diagnostic=_diagnostic(row, self.carrier_types, last_error),
            reason=mapped.reason,
            message_id=row["id"],
            text=row["text"],
            arrival=float(row["created_at"]),
            last_attempt=max(attempts) if attempts else None,
            params=params,
            original=bytes(row["original"]) if row["original"] is not None else None,
            will_retry_until=float(row["expires_at"]) if action == "delayed" else None,
        )

    def _classify(self, row: dict[str, Any], action: str) -> dsn_codes.Mapped:
        """The RFC 3463 status and the plain-words reason for this outcome."""
        if action == "delivered":
            return dsn_codes.Mapped("2.0.0", "the message was delivered to the phone", True)
        if action == "delayed":
            return dsn_codes.Mapped(
                "4.4.7", "the message has not been delivered yet; we keep trying", False
            )
        return classify(row["state"], row["carrier"], row["last_error"], self.carrier_types)


def classify(
    state: str, carrier: str | None, last_error: str | None, carrier_types: dict[str, str]
) -> dsn_codes.Mapped:
    """Map a failed or expired message's last error to a DSN status (docs/delivery-reports.md)."""
    error = last_error or ""
    kind = carrier_types.get(carrier or "", "")
    match = _CODE.search(error)
    code = match.group(1) if match else None
    if state == "expired" or "maximum age" in error or "dlr.timeout" in error:
        return dsn_codes.Mapped(
            "4.4.7", "the message could not be delivered in time and expired", True
        )
    if kind == "smpp" and code and code.lower().startswith("0x"):
        return dsn_codes.from_smpp_status(int(code, 16))
    if kind == "smpp" and code is not None:
        stat = error.split(":")[-1].split("(")[0].strip() or "UNDELIV"
        return dsn_codes.from_receipt(stat, code)
    if kind == "twilio":
        return dsn_codes.from_twilio(code, "failed")
    if kind == "telnyx":
        return dsn_codes.from_telnyx(code)
    if kind == "vonage" and code is not None and not code.startswith("status"):
        return dsn_codes.from_vonage(code)  # a receipt's err-code ("status N": a submit's)
    return dsn_codes.from_generic("failed", code, error or None)


def _diagnostic(
    row: dict[str, Any], carrier_types: dict[str, str], last_error: str | None
) -> str | None:
    if not last_error:
        return None
    kind = carrier_types.get(row["carrier"] or "", "") or "x-mailsms"
    known = ("smpp", "twilio", "vonage", "telnyx")
    return f"{kind if kind in known else 'x-mailsms'}; {last_error}"
