"""Choose the alphabet, transliterate if it pays, and cut a text into SMS segments.

This is the step between policy and the store: the intake (and the API and the CLI) hand a
recipient's text to ``plan``, which returns one or more ``Encoded`` messages whose parts
(``PartSpec``) are stored as they are and later submitted by a carrier driver without any
further thought about alphabets or lengths. Pure functions, no I/O.

How a text is encoded, cheapest first (ties keep the earlier choice):

1. the GSM 7-bit default alphabet, when every character is in it;
2. UCS-2 (UTF-16BE; a character outside the BMP takes two units);
3. a national shift table from ``SmsOptions.shift_tables`` (single shift, locking shift or
   both), only when it needs strictly fewer segments than UCS-2: not every handset renders
   national tables, so they have to pay for themselves;
4. when the result is UCS-2 and transliteration is on, each GSM-7 scheme again over the
   text with what that scheme cannot carry transliterated; kept when every character then
   fits and it needs no more segments than UCS-2 (fewest segments, then fewest characters
   changed, so an allowed Turkish table keeps "ş" rather than turning it into "s").

Limits come from the actual UDH: (140 - UDH octets) * 8 // 7 septets or // 2 UTF-16 units,
so 160/70 alone, 153/67 with an 8-bit concatenation IE, 152/66 with a 16-bit one, and less
again with shift-table IEs. Cuts never fall inside an escape sequence or a surrogate pair, and
fall after a space or newline when that costs no extra segment.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Literal

from mailsms.model import PartSpec
from mailsms.sms import gsm7
from mailsms.sms.shift_tables import LANGUAGE_IDS, LOCKING_TABLES, SINGLE_SHIFT_TABLES
from mailsms.sms.transliterate import transliterate
from mailsms.sms.udh import build_udh, concat_ie, locking_shift_ie, single_shift_ie

__all__ = [
    "Encoded",
    "Encoding",
    "ReferenceCounter",
    "SmsOptions",
    "TooLong",
    "count_segments",
    "describe",
    "encode",
    "format_human",
    "plan",
]

Encoding = Literal["gsm7", "ucs2"]

USER_DATA_OCTETS = 140
BREAKS = frozenset(" \n")
WORD_BACKOFF = 20  # how far truncation looks back for a space


@dataclass(frozen=True, slots=True)
class SmsOptions:
    """How to encode: one frozen value per route or per request."""

    transliterate: bool = True
    shift_tables: tuple[str, ...] = ()
    reference_bits: Literal[8, 16] = 8
    max_segments: int = 6
    on_too_long: Literal["reject", "truncate", "split"] = "reject"
    truncate_marker: str = "..."

    def __post_init__(self) -> None:
        unknown = [name for name in self.shift_tables if name not in LANGUAGE_IDS]
        if unknown:
            raise ValueError(f"unknown shift tables {unknown}; known: {sorted(LANGUAGE_IDS)}")
        if self.reference_bits not in (8, 16):
            raise ValueError("reference_bits must be 8 or 16")
        if not 1 <= self.max_segments <= 255:
            raise ValueError("max_segments must be 1..255")
        if self.on_too_long not in ("reject", "truncate", "split"):
            raise ValueError(f"unknown on_too_long {self.on_too_long!r}")


@dataclass(frozen=True, slots=True)
class Encoded:
    """One SMS message, ready to store: its text after transliteration and its parts."""

    text: str
    encoding: Encoding
    shift_table: str | None
    parts: tuple[PartSpec, ...]
    transliterated: tuple[tuple[str, str], ...]
    segments_saved: int

    @property
    def segments(self) -> int:
        return len(self.parts)


class TooLong(ValueError):
    """The text needs more segments than ``SmsOptions.max_segments`` and the policy rejects it."""

    def __init__(self, segments: int, limit: int) -> None:
        super().__init__(f"message needs {segments} segments, the limit is {limit}")
        self.segments = segments
        self.limit = limit


@dataclass(frozen=True)
class _Scheme:
    """One way to encode: UCS-2, or GSM-7 with a (possibly national) pair of tables."""

    encoding: Encoding
    rank: int  # tie-break: lower wins among schemes needing the same number of segments
    language: str | None = None
    locking: bool = False
    single: bool = False

    @cached_property
    def tables(self) -> gsm7.Tables:
        return gsm7.tables(
            self.language if self.single else None, self.language if self.locking else None
        )

    @cached_property
    def cost_map(self) -> dict[str, int]:
        """Septets per character for a GSM-7 scheme (empty for UCS-2)."""
        if self.encoding == "ucs2":
            return {}
        return {char: len(code) for char, code in self.tables.encode_map.items()}

    def cost(self, char: str) -> int | None:
        if self.encoding == "ucs2":
            return 2 if ord(char) > 0xFFFF else 1
        return self.cost_map.get(char)

    def carries(self, char: str) -> bool:
        return self.cost(char) is not None

    def shift_ies(self) -> tuple[bytes, ...]:
        lang = LANGUAGE_IDS[self.language] if self.language else 0
        return (locking_shift_ie(lang),) * self.locking + (single_shift_ie(lang),) * self.single

    def capacity(self, udh_octets: int) -> int:
        room = USER_DATA_OCTETS - udh_octets
        return room * 8 // 7 if self.encoding == "gsm7" else room // 2

    def payload(self, text: str) -> bytes:
        if self.encoding == "ucs2":
            return text.encode("utf-16-be")
        return gsm7.encode_septets(
            text, self.language if self.single else None, self.language if self.locking else None
        )


_DEFAULT = _Scheme("gsm7", 0)
_UCS2 = _Scheme("ucs2", 1)


def _schemes(languages: tuple[str, ...]) -> list[_Scheme]:
    out = [_DEFAULT, _UCS2]
    for lang in dict.fromkeys(languages):
        if lang in SINGLE_SHIFT_TABLES:
            out.append(_Scheme("gsm7", 2, lang, single=True))
        if lang in LOCKING_TABLES:
            out.append(_Scheme("gsm7", 3, lang, locking=True))
        if lang in SINGLE_SHIFT_TABLES and lang in LOCKING_TABLES:
            out.append(_Scheme("gsm7", 4, lang, locking=True, single=True))
    return out


def _prefix(text: str, scheme: _Scheme) -> Sequence[int] | None:
    """``prefix[i]``: the cost of the first ``i`` characters; None if the scheme cannot
    carry the text."""
    if scheme.encoding == "ucs2":
        costs = [2 if ord(char) > 0xFFFF else 1 for char in text]
    else:
        # The intake's hot path. Text of one-septet characters only (most mail) is found
        # in C: its translation is as long as itself and all ASCII (U+FFFF marks the rest).
        septets = text.translate(scheme.tables.translation)
        if len(septets) == len(text) and septets.isascii():
            return range(len(text) + 1)
        get = scheme.cost_map.get
        maybe = [get(char) for char in text]
        if None in maybe:
            return None
        costs = maybe  # type: ignore[assignment]
    return [0, *itertools.accumulate(costs)]


def _limits(scheme: _Scheme, bits: Literal[8, 16]) -> tuple[int, int]:
    """(single-part, per-part-when-concatenated) capacity, from the real UDH length."""
    shift = scheme.shift_ies()
    single = scheme.capacity(len(build_udh(*shift)))
    multi = scheme.capacity(len(build_udh(concat_ie(0, 2, 1, bits), *shift)))
    return single, multi


# --- segmentation -------------------------------------------------------------------------


def _fill(prefix: Sequence[int], start: int, cap: int) -> int:
    """The end of the longest run of whole characters from ``start`` that fits in ``cap``.

    ``prefix[i]`` is the cost of the first ``i`` characters (every cost is at least 1, so
    it strictly increases): a binary search instead of a walk over each character.
    """
    return bisect.bisect_right(prefix, prefix[start] + cap, lo=start) - 1


def _count_from(prefix: Sequence[int], start: int, cap: int) -> int:
    """Fewest parts for the text from ``start``: filling each part greedily is optimal here."""
    count, n = 0, len(prefix) - 1
    while start < n:
        start = _fill(prefix, start, cap)
        count += 1
    return count


def _boundaries(text: str, prefix: Sequence[int], single: int, multi: int) -> list[tuple[int, int]]:
    """(start, end) character ranges of each part, fewest parts, word breaks when free."""
    if prefix[-1] <= single:
        return [(0, len(text))]
    total = _count_from(prefix, 0, multi)
    bounds: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        end = _fill(prefix, start, multi)
        if end < len(text) and text[end - 1] not in BREAKS and text[end] not in BREAKS:
            end = _back_to_break(text, prefix, start, end, multi, total - len(bounds) - 1)
        bounds.append((start, end))
        start = end
    return bounds


def _back_to_break(
    text: str, prefix: Sequence[int], start: int, end: int, cap: int, parts_left: int
) -> int:
    """Move ``end`` back to just after the last space or newline if the rest still fits."""
    for cut in range(end - 1, start, -1):
        if text[cut - 1] in BREAKS:
            # The rest only grows as the cut moves left, so the last break is the only try.
            return cut if _count_from(prefix, cut, cap) <= parts_left else end
    return end


# --- choosing the scheme ------------------------------------------------------------------


@dataclass(frozen=True)
class _Choice:
    text: str
    scheme: _Scheme
    bounds: list[tuple[int, int]]
    transliterated: tuple[tuple[str, str], ...] = ()
    changed: int = 0

    @property
    def key(self) -> tuple[int, int, int]:
        return (len(self.bounds), self.changed, self.scheme.rank)


def _split(text: str, scheme: _Scheme, bits: Literal[8, 16]) -> _Choice | None:
    prefix = _prefix(text, scheme)
    if prefix is None:
        return None
    return _Choice(text, scheme, _boundaries(text, prefix, *_limits(scheme, bits)))


def _candidates(text: str, schemes: list[_Scheme], bits: Literal[8, 16]) -> Iterator[_Choice]:
    for scheme in schemes:
        choice = _split(text, scheme, bits)
        if choice is not None:
            yield choice


def _transliterated(text: str, schemes: list[_Scheme], bits: Literal[8, 16]) -> Iterator[_Choice]:
    """Each GSM-7 scheme over the text with what that scheme cannot carry transliterated."""
    for scheme in schemes:
        if scheme.encoding == "ucs2":
            continue
        new_text, pairs = transliterate(text, keep=scheme.carries)
        choice = _split(new_text, scheme, bits)
        if choice is not None and pairs:
            changed = sum(char in dict(pairs) for char in text)
            yield replace(choice, transliterated=pairs, changed=changed)


def _choose(text: str, options: SmsOptions) -> tuple[_Choice, int]:
    """The cheapest encoding of ``text`` and the segments transliteration saved."""
    if not options.shift_tables:
        # Fast path: text the default alphabet carries never needs more segments in GSM-7
        # than in UCS-2 (at most 2 septets per character: 80/76 per part against 70/67).
        plain = _split(text, _DEFAULT, options.reference_bits)
        if plain is not None:
            return plain, 0
    schemes = _schemes(options.shift_tables)
    best = min(_candidates(text, schemes, options.reference_bits), key=lambda c: c.key)
    if best.scheme.encoding == "gsm7" or not options.transliterate:
        return best, 0
    # Transliterating is worth it even at equal cost (GSM-7 is what every handset shows
    # best); among the ways to do it, fewest segments, then fewest characters changed.
    alternatives = [
        alt
        for alt in _transliterated(text, schemes, options.reference_bits)
        if len(alt.bounds) <= len(best.bounds)
    ]
    if not alternatives:
        return best, 0
    alt = min(alternatives, key=lambda c: c.key)
    return alt, len(best.bounds) - len(alt.bounds)


# --- public API ---------------------------------------------------------------------------


def encode(text: str, options: SmsOptions = SmsOptions(), reference: int = 0) -> Encoded:
    """Encode ``text`` as one message of as many parts as it needs (no length policy).

    ``reference`` goes into the concatenation IE when there is more than one part.
    """
    if not 0 <= reference < (1 << options.reference_bits):
        raise ValueError(f"reference {reference} does not fit in {options.reference_bits} bits")
    choice, saved = _choose(text, options)
    scheme, total = choice.scheme, len(choice.bounds)
    parts = []
    for seq, (start, end) in enumerate(choice.bounds, 1):
        part_text = choice.text[start:end]
        concat = (concat_ie(reference, total, seq, options.reference_bits),) if total > 1 else ()
        payload = scheme.payload(part_text)
        udh = build_udh(*concat, *scheme.shift_ies())
        parts.append(PartSpec(seq, part_text, udh, payload, len(payload)))
    return Encoded(
        choice.text, scheme.encoding, scheme.language, tuple(parts), choice.transliterated, saved
    )


def count_segments(text: str, options: SmsOptions = SmsOptions()) -> int:
    """How many segments ``encode`` would produce, without building them."""
    return len(_choose(text, options)[0].bounds)


def plan(text: str, options: SmsOptions = SmsOptions(), reference: int = 0) -> list[Encoded]:
    """Encode ``text`` and apply the length policy (``max_segments``, ``on_too_long``).

    Returns one message; or, for ``truncate``, one that ends with ``truncate_marker``; or,
    for ``split``, several separate messages of at most ``max_segments`` parts each, with
    references ``reference``, ``reference + 1``, ... (see ``ReferenceCounter.reserve``).
    Raises ``TooLong`` for ``reject``, or when not even the marker fits.
    """
    encoded = encode(text, options, reference)
    if encoded.segments <= options.max_segments:
        return [encoded]
    if options.on_too_long == "truncate":
        return [_truncate(text, options, reference, encoded.segments)]
    if options.on_too_long == "split":
        return _split_messages(encoded, options, reference)
    raise TooLong(encoded.segments, options.max_segments)


def _truncate(text: str, options: SmsOptions, reference: int, needed: int) -> Encoded:
    """The longest prefix of ``text`` that fits with the marker after it."""

    def attempt(length: int) -> Encoded:
        return encode(text[:length].rstrip() + options.truncate_marker, options, reference)

    low, high = 0, len(text)  # attempt(low) is kept once it fits; attempt(high) is too long
    if attempt(0).segments > options.max_segments:
        raise TooLong(needed, options.max_segments)
    while high - low > 1:
        middle = (low + high) // 2
        if attempt(middle).segments <= options.max_segments:
            low = middle
        else:
            high = middle
    # Back up to a word boundary when one is close: "...the meet..." reads worse.
    space = text.rfind(" ", 0, low + 1)
    return attempt(space if space >= 0 and space > low - WORD_BACKOFF else low)


def _split_messages(encoded: Encoded, options: SmsOptions, reference: int) -> list[Encoded]:
    """Regroup the parts into messages of at most ``max_segments`` parts, each re-encoded.

    A group's text re-encodes into at most ``max_segments`` parts: the same split is
    available to it, and another alphabet is only chosen when it is cheaper. Every message
    reports the whole text's transliteration; the first carries the segments it saved.
    """
    size, modulus = options.max_segments, 1 << options.reference_bits
    plain = replace(options, transliterate=False)
    out = []
    for index in range(0, encoded.segments, size):
        chunk = "".join(part.text for part in encoded.parts[index : index + size])
        message = encode(chunk, plain, (reference + index // size) % modulus)
        saved = encoded.segments_saved if index == 0 else 0
        out.append(replace(message, transliterated=encoded.transliterated, segments_saved=saved))
    return out


def with_reference(plans: list[Encoded], reference: int, bits: Literal[8, 16]) -> list[Encoded]:
    """The same plan with concatenation references ``reference``, ``reference + 1``, ...

    The intake encodes before it knows the reference (it asks the store only for messages
    that turned out to need several parts); this patches the reference into each part's UDH
    instead of encoding the text again. ``encode`` always puts the concatenation IE first.
    """
    out = []
    for index, enc in enumerate(plans):
        if enc.segments < 2:
            out.append(enc)
            continue
        ref = (reference + index) % (1 << bits)
        patch = bytes((ref,)) if bits == 8 else bytes((ref >> 8, ref & 0xFF))
        iei = 0x00 if bits == 8 else 0x08
        parts = []
        for part in enc.parts:
            if part.udh[1] != iei:
                raise ValueError("the concatenation IE is not first in this UDH")
            udh = part.udh[:3] + patch + part.udh[3 + len(patch) :]
            # Built directly: dataclasses.replace introspects the fields on every call and
            # was most of this function's cost (once per long mail, on the intake's path).
            parts.append(PartSpec(part.seq, part.text, udh, part.payload, part.size))
        out.append(
            Encoded(
                enc.text,
                enc.encoding,
                enc.shift_table,
                tuple(parts),
                enc.transliterated,
                enc.segments_saved,
            )
        )
    return out


class ReferenceCounter:
    """Concatenation references per destination number.

    Each destination starts at a random value and counts up, wrapping at 2**bits, so a
    reference does not repeat within 2**bits consecutive messages to the same number (a
    handset would otherwise glue parts of two messages together). Random starts make a
    restart unlikely to reuse the references of the messages just sent. Keep one counter per
    process for the life of the process.
    """

    def __init__(self, bits: int = 8, seed: int | None = None) -> None:
        if bits not in (8, 16):
            raise ValueError("bits must be 8 or 16")
        self._modulus = 1 << bits
        self._random = random.Random(seed)
        self._next: dict[str, int] = {}

    def next(self, destination: str) -> int:
        """The reference for the next concatenated message to ``destination``."""
        return self.reserve(destination, 1)

    def reserve(self, destination: str, count: int) -> int:
        """The first of ``count`` successive references (for ``plan`` with ``split``)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        first = self._next.get(destination)
        if first is None:
            first = self._random.randrange(self._modulus)
        self._next[destination] = (first + count) % self._modulus
        return first


def describe(enc: Encoded) -> dict[str, object]:
    """The JSON shape ``mailsms encode --json`` prints."""
    return {
        "encoding": enc.encoding,
        "shift_table": enc.shift_table,
        "segments": enc.segments,
        "parts": [{"text": p.text, "size": p.size, "udh": p.udh.hex()} for p in enc.parts],
        "transliterated": [[src, dst] for src, dst in enc.transliterated],
    }


def format_human(enc: Encoded) -> str:
    """What ``mailsms encode`` prints without ``--json``."""
    unit = "septets" if enc.encoding == "gsm7" else "octets"
    alphabet = "GSM 7-bit" if enc.encoding == "gsm7" else "UCS-2"
    lines = [
        f"alphabet:    {alphabet}",
        f"shift table: {enc.shift_table or 'none'}",
        f"segments:    {enc.segments}",
    ]
    for part in enc.parts:
        udh = f", UDH {part.udh.hex()}" if part.udh else ""
        lines.append(f"  [{part.seq}] {part.size} {unit}{udh}: {part.text!r}")
    if enc.transliterated:
        changes = ", ".join(f"{src!r}->{dst!r}" for src, dst in enc.transliterated)
        lines.append(f"transliterated: {changes} (saved {enc.segments_saved} segments)")
    return "\n".join(lines)
