"""Carrier choice (mailsms.dispatch.routing): prefixes, pinning, failover rotation."""

from __future__ import annotations

import pytest

from mailsms.carriers.base import CarrierSettings
from mailsms.dispatch.routing import NoRoute, Router


def carrier(name: str, *prefixes: str) -> CarrierSettings:
    return CarrierSettings(name=name, type="fake", prefixes=prefixes)


ROUTER = Router(
    [
        carrier("default"),
        carrier("uk", "+44"),
        carrier("uk-mobile", "+447"),
        carrier("nanp", "+1"),
        carrier("nanp-too", "+1"),
        carrier("de", "+49", "+43"),
    ]
)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+447700900123", ["uk-mobile", "uk", "default"]),  # longest prefix first
        ("+442071838750", ["uk", "default"]),
        ("+15551234567", ["nanp", "nanp-too", "default"]),  # tie: config order
        ("+4930123456", ["de", "default"]),
        ("+43123456789", ["de", "default"]),  # any of a carrier's prefixes
        ("+33612345678", ["default"]),  # unprefixed carriers take everything
    ],
)
def test_candidates(number: str, expected: list[str]) -> None:
    assert ROUTER.candidates(number) == expected


def test_longest_matching_prefix_of_one_carrier_counts() -> None:
    router = Router([carrier("a", "+4"), carrier("b", "+44"), carrier("c", "+4", "+447")])
    assert router.candidates("+447700900123") == ["c", "b", "a"]


def test_an_unprefixed_carrier_ranks_below_any_prefix_match() -> None:
    router = Router([carrier("catch-all"), carrier("uk", "+44")])
    assert router.candidates("+447700900123") == ["uk", "catch-all"]


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, "uk-mobile"), (2, "uk"), (3, "default"), (4, "uk-mobile"), (7, "uk-mobile")],
)
def test_pick_rotates_through_candidates_by_attempt(attempt: int, expected: str) -> None:
    assert ROUTER.pick("+447700900123", attempt) == expected


@pytest.mark.parametrize("attempt", [1, 2, 5])
def test_pinned_carrier_is_used_whatever_its_prefixes(attempt: int) -> None:
    assert ROUTER.candidates("+33612345678", pinned="uk") == ["uk"]
    assert ROUTER.pick("+33612345678", attempt, pinned="uk") == "uk"


def test_unknown_pinned_carrier_is_no_route() -> None:
    with pytest.raises(NoRoute):
        ROUTER.pick("+447700900123", 1, pinned="nope")


def test_no_matching_carrier_is_no_route() -> None:
    router = Router([carrier("uk", "+44"), carrier("us", "+1")])
    assert router.candidates("+4930123456") == []
    with pytest.raises(NoRoute, match=r"\+4930123456"):
        router.pick("+4930123456", 1)


def test_no_carriers_at_all_is_no_route() -> None:
    with pytest.raises(NoRoute):
        Router([]).pick("+15551234567", 1)
