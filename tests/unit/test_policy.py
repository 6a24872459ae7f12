"""Policy rules (mailsms.policy): who may send, which numbers we text, how often."""

from __future__ import annotations

from typing import Any

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from mailsms.address import Recipient
from mailsms.config import PolicySettings
from mailsms.policy import Refusal
from mailsms.policy.destinations import DestinationRule
from mailsms.policy.rate import RATE_LIMITED, WINDOW, SenderRateRule
from mailsms.policy.senders import NOT_AUTHORISED, SenderRule


def test_refusal_reply_and_temporariness() -> None:
    assert Refusal(550, "5.7.1", "No").reply == "550 5.7.1 No"
    assert not Refusal(550, "5.7.1", "No").temporary
    assert Refusal(450, "4.7.1", "Later").temporary
    assert NOT_AUTHORISED.reply.startswith("550 5.7.1 ")
    assert RATE_LIMITED.reply.startswith("450 4.7.1 ") and RATE_LIMITED.temporary


# --- senders ---------------------------------------------------------------------------------


def senders(**policy: Any) -> SenderRule:
    return SenderRule(PolicySettings(**policy))


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        (None, True),  # a Unix socket peer: a local process
        ("192.0.2.1", False),
        ("10.0.0.1", False),
        ("2001:db8::1", False),
        ("not-an-ip", False),
        ("", False),
    ],
)
def test_default_trusts_loopback_only(peer: str | None, allowed: bool) -> None:
    result = senders().check("anyone@anywhere.test", peer)
    assert result is (None if allowed else NOT_AUTHORISED)


@pytest.mark.parametrize(
    ("sender", "allowed"),
    [
        ("alerts@example.com", True),
        ("ALERTS@Example.COM", True),
        ("<alerts@example.com>", True),
        ("ops@monitoring.example.net", True),
        ("alerts@example.com.evil.test", False),
        ("alerts@notexample.com", False),
        ("alerts@sub.example.com", False),
        ("", False),
        ("<>", False),  # the null sender (bounces) never matches a pattern
    ],
)
def test_sender_patterns(sender: str, allowed: bool) -> None:
    rule = senders(allowed_senders=("*@Example.com", "ops@*.example.net"))
    assert (rule.check(sender, "192.0.2.1") is None) is allowed


def test_null_sender_not_matched_even_by_a_star() -> None:
    rule = senders(allowed_senders=("*",))
    assert rule.check("<>", "192.0.2.1") is NOT_AUTHORISED
    assert rule.check("x@y.test", "192.0.2.1") is None


def test_allowed_senders_drops_the_loopback_default() -> None:
    rule = senders(allowed_senders=("*@example.com",))
    assert rule.check("x@other.test", "127.0.0.1") is NOT_AUTHORISED
    assert rule.check("x@example.com", "127.0.0.1") is None
    assert rule.check("x@other.test", None) is None  # Unix sockets stay trusted


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.1.3.3", False),
        ("2001:db8:1::25", True),
        ("2001:db8:2::25", False),
        ("fe80::1%eth0", True),  # scope id stripped
        ("fe81::1%eth0", False),
        ("127.0.0.1", False),  # explicit networks replace loopback
    ],
)
def test_explicit_networks(peer: str, allowed: bool) -> None:
    networks = ("10.1.2.0/24", "2001:db8:1::/48", "fe80::/64")
    rule = senders(allowed_senders=(), allowed_networks=networks)
    assert (rule.check("x@other.test", peer) is None) is allowed


@pytest.mark.parametrize("peer", ["::ffff:127.0.0.1", "::ffff:10.1.2.3"])
def test_ipv4_mapped_peers_match_ipv4_networks(peer: str) -> None:
    rule = senders(allowed_networks=("127.0.0.0/8", "10.1.2.0/24"))
    assert rule.check("x@other.test", peer) is None


# --- destinations ----------------------------------------------------------------------------


def example(region: str, kind: int) -> Recipient:
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None
    return Recipient(
        number=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        domain="sms.example.test",
        region=phonenumbers.region_code_for_number(number),
        number_type=phonenumbers.number_type(number),
    )


GB_MOBILE = example("GB", PhoneNumberType.MOBILE)
DE_MOBILE = example("DE", PhoneNumberType.MOBILE)
GB_PREMIUM = example("GB", PhoneNumberType.PREMIUM_RATE)
SHORT = Recipient("81025", "sms.example.test", "GB", PhoneNumberType.UNKNOWN)
UNKNOWN_REGION = Recipient("+15551234567", "sms.example.test", None, PhoneNumberType.UNKNOWN)


def destinations(**policy: Any) -> DestinationRule:
    return DestinationRule(PolicySettings(**policy))


@pytest.mark.parametrize(
    ("policy", "recipient", "refused"),
    [
        ({}, GB_MOBILE, None),
        ({}, UNKNOWN_REGION, None),
        ({}, GB_PREMIUM, "Premium-rate"),
        ({"block_premium_rate": False}, GB_PREMIUM, None),
        ({}, SHORT, "Short codes"),
        ({"block_short_codes": False}, SHORT, None),
        ({"allowed_regions": ("GB",)}, GB_MOBILE, None),
        ({"allowed_regions": ("gb", "fr")}, GB_MOBILE, None),
        ({"allowed_regions": ("GB",)}, DE_MOBILE, "country DE is not allowed"),
        ({"allowed_regions": ("GB",)}, UNKNOWN_REGION, "country unknown is not allowed"),
        ({"allowed_regions": ("DE",)}, GB_PREMIUM, "country GB"),  # country checked first
    ],
)
def test_destinations(policy: dict[str, Any], recipient: Recipient, refused: str | None) -> None:
    result = destinations(**policy).check(recipient)
    if refused is None:
        assert result is None
    else:
        assert result is not None
        assert (result.code, result.status) == (550, "5.7.1")
        assert refused in result.text


# --- sender rate -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_rate_limit_zero_means_unlimited() -> None:
    rule = SenderRateRule(0, FakeClock())
    rule.charge("a@example.com", 10_000)
    assert rule.check("a@example.com", pending=10_000) is None


def test_rate_limit_counts_charges_and_pending() -> None:
    rule = SenderRateRule(3, FakeClock())
    assert rule.check("a@example.com") is None
    assert rule.check("a@example.com", pending=2) is None
    assert rule.check("a@example.com", pending=3) is RATE_LIMITED
    rule.charge("a@example.com", 2)
    assert rule.check("a@example.com") is None
    assert rule.check("a@example.com", pending=1) is RATE_LIMITED
    rule.charge("a@example.com", 1)
    assert rule.check("a@example.com") is RATE_LIMITED


def test_rate_limit_is_per_sender_case_insensitive() -> None:
    rule = SenderRateRule(2, FakeClock())
    rule.charge("A@Example.com", 2)
    assert rule.check("a@example.com") is RATE_LIMITED
    assert rule.check("b@example.com") is None


def test_rate_window_slides() -> None:
    clock = FakeClock()
    rule = SenderRateRule(2, clock)
    rule.charge("a@example.com", 1)
    clock.now += 1800
    rule.charge("a@example.com", 1)
    assert rule.check("a@example.com") is RATE_LIMITED
    clock.now += WINDOW - 1800  # the first charge is exactly one window old: still counts
    assert rule.check("a@example.com") is RATE_LIMITED
    clock.now += 0.001  # ... and now it has left the window
    assert rule.check("a@example.com") is None
    assert rule.check("a@example.com", pending=1) is RATE_LIMITED
    clock.now += 1800
    assert rule.check("a@example.com", pending=1) is None
