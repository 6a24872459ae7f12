"""A sender let in by name must be one our MTA authenticated (``policy.authserv_id``).

``allowed_senders`` matches the envelope sender, which anyone can write. With
``authserv_id`` set, a mail whose sender was allowed by that match (its client's network is
not trusted) is accepted only when the first ``Authentication-Results`` header from that
authserv-id shows DMARC, DKIM or SPF passing for the sender's domain
(:func:`mailsms.intake.envelope.authenticated`); otherwise ``550 5.7.1`` at DATA, when the
header can be read. Clients on ``allowed_networks`` (the MTA itself, local scripts) and the
LMTP socket are trusted as before: the check is about the mail the MTA passed on, not who
connected.
"""

from __future__ import annotations

from mailsms.config import PolicySettings
from mailsms.intake.envelope import authenticated
from mailsms.policy import Refusal
from mailsms.policy.senders import SenderRule


class AuthenticationRule:
    name = "authentication"
    description = "a sender allowed by name must pass our MTA's DMARC, DKIM or SPF check"

    def __init__(self, policy: PolicySettings, senders: SenderRule) -> None:
        self.authserv_id = policy.authserv_id
        self.senders = senders

    def check(self, raw: bytes, sender: str, peer_ip: str | None) -> Refusal | None:
        if self.authserv_id is None or self.senders.trusted(peer_ip):
            return None
        why = authenticated(raw, self.authserv_id, sender.strip("<>"))
        if why is None:
            return None
        return Refusal(550, "5.7.1", f"Sender not authenticated: {why}")
