"""Put inbound multi-part SMS back together before they become one email.

Carriers hand the gateway each part separately: over SMPP as a UDH in ``short_message`` or
as SAR TLVs (``sar_msg_ref_num``, ``sar_total_segments``, ``sar_segment_seqnum``), over HTTP
APIs usually already joined. A carrier driver turns each part into a ``Fragment``
(``fragment_from_udh`` for the UDH form; the SAR values go straight into the constructor)
and feeds it to one ``Reassembler``, which the inbound flow owns. Parts may arrive out of
order, twice, or never: a set that has seen no new part for ``timeout`` seconds is handed out
by ``expire`` with what arrived, marked incomplete, so a lost part never loses the rest.

No clock is read here: the caller passes ``received_at`` and ``now``.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from mailsms.sms import gsm7
from mailsms.sms.shift_tables import LANGUAGE_NAMES, LOCKING_TABLES, SINGLE_SHIFT_TABLES
from mailsms.sms.udh import parse_udh

__all__ = ["Assembled", "Fragment", "Reassembler", "decode_part", "fragment_from_udh"]


@dataclass(frozen=True, slots=True)
class Fragment:
    """One received part. ``total == 1`` is a message on its own."""

    from_: str
    to: str
    ref: int
    total: int
    seq: int
    text: str
    carrier_id: str
    received_at: float


@dataclass(frozen=True, slots=True)
class Assembled:
    """A whole inbound message, or what arrived of it (``incomplete``).

    ``segments`` counts the parts that arrived; ``received_at`` is the earliest part's time.
    """

    from_: str
    to: str
    text: str
    carrier_ids: tuple[str, ...]
    segments: int
    incomplete: bool
    received_at: float


@dataclass
class _Pending:
    parts: dict[int, Fragment] = field(default_factory=dict)
    last_activity: float = 0.0


_Key = tuple[str, str, int, int]


class Reassembler:
    """Collects parts by (from, to, reference, total) until a set is complete or stale."""

    def __init__(self, timeout: float = 300.0) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self._pending: dict[_Key, _Pending] = {}

    def __len__(self) -> int:
        """Sets still waiting for parts."""
        return len(self._pending)

    def add(self, fragment: Fragment) -> Assembled | None:
        """The whole message once ``fragment`` completes it, else None (duplicates ignored).

        Raises ValueError for a part numbered outside 1..total.
        """
        if not 1 <= fragment.seq <= max(fragment.total, 1):
            raise ValueError(f"part {fragment.seq} of {fragment.total}")
        if fragment.total <= 1:
            return _assemble([fragment], incomplete=False)
        key = (fragment.from_, fragment.to, fragment.ref, fragment.total)
        pending = self._pending.setdefault(key, _Pending())
        if fragment.seq in pending.parts:
            return None
        pending.parts[fragment.seq] = fragment
        pending.last_activity = max(pending.last_activity, fragment.received_at)
        if len(pending.parts) < fragment.total:
            return None
        del self._pending[key]
        return _assemble(list(pending.parts.values()), incomplete=False)

    def expire(self, now: float) -> list[Assembled]:
        """Hand out, marked incomplete, every set with no new part for ``timeout`` seconds."""
        stale = [k for k, p in self._pending.items() if now - p.last_activity >= self.timeout]
        return [
            _assemble(list(self._pending.pop(key).parts.values()), incomplete=True) for key in stale
        ]


def _assemble(parts: list[Fragment], incomplete: bool) -> Assembled:
    parts.sort(key=lambda f: f.seq)
    first = parts[0]
    return Assembled(
        from_=first.from_,
        to=first.to,
        text="".join(f.text for f in parts),
        carrier_ids=tuple(f.carrier_id for f in parts),
        segments=len(parts),
        incomplete=incomplete,
        received_at=min(f.received_at for f in parts),
    )


def fragment_from_udh(
    from_: str, to: str, udh: bytes, text: str, carrier_id: str, received_at: float
) -> Fragment:
    """A ``Fragment`` from a part's UDH (8- or 16-bit concatenation; other IEs ignored).

    Without a UDH, or without a concatenation IE in it, the part is a message on its own.
    A malformed UDH raises ValueError.
    """
    concat = parse_udh(udh).concat if udh else None
    ref, total, seq = concat if concat else (0, 1, 1)
    return Fragment(from_, to, ref, total, seq, text, carrier_id, received_at)


def decode_part(udh: bytes, payload: bytes, encoding: str) -> str:
    """A part's text from its user data: ``gsm7`` unpacked septets or ``ucs2`` UTF-16BE.

    National shift tables named in the UDH are honoured when we have them; an unknown one
    falls back to the default table, as TS 23.038 asks of a receiver.
    """
    if encoding == "ucs2":
        return payload.decode("utf-16-be", errors="replace")
    if encoding != "gsm7":
        raise ValueError(f"unknown encoding {encoding!r}")
    parsed = parse_udh(udh) if udh else None
    single = _known(parsed.single_shift if parsed else None, SINGLE_SHIFT_TABLES)
    locking = _known(parsed.locking_shift if parsed else None, LOCKING_TABLES)
    return gsm7.decode_septets(payload, single, locking)


def _known(language_id: int | None, available: Container[str]) -> str | None:
    name = LANGUAGE_NAMES.get(language_id) if language_id is not None else None
    return name if name is not None and name in available else None
