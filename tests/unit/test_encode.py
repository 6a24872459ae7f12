"""Alphabet choice, segment limits at every boundary, transliteration, length policy."""

from __future__ import annotations

import itertools
import json

import pytest

from mailsms.sms import gsm7
from mailsms.sms.encode import (
    Encoded,
    ReferenceCounter,
    SmsOptions,
    TooLong,
    count_segments,
    describe,
    encode,
    format_human,
    plan,
)
from mailsms.sms.udh import parse_udh

CYR = "ж"  # one UTF-16 unit, not in any GSM table
EMOJI = "😀"  # two UTF-16 units (a surrogate pair)
ALL_TABLES = SmsOptions(shift_tables=("turkish", "spanish", "portuguese"))


def sizes(enc: Encoded) -> list[int]:
    return [part.size for part in enc.parts]


# --- GSM-7 boundaries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [0]),
        ("a" * 159, [159]),
        ("a" * 160, [160]),
        ("a" * 161, [153, 8]),
        ("a" * 158 + "€", [160]),
        ("a" * 159 + "€", [153, 8]),
        ("a" * 306, [153, 153]),
        ("a" * 307, [153, 153, 1]),
        # an escape at the 153-septet boundary moves whole to the next part
        ("a" * 151 + "€" + "a" * 10, [153, 10]),
        ("a" * 152 + "€" + "a" * 10, [152, 12]),
        ("a" * 153 + "€" + "a" * 10, [153, 12]),
        ("a" * 154 + "€", [156]),
        ("a" * 154 + "€" * 4, [153, 9]),
    ],
)
def test_gsm7_boundaries(text: str, expected: list[int]) -> None:
    enc = encode(text, SmsOptions(transliterate=False))
    assert enc.encoding == "gsm7"
    assert sizes(enc) == expected
    assert "".join(p.text for p in enc.parts) == text
    for part in enc.parts:
        assert gsm7.decode_septets(part.payload) == part.text


def test_escape_is_never_split() -> None:
    enc = encode("a" * 152 + "€" + "a" * 10)
    assert enc.parts[0].payload[-1:] != b"\x1b"
    assert enc.parts[1].payload[:2] == b"\x1b\x65"


def test_sixteen_bit_reference_limits() -> None:
    opts = SmsOptions(reference_bits=16)
    assert sizes(encode("a" * 161, opts)) == [152, 9]
    assert sizes(encode(CYR * 71, opts)) == [132, 10]  # 66 + 5 units, in octets
    enc = encode("a" * 161, opts, reference=0x1234)
    assert enc.parts[0].udh == bytes.fromhex("06080412340201")
    assert parse_udh(enc.parts[1].udh).concat == (0x1234, 2, 2)


# --- UCS-2 boundaries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "units"),
    [
        (CYR * 70, [70]),
        (CYR * 71, [67, 4]),
        (CYR * 68 + EMOJI, [70]),
        (CYR * 69 + EMOJI, [67, 4]),
        (CYR * 66, [66]),
        (CYR * 67 + "a" * 4, [71 - 4, 4]),
        (CYR * 134, [67, 67]),
        (CYR * 135, [67, 67, 1]),
        # a surrogate pair at the 67-unit boundary moves whole to the next part
        (CYR * 65 + EMOJI + CYR * 10, [67, 10]),
        (CYR * 66 + EMOJI + CYR * 10, [66, 12]),
        (CYR * 67 + EMOJI + CYR * 10, [67, 12]),
        (CYR * 68 + EMOJI + CYR * 10, [67, 13]),
    ],
)
def test_ucs2_boundaries(text: str, units: list[int]) -> None:
    enc = encode(text)
    assert enc.encoding == "ucs2"
    assert sizes(enc) == [2 * u for u in units]
    for part in enc.parts:
        assert part.payload.decode("utf-16-be") == part.text  # strict: no lone surrogate


def test_gsm_text_with_one_foreign_char_goes_ucs2() -> None:
    enc = encode("Hello " + CYR)
    assert enc.encoding == "ucs2"
    assert enc.parts[0].payload == ("Hello " + CYR).encode("utf-16-be")


def test_udh_and_reference_in_every_part() -> None:
    enc = encode("a" * 400, reference=42)
    assert [parse_udh(p.udh).concat for p in enc.parts] == [(42, 3, 1), (42, 3, 2), (42, 3, 3)]
    assert enc.parts[0].udh == bytes.fromhex("0500032a0301")
    assert encode("short").parts[0].udh == b""


def test_reference_must_fit() -> None:
    with pytest.raises(ValueError, match="reference"):
        encode("a", reference=256)
    encode("a", SmsOptions(reference_bits=16), reference=65535)


# --- splitting at spaces -------------------------------------------------------------------


def test_prefers_space_when_it_costs_nothing() -> None:
    words = "word " * 40  # 200 septets: two parts either way
    enc = encode(words.strip())
    assert enc.segments == 2
    assert enc.parts[0].text.endswith(" ")
    assert not enc.parts[1].text.startswith(" ")


def test_does_not_prefer_space_when_it_costs_a_segment() -> None:
    text = "a" * 100 + " " + "b" * 205  # 306 septets: exactly two full parts
    enc = encode(text)
    assert sizes(enc) == [153, 153]


def test_long_word_without_spaces_is_cut_hard() -> None:
    assert sizes(encode("x" * 200)) == [153, 47]


# --- national shift tables -----------------------------------------------------------------


def test_shift_tables_only_when_allowed() -> None:
    text = "Günaydın, şu an İstanbul'dayım ğ. " * 3  # 105 chars: UCS-2 needs 2 segments
    assert encode(text, SmsOptions(transliterate=False)).encoding == "ucs2"
    enc = encode(text, SmsOptions(shift_tables=("turkish",), transliterate=False))
    assert (enc.encoding, enc.shift_table) == ("gsm7", "turkish")


def test_shift_table_used_only_when_cheaper_than_ucs2() -> None:
    # 30 characters: one segment either way, so plain UCS-2 wins (every handset shows it)
    short = "ş" * 30
    assert encode(short, SmsOptions(shift_tables=("turkish",), transliterate=False)).encoding == (
        "ucs2"
    )
    long = "ş" * 100  # UCS-2: 2 segments; Turkish locking shift: 1
    enc = encode(long, SmsOptions(shift_tables=("turkish",), transliterate=False))
    assert (enc.encoding, enc.shift_table, enc.segments) == ("gsm7", "turkish", 1)


@pytest.mark.parametrize(
    ("length", "expected"),
    [(155, [155]), (156, [149, 7]), (298, [149, 149]), (299, [149, 149, 1])],
)
def test_shift_ie_takes_udh_room(length: int, expected: list[int]) -> None:
    # Turkish locking shift alone: UDH 03 25 01 01 (4 octets) leaves 155 septets; with the
    # concatenation IE (9 octets) 149.
    text = "ş" * length
    enc = encode(text, SmsOptions(shift_tables=("turkish",), transliterate=False))
    assert enc.shift_table == "turkish"
    assert sizes(enc) == expected
    udh = parse_udh(enc.parts[0].udh)
    assert udh.locking_shift == 1
    for part in enc.parts:
        assert gsm7.decode_septets(part.payload, locking_shift="turkish") == part.text


def test_spanish_single_shift() -> None:
    text = "¿Qué tal? Canción, está aquí. " * 4  # 120 chars; UCS-2 2 segments, GSM-7 one
    enc = encode(text, SmsOptions(shift_tables=("spanish",), transliterate=False))
    assert (enc.encoding, enc.shift_table, enc.segments) == ("gsm7", "spanish", 1)
    assert enc.parts[0].udh == bytes.fromhex("03240102")
    assert gsm7.decode_septets(enc.parts[0].payload, "spanish") == text


def test_portuguese_both_tables_when_needed() -> None:
    # Φ is only in the single shift table; ã and ç cost one septet only in the locking table.
    # Single shift alone needs 4 segments, both tables 3.
    text = ("Ação ê Φ { " * 30).strip()
    enc = encode(text, SmsOptions(shift_tables=("portuguese",), transliterate=False))
    assert enc.shift_table == "portuguese"
    udh = parse_udh(enc.parts[0].udh)
    assert (udh.locking_shift, udh.single_shift) == (3, 3)


def test_unknown_shift_table_rejected() -> None:
    with pytest.raises(ValueError, match="unknown shift tables"):
        SmsOptions(shift_tables=("klingon",))


# --- transliteration -----------------------------------------------------------------------


def test_transliterates_when_it_is_the_only_ucs2_forcer() -> None:
    text = "Meeting at 10 — don’t be late… “ok”\u00a0thanks"
    enc = encode(text)
    assert enc.encoding == "gsm7"
    assert enc.text == 'Meeting at 10 - don\'t be late... "ok" thanks'
    assert enc.transliterated == (
        ("—", "-"),
        ("’", "'"),
        ("…", "..."),
        ("“", '"'),
        ("”", '"'),
        ("\u00a0", " "),
    )


def test_segments_saved() -> None:
    text = "“" + "a" * 100 + "”"  # UCS-2: 2 segments; GSM-7: 1
    enc = encode(text)
    assert (enc.encoding, enc.segments, enc.segments_saved) == ("gsm7", 1, 1)


def test_keeps_original_when_something_else_forces_ucs2() -> None:
    text = "“Hi” " + EMOJI
    enc = encode(text)
    assert (enc.encoding, enc.text, enc.transliterated, enc.segments_saved) == (
        "ucs2",
        text,
        (),
        0,
    )


def test_transliteration_switchable() -> None:
    assert encode("“Hi”", SmsOptions(transliterate=False)).encoding == "ucs2"


def test_transliteration_keeps_what_an_allowed_table_carries() -> None:
    enc = encode("Şükrü “hi”", SmsOptions(shift_tables=("turkish",)))
    assert (enc.text, enc.shift_table) == ('Şükrü "hi"', "turkish")
    assert enc.transliterated == (("“", '"'), ("”", '"'))


def test_transliteration_not_applied_when_it_costs_more() -> None:
    text = "…" * 60  # UCS-2: 1 segment; "..." * 60 = 180 septets: 2
    assert encode(text).encoding == "ucs2"


def test_zero_width_characters_dropped() -> None:
    enc = encode("a\u200bb")
    assert (enc.text, enc.transliterated) == ("ab", (("\u200b", ""),))


# --- length policy -------------------------------------------------------------------------


def test_reject() -> None:
    with pytest.raises(TooLong) as info:
        plan("a" * 1000, SmsOptions(max_segments=3))
    assert (info.value.segments, info.value.limit) == (7, 3)
    assert isinstance(info.value, ValueError)


def test_within_limit_is_one_message() -> None:
    [enc] = plan("a" * 306, SmsOptions(max_segments=2))
    assert enc.segments == 2


def test_truncate() -> None:
    [enc] = plan("word " * 200, SmsOptions(max_segments=2, on_too_long="truncate"))
    assert enc.segments == 2
    assert enc.text.endswith(" word...")  # cut at a word boundary
    assert 306 - 10 < sum(sizes(enc)) <= 306


def test_truncate_marker_that_cannot_fit() -> None:
    opts = SmsOptions(max_segments=1, on_too_long="truncate", truncate_marker="x" * 200)
    with pytest.raises(TooLong):
        plan("a" * 500, opts)


def test_split_into_separate_messages() -> None:
    text = "a" * 1000  # 7 segments
    msgs = plan(text, SmsOptions(max_segments=3, on_too_long="split"), reference=254)
    assert [m.segments for m in msgs] == [3, 3, 1]
    assert "".join(m.text for m in msgs) == text
    refs = [parse_udh(m.parts[0].udh).concat for m in msgs[:2]]
    assert refs == [(254, 3, 1), (255, 3, 1)]
    assert msgs[2].parts[0].udh == b""  # a one-part message has no concatenation IE


def test_split_keeps_transliteration_record() -> None:
    text = "“" + "a" * 500 + "”"
    msgs = plan(text, SmsOptions(max_segments=2, on_too_long="split"))
    assert all(m.encoding == "gsm7" for m in msgs)
    assert all(m.transliterated == (("“", '"'), ("”", '"')) for m in msgs)
    assert sum(m.segments_saved for m in msgs) == encode(text).segments_saved


def test_count_segments() -> None:
    assert count_segments("a" * 161) == 2
    assert count_segments(CYR * 71) == 2
    assert count_segments("ş" * 100, SmsOptions(shift_tables=("turkish",))) == 1


# --- references ----------------------------------------------------------------------------


def test_reference_counter_no_repeat_within_256() -> None:
    counter = ReferenceCounter(seed=1)
    refs = [counter.next("+15550001") for _ in range(256)]
    assert len(set(refs)) == 256
    assert counter.next("+15550001") == refs[0]
    assert all(b == (a + 1) % 256 for a, b in itertools.pairwise(refs))


def test_reference_counter_per_destination_and_reserve() -> None:
    counter = ReferenceCounter(bits=16, seed=7)
    a, b = counter.next("A"), counter.next("B")
    first = counter.reserve("A", 3)
    assert first == (a + 1) % 65536
    assert counter.next("A") == (a + 4) % 65536
    assert counter.next("B") == (b + 1) % 65536
    with pytest.raises(ValueError):
        ReferenceCounter(bits=12)


# --- CLI helpers ---------------------------------------------------------------------------


def test_describe_shape() -> None:
    enc = encode("“x” " + "a" * 200, reference=1)
    data = describe(enc)
    assert json.loads(json.dumps(data)) == data
    assert list(data) == ["encoding", "shift_table", "segments", "parts", "transliterated"]
    assert data["encoding"] == "gsm7"
    assert data["shift_table"] is None
    assert data["segments"] == 2
    assert data["parts"][0] == {"text": enc.parts[0].text, "size": 153, "udh": "050003010201"}  # type: ignore[index]
    assert data["transliterated"] == [["“", '"'], ["”", '"']]


def test_format_human() -> None:
    out = format_human(encode("“x”", ALL_TABLES))
    assert "GSM 7-bit" in out
    assert "segments:    1" in out
    assert "'“'->'\"'" in out
    assert "UCS-2" in format_human(encode(EMOJI))


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("policy", ["reject", "split"])
def test_with_reference_equals_encoding_with_that_reference(bits: int, policy: str) -> None:
    from mailsms.sms.encode import with_reference

    options = SmsOptions(reference_bits=bits, max_segments=3, on_too_long=policy)  # type: ignore[arg-type]
    text = "Ünïcödé ☃ and words " * (6 if policy == "reject" else 14)
    for reference in (0, 7, (1 << bits) - 1):
        expected = plan(text, options, reference)
        assert with_reference(plan(text, options, 0), reference, bits) == expected  # type: ignore[arg-type]
