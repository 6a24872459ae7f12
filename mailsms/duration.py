"""Human durations in config ("30s", "5m", "2h", "30d", "1h30m", or plain seconds)."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises ``ValueError`` with the accepted forms on anything else."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '5m', '2h' or '30d'")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("a duration must be a finite number of seconds, not negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '30s', '5m', '2h' or '30d'")
    text = value.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration such as '30s', '5m', '2h' or '30d'")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A config field holding seconds, written as a human duration."""
