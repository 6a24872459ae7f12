"""Inbound: UDH parsing, part decoding and reassembly of concatenated SMS."""

from __future__ import annotations

import pytest

from mailsms.sms.encode import SmsOptions, encode
from mailsms.sms.reassemble import (
    Assembled,
    Fragment,
    Reassembler,
    decode_part,
    fragment_from_udh,
)
from mailsms.sms.udh import (
    Udh,
    build_udh,
    concat_ie,
    locking_shift_ie,
    parse_udh,
    single_shift_ie,
)

# --- UDH -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hexed", "expected"),
    [
        ("050003cc0301", Udh(concat=(0xCC, 3, 1), concat_bits=8)),
        ("06080412340202", Udh(concat=(0x1234, 2, 2), concat_bits=16)),
        ("03240101", Udh(single_shift=1)),
        ("0b0003010201240102250103", Udh((1, 2, 1), 8, 2, 3)),
        # other IEs kept raw: application port addressing (0x05), empty IE 0x70
        (
            "0d05041581158100030002027000",
            Udh((0, 2, 2), 8, other=((5, bytes.fromhex("15811581")), (0x70, b""))),
        ),
        ("0a00030102010003010202", Udh((1, 2, 2), 8)),  # a repeated IE: the last wins
    ],
)
def test_parse_udh(hexed: str, expected: Udh) -> None:
    assert parse_udh(bytes.fromhex(hexed)) == expected


@pytest.mark.parametrize(
    "hexed",
    [
        "",  # nothing
        "05000301",  # UDHL larger than what follows
        "0300030102",  # UDHL smaller than what follows
        "0200",  # IE header truncated
        "03000501",  # IE longer than the UDH
        "0400020102",  # concat IE of the wrong length
        "050003010300",  # seq 0
        "050003010204",  # seq > total
        "050003010001",  # total 0
        "0424020101",  # shift IE of the wrong length
    ],
)
def test_parse_udh_malformed_is_value_error(hexed: str) -> None:
    with pytest.raises(ValueError):
        parse_udh(bytes.fromhex(hexed))


def test_builders() -> None:
    assert concat_ie(5, 3, 2) == bytes.fromhex("0003050302")
    assert concat_ie(0xABCD, 3, 2, 16) == bytes.fromhex("0804abcd0302")
    assert single_shift_ie(1) == bytes.fromhex("240101")
    assert locking_shift_ie(3) == bytes.fromhex("250103")
    assert build_udh() == b""
    assert build_udh(concat_ie(5, 3, 2), locking_shift_ie(1)) == bytes.fromhex("080003050302250101")
    for bad in [(256, 2, 1, 8), (0, 2, 3, 8), (0, 0, 0, 8), (65536, 2, 1, 16)]:
        with pytest.raises(ValueError):
            concat_ie(*bad)  # type: ignore[arg-type]


# --- reassembly ----------------------------------------------------------------------------


def frag(seq: int, total: int = 3, ref: int = 7, at: float = 100.0, **kw: str) -> Fragment:
    return Fragment(
        from_=kw.get("from_", "+4915100000001"),
        to=kw.get("to", "+4915100000002"),
        ref=ref,
        total=total,
        seq=seq,
        text=kw.get("text", f"<{seq}>"),
        carrier_id=f"id{seq}",
        received_at=at,
    )


def test_single_part_returns_at_once() -> None:
    r = Reassembler()
    out = r.add(frag(1, total=1, text="hi"))
    assert out == Assembled("+4915100000001", "+4915100000002", "hi", ("id1",), 1, False, 100.0)
    assert len(r) == 0


def test_out_of_order_and_duplicates() -> None:
    r = Reassembler()
    assert r.add(frag(3, at=103)) is None
    assert r.add(frag(1, at=101)) is None
    assert r.add(frag(3, at=104)) is None  # duplicate
    out = r.add(frag(2, at=102))
    assert out is not None
    assert (out.text, out.carrier_ids, out.segments, out.incomplete) == (
        "<1><2><3>",
        ("id1", "id2", "id3"),
        3,
        False,
    )
    assert out.received_at == 101
    assert len(r) == 0
    assert r.add(frag(1, at=200)) is None  # a late duplicate starts a new set
    assert len(r) == 1


def test_sets_are_separated_by_sender_recipient_reference_and_total() -> None:
    r = Reassembler()
    assert r.add(frag(1, ref=1)) is None
    assert r.add(frag(2, ref=2)) is None
    assert r.add(frag(1, from_="+4915100000009")) is None
    assert r.add(frag(1, total=2)) is None
    assert len(r) == 4


def test_expire_delivers_incomplete_in_seq_order() -> None:
    r = Reassembler(timeout=60)
    r.add(frag(3, total=4, at=100))
    r.add(frag(1, total=4, at=110))
    r.add(frag(2, total=3, ref=9, at=100))
    assert r.expire(now=165) == [
        Assembled("+4915100000001", "+4915100000002", "<2>", ("id2",), 1, True, 100.0)
    ]
    out = r.expire(now=170)  # 60 s after the *last* part of the first set
    assert [(a.text, a.segments, a.incomplete, a.received_at) for a in out] == [
        ("<1><3>", 2, True, 100.0)
    ]
    assert r.expire(now=10_000) == []


def test_sar_style_sixteen_bit_reference() -> None:
    r = Reassembler()
    assert r.add(frag(2, total=2, ref=0xBEEF)) is None
    out = r.add(frag(1, total=2, ref=0xBEEF))
    assert out is not None and out.text == "<1><2>"


def test_bad_seq_rejected() -> None:
    with pytest.raises(ValueError):
        Reassembler().add(frag(4, total=3))
    with pytest.raises(ValueError):
        Reassembler(timeout=0)


def test_fragment_from_udh() -> None:
    udh = bytes.fromhex("0d05041581158100030002027000")  # port IE, then concat 2 of 2
    f = fragment_from_udh("a", "b", udh, "x", "c1", 5.0)
    assert (f.ref, f.total, f.seq) == (0, 2, 2)
    f16 = fragment_from_udh("a", "b", bytes.fromhex("06080412340302"), "x", "c1", 5.0)
    assert (f16.ref, f16.total, f16.seq) == (0x1234, 3, 2)
    alone = fragment_from_udh("a", "b", b"", "x", "c1", 5.0)
    assert (alone.total, alone.seq) == (1, 1)
    no_concat = fragment_from_udh("a", "b", bytes.fromhex("03240101"), "x", "c1", 5.0)
    assert no_concat.total == 1
    with pytest.raises(ValueError):
        fragment_from_udh("a", "b", b"\x05\x00", "x", "c1", 5.0)


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("plain " * 60, SmsOptions()),
        ("ж😀" * 60, SmsOptions()),
        ("şğİı ok " * 40, SmsOptions(shift_tables=("turkish",))),
        ("Ação ê Φ { " * 30, SmsOptions(shift_tables=("portuguese",))),
    ],
)
def test_outbound_parts_reassemble(text: str, options: SmsOptions) -> None:
    enc = encode(text, options, reference=77)
    r = Reassembler()
    results = []
    for part in reversed(enc.parts):
        body = decode_part(part.udh, part.payload, enc.encoding)
        results.append(r.add(fragment_from_udh("a", "b", part.udh, body, str(part.seq), 1.0)))
    assembled = results[-1]
    assert assembled is not None and assembled.text == enc.text


def test_decode_part_unknown_table_falls_back_to_default() -> None:
    assert decode_part(bytes.fromhex("03250109"), b"\x41", "gsm7") == "A"
    with pytest.raises(ValueError):
        decode_part(b"", b"", "latin1")
