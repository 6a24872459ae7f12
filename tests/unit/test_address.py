"""Recipient addresses -> E.164, display and log formats (mailsms.address)."""

from __future__ import annotations

import contextlib

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from mailsms.address import (
    ForeignDomain,
    human,
    is_premium_rate,
    is_short_code,
    mask,
    parse_recipient,
    split_address,
    to_address,
)
from mailsms.errors import AddressError

DOMAINS = frozenset({"sms.example.test", "texts.example.org"})


def premium(region: str) -> str:
    number = phonenumbers.example_number_for_type(region, PhoneNumberType.PREMIUM_RATE)
    assert number is not None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@pytest.mark.parametrize(
    ("address", "region", "number"),
    [
        ("+15551234567@sms.example.test", "US", "+15551234567"),
        ("15551234567@sms.example.test", "US", "+15551234567"),
        ("+1-555-123-4567@sms.example.test", "US", "+15551234567"),
        ("(555) 123.4567@sms.example.test", "US", "+15551234567"),
        ("555/123-4567@sms.example.test", "US", "+15551234567"),
        ("07700 900123@sms.example.test", "GB", "+447700900123"),
        ("07700900123@sms.example.test", "GB", "+447700900123"),
        ("447700900123@sms.example.test", "US", "+447700900123"),
        ("+447700900123@sms.example.test", "US", "+447700900123"),
        ('"+1 555 123 4567"@sms.example.test', "US", "+15551234567"),
        ('"+1\\ 555 123 4567"@sms.example.test', "US", "+15551234567"),
        ("+15551234567@SMS.Example.Test", "US", "+15551234567"),
        ("+15551234567@sms.example.test.", "US", "+15551234567"),
        ("<+15551234567@sms.example.test>", "US", "+15551234567"),
        ("  <+15551234567@texts.example.org>  ", "US", "+15551234567"),
        ("+12015550123@texts.example.org", "GB", "+12015550123"),
    ],
)
def test_parse_recipient(address: str, region: str, number: str) -> None:
    assert parse_recipient(address, DOMAINS, region).number == number


def test_recipient_fields() -> None:
    r = parse_recipient("+12015550123@SMS.example.test", DOMAINS, "US")
    assert (r.number, r.domain, r.region) == ("+12015550123", "sms.example.test", "US")
    assert r.number_type == PhoneNumberType.FIXED_LINE_OR_MOBILE


@pytest.mark.parametrize(
    "address",
    ["+15551234567@example.com", "+15551234567@sms.example.test.evil", "+15551234567@example.test"],
)
def test_foreign_domain(address: str) -> None:
    with pytest.raises(ForeignDomain) as info:
        parse_recipient(address, DOMAINS, "US")
    assert isinstance(info.value, AddressError)
    assert info.value.domain == address.rpartition("@")[2]


def test_foreign_domain_is_checked_before_the_number() -> None:
    # Relay question (5.7.1) first, even when the local part is not a number.
    with pytest.raises(ForeignDomain):
        parse_recipient("hello@example.com", DOMAINS, "US")


@pytest.mark.parametrize(
    "local",
    [
        "hello",
        "+",
        "",
        "+1555CALLNOW",
        "555-CALL-NOW",
        "1+5551234567",
        "++15551234567",
        "+1234567890123456789",
        "12",
        "+12",
        "+123",
    ],
)
def test_not_a_number(local: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_recipient(f"{local}@sms.example.test", DOMAINS, "US")
    assert not isinstance(info.value, ForeignDomain)


@pytest.mark.parametrize("address", ["", "no-at-sign", "@sms.example.test", "+15551234567@", "<>"])
def test_not_an_address(address: str) -> None:
    with pytest.raises(AddressError):
        split_address(address)


def test_split_address_keeps_an_at_sign_in_a_quoted_local_part() -> None:
    assert split_address('"a@b"@Example.TEST') == ("a@b", "example.test")


@given(st.text())
def test_arbitrary_local_parts_raise_only_address_error(local: str) -> None:
    with contextlib.suppress(AddressError):
        parse_recipient(f"{local}@sms.example.test", DOMAINS, "GB")


@given(st.from_regex(r"[+0-9 ()./\-]{0,25}", fullmatch=True), st.sampled_from(["US", "GB", "DE"]))
def test_number_like_local_parts_give_e164_or_address_error(local: str, region: str) -> None:
    try:
        r = parse_recipient(f"{local}@sms.example.test", DOMAINS, region)
    except AddressError:
        return
    assert r.number.lstrip("+").isdigit()
    assert r.number.startswith("+") or is_short_code(r.number)


# --- premium rate and short codes ------------------------------------------------------------


@pytest.mark.parametrize("region", ["GB", "US", "DE", "FR"])
def test_premium_rate_numbers_are_detected(region: str) -> None:
    r = parse_recipient(f"{premium(region)}@sms.example.test", DOMAINS, "US")
    assert r.region == region
    assert is_premium_rate(r.number_type)


def test_ordinary_numbers_are_not_premium_rate() -> None:
    r = parse_recipient("+12015550123@sms.example.test", DOMAINS, "US")
    assert not is_premium_rate(r.number_type)


@pytest.mark.parametrize(
    ("number", "short"),
    [
        ("123", True),
        ("12345", True),
        ("123456", True),
        ("1234567", False),
        ("+12345", False),
        ("+4481025", False),
        ("+15551234567", False),
    ],
)
def test_is_short_code(number: str, short: bool) -> None:
    assert is_short_code(number) is short


@pytest.mark.parametrize(
    ("local", "region", "number"),
    [
        ("81025", "GB", "81025"),
        ("60300", "GB", "60300"),
        ("12345", "DE", "12345"),
        ("123", "US", "123"),
        ("88-88-88", "FR", "888888"),
        ('"262 966"', "US", "262966"),
    ],
)
def test_short_codes_are_kept_as_dialled(local: str, region: str, number: str) -> None:
    r = parse_recipient(f"{local}@sms.example.test", DOMAINS, region)
    assert (r.number, r.region) == (number, region)
    assert is_short_code(r.number)
    assert not is_premium_rate(r.number_type)


# --- display and logs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("+15551234567", "+1 555-123-4567"),
        ("+447700900123", "+44 7700 900123"),
        ("not a number", "not a number"),
    ],
)
def test_human(number: str, shown: str) -> None:
    assert human(number) == shown


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+15551234567", "+15*******67"),
        ("+447700900123", "+44********23"),
        ("12345", "*****"),
        ("123456", "123*56"),
        ("", ""),
    ],
)
def test_mask(number: str, masked: str) -> None:
    assert mask(number) == masked


@given(st.text())
def test_mask_reveals_at_most_the_first_3_and_last_2(number: str) -> None:
    masked = mask(number)
    assert len(masked) == len(number)
    for i, shown in enumerate(masked):
        if shown != "*":
            assert i < 3 or i >= len(number) - 2
            assert shown == number[i]


def test_to_address_round_trips() -> None:
    address = to_address("+15551234567", "sms.example.test")
    assert parse_recipient(address, DOMAINS, "US").number == "+15551234567"
