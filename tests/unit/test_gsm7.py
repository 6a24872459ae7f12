"""The GSM 7-bit codec: tables, escapes, national shift tables, packing."""

from __future__ import annotations

import gsm0338
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsms.sms import gsm7
from mailsms.sms.shift_tables import (
    DEFAULT_ALPHABET,
    DEFAULT_EXTENSION,
    LANGUAGE_IDS,
    LOCKING_TABLES,
    SINGLE_SHIFT_TABLES,
)


@pytest.mark.parametrize(
    ("text", "septets"),
    [
        ("", b""),
        ("@", b"\x00"),
        ("Hello", b"\x48\x65\x6c\x6c\x6f"),
        ("£$¥èé", b"\x01\x02\x03\x04\x05"),
        ("ΔΦΓΛΩΠΨΣΘΞ", bytes(range(0x10, 0x1B)).replace(b"\x11", b"")),
        ("ÆæßÉ", b"\x1c\x1d\x1e\x1f"),
        ("¤¡§¿äöñüà", b"\x24\x40\x5f\x60\x7b\x7c\x7d\x7e\x7f"),
        ("\n\r", b"\x0a\x0d"),
        ("€", b"\x1b\x65"),
        ("[]{}~", b"\x1b\x3c\x1b\x3e\x1b\x28\x1b\x29\x1b\x3d"),
        ("^|\\\f", b"\x1b\x14\x1b\x40\x1b\x2f\x1b\x0a"),
        ("a€b", b"\x61\x1b\x65\x62"),
    ],
)
def test_encode_decode_default(text: str, septets: bytes) -> None:
    assert gsm7.encode_septets(text) == septets
    assert gsm7.decode_septets(septets) == text
    assert gsm7.septet_length(text) == len(septets)
    assert gsm7.is_gsm7(text)


@pytest.mark.parametrize("text", ["ж", "😀", "ç", "\x1b", "\t", "á", "“", "a\x00"])
def test_unencodable_raises(text: str) -> None:
    assert not gsm7.is_gsm7(text)
    with pytest.raises(ValueError, match="not encodable"):
        gsm7.encode_septets(text)
    with pytest.raises(ValueError):
        gsm7.septet_length(text)


def test_tables_have_128_codes_and_escape_in_place() -> None:
    for table in (DEFAULT_ALPHABET, *LOCKING_TABLES.values()):
        assert len(table) == 128
        assert table[0x1B] == "\x1b"
        assert len(set(table)) == 128
    for single in SINGLE_SHIFT_TABLES.values():
        assert all(0 <= code < 128 and code != 0x1B for code in single)
        assert DEFAULT_EXTENSION.items() <= single.items()  # national tables keep €, [ ...


@pytest.mark.parametrize(
    ("text", "single", "locking", "septets"),
    [
        ("ş", "turkish", None, b"\x1b\x73"),
        ("ş", None, "turkish", b"\x1d"),
        ("İı", "turkish", "turkish", b"\x40\x07"),
        ("€", None, "turkish", b"\x04"),
        ("é", "spanish", None, b"\x05"),
        ("áÁç", "spanish", None, b"\x1b\x61\x1b\x41\x1b\x09"),
        ("ã", "portuguese", None, b"\x1b\x7b"),
        ("ã", None, "portuguese", b"\x7b"),
        ("^", None, "portuguese", b"\x16"),  # one septet when the locking table has it
        ("{", None, "portuguese", b"\x1b\x28"),
        ("Φ", "portuguese", "portuguese", b"\x1b\x12"),
    ],
)
def test_national_tables(
    text: str, single: str | None, locking: str | None, septets: bytes
) -> None:
    assert gsm7.encode_septets(text, single, locking) == septets
    assert gsm7.decode_septets(septets, single, locking) == text


def test_unknown_table_is_value_error() -> None:
    with pytest.raises(ValueError, match="spanish"):
        gsm7.encode_septets("a", None, "spanish")  # Spanish has no locking shift table
    with pytest.raises(ValueError):
        gsm7.is_gsm7("a", "klingon")


def test_language_ids_match_ts_23038() -> None:
    assert dict(LANGUAGE_IDS) == {"turkish": 1, "spanish": 2, "portuguese": 3}


@pytest.mark.parametrize(
    ("septets", "text"),
    [
        (b"\x1b\x41", "A"),  # undefined extension code: the main-table character
        (b"\x1b\x1b\x41", " A"),  # ESC ESC is reserved: a space
        (b"a\x1b", "a "),  # a trailing escape: a space
    ],
)
def test_decode_is_lenient_like_a_handset(septets: bytes, text: str) -> None:
    assert gsm7.decode_septets(septets) == text


def test_decode_rejects_non_septets() -> None:
    with pytest.raises(ValueError, match="not a septet"):
        gsm7.decode_septets(b"\x80")


@pytest.mark.parametrize(
    ("septets", "fill", "packed"),
    [
        (b"", 0, b""),
        (gsm7.encode_septets("hellohello"), 0, bytes.fromhex("E8329BFD4697D9EC37")),
        (gsm7.encode_septets("Hi"), 0, bytes.fromhex("C834")),
        (b"\x7f" * 8, 0, b"\xff" * 7),
        (gsm7.encode_septets("A"), 1, bytes.fromhex("82")),  # after a 6-octet UDH
        (b"\x00\x7f", 6, bytes.fromhex("00E00F")),  # 0x7F << 13
    ],
)
def test_pack_unpack(septets: bytes, fill: int, packed: bytes) -> None:
    assert gsm7.pack_septets(septets, fill) == packed
    assert gsm7.unpack_septets(packed, len(septets), fill) == septets


def test_pack_errors() -> None:
    with pytest.raises(ValueError):
        gsm7.pack_septets(b"\x80")
    with pytest.raises(ValueError):
        gsm7.pack_septets(b"a", fill_bits=7)
    with pytest.raises(ValueError):
        gsm7.unpack_septets(b"\x00", 2)


def test_full_default_alphabet_agrees_with_gsm0338() -> None:
    codec = gsm0338.Codec()
    text = DEFAULT_ALPHABET.replace("\x1b", "") + "".join(DEFAULT_EXTENSION.values())
    assert gsm7.encode_septets(text) == codec.encode(text)[0]
    assert codec.decode(gsm7.encode_septets(text))[0] == text


def test_spanish_single_shift_agrees_with_gsm0338() -> None:
    codec = gsm0338.Codec(single_shift_decode_map=gsm0338.SINGLE_SHIFT_CHARACTER_SET_SPANISH)
    text = "".join(SINGLE_SHIFT_TABLES["spanish"].values()) + "ñandú"
    assert gsm7.encode_septets(text, "spanish") == codec.encode(text)[0]


def test_gsm0338_disagreement_escape_character() -> None:
    # gsm0338 (and smsutil) encode the ESC control character U+001B as septet 0x1B, which a
    # receiver reads as the start of an escape sequence; we refuse it (it becomes UCS-2).
    assert gsm0338.Codec().encode("\x1b")[0] == b"\x1b"
    assert not gsm7.is_gsm7("\x1b")


_ALL_TABLES = [(None, None), ("turkish", "turkish"), ("spanish", None), ("portuguese", None)]


@given(
    text=st.text(
        alphabet=st.sampled_from(
            sorted(set(DEFAULT_ALPHABET) | set(DEFAULT_EXTENSION.values()) | set("`€ÇçşĞ😀\x00"))
        ),
        max_size=60,
    ),
    which=st.sampled_from(_ALL_TABLES),
)
def test_translate_fast_path_agrees_with_the_table_walk(
    text: str, which: tuple[str | None, str | None]
) -> None:
    """encode_septets' str.translate path gives the bytes of the per-character walk, and
    refuses exactly what the walk refuses."""
    t = gsm7.tables(*which)
    try:
        expected: bytes | None = b"".join(t.encode_map[c] for c in text)
    except KeyError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError, match="not encodable"):
            gsm7.encode_septets(text, *which)
    else:
        assert gsm7.encode_septets(text, *which) == expected
