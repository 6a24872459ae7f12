"""Recipient addresses <-> E.164 numbers, and numbers for humans and for logs.

``+15551234567@sms.example.com`` is how a mail user names a phone. The local part may come
as ``15551234567``, a national number in ``gateway.default_region`` (``07700900123`` in GB),
with separators (``+1-555-123-4567``, ``(555)123.4567``) or quoted (``"+1 555 123 4567"``).
phonenumbers does the numbering-plan work; this module only peels the mail syntax off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from mailsms.errors import AddressError

_SEPARATORS = re.compile(r"[\s\-.()/]")
_ALLOWED = re.compile(r"^\+?\d{2,17}$")
_SHORT_CODE = re.compile(r"^\d{3,6}$")


@dataclass(frozen=True, slots=True)
class Recipient:
    """A parsed recipient: the E.164 number and the domain it was addressed to."""

    number: str
    domain: str
    region: str | None
    number_type: int


def split_address(address: str) -> tuple[str, str]:
    """``local@domain`` -> (local, domain lower-cased), handling a quoted local part."""
    address = address.strip().removeprefix("<").removesuffix(">")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{address!r} is not an address of the form number@domain")
    if len(local) >= 2 and local[0] == local[-1] == '"':
        local = re.sub(r"\\(.)", r"\1", local[1:-1])
    return local, domain.lower().rstrip(".")


def to_e164(local: str, default_region: str) -> phonenumbers.PhoneNumber:
    """Parse a local part as a phone number, or raise :class:`AddressError` saying why."""
    compact = _SEPARATORS.sub("", local)
    if not _ALLOWED.match(compact):
        raise AddressError(f"{local!r} is not a phone number")
    if not compact.startswith("+") and len(compact) >= 11 and not compact.startswith("0"):
        # "15551234567" / "447700900123": digits that only make sense as a country code first.
        candidate = _parse("+" + compact, None)
        if candidate is not None and phonenumbers.is_possible_number(candidate):
            return candidate
    number = _parse(compact, default_region)
    if number is None or not phonenumbers.is_possible_number(number):
        raise AddressError(f"{local!r} is not a possible phone number")
    return number


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def parse_recipient(address: str, domains: frozenset[str], default_region: str) -> Recipient:
    """The recipient as a number, checking the domain is ours first (so a foreign domain is a
    relay question, 5.7.1, never a number question)."""
    local, domain = split_address(address)
    if domain not in domains:
        raise ForeignDomain(domain)
    compact = _SEPARATORS.sub("", local)
    if _SHORT_CODE.match(compact):
        # Short codes are national service numbers with no E.164 form: kept as dialled.
        return Recipient(compact, domain, default_region, PhoneNumberType.UNKNOWN)
    number = to_e164(local, default_region)
    return Recipient(
        number=phonenumbers.format_number(number, PhoneNumberFormat.E164),
        domain=domain,
        region=phonenumbers.region_code_for_number(number),
        number_type=phonenumbers.number_type(number),
    )


class ForeignDomain(AddressError):
    """The address is in a domain we do not serve: a relay attempt."""

    def __init__(self, domain: str) -> None:
        super().__init__(f"domain {domain!r} is not served here")
        self.domain = domain


def is_premium_rate(number_type: int) -> bool:
    return number_type == PhoneNumberType.PREMIUM_RATE


def is_short_code(number: str) -> bool:
    """Short codes (3-6 digit service numbers, dialled without a country code)."""
    return not number.startswith("+") and len(number) <= 6


def human(number: str) -> str:
    """``+15551234567`` -> ``+1 555-123-4567``: the international format people read."""
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(number, None), PhoneNumberFormat.INTERNATIONAL
        )
    except NumberParseException:
        return number


def mask(number: str) -> str:
    """A number for logs at info level: country code and last two digits only."""
    if len(number) <= 5:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 5) + number[-2:]


def to_address(number: str, domain: str) -> str:
    return f"{number}@{domain}"
