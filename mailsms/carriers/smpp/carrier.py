"""The SMPP carrier driver: settings, several binds with reconnect, submit, receipts, MO.

This is the edge between the dispatcher and SMPP sessions. ``submit`` turns an
:class:`OutboundSms` (already split into parts by :mod:`mailsms.sms.encode`) into one
submit_sm per part, or one submit_sm with message_payload, on the least busy bound
session, within the rate cap. Each configured bind is kept up by a supervisor task that
reconnects with exponential backoff and remembers why the last attempt failed, which is
what :meth:`SmppCarrier.health` reports. deliver_sm becomes a delivery report, an
inbound SMS, or one part of a multi-part one (``hooks.inbound_part``, which commits it: the
driver keeps no parts); the SMSC gets its deliver_sm_resp only after the gateway's hook
returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiolimiter import AsyncLimiter
from pydantic import Field, field_validator

from mailsms.carriers.base import (
    Carrier,
    CarrierHealth,
    CarrierHooks,
    CarrierSettings,
    DeliveryReport,
    InboundSms,
    OutboundSms,
    Submitted,
)
from mailsms.duration import Duration
from mailsms.errors import ConfigError, TemporaryFailure
from mailsms.model import PartSpec, new_id
from mailsms.sms.reassemble import (
    Assembled,
    Fragment,
    Reassembler,
    decode_part,
    fragment_from_udh,
)
from mailsms.sms.udh import build_udh, locking_shift_ie, parse_udh, single_shift_ie

from . import receipt as rc
from . import status as st
from .pdu import (
    Bind,
    CommandId,
    DataSm,
    Pdu,
    ShortMessage,
    Tag,
    Tlv,
    absolute_time,
    tlv_get,
    tlv_int,
    tlv_str,
    tlv_u8,
    tlv_u16,
)
from .session import BindRefused, Session, SessionConfig

log = logging.getLogger("mailsms.carriers.smpp")

UDHI = 0x40
# How a GSM-7 part is written for ``gsm_data_coding`` 1 and 3 (0 sends the septets).
_GSM_CODECS = {1: "ascii", 3: "latin-1"}


class SmppSettings(CarrierSettings):
    """``[[carrier]] type = "smpp"``; see docs/smpp.md for every key."""

    host: str
    port: int = Field(default=2775, ge=1, le=65535)
    system_id: str = Field(max_length=15)
    password: str = Field(default="", max_length=8)
    system_type: str = Field(default="", max_length=12)
    address_range: str = Field(default="", max_length=40)
    bind: Literal["transceiver", "transmitter+receiver"] = "transceiver"
    binds: int = Field(default=1, ge=1, le=64, description="parallel binds to this SMSC")
    window: int = Field(default=10, ge=1, le=1000, description="outstanding submits per bind")
    tls: bool = False
    tls_verify: bool = True
    enquire_link_interval: Duration = Field(default=30.0, gt=0)
    request_timeout: Duration = Field(default=10.0, gt=0)
    connect_timeout: Duration = Field(default=10.0, gt=0)
    reconnect_min: Duration = Field(default=1.0, gt=0)
    reconnect_max: Duration = Field(default=60.0, gt=0)
    service_type: str = Field(default="", max_length=5)
    source_ton: int | None = Field(default=None, ge=0, le=255, description="None: detect")
    source_npi: int | None = Field(default=None, ge=0, le=255, description="None: detect")
    dest_ton: int = Field(default=1, ge=0, le=255)
    dest_npi: int = Field(default=1, ge=0, le=255)
    concat: Literal["udh", "sar", "payload"] = "udh"
    registered_delivery: int = Field(default=1, ge=0, le=0x1F)
    gsm_data_coding: Literal[0, 1, 3] = Field(
        default=0, description="data_coding for GSM-7 parts: 0 septets, 1 ASCII, 3 Latin-1"
    )
    default_alphabet: Literal["gsm", "ascii", "latin1"] = Field(
        default="gsm", description="how inbound data_coding 0 is read"
    )
    reassembly_timeout: Duration = Field(default=300.0, gt=0)
    status_overrides: dict[int, Literal["temporary", "permanent"]] = Field(default_factory=dict)

    @field_validator("status_overrides", mode="before")
    @classmethod
    def _status_keys(cls, value: object) -> object:
        """TOML keys are strings: accept ``0x58`` as well as ``88`` for a command_status."""
        if isinstance(value, dict):
            try:
                return {int(k, 0) if isinstance(k, str) else k: v for k, v in value.items()}
            except ValueError:
                raise ValueError("keys must be command_status numbers, e.g. 0x58 or 88") from None
        return value


def source_address(addr: str, ton: int | None, npi: int | None) -> tuple[str, int, int]:
    """Address, TON and NPI for a sender: alphanumeric 5/0, ``+E.164`` 1/1, short code 3/0."""
    if addr.startswith("+") and addr[1:].isdigit():
        detected = (addr[1:], 1, 1)
    elif addr.isdigit():
        detected = (addr, 3, 0) if len(addr) <= 6 else (addr, 1, 1)
    else:
        detected = (addr, 5, 0)
    return (
        detected[0],
        detected[1] if ton is None else ton,
        detected[2] if npi is None else npi,
    )


def display_address(addr: str, ton: int) -> str:
    """An SMPP address as the gateway writes numbers: ``+`` for international (TON 1)."""
    return f"+{addr}" if ton == 1 and addr.isdigit() else addr


@dataclass(slots=True)
class _Link:
    """One session slot kept up by a supervisor: a transceiver, transmitter or receiver."""

    label: str
    command: CommandId
    session: Session | None = None
    error: str = "not connected yet"
    task: asyncio.Task[None] | None = None

    @property
    def submits(self) -> bool:
        return self.command != CommandId.BIND_RECEIVER

    @property
    def bound(self) -> bool:
        return self.session is not None and self.session.bound


@dataclass(frozen=True, slots=True)
class _SubmitFields:
    """The settings every submit reads, copied out of the pydantic model once: each read of
    a model attribute goes through its ``__getattr__`` hook, a dozen times per submit_sm."""

    from_: str | None
    source_ton: int | None
    source_npi: int | None
    dest_ton: int
    dest_npi: int
    service_type: str
    registered_delivery: int
    concat: Literal["udh", "sar", "payload"]
    gsm_data_coding: Literal[0, 1, 3]

    @classmethod
    def of(cls, c: SmppSettings) -> _SubmitFields:
        return cls(
            c.from_,
            c.source_ton,
            c.source_npi,
            c.dest_ton,
            c.dest_npi,
            c.service_type,
            c.registered_delivery,
            c.concat,
            c.gsm_data_coding,
        )


@dataclass(slots=True)
class _Inflight:
    count: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)


class SmppCarrier(Carrier):
    """SMPP 3.4 ESME; registered as ``smpp`` in the ``mailsms.carriers`` entry points."""

    Settings = SmppSettings

    def __init__(self, settings: CarrierSettings) -> None:
        super().__init__(settings)
        if not isinstance(settings, SmppSettings):
            raise ConfigError(f"carrier {settings.name!r}: SmppCarrier needs SmppSettings")
        self.config = settings
        self._fields = _SubmitFields.of(settings)
        self._hooks: CarrierHooks | None = None
        self._links: list[_Link] = []
        self._stopping = asyncio.Event()
        self._changed = asyncio.Condition()
        self._limiter = _limiter(settings.max_rate)
        self._ids = rc.IdIndex()
        self._reassembler = Reassembler(settings.reassembly_timeout)
        self._fragments: dict[tuple[str, str, int, int], list[Fragment]] = {}
        self._expiry: asyncio.Task[None] | None = None
        self._parts_in_store = False
        self._inflight = _Inflight()
        self._turn = 0
        self._inflight.idle.set()
        self._overrides = {code: st.Kind(kind) for code, kind in settings.status_overrides.items()}

    # ---- life cycle ------------------------------------------------------------------

    async def start(self, hooks: CarrierHooks) -> None:
        """Start one supervisor per session slot; binding goes on in the background."""
        self._hooks = hooks
        self._stopping.clear()
        commands = (
            [CommandId.BIND_TRANSCEIVER]
            if self.config.bind == "transceiver"
            else [CommandId.BIND_TRANSMITTER, CommandId.BIND_RECEIVER]
        )
        for i in range(self.config.binds):
            for command in commands:
                kind = command.name.removeprefix("BIND_").lower()
                link = _Link(f"{self.name}#{i + 1}/{kind}", command)
                link.task = asyncio.create_task(self._supervise(link))
                self._links.append(link)
        # Hooks written before inbound_part existed (a test's recorder, an embedder's own)
        # get the old behaviour: parts held here, lost in a crash. The gateway's never do.
        self._parts_in_store = getattr(hooks, "inbound_part", None) is not None
        if not self._parts_in_store:
            log.warning(
                "%s: hooks without inbound_part: MO parts are held in memory until their set "
                "is complete, and lost if the process stops before",
                self.name,
                extra={"event": "smpp.parts_in_memory"},
            )
            self._expiry = asyncio.create_task(self._expire_loop())

    async def stop(self) -> None:
        """Let submits in flight finish, unbind every session, end every task."""
        self._stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._inflight.idle.wait(), self.config.request_timeout)
        sessions = [link.session for link in self._links if link.session is not None]
        await asyncio.gather(*(s.close("carrier stopping") for s in sessions))
        tasks = [t for t in [self._expiry, *(link.task for link in self._links)] if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()

    def health(self) -> CarrierHealth:
        ok = any(link.bound for link in self._links if link.submits)
        detail = "; ".join(
            f"{link.label}: {'bound' if link.bound else link.error}" for link in self._links
        )
        return CarrierHealth(ok=ok, detail=detail or "not started")

    async def wait_health(self, predicate: Callable[[CarrierHealth], bool]) -> CarrierHealth:
        """Wait until ``predicate(health())`` holds; bound it with ``asyncio.timeout``."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.health()))
        return self.health()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _supervise(self, link: _Link) -> None:
        """Keep one session bound: connect, wait for it to drop, back off, again."""
        delay = self.config.reconnect_min
        while not self._stopping.is_set():
            try:
                link.session = await Session.connect(
                    self._session_config(link.command), self._on_request, link.label
                )
                delay = self.config.reconnect_min
                await self._notify()
                await link.session.closed.wait()
                link.error = f"disconnected: {link.session.close_reason}"
            except BindRefused as exc:
                link.error = str(exc)
                log.error(
                    "%s: %s",
                    link.label,
                    exc,
                    extra={"event": "smpp.bind_refused", "status": exc.status},
                )
            except (OSError, TimeoutError, TemporaryFailure) as exc:
                link.error = f"connect to {self.config.host}:{self.config.port} failed: {exc!r}"
                log.warning("%s: %s", link.label, link.error, extra={"event": "smpp.connect"})
            await self._notify()
            if self._stopping.is_set():
                break
            jittered = delay * random.uniform(0.8, 1.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), jittered)
            delay = min(delay * 2, self.config.reconnect_max)

    def _session_config(self, command: CommandId) -> SessionConfig:
        c = self.config
        context: ssl.SSLContext | None = None
        if c.tls:
            context = ssl.create_default_context()
            if not c.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        return SessionConfig(
            host=c.host,
            port=c.port,
            bind_command=command,
            bind=Bind(
                system_id=c.system_id,
                password=c.password,
                system_type=c.system_type,
                address_range=c.address_range,
            ),
            window=c.window,
            request_timeout=c.request_timeout,
            connect_timeout=c.connect_timeout,
            enquire_link_interval=c.enquire_link_interval,
            ssl=context,
        )

    # ---- submit ----------------------------------------------------------------------

    async def submit(self, sms: OutboundSms) -> Submitted:
        """One submit_sm per part (or one with message_payload); see docs/smpp.md."""
        if self._stopping.is_set():
            raise TemporaryFailure(f"{self.name}: carrier is stopping")
        session = self._pick()
        bodies = self._bodies(sms)
        self._inflight.count += 1
        if self._inflight.count == 1:
            self._inflight.idle.clear()
        try:
            ids: list[str | None] = []
            # A loop, not an awaiting comprehension nor a coroutine per part: every
            # coroutine frame costs on the way out and again on the wake-up.
            for i, body in enumerate(bodies, 1):
                if self._limiter is not None:
                    await self._limiter.acquire()
                resp = await session.submit(CommandId.SUBMIT_SM, body)
                ids.append(self._accepted(resp, i, len(bodies)))
        finally:
            self._inflight.count -= 1
            if self._inflight.count == 0:
                self._inflight.idle.set()
        if self._fields.concat == "payload":
            ids = ids * len(sms.parts)
        if log.isEnabledFor(logging.DEBUG):  # the dispatcher logs each submit at info already
            log.debug(
                "submitted %s in %d part(s)",
                sms.message_id,
                len(ids),
                extra={"event": "smpp.submitted", "message_id": sms.message_id},
            )
        return Submitted(tuple(ids))

    def _pick(self) -> Session:
        """The bound submitting session with the fewest outstanding requests."""
        if len(self._links) == 1:  # the usual single transceiver: nothing to choose
            only = self._links[0].session
            if only is not None and only.bound and self._links[0].submits:
                return only
        sessions = [
            link.session
            for link in self._links
            if link.submits and link.session is not None and link.session.bound
        ]
        if not sessions:
            raise TemporaryFailure(f"{self.name}: no SMPP bind is up ({self.health().detail})")
        if len(sessions) == 1:
            return sessions[0]
        self._turn += 1
        start = self._turn % len(sessions)
        rotated = sessions[start:] + sessions[:start]  # ties go round-robin
        return min(rotated, key=lambda s: s.outstanding)

    def _accepted(self, resp: Pdu, index: int, total: int) -> str | None:
        """The message_id of a submit_sm_resp (indexed for receipts), or its failure."""
        if resp.status != 0:
            raise st.failure(resp.status, f"submit_sm part {index}/{total}", self._overrides)
        message_id = getattr(resp.body, "message_id", "") or None
        if message_id:
            self._ids.add(message_id)
        return message_id

    def _bodies(self, sms: OutboundSms) -> list[ShortMessage]:
        c = self._fields
        source, ton, npi = source_address(
            sms.source_addr or c.from_ or "", c.source_ton, c.source_npi
        )
        # Keyword arguments shared by every part (a dict, not dataclasses.replace per part:
        # this runs for every submit_sm).
        common: dict[str, Any] = dict(
            source_addr=source,
            source_addr_ton=ton,
            source_addr_npi=npi,
            destination_addr=sms.to.removeprefix("+"),
            dest_addr_ton=c.dest_ton,
            dest_addr_npi=c.dest_npi,
            service_type=c.service_type,
            registered_delivery=c.registered_delivery,
            validity_period=absolute_time(sms.expires_at) if sms.expires_at > time.time() else "",
        )
        ucs2 = sms.encoding == "ucs2"
        if c.concat == "payload":
            payloads = [self._coded(part, ucs2) for part in sms.parts]
            dcs = payloads[0][0]
            data = b"".join(p for _, p in payloads)
            tlv = (int(Tag.MESSAGE_PAYLOAD), data)
            return [ShortMessage(**common, data_coding=dcs, tlvs=(tlv,))]
        return [self._part_body(common, part, ucs2) for part in sms.parts]

    def _coded(self, part: PartSpec, ucs2: bool) -> tuple[int, bytes]:
        """data_coding and user data (no UDH) for one part, per ``gsm_data_coding``."""
        if ucs2:
            return 0x08, part.payload
        coding = self._fields.gsm_data_coding
        codec = _GSM_CODECS.get(coding)
        if codec is not None:
            try:
                return coding, part.text.encode(codec)
            except UnicodeEncodeError:
                pass  # a GSM character outside ASCII/Latin-1 (Greek, say): send septets
        return 0x00, part.payload

    def _part_body(self, common: dict[str, Any], part: PartSpec, ucs2: bool) -> ShortMessage:
        dcs, data = self._coded(part, ucs2)
        udh: bytes = part.udh
        tlvs: tuple[Tlv, ...] = ()
        if self._fields.concat == "sar" and udh:
            udh, tlvs = _sar(udh)
        esm_class = UDHI if udh else 0
        return ShortMessage(
            **common, data_coding=dcs, esm_class=esm_class, short_message=udh + data, tlvs=tlvs
        )

    # ---- deliver_sm ------------------------------------------------------------------

    async def _on_request(self, pdu: Pdu) -> int:
        """Handle deliver_sm/data_sm; the returned command_status goes in the response."""
        body = pdu.body
        if not isinstance(body, ShortMessage | DataSm):
            return st.ESME_ROK
        if rc.is_receipt(body.esm_class):
            await self._on_receipt(body)
            return st.ESME_ROK
        return await self._on_mo(body)

    async def _on_receipt(self, body: ShortMessage | DataSm) -> None:
        short = body.short_message if isinstance(body, ShortMessage) else b""
        parsed = rc.parse(short, body.tlvs)
        if parsed is None or parsed.status is None:
            log.warning(
                "receipt without id or with unknown stat: %r",
                short[:160],
                extra={"event": "smpp.receipt_unusable"},
            )
            return
        carrier_id = self._ids.match(parsed.message_id) or parsed.message_id
        raw: dict[str, object] = {
            "stat": parsed.stat,
            "err": parsed.err,
            "receipt_id": parsed.message_id,
            "candidate_ids": list(rc.candidate_ids(parsed.message_id)),
            **parsed.fields,
        }
        report = DeliveryReport(
            carrier=self.name,
            carrier_id=carrier_id,
            status=parsed.status,
            error_code=rc.error_code(parsed.err),
            error_text=None if parsed.stat == "DELIVRD" else parsed.stat,
            raw=raw,
        )
        assert self._hooks is not None
        await self._hooks.delivery_report(report)

    async def _on_mo(self, body: ShortMessage | DataSm) -> int:
        """Hand an MO (or one part of it) to the gateway; answered once the hook returned."""
        try:
            fragment = self._fragment(body)
        except ValueError as exc:
            log.error("undecodable MO: %s", exc, extra={"event": "smpp.mo_malformed"})
            return 0x65  # ESME_RX_P_APPN: retrying will not help
        if fragment.total > 1 and self._parts_in_store:
            assert self._hooks is not None
            # Committed when it returns (the set's inbound row too, if this part completed
            # it); if it raises, the session answers ESME_RX_T_APPN and the SMSC retries.
            await self._hooks.inbound_part(fragment)
        else:
            await self._add_fragment(fragment, {"data_coding": body.data_coding})
        return st.ESME_ROK

    def _fragment(self, body: ShortMessage | DataSm) -> Fragment:
        """An MO as a part of its set (UDH or SAR; total 1 for a message on its own).

        Raises ValueError for user data that cannot be read or a part outside 1..total.
        """
        udh, text = self._decode(body)
        from_ = display_address(body.source_addr, body.source_addr_ton)
        to = display_address(body.destination_addr, body.dest_addr_ton)
        carrier_id = tlv_str(body.tlvs, Tag.RECEIPTED_MESSAGE_ID) or f"mo-{new_id()}"
        ref = tlv_int(body.tlvs, Tag.SAR_MSG_REF_NUM)
        if ref is not None:
            total = tlv_int(body.tlvs, Tag.SAR_TOTAL_SEGMENTS) or 1
            seq = tlv_int(body.tlvs, Tag.SAR_SEGMENT_SEQNUM) or 1
            fragment = Fragment(from_, to, ref, total, seq, text, carrier_id, time.time())
        else:
            fragment = fragment_from_udh(from_, to, udh, text, carrier_id, time.time())
        if not 1 <= fragment.seq <= max(fragment.total, 1):
            raise ValueError(f"part {fragment.seq} of {fragment.total}")
        return fragment

    def _decode(self, body: ShortMessage | DataSm) -> tuple[bytes, str]:
        """The UDH and the text of an MO, by data_coding (TS 23.038 and SMPP 5.2.19)."""
        payload = tlv_get(body.tlvs, Tag.MESSAGE_PAYLOAD)
        data = payload if payload is not None else getattr(body, "short_message", b"")
        udh = b""
        if body.esm_class & UDHI:
            if not data or data[0] + 1 > len(data):
                raise ValueError("UDHI set but the UDH overruns the user data")
            udh, data = data[: data[0] + 1], data[data[0] + 1 :]
        alphabet = _alphabet(body.data_coding, self.config.default_alphabet)
        if alphabet in ("gsm7", "ucs2"):
            return udh, decode_part(udh, data, alphabet)
        if alphabet == "ascii":
            return udh, data.decode("ascii", errors="replace")
        return udh, data.decode("latin-1")

    async def _add_fragment(self, fragment: Fragment, raw: dict[str, object]) -> None:
        """Hand a single-part MO to ``hooks.inbound``. Parts of a longer one come here only
        for hooks without ``inbound_part``: reassembled in memory, kept if the hook fails."""
        key = (fragment.from_, fragment.to, fragment.ref, fragment.total)
        assembled = self._reassembler.add(fragment)
        if assembled is None:
            if fragment.total > 1:
                self._fragments.setdefault(key, []).append(fragment)
            return
        earlier = self._fragments.pop(key, [])
        try:
            await self._hand_inbound(assembled, raw)
        except BaseException:
            # The SMSC will send this part again: keep the others so it completes the set.
            for part in earlier:
                self._reassembler.add(part)
            if earlier:
                self._fragments[key] = earlier
            raise

    async def _hand_inbound(self, assembled: Assembled, raw: dict[str, object]) -> None:
        assert self._hooks is not None
        sms = InboundSms(
            carrier=self.name,
            carrier_id=",".join(assembled.carrier_ids),
            from_=assembled.from_,
            to=assembled.to,
            text=assembled.text,
            received_at=assembled.received_at,
            segments=assembled.segments,
            incomplete=assembled.incomplete,
            raw=dict(raw),
        )
        await self._hooks.inbound(sms)

    async def _expire_loop(self) -> None:
        """Hand over, marked incomplete, the sets whose missing parts never came (only for
        parts held in memory; the gateway sweeps the stored ones)."""
        period = min(self.config.reassembly_timeout / 4, 30.0)
        while True:
            await asyncio.sleep(period)
            for assembled in self._reassembler.expire(time.time()):
                ids = set(assembled.carrier_ids)
                for key, parts in list(self._fragments.items()):
                    if any(part.carrier_id in ids for part in parts):
                        del self._fragments[key]
                try:
                    await self._hand_inbound(assembled, {"expired": True})
                except Exception:
                    log.exception("incomplete MO could not be handed over; it is lost")


def _limiter(max_rate: float) -> AsyncLimiter | None:
    if max_rate <= 0:
        return None
    return AsyncLimiter(max_rate, 1.0) if max_rate >= 1 else AsyncLimiter(1, 1.0 / max_rate)


def _sar(udh: bytes) -> tuple[bytes, tuple[Tlv, ...]]:
    """Move the concatenation IE of a UDH into SAR TLVs; keep the other IEs in the UDH."""
    parsed = parse_udh(udh)
    if parsed.concat is None:
        return udh, ()
    ref, total, seq = parsed.concat
    ies = [bytes([iei, len(data)]) + data for iei, data in parsed.other]
    if parsed.single_shift is not None:
        ies.append(single_shift_ie(parsed.single_shift))
    if parsed.locking_shift is not None:
        ies.append(locking_shift_ie(parsed.locking_shift))
    tlvs = (
        tlv_u16(Tag.SAR_MSG_REF_NUM, ref),
        tlv_u8(Tag.SAR_TOTAL_SEGMENTS, total),
        tlv_u8(Tag.SAR_SEGMENT_SEQNUM, seq),
    )
    return build_udh(*ies), tlvs


def _alphabet(dcs: int, default: str) -> str:
    """How to read user data with this data_coding (SMPP 3.4 5.2.19, TS 23.038 section 4)."""
    if dcs == 0x00:
        return {"gsm": "gsm7", "ascii": "ascii", "latin1": "latin1"}[default]
    named = {0x01: "ascii", 0x03: "latin1", 0x08: "ucs2"}
    if dcs in named:
        return named[dcs]
    if dcs & 0xF0 == 0xF0:  # message class coding: bit 2 says 8-bit data, else GSM 7-bit
        return "latin1" if dcs & 0x04 else "gsm7"
    if dcs & 0xC0 == 0x00 and not dcs & 0x20:  # general coding, uncompressed
        return {0x00: "gsm7", 0x08: "ucs2"}.get(dcs & 0x0C, "latin1")
    log.warning("MO with data_coding 0x%02x read as Latin-1", dcs)
    return "latin1"
