"""The SMPP codec: round trips, exact bytes, and malformed input as PduError (never a crash)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsms.carriers.smpp import status
from mailsms.carriers.smpp.pdu import (
    EMPTY,
    Bind,
    BindResp,
    CommandId,
    DataSm,
    MessageResp,
    Pdu,
    PduError,
    ShortMessage,
    Tag,
    absolute_time,
    decode,
    encode,
    frame_length,
    tlv_u8,
    tlv_u16,
)


def test_enquire_link_exact_bytes() -> None:
    assert encode(Pdu(CommandId.ENQUIRE_LINK, 7)) == bytes.fromhex(
        "00000010000000150000000000000007"
    )


def test_bind_transceiver_exact_bytes() -> None:
    wire = encode(Pdu(CommandId.BIND_TRANSCEIVER, 1, 0, Bind("acme", "pw", "")))
    assert wire == bytes.fromhex("0000001d000000090000000000000001") + (
        b"acme\x00pw\x00\x00\x34\x00\x00\x00"
    )


@pytest.mark.parametrize(
    "pdu",
    [
        Pdu(CommandId.BIND_TRANSMITTER, 1, 0, Bind("sys", "secret", "VMA", 0x34, 1, 1, "^1")),
        Pdu(CommandId.BIND_RECEIVER_RESP, 2, 0, BindResp("SMSC", (tlv_u8(0x0210, 0x34),))),
        Pdu(CommandId.BIND_TRANSCEIVER_RESP, 2, 0x0E, BindResp()),
        Pdu(CommandId.SUBMIT_SM_RESP, 3, 0, MessageResp("abc123")),
        Pdu(CommandId.DELIVER_SM_RESP, 4, 0x64, MessageResp()),
        Pdu(CommandId.UNBIND, 5),
        Pdu(CommandId.GENERIC_NACK, 6, 0x03),
        Pdu(
            CommandId.SUBMIT_SM,
            7,
            0,
            ShortMessage(
                source_addr="ACME",
                source_addr_ton=5,
                destination_addr="447700900123",
                dest_addr_ton=1,
                dest_addr_npi=1,
                esm_class=0x40,
                registered_delivery=1,
                validity_period="240101120000000+",
                data_coding=8,
                short_message=b"\x05\x00\x03\x01\x02\x01" + "hé".encode("utf-16-be"),
                tlvs=(tlv_u16(Tag.USER_MESSAGE_REFERENCE, 513),),
            ),
        ),
        Pdu(
            CommandId.DATA_SM,
            8,
            0,
            DataSm("a" * 64, "b" * 64, tlvs=((Tag.MESSAGE_PAYLOAD, b"x" * 1000),)),
        ),
    ],
)
def test_round_trip(pdu: Pdu) -> None:
    assert decode(encode(pdu)) == pdu


def test_error_response_without_body_is_accepted() -> None:
    wire = struct.pack(">IIII", 16, CommandId.SUBMIT_SM_RESP, 0x58, 9)
    assert decode(wire) == Pdu(CommandId.SUBMIT_SM_RESP, 9, 0x58, MessageResp())


def _submit_sm(body_tail: bytes = b"") -> bytes:
    body = encode(Pdu(CommandId.SUBMIT_SM, 1, 0, ShortMessage("a", "b", b"hi")))[16:]
    body += body_tail
    return struct.pack(">IIII", 16 + len(body), 4, 0, 1) + body


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (struct.pack(">IIII", 16, 0x0000_00FF, 0, 1), 0x03),  # unknown command_id
        (_submit_sm()[:-3] + b"", None),  # command_length disagrees: framing error
        (_submit_sm(b"\x04\x24\x00\x05ab"), 0xC0),  # TLV overruns the PDU
        (_submit_sm(b"\x02\x0c\x00\x01\x05"), 0xC2),  # sar_msg_ref_num must be 2 octets
        (_submit_sm(b"\x00"), 0xC0),  # truncated TLV header
    ],
)
def test_malformed_pdus_raise_pdu_error(wire: bytes, code: int | None) -> None:
    with pytest.raises(PduError) as info:
        decode(wire)
    if code is None:
        assert info.value.framing
    else:
        assert info.value.status == code
        assert info.value.sequence == 1


def test_c_octet_string_without_nul_is_refused() -> None:
    body = b"x" * 30  # system_id never terminated
    wire = struct.pack(">IIII", 16 + len(body), CommandId.BIND_TRANSCEIVER, 0, 3) + body
    with pytest.raises(PduError) as info:
        decode(wire)
    assert info.value.status == 0x0F  # ESME_RINVSYSID


def test_too_long_fields_are_refused_on_encode() -> None:
    with pytest.raises(ValueError, match="system_id"):
        encode(Pdu(CommandId.BIND_TRANSCEIVER, 1, 0, Bind("s" * 16)))
    with pytest.raises(ValueError, match="254"):
        encode(Pdu(CommandId.SUBMIT_SM, 1, 0, ShortMessage("a", "b", b"x" * 255)))


def test_frame_length_bounds() -> None:
    assert frame_length(b"\x00\x00\x00\x10") == 16
    for bad in (b"\x00\x00\x00\x0f", b"\x7f\xff\xff\xff"):
        with pytest.raises(PduError):
            frame_length(bad)


@given(st.binary(max_size=300))
def test_decode_never_crashes(garbage: bytes) -> None:
    wire = struct.pack(">I", 16 + len(garbage)) + bytes.fromhex("000000040000000000000001")
    with contextlib.suppress(PduError):
        decode(wire + garbage)


@given(st.binary(min_size=16, max_size=200))
def test_decode_arbitrary_frames(frame: bytes) -> None:
    with contextlib.suppress(PduError):
        decode(frame)


def test_empty_body_is_the_singleton() -> None:
    assert decode(encode(Pdu(CommandId.ENQUIRE_LINK_RESP, 1))).body == EMPTY


def test_absolute_time_is_utc_with_quarter_hours() -> None:
    assert absolute_time(0) == "700101000000000+"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (0x58, "temporary"),
        (0x14, "temporary"),
        (0x08, "temporary"),
        (0x0B, "permanent"),
        (0x0A, "permanent"),
        (0x401, "temporary"),
    ],
)
def test_status_kinds(code: int, kind: str) -> None:
    assert status.kind(code) == kind


@pytest.mark.parametrize(
    "body",
    [
        b"0000ABCD\x00",  # the usual answer: read by the short path
        b"\x00",  # an empty message_id
        b"A\x00B\x00",  # a NUL inside: trailing octets, refused
        b"ABC\x00" + bytes.fromhex("001e00024100"),  # a TLV after the id
        b"X" * 64 + b"\x00",  # the longest id
        b"X" * 65 + b"\x00",  # one octet too long
        b"ABC",  # not terminated
    ],
)
@pytest.mark.parametrize("command", [CommandId.SUBMIT_SM_RESP, CommandId.DELIVER_SM_RESP])
@pytest.mark.parametrize("command_status", [0, 0x58])
def test_message_responses_decode_alike_on_both_paths(
    body: bytes, command: CommandId, command_status: int
) -> None:
    """decode's short path for a bare message_id agrees with the cursor, field by field."""
    from mailsms.carriers.smpp import pdu as codec

    wire = struct.pack(">IIII", 16 + len(body), command, command_status, 5) + body
    try:
        fast: Pdu | str = decode(wire)
    except PduError as exc:
        fast = f"{exc.status}: {exc}"
    reader = codec._Reader(wire[16:], command, 5)
    try:
        body_value = codec._decode_body(command, command_status, reader)
        if not reader.at_end():
            raise reader.fail(f"{len(reader.data) - reader.pos} trailing octets", 0x02)
        slow: Pdu | str = Pdu(command, 5, command_status, body_value)
    except PduError as exc:
        slow = f"{exc.status}: {exc}"
    assert fast == slow
