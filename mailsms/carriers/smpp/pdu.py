"""SMPP 3.4 PDU codec: bytes <-> typed values, with no I/O.

Only the PDUs an ESME needs are modelled (binds, submit_sm, deliver_sm, data_sm, their
responses, enquire_link, unbind, generic_nack). Decoding is strict: every length is
checked and a malformed PDU raises :class:`PduError` carrying the ``command_status`` to
answer with (in a generic_nack, or in the response to the offending request), so the
session can reply and carry on instead of crashing. Field sizes are those of SMPP 3.4
section 4 (C-octet strings include their terminating NUL in the maximum).
"""

from __future__ import annotations

import enum
import functools
import struct
import time
from dataclasses import dataclass, field

HEADER = struct.Struct(">IIII")
HEADER_SIZE = HEADER.size
# No PDU we accept is larger: short_message is at most 254 octets, message_payload at
# most 64 KiB. A larger command_length means the stream is corrupt.
MAX_PDU_SIZE = 70_000
RESPONSE_BIT = 0x8000_0000


class CommandId(enum.IntEnum):
    GENERIC_NACK = 0x8000_0000
    BIND_RECEIVER = 0x0000_0001
    BIND_RECEIVER_RESP = 0x8000_0001
    BIND_TRANSMITTER = 0x0000_0002
    BIND_TRANSMITTER_RESP = 0x8000_0002
    SUBMIT_SM = 0x0000_0004
    SUBMIT_SM_RESP = 0x8000_0004
    DELIVER_SM = 0x0000_0005
    DELIVER_SM_RESP = 0x8000_0005
    UNBIND = 0x0000_0006
    UNBIND_RESP = 0x8000_0006
    BIND_TRANSCEIVER = 0x0000_0009
    BIND_TRANSCEIVER_RESP = 0x8000_0009
    ENQUIRE_LINK = 0x0000_0015
    ENQUIRE_LINK_RESP = 0x8000_0015
    DATA_SM = 0x0000_0103
    DATA_SM_RESP = 0x8000_0103

    @property
    def is_response(self) -> bool:
        return bool(self.value & RESPONSE_BIT)


# By value, for decode: a dict lookup instead of the enum's constructor.
_COMMAND_IDS: dict[int, CommandId] = {int(c): c for c in CommandId}

BIND_COMMANDS = frozenset(
    {CommandId.BIND_RECEIVER, CommandId.BIND_TRANSMITTER, CommandId.BIND_TRANSCEIVER}
)


class Tag(enum.IntEnum):
    """The optional parameters (TLVs) we read or write."""

    RECEIPTED_MESSAGE_ID = 0x001E
    USER_MESSAGE_REFERENCE = 0x0204
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    MESSAGE_STATE = 0x0427


# Exact value lengths of the fixed-size TLVs we understand (others are passed through).
_TLV_LENGTHS: dict[int, int] = {
    Tag.USER_MESSAGE_REFERENCE: 2,
    Tag.SAR_MSG_REF_NUM: 2,
    Tag.SAR_TOTAL_SEGMENTS: 1,
    Tag.SAR_SEGMENT_SEQNUM: 1,
    Tag.SC_INTERFACE_VERSION: 1,
    Tag.NETWORK_ERROR_CODE: 3,
    Tag.MESSAGE_STATE: 1,
}

# command_status values used by the codec itself (the full table is in status.py).
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RINVMSGID = 0x0C
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RINVSERTYP = 0x15
ESME_RINVSYSTYP = 0x53
ESME_RINVSCHED = 0x61
ESME_RINVEXPIRY = 0x62
ESME_RINVOPTPARSTREAM = 0xC0
ESME_RINVPARLEN = 0xC2


class PduError(ValueError):
    """A PDU that cannot be decoded; ``status`` is the command_status to answer with.

    ``command_id`` and ``sequence`` are set when the header could be read, so the caller
    can answer the request it belongs to; ``framing`` is true when the byte stream itself
    can no longer be trusted (bad command_length) and the connection must be dropped.
    """

    def __init__(
        self,
        message: str,
        status: int,
        *,
        command_id: int | None = None,
        sequence: int = 0,
        framing: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.command_id = command_id
        self.sequence = sequence
        self.framing = framing


Tlv = tuple[int, bytes]

# The PDU values below are plain (not frozen) dataclasses, to be treated as values all the
# same: a frozen dataclass's __init__ sets every field through object.__setattr__, which
# for the 18 fields of a ShortMessage costs more than encoding it, on every submit.


@dataclass(frozen=True, slots=True)
class Empty:
    """The body of enquire_link, unbind, their responses and generic_nack."""


@dataclass(slots=True)
class Bind:
    system_id: str
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(slots=True)
class BindResp:
    system_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


@dataclass(slots=True)
class ShortMessage:
    """The body shared by submit_sm and deliver_sm."""

    source_addr: str = ""
    destination_addr: str = ""
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: tuple[Tlv, ...] = ()


@dataclass(slots=True)
class DataSm:
    source_addr: str = ""
    destination_addr: str = ""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: tuple[Tlv, ...] = ()


@dataclass(slots=True)
class MessageResp:
    """The body of submit_sm_resp, deliver_sm_resp and data_sm_resp."""

    message_id: str = ""
    tlvs: tuple[Tlv, ...] = ()


Body = Empty | Bind | BindResp | ShortMessage | DataSm | MessageResp

EMPTY = Empty()


@dataclass(slots=True)
class Pdu:
    command_id: CommandId
    sequence: int
    status: int = 0
    body: Body = field(default=EMPTY)


# ---- TLV helpers -------------------------------------------------------------------------


def tlv_u8(tag: int, value: int) -> Tlv:
    return (tag, bytes([value & 0xFF]))


def tlv_u16(tag: int, value: int) -> Tlv:
    return (tag, (value & 0xFFFF).to_bytes(2, "big"))


def tlv_cstr(tag: int, value: str) -> Tlv:
    return (tag, value.encode("latin-1") + b"\x00")


def tlv_get(tlvs: tuple[Tlv, ...], tag: int) -> bytes | None:
    """The value of the first TLV with ``tag``, or None."""
    for t, v in tlvs:
        if t == tag:
            return v
    return None


def tlv_int(tlvs: tuple[Tlv, ...], tag: int) -> int | None:
    value = tlv_get(tlvs, tag)
    return None if value is None or not value else int.from_bytes(value, "big")


def tlv_str(tlvs: tuple[Tlv, ...], tag: int) -> str | None:
    value = tlv_get(tlvs, tag)
    return None if value is None else value.rstrip(b"\x00").decode("latin-1")


# ---- encoding ----------------------------------------------------------------------------


def encode(pdu: Pdu) -> bytes:
    """The wire form of ``pdu``. Raises ValueError for a field that does not fit."""
    body = pdu.body
    data = _encode_short_message(body) if isinstance(body, ShortMessage) else _encode_body(body)
    header = HEADER.pack(HEADER_SIZE + len(data), pdu.command_id, pdu.status, pdu.sequence)
    return header + data


def _cstr(value: str, size: int, name: str) -> bytes:
    return _octets(value, size, name) + b"\x00"


def _octets(value: str, size: int, name: str) -> bytes:
    """A C-octet string's content, without its NUL; ValueError if it does not fit."""
    if not value:
        return b""
    raw = value.encode("latin-1")
    # (0 in raw, not b"\x00" in raw: bytes.__contains__ first tries its argument as an
    # int, and a bytes argument costs it a formatted TypeError, 10x the search.)
    if len(raw) >= size or 0 in raw:
        raise ValueError(f"{name} is longer than {size - 1} octets or contains NUL")
    return raw


def _encode_tlvs(tlvs: tuple[Tlv, ...]) -> bytes:
    out = bytearray()
    for tag, value in tlvs:
        if len(value) > 0xFFFF:
            raise ValueError(f"TLV 0x{tag:04x} value is longer than 65535 octets")
        out += struct.pack(">HH", tag, len(value)) + value
    return bytes(out)


def _encode_body(body: Body) -> bytes:
    if isinstance(body, Empty):
        return b""
    if isinstance(body, Bind):
        return b"".join(
            (
                _cstr(body.system_id, 16, "system_id"),
                _cstr(body.password, 9, "password"),
                _cstr(body.system_type, 13, "system_type"),
                bytes([body.interface_version, body.addr_ton, body.addr_npi]),
                _cstr(body.address_range, 41, "address_range"),
            )
        )
    if isinstance(body, BindResp):
        return _cstr(body.system_id, 16, "system_id") + _encode_tlvs(body.tlvs)
    if isinstance(body, MessageResp):
        return _cstr(body.message_id, 65, "message_id") + _encode_tlvs(body.tlvs)
    if isinstance(body, ShortMessage):
        return _encode_short_message(body)
    return _encode_data_sm(body)


# submit_sm/deliver_sm in one formatting step (every PDU the gateway sends is one): the
# C-octet strings (service_type, addresses, times) with their NULs, then the octets.
_SHORT_MESSAGE = b"%b\x00%c%c%b\x00%c%c%b\x00%c%c%c%b\x00%b\x00%c%c%c%c%c%b%b"


def _encode_short_message(sm: ShortMessage) -> bytes:
    message = sm.short_message
    if len(message) > 254:
        raise ValueError("short_message is longer than 254 octets; use message_payload")
    try:
        return _SHORT_MESSAGE % (
            _octets(sm.service_type, 6, "service_type"),
            sm.source_addr_ton,
            sm.source_addr_npi,
            _octets(sm.source_addr, 21, "source_addr"),
            sm.dest_addr_ton,
            sm.dest_addr_npi,
            _octets(sm.destination_addr, 21, "destination_addr"),
            sm.esm_class,
            sm.protocol_id,
            sm.priority_flag,
            _octets(sm.schedule_delivery_time, 17, "schedule_delivery_time"),
            _octets(sm.validity_period, 17, "validity_period"),
            sm.registered_delivery,
            sm.replace_if_present_flag,
            sm.data_coding,
            sm.sm_default_msg_id,
            len(message),
            message,
            _encode_tlvs(sm.tlvs) if sm.tlvs else b"",
        )
    except OverflowError:  # %c of an integer field outside 0..255
        raise ValueError("an integer field of the short message is outside 0..255") from None


def _encode_data_sm(sm: DataSm) -> bytes:
    return b"".join(
        (
            _cstr(sm.service_type, 6, "service_type"),
            bytes([sm.source_addr_ton, sm.source_addr_npi]),
            _cstr(sm.source_addr, 65, "source_addr"),
            bytes([sm.dest_addr_ton, sm.dest_addr_npi]),
            _cstr(sm.destination_addr, 65, "destination_addr"),
            bytes([sm.esm_class, sm.registered_delivery, sm.data_coding]),
            _encode_tlvs(sm.tlvs),
        )
    )


# ---- decoding ----------------------------------------------------------------------------


def frame_length(header: bytes) -> int:
    """The command_length from the first 4 octets, checked; PduError(framing) if absurd."""
    length = int.from_bytes(header[:4], "big")
    if not HEADER_SIZE <= length <= MAX_PDU_SIZE:
        raise PduError(f"command_length {length} out of range", ESME_RINVCMDLEN, framing=True)
    return length


class _Reader:
    """A cursor over a PDU body that raises PduError instead of IndexError."""

    def __init__(self, data: bytes, command_id: int, sequence: int) -> None:
        self.data = data
        self.pos = 0
        self._command_id = command_id
        self._sequence = sequence

    def fail(self, message: str, status: int) -> PduError:
        return PduError(message, status, command_id=self._command_id, sequence=self._sequence)

    def u8(self, name: str) -> int:
        if self.pos >= len(self.data):
            raise self.fail(f"body ends before {name}", ESME_RINVCMDLEN)
        self.pos += 1
        return self.data[self.pos - 1]

    def octets(self, n: int, name: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"body ends inside {name}", ESME_RINVMSGLEN)
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def cstr(self, size: int, name: str, status: int = ESME_RINVCMDLEN) -> str:
        end = self.data.find(b"\x00", self.pos, self.pos + size)
        if end < 0:
            raise self.fail(f"{name} is not NUL-terminated within {size} octets", status)
        raw = self.data[self.pos : end]
        self.pos = end + 1
        return raw.decode("latin-1")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def tlvs(self) -> tuple[Tlv, ...]:
        out: list[Tlv] = []
        while not self.at_end():
            if self.pos + 4 > len(self.data):
                raise self.fail("truncated TLV header", ESME_RINVOPTPARSTREAM)
            tag, length = struct.unpack_from(">HH", self.data, self.pos)
            self.pos += 4
            if self.pos + length > len(self.data):
                raise self.fail(f"TLV 0x{tag:04x} overruns the PDU", ESME_RINVOPTPARSTREAM)
            value = self.data[self.pos : self.pos + length]
            self.pos += length
            expected = _TLV_LENGTHS.get(tag)
            if expected is not None and length != expected:
                raise self.fail(f"TLV 0x{tag:04x} has length {length}", ESME_RINVPARLEN)
            if tag == Tag.RECEIPTED_MESSAGE_ID and (length > 65 or 0 in value[:-1]):
                raise self.fail("receipted_message_id is malformed", ESME_RINVPARLEN)
            out.append((tag, value))
        return tuple(out)


def decode(frame: bytes) -> Pdu:
    """Decode one complete PDU (header included); PduError if it is malformed."""
    if len(frame) < HEADER_SIZE:
        raise PduError("PDU shorter than its header", ESME_RINVCMDLEN, framing=True)
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise PduError(
            f"command_length {length} != {len(frame)} octets received",
            ESME_RINVCMDLEN,
            command_id=command_id,
            sequence=sequence,
            framing=True,
        )
    cid = _COMMAND_IDS.get(command_id)
    if cid is None:
        raise PduError(
            f"unknown command_id 0x{command_id:08x}",
            ESME_RINVCMDID,
            command_id=command_id,
            sequence=sequence,
        )
    if cid in _MSG_RESPS and length > HEADER_SIZE and frame[-1] == 0:
        # The answer to every submit: a message_id and nothing after it, read without
        # a cursor. Anything else (TLVs, a NUL inside) takes the checked path below.
        end = frame.find(b"\x00", HEADER_SIZE, HEADER_SIZE + 65)
        if end == length - 1:
            message_id = frame[HEADER_SIZE:end].decode("latin-1")
            return Pdu(cid, sequence, status, MessageResp(message_id))
    r = _Reader(frame[HEADER_SIZE:], command_id, sequence)
    body = _decode_body(cid, status, r)
    if not r.at_end():
        raise r.fail(f"{len(r.data) - r.pos} trailing octets", ESME_RINVCMDLEN)
    return Pdu(cid, sequence, status, body)


def _decode_body(cid: CommandId, status: int, r: _Reader) -> Body:
    # A response with a non-zero status may omit its body (SMPP 3.4 section 3.3).
    if cid.is_response and status != 0 and r.at_end():
        return BindResp() if cid in _BIND_RESPS else (MessageResp() if cid in _MSG_RESPS else EMPTY)
    if cid in BIND_COMMANDS:
        return Bind(
            system_id=r.cstr(16, "system_id", ESME_RINVSYSID),
            password=r.cstr(9, "password", ESME_RINVPASWD),
            system_type=r.cstr(13, "system_type", ESME_RINVSYSTYP),
            interface_version=r.u8("interface_version"),
            addr_ton=r.u8("addr_ton"),
            addr_npi=r.u8("addr_npi"),
            address_range=r.cstr(41, "address_range"),
        )
    if cid in _BIND_RESPS:
        return BindResp(system_id=r.cstr(16, "system_id", ESME_RINVSYSID), tlvs=r.tlvs())
    if cid in _MSG_RESPS:
        if cid == CommandId.DELIVER_SM_RESP and r.at_end():
            return MessageResp()  # some SMSCs and ESMEs omit the (unused) NUL
        return MessageResp(message_id=r.cstr(65, "message_id", ESME_RINVMSGID), tlvs=r.tlvs())
    if cid in (CommandId.SUBMIT_SM, CommandId.DELIVER_SM):
        return _decode_short_message(r)
    if cid == CommandId.DATA_SM:
        return _decode_data_sm(r)
    return EMPTY


_BIND_RESPS = frozenset(
    {
        CommandId.BIND_RECEIVER_RESP,
        CommandId.BIND_TRANSMITTER_RESP,
        CommandId.BIND_TRANSCEIVER_RESP,
    }
)
_MSG_RESPS = frozenset(
    {CommandId.SUBMIT_SM_RESP, CommandId.DELIVER_SM_RESP, CommandId.DATA_SM_RESP}
)


def _decode_short_message(r: _Reader) -> ShortMessage:
    service_type = r.cstr(6, "service_type", ESME_RINVSERTYP)
    src_ton, src_npi = r.u8("source_addr_ton"), r.u8("source_addr_npi")
    source = r.cstr(21, "source_addr", ESME_RINVSRCADR)
    dst_ton, dst_npi = r.u8("dest_addr_ton"), r.u8("dest_addr_npi")
    dest = r.cstr(21, "destination_addr", ESME_RINVDSTADR)
    esm_class, protocol_id, priority = r.u8("esm_class"), r.u8("protocol_id"), r.u8("priority")
    schedule = r.cstr(17, "schedule_delivery_time", ESME_RINVSCHED)
    validity = r.cstr(17, "validity_period", ESME_RINVEXPIRY)
    registered, replace = r.u8("registered_delivery"), r.u8("replace_if_present_flag")
    data_coding, default_id = r.u8("data_coding"), r.u8("sm_default_msg_id")
    sm_length = r.u8("sm_length")
    if sm_length > 254:
        raise r.fail(f"sm_length {sm_length} > 254", ESME_RINVMSGLEN)
    short_message = r.octets(sm_length, "short_message")
    return ShortMessage(
        source_addr=source,
        destination_addr=dest,
        short_message=short_message,
        service_type=service_type,
        source_addr_ton=src_ton,
        source_addr_npi=src_npi,
        dest_addr_ton=dst_ton,
        dest_addr_npi=dst_npi,
        esm_class=esm_class,
        protocol_id=protocol_id,
        priority_flag=priority,
        schedule_delivery_time=schedule,
        validity_period=validity,
        registered_delivery=registered,
        replace_if_present_flag=replace,
        data_coding=data_coding,
        sm_default_msg_id=default_id,
        tlvs=r.tlvs(),
    )


def _decode_data_sm(r: _Reader) -> DataSm:
    service_type = r.cstr(6, "service_type", ESME_RINVSERTYP)
    src_ton, src_npi = r.u8("source_addr_ton"), r.u8("source_addr_npi")
    source = r.cstr(65, "source_addr", ESME_RINVSRCADR)
    dst_ton, dst_npi = r.u8("dest_addr_ton"), r.u8("dest_addr_npi")
    dest = r.cstr(65, "destination_addr", ESME_RINVDSTADR)
    return DataSm(
        source_addr=source,
        destination_addr=dest,
        service_type=service_type,
        source_addr_ton=src_ton,
        source_addr_npi=src_npi,
        dest_addr_ton=dst_ton,
        dest_addr_npi=dst_npi,
        esm_class=r.u8("esm_class"),
        registered_delivery=r.u8("registered_delivery"),
        data_coding=r.u8("data_coding"),
        tlvs=r.tlvs(),
    )


def response_id(command_id: CommandId) -> CommandId:
    """The response command_id of a request."""
    return CommandId(command_id | RESPONSE_BIT)


def absolute_time(timestamp: float) -> str:
    """SMPP absolute time ``YYMMDDhhmmsstnnp`` in UTC (section 7.1.1), e.g. for validity."""
    return _absolute_second(int(timestamp))


@functools.lru_cache(maxsize=256)
def _absolute_second(second: int) -> str:
    # Cached: messages queued in the same second share their validity period.
    return time.strftime("%y%m%d%H%M%S", time.gmtime(second)) + "000+"
