"""Human durations in config (mailsms.duration)."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel, ValidationError

from mailsms.duration import Duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("30d", 30 * 86400.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1d 2h 3m 4s", 86400.0 + 7200 + 180 + 4),
        ("1.5h", 5400.0),
        ("  10M ", 600.0),
        ("90", 90.0),
        ("2.5", 2.5),
        ("0", 0.0),
        ("0s", 0.0),
        (45, 45.0),
        (0.5, 0.5),
        (0, 0.0),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "s",
        "5 minutes",
        "5m30",
        "m5",
        "-5s",
        "1y",
        "1e3",
        "5mm",
        "1h-30m",
        "1,5h",
        "5 x",
        -1,
        -0.5,
        True,
        False,
    ],
)
def test_bad_durations_raise_value_error(value: str | float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


class _Model(BaseModel):
    timeout: Duration = 10.0


def test_duration_as_a_pydantic_field() -> None:
    assert _Model(timeout="2m").timeout == 120.0  # type: ignore[arg-type]
    assert _Model().timeout == 10.0
    with pytest.raises(ValidationError, match="is not a duration"):
        _Model(timeout="soon")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [[30], None, {"s": 30}])
def test_non_string_values_raise_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)  # type: ignore[arg-type]


def test_nan_is_not_a_duration() -> None:
    with pytest.raises(ValueError):
        parse_duration(math.nan)
