"""Policy: one rule per module. Each returns ``None`` to allow or a :class:`Refusal`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Refusal:
    """An SMTP-shaped decision: basic code, RFC 3463 enhanced code, human text."""

    code: int
    status: str
    text: str

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500
