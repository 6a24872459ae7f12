"""The decisions every intake shares (SMTP, LMTP, the HTTP API, ``mailsms send``).

Sender and recipient checks give SMTP-shaped :class:`~mailsms.policy.Refusal` values that
the protocol edge turns into replies (DESIGN.md reply table). Acceptance parses the mail,
encodes the text, writes one message per recipient and returns their ids only after the
store has committed them: the edge answers ``250`` with those ids and nothing earlier.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailsms.address import ForeignDomain, Recipient, mask, parse_recipient
from mailsms.config import Settings
from mailsms.dispatch.routing import Router
from mailsms.errors import AddressError, StoreError
from mailsms.intake.parse_pool import ParsePool, WorkerUnavailable
from mailsms.mail.dsn import DsnParams
from mailsms.mail.parse import BodyOptions, Extracted, NoTextError, extract
from mailsms.model import Message, NewMessage, new_id
from mailsms.policy import Refusal
from mailsms.policy.authentication import AuthenticationRule
from mailsms.policy.destinations import DestinationRule
from mailsms.policy.optout import OptOutRule
from mailsms.policy.rate import SenderRateRule
from mailsms.policy.senders import SenderRule
from mailsms.sms.encode import Encoded, SmsOptions, TooLong, plan, with_reference
from mailsms.store.base import Allocate, Lease, SqlStore
from mailsms.store.mail_ops import Conversation
from mailsms.web.metrics import Metrics

log = logging.getLogger("mailsms.intake")

BAD_NUMBER = "5.1.1"
STORE_DOWN = Refusal(451, "4.3.0", "Temporary failure storing the message, try again later")
NO_TEXT = Refusal(550, "5.6.0", "No text part could be extracted from the message")
AUTO_GENERATED = Refusal(
    550, "5.7.1", "Auto-generated mail and bounces are not sent as SMS (loop protection)"
)
TOO_MANY = Refusal(452, "4.5.3", "Too many recipients")


@dataclass
class DsnEnvelope:
    """RFC 3461 parameters of one SMTP transaction: RET/ENVID from MAIL, and per accepted
    recipient (in RCPT order) its NOTIFY and ORCPT."""

    ret: str | None = None
    envid: str | None = None
    recipients: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)

    def params(self, index: int) -> DsnParams:
        notify, orcpt = self.recipients[index] if index < len(self.recipients) else ((), None)
        ret = self.ret if self.ret in ("FULL", "HDRS") else None
        return DsnParams(ret=ret, envid=self.envid, notify=notify, orcpt=orcpt)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Accepted:
    """The ids of what was queued, per recipient (a split message has several)."""

    per_recipient: tuple[tuple[str, ...], ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(id for ids in self.per_recipient for id in ids)

    @property
    def reply(self) -> str:
        """The SMTP DATA reply: one for the whole transaction."""
        return _queued(self.ids)

    def replies(self) -> list[str]:
        """LMTP's DATA replies: one per recipient, each naming its own message."""
        return [_queued(ids) for ids in self.per_recipient]


def _queued(ids: tuple[str, ...]) -> str:
    more = f" (+{len(ids) - 1} more)" if len(ids) > 1 else ""
    return f"250 2.0.0 queued as {ids[0]}{more}"


class RefusedError(Exception):
    """Raised by acceptance with the refusal to answer."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reply)
        self.refusal = refusal


class Handoff(Protocol):
    """The dispatcher's side of a direct handover (see :mod:`mailsms.dispatch.worker`)."""

    def reserve(self, count: int) -> Lease | None: ...
    def unreserve(self, count: int) -> None: ...
    def hand_over(self, messages: Sequence[Message], reserved: int) -> None: ...


class Intake:
    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        metrics: Metrics,
        on_queued: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        handoff: Handoff | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.on_queued = on_queued
        self.handoff = handoff
        self.clock = clock
        self.domains = settings.gateway.all_domains
        self.senders = SenderRule(settings.policy)
        self.authentication = AuthenticationRule(settings.policy, self.senders)
        self.destinations = DestinationRule(settings.policy)
        self.optouts = OptOutRule(store)
        self.router = Router(settings.carriers)
        self._carriers = {c.name: c for c in settings.carriers}
        self.rate = SenderRateRule(settings.policy.sender_rate_limit, clock)
        self.sms_options = SmsOptions(
            transliterate=settings.sms.transliterate,
            shift_tables=settings.sms.shift_tables,
            reference_bits=settings.sms.reference_bits,
            max_segments=settings.policy.max_segments,
            on_too_long=settings.policy.on_too_long,
            truncate_marker=settings.sms.truncate_marker,
        )
        body = settings.body
        self.body_options = BodyOptions(
            subject=settings.sms.subject,
            note_attachments=body.note_attachments,
            strip_quotes=body.strip_quotes,
            strip_signatures=body.strip_signatures,
            signature_patterns=body.signature_patterns,
            cutoff_markers=body.cutoff_markers,
        )
        self.parse_pool = ParsePool(
            settings.smtp.parse_workers, self.body_options, self.sms_options
        )

    # --- envelope checks ---------------------------------------------------------------

    def check_sender(self, sender: str, peer_ip: str | None) -> Refusal | None:
        return self.senders.check(sender, peer_ip)

    def check_authentication(self, raw: bytes, sender: str, peer_ip: str | None) -> Refusal | None:
        """At DATA: ``policy.authserv_id`` (mailsms/policy/authentication.py)."""
        return self.authentication.check(raw, sender, peer_ip)

    async def check_recipient(self, address: str, sender: str, pending: int) -> Recipient | Refusal:
        """The parsed recipient, or why it is refused (most specific reason first)."""
        if pending >= self.settings.smtp.max_recipients:
            return TOO_MANY
        try:
            recipient = _parse_cached(address, self.domains, self.settings.gateway.default_region)
        except ForeignDomain:
            return Refusal(550, "5.7.1", "Relay access denied: not a domain served here")
        except AddressError:
            return Refusal(550, BAD_NUMBER, "Recipient is not a valid phone number")
        return await self.check_number(recipient, sender, pending) or recipient

    async def check_number(
        self, recipient: Recipient, sender: str, pending: int = 0
    ) -> Refusal | None:
        """Destination policy, opt-out list and sender quota for an already parsed number."""
        refusal = self.destinations.check(recipient)
        if refusal is None:
            try:
                refusal = await self.optouts.check(recipient.number)
            except StoreError:
                return STORE_DOWN
        return refusal or self.rate.check(sender, pending)

    # --- acceptance --------------------------------------------------------------------

    async def accept_mail(
        self,
        raw: bytes,
        sender: str,
        recipients: Sequence[Recipient],
        original: Sequence[str] = (),
        dsn: DsnEnvelope | None = None,
        *,
        origin: str = "smtp",
        key: str | None = None,
    ) -> Accepted:
        """Parse, encode and queue a mail for each recipient; raises :class:`RefusedError`,
        or :class:`~mailsms.store.base.AlreadyQueued` when ``key`` was committed before."""
        mail, plans = await self._parse(raw)
        if mail.auto_generated or not sender.strip("<>"):
            raise RefusedError(AUTO_GENERATED)
        return await self._queue(
            mail.text,
            sender,
            recipients,
            origin=origin,
            mail=mail,
            original=original,
            dsn=dsn or DsnEnvelope(),
            raw=raw,
            plans=plans,
            key=key,
        )

    async def _parse(self, raw: bytes) -> tuple[Extracted, list[Encoded] | TooLong | None]:
        """The mail's text (and its encoding, when a parse worker did it); NO_TEXT refused."""
        try:
            if self.parse_pool.enabled:
                with contextlib.suppress(WorkerUnavailable):
                    parsed = await self.parse_pool.parse(raw)
                    return parsed.mail, parsed.plans
            return extract(raw, self.body_options), None  # the same functions, on the loop
        except NoTextError:
            raise RefusedError(NO_TEXT) from None

    async def accept_text(
        self,
        text: str,
        sender: str,
        recipients: Sequence[Recipient],
        origin: str,
        carrier: str | None = None,
        source_addr: str | None = None,
    ) -> Accepted:
        """Queue a plain text (API, CLI) through the same encoding and store path."""
        if not text.strip():
            raise RefusedError(NO_TEXT)
        return await self._queue(
            text, sender, recipients, origin=origin, carrier=carrier, source_addr=source_addr
        )

    async def _queue(
        self,
        text: str,
        sender: str,
        recipients: Sequence[Recipient],
        *,
        origin: str,
        mail: Extracted | None = None,
        original: Sequence[str] = (),
        carrier: str | None = None,
        source_addr: str | None = None,
        dsn: DsnEnvelope | None = None,
        raw: bytes | None = None,
        plans: list[Encoded] | TooLong | None = None,
        key: str | None = None,
    ) -> Accepted:
        now = self.clock()
        if plans is None:
            plans = self._plan(text)  # one text for every recipient: encode it once
        elif isinstance(plans, TooLong):
            raise RefusedError(_too_long(plans))
        conversations: list[dict[str, object]] = []
        thread = await self._thread(mail)
        jobs: list[tuple[int, Recipient, str | None]] = []
        for index, rcpt in enumerate(recipients):
            source = source_addr
            if source is None and thread is not None and thread.phone == rcpt.number:
                source = thread.our_number or None  # a reply keeps its conversation's number
            jobs.append((index, rcpt, source))
            if mail is not None:
                conversations.append(self._conversation(sender, rcpt, source, carrier, mail, text))

        def build(allocate: Allocate) -> list[NewMessage]:
            """Runs in the enqueue transaction, so long messages' references come from the
            store in the same commit (and again, afresh, if the commit is replayed)."""
            built: list[NewMessage] = []
            for index, rcpt, source in jobs:
                encoded_list = self._with_references(plans, rcpt.number, allocate)
                params = dsn.params(index) if dsn is not None else None
                built += [
                    NewMessage(
                        id=new_id(),
                        to=rcpt.number,
                        text=encoded.text,
                        encoding=encoded.encoding,
                        parts=encoded.parts,
                        sender=sender,
                        origin=origin,
                        source_addr=source,
                        carrier=carrier,
                        subject=mail.subject if mail else None,
                        mail_message_id=mail.message_id if mail else None,
                        original_recipient=original[index] if index < len(original) else None,
                        shift_table=encoded.shift_table,
                        expires_at=now + self.settings.dispatch.max_age,
                        meta=_meta(encoded),
                        **_dsn_fields(params, raw),
                    )
                    for encoded in encoded_list
                ]
            return built

        count = len(recipients) * len(plans)
        lease = self.handoff.reserve(count) if self.handoff is not None else None
        try:
            messages = await self.store.enqueue(build, now, conversations, lease=lease, key=key)
        except BaseException as exc:
            # Not handed over. Committed anyway (cancelled while the fsync ran)? Then the
            # lease runs out and a claim takes them, as after a crash: nothing is lost.
            if lease is not None and self.handoff is not None:
                self.handoff.unreserve(count)
            if not isinstance(exc, StoreError):
                raise
            log.error("enqueue failed", extra={"event": "store_error", "error": str(exc)})
            raise RefusedError(STORE_DOWN) from None
        self.rate.charge(sender, len(recipients))
        self.metrics.accepted.labels(origin=origin).inc(len(messages))
        if lease is not None and self.handoff is not None:
            self.handoff.hand_over([Message.claimed_at_intake(m, now) for m in messages], count)
        else:
            self.on_queued()
        for m in messages if log.isEnabledFor(logging.DEBUG) else ():
            log.debug(
                "queued",
                extra={
                    "event": "queued",
                    "id": m.id,
                    "to": mask(m.to),
                    "parts": len(m.parts),
                    "origin": origin,
                },
            )
        per_message = len(plans)
        return Accepted(
            tuple(
                tuple(m.id for m in messages[i * per_message : (i + 1) * per_message])
                for i in range(len(recipients))
            )
        )

    async def _thread(self, mail: Extracted | None) -> Conversation | None:
        """The conversation a reply mail continues (its In-Reply-To / References)."""
        if mail is None:
            return None
        ids = [*mail.references, *([mail.in_reply_to] if mail.in_reply_to else [])]
        if not ids:
            return None
        try:
            return await self.store.conversation_for_mail(ids)
        except StoreError:
            return None

    def _conversation(
        self,
        sender: str,
        rcpt: Recipient,
        source: str | None,
        carrier: str | None,
        mail: Extracted,
        text: str,
    ) -> dict[str, object]:
        """Remember who wrote to this phone from which of our numbers: a reply SMS from the
        phone to that number goes back to this sender (docs/sms-to-mail.md)."""
        return {
            "email": sender.strip("<>"),
            "phone": rcpt.number,
            "our_number": source or self.default_from(rcpt.number, carrier),
            "message_id": mail.message_id,
            "subject": mail.subject,
            "references": (*mail.references, *([mail.message_id] if mail.message_id else [])),
            "last_text": text,
        }

    def default_from(self, number: str, carrier: str | None = None) -> str:
        """The sender id a message to ``number`` will carry: its first carrier's ``from``."""
        names = self.router.candidates(number, carrier)
        return (self._carriers[names[0]].from_ or "") if names else ""

    def _plan(self, text: str) -> list[Encoded]:
        """Encode with the length policy (references are patched in per recipient)."""
        try:
            return plan(text, self.sms_options, 0)
        except TooLong as exc:
            raise RefusedError(_too_long(exc)) from None

    def _with_references(
        self, plans: list[Encoded], number: str, allocate: Allocate
    ) -> list[Encoded]:
        """Long messages get references from the store's per-destination counter, so they
        never repeat within 2**bits consecutive long messages to one number, whatever
        restarts or other gateway processes happen in between."""
        if not any(e.segments > 1 for e in plans):
            return plans
        bits = self.sms_options.reference_bits
        first = allocate(number, len(plans), random.randrange(1 << bits))
        return with_reference(plans, first % (1 << bits), bits)


# The same few numbers recur (an on-call rota): phonenumbers costs ~50 µs a parse, the cache
# ~1 µs. Refusals raise and are not cached, so a bad address costs a parse each time.
_parse_cached = functools.lru_cache(maxsize=4096)(parse_recipient)


_ACTIONS = ("failed", "delayed", "delivered")


def _too_long(exc: TooLong) -> Refusal:
    return Refusal(
        554,
        "5.3.4",
        f"Message too long: {exc.segments} SMS segments, at most {exc.limit} allowed",
    )


def _dsn_fields(params: DsnParams | None, raw: bytes | None) -> dict[str, Any]:
    """NewMessage fields for RFC 3461: which notices the sender gets, and what to return."""
    if params is None:
        return {}
    original = raw if params.ret == "FULL" else _headers_of(raw) if raw else None
    return {
        "notify": frozenset(a for a in _ACTIONS if params.wants(a)),  # type: ignore[arg-type]
        "dsn": params.to_dict(),
        "original": original,
    }


def _headers_of(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    return raw if end < 0 else raw[: end + 2]


def _meta(encoded: Encoded) -> dict[str, object]:
    if not encoded.transliterated:
        return {}
    return {
        "transliterated": [list(p) for p in encoded.transliterated],
        "segments_saved": encoded.segments_saved,
    }
