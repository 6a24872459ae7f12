"""Which numbers we text: country allow-list, no premium-rate numbers, no short codes.

Premium-rate numbers are the classic way a compromised sender turns an SMS gateway into
money; they are refused unless ``policy.block_premium_rate = false``.
"""

from __future__ import annotations

from mailsms.address import Recipient, is_premium_rate, is_short_code
from mailsms.config import PolicySettings
from mailsms.policy import Refusal


class DestinationRule:
    name = "destinations"
    description = "the number's country, type and length must be allowed"

    def __init__(self, policy: PolicySettings) -> None:
        self.regions = frozenset(r.upper() for r in policy.allowed_regions)
        self.block_premium = policy.block_premium_rate
        self.block_short = policy.block_short_codes

    def check(self, recipient: Recipient) -> Refusal | None:
        if self.regions and (recipient.region or "") not in self.regions:
            return Refusal(
                550, "5.7.1", f"Destination country {recipient.region or 'unknown'} is not allowed"
            )
        if self.block_premium and is_premium_rate(recipient.number_type):
            return Refusal(550, "5.7.1", "Premium-rate numbers are not allowed")
        if self.block_short and is_short_code(recipient.number):
            return Refusal(550, "5.7.1", "Short codes are not allowed")
        return None
