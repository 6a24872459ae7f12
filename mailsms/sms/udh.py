"""User Data Header: build it for outbound segments, parse it on inbound ones (TS 23.040 §9.2.3.24).

The encoder puts at most three information elements (IEs) in a UDH: concatenation (0x00 with
an 8-bit reference, 0x08 with a 16-bit one), national single shift (0x24) and national locking
shift (0x25). Inbound, carriers hand us whatever the sending phone wrote, so ``parse_udh``
keeps every other IE as raw bytes and refuses a malformed header with ValueError, and only
ValueError, so a bad part from the network can be logged and dropped, never crash a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "IEI_CONCAT_8",
    "IEI_CONCAT_16",
    "IEI_LOCKING_SHIFT",
    "IEI_SINGLE_SHIFT",
    "Udh",
    "build_udh",
    "concat_ie",
    "locking_shift_ie",
    "parse_udh",
    "single_shift_ie",
]

IEI_CONCAT_8: Final = 0x00
IEI_CONCAT_16: Final = 0x08
IEI_SINGLE_SHIFT: Final = 0x24
IEI_LOCKING_SHIFT: Final = 0x25


@dataclass(frozen=True, slots=True)
class Udh:
    """A parsed UDH. ``concat`` is (reference, total, seq); ``other`` keeps unknown IEs."""

    concat: tuple[int, int, int] | None = None
    concat_bits: Literal[8, 16] | None = None
    single_shift: int | None = None
    locking_shift: int | None = None
    other: tuple[tuple[int, bytes], ...] = ()


def concat_ie(reference: int, total: int, seq: int, bits: Literal[8, 16] = 8) -> bytes:
    """The concatenation IE (without UDHL) for part ``seq`` of ``total``."""
    if not 1 <= seq <= total <= 255:
        raise ValueError(f"bad concatenation: part {seq} of {total}")
    if not 0 <= reference < (1 << bits):
        raise ValueError(f"reference {reference} does not fit in {bits} bits")
    if bits == 8:
        return bytes((IEI_CONCAT_8, 3, reference, total, seq))
    return bytes((IEI_CONCAT_16, 4, reference >> 8, reference & 0xFF, total, seq))


def single_shift_ie(language_id: int) -> bytes:
    """The national language single shift IE (0x24) for a TS 23.038 language id."""
    return bytes((IEI_SINGLE_SHIFT, 1, _language(language_id)))


def locking_shift_ie(language_id: int) -> bytes:
    """The national language locking shift IE (0x25) for a TS 23.038 language id."""
    return bytes((IEI_LOCKING_SHIFT, 1, _language(language_id)))


def _language(language_id: int) -> int:
    if not 0 <= language_id <= 255:
        raise ValueError(f"bad language id {language_id}")
    return language_id


def build_udh(*ies: bytes) -> bytes:
    """A whole UDH, UDHL byte first, from IEs; ``b""`` when there are none."""
    body = b"".join(ies)
    if not body:
        return b""
    if len(body) > 139:
        raise ValueError("UDH longer than the user data")
    return bytes((len(body),)) + body


def parse_udh(udh: bytes) -> Udh:
    """Parse a whole UDH (UDHL byte included). A repeated IE: the last one wins (TS 23.040)."""
    if not udh:
        raise ValueError("empty UDH")
    if udh[0] != len(udh) - 1:
        raise ValueError(f"UDHL says {udh[0]} octets, {len(udh) - 1} follow")
    concat: tuple[int, int, int] | None = None
    bits: Literal[8, 16] | None = None
    single: int | None = None
    locking: int | None = None
    other: list[tuple[int, bytes]] = []
    for iei, data in _ies(udh[1:]):
        if iei in (IEI_CONCAT_8, IEI_CONCAT_16):
            concat, bits = _concat(iei, data)
        elif iei == IEI_SINGLE_SHIFT:
            single = _one_octet(iei, data)
        elif iei == IEI_LOCKING_SHIFT:
            locking = _one_octet(iei, data)
        else:
            other.append((iei, data))
    return Udh(concat, bits, single, locking, tuple(other))


def _one_octet(iei: int, data: bytes) -> int:
    if len(data) != 1:
        raise ValueError(f"IE 0x{iei:02x} must have 1 octet, has {len(data)}")
    return data[0]


def _ies(body: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(body):
        if i + 2 > len(body):
            raise ValueError(f"IE header truncated at octet {i}")
        iei, length = body[i], body[i + 1]
        if i + 2 + length > len(body):
            raise ValueError(f"IE 0x{iei:02x} runs past the UDH")
        out.append((iei, body[i + 2 : i + 2 + length]))
        i += 2 + length
    return out


def _concat(iei: int, data: bytes) -> tuple[tuple[int, int, int], Literal[8, 16]]:
    want = 3 if iei == IEI_CONCAT_8 else 4
    if len(data) != want:
        raise ValueError(f"concatenation IE 0x{iei:02x} must have {want} octets")
    ref = data[0] if want == 3 else int.from_bytes(data[:2], "big")
    total, seq = data[-2], data[-1]
    if not 1 <= seq <= total:
        raise ValueError(f"bad concatenation: part {seq} of {total}")
    return (ref, total, seq), (8 if want == 3 else 16)
