"""Hypothesis properties of the SMS codec and segmenter, checked against gsm0338 and smsutil.

Reference-library disagreements, excluded from the comparisons below:

* gsm0338 and smsutil both accept U+001B (ESC) as a character and encode it as septet 0x1B,
  which a receiver reads as the start of an escape sequence. We refuse it (UCS-2), so the
  strategies never generate it.
* smsutil knows nothing of transliteration or national tables: compare with both off.
"""

from __future__ import annotations

import contextlib
import os
import random

import gsm0338
import smsutil
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsms.sms import gsm7
from mailsms.sms.encode import SmsOptions, encode, plan
from mailsms.sms.reassemble import Reassembler, decode_part, fragment_from_udh
from mailsms.sms.shift_tables import (
    DEFAULT_ALPHABET,
    DEFAULT_EXTENSION,
    LOCKING_TABLES,
    SINGLE_SHIFT_TABLES,
)
from mailsms.sms.transliterate import TRANSLITERATIONS
from mailsms.sms.udh import parse_udh

# Moderate by default so the file runs in about two seconds; HYPOTHESIS_PROFILE=sms-thorough
# for a long exploration.
settings.register_profile("sms", max_examples=150, deadline=None)
settings.register_profile("sms-thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "sms"))

GSM_BASIC = DEFAULT_ALPHABET.replace("\x1b", "")
GSM_EXT = "".join(DEFAULT_EXTENSION.values())
NATIONAL = "".join(
    {c for t in LOCKING_TABLES.values() for c in t}
    | {c for t in SINGLE_SHIFT_TABLES.values() for c in t.values()}
).replace("\x1b", "")

gsm_text = st.text(st.sampled_from(GSM_BASIC + GSM_EXT), max_size=500)
# Mostly GSM with escapes, spaces, the odd UCS-2 or astral character and typographic marks.
mixed_char = st.one_of(
    st.sampled_from(GSM_BASIC),
    st.sampled_from(GSM_EXT + "     "),
    st.sampled_from("жΩ中😀🎉" + "".join(TRANSLITERATIONS)),
    st.sampled_from(NATIONAL),
    st.characters(exclude_categories=("Cs",), exclude_characters="\x1b"),
)
mixed_text = st.text(mixed_char, max_size=600)
options = st.builds(
    SmsOptions,
    transliterate=st.booleans(),
    shift_tables=st.sampled_from(
        [(), ("turkish",), ("spanish", "portuguese"), ("turkish", "spanish", "portuguese")]
    ),
    reference_bits=st.sampled_from([8, 16]),
)


def limit(udh: bytes, encoding: str) -> int:
    room = 140 - len(udh)
    return room * 8 // 7 if encoding == "gsm7" else room


@given(gsm_text)
def test_gsm7_roundtrip_and_gsm0338_agree(text: str) -> None:
    septets = gsm7.encode_septets(text)
    assert gsm7.decode_septets(septets) == text
    assert septets == gsm0338.Codec().encode(text)[0]
    assert gsm0338.Codec().decode(septets)[0] == text


@given(st.sampled_from(sorted(SINGLE_SHIFT_TABLES)), st.data())
def test_national_roundtrip(language: str, data: st.DataObject) -> None:
    locking = data.draw(st.sampled_from([None, language] if language in LOCKING_TABLES else [None]))
    main = LOCKING_TABLES[locking] if locking else DEFAULT_ALPHABET
    chars = main.replace("\x1b", "") + "".join(SINGLE_SHIFT_TABLES[language].values())
    text = data.draw(st.text(st.sampled_from(chars), max_size=200))
    assert (
        gsm7.decode_septets(gsm7.encode_septets(text, language, locking), language, locking) == text
    )


@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_pack_roundtrip(septets: bytes, fill: int) -> None:
    packed = gsm7.pack_septets(septets, fill)
    assert len(packed) == (fill + 7 * len(septets) + 7) // 8
    assert gsm7.unpack_septets(packed, len(septets), fill) == septets


@given(mixed_text, options, st.integers(0, 255))
def test_encode_invariants(text: str, opts: SmsOptions, reference: int) -> None:
    enc = encode(text, opts, reference)
    assert "".join(p.text for p in enc.parts) == enc.text
    if not enc.transliterated:
        assert enc.text == text
    for part in enc.parts:
        assert part.size == len(part.payload) <= limit(part.udh, enc.encoding)
        # decoding each part alone gives its text: no escape or surrogate pair was split
        assert decode_part(part.udh, part.payload, enc.encoding) == part.text
        if enc.encoding == "ucs2":
            part.payload.decode("utf-16-be")  # strict: raises on a lone surrogate
        udh = parse_udh(part.udh) if part.udh else None
        if enc.segments > 1:
            assert udh is not None and udh.concat == (reference, enc.segments, part.seq)
        if enc.shift_table is None:
            assert udh is None or (udh.single_shift, udh.locking_shift) == (None, None)
    if enc.shift_table is not None:
        assert enc.shift_table in opts.shift_tables


@given(mixed_text)
def test_segment_counts_agree_with_smsutil(text: str) -> None:
    enc = encode(text, SmsOptions(transliterate=False))
    expected = len(smsutil.split(text).parts)
    assert enc.segments == expected
    assert enc.encoding == ("gsm7" if gsm7.is_gsm7(text) else "ucs2")


@given(mixed_text)
def test_transliteration_never_costs_more(text: str) -> None:
    plain = encode(text, SmsOptions(transliterate=False))
    smart = encode(text)
    assert smart.segments <= plain.segments
    assert smart.segments_saved == plain.segments - smart.segments
    if smart.transliterated:
        assert plain.encoding == "ucs2" and smart.encoding == "gsm7"


@given(mixed_text, st.integers(1, 4), st.sampled_from(["truncate", "split"]))
def test_length_policy(text: str, max_segments: int, policy: str) -> None:
    opts = SmsOptions(max_segments=max_segments, on_too_long=policy)  # type: ignore[arg-type]
    messages = plan(text, opts, reference=255)
    assert all(m.segments <= max_segments for m in messages)
    whole = encode(text, opts)
    if whole.segments <= max_segments:
        assert messages == [encode(text, opts, 255)]
    elif policy == "truncate":
        assert len(messages) == 1 and messages[0].text.endswith("...")
    else:
        assert "".join(m.text for m in messages) == whole.text


@given(mixed_text.filter(lambda t: len(t) > 200), st.randoms(use_true_random=False))
def test_reassembly_any_order_with_duplicates(text: str, rnd: random.Random) -> None:
    enc = encode(text, reference=9)
    parts = list(enc.parts) + rnd.sample(list(enc.parts), k=min(2, enc.segments))
    rnd.shuffle(parts)
    r = Reassembler()
    done = []
    for part in parts:
        body = decode_part(part.udh, part.payload, enc.encoding)
        out = r.add(fragment_from_udh("a", "b", part.udh, body, str(part.seq), 0.0))
        if out is not None:
            done.append(out)
    # A duplicate arriving after its set completed starts a new set (it may even complete
    # one again when every part is repeated late): the first result is the message.
    assert done[0].text == enc.text and not done[0].incomplete
    assert done[0].segments == enc.segments


@given(st.binary(max_size=40))
def test_parse_udh_only_raises_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_udh(data)
