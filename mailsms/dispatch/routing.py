"""Which carrier sends a message: the first whose ``prefixes`` match the number.

A carrier with no ``prefixes`` takes every number. A message may name its carrier (the API
and ``send --carrier`` can); otherwise the longest matching prefix wins, then config order.
The remaining matches are the failover order the dispatcher uses after temporary failures.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailsms.carriers.base import CarrierSettings


class NoRoute(Exception):
    """No configured carrier takes this number."""


class Router:
    def __init__(self, carriers: Sequence[CarrierSettings]) -> None:
        self.carriers = tuple(carriers)

    def candidates(self, number: str, pinned: str | None = None) -> list[str]:
        """Carrier names for ``number``, best first."""
        if pinned is not None:
            return [c.name for c in self.carriers if c.name == pinned]
        scored = []
        for order, carrier in enumerate(self.carriers):
            if not carrier.prefixes:
                scored.append((0, order, carrier.name))
                continue
            best = max((len(p) for p in carrier.prefixes if number.startswith(p)), default=-1)
            if best >= 0:
                scored.append((best, order, carrier.name))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [name for _, _, name in scored]

    def pick(self, number: str, attempt: int, pinned: str | None = None) -> str:
        """The carrier for this attempt: rotate through the candidates on each retry."""
        names = self.candidates(number, pinned)
        if not names:
            raise NoRoute(f"no carrier routes {number}")
        return names[(attempt - 1) % len(names)]
