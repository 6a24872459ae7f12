"""The SMPP framer: whole PDUs out of a byte stream, however TCP chunks it."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from mailsms.carriers.smpp.framing import Framer
from mailsms.carriers.smpp.pdu import (
    CommandId,
    MessageResp,
    Pdu,
    ShortMessage,
    Tag,
    decode,
    encode,
    tlv_u16,
)

MO = ShortMessage("447700900123", "ACME", b"x" * 200, tlvs=(tlv_u16(Tag.SAR_MSG_REF_NUM, 7),))
STREAM = [
    encode(Pdu(CommandId.SUBMIT_SM_RESP, 1, 0, MessageResp("0000ABCD"))),
    encode(Pdu(CommandId.ENQUIRE_LINK, 2)),  # header only
    encode(Pdu(CommandId.DELIVER_SM, 3, 0, MO)),
    encode(Pdu(CommandId.SUBMIT_SM_RESP, 4, 0x58)),
]
WIRE = b"".join(STREAM)


def feed_all(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    return [frame for chunk in chunks for frame in framer.feed(chunk)]


def test_one_pdu_per_chunk_is_returned_as_is() -> None:
    framer = Framer()
    for pdu in STREAM:
        (frame,) = framer.feed(pdu)
        assert frame is pdu  # no copy in the common case
    assert framer.pending == 0


def test_several_pdus_in_one_chunk() -> None:
    framer = Framer()
    assert framer.feed(WIRE) == STREAM
    assert framer.pending == 0 and framer.error is None


def test_split_at_every_byte_boundary() -> None:
    for cut in range(1, len(WIRE)):
        framer = Framer()
        assert feed_all(framer, [WIRE[:cut], WIRE[cut:]]) == STREAM, cut
        assert framer.pending == 0


def test_one_byte_at_a_time() -> None:
    framer = Framer()
    frames = feed_all(framer, [WIRE[i : i + 1] for i in range(len(WIRE))])
    assert frames == STREAM
    assert [decode(f).sequence for f in frames] == [1, 2, 3, 4]


@given(st.lists(st.integers(min_value=0, max_value=len(WIRE)), max_size=12))
def test_any_chunking(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(WIRE)]
    chunks = [WIRE[a:b] for a, b in itertools.pairwise(bounds)]
    assert feed_all(Framer(), chunks) == STREAM


def test_partial_pdu_is_held() -> None:
    framer = Framer()
    assert framer.feed(STREAM[2][:20]) == []  # nothing whole yet
    assert framer.pending == 20
    assert framer.feed(b"") == []
    assert framer.feed(STREAM[2][20:]) == [STREAM[2]]


def test_malformed_length_keeps_what_came_before_and_stops() -> None:
    bad = (8).to_bytes(4, "big") + bytes(12)  # command_length 8 < 16
    framer = Framer()
    assert framer.feed(STREAM[0] + bad + STREAM[1]) == [STREAM[0]]
    assert framer.error is not None and framer.error.framing
    assert "command_length 8 out of range" in str(framer.error)
    assert framer.feed(STREAM[1]) == []  # the stream is not trusted any more


def test_malformed_length_in_a_held_tail() -> None:
    huge = (0x7FFF_FFFF).to_bytes(4, "big")
    framer = Framer()
    assert framer.feed(STREAM[0] + huge[:2]) == [STREAM[0]]
    assert framer.error is None
    assert framer.feed(huge[2:] + bytes(50)) == []
    assert framer.error is not None  # refused at once, not buffered up to 2 GB
    assert framer.pending == 0
