"""The GSM 7-bit codec: text <-> septets, and septets <-> packed octets.

Outbound, ``encode.py`` turns each segment's text into *unpacked* septets (one byte per
septet, escapes included), which is what SMPP carries in ``short_message``; a modem PDU packs
them eight-into-seven with ``pack_septets``. Inbound, carriers hand us either form and
``decode_septets`` gives the text back.

Every function takes the national tables in force: ``shift_table`` names the single shift
table reached through the escape septet (default: the standard extension table) and
``locking_shift`` names the table that replaces the default alphabet. Encoding is strict
(ValueError for a character the tables cannot carry); decoding is lenient, as TS 23.038 asks
of a receiver: an escape followed by an undefined code shows the main-table character, and an
escape with nothing usable after it shows a space.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

from mailsms.sms.shift_tables import (
    DEFAULT_ALPHABET,
    DEFAULT_EXTENSION,
    ESCAPE,
    LOCKING_TABLES,
    SINGLE_SHIFT_TABLES,
)

__all__ = [
    "Tables",
    "decode_septets",
    "encode_septets",
    "is_gsm7",
    "pack_septets",
    "septet_length",
    "tables",
    "unpack_septets",
]


@dataclass(frozen=True, slots=True)
class Tables:
    """The code maps for one (locking, single shift) pair, built once and cached."""

    main: str
    extension: MappingProxyType[int, str]
    encode_map: MappingProxyType[str, bytes]
    # str.translate table for the fast path: every character these tables carry becomes its
    # septets (as code points < 0x80); every other ASCII character becomes U+FFFF, so one
    # ``encode("ascii")`` afterwards both produces the bytes and detects the unencodable.
    translation: MappingProxyType[int, str]

    def cost(self, char: str) -> int | None:
        """Septets ``char`` takes (1 or 2), or None when these tables cannot carry it."""
        code = self.encode_map.get(char)
        return None if code is None else len(code)


@lru_cache(maxsize=32)
def tables(shift_table: str | None = None, locking_shift: str | None = None) -> Tables:
    """The tables for a national single shift / locking shift pair (None: the default).

    Raises ValueError for a language we have no table for.
    """
    main = _locking(locking_shift)
    extension = _single(shift_table)
    encode_map: dict[str, bytes] = {}
    for code, char in sorted(extension.items(), reverse=True):
        encode_map[char] = bytes((ESCAPE, code))
    # A character in both tables (e.g. "^" in Portuguese) takes the one-septet form.
    for code, char in enumerate(main):
        if code != ESCAPE:
            encode_map[char] = bytes((code,))
    translation = {c: "\uffff" for c in range(0x80)}
    translation.update({ord(char): code.decode("ascii") for char, code in encode_map.items()})
    return Tables(main, extension, MappingProxyType(encode_map), MappingProxyType(translation))


def _locking(name: str | None) -> str:
    if name is None:
        return DEFAULT_ALPHABET
    try:
        return LOCKING_TABLES[name]
    except KeyError:
        raise ValueError(f"no locking shift table for {name!r}") from None


def _single(name: str | None) -> MappingProxyType[int, str]:
    if name is None:
        return DEFAULT_EXTENSION
    try:
        return SINGLE_SHIFT_TABLES[name]
    except KeyError:
        raise ValueError(f"no single shift table for {name!r}") from None


def encode_septets(
    text: str, shift_table: str | None = None, locking_shift: str | None = None
) -> bytes:
    """Unpacked septets for ``text``; ValueError names the first character not encodable."""
    t = tables(shift_table, locking_shift)
    try:
        return text.translate(t.translation).encode("ascii")  # the intake's hot path: C only
    except UnicodeEncodeError:
        pass
    try:
        return b"".join([t.encode_map[char] for char in text])
    except KeyError as exc:
        raise ValueError(f"not encodable in GSM 7-bit: {exc.args[0]!r}") from None


def decode_septets(
    data: bytes, shift_table: str | None = None, locking_shift: str | None = None
) -> str:
    """Text from unpacked septets; ValueError if a byte is not a septet (>= 0x80)."""
    t = tables(shift_table, locking_shift)
    out: list[str] = []
    i = 0
    while i < len(data):
        code = data[i]
        if code > 0x7F:
            raise ValueError(f"byte 0x{code:02x} at {i} is not a septet")
        i += 1
        if code != ESCAPE:
            out.append(t.main[code])
        elif i < len(data) and data[i] != ESCAPE and data[i] <= 0x7F:
            out.append(t.extension.get(data[i], t.main[data[i]]))
            i += 1
        else:  # ESC ESC (reserved) or a trailing ESC: TS 23.038 says show a space
            out.append(" ")
            i += 1 if i < len(data) and data[i] == ESCAPE else 0
    return "".join(out)


def is_gsm7(text: str, shift_table: str | None = None, locking_shift: str | None = None) -> bool:
    """True when every character of ``text`` has a code in these tables."""
    encode_map = tables(shift_table, locking_shift).encode_map
    return all(char in encode_map for char in text)


def septet_length(
    text: str, shift_table: str | None = None, locking_shift: str | None = None
) -> int:
    """Septets ``text`` takes, escapes counting two; ValueError when not encodable."""
    return len(encode_septets(text, shift_table, locking_shift))


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets eight-into-seven, least significant bit first (TS 23.038 §6.1.2.1.1).

    ``fill_bits`` zero bits come first, so that after a UDH the first septet starts on a
    septet boundary (TS 23.040 §9.2.3.24).
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    value = 0
    for index, septet in enumerate(septets):
        if septet > 0x7F:
            raise ValueError(f"byte 0x{septet:02x} at {index} is not a septet")
        value |= septet << (fill_bits + 7 * index)
    nbits = fill_bits + 7 * len(septets)
    return value.to_bytes((nbits + 7) // 8, "little")


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """The first ``count`` septets of packed ``data`` after ``fill_bits`` fill bits."""
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    if count < 0 or fill_bits + 7 * count > 8 * len(data):
        raise ValueError(f"{len(data)} octets cannot hold {count} septets")
    value = int.from_bytes(data, "little") >> fill_bits
    return bytes((value >> (7 * i)) & 0x7F for i in range(count))
